"""The OpenFlow driver: turns the engine's decisions into bytes on a switch's connection, never blocking the engine.

The engine decides (which bundle, which dump); the driver encodes and writes. A write goes
straight into the connection's send queue when it has room (the usual case: a bundle is one
write), and otherwise into a per-switch backlog that a flusher thread drains, so one slow
switch with a full queue never stalls the engine loop or any other switch.

Transaction ids come from the driver's own counter per connection (high bit set, apart from
os-ken's), so an error from a switch maps back to the bundle and the flow-mod it refused.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

from controller import ofmsg
from controller.armed import ArmedBundles
from controller.wire import WireCache

LOG = logging.getLogger(__name__)
XID_BASE = 0x80000000


class OpenFlowDriver:
    def __init__(self):
        self._wire = WireCache()
        self._xids: dict[int, int] = {}            # id(datapath) -> last xid used
        self._lock = threading.Lock()              # backlog and xid counters
        self._backlog: dict[int, tuple] = {}       # id(datapath) -> (datapath, deque of bytes)
        self._wake = threading.Event()
        self._waiters: dict[int, tuple] = {}       # xid -> (rows, event) for flow dumps of the API
        self._armed = ArmedBundles(self.write)
        self._flusher = threading.Thread(target=self._flush_loop, name="of-flusher", daemon=True)
        self._flusher.start()

    # ---- ids and writes --------------------------------------------------------------------
    def next_xids(self, datapath, count: int) -> int:
        """Reserve `count` consecutive xids on this connection; returns the first."""
        with self._lock:
            last = self._xids.get(id(datapath), XID_BASE)
            first = XID_BASE | ((last + 1) & 0x7FFFFFFF)
            self._xids[id(datapath)] = XID_BASE | ((first + count - 1) & 0x7FFFFFFF)
            return first

    def warm(self, items) -> None:
        """Encode flow-mods ahead (engine._speculate): the bundle that carries them later
        finds their bytes in the cache."""
        for item in items:
            self._wire.flow_mod(None, item)

    def forget(self, datapath) -> None:
        self._armed.forget(datapath)
        with self._lock:
            self._xids.pop(id(datapath), None)
            self._backlog.pop(id(datapath), None)

    def close(self, datapath) -> None:
        """Hang up on a connection at once (a refused switch): os-ken marks it dead and its
        receive loop ends on the shut socket; nothing more is written to it."""
        self.forget(datapath)
        close_connection(datapath)

    def write(self, datapath, buf: bytes) -> bool:
        """Queue bytes on the connection without blocking; False if the connection is gone."""
        with self._lock:
            pending = self._backlog.get(id(datapath))
            if pending is None and self._try_put(datapath, buf):
                return True
            if getattr(datapath, "send_q", True) is None:
                return False           # os-ken has closed it
            if pending is None:
                pending = self._backlog[id(datapath)] = (datapath, collections.deque())
            pending[1].append(buf)
        self._wake.set()
        return True

    @staticmethod
    def _try_put(datapath, buf: bytes) -> bool:
        """One non-blocking put into an os-ken Datapath's bounded send queue (or a fake's send)."""
        sem = getattr(datapath, "_send_q_sem", None)
        if sem is None:                  # not an os-ken Datapath (tests, benchmarks)
            return datapath.send(buf)
        if not sem.acquire(blocking=False):
            return False
        queue = datapath.send_q
        if queue is None:
            sem.release()
            return False
        queue.put((buf, False))
        return True

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while True:
                with self._lock:
                    progress, left = False, False
                    for key, (dp, pending) in list(self._backlog.items()):
                        while pending and self._try_put(dp, pending[0]):
                            pending.popleft()
                            progress = True
                        if not pending:
                            del self._backlog[key]
                        elif getattr(dp, "send_q", True) is None:
                            del self._backlog[key]     # connection closed: the engine reconciles
                        else:
                            left = True
                if not left:
                    break
                if not progress:
                    time.sleep(0.001)

    # ---- what the engine sends -------------------------------------------------------------
    def send_bundle(self, datapath, bundle_id: int, deletes, adds, meters_before=(),
                    meters_after=(), refill=None) -> tuple[int, list]:
        """One atomic, ordered bundle (open, every flow-mod, commit) in a single write, with the
        QoS meter-mods that must precede it (adds, changes) and follow it (deletes): Open vSwitch
        takes no meter-mod inside a bundle, and handles a connection's messages in order.

        Returns (first xid, items) where items[i] is the flow-mod sent with xid first+1+i
        (a ("delete", table, cookie) tuple or a Flow); the meter-mods take the xids after the
        commit's, in the order given (before, then after)."""
        first, items, data = self._encode_bundle(datapath, bundle_id, deletes, adds, meters_before,
                                                 meters_after)
        self.write(datapath, data + self.refill(datapath, refill))
        return first, items

    def refill(self, datapath, meter) -> bytes:
        """A (meter id, pps, burst) set again, encoded: Open vSwitch starts a meter it is given
        with a full bucket (controller/replay.py); b"" for None. Its xid is outside any bundle's:
        a refusal is logged, nothing more (the meter keeps its rate)."""
        if meter is None:
            return b""
        mid, pps, burst = meter
        msg = ofmsg.meter_add(datapath, mid, pps=pps, burst=burst, modify=True)
        msg.xid = self.next_xids(datapath, 1)
        msg.serialize()
        return bytes(msg.buf)

    def _encode_bundle(self, datapath, bundle_id: int, deletes, adds, meters_before=(),
                       meters_after=()) -> tuple[int, list, bytes]:
        ofp = datapath.ofproto
        items = [("delete", t, c) for t, c in deletes] + list(adds)
        meters = list(meters_before) + list(meters_after)
        first = self.next_xids(datapath, len(items) + 2 + len(meters))
        xid = first
        head = bytearray()
        tail = bytearray()
        for i, (command, meter) in enumerate(meters):
            msg = ofmsg.meter_mod(datapath, command, meter)
            msg.xid = first + len(items) + 2 + i
            msg.serialize()
            (head if i < len(meters_before) else tail).extend(msg.buf)
        parts = [bytes(head), self._wire.bundle_ctrl(datapath, bundle_id, ofp.OFPBCT_OPEN_REQUEST, xid)]
        parts += self._wire.bundle_adds(datapath, bundle_id, items, xid + 1)
        parts.append(self._wire.bundle_ctrl(datapath, bundle_id, ofp.OFPBCT_COMMIT_REQUEST,
                                            xid + len(items) + 1))
        parts.append(bytes(tail))
        return first, items, b"".join(parts)

    # ---- armed bundles (controller/armed.py) --------------------------------------------------
    def arm(self, datapath, name: str, port: str, ofport: int, bundle_id: int, deletes,
            adds, seen: bool = False, refill=None, on_fire=None) -> tuple[int, list]:
        """Encode a bundle now and hold it until the host confirms that interface `name` is
        port `port`'s (`seen`: it has already) and the switch numbered it `ofport`; returns
        (first xid, items) as send_bundle does."""
        first, items, data = self._encode_bundle(datapath, bundle_id, deletes, adds)
        self._armed.arm(datapath, name, port, ofport, data + self.refill(datapath, refill), seen, on_fire)
        return first, items

    def port_numbered(self, datapath, name: str, ofport: int | None) -> bool:
        """A port-status: `name` has `ofport`, None: removed (the armed bundle may go out now)."""
        return self._armed.port_numbered(datapath, name, ofport)

    def rows_seen(self, datapath, rows: dict) -> bool:
        """The host's database report (the armed bundle may go out now)."""
        return self._armed.rows_seen(datapath, rows)

    def confirmed(self, datapath, name: str) -> bool:
        """The engine knows the armed bundle's two facts: it goes out now if it has not."""
        return self._armed.confirmed(datapath, name)

    def disarm(self, datapath, name: str) -> float | None:
        """Take back what was armed for `name`; when it was written, or None if it was not."""
        return self._armed.disarm(datapath, name)

    def request_dump(self, datapath) -> int:
        """Ask for every flow of every table; the replies carry the returned xid."""
        parser, ofp = datapath.ofproto_parser, datapath.ofproto
        req = parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                         0, 0, parser.OFPMatch())
        return self._send_msg(datapath, req)

    def request_meter_dump(self, datapath) -> int:
        """Ask for the configuration of every meter; the replies carry the returned xid."""
        parser, ofp = datapath.ofproto_parser, datapath.ofproto
        return self._send_msg(datapath, parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL))

    def hello(self, datapath, meter_id: int, pps: int, burst: int, more=()) -> None:
        """On every connection: the DHCP meter and `more` meters (meter id, pps, burst), before
        any flow that uses them (an existing meter answers METER_EXISTS, which is ignored; the
        `more` ones are then set to their rate, which may have changed while weftd was away),
        and a port description request."""
        parser = datapath.ofproto_parser
        self._send_msg(datapath, ofmsg.meter_add(datapath, meter_id, pps=pps, burst=burst))
        for mid, mpps, mburst in more:
            self._send_msg(datapath, ofmsg.meter_add(datapath, mid, pps=mpps, burst=mburst))
        self.set_meters(datapath, more)
        self._send_msg(datapath, parser.OFPPortDescStatsRequest(datapath, 0))

    def set_meters(self, datapath, meters) -> None:
        """Change the rate of existing meters: (meter id, pps, burst) each."""
        for mid, pps, burst in meters:
            self._send_msg(datapath, ofmsg.meter_add(datapath, mid, pps=pps, burst=burst, modify=True))

    def port_desc(self, datapath) -> None:
        """The port list alone (a slave connection: no meter, which a slave may not add)."""
        self._send_msg(datapath, datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0))

    def role_request(self, datapath, role: int, generation: int) -> int:
        """HA: OFPT_ROLE_REQUEST (master or slave) with a generation id; its xid."""
        return self._send_msg(datapath, datapath.ofproto_parser.OFPRoleRequest(datapath, role, generation))

    def _send_msg(self, datapath, msg) -> int:
        xid = self.next_xids(datapath, 1)
        msg.xid = xid
        msg.serialize()
        self.write(datapath, bytes(msg.buf))
        return xid

    # ---- flow dumps for `weft flows` (outside the engine) ------------------------------------
    def dump_flows(self, datapath, timeout: float = 5.0) -> list | None:
        """The switch's flow-stats entries (os-ken objects), or None on time-out."""
        parser, ofp = datapath.ofproto_parser, datapath.ofproto
        req = parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                         0, 0, parser.OFPMatch())
        xid = self.next_xids(datapath, 1)
        rows, done = [], threading.Event()
        self._waiters[xid] = (rows, done)
        try:
            req.xid = xid
            req.serialize()
            self.write(datapath, bytes(req.buf))
            return rows if done.wait(timeout) else None
        finally:
            self._waiters.pop(xid, None)

    def claim_flow_stats(self, xid: int, body, more: bool) -> bool:
        """A flow-stats reply for one of dump_flows' requests? Then take it."""
        waiter = self._waiters.get(xid)
        if waiter is None:
            return False
        waiter[0].extend(body)
        if not more:
            waiter[1].set()
        return True


