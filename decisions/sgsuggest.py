"""Least-privilege security groups from observed traffic: a pure function of the model and flow rows.

Input: the collectors' per-service rows (`Aggregator.flows()`: src, dst, proto, port = the
server's port, to_server) and a model snapshot. Each row is turned into a *connection*
(client, server, protocol, server port): the bytes of both directions of one service count
once, and ephemeral client ports never appear (the collectors keep only the service port).

Clustering, in one sentence: **VMs fall in the same group when they have the same role
signature — the set of (direction, protocol, port, peer group) they used — where peers outside
the tenant (or unknown) count as one "external" peer**; it is computed as the coarsest stable
partition (start with one class, split every class by its members' signatures over the current
classes, repeat until nothing splits: at most one round per class, each O(connections)).

Rules of a group come straight from its signature: each (direction, protocol, port, peer
group) is a rule whose remote is that peer's suggested group (`remote_sg`); external peers
become CIDR rules (`/32` or `/128` per address, collapsed to their covering prefix beyond
MAX_CIDRS addresses); consecutive ports with the same peer merge into a range. Ports and
protocols are exact: nothing is allowed that was not seen, except what a rule cannot express
(family: the collectors' service key has no address family, so a TCP/UDP rule between VMs is
given for each family both groups have addresses in; an IP protocol other than TCP, UDP and
ICMP gets an `any` rule to that peer; ICMP is allowed without a type, in every direction it
was seen).

The report says, per suggested group, the connections it covers, and per current group of the
tenant the rules no observed connection used (a rule is used when a connection's client is a
member and the rule is egress, or the server is a member and it is ingress, with a matching
protocol, port and remote).

Not turned into rules (counted under `skipped`): rows without an IP protocol, multicast,
broadcast, link-local and unspecified addresses (neighbour discovery, DHCP, mDNS: security
groups do not govern them), addresses that are MACs, the aggregator's `other` row (detail
folded away under memory pressure), ports no longer in the model, rows of other tenants.
A port of the tenant without port security cannot be a member of a group: as a peer it is
matched by its addresses (CIDR rules), like a port of another tenant.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import NamedTuple

EXTERNAL = "external"
MAX_CIDRS = 8                # external addresses per (group, direction, protocol, port) before collapsing
MAX_LISTED = 100             # connections listed per suggested group (all are counted)
RULE_PROTO = {"tcp": ("tcp", None), "udp": ("udp", None), "icmp": ("icmp", "ipv4"),
              "icmpv6": ("icmp", "ipv6")}
CLUSTERING = ("VMs with the same role signature share a group: the set of (direction, protocol, "
              "port, peer group) they used, peers outside the tenant counting as one external peer")


class Conn(NamedTuple):
    """One observed service: client -> server on (proto, port); ends are ('vm', ref) or ('ext', ip)."""
    client: tuple
    server: tuple
    proto: str
    port: int | None


@dataclass
class _Stats:
    bytes: int = 0
    packets: int = 0
    rows: int = 0


def _family(ip: str) -> str:
    return "ipv6" if ":" in ip else "ipv4"


class _Resolver:
    """Row labels -> connection ends for one tenant (cached per label)."""

    def __init__(self, model, tenant: str):
        self.model, self.tenant, self.cache = model, tenant, {}

    def __call__(self, label):
        hit = self.cache.get(label)
        if hit is None:
            hit = self.cache[label] = self._resolve(label)
        return hit

    def _resolve(self, label):
        """('vm', ref) | ('ext', ip) | ('skip', reason)."""
        if not isinstance(label, str) or label == "other":
            return ("skip", "folded")
        if label.startswith("unknown:"):
            text = label[len("unknown:"):]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                return ("skip", "not-ip")
            if ip.is_multicast or ip.is_link_local or ip.is_unspecified or \
                    (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
                return ("skip", "multicast-or-link-local")
            return ("ext", str(ip))
        parts = label.split("/")
        port = self.model.port_by_ref(*parts) if len(parts) == 3 else None
        if port is None:
            return ("skip", "gone")
        if port.tenant == self.tenant and port.port_security:
            return ("vm", port.ref)
        return ("ext-port", port.ref)       # another tenant's, or without port security: by address


def connections(rows, model, tenant: str) -> tuple[dict, dict]:
    """({Conn: _Stats}, skipped {reason: {"rows", "bytes"}}) of the tenant's rows."""
    resolve = _Resolver(model, tenant)
    conns: dict[Conn, _Stats] = {}
    skipped: dict[str, dict] = {}

    def skip(reason, row):
        s = skipped.setdefault(reason, {"rows": 0, "bytes": 0})
        s["rows"] += 1
        s["bytes"] += row.get("bytes") or 0

    for row in rows:
        if row.get("proto") is None:
            skip("not-ip", row)
            continue
        src, dst = resolve(row["src"]), resolve(row["dst"])
        if src[0] == "skip" or dst[0] == "skip":
            skip(src[1] if src[0] == "skip" else dst[1], row)
            continue
        if src[0] != "vm" and dst[0] != "vm":
            skip("other-tenant", row)
            continue
        ends = []
        for end in (src, dst):
            if end[0] == "ext-port":       # a port of another tenant: its addresses, one end each
                port = model.port_by_ref(*end[1].split("/"))
                ends.append([("ext", ip) for ip in port.ips])
            else:
                ends.append([end])
        to_server = row.get("to_server") is not False
        first = True                        # the row's bytes count once, on its first address
        for a in ends[0]:
            for b in ends[1]:
                client, server = (a, b) if to_server else (b, a)
                key = Conn(client, server, row["proto"], row.get("port"))
                st = conns.get(key)
                if st is None:
                    st = conns[key] = _Stats()
                if first:
                    st.bytes += row.get("bytes") or 0
                    st.packets += row.get("packets") or 0
                    first = False
                st.rows += 1
    return conns, skipped


