"""The store's recorded changes cover every record that differs between consecutive snapshots."""
import random

import pytest

from topology.changes import COLLECTIONS, changes_of
from topology.errors import WeftError

pytestmark = pytest.mark.integration


def differing(old, new) -> set:
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def test_recorded_changes_cover_every_difference(store):
    snapshots = []
    store.subscribe(lambda model, version: snapshots.append((version, model)))
    rng = random.Random(7)
    ports = []
    store.add_host("hv1", "198.18.0.11", "unix:/nonexistent/hv1")
    store.add_host("hv2", "198.18.0.12", "unix:/nonexistent/hv2")
    for t in ("red", "blue"):
        store.create_tenant(t)
        store.create_network(t, "net", "10.0.0.0/24")
        store.create_sg(t, "web")
    for step in range(120):
        op = rng.choice(["port", "port", "delete", "bind", "rule", "update", "host"])
        tenant = rng.choice(["red", "blue"])
        try:
            if op == "port":
                name = f"p{step}"
                created = store.create_port(tenant, "net", name,
                                            security_groups=rng.choice([(), ("web",), ("default", "web")]))
                ports.append((tenant, name, created["id"]))
            elif op == "delete" and ports:
                t, name, _ = ports.pop(rng.randrange(len(ports)))
                store.delete_port(t, "net", name)
            elif op == "bind" and ports:
                host = rng.choice(["hv1", "hv2"])
                chosen = rng.sample(ports, min(len(ports), 3))
                store.sync_bindings(host, {pid: i + 1 for i, (_t, _n, pid) in enumerate(chosen)})
            elif op == "rule":
                store.add_rule(tenant, "web", "ingress", "tcp", rng.randint(1, 9000), None,
                               remote_sg=rng.choice([None, "default"]),
                               remote_cidr=None)
            elif op == "update" and ports:
                t, name, _ = rng.choice(ports)
                store.update_port(t, "net", name, security_groups=[rng.choice(["web", "default"])])
            elif op == "host":
                store.add_host(f"hv{3 + step}", f"198.18.1.{step % 250 + 1}", "unix:/nonexistent/x")
        except WeftError:
            pass        # a refused operation (e.g. a duplicate rule) changes nothing
    assert len(snapshots) > 100
    recorded = 0
    for (v0, old), (v1, new) in zip(snapshots, snapshots[1:]):
        assert v1 == v0 + 1
        changes = changes_of(new)
        if changes is None:
            continue            # a full rebuild says nothing: the engine diffs itself
        recorded += 1
        for name in COLLECTIONS:
            missing = differing(getattr(old, name), getattr(new, name)) - changes[name]
            assert not missing, (v1, name, missing)
    assert recorded > 100, "snapshots from tracked changes carry what they changed"
