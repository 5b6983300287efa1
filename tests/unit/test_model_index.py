"""The model's O(1) lookups: ModelIndex built whole equals one carried change by change, and
snapshots derived with dataclasses.replace share it."""
import dataclasses
import random

import netaddr
import pytest

from flows import cookies
from ovsdb.nbtrack import HighSet
from topology import validate
from topology.model import (Binding, Model, ModelIndex, Network, Port, Router, Rule, SecurityGroup,
                            derive, share_index)


def _random_record(rng, kind, uuid):
    t, n = rng.choice("ab"), rng.choice(["x", "y", "z"])
    if kind == "networks":
        return Network(uuid, t, n, "10.0.0.0/24", rng.randint(1000, 1010), router=rng.choice([None, "r", "s"]))
    if kind == "routers":
        return Router(uuid, t, rng.choice(["r", "s"]), "02:00:00:00:00:01", 7)
    if kind == "ports":
        return Port(uuid, t, n, rng.choice(["p", "q", "w"]), "02:00:00:00:00:02", ("10.0.0.5",),
                    True, tuple(sorted(rng.sample(["default", "web"], rng.randint(0, 2)))))
    rules = tuple(Rule(f"{uuid}-r{i}", i, "ingress") for i in range(rng.randint(0, 2)))
    return SecurityGroup(uuid, t, rng.choice(["default", "web"]), rules)


def _unique(records: dict, rec) -> bool:
    """Whether `rec` keeps names unique in its collection (the store's schema guarantees it)."""
    name = (lambda r: (r.tenant, r.network, r.name)) if isinstance(rec, Port) else (lambda r: (r.tenant, r.name))
    return all(name(other) != name(rec) for u, other in records.items() if u != rec.uuid)


@pytest.mark.parametrize("seed", range(20))
def test_carried_index_equals_a_full_build(seed):
    rng = random.Random(seed)
    data = {k: {} for k in ("networks", "ports", "routers", "security_groups")}
    index = ModelIndex.build(**data)
    for _step in range(60):
        changes = {k: [] for k in data}
        touched = set()                 # a batch changes each record once (as the store's do)
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(sorted(data))
            records = data[kind]
            uuid = rng.choice([f"{kind}{i}" for i in range(6)])
            if uuid in touched:
                continue
            touched.add(uuid)
            old = records.get(uuid)
            new = None if (old is not None and rng.random() < 0.3) else _random_record(rng, kind, uuid)
            if new is not None and not _unique(records, new):
                continue
            if new is None:
                del records[uuid]
            else:
                records[uuid] = new
            changes[kind].append((old, new))
        before, snapshot = index, {k: dict(v) for k, v in index.maps().items()}
        index = index.updated(**changes)
        assert index.maps() == ModelIndex.build(**data).maps()
        assert before.maps() == snapshot            # the previous index is never modified
    assert index.ports_of_net and index.members and index.owners


def test_an_update_leaves_the_previous_index_untouched():
    a = Port("a", "red", "net", "a", "02:00:00:00:00:01", ("10.0.0.2",), True, ("default",))
    first = ModelIndex.build({}, {"a": a}, {}, {})
    b = dataclasses.replace(a, uuid="b", name="b")
    second = first.updated(ports=[(None, b)])
    assert set(first.ports_of_net[("red", "net")]) == {"a"}
    assert set(second.ports_of_net[("red", "net")]) == {"a", "b"}
    assert set(first.members[("red", "default")]) == {"a"}
    third = second.updated(ports=[(a, None)])
    assert set(third.ports_of_net[("red", "net")]) == {"b"}
    assert set(second.ports_of_net[("red", "net")]) == {"a", "b"}


