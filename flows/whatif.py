"""Policy what-if: observed traffic replayed against a security group as it would be after a change.

`changed_model` gives the model with rules of one group deleted or added (nothing is written
anywhere); `connections` turns the collectors' per-service rows (`Aggregator.flows`: src, dst,
proto, port = the server's port, to_server) into connections (client, server, proto, port) with
the bytes of both directions; `replay` judges each connection with flows/sgverdict.py under the
model before and after and returns the ones whose verdict changes.

Which side started a connection: for TCP, UDP and SCTP the collectors' service classification
says (the side holding the service port is the server). ICMP has no ports and the samples do not
say which packets are requests, so an ICMP row A -> B is read as A pinging B (an echo request),
unless A may not start it under the current policy while B may start B -> A and that row was
seen too: then A -> B is the replies of B's pings and is counted with that connection.
Rows whose address family is not known from the ports are judged as IPv4 when both sides have
an IPv4 address. Rows with an unknown or aggregated endpoint (`other`, a MAC) are skipped and
counted; an `unknown:IP` endpoint is an address outside weft (only the port's side is checked).
"""
from __future__ import annotations

import dataclasses
import ipaddress

from flows.sgverdict import PROTO_NUMBER, Evaluator, Verdict

PORTED = ("tcp", "udp", "sctp")


def changed_model(model, group, delete_ids=(), add_rules=()):
    """`model` with `group` (a SecurityGroup of it) losing the rules `delete_ids` and gaining
    `add_rules`; the index is updated for that one group (O(1) in the model's size)."""
    rules = tuple(r for r in group.rules if r.uuid not in set(delete_ids)) + tuple(add_rules)
    new = dataclasses.replace(group, rules=rules)
    after = dataclasses.replace(model, security_groups={**model.security_groups, group.uuid: new})
    after.__dict__["index"] = model.index.updated(security_groups=[(group, new)])
    return after


@dataclasses.dataclass
class Connection:
    client: str                 # a port ref (TENANT/NET/PORT) or unknown:IP
    server: str
    proto: str
    port: int | None
    bytes: int = 0
    packets: int = 0
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, row: dict) -> None:
        self.bytes += row.get("bytes") or 0
        self.packets += row.get("packets") or 0
        for key, pick in (("first_seen", min), ("last_seen", max)):
            value = row.get(key)
            if value is not None:
                mine = getattr(self, key)
                setattr(self, key, value if mine is None else pick(mine, value))


class _Endpoints:
    """Labels of the collectors' rows -> (Port or None, address), per model."""

    def __init__(self, model):
        self.model = model
        self._found: dict = {}

    def port(self, label: str):
        parts = label.split("/")
        return self.model.port_by_ref(*parts) if len(parts) == 3 else None

    def _families(self, label: str):
        """(Port or None, IPv4 addresses, IPv6 addresses) of a label, or None (not an IP endpoint)."""
        found = self._found.get(label, False)
        if found is False:
            port = self.port(label)
            if port is not None:
                found = (port, port.ipv4s, port.ipv6s)
            else:
                ip = self.outside(label)
                found = None if ip is None else (None, (ip,), ()) if ":" not in ip else (None, (), (ip,))
            self._found[label] = found
        return found

    @staticmethod
    def outside(label: str) -> str | None:
        if not label.startswith("unknown:"):
            return None
        try:
            return str(ipaddress.ip_address(label[len("unknown:"):]))
        except ValueError:
            return None         # a MAC: not an IP endpoint

    def addresses(self, a: str, b: str):
        """(port a, ip a, port b, ip b) in one family, or None when the labels do not allow it."""
        fa, fb = self._families(a), self._families(b)
        if fa is None or fb is None:
            return None
        for fam in (1, 2):
            if fa[fam] and fb[fam]:
                return fa[0], fa[fam][0], fb[0], fb[fam][0]
        return None


