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

    @property
    def empty(self) -> bool:
        return not self.delete and not self.add


def plan(installed_keys, desired_flows) -> Plan:
    """Compare what a flow-stats dump returned, as `Flow.key`s, with the desired flows.

    A flow's cookie digests its table, priority, match and actions, so equal keys mean equal
    flows and an unchanged switch gets an empty plan. Repeated keys on either side count once;
    distinct desired flows sharing a key (a digest collision) are all added.
    """
    installed = set()
    for key in installed_keys:
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(v, int) for v in key)):
            raise ValueError(f"installed key {key!r} is not (table, priority, cookie)")
        installed.add(key)
    desired: dict[tuple, list[Flow]] = {}
    for flow in desired_flows:
        same = desired.setdefault(flow.key, [])
        if flow not in same:
            same.append(flow)
    delete = sorted({(table, cookie) for table, _, cookie in installed - desired.keys()})
    deleted = set(delete)
    add = []
    for key in sorted(desired):
        if key not in installed or (key[0], key[2]) in deleted:
            flows = desired[key]
            if len(flows) > 1:
                flows = sorted(flows, key=lambda f: (repr(f.match), repr(f.actions)))
            add.extend(flows)
    return Plan(delete, add)
