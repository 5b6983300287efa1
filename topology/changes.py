"""What changed between two consecutive model snapshots, as the store knows it (its tracked rows).

A snapshot built from the IDL's tracked changes carries the keys it changed per collection
(`ports`, `networks`, `hosts`, `routers`, `security_groups`, `bindings`, `tenants`), relative
to the snapshot of the previous version. Whoever compares consecutive snapshots (the engine)
uses them instead of diffing every record: O(change) instead of O(model). A snapshot without
them (a full rebuild, a hand-built model) means "compare yourself".
"""
from __future__ import annotations

COLLECTIONS = ("tenants", "networks", "ports", "hosts", "bindings", "routers", "security_groups",
               "floating_ips")


def record_changes(model, changes: dict[str, set]) -> None:
    """Attach to `model` the keys changed, per collection, since the previous version."""
    model.__dict__["_changes"] = {name: frozenset(changes.get(name, ())) for name in COLLECTIONS}


def changes_of(model) -> dict[str, frozenset] | None:
    """The keys `model` changed since the previous version, or None when unknown."""
    return model.__dict__.get("_changes")
