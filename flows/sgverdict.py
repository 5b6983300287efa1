"""Security-group verdicts computed from the model, with the semantics flows/acl.py enforces.

A new connection from a client to a server passes when the client's egress and the server's
ingress each admit it (stateful: replies then follow the connection). A side admits it when:

- it is not a port of weft (an address outside), or its port has port security off or no
  security group (flows/acl.py `has_acl`: no ACL flows at all);
- otherwise some rule of the port's groups (their union) in that direction and of the
  packet's address family matches: protocol (`any` matches every IP protocol of the family;
  `icmp` is ICMPv6 for ipv6 rules), destination port within the rule's range, ICMP type when
  the rule names one, and the peer's address within the rule's remote CIDR (none or a /0 is
  anyone) or among the addresses of the remote group's member ports (IPv6: configured and
  link-local). A port naming a group that does not exist admits nothing (acl.port_flows).

Ports of two tenants never reach each other (isolation). Which rule admits a connection is
reported the way the switch picks it: address rules (priority 200) before remote-group rules
(150); among rules of one kind, the lowest key.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from flows.acl import has_acl

ICMP_ECHO = {"ipv4": 8, "ipv6": 128}
PROTO_NUMBER = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}


@dataclass(frozen=True)
class Side:
    """One side's answer: admitted or not, the rule that admits it (None: no ACL there), why."""
    allowed: bool
    rule: object = None
    why: str = ""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Side
    ingress: Side

    @property
    def reason(self) -> str:
        for side in (self.egress, self.ingress):
            if not side.allowed:
                return side.why
        return "allowed"


@lru_cache(maxsize=4096)
def _network(cidr: str):
    return ipaddress.ip_network(cidr)


@lru_cache(maxsize=65536)
def _address(ip: str):
    return ipaddress.ip_address(ip)


def family(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def rule_matches(rule, peer_ip: str, proto: int, port: int | None, icmp_type: int | None,
                 ethertype: str, members) -> bool:
    """Does `rule` admit traffic of IP protocol number `proto` to destination `port` (or with
    ICMP type `icmp_type`) with `peer_ip` on the other side? `members(group)` gives the member
    addresses of a remote group for `ethertype`."""
    if rule.ethertype != ethertype:
        return False
    if rule.proto != "any":
        wanted = PROTO_NUMBER["icmpv6" if ethertype == "ipv6" and rule.proto == "icmp" else rule.proto]
        if proto != wanted:
            return False
        if rule.proto == "icmp":
            if rule.icmp_type is not None and rule.icmp_type != icmp_type:
                return False
        elif rule.port_min is not None:
            hi = rule.port_max if rule.port_max is not None else rule.port_min
            if port is None or not rule.port_min <= port <= hi:
                return False
    if rule.remote_sg is not None:
        return peer_ip in members(rule.remote_sg)
    if not rule.remote_cidr:
        return True
    net = _network(rule.remote_cidr)
    return net.prefixlen == 0 or _address(peer_ip) in net


class Evaluator:
    """Verdicts over one model snapshot (member addresses computed once per group)."""

    def __init__(self, model):
        self.model = model
        self._members: dict = {}
        self._rules: dict = {}      # (tenant, groups, direction) -> ordered (rule, group) or a why-not

    def members(self, tenant: str, group: str, ethertype: str) -> frozenset:
        key = (tenant, group, ethertype)
        found = self._members.get(key)
        if found is None:
            ports = self.model.members_of_group(tenant, group).values()
            if ethertype == "ipv4":
                found = frozenset(ip for p in ports for ip in p.ipv4s)
            else:
                found = frozenset(ip for p in ports for ip in (p.link_local, *p.ipv6s))
            self._members[key] = found
        return found

    def side(self, port, direction: str, peer_ip: str, proto: int, dport: int | None,
             icmp_type: int | None, ethertype: str) -> Side:
        """What `port` (None: an address outside weft) says about this connection in `direction`."""
        if port is None:
            return Side(True, None, "not a port of weft")
        if not has_acl(port):
            return Side(True, None, f"port {port.ref} has no security group" if port.port_security
                        else f"port {port.ref} has port security off")
        candidates = self._candidates(port, direction)
        if isinstance(candidates, str):
            return Side(False, None, candidates)
        for rule, group in candidates:
            if rule_matches(rule, peer_ip, proto, dport, icmp_type, ethertype,
                            lambda name: self.members(port.tenant, name, ethertype)):
                return Side(True, (group, rule), "")
        names = ", ".join(f"{port.tenant}/{g}" for g in port.security_groups)
        return Side(False, None, f"no {direction} rule of {names} admits it")

    def _candidates(self, port, direction: str):
        """The rules of the port's groups in `direction`, in the switch's order of preference
        (address rules first, then by key), or why there are none to look at."""
        key = (port.tenant, port.security_groups, direction)
        found = self._rules.get(key)
        if found is None:
            groups = [self.model.security_group(port.tenant, g) for g in port.security_groups]
            missing = [g for g, sg in zip(port.security_groups, groups) if sg is None]
            if missing:
                found = f"port {port.ref} names missing group(s) {', '.join(missing)}"
            else:
                found = [(r, g) for _c, _k, r, g in sorted(
                    ((r.remote_sg is not None, r.key, r, g) for g in groups for r in g.rules
                     if r.direction == direction), key=lambda c: c[:2])]
            self._rules[key] = found
        return found

    def connection(self, client, client_ip: str, server, server_ip: str, proto: int,
                   dport: int | None = None, icmp_type: int | None = None) -> Verdict:
        """Would a new connection client -> server:dport pass? `client`/`server` are Ports or
        None for addresses outside weft; ICMP without a type is judged as an echo request."""
        ethertype = family(server_ip)
        if family(client_ip) != ethertype:
            raise ValueError(f"{client_ip} and {server_ip} are of different address families")
        if client is not None and server is not None and client.tenant != server.tenant:
            why = f"tenants {client.tenant} and {server.tenant} are isolated"
            return Verdict(False, Side(False, None, why), Side(False, None, why))
        if icmp_type is None and proto == PROTO_NUMBER["icmpv6" if ethertype == "ipv6" else "icmp"]:
            icmp_type = ICMP_ECHO[ethertype]
        egress = self.side(client, "egress", server_ip, proto, dport, icmp_type, ethertype)
        ingress = self.side(server, "ingress", client_ip, proto, dport, icmp_type, ethertype)
        return Verdict(egress.allowed and ingress.allowed, egress, ingress)
