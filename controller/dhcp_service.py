"""DHCP on the hypervisor's own switch: packet-ins from VM ports answered from the model, by packet-out.

Why packet-in rather than flows: a DHCP answer carries per-port options (address, prefix,
gateway, DNS, MTU, lease times) and a BOOTP body that OpenFlow cannot build; weft already
knows every port, so the controller answers. Two limits keep a flood from swamping it: an
OpenFlow meter per host (flows/pipeline.DHCP_METER, installed by the engine) and a token
bucket per port here. Only the port's own MAC reaches the controller (port security).
"""
from __future__ import annotations

import ipaddress
import logging
import time

from controller import dhcp
from flows.pipeline import DHCP_SERVER_MAC as SERVER_MAC   # answers on networks without a router
from flows.pipeline import UNDERLAY_MTU, vm_mtu

LOG = logging.getLogger(__name__)


def lease_for(model, port, tunnel: str, underlay_mtu: int = UNDERLAY_MTU) -> dhcp.Lease | None:
    """What the model gives `port`, or None (no DHCP on its network)."""
    net = model.network_of(port)
    if net is None or not net.dhcp or not port.ipv4s:
        return None
    router = model.router(net.tenant, net.router) if net.router else None
    server_ip = net.gateway or str(ipaddress.ip_network(net.cidr)[1])
    return dhcp.Lease(mac=port.mac, ip=port.ipv4s[0], prefixlen=int(net.cidr.split("/")[1]),
                      server_ip=server_ip, server_mac=router.mac if router else SERVER_MAC,
                      router=net.gateway if router else None, dns=tuple(net.dns),
                      mtu=vm_mtu(tunnel, underlay_mtu))


class DhcpService:
    def __init__(self, engine, tunnel: str = "vxlan", underlay_mtu: int = UNDERLAY_MTU):
        self.engine = engine
        self.tunnel = tunnel
        self.underlay_mtu = underlay_mtu
        self.limiter = dhcp.RateLimiter()
        self.counters = {"requests": 0, "answers": 0, "ignored": 0, "limited": 0}

    def packet_in(self, datapath, in_port: int, data: bytes) -> None:
        request = dhcp.parse_request(data)
        if request is None:
            return
        self.counters["requests"] += 1
        host = self.engine.host_of_dpid(datapath.id)
        model = self.engine.effective_model()
        port = model.port_at(host, in_port)
        if port is None:
            self.counters["ignored"] += 1
            return
        if not self.limiter.allow(port.uuid, time.monotonic()):
            self.counters["limited"] += 1
            return
        frame = dhcp.answer(request, lease_for(model, port, self.tunnel, self.underlay_mtu))
        if frame is None:
            self.counters["ignored"] += 1
            LOG.info("DHCP from %s on %s port %s (%s) not answered", request.chaddr, host,
                     in_port, port.ref)
            return
        parser, ofp = datapath.ofproto_parser, datapath.ofproto
        datapath.send_msg(parser.OFPPacketOut(
            datapath=datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
            actions=[parser.OFPActionOutput(in_port, 0)], data=frame))
        self.counters["answers"] += 1
