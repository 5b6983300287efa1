"""The swarm checker: every emulated host's flow table against the flows compiled for it from the same model.

The model checked against is the northbound snapshot with the bindings the swarm itself
reports (which NIC with which iface-id sits on which host, at which ofport) — not weftd's
view of them — plus the NICs unplugged since (a port whose NIC left its host stays parked
there with no ofport, as weft's engine keeps it). Each compiled flow is encoded as the
flow-mod weftd sends (`controller.ofencode`); a host's expected digest is the XOR of
`lab.swarm_switch.flow_digest` over (table, priority, cookie, match + instructions bytes),
the same digest the emulated switch keeps for what it was sent. Equal digests: equal
tables. For a host that differs, `diff_host` names the flows missing and extra.
"""
from __future__ import annotations

import dataclasses

from controller import ofencode
from flows import compiler
from lab import swarm_ofwire as W
from lab.swarm_switch import flow_digest
from topology.model import Binding, Model


def flow_entry(flow) -> tuple[int, int, int, int]:
    """(table, priority, cookie, digest) of a compiled flow, as the switch keeps it."""
    body = ofencode.flow_add(flow)[W.FLOW_MOD_BODY:]
    return flow.table, flow.priority, flow.cookie, flow_digest(flow.table, flow.priority, flow.cookie, body)


def with_bindings(model: Model, swarm_bindings: dict[str, dict[str, int]],
                  parked: dict[str, str] | None = None) -> Model:
    """`model` whose bindings are the swarm's: {host: {iface-id: ofport}}; `parked` = {port: host}
    of NICs unplugged (bound there without an ofport while the port exists)."""
    bindings = {}
    for port, host in (parked or {}).items():
        if port in model.ports and host in model.hosts:
            bindings[port] = Binding(port, host, compiler.PENDING)
    for host, nics in swarm_bindings.items():
        if host not in model.hosts:
            continue
        for iface_id, ofport in nics.items():
            if iface_id in model.ports:
                bindings[iface_id] = Binding(iface_id, host, ofport)
    return dataclasses.replace(model, bindings=bindings, standby={})


class Expected:
    """Compiled flows per host of one model, compiled on demand and kept."""

    def __init__(self, model: Model, base: "Expected | None" = None, changed=()):
        """With `base` (an earlier model's): its index is updated, not rebuilt, and its hosts not
        in `changed` keep their compiled flows."""
        self.model = model
        self.index = base.index.updated(model) if base is not None else compiler.CompilerIndex(model)
        self._entries: dict[str, list] = {}
        if base is not None:
            self._entries = {h: e for h, e in base._entries.items() if h not in changed}

    def affected(self, base: "Expected") -> set[str]:
        """Hosts whose flows may differ from `base`'s model (weft's own cheap superset)."""
        return compiler.affected_hosts(base.model, self.model, base.index, self.index)

    def entries(self, host: str) -> list[tuple[int, int, int, int]]:
        if host not in self._entries:
            self._entries[host] = sorted(flow_entry(f) for f in compiler.compile_host(self.index, host))
        return self._entries[host]

    def digest(self, host: str) -> int:
        d = 0
        for entry in self.entries(host):
            d ^= entry[3]
        return d

    def digests(self, hosts) -> dict[str, int]:
        return {h: self.digest(h) for h in hosts}


def diff_host(expected: list, got: list) -> dict:
    """Flows missing from the switch and extra on it, as (table, priority, cookie) with counts."""
    want, have = set(map(tuple, expected)), set(map(tuple, got))
    return {"expected": len(want), "installed": len(have),
            "missing": sorted(e[:3] for e in want - have)[:10], "extra": sorted(e[:3] for e in have - want)[:10],
            "missing_count": len(want - have), "extra_count": len(have - want)}


def check(swarm, expected: Expected, hosts=None) -> tuple[int, dict]:
    """Compare every host's table (or `hosts`'); returns (flows checked, {host: diff} of mismatches)."""
    tables = swarm.tables(hosts)
    bad, checked = {}, 0
    for host, t in tables.items():
        if host not in expected.model.hosts:
            continue
        checked += len(expected.entries(host))
        if t["digest"] != expected.digest(host):
            bad[host] = None
    if bad:
        detail = swarm.tables(list(bad), entries=True)
        for host in bad:
            bad[host] = diff_host(expected.entries(host), detail[host]["entries"])
    return checked, bad
