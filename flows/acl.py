"""Security groups as stateful flows: conntrack per port, rules committed with their key as ct_mark.

For a port P with security groups, on P's host (ofport o, conntrack zone o — per port, so two
ports never share connection state, whatever their tenants' addresses):

    egress   10 port security -> 11: ct(zone=o, table=12)
             12: +inv drop; established/related with ct_mark = a key of one of P's rules -> on;
                 +new matching an egress rule R -> ct(commit, zone=o, ct_mark=R.key) -> on
    ingress  40 L2 to P -> reg4=o -> 45: ct(zone=o, table=46) (non-IP straight out)
             46: the same, with ingress rules and output to o
Anything else is dropped. IPv6 goes the same way (rules of ethertype ipv6; a remote group's
IPv6 members are its ports' configured and link-local addresses); neighbour discovery skips
conntrack (it is not connection traffic: port security checks it, table 10, and
advertisements to P go straight out), as ARP does. Because established traffic is admitted only while the rule that
admitted it exists (its key is the mark), deleting a rule cuts the connections it allowed.

Remote-group rules use conjunctive matches: clause 1 is (port, protocol, ports) per rule,
clause 2 is one flow per member address shared by every rule that names the group, so the
flow count grows as members + rules, not members x rules x ports. The established check is a
conjunction too: (port, ongoing) x (mark = rule key), one flow per port plus one per key.
"""
from __future__ import annotations

import functools
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

from flows import pipeline as P
from flows import qos as Q
from flows.cookies import make
from flows.drops import drop
from flows.flow import ETH_TYPE_IP, ETH_TYPE_IPV6, IP_PROTO_ICMPV6, ND_NA, Flow, make_match
from flows.index import bound_somewhere

CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NEW = (CT_NEW | CT_TRK, CT_NEW | CT_TRK)
ONGOING = (CT_TRK, CT_TRK | CT_NEW | CT_INV)     # established or related, either direction
INV = (CT_INV | CT_TRK, CT_INV | CT_TRK)
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
ETH_TYPE = {"ipv4": ETH_TYPE_IP, "ipv6": ETH_TYPE_IPV6}
PEER = {("egress", "ipv4"): "ipv4_dst", ("ingress", "ipv4"): "ipv4_src",
        ("egress", "ipv6"): "ipv6_dst", ("ingress", "ipv6"): "ipv6_src"}
PRIO_ND = 110
PRIO_INVALID, PRIO_ESTABLISHED, PRIO_RULE, PRIO_CONJ, PRIO_NON_IP = 300, 290, 200, 150, 90


@dataclass(frozen=True)
class TenantAcl:
    """A tenant's groups by name and the member addresses of each (host independent)."""
    groups: dict
    members: dict         # (group name, "ipv4" | "ipv6") -> sorted addresses of its member ports
    # (group name, peer field) -> the clause-2 matches of its members, built once per tenant
    # change rather than once per port of every host the change touches
    member_matches: dict = field(default_factory=dict)

    def matches(self, group: str, ethertype: str, peer: str) -> tuple:
        found = self.member_matches.get((group, peer))
        if found is None:
            found = self.member_matches[(group, peer)] = tuple(
                _member_match(peer, ip) for ip in self.members.get((group, ethertype), ()))
        return found


def tenant_acl(model, tenant: str) -> TenantAcl:
    """O(the tenant's groups and their members), through the model's index."""
    index = model.index
    groups = dict(index.groups_of_tenant.get(tenant, {}))
    names = set(groups) | {r.remote_sg for g in groups.values() for r in g.rules if r.remote_sg}
    members = {}
    for name in names:
        # only ports bound to a host (or standing by on one) are members
        ports = index.members.get((tenant, name))
        if ports:
            ports = {u: p for u, p in ports.items() if bound_somewhere(model, u)}
        if ports:
            members[(name, "ipv4")] = tuple(sorted({ip for p in ports.values() for ip in p.ipv4s},
                                                   key=_ip_key))
            members[(name, "ipv6")] = tuple(sorted({ip for p in ports.values()
                                                    for ip in (p.link_local, *p.ipv6s)}, key=_ip_key))
    return TenantAcl(groups, members)


@functools.lru_cache(maxsize=1 << 16)     # every member address is sorted again on each change
def _ip_key(ip: str):
    return int(ipaddress.ip_address(ip))


def has_acl(port) -> bool:
    return bool(port.port_security and port.security_groups)


def conj_id(rule_key: int, ofport: int) -> int:
    """Stable per (rule, port) on a host (distinct while a port's rule keys differ mod 32768)."""
    return ((rule_key & 0x7FFF) << 16) | (ofport & 0xFFFF)


def ongoing_id(ofport: int, table: int) -> int:
    """The conjunction admitting a port's established traffic in one direction."""
    return 0x80000000 | ((table & 0xFF) << 16) | (ofport & 0xFFFF)


