"""Armed bundles: a port-up's bundle, encoded ahead, written the moment the host confirms the NIC.

The engine compiles a NIC's flows ahead for the interface name it expects and the ofport Open
vSwitch will most likely give it (engine._speculate), and hands the encoded bundle here. It goes
out when two things are known, from the threads that learn them, before the engine loop hears:
  - the host's database has the port's row with that interface name (the southbound's report:
    `rows_seen`), and
  - the switch numbered that interface exactly that ofport (its port-status: `port_numbered`;
    or the row itself, once it carries the ofport).
That is what the engine itself would act on, so nothing is installed on a guess: a NIC named
otherwise, another iface-id behind the name or another number, and the bundle never goes out.
What it saves is the engine's hand-off, recompute and plan on a plug: 1-3 ms measured while
ovs-vswitchd and weftd share two cores.

The engine owns the books. It takes an armed bundle back (`disarm`) before it sends anything
else to that switch, and once it knows both facts itself; `disarm` says whether it went out
(then the engine counts it as a bundle in flight, as if it had sent it), so no bundle is
planned against books that miss another. A reply that overtakes the engine's news of the
firing finds the bundle through the engine's armed record (engine._on_bundle_reply).
"""
from __future__ import annotations

import dataclasses
import threading
import time


@dataclasses.dataclass
class _Armed:
    port: str                         # the iface-id the row must carry
    ofport: int                       # the number the switch must give the interface
    data: bytes
    seen: bool = False                # the row with this name and iface-id is in the database
    numbered: bool = False            # the switch numbered the interface `ofport`
    wrong: bool = False               # ... or something else: never goes out
    fired: float | None = None        # monotonic time it was written
    on_fire: object = None            # called once it is written (the firing thread)


class ArmedBundles:
    """At most one armed bundle per (connection, interface name); `write(datapath, data)` sends."""

    def __init__(self, write):
        self._write = write
        self._lock = threading.Lock()          # firing and disarming never overlap
        self._armed: dict[tuple[int, str], _Armed] = {}

    def arm(self, datapath, name: str, port: str, ofport: int, data: bytes, seen: bool,
            on_fire=None) -> None:
        """seen: the engine has the port's row under this name already (else a report must
        show it); on_fire(): called on the thread that writes it, right after."""
        with self._lock:
            self._armed[(id(datapath), name)] = _Armed(port, ofport, data, seen, on_fire=on_fire)

    def port_numbered(self, datapath, name: str, ofport: int | None) -> bool:
        """The switch's port-status: `name` has `ofport` (None: it was removed). True if that
        sent its bundle."""
        if not self._armed:
            return False
        with self._lock:
            armed = self._armed.get((id(datapath), name))
            if armed is None:
                return False
            if ofport != armed.ofport:
                # about the NIC whose row was seen: it is numbered otherwise, or gone. Before
                # the row, it is about the NIC that left (its removal, a late change): that
                # says nothing of the one to come, and only `ofport` itself can send
                if armed.seen:
                    armed.wrong = True
                return False
            armed.numbered = True
            return self._fire(datapath, armed)

    def rows_seen(self, datapath, rows: dict) -> bool:
        """The host's database: {iface-id: (ofport or PENDING, interface name)}. True if that
        sent a bundle."""
        if not self._armed:
            return False
        fired = False
        with self._lock:
            for (dp_id, name), armed in self._armed.items():
                if dp_id != id(datapath):
                    continue
                row = rows.get(armed.port)
                if row is None or row[1] != name:
                    if armed.seen:               # the NIC it was for left, or is named otherwise
                        armed.wrong = True
                    continue
                armed.seen = True
                if row[0] == armed.ofport:
                    armed.numbered = True
                elif row[0] > 0:                 # numbered otherwise (PENDING is 0)
                    armed.wrong = True
                fired |= self._fire(datapath, armed)
        return fired

    def confirmed(self, datapath, name: str) -> bool:
        """The engine knows both facts itself (its news came before the other thread's): send
        it now unless it went out already or something said otherwise meanwhile."""
        with self._lock:
            armed = self._armed.get((id(datapath), name))
            if armed is None:
                return False
            armed.seen = armed.numbered = True
            return self._fire(datapath, armed)

    def _fire(self, datapath, armed: _Armed) -> bool:
        if not (armed.seen and armed.numbered) or armed.wrong or armed.fired is not None:
            return False
        armed.fired = time.monotonic()
        self._write(datapath, armed.data)           # under the lock: a disarm sees it sent
        if armed.on_fire is not None:
            armed.on_fire()
        return True

    def disarm(self, datapath, name: str) -> float | None:
        """Take the armed bundle back; when (monotonic) it was written, or None if it was not."""
        with self._lock:
            armed = self._armed.pop((id(datapath), name), None)
        return None if armed is None else armed.fired

    def forget(self, datapath) -> None:
        """The connection is over: nothing armed for it may go out."""
        with self._lock:
            for key in [k for k in self._armed if k[0] == id(datapath)]:
                del self._armed[key]

    def __len__(self) -> int:
        return len(self._armed)
