"""Tracked changes on a real ovsdb-server: incremental snapshots equal full rebuilds on random
change sequences, unchanged records are shared, versions are delivered in commit order."""
import random
import threading
import time

import pytest

from ovsdb.nbtrack import HighSet, WriteIndex
from topology.errors import WeftError
from topology.model import ModelIndex

pytestmark = pytest.mark.integration

TENANTS = ["t0", "t1", "t2"]
NETS = ["n0", "n1"]
PORTS = ["p0", "p1", "p2", "p3", "p4", "p5"]
GROUPS = ["default", "g0", "g1"]
HOSTS = ["h0", "h1", "h2"]
CIDRS = ["10.0.0.0/29", "10.0.0.0/24", "10.1.0.0/24"]


def assert_consistent(store, log=()):
    """The store's incremental state equals a full rebuild from the IDL's rows."""
    with store.lock:
        full, fresh = store.rebuilt()
        model, ix = store.model, store._ix
    context = f"after: {list(log)[-5:]}"
    assert full == model, context
    assert model.index.maps() == ModelIndex.build(model.networks, model.ports, model.routers,
                                                  model.security_groups).maps(), context
    for name, value in vars(fresh).items():
        if name == "ip_floor":
            continue
        have = getattr(ix, name)
        if isinstance(value, HighSet):
            assert have.count == value.count, (name, context)
            assert have.highest(0) == value.highest(0), (name, context)
        else:
            assert have == value, (name, context)
    # the model's records are the index's objects (removals rely on identity)
    for table, field in (("Network", "networks"), ("Port", "ports"), ("Router", "routers")):
        for uuid, rec in getattr(model, field).items():
            assert ix.rec[table][uuid] is rec
    _assert_ip_floors(ix)


def _assert_ip_floors(ix: WriteIndex):
    """No free address of a network lies below its allocation floor."""
    import netaddr
    for (tenant, net), floor in ix.ip_floor.items():
        rec = ix.rec["Network"][ix.net[(tenant, net)]]
        cidr = netaddr.IPNetwork(rec.cidr)
        taken = ix.ips.get((tenant, net), {})
        for value in range(cidr.first + 1, min(floor, cidr.first + 300)):
            ip = str(netaddr.IPAddress(value))
            assert ip in taken or ip == rec.gateway, f"{ip} free below floor of {tenant}/{net}"


def _pick(rng, seq):
    return rng.choice(sorted(seq)) if seq else None


def _random_op(store, rng):
    """One random write through the store's API (or straight on the IDL); returns its name."""
    m = store.model
    t, n, p, g = rng.choice(TENANTS), rng.choice(NETS), rng.choice(PORTS), rng.choice(GROUPS)
    if m.networks and rng.random() < 0.8:      # mostly objects that exist
        net = m.networks[_pick(rng, m.networks)]
        t, n = net.tenant, net.name
        if m.ports_of_network(t, n) and rng.random() < 0.5:
            p = _pick(rng, m.ports_of_network(t, n))
        groups = m.security_groups_of_tenant(t)
        g = _pick(rng, groups) if groups and rng.random() < 0.8 else g
    ops = {
        "create_tenant": lambda: store.create_tenant(t),
        "delete_tenant": lambda: store.delete_tenant(t, cascade=rng.random() < 0.5),
        "create_network": lambda: store.create_network(rng.choice(sorted(m.tenants) or TENANTS),
                                                       rng.choice(NETS), rng.choice(CIDRS)),
        "delete_network": lambda: store.delete_network(t, n, cascade=rng.random() < 0.7),
        "create_port": lambda: store.create_port(
            t, n, rng.choice(PORTS), ip=rng.choice([None] * 6 + ["10.0.0.3", "10.1.0.9"]),
            mac=rng.choice([None] * 6 + ["02:00:00:00:00:01"]),
            port_security=rng.random() < 0.9,
            security_groups=rng.sample(sorted(m.security_groups_of_tenant(t)), rng.randint(0, 1))
            if m.security_groups_of_tenant(t) else ()),
        "delete_port": lambda: store.delete_port(t, n, p),
        "update_port": lambda: store.update_port(t, n, p, security_groups=rng.choice(
            [None, [], ["g0"], ["default", "g1"]]), port_security=rng.choice([None, True, False])),
        "create_sg": lambda: store.create_sg(t, rng.choice(["g0", "g1"])),
        "delete_sg": lambda: store.delete_sg(t, g),
        "add_rule": lambda: store.add_rule(t, g, rng.choice(["ingress", "egress"]),
                                           rng.choice(["tcp", "any"]),
                                           remote_sg=rng.choice([None, "g0", "default"])),
        "delete_rule": lambda: _delete_some_rule(store, rng, m),
        "create_router": lambda: store.create_router(t, "r"),
        "delete_router": lambda: store.delete_router(t, "r", cascade=rng.random() < 0.5),
        "attach": lambda: store.attach(t, "r", n),
        "detach": lambda: store.detach(t, "r", n),
        "add_route": lambda: store.add_route(t, "r", "192.168.0.0/24", "10.0.0.6"),
        "add_host": lambda: store.add_host(rng.choice(HOSTS), f"192.0.2.{rng.randint(1, 3)}", "unix:/x"),
        "update_host": lambda: store.update_host(rng.choice(HOSTS), tunnel_ip=f"192.0.2.{rng.randint(1, 3)}"),
        "delete_host": lambda: store.delete_host(rng.choice(HOSTS)),
        "bind": lambda: store.sync_bindings(rng.choice(HOSTS), {
            u: rng.randint(1, 5) for u in rng.sample(sorted(m.ports), min(len(m.ports), rng.randint(0, 3)))}),
        "traffic": lambda: store.set_traffic_config(sflow_sampling=rng.choice([64, 128])),
        "raw_move_port": lambda: _raw(store, rng, "Port", "network", NETS),
        "raw_move_rule": lambda: _raw(store, rng, "SG_Rule", "group", GROUPS),
        "raw_rename_group": lambda: _raw(store, rng, "Security_Group", "name", GROUPS),
    }
    weights = {"create_tenant": 3, "create_network": 4, "create_port": 12, "update_port": 3,
               "create_sg": 3, "add_rule": 4, "attach": 2, "add_host": 2, "bind": 4,
               "delete_tenant": 0.5, "delete_network": 1, "delete_host": 0.5}
    names = sorted(ops)
    name = rng.choices(names, [weights.get(k, 1) for k in names])[0]
    before = store.version
    try:
        ops[name]()
    except WeftError:
        assert store.version == before, f"refused {name} changed the store"
        return name + " (refused)"
    return name


