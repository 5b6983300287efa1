"""One live migration as the engine tracks it: requested, destination ready, activated, source cleaned.

The engine loop owns these records (controller/engine.py). The states a port goes through:

    requested   `weft port migrate P --to D`: no NIC with P's iface-id on D yet
    standby     D's NIC is in D's database; its one flow (flows/migration.py) is on its way
    ready       D committed that flow: an announcement from the VM will be seen
    active      the VM announced itself on D (RARP/GARP/first frame -> packet-in); D is the
                binding everywhere; the source NIC is cut off, waiting to be unplugged
    done        the source NIC left its host (kept as the port's last migration)

blackout_ms is measured by weftd, honestly and only for its own part: from the moment the
announcement's packet-in reached weftd to the last commit reply of the bundles that batch sent
(every host that sends to the port, the source and the destination). The guest's own pause
and the switch's packet-in latency come on top; `bench/bench_migration.py` measures the whole
from outside with pings.
"""
from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass
class Migration:
    port: str                       # port uuid
    source: str                     # host the port was bound to when the migration was asked
    dest: str
    requested: float = dataclasses.field(default_factory=time.monotonic)
    requested_at: float = dataclasses.field(default_factory=time.time)      # wall clock
    activated: float | None = None  # monotonic: the announcement's packet-in reached weftd
    trigger: str | None = None      # what activated it: "rarp", "arp", "ipv4", "frame"
    awaiting: dict | None = None    # host -> bundle id still to be committed for the activation
    unconfirmed: set = dataclasses.field(default_factory=set)   # hosts lost before they confirmed
    committed: float | None = None  # every bundle of the activation committed
    done: float | None = None       # the source NIC is gone

    @property
    def blackout_ms(self) -> float | None:
        if self.activated is None or self.committed is None:
            return None
        return round((self.committed - self.activated) * 1000, 2)

    def state(self, dest_ready: bool, dest_seen: bool) -> str:
        if self.done is not None:
            return "done"
        if self.activated is not None:
            return "active"
        return "ready" if dest_ready else "standby" if dest_seen else "requested"

    def view(self, dest_ready: bool = False, dest_seen: bool = False) -> dict:
        rel = lambda t: None if t is None else round((t - self.requested) * 1000, 2)   # noqa: E731
        return {"from": self.source, "to": self.dest, "state": self.state(dest_ready, dest_seen),
                "requested_at": self.requested_at, "trigger": self.trigger,
                "activated_ms": rel(self.activated), "committed_ms": rel(self.committed),
                "source_cleaned_ms": rel(self.done), "blackout_ms": self.blackout_ms,
                "unconfirmed_hosts": sorted(self.unconfirmed)}


ETH_TYPES = {0x8035: "rarp", 0x0806: "arp", 0x0800: "ipv4"}


def trigger_of(frame: bytes) -> str:
    """What kind of frame announced the VM (for the record)."""
    if len(frame) < 14:
        return "frame"
    eth_type = int.from_bytes(frame[12:14], "big")
    if eth_type == 0x8100 and len(frame) >= 18:
        eth_type = int.from_bytes(frame[16:18], "big")
    return ETH_TYPES.get(eth_type, "frame")


def eth_src(frame: bytes) -> str | None:
    return ":".join(f"{b:02x}" for b in frame[6:12]) if len(frame) >= 12 else None
