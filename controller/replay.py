"""Send what a NIC's host dropped for it back through its new flows: while the datapath's cache was stale, and while it was away.

Open vSwitch's datapath caches each translation as a megaflow. Traffic to a NIC that left its
host (a VM restarting, a NIC plugged again) keeps arriving there over the tunnel and is cached
as "addressed to nobody, drop" (a sample of it reaches weftd: flows/drops.py). When the NIC is
back and its port-up bundle is committed, that cached drop stays in use until a revalidator
re-translates it, and Open vSwitch starts a revalidation round at most every 5 ms
(ofproto-dpif-upcall.c, udpif_revalidator), one of which the port's own addition has just
started: the NIC's first packets are dropped for up to ~5 ms after its flows are in
(bench/anatomy_port_up.py measures it). A packet-out is translated against the flow tables as
they are now, not through that cache.

So a drop sample that (1) a flow dropped as `unknown-destination`, (2) is addressed to the MAC of
a NIC whose port-up bundle went to its host within FRESH_S, in that NIC's network, and (3)
carries the whole packet (a sample holds the first DROP_SAMPLE_BYTES) is sent back to the host
as a packet-out that resumes the pipeline at the table that dropped it, with the registers the
packet had there (in_port kept): the rest of the pipeline (the port's ingress security groups
included) decides again, with the new flows. A packet dropped by the switch's own rules never
qualifies: only the cache's stale answer does. The packet-out goes on the bundle's connection
after its commit, so the switch handles it with the new flows in place. It carries
`REG_REPLAYED`: if the new flows drop it again, its sample is a drop like any other, never sent
back a second time (a loop bounded only by the drop meter). A NIC that leaves its host is no
longer fresh there (`unmark`): what the host drops for it then is its flows' answer.

The same goes, earlier, for what a NIC's own host dropped while the NIC was away: a VM
restarting, a NIC plugged again (`hold`). A drop sample as above, addressed to a NIC parked on
that host (its port still bound there, its NIC not numbered: flows/compiler.PENDING), is held:
the latest packet of each sender (`sender`: its address and ports, or its ICMP echo id, so a
sender's retries replace each other), for at most HOLD_PER_NIC senders per NIC, HOLD_NICS NICs
per host and HOLD_TOTAL NICs in all (the one held for longest makes room: a few MB at most).
When the NIC's port-up bundle is written, what was held for it less than HOLD_S before goes
back as above, right behind the bundle (`mark` takes it). So each sender's latest request sent
while the NIC was away (a TCP SYN, an ARP request, a ping) is delivered when it is back,
instead of waiting for the sender to try again (TCP: a second). Held packets are still drop
samples (the switch did drop them: `weft traffic drops` lists them); they are counted as held,
and as released when sent back. Only the NIC's own host holds: a NIC that comes back on
another host gets what is sent to it from then on.

Only sampled packets can be replayed, and a flood at the NIC while it was away has emptied the
drop meter's bucket (100 a second by default): right after a port-up's bundle weftd sets the
meter again (`driver.refill`), which Open vSwitch does with a full bucket (dpif-netdev's
meter_set), so the burst's worth of packets that meet the stale cache are all sampled. A port-up
thus lets at most one more burst of samples through.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time

from flows import cookies
from flows import pipeline as P
from flows.compiler import PENDING

FRESH_S = 1.0                       # how long after its port-up a NIC's drops may be replayed
UNKNOWN_DESTINATION = cookies.DROP_FLAG | cookies.DROP_REASONS["unknown-destination"]
OFPP_IN_PORT_16 = 0xFFF8            # NXAST_RESUBMIT_TABLE's 16-bit "the packet's in_port"
RESTORED = tuple(f"reg{n}" for n in range(16)) + ("tunnel_id",)
HOLD_S = 1.0                        # how old a packet held for a parked NIC may be when it is back
HOLD_PER_NIC = 16                   # senders a NIC's held packets come from (the latest kept)
HOLD_NICS = 64                      # NICs a host holds packets for (expired ones make room)
HOLD_TOTAL = 1024                   # NICs held for on all hosts (the one held for longest makes room)


@dataclasses.dataclass(frozen=True)
class Held:
    """A drop sample held for a parked NIC: when, in which network, and its packet-out, encoded
    when held (`encode`), so sending it back costs the port-up's path nothing more."""
    at: float                         # monotonic, when weftd took it
    vni: int
    wire: bytes