def port_range(lo: int, hi: int) -> list:
    """Split [lo, hi] into (value, mask) prefixes for a masked match (a single port stays plain)."""
    if lo == hi:
        return [lo]
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 0x10000
        while size > hi - lo + 1:
            size >>= 1
        out.append(lo if size == 1 else (lo, (0xFFFF ^ (size - 1)) & 0xFFFF))
        lo += size
    return out


def _l4_matches(rule) -> list[dict]:
    """The protocol part of a rule as a list of alternative match dicts."""
    if rule.proto == "any":
        return [{}]
    six = rule.ethertype == "ipv6"
    proto = IP_PROTO_ICMPV6 if six and rule.proto == "icmp" else PROTO[rule.proto]
    base = {"ip_proto": proto}
    if rule.proto == "icmp":
        field = "icmpv6_type" if six else "icmpv4_type"
        return [dict(base, **{field: rule.icmp_type}) if rule.icmp_type is not None else base]
    if rule.port_min is None:
        return [base]
    field = "tcp_dst" if rule.proto == "tcp" else "udp_dst"
    hi = rule.port_max if rule.port_max is not None else rule.port_min
    return [dict(base, **{field: v}) for v in port_range(rule.port_min, hi)]


def _cidr(value: str | None):
    net = ipaddress.ip_network(value or "0.0.0.0/0")
    if net.prefixlen == 0:
        return None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def port_flows(acl: TenantAcl, port, ofport: int, members: dict) -> list[Flow]:
    """The ACL flows of port `port` (bound at `ofport`) on its host.

    Clause-2 (member address) entries are added to `members`, shared by all ports of the host:
    {(table, match): {conjunction id: group uuid}}; `member_flows` turns them into flows."""
    groups = tuple(acl.groups.get(name) for name in port.security_groups)
    rules = [r for g in groups for r in g.rules] if all(groups) else []
    flows = _own_flows(port, ofport, groups, rules)
    _register_members(acl, ofport, rules, members)
    return flows


# A port's own ACL flows depend only on the port, its ofport and its groups' rules (member
# addresses live in the shared clause-2 flows), so they are kept while those records stay the
# same objects: a change elsewhere in the tenant (a new member) rebuilds none of them.
_OWN: dict = {}
_OWN_MAX = 100_000


def _own_flows(port, ofport: int, groups: tuple, rules: list) -> list[Flow]:
    key = (port.uuid, ofport)
    hit = _OWN.get(key)
    if hit is not None and hit[0] is port and len(hit[1]) == len(groups) \
            and all(a is b for a, b in zip(hit[1], groups)):
        return hit[2]
    flows = _build_own_flows(port, ofport, rules)
    if len(_OWN) >= _OWN_MAX:
        _OWN.clear()
    _OWN[key] = (port, groups, flows)
    return flows


def _build_own_flows(port, ofport: int, rules: list) -> list[Flow]:
    owner_of = {r.key: r.uuid for r in rules}
    flows: list[Flow] = []
    # conntrack entry points
    for eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6):
        flows.append(make("acl", port.uuid, P.EGRESS_CT, 100, make_match(in_port=ofport, eth_type=eth_type),
                          (("ct", False, ofport, P.EGRESS_ACL, None),)))
        flows.append(make("acl", port.uuid, P.INGRESS_CT, 100,
                          make_match(**{P.REG_OUT: ofport}, eth_type=eth_type),
                          (("ct", False, ofport, P.INGRESS_ACL, None),)))
    flows.append(make("acl", port.uuid, P.INGRESS_CT, PRIO_ND,
                      make_match(**{P.REG_OUT: ofport}, eth_type=ETH_TYPE_IPV6, ip_proto=IP_PROTO_ICMPV6,
                                 icmpv6_type=ND_NA), (Q.out_action(port, ofport),)))
    flows.append(make("acl", port.uuid, P.INGRESS_CT, PRIO_NON_IP,
                      make_match(**{P.REG_OUT: ofport}), (Q.out_action(port, ofport),)))
    for direction, table, who, on in _DIRECTIONS(port, ofport):
        # established and related traffic passes while a rule of the port that admitted it
        # exists: (this port, ongoing) AND (mark = one of its rules' keys), as a conjunction
        if owner_of:
            oid = ongoing_id(ofport, table)
            flows.append(make("acl", port.uuid, table, PRIO_ESTABLISHED,
                              make_match(**who, ct_state=ONGOING), (("conjunction", oid, 0, 2),)))
            flows.append(make("acl", port.uuid, table, PRIO_ESTABLISHED, make_match(conj_id=oid), (on,)))
        clause1 = defaultdict(list)
        seen = set()
        for rule in sorted((r for r in rules if r.direction == direction), key=lambda r: r.key):
            commit = (("ct", True, ofport, None, rule.key), on)
            peer, eth_type = PEER[(direction, rule.ethertype)], ETH_TYPE[rule.ethertype]
            if rule.remote_sg is None:
                addr = _cidr(rule.remote_cidr)
                for l4 in _l4_matches(rule):
                    match = make_match(**who, ct_state=NEW, eth_type=eth_type, **l4,
                                       **({peer: addr} if addr else {}))
                    if match not in seen:       # the same traffic admitted twice: first rule wins
                        seen.add(match)
                        flows.append(make("acl", rule.uuid, table, PRIO_RULE, match, commit))
                continue
            cid = conj_id(rule.key, ofport)
            for l4 in _l4_matches(rule):
                clause1[make_match(**who, ct_state=NEW, eth_type=eth_type, **l4)].append(cid)
            flows.append(make("acl", rule.uuid, table, PRIO_CONJ,
                              make_match(conj_id=cid, eth_type=eth_type), commit))
        for match, cids in clause1.items():
            flows.append(make("acl", port.uuid, table, PRIO_CONJ, match,
                              tuple(("conjunction", c, 0, 2) for c in sorted(set(cids)))))
    return flows