def test_model_lookups():
    net = Network("n1", "red", "net", "10.0.0.0/24", 1000, "10.0.0.1", router="r")
    router = Router("r1", "red", "r", "02:00:00:00:00:09", 5)
    port = Port("p1", "red", "net", "web", "02:00:00:00:00:01", ("10.0.0.2",), True, ("web",))
    group = SecurityGroup("g1", "red", "web", (Rule("rule1", 1, "ingress"),))
    m = Model(networks={"n1": net}, ports={"p1": port}, routers={"r1": router},
              security_groups={"g1": group}, bindings={"p1": Binding("p1", "hv1", 7)})
    assert m.network("red", "net") is net and m.network_of(port) is net and m.network("blue", "net") is None
    assert m.router("red", "r") is router and m.port_by_ref("red", "net", "web") is port
    assert m.security_group("red", "web") is group and m.members_of_group("red", "web") == {"p1": port}
    assert m.ports_of_network("red", "net") == {"web": port} and m.ports_of_network("red", "nope") == {}
    assert m.networks_of_router("red", "r") == {"net": net}
    assert m.port_count("red") == 1 and m.port_count("red", "net") == 1 and m.network_count("blue") == 0
    assert m.port_at("hv1", 7) is port and m.port_at("hv1", 8) is None
    assert m.owner(cookies.object_id("p1")) == "port red/net/web"
    assert m.owner(cookies.object_id("rule1")) == "rule rule1 of red/web"
    # caches live outside the fields: equality and replace() are unaffected
    moved = dataclasses.replace(m, bindings={"p1": Binding("p1", "hv2", 3)})
    assert moved != m and dataclasses.replace(m) == m
    assert moved.port_at("hv2", 3) is port and moved.port_at("hv1", 7) is None


def test_a_derived_snapshot_shares_the_store_index():
    port = Port("p1", "red", "net", "web", "02:00:00:00:00:01", ("10.0.0.2",))
    m = Model(ports={"p1": port})
    index = ModelIndex.build(m.networks, m.ports, m.routers, m.security_groups)
    share_index(m, index)
    derived = dataclasses.replace(m, bindings={"p1": Binding("p1", "hv1", 4)})
    assert derived.index is index
    other = Model(ports=dict(m.ports))           # equal records, other dicts: its own index
    assert other.index is not index and other.index.maps() == index.maps()



def test_derive_keeps_the_index_however_many_snapshots_came_since():
    port = Port("p1", "red", "net", "web", "02:00:00:00:00:01", ("10.0.0.2",))
    m = Model(ports={"p1": port})
    index = ModelIndex.build(m.networks, m.ports, m.routers, m.security_groups)
    share_index(m, index)
    for k in range(10):                          # later snapshots push m out of the shared cache
        later = Model(ports={f"q{k}": port})
        share_index(later, ModelIndex.build(later.networks, later.ports, later.routers,
                                            later.security_groups))
    derived = derive(m, bindings={"p1": Binding("p1", "hv1", 4)})
    assert derived.index is index and derived.bindings["p1"].host == "hv1"
    assert dataclasses.replace(m, bindings={}).index is not index     # what the engine did before
    changed = derive(m, ports={})                # other records: an index of its own
    assert changed.index is not index and changed.index.maps() != index.maps()

@pytest.mark.parametrize("cidr,gw", [("10.0.0.0/29", "10.0.0.1"), ("10.0.0.0/24", "10.0.0.7"),
                                     ("192.168.4.0/22", None)])
def test_allocate_ip_from_a_floor_matches_allocate_ip(cidr, gw):
    rng = random.Random(cidr)
    net = netaddr.IPNetwork(cidr)
    hosts = [str(ip) for ip in net.iter_hosts()]
    for _ in range(50):
        taken = set(rng.sample(hosts, rng.randint(0, len(hosts) - 2)))
        try:
            want = validate.allocate_ip(net, gw, taken)
        except Exception:
            with pytest.raises(Exception):
                validate.allocate_ip_from(net, gw, taken, 0)
            continue
        ip, value = validate.allocate_ip_from(net, gw, taken, 0)
        assert ip == want and int(netaddr.IPAddress(ip)) == value
        # from any floor at or below the answer, the same answer
        assert validate.allocate_ip_from(net, gw, taken, rng.randint(net.first, value))[0] == want


def test_highset_knows_its_highest_member():
    s = HighSet()
    assert s.highest(999) == 999
    for v in (5, 9, 9, 3):
        s.add(v)
    assert s.highest(0) == 9
    s.discard(9)
    assert s.highest(0) == 9 and 9 in s
    s.discard(9)
    assert s.highest(0) == 5 and 9 not in s
    assert s.highest(7) == 7