@dataclasses.dataclass(frozen=True)
class Fresh:
    """A NIC whose port-up bundle went to its host at `since` (monotonic)."""
    port: str
    vni: int
    since: float


class FreshNics:
    """host -> {MAC: Fresh}. Marked by whichever thread writes a port-up's bundle (the engine's,
    or the one an armed bundle fires from), read by the OpenFlow loop's; a packet-out written
    after the bundle on its connection is handled after the bundle's commit. Writers hold the
    lock; a reader's dict lookups need none (each is atomic in CPython), so marking costs the
    host's own few entries, never a copy of every host's."""

    PRUNE_AT = 32                       # a host's entries, expired ones dropped past this many

    def __init__(self):
        self._lock = threading.Lock()
        self._by_host: dict[str, dict[bytes, Fresh]] = {}
        self._held: dict[str, dict[bytes, collections.OrderedDict]] = {}  # host -> MAC -> sender -> Held
        self._held_order: collections.OrderedDict = collections.OrderedDict()   # (host, MAC), oldest first
        self.counters = {"held": 0, "released": 0}

    def mark(self, host: str, mac: str, port: str, vni: int) -> list[Held]:
        """The NIC's port-up bundle is written: it is fresh, and what its host held for it (in
        its network, less than HOLD_S old) is handed over, once, to go back right behind."""
        now = time.monotonic()
        key = bytes.fromhex(mac.replace(":", ""))
        with self._lock:
            nics = self._by_host.get(host)
            if nics is None or len(nics) >= self.PRUNE_AT:
                nics = {m: f for m, f in (nics or {}).items() if now - f.since < FRESH_S}
                self._by_host[host] = nics
            nics[key] = Fresh(port, vni, now)
            queue = self._unhold(host, key)
            if not queue:
                return []
            out = [h for h in queue.values() if h.vni == vni and now - h.at < HOLD_S]
            self.counters["released"] += len(out)
            return out

    def hold(self, host: str, mac: bytes, vni: int, data: bytes, wire: bytes) -> bool:
        """Keep a drop sample for a NIC parked on the host; False if the NIC is fresh meanwhile
        (its bundle just went: send it back now) or the host holds for HOLD_NICS others."""
        now = time.monotonic()
        with self._lock:                    # with `mark`'s: a sample is either taken or sent back
            fresh = self._by_host.get(host, {}).get(mac)
            if fresh is not None and now - fresh.since < FRESH_S:
                return False
            nics = self._held.setdefault(host, {})
            queue = nics.get(mac)
            if queue is None:
                if len(nics) >= HOLD_NICS:
                    for m in [m for m, q in nics.items() if now - next(reversed(q.values())).at >= HOLD_S]:
                        self._unhold(host, m)
                    if len(nics) >= HOLD_NICS:
                        return False
                if len(self._held_order) >= HOLD_TOTAL:
                    self._unhold(*next(iter(self._held_order)))
                nics = self._held.setdefault(host, {})      # unholding the last one removed it
                queue = nics[mac] = collections.OrderedDict()
                self._held_order[(host, mac)] = None
            key = sender(data)
            queue.pop(key, None)                    # its latest, last in order
            queue[key] = Held(now, vni, wire)
            if len(queue) > HOLD_PER_NIC:
                queue.popitem(last=False)
            self.counters["held"] += 1
            return True

    def unmark(self, host: str, port: str) -> None:
        """The port's NIC left the host (unplugged, moved): its drops there are the flows' answer."""
        with self._lock:
            nics = self._by_host.get(host)
            if nics is not None and any(f.port == port for f in nics.values()):
                self._by_host[host] = {m: f for m, f in nics.items() if f.port != port}

    def forget(self, host: str) -> None:
        """The host refused a bundle or went away: what it drops is its flows' answer again."""
        with self._lock:
            self._by_host.pop(host, None)
            for mac in list(self._held.get(host, ())):
                self._unhold(host, mac)

    def _unhold(self, host: str, mac: bytes):
        """What is held for this NIC, no longer held (under the lock); None if nothing."""
        nics = self._held.get(host)
        queue = nics.pop(mac, None) if nics else None
        if queue is not None:
            del self._held_order[(host, mac)]
            if not nics:
                del self._held[host]
        return queue

    def get(self, host: str, mac: bytes) -> Fresh | None:
        nics = self._by_host.get(host)
        fresh = nics.get(mac) if nics is not None else None
        return fresh if fresh is not None and time.monotonic() - fresh.since < FRESH_S else None