class InstantDriver:
    """For benchmarks that measure the controller alone: no switch. It counts what it is given
    and, with `engine` set, answers as an empty, always-willing switch would (an empty flow
    dump, every bundle committed), through the engine's input queue."""

    def __init__(self, engine=None):
        self.engine = engine
        self.bundles = 0
        self.flow_mods = 0
        self._xid = XID_BASE

    def next_xids(self, datapath, count: int) -> int:
        first = self._xid + 1
        self._xid += count
        return first

    def forget(self, datapath) -> None:
        pass

    def close(self, datapath) -> None:
        close_connection(datapath)

    def send_bundle(self, datapath, bundle_id, deletes, adds, meters_before=(), meters_after=(), refill=None):
        items = [("delete", t, c) for t, c in deletes] + list(adds)
        first = self.next_xids(datapath, len(items) + 2 + len(meters_before) + len(meters_after))
        self.bundles += 1
        self.flow_mods += len(items)
        if self.engine is not None:
            self.engine.bundle_reply(datapath, bundle_id, datapath.ofproto.OFPBCT_COMMIT_REPLY)
        return first, items

    def request_dump(self, datapath) -> int:
        xid = self.next_xids(datapath, 1)
        if self.engine is not None:
            self.engine.flow_stats(datapath, xid, [], False)
        return xid

    def request_meter_dump(self, datapath) -> int:
        xid = self.next_xids(datapath, 1)
        if self.engine is not None:
            self.engine.meter_stats(datapath, xid, [], False)
        return xid

    def hello(self, datapath, meter_id, pps, burst, more=()) -> None:
        pass

    def set_meters(self, datapath, meters) -> None:
        pass

    def port_desc(self, datapath) -> None:
        pass

    def role_request(self, datapath, role, generation) -> None:
        if self.engine is not None:
            self.engine.role_reply(datapath, role)


def close_connection(datapath) -> None:
    """os-ken's close (DEAD_DISPATCHER, no more writes) and both directions of the socket shut."""
    import socket
    closer = getattr(datapath, "close", None)
    if closer is not None:
        closer()
    sock = getattr(datapath, "socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
