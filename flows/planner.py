"""Reconciliation: the flow-mods that turn a switch's installed flows into the desired ones."""
from __future__ import annotations

from dataclasses import dataclass

from flows.flow import Flow


@dataclass(frozen=True)
class Plan:
    """Send every delete (a cookie-masked OFPFC_DELETE of one table) before any add.

    `add` may contain flows that are already installed: a delete of (table, cookie) removes
    every flow of that table carrying the cookie, so a desired flow sharing it is re-added.
    """
    delete: list[tuple[int, int]]       # (table, cookie), sorted
    add: list[Flow]                     # sorted by (table, priority, cookie)
    # the installed keys no desired flow has: with `add`, what the plan does to the books
    # (installed - stale | add keys), without a pass over every installed key (a cookie-masked
    # delete removes only stale keys and desired ones, which `add` has again)
    stale: frozenset = frozenset()

    @property
    def empty(self) -> bool:
        return not self.delete and not self.add


def plan(installed_keys, desired_flows) -> Plan:
    """Compare what a flow-stats dump returned, as `Flow.key`s, with the desired flows.

    A flow's cookie digests its table, priority, match and actions, so equal keys mean equal
    flows and an unchanged switch gets an empty plan. Repeated keys on either side count once;
    distinct desired flows sharing a key (a digest collision) are all added.

    `installed_keys` given as a set is trusted (the engine's own books, built from checked
    dumps); any other iterable is checked key by key. Cost: O(installed + desired) plus
    sorting what changes, so planning an unchanged host is cheap.
    """
    if isinstance(installed_keys, (set, frozenset)):
        installed = installed_keys
    else:
        installed = set()
        for key in installed_keys:
            if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(v, int) for v in key)):
                raise ValueError(f"installed key {key!r} is not (table, priority, cookie)")
            installed.add(key)
    # one flow per key; the rare distinct flows sharing a key (a digest collision) aside
    desired: dict[tuple, Flow] = {}
    shared: dict[tuple, list[Flow]] = {}
    setdefault = desired.setdefault
    for flow in desired_flows:
        first = setdefault(flow.key, flow)
        if first is not flow and first != flow:
            same = shared.setdefault(flow.key, [first])
            if flow not in same:
                same.append(flow)
    stale = installed.difference(desired)
    delete = sorted({(table, cookie) for table, _, cookie in stale})
    if delete:
        deleted = set(delete)
        keys = [k for k in desired if k not in installed or (k[0], k[2]) in deleted]
    else:
        keys = [k for k in desired if k not in installed]
    keys.sort()
    add = []
    for key in keys:
        flows = shared.get(key)
        if flows is None:
            add.append(desired[key])
        else:
            add.extend(sorted(flows, key=lambda f: (repr(f.match), repr(f.actions))))
    return Plan(delete, add, frozenset(stale))
