"""`weft trace`: one packet from a port walked through its host's tables and across the tunnel, with a verdict.

Pure: it is given the flows of each host (compiled ones, or those dumped from the switches
for `--installed`) through a function, the hosts' tunnel addresses and the model, and uses
the tracer's simulated switch (flows/tracer.py) table by table. A packet to an address of
the source's own subnet is preceded, as a VM would do it, by its ARP request walked through
the same tables (the ARP responder answers it, or drops it when no port has the address); a
destination outside the subnet goes to the router's MAC.

The verdict is "delivered" (to which port on which host) or "dropped" with a reason: the
drop flow's own (its cookie names it, flows/drops.py), refined by what the model knows:
`security-group` names the port and its groups (egress: the sender's, at its host; ingress:
the receiver's, reg4 on the receiving host), `port-security` says which source field the
port may not send, a destination that only another tenant has is `isolation`, a TTL that
runs out at a router is `ttl-expired`, and a table holding no flow for the packet (possible
on a switch whose flows were removed by hand) is `no-flow`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from flows import cookies
from flows import pipeline as P
from flows.flow import CONTROLLER, IN_PORT, Flow
from flows.tracer import (PIPELINE_FIELDS, Switch, arp_request, icmp_echo, icmpv6, ipv4, ipv6,
                          to_text)

SRC_PORT = 40000                 # the source port of traced TCP/UDP packets
PROTOS = ("tcp", "udp", "icmp")


@dataclass
class HostStep:
    """One table a packet visited on one host, in walk order."""
    phase: str                   # "arp" (resolving the destination) or "packet"
    host: str
    table: int
    flow: Flow | None
    packet: dict                 # integer-valued fields as the flow saw them
    note: str = ""


@dataclass
class Walk:
    steps: list[HostStep] = field(default_factory=list)
    deliveries: list[tuple[str, int]] = field(default_factory=list)    # (host, ofport)
    drops: list[HostStep] = field(default_factory=list)              # the last step of each drop
    tunnels: list[tuple[str, str, int]] = field(default_factory=list)  # (from, to, vni)


class Walker:
    """Walks packets through the switches of several hosts joined by the tunnel mesh."""

    def __init__(self, flows_of, tunnel_ips: dict[str, str], max_hops: int = 1):
        self.flows_of = flows_of                 # host -> iterable of Flow
        self.tunnel_ips = dict(tunnel_ips)
        self.host_by_ip = {ip: h for h, ip in self.tunnel_ips.items()}
        self.switches: dict[str, Switch] = {}
        self.max_hops = max_hops

    def switch(self, host: str) -> Switch:
        sw = self.switches.get(host)
        if sw is None:
            sw = self.switches[host] = Switch(self.flows_of(host))
        return sw

    def walk(self, host: str, packet: dict, in_port: int, phase: str = "packet") -> Walk:
        out = Walk()
        queue = [(host, dict(packet), in_port, 0)]
        while queue:
            at, pkt, port, hops = queue.pop(0)
            steps: list = []
            outputs = self.switch(at).trace(pkt, port, steps)
            out.steps += [HostStep(phase, at, s.table, s.flow, s.packet, s.note) for s in steps]
            if not outputs and steps:
                out.drops.append(out.steps[-1])
            for o in outputs:
                if o.port != P.TUNNEL_OFPORT:
                    out.deliveries.append((at, o.port if o.port != IN_PORT else port))
                    continue
                target = self.host_by_ip.get(o.packet.get("tun_ipv4_dst"))
                vni = o.packet.get("tunnel_id")
                if target is None or vni is None or hops + 1 > self.max_hops:
                    out.drops.append(HostStep(phase, at, out.steps[-1].table, out.steps[-1].flow,
                                              out.steps[-1].packet, "tunnel-to-unknown-host"))
                    continue
                out.tunnels.append((at, target, vni))
                wire = {k: v for k, v in o.packet.items() if k not in PIPELINE_FIELDS}
                wire.update(tunnel_id=vni, tun_ipv4_dst=o.packet["tun_ipv4_dst"])
                if at in self.tunnel_ips:
                    wire["tun_ipv4_src"] = self.tunnel_ips[at]
                queue.append((target, wire, P.TUNNEL_OFPORT, hops + 1))
        return out

    def arp(self, host: str, in_port: int, mac: str, ip: str, target: str) -> tuple[str | None, Walk]:
        """The MAC the ARP responder gives for `target`, or None; and the walk of the request."""
        req = arp_request(mac, ip, target)
        w = Walk()
        steps: list = []
        outputs = self.switch(host).trace(req, in_port, steps)
        w.steps = [HostStep("arp", host, s.table, s.flow, s.packet, s.note) for s in steps]
        for o in outputs:
            if o.port == in_port and o.packet.get("arp_op") == 2:
                return o.packet.get("arp_sha"), w
        if not outputs and w.steps:
            w.drops.append(w.steps[-1])
        return None, w


# -- the trace of one request ------------------------------------------------------------------

@dataclass
class Trace:
    """What `weft trace` answers (before rendering)."""
    source: object               # Port
    host: str
    ofport: int
    packet: dict                 # as the VM sends it (text values)
    dst_text: str
    dst_port: object = None      # the Port the destination names, if any (any tenant)
    steps: list[HostStep] = field(default_factory=list)
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    tunnels: list[tuple[str, str, int]] = field(default_factory=list)
    verdict: str = "dropped"
    reason: str | None = None
    detail: str = ""
    groups: list[str] = field(default_factory=list)
    drop_host: str | None = None
    drop_table: int | None = None


def check_request(proto: str, dport) -> None:
    """ValueError (one line) for a protocol or port that cannot be traced."""
    if proto not in PROTOS:
        raise ValueError(f"invalid proto {proto!r}: use tcp, udp or icmp")
    if proto == "icmp":
        if dport is not None:
            raise ValueError("--dport is for tcp and udp, not icmp")
        return
    if dport is None:
        raise ValueError(f"--dport is needed for {proto} (the destination port, 1-65535)")
    if isinstance(dport, bool) or not isinstance(dport, int) or not 1 <= dport <= 65535:
        raise ValueError(f"invalid dport {dport!r}: a whole number from 1 to 65535")


def find_destination(model, source, dst: str):
    """(destination IP or None, destination MAC or None, the Port it names or None).

    `dst` is an IP, a MAC or a port TENANT/NET/PORT. A port or IP of the source's own network
    comes first; otherwise any port in the model that holds it (another network or tenant)."""
    if dst.count("/") == 2:
        t, n, p = dst.split("/")
        port = model.port_by_ref(t, n, p)
        if port is None:
            raise LookupError(f"no port {dst}")
        six = not port.ipv4s
        return (port.ipv6s[0] if six else port.ipv4s[0]) if port.ips else None, port.mac, port
    ours = model.ports_of_network(source.tenant, source.network).values()
    if _is_mac(dst):
        mac = dst.lower()
        port = next((p for p in ours if p.mac == mac), None) or next(
            (p for p in model.ports.values() if p.mac == mac), None)
        if port is None:
            raise LookupError(f"--dst {dst}: no port has this MAC (give an IP or TENANT/NET/PORT)")
        return (port.ipv4s[0] if port.ipv4s else (port.ipv6s[0] if port.ipv6s else None)), mac, port
    try:
        ip = str(ipaddress.ip_address(dst))
    except ValueError:
        raise ValueError(f"invalid --dst {dst!r}: give an IP, a MAC or TENANT/NET/PORT") from None
    port = next((p for p in ours if ip in p.ips), None) or next(
        (p for p in model.ports.values() if ip in p.ips), None)
    return ip, None, port


def _is_mac(text: str) -> bool:
    parts = text.split(":")
    return len(parts) == 6 and all(len(x) == 2 and all(c in "0123456789abcdefABCDEF" for c in x)
                                   for x in parts)


def trace(model, walker: Walker, source, host: str, ofport: int, dst: str, proto: str = "icmp",
          dport: int | None = None, src_ip: str | None = None, src_mac: str | None = None,
          ttl: int = 64) -> Trace:
    """Walk a packet from port `source` (bound at `ofport` of `host`) to `dst`; the verdict."""
    check_request(proto, dport)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 255:
        raise ValueError(f"invalid ttl {ttl!r}: a whole number from 1 to 255")
    ip, mac, dst_port = find_destination(model, source, dst)
    if ip is None:
        raise LookupError(f"--dst {dst}: the port has no IP address to send to")
    six = ":" in ip
    mine = source.ipv6s if six else source.ipv4s
    s_ip = src_ip or (mine[0] if mine else None)
    if s_ip is None:
        raise LookupError(f"{source.ref} has no IPv{'6' if six else '4'} address to send from "
                          f"(give --src-ip)")
    if (":" in s_ip) != six:
        raise ValueError(f"--src-ip {s_ip} and the destination {ip} are not of one IP version")
    s_mac = (src_mac or source.mac).lower()
    net = model.network_of(source)
    out = Trace(source, host, ofport, {"eth_src": s_mac, ("ipv6_src" if six else "ipv4_src"): s_ip,
                                       ("ipv6_dst" if six else "ipv4_dst"): ip}, dst, dst_port)
    router = model.router(net.tenant, net.router) if net is not None and net.router else None
    in_subnet = net is not None and any(ipaddress.ip_address(ip) in ipaddress.ip_network(c)
                                        for c in net.cidrs if (":" in c) == six)
    if mac is None:                  # what the VM would put as destination MAC
        if not in_subnet:
            if router is None:
                return _verdict(model, out, None, "no-route",
                                f"{ip} is outside {source.network}'s prefix and "
                                f"{source.tenant}/{source.network} has no router: the VM has no "
                                f"gateway to send it to")
            mac = router.mac
        elif six:
            owner = next((p for p in model.ports_of_network(source.tenant, source.network).values()
                          if ip in p.ips), None)
            mac = owner.mac if owner else (router.mac if router and ip.endswith("::1") else None)
            if mac is None:
                return _verdict(model, out, None, "unknown-neighbour",
                                f"no port of {source.tenant}/{source.network} has {ip}")
        else:
            mac, arp = walker.arp(host, ofport, s_mac, s_ip, ip)
            out.steps += arp.steps
            if mac is None:
                return _verdict(model, out, arp.drops[-1] if arp.drops else None)
    fields = {"ip_ttl": ttl} if not six else {}
    if proto == "icmp":
        pkt = (icmpv6(s_mac, mac, s_ip, ip) if six else icmp_echo(s_mac, mac, s_ip, ip, **fields))
    else:
        l4 = {f"{proto}_src": SRC_PORT, f"{proto}_dst": dport}
        number = 6 if proto == "tcp" else 17
        pkt = (ipv6(s_mac, mac, s_ip, ip, ip_proto=number, **l4) if six
               else ipv4(s_mac, mac, s_ip, ip, ip_proto=number, **fields, **l4))
    out.packet = dict(pkt)
    w = walker.walk(host, pkt, ofport)
    out.steps += w.steps
    out.tunnels = w.tunnels
    out.deliveries = [d for d in w.deliveries]
    if any(p != CONTROLLER for _h, p in out.deliveries):
        out.verdict, out.reason = "delivered", None
        return out
    if out.deliveries:
        out.verdict = "to-controller"
        return out
    return _verdict(model, out, w.drops[-1] if w.drops else None)


def _verdict(model, out: Trace, step: HostStep | None, reason: str | None = None,
             detail: str = "") -> Trace:
    """A dropped packet: the reason (the drop flow's, refined by the model) and its detail."""
    out.verdict = "dropped"
    if step is not None:
        out.drop_host, out.drop_table = step.host, step.table
        if step.note == "ttl-expired":
            reason, detail = "ttl-expired", "the TTL ran out at the router"
        elif step.flow is None:
            reason = "no-flow"
            detail = (f"table {step.table} ({P.TABLES[step.table].name if step.table in P.TABLES else '?'}) "
                      f"on {step.host} has no flow for this packet")
        else:
            reason = cookies.drop_reason(step.flow.cookie) or "no-flow"
            if reason == "no-flow":
                detail = f"a flow without actions in table {step.table} on {step.host}"
    out.reason = reason
    out.detail = detail
    if reason == "security-group" and step is not None:
        _security_group(model, out, step)
    elif reason == "port-security":
        _port_security(out)
    elif reason == "conntrack-invalid":
        out.detail = "conntrack marked the packet invalid (no valid connection state)"
    if reason in ("unknown-destination", "unknown-neighbour", "no-route", "no-flow") \
            and out.dst_port is not None and out.dst_port.tenant != out.source.tenant:
        out.reason = "isolation"
        out.detail = (f"{out.dst_text} is {out.dst_port.ref}, a port of tenant {out.dst_port.tenant}: "
                      f"nothing of tenant {out.source.tenant} reaches another tenant's network"
                      + (f" (dropped as {reason})" if reason else ""))
    elif reason in ("unknown-destination", "unknown-neighbour") and not out.detail:
        where = f" ({out.dst_port.ref}, network {out.dst_port.tenant}/{out.dst_port.network})" \
            if out.dst_port is not None else ""
        out.detail = (f"no port of {out.source.tenant}/{out.source.network} or its router's "
                      f"networks has {out.dst_text}{where}")
    elif reason == "no-route" and not out.detail:
        out.detail = f"the router has no route to {out.dst_text}"
    elif reason in ("router-address", "not-routed", "dad", "unclassified") and not out.detail:
        out.detail = {"router-address": "sent to the router's own address (it answers echo only)",
                      "not-routed": "IPv6 link-local or multicast is never routed",
                      "dad": "duplicate address detection stops at the port",
                      "unclassified": "the packet entered from no known port or network"}[reason]
    return out


def _security_group(model, out: Trace, step: HostStep) -> None:
    egress = step.table in (P.EGRESS_CT, P.EGRESS_ACL)
    ofport = step.packet.get("in_port") if egress else step.packet.get(P.REG_OUT)
    port = model.port_at(step.host, ofport) if ofport is not None else None
    if port is None:
        out.detail = f"no security group rule admits it (table {step.table} on {step.host})"
        return
    out.groups = [f"{port.tenant}/{g}" for g in port.security_groups]
    direction = "egress" if egress else "ingress"
    out.detail = (f"no {direction} rule of {port.ref}'s group(s) {', '.join(out.groups)} "
                  f"admits {_flow_text(out.packet)}")


def _port_security(out: Trace) -> None:
    port, pkt = out.source, out.packet
    if pkt.get("eth_src", "").lower() != port.mac:
        out.detail = f"source MAC {pkt.get('eth_src')} is not {port.ref}'s ({port.mac})"
        return
    src = pkt.get("ipv4_src") or pkt.get("ipv6_src")
    if src and src not in port.ips:
        out.detail = f"source IP {src} is not an address of {port.ref} ({', '.join(port.ips)})"
        return
    out.detail = f"{port.ref} may not send this packet (port security)"


def _flow_text(pkt: dict) -> str:
    proto = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}.get(pkt.get("ip_proto"), "ip")
    dst = pkt.get("ipv4_dst") or pkt.get("ipv6_dst")
    port = pkt.get("tcp_dst") or pkt.get("udp_dst")
    return f"{proto} to {dst}" + (f" port {port}" if port else "")


def packet_text(fields: dict) -> dict:
    """Integer-valued packet fields as text (MACs, addresses), for showing a step."""
    return {k: to_text(k, v) if isinstance(v, int) else v for k, v in fields.items()}


