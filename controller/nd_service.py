"""IPv6 neighbour solicitations from VM ports answered from the model, by packet-out on the VM's host.

Why packet-in rather than flows (as the ARP responder does): turning a solicitation into an
advertisement means setting the advertisement's flags (Solicited, Override: the ICMPv6 word
after the checksum) and turning the source link-layer option into a target link-layer option.
Standard OpenFlow has no field for either; Open vSwitch has (`nd_reserved`, `nd_options_type`,
Ericsson experimenter fields) but os-ken, which encodes and parses weft's flows, knows neither.
An advertisement without the Solicited flag and the target option does not resolve a neighbour
reliably (RFC 4861 7.2.5), so weftd answers, as ovn-controller does for its `nd_na` action.
The router of a network with an IPv6 prefix answers for its `::1` there and for its
link-local (from the router MAC), with the Router flag set, so VMs resolve their gateway.
Only solicitations for addresses the network has reach the controller (table 20 matches each
target; the rest are dropped, never flooded), from the port's own MAC and addresses (port
security), through the per-host meter the DHCP packet-ins use and a token bucket per port.
"""
from __future__ import annotations

import logging
import time

from controller import dhcp, ndp
from topology.addresses import link_local, router_ip6

LOG = logging.getLogger(__name__)


def owners(model, tenant: str, network: str) -> dict[str, str]:
    """{IPv6 address: MAC} of the ports of network TENANT/NETWORK (link-locals included) and,
    when it is attached to a router and has an IPv6 prefix, of the router (router_addresses)."""
    found = router_addresses(model, tenant, network)
    for port in model.ports_of_network(tenant, network).values():
        found[port.link_local] = port.mac
        for ip in port.ipv6s:
            found[ip] = port.mac
    return found


def router_addresses(model, tenant: str, network: str) -> dict[str, str]:
    """{IPv6 address: router MAC} of the router of network TENANT/NETWORK on it: the prefix's
    ::1 and the router's link-local; empty without a router or an IPv6 prefix."""
    net = model.network(tenant, network)
    router = model.router(tenant, net.router) if net is not None and net.router else None
    if router is None or not net.cidr6:
        return {}
    return {router_ip6(net.cidr6): router.mac, link_local(router.mac): router.mac}


class NdService:
    def __init__(self, engine):
        self.engine = engine
        self.limiter = dhcp.RateLimiter()
        self.counters = {"requests": 0, "answers": 0, "ignored": 0, "limited": 0}
        self._cache: tuple = (None, {})     # (model, {(tenant, network): (owners, routers)})

    def _owners(self, model, port) -> tuple[dict[str, str], dict[str, str]]:
        if self._cache[0] is not model:
            self._cache = (model, {})
        key = (port.tenant, port.network)
        found = self._cache[1].get(key)
        if found is None:
            found = self._cache[1][key] = (owners(model, *key), router_addresses(model, *key))
        return found

    def answer(self, model, host: str, in_port: int, data: bytes) -> bytes | None:
        """The advertisement answering a solicitation that entered `host` at `in_port`, or None."""
        sol = ndp.parse_solicitation(data)
        if sol is None:
            return None
        self.counters["requests"] += 1
        port = model.port_at(host, in_port)
        if port is None or sol.eth_src != port.mac and port.port_security:
            self.counters["ignored"] += 1
            return None
        if not self.limiter.allow(port.uuid, time.monotonic()):
            self.counters["limited"] += 1
            return None
        found, routers = self._owners(model, port)
        mac = found.get(sol.target)
        frame = ndp.advertisement(sol, mac, router=sol.target in routers) if mac else None
        self.counters["answers" if frame else "ignored"] += 1
        return frame

    def packet_in(self, datapath, in_port: int, data: bytes) -> None:
        host = self.engine.host_of_dpid(datapath.id)
        frame = self.answer(self.engine.effective_model(), host, in_port, data)
        if frame is None:
            return
        parser, ofp = datapath.ofproto_parser, datapath.ofproto
        datapath.send_msg(parser.OFPPacketOut(
            datapath=datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
            actions=[parser.OFPActionOutput(in_port, 0)], data=frame))