def _may_go_back(host: str | None, cookie: int, match: dict, data: bytes, total_len: int) -> bool:
    """Dropped as addressed to nobody here, the whole packet, never sent back before."""
    return host is not None and cookie >> 56 == UNKNOWN_DESTINATION and 14 <= len(data) == total_len \
        and not match.get(P.REG_REPLAYED)


def wanted(engine, host: str | None, cookie: int, match: dict, data: bytes, total_len: int):
    """The engine's Fresh for the NIC this drop sample may be replayed to, or None."""
    if not _may_go_back(host, cookie, match, data, total_len):
        return None
    fresh = engine.fresh_port(host, bytes(data[:6]))
    if fresh is None or match.get(P.REG_NET, match.get("tunnel_id")) != fresh.vni:
        return None
    return fresh


def sender(frame: bytes) -> bytes:
    """Who sent an Ethernet frame, as its retries all say it: source MAC, and for IPv4 and
    IPv6 the source address, protocol and ports (ICMP and ICMPv6 echo: the id)."""
    src, ethertype = bytes(frame[6:12]), bytes(frame[12:14])
    if ethertype == b"\x08\x00" and len(frame) >= 34:
        l4, proto, addr = 14 + (frame[14] & 0x0F) * 4, frame[23], frame[26:30]
    elif ethertype == b"\x86\xdd" and len(frame) >= 54:
        l4, proto, addr = 54, frame[20], frame[22:38]
    else:
        return src + ethertype
    ident = frame[l4:l4 + 4] if proto in (6, 17) else frame[l4 + 4:l4 + 6] if proto in (1, 58) else b""
    return src + bytes(addr) + bytes([proto]) + bytes(ident)


def parked_vni(model, lookup, host: str | None, cookie: int, match: dict, data: bytes,
               total_len: int) -> int | None:
    """The VNI to hold this drop sample under, if it may be held: as `wanted` asks, but
    addressed to a NIC parked on this host (`lookup`: the drop service's (VNI, MAC) -> port)."""
    if not _may_go_back(host, cookie, match, data, total_len):
        return None
    vni = match.get(P.REG_NET, match.get("tunnel_id"))
    port = lookup.get((vni, bytes(data[:6]).hex(":")))
    bound = model.bindings.get(port.uuid) if port is not None else None
    if bound is None or bound.host != host or bound.ofport != PENDING:
        return None
    return vni


def encode(datapath, table: int, match: dict, data: bytes) -> bytes:
    """`packet_out` encoded, to be held: its xid is 0, outside the driver's (an error about it
    is logged as unknown, nothing more)."""
    msg = packet_out(datapath, table, match, data)
    msg.xid = 0
    msg.serialize()
    return bytes(msg.buf)


def release(driver, datapath, held: list[Held]) -> None:
    """Send held packets back: one write of what was encoded when each was held (~20 us a
    packet-out in os-ken, not spent here, on the thread that just wrote the NIC's bundle)."""
    driver.write(datapath, b"".join(h.wire for h in held))


def packet_out(datapath, table: int, match: dict, data: bytes):
    """The packet-out that resumes the packet at `table` with its registers, from its in_port."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    actions = [parser.OFPActionSetField(**{name: match[name]}) for name in RESTORED if match.get(name)]
    actions.append(parser.OFPActionSetField(**{P.REG_REPLAYED: 1}))
    actions.append(parser.NXActionResubmitTable(in_port=OFPP_IN_PORT_16, table_id=table))
    return parser.OFPPacketOut(datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=match["in_port"],
                               actions=actions, data=bytes(data))
