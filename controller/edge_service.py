"""North-south upkeep in weftd: the edge router's MAC (ARP over the provider port) and gateway failover.

Why the controller resolves the edge MAC: OpenFlow cannot turn an IPv4 packet into an ARP
request, and translated packets leave with the edge router's MAC as destination
(flows/northsouth.py). So, for each external network in use, weftd sends an ARP probe
(sender 0.0.0.0, from RESOLVER_MAC) for the network's gateway out of the provider port of a
connected host that holds its translations: every second while the MAC is unknown, every
30 s after. The reply reaches weftd through that host's table 20 (metered like DHCP) and the
MAC is written to the store (`Network.gateway_mac`), from where every host's flows follow —
so a replaced edge router is picked up within 30 s, and flows stay a function of the model.

Failover: a gateway host whose switch has been disconnected for FAILOVER_AFTER seconds (not
counted in weftd's first STARTUP_GRACE seconds, while every switch reconnects) hands
its routers' SNAT to the connected host with the provider that does the fewest
(`NorthboundStore.move_gateways`); connections through it are lost (conntrack is per host).
Only the active replica probes and moves. One thread; packet-ins only queue.
"""
from __future__ import annotations

import logging
import queue
import struct
import threading
import time

from flows import northsouth as NS
from topology.errors import WeftError

LOG = logging.getLogger(__name__)
PROBE_UNKNOWN, PROBE_KNOWN = 1.0, 30.0      # seconds between probes
FAILOVER_AFTER = 3.0                        # seconds a gateway host may be gone before it moves
STARTUP_GRACE = 15.0                        # after weftd starts, switches are still reconnecting
ETH_ARP = b"\x08\x06"


def arp_probe(ip: str) -> bytes:
    """An ARP request for `ip` from RESOLVER_MAC with sender address 0.0.0.0 (no cache pollution)."""
    mac = bytes.fromhex(NS.RESOLVER_MAC.replace(":", ""))
    target = bytes(int(x) for x in ip.split("."))
    return (b"\xff" * 6 + mac + ETH_ARP + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
            + mac + b"\0\0\0\0" + b"\0" * 6 + target)


def parse_arp_reply(data: bytes) -> tuple[str, str] | None:
    """(sender MAC, sender IP) of an ARP reply frame, or None."""
    if len(data) < 42 or data[12:14] != ETH_ARP or struct.unpack("!H", data[20:22])[0] != 2:
        return None
    mac = ":".join(f"{b:02x}" for b in data[22:28])
    return mac, ".".join(str(b) for b in data[28:32])


def users(model) -> dict[str, list[str]]:
    """External network ref -> hosts that hold its translations (gateway hosts, then the hosts
    of ports with floating IPs), in the order probes should try them."""
    out: dict[str, list[str]] = {}
    for router in sorted(model.routers.values(), key=lambda r: r.uuid):
        if router.gw_network and router.gw_host:
            out.setdefault(router.gw_network, []).append(router.gw_host)
    for fip in sorted(model.floating_ips.values(), key=lambda f: f.uuid):
        binding = model.bindings.get(fip.port) if fip.port else None
        if binding is not None:
            out.setdefault(fip.network, []).append(binding.host)
    return out


class EdgeService:
    def __init__(self, engine, store):
        self.engine, self.store = engine, store
        self._replies: queue.Queue = queue.Queue(maxsize=1000)
        self._probed: dict[str, float] = {}         # network uuid -> monotonic time of last probe
        self._gone_since: dict[str, float] = {}     # gateway host -> monotonic time first seen gone
        self.counters = {"probes": 0, "replies": 0, "learned": 0, "failovers": 0}
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="edge", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # from os-ken's thread: queue only
    def packet_in(self, datapath, in_port: int, data: bytes) -> None:
        reply = parse_arp_reply(data)
        if reply is None:
            return
        host = self.engine.host_of_dpid(datapath.id)
        try:
            self._replies.put_nowait((host, in_port, *reply))
        except queue.Full:
            pass

    def _loop(self) -> None:
        while True:
            try:
                self._drain(timeout=0.5)
                if self.engine.active:
                    self._probe()
                    self._failover()
            except WeftError as exc:
                LOG.warning("north-south upkeep: %s (retrying)", exc)
            except Exception:
                LOG.exception("north-south upkeep failed")

    def _drain(self, timeout: float) -> None:
        try:
            item = self._replies.get(timeout=timeout)
        except queue.Empty:
            return
        while item is not None:
            self._learn(*item)
            try:
                item = self._replies.get_nowait()
            except queue.Empty:
                item = None

    def _learn(self, host, in_port: int, mac: str, ip: str) -> None:
        self.counters["replies"] += 1
        model = self.engine.effective_model()
        where = model.hosts.get(host)
        for net in model.networks.values():
            if net.external and net.gateway == ip and NS.provider_ofport(where, net.provider) == in_port:
                if net.gateway_mac != mac and self.store.set_gateway_mac(net.uuid, mac):
                    self.counters["learned"] += 1
                    LOG.info("edge router of %s (%s) is at %s", net.ref, ip, mac)
                return

    def _probe(self) -> None:
        model = self.engine.effective_model()
        now = time.monotonic()
        by_ref = {n.ref: n for n in model.networks.values() if n.external}
        for ref, hosts in sorted(users(model).items()):
            net = by_ref.get(ref)
            if net is None or not net.gateway:
                continue
            every = PROBE_KNOWN if net.gateway_mac else PROBE_UNKNOWN
            if now - self._probed.get(net.uuid, -1e9) < every:
                continue
            for host in hosts:
                dp = self.engine.datapath(host)
                ofport = NS.provider_ofport(model.hosts.get(host), net.provider)
                if dp is None or ofport is None:
                    continue
                parser, ofp = dp.ofproto_parser, dp.ofproto
                dp.send_msg(parser.OFPPacketOut(
                    datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                    actions=[parser.OFPActionOutput(ofport, 0)], data=arp_probe(net.gateway)))
                self.counters["probes"] += 1
                self._probed[net.uuid] = now
                break

    def _failover(self) -> None:
        model = self.engine.effective_model()
        now = time.monotonic()
        if now - self._started < STARTUP_GRACE:
            return              # a restarted weftd: its hosts are reconnecting, not gone
        gateway_hosts = {r.gw_host for r in model.routers.values() if r.gw_network and r.gw_host}
        # disconnected, or no longer a host at all (deleted)
        gone = {h for h in set(model.hosts) | gateway_hosts
                if h not in model.hosts or self.engine.datapath(h) is None}
        for host in list(self._gone_since):
            if host not in gone or host not in gateway_hosts:
                del self._gone_since[host]
        for host in sorted(gateway_hosts & gone):
            since = self._gone_since.setdefault(host, now)
            if now - since >= FAILOVER_AFTER:
                moved = self.store.move_gateways(host, exclude=gone)
                for m in moved:
                    LOG.warning("gateway of router %s moved from %s (disconnected) to %s",
                                m["router"], m["from"], m["to"])
                    self.counters["failovers"] += 1
                self._gone_since.pop(host, None)