def _delete_some_rule(store, rng, m):
    rules = [(g, r) for g in m.security_groups.values() for r in g.rules]
    if not rules:
        raise WeftError("no rule")
    g, r = rng.choice(sorted(rules, key=lambda gr: gr[1].key))
    store.delete_rule(g.tenant, g.name, r.uuid)


def _raw(store, rng, table, column, values):
    """Change a column straight on the IDL (moves a record between index keys)."""
    def build(txn):
        rows = sorted(store.idl.tables[table].rows.values(), key=lambda r: str(r.uuid))
        if not rows:
            raise WeftError("nothing to change")
        setattr(rng.choice(rows), column, rng.choice(values))
        return {}
    store._transact(build)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_snapshots_equal_full_rebuilds(store, seed):
    rng = random.Random(seed)
    log = []
    for step in range(400):
        log.append(_random_op(store, rng))
        if step % 5 == 0:
            assert_consistent(store, log)
    assert_consistent(store, log)
    done = {op for op in log if "refused" not in op}
    assert len(done) > 15 and "create_port" in done, sorted(done)     # the sequence did things


def test_a_change_shares_every_unchanged_record(store):
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/24")
    store.create_sg("red", "web")
    ports = [store.create_port("red", "net", f"p{i}")["id"] for i in range(5)]
    store.add_host("hv1", "192.0.2.1", "unix:/x")
    store.sync_bindings("hv1", {ports[0]: 3})
    before = store.model
    store.update_port("red", "net", "p1", security_groups=["web"])
    after = store.model
    assert after.ports[ports[1]] is not before.ports[ports[1]]
    assert all(after.ports[u] is before.ports[u] for u in ports if u != ports[1])
    for field in ("tenants", "networks", "hosts", "bindings", "routers", "security_groups"):
        assert getattr(after, field) is getattr(before, field), field
    assert after.traffic is before.traffic
    # a rule change rebuilds only its group
    web, default = after.security_group("red", "web"), after.security_group("red", "default")
    store.add_rule("red", "web", "ingress", "tcp", port_min=80)
    latest = store.model
    assert latest.security_group("red", "web") != web and len(latest.security_group("red", "web").rules) == 1
    assert latest.security_group("red", "default") is default
    assert latest.ports is after.ports
    # the lookups follow
    assert latest.port_by_ref("red", "net", "p1").security_groups == ("web",)
    assert set(latest.members_of_group("red", "web")) == {ports[1]}
    assert latest.port_at("hv1", 3).uuid == ports[0]


def test_a_reload_after_reconnect_keeps_the_snapshot(store, monkeypatch):
    full = []
    rebuild = store._full_model
    monkeypatch.setattr(store, "_full_model", lambda: full.append(1) or rebuild())
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/24")
    store.create_port("red", "net", "a")
    model, version = store.snapshot()
    with store.lock:
        store.idl.force_reconnect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with store.lock:
            store.idl.run()
            store._refresh()
            if store.idl._session.is_connected() and store.idl.state == store.idl.IDL_S_MONITORING:
                break
        time.sleep(0.02)
    else:
        pytest.fail("the IDL did not reconnect")
    assert full, "the reconnect did not reload the database"
    assert store.snapshot() == (model, version)          # same content: no new snapshot
    created = store.create_port("red", "net", "b")     # and it goes on incrementally
    assert store.model.port_by_ref("red", "net", "b").uuid == created["id"]
    assert_consistent(store)


def test_concurrent_writers_deliver_versions_in_order_and_know_theirs(store):
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/16")
    seen = []
    store.subscribe(lambda model, version: seen.append((version, model)))
    mine: dict[str, int] = {}
    errors = []

    def writer(prefix):
        try:
            for i in range(25):
                created = store.create_port("red", "net", f"{prefix}{i}")
                mine[created["id"]] = store.committed_version()
        except Exception as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b", "c")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    versions = [v for v, _m in seen]
    assert versions == list(range(versions[0], versions[-1] + 1))   # no gap, no reordering
    by_version = dict(seen)
    counts = [len(m.ports) for _v, m in seen]
    assert counts == sorted(counts)
    for port, version in mine.items():       # the committed version is the first holding it
        assert port in by_version[version].ports
        assert version - 1 not in by_version or port not in by_version[version - 1].ports
    assert store.committed_version() is not None     # this thread created the tenant


def test_writes_stay_flat_as_the_store_grows(store):
    """Creating a port costs the same with 1,500 ports in the store as with none (within 3x)."""
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/16")

    def timed(prefix, count):
        start = time.perf_counter()
        for i in range(count):
            store.create_port("red", "net", f"{prefix}{i}")
        return (time.perf_counter() - start) / count

    first = timed("a", 100)
    timed("fill", 1300)
    last = timed("z", 100)
    assert last < 3 * first + 0.002, f"{first * 1000:.2f} ms per create, then {last * 1000:.2f} ms"
    assert_consistent(store)