def _DIRECTIONS(port, ofport: int):
    return (("egress", P.EGRESS_ACL, {"in_port": ofport}, ("goto", P.ARP_RESPONDER)),
            ("ingress", P.INGRESS_ACL, {P.REG_OUT: ofport}, Q.out_action(port, ofport)))


_MEMBER_MATCH: dict = {}


def _member_match(peer: str, ip: str) -> tuple:
    match = _MEMBER_MATCH.get((peer, ip))
    if match is None:
        if len(_MEMBER_MATCH) >= _OWN_MAX:
            _MEMBER_MATCH.clear()
        eth_type = ETH_TYPE_IPV6 if peer.startswith("ipv6") else ETH_TYPE_IP
        match = _MEMBER_MATCH[(peer, ip)] = make_match(ct_state=NEW, eth_type=eth_type, **{peer: ip})
    return match


@functools.lru_cache(maxsize=1 << 16)
def _mark_match(key: int) -> tuple:
    """Clause 2 of a port's established check: the connection's mark is rule `key`."""
    return make_match(ct_state=ONGOING, ct_mark=key)


def _register_members(acl: TenantAcl, ofport: int, rules: list, members: dict) -> None:
    """Clause 2 of the port's conjunctions: rule marks (established) and member addresses."""
    if not rules:
        return
    owner_of = {r.key: r.uuid for r in rules}
    for direction, table in (("egress", P.EGRESS_ACL), ("ingress", P.INGRESS_ACL)):
        oid = ongoing_id(ofport, table)
        for key in owner_of:
            members.setdefault((table, _mark_match(key)), {})[oid] = owner_of[key]
        for rule in rules:
            if rule.direction != direction or rule.remote_sg is None:
                continue
            peer = PEER[(direction, rule.ethertype)]
            cid = conj_id(rule.key, ofport)
            remote = acl.groups.get(rule.remote_sg)
            owner = remote.uuid if remote else None
            for match in acl.matches(rule.remote_sg, rule.ethertype, peer):
                members.setdefault((table, match), {})[cid] = owner


def member_flows(members: dict) -> list[Flow]:
    """One flow per (table, member address or rule mark) carrying clause 2 of every
    conjunction that needs it, shared by all ports of the host."""
    flows = []
    append, cached = flows.append, _MEMBER_FLOWS.get
    # in the order registered (deterministic: ports by ofport, rules and members sorted); the
    # compiler orders flows by table and planning by key, so no sort of the entries here
    for (table, match), cids in members.items():
        key = (table, match, tuple(cids.items()))
        flow = cached(key)
        if flow is None:
            flow = _member_flow(table, match, cids)
            if len(_MEMBER_FLOWS) >= _OWN_MAX:
                _MEMBER_FLOWS.clear()
            _MEMBER_FLOWS[key] = flow
        append(flow)
    return flows


# (table, match, its conjunctions with their owners) -> the clause-2 flow: every host of a
# tenant recompiles these flows on each change of the tenant's members, mostly the same ones
_MEMBER_FLOWS: dict = {}


def _member_flow(table: int, match: tuple, cids: dict) -> Flow:
    prio = PRIO_ESTABLISHED if match[0][0] == "ct_mark" else PRIO_CONJ
    owner = min((g for g in cids.values() if g), default=None)
    return make("acl", owner, table, prio, match, tuple(("conjunction", c, 1, 2) for c in sorted(cids)))


STRUCTURAL = (
    drop("conntrack-invalid", None, P.EGRESS_ACL, PRIO_INVALID, make_match(ct_state=INV)),
    drop("conntrack-invalid", None, P.INGRESS_ACL, PRIO_INVALID, make_match(ct_state=INV)),
)