def _elements(conns) -> dict[str, list]:
    """{vm ref: [(direction, proto, port, peer vm ref or None (external), conn)]}."""
    out: dict[str, list] = {}
    for c in conns:
        if c.client[0] == "vm":
            out.setdefault(c.client[1], []).append(
                ("egress", c.proto, c.port, c.server[1] if c.server[0] == "vm" else None, c))
        if c.server[0] == "vm":
            out.setdefault(c.server[1], []).append(
                ("ingress", c.proto, c.port, c.client[1] if c.client[0] == "vm" else None, c))
    return out


def roles(elements: dict[str, list]) -> dict[str, int]:
    """{vm: class}: the coarsest partition in which members of a class have the same signature
    {(direction, proto, port, class of the peer | external)} (partition refinement)."""
    vms = sorted(elements)
    cls = {v: 0 for v in vms}
    count = 1
    while True:
        ids: dict = {}
        new = {}
        for v in vms:
            sig = (cls[v], frozenset((d, p, n, EXTERNAL if x is None else cls[x])
                                     for d, p, n, x, _c in elements[v]))
            new[v] = ids.setdefault(sig, len(ids))
        if len(ids) == count:
            return new
        cls, count = new, len(ids)


_TAIL = re.compile(r"[-_.]?\d+$")


def _stem(names: list[str]) -> str | None:
    stems = {_TAIL.sub("", n) for n in names}
    if len(stems) == 1:
        stem = stems.pop()
        return stem or None
    prefix = names[0]
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    prefix = _TAIL.sub("", prefix).rstrip("-_.")
    return prefix if len(prefix) >= 2 else None


def group_names(classes: list[list[str]], prefix: str) -> list[str]:
    """PREFIX-STEM per class (STEM: the members' common name without its number), unique."""
    taken, out, next_n = set(), [], {}
    for i, members in enumerate(classes, 1):
        stem = _stem([m.rsplit("/", 1)[-1] for m in members]) or f"g{i}"
        base = f"{prefix}-{stem}"[:56].rstrip("-_.")
        name, n = base, next_n.get(base, 2)
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        next_n[base] = n
        taken.add(name)
        out.append(name)
    return out