def _judge(evaluator: Evaluator, endpoints: _Endpoints, client: str, server: str, proto: str,
           port: int | None) -> Verdict | None:
    found = endpoints.addresses(client, server)
    if found is None:
        return None
    pc, ipc, ps, ips = found
    number = PROTO_NUMBER.get(proto)
    if number is None:
        try:
            number = int(proto)
        except (TypeError, ValueError):
            return None
    if proto == "icmp" and ":" in ips:
        number = PROTO_NUMBER["icmpv6"]
    return evaluator.connection(pc, ipc, ps, ips, number, port if proto in PORTED else None)


def connections(rows: list[dict], before_model) -> tuple[list[Connection], int]:
    """The connections the rows belong to (both directions merged) and how many rows were skipped."""
    evaluator, endpoints = Evaluator(before_model), _Endpoints(before_model)
    out: dict[tuple, Connection] = {}
    skipped = 0
    portless = {}
    for row in rows:
        proto, src, dst = row.get("proto"), row.get("src"), row.get("dst")
        if proto is None or not src or not dst or endpoints.addresses(src, dst) is None:
            skipped += 1
            continue
        if proto in PORTED:
            client, server = (src, dst) if row.get("to_server", True) else (dst, src)
            key = (client, server, proto, row.get("port"))
        else:
            portless[(src, dst, proto)] = row
            continue
        out.setdefault(key, Connection(*key)).add(row)
    for (src, dst, proto), row in portless.items():
        client, server = src, dst
        if (dst, src, proto) in portless:
            forward = _judge(evaluator, endpoints, src, dst, proto, None)
            backward = _judge(evaluator, endpoints, dst, src, proto, None)
            if not forward.allowed and backward.allowed:     # the replies of dst's pings
                client, server = dst, src
        key = (client, server, proto, None)
        out.setdefault(key, Connection(*key)).add(row)
    return list(out.values()), skipped


def _rule_text(side) -> str | None:
    if side.rule is None:
        return None
    group, rule = side.rule
    return f"{group.ref} {rule.direction} {rule.uuid}"


def _verdict_view(v: Verdict) -> dict:
    return {"allowed": v.allowed, "reason": v.reason, "egress_rule": _rule_text(v.egress),
            "ingress_rule": _rule_text(v.ingress)}


def replay(rows: list[dict], before, after, group=None) -> dict:
    """Judge every connection of `rows` under `before` and `after`; return the changed ones:
    {"blocked": [...], "allowed": [...], "connections": n, "skipped_rows": n}, each entry
    {client, server, proto, port, bytes, packets, first_seen, last_seen, before, after}.
    With `group` (the only SecurityGroup whose rules differ, memberships equal), connections
    where neither side's port uses it are not judged again: their verdict cannot change."""
    conns, skipped = connections(rows, before)
    ev_before, ev_after = Evaluator(before), Evaluator(after)
    ends_before, ends_after = _Endpoints(before), _Endpoints(after)
    blocked, allowed = [], []
    for c in conns:
        if group is not None and not any(
                p is not None and p.tenant == group.tenant and group.name in p.security_groups
                for p in (ends_before.port(c.client), ends_before.port(c.server))):
            continue
        vb = _judge(ev_before, ends_before, c.client, c.server, c.proto, c.port)
        va = _judge(ev_after, ends_after, c.client, c.server, c.proto, c.port)
        if vb is None or va is None or vb.allowed == va.allowed:
            continue
        entry = {**dataclasses.asdict(c), "before": _verdict_view(vb), "after": _verdict_view(va)}
        (blocked if vb.allowed else allowed).append(entry)
    order = lambda e: (-e["bytes"], e["client"], e["server"], e["proto"], e["port"] or 0)  # noqa: E731
    return {"blocked": sorted(blocked, key=order), "allowed": sorted(allowed, key=order),
            "connections": len(conns), "skipped_rows": skipped}