def _ranges(ports: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for p in sorted(set(ports)):
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [(a, b) for a, b in out]


def _cidrs(addresses: set[str]) -> list[str]:
    """Host prefixes of the addresses, collapsed; beyond MAX_CIDRS, their covering prefix."""
    nets = list(ipaddress.collapse_addresses(ipaddress.ip_network(a) for a in addresses))
    if len(nets) > MAX_CIDRS:
        ints = [int(n.network_address) for n in nets] + [int(n.broadcast_address) for n in nets]
        lo, hi, bits = min(ints), max(ints), nets[0].max_prefixlen
        length = bits - (lo ^ hi).bit_length()
        nets = [ipaddress.ip_network((lo >> (bits - length) << (bits - length), length))]
    return [str(n) for n in nets]


def _families(model, refs) -> set[str]:
    fams = set()
    for ref in refs:
        port = model.port_by_ref(*ref.split("/"))
        if port is not None:
            fams.update(_family(ip) for ip in port.ips)
    return fams


def suggest(rows, model, tenant: str, prefix: str = "suggested") -> dict:
    """The suggestion for `tenant` (see the module's docstring); `prefix` names the groups."""
    conns, skipped = connections(rows, model, tenant)
    elements = _elements(conns)
    cls = roles(elements)
    by_class: dict[int, list[str]] = {}
    for v in sorted(cls):
        by_class.setdefault(cls[v], []).append(v)
    classes = sorted(by_class.values(), key=lambda ms: ms[0])
    names = group_names(classes, prefix)
    group_of = {v: names[i] for i, ms in enumerate(classes) for v in ms}
    families = {names[i]: _families(model, ms) for i, ms in enumerate(classes)}

    groups = []
    for i, members in enumerate(classes):
        name = names[i]
        rules = _rules(name, members, elements, conns, group_of, families)
        covered = {e[4] for m in members for e in elements[m]}
        listed = sorted(covered, key=lambda c: (-conns[c].bytes, _conn_text(c)))
        groups.append({
            "name": name, "ref": f"{tenant}/{name}", "members": members, "rules": rules,
            "covers": {"connections": len(covered), "bytes": sum(conns[c].bytes for c in covered)},
            "connections": [_conn_view(c, conns[c]) for c in listed[:MAX_LISTED]]})
    return {"tenant": tenant, "clustering": CLUSTERING, "groups": groups,
            "connections": len(conns), "bytes": sum(s.bytes for s in conns.values()),
            "unused": unused_rules(model, tenant, conns),
            "unobserved_ports": _unobserved(model, tenant, elements),
            "skipped": skipped}


def _rules(name, members, elements, conns, group_of, families) -> list[dict]:
    """The group's rules from its members' elements (identical signatures; external addresses
    and statistics are the union over the members)."""
    local: dict[tuple, dict] = {}      # (direction, proto, peer group) -> {port: [conns]}
    ext: dict[tuple, dict] = {}        # (direction, proto, port) -> {"addrs": set, "conns": []}
    for m in members:
        for d, p, n, peer, c in elements[m]:
            if peer is not None:
                local.setdefault((d, p, group_of[peer]), {}).setdefault(n, []).append(c)
            else:
                end = c.server if d == "egress" else c.client
                e = ext.setdefault((d, p, n), {"addrs": set(), "conns": []})
                e["addrs"].add(end[1])
                e["conns"].append(c)
    out = []
    for (d, p, peer), by_port in local.items():
        rproto, fam = RULE_PROTO.get(p, ("any", None))
        fams = [fam] if fam else sorted(families[name] & families[peer]) or ["ipv4"]
        for lo, hi, cs in _port_runs(rproto, by_port):
            for f in fams:
                out.append(_rule(d, rproto, lo, hi, f, cs, conns, remote_sg=peer))
    by_cidrs: dict[tuple, dict] = {}
    for (d, p, n), e in ext.items():
        for f in ("ipv4", "ipv6"):
            addrs = {a for a in e["addrs"] if _family(a) == f}
            if addrs:
                cs = [c for c in e["conns"] if _family((c.server if d == "egress" else c.client)[1]) == f]
                key = (d, p, f, tuple(_cidrs(addrs)))
                by_cidrs.setdefault(key, {}).setdefault(n, []).extend(cs)
    for (d, p, f, cidrs), by_port in by_cidrs.items():
        rproto, fam = RULE_PROTO.get(p, ("any", None))
        if fam is not None and fam != f:
            continue
        for lo, hi, cs in _port_runs(rproto, by_port):
            for cidr in cidrs:
                net = ipaddress.ip_network(cidr)
                mine = [c for c in cs if ipaddress.ip_address(
                    (c.server if d == "egress" else c.client)[1]) in net]
                out.append(_rule(d, rproto, lo, hi, f, mine, conns, remote_cidr=cidr))
    out.sort(key=lambda r: (r["direction"], r["proto"], r["port_min"] or 0,
                            r["remote_sg"] or r["remote_cidr"], r["ethertype"]))
    return out


def _port_runs(rproto: str, by_port: dict) -> list[tuple]:
    """[(port_min, port_max, conns)]: consecutive ports merged (tcp/udp); none for others."""
    if rproto not in ("tcp", "udp"):
        return [(None, None, [c for cs in by_port.values() for c in cs])]
    return [(lo, hi, [c for n in range(lo, hi + 1) for c in by_port.get(n, ())])
            for lo, hi in _ranges([n for n in by_port if n is not None])]


def _rule(d, proto, lo, hi, family, cs, conns, remote_sg=None, remote_cidr=None) -> dict:
    unique = set(cs)
    return {"direction": d, "proto": proto, "port_min": lo, "port_max": hi, "icmp_type": None,
            "remote_sg": remote_sg, "remote_cidr": remote_cidr, "ethertype": family,
            "connections": len(unique), "bytes": sum(conns[c].bytes for c in unique)}


def _conn_text(c: Conn) -> str:
    return f"{c.client[1]} -> {c.server[1]} {c.proto}" + (f"/{c.port}" if c.port is not None else "")


def _conn_view(c: Conn, st: _Stats) -> dict:
    return {"client": c.client[1], "server": c.server[1], "proto": c.proto, "port": c.port,
            "bytes": st.bytes, "packets": st.packets}


def _unobserved(model, tenant, elements) -> list[str]:
    refs = [p.ref for net in model.networks_of_tenant(tenant)
            for p in model.ports_of_network(tenant, net).values() if p.port_security]
    return sorted(r for r in refs if r not in elements)


# ---- what the current groups allow that no connection used --------------------------------

def _addresses(model, end, family: str) -> list:
    if end[0] == "ext":
        return [ipaddress.ip_address(end[1])] if _family(end[1]) == family else []
    port = model.port_by_ref(*end[1].split("/"))
    return [ipaddress.ip_address(ip) for ip in port.ips if _family(ip) == family] if port else []


def rule_matches(model, tenant: str, rule, conn: Conn) -> bool:
    """Whether `rule` (of a group the relevant end is a member of) admits `conn`."""
    mine, peer = (conn.client, conn.server) if rule.direction == "egress" else (conn.server, conn.client)
    if mine[0] != "vm":
        return False
    if rule.proto != "any":
        want, fam = RULE_PROTO.get(conn.proto, (None, None))
        if want != rule.proto or (fam is not None and fam != rule.ethertype):
            return False
        if rule.port_min is not None and (conn.port is None or
                                          not rule.port_min <= conn.port <= rule.port_max):
            return False
    elif conn.proto in ("icmp", "icmpv6") and RULE_PROTO[conn.proto][1] != rule.ethertype:
        return False
    if conn.proto not in ("icmp", "icmpv6") and not (_addresses(model, mine, rule.ethertype) and
                                                     _addresses(model, peer, rule.ethertype)):
        return False        # family-blind rows: a family counts only where both ends have it
    if rule.remote_sg is not None:
        if peer[0] != "vm":
            return False
        port = model.port_by_ref(*peer[1].split("/"))
        return port is not None and port.tenant == tenant and rule.remote_sg in port.security_groups
    net = ipaddress.ip_network(rule.remote_cidr or ("::/0" if rule.ethertype == "ipv6" else "0.0.0.0/0"))
    return any(a in net for a in _addresses(model, peer, rule.ethertype))


def unused_rules(model, tenant: str, conns) -> list[dict]:
    """Per current group of the tenant: its rules that no observed connection used."""
    by_member: dict[str, list] = {}
    for c in conns:
        for end in (c.client, c.server):
            if end[0] == "vm":
                by_member.setdefault(end[1], []).append(c)
    out = []
    for name, group in sorted(model.security_groups_of_tenant(tenant).items()):
        members = model.members_of_group(tenant, name)
        refs = {p.ref for p in members.values()}
        seen = {c for ref in refs for c in by_member.get(ref, ())}

        def used(rule) -> bool:
            for c in seen:
                end = c.client if rule.direction == "egress" else c.server
                if end[0] == "vm" and end[1] in refs and rule_matches(model, tenant, rule, c):
                    return True
            return False

        out.append({"group": group.ref, "members": len(members), "rules": len(group.rules),
                    "unused": [_rule_view(r) for r in group.rules if not used(r)]})
    return out


def _rule_view(r) -> dict:
    return {"id": r.uuid, "direction": r.direction, "proto": r.proto, "port_min": r.port_min,
            "port_max": r.port_max, "icmp_type": r.icmp_type, "remote_sg": r.remote_sg,
            "remote_cidr": r.remote_cidr, "ethertype": r.ethertype}
