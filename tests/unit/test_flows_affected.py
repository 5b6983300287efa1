"""affected_hosts and the incremental index, checked against brute force on random model changes.

Brute force compiles every host in both models and compares; affected_hosts must name every host
whose flows differ (and, for the common port create/delete, nothing more). An index derived with
`updated()` (carrying the previous fragment cache) must compile exactly like a fresh one.
"""
import random
from dataclasses import replace

import pytest

from flows.compiler import affected_hosts, compile_host
from flows.index import CompilerIndex, diff_models
from topology.model import Binding, Host, Model, Network, Port, Tenant

HOST_NAMES = [f"hv{i}" for i in range(7)]           # hv6 starts undeclared
KEYS = [("t0", "a"), ("t0", "b"), ("t1", "a"), ("t2", "a"), ("t2", "b"), ("t1", "ghost")]


class World:
    """A mutable random model with the operations a controller sees."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.counter = 0
        self.vni = 5000
        self.tenants = {t: Tenant(f"u-{t}", t) for t in ("t0", "t1", "t2")}
        self.hosts = {h: Host(h, f"192.0.2.{i + 1}", "unix:x") for i, h in enumerate(HOST_NAMES[:6])}
        self.networks = {}
        for key in KEYS[:5]:
            self.add_network(key)
        self.ports, self.bindings = {}, {}
        for _ in range(14):
            self.add_port()

    def model(self) -> Model:
        return Model(dict(self.tenants), dict(self.networks), dict(self.ports), dict(self.hosts),
                     dict(self.bindings))

    def uid(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def fresh_ofport(self, host):
        used = {b.ofport for b in self.bindings.values() if b.host == host}
        return min(set(range(1, 40)) - used)

    def free_keys(self):
        return [k for k in KEYS if k not in {(n.tenant, n.name) for n in self.networks.values()}]

    # -- changes --
    def add_network(self, key=None):
        free = self.free_keys()
        if not free:
            return
        key = key or self.rng.choice(free)
        self.vni += 1
        uuid = self.uid("n")
        self.networks[uuid] = Network(uuid, key[0], key[1], "10.0.0.0/24", self.vni)

    def add_port(self, bind=None):
        rng = self.rng
        key = rng.choice(KEYS)
        uuid = self.uid("p")
        ips = tuple(sorted(rng.sample([f"10.0.0.{i}" for i in range(2, 12)], rng.choice((1, 1, 2)))))
        self.ports[uuid] = Port(uuid, key[0], key[1], uuid, f"fa:16:3e:00:00:{rng.randrange(16):02x}",
                                ips, port_security=rng.random() < 0.8)
        if bind or (bind is None and rng.random() < 0.8):
            self.bind(uuid)
        return uuid

    def bind(self, uuid, host=None):
        host = host or self.rng.choice(HOST_NAMES)
        self.bindings[uuid] = Binding(uuid, host, self.fresh_ofport(host))

    def step(self):
        rng = self.rng
        ports = sorted(self.ports)
        kind = rng.choice(["add_port", "del_port", "rebind", "unbind", "edit_port", "move_port",
                           "add_net", "del_net", "edit_net", "edit_host", "add_host", "del_host",
                           "ofport", "dangling", "same"])
        if kind == "add_port" or not ports:
            self.add_port()
        elif kind == "del_port":
            uuid = rng.choice(ports)
            del self.ports[uuid]
            if rng.random() < 0.7:
                self.bindings.pop(uuid, None)
        elif kind == "rebind":
            self.bind(rng.choice(ports))
        elif kind == "unbind":
            self.bindings.pop(rng.choice(ports), None)
        elif kind == "edit_port":
            uuid = rng.choice(ports)
            what = rng.choice(["mac", "ips", "port_security"])
            p = self.ports[uuid]
            value = {"mac": f"fa:16:3e:00:01:{rng.randrange(256):02x}",
                     "ips": (f"10.0.0.{rng.randrange(20, 250)}",),
                     "port_security": not p.port_security}[what]
            self.ports[uuid] = replace(p, **{what: value})
        elif kind == "move_port":
            uuid = rng.choice(ports)
            key = rng.choice(KEYS)
            self.ports[uuid] = replace(self.ports[uuid], tenant=key[0], network=key[1])
        elif kind == "add_net":
            self.add_network()
        elif kind == "del_net" and self.networks:
            del self.networks[rng.choice(sorted(self.networks))]
        elif kind == "edit_net" and self.networks:
            uuid = rng.choice(sorted(self.networks))
            if rng.random() < 0.5 or not self.free_keys():
                self.vni += 1
                self.networks[uuid] = replace(self.networks[uuid], vni=self.vni)
            else:
                key = rng.choice(self.free_keys())
                self.networks[uuid] = replace(self.networks[uuid], tenant=key[0], name=key[1])
        elif kind == "edit_host" and self.hosts:
            h = rng.choice(sorted(self.hosts))
            self.hosts[h] = replace(self.hosts[h], tunnel_ip=f"198.51.100.{rng.randrange(1, 250)}")
        elif kind == "add_host":
            h = rng.choice(HOST_NAMES)
            self.hosts[h] = Host(h, f"203.0.113.{rng.randrange(1, 250)}", "unix:y")
        elif kind == "del_host" and self.hosts:
            del self.hosts[rng.choice(sorted(self.hosts))]
        elif kind == "ofport":
            uuid = rng.choice(ports)
            if uuid in self.bindings:
                self.bind(uuid, self.bindings[uuid].host)
        elif kind == "dangling":
            self.bindings[self.uid("ghost")] = Binding("x", rng.choice(HOST_NAMES), 77)
        elif kind == "same":
            uuid = rng.choice(ports)
            self.ports[uuid] = replace(self.ports[uuid])     # equal record, new object


def compiled(index: CompilerIndex) -> dict:
    return {h: compile_host(index, h) for h in index.host_names()}


def really_changed(old_idx, new_idx) -> set:
    hosts = set(old_idx.host_names()) | set(new_idx.host_names())
    return {h for h in hosts if compile_host(old_idx, h) != compile_host(new_idx, h)}


@pytest.mark.parametrize("seed", range(25))
def test_affected_hosts_covers_brute_force_on_random_changes(seed):
    rng = random.Random(seed)
    world = World(rng)
    old_model = world.model()
    old_idx = CompilerIndex(old_model)
    compiled(old_idx)                                   # fill the fragment cache
    for _ in range(40):
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            world.step()
        new_model = world.model()
        fresh = CompilerIndex(new_model)
        new_idx = old_idx.updated(new_model)
        truth = really_changed(CompilerIndex(old_model), fresh)
        got = affected_hosts(old_model, new_model, old_idx, new_idx)
        assert truth <= got, f"missed {truth - got}"
        assert got == affected_hosts(old_model, new_model)
        assert got == affected_hosts(old_model, new_model, CompilerIndex(old_model), fresh)
        assert compiled(new_idx) == compiled(fresh)     # the incremental index is exact
        old_model, old_idx = new_model, new_idx


@pytest.mark.parametrize("seed", range(10))
def test_port_create_and_delete_affect_exactly_the_hosts_that_change(seed):
    rng = random.Random(100 + seed)
    world = World(rng)
    for _ in range(10):
        old_model = world.model()
        old_idx = CompilerIndex(old_model)
        uuid = world.add_port(bind=False)
        world.bind(uuid, rng.choice(sorted(world.hosts)))
        new_model = world.model()
        new_idx = old_idx.updated(new_model)
        got = affected_hosts(old_model, new_model, old_idx, new_idx)
        assert got == really_changed(old_idx, new_idx)
        key = (world.ports[uuid].tenant, world.ports[uuid].network)
        assert got <= new_idx.hosts_on(key)
        # and back: deleting it affects the same hosts
        del world.ports[uuid], world.bindings[uuid]
        back = world.model()
        assert affected_hosts(new_model, back, new_idx) == really_changed(
            new_idx, CompilerIndex(back))


def test_unchanged_model_affects_nothing_and_shares_the_index():
    world = World(random.Random(1))
    model = world.model()
    idx = CompilerIndex(model)
    same = world.model()                      # new dicts, same records
    assert diff_models(model, same).empty
    assert affected_hosts(model, same, idx) == set()
    new = idx.updated(same)
    assert new.ports_by_key is idx.ports_by_key and new.fragments is idx.fragments


def test_tunnel_ip_change_reaches_the_peers_of_that_host():
    net = Network("n1", "t0", "a", "10.0.0.0/24", 7)
    hosts = {h: Host(h, f"192.0.2.{i}", "unix:x") for i, h in enumerate(("hv1", "hv2", "hv3"), 1)}
    ports = {u: Port(u, "t0", "a", u, f"fa:16:3e:00:00:0{i}", (f"10.0.0.{i + 10}",))
             for i, u in enumerate(("p1", "p2"), 1)}
    model = Model({}, {"n1": net}, ports, hosts,
                  {"p1": Binding("p1", "hv1", 1), "p2": Binding("p2", "hv2", 1)})
    moved = replace(model, hosts={**hosts, "hv2": replace(hosts["hv2"], tunnel_ip="198.51.100.2")})
    truth = really_changed(CompilerIndex(model), CompilerIndex(moved))
    assert truth == {"hv1"}                     # hv1 tunnels to hv2's new address
    assert affected_hosts(model, moved) == {"hv1", "hv2"}      # hv2's own record changed


def test_updated_index_rejects_a_duplicate_vni_and_leaves_the_old_one_intact():
    world = World(random.Random(2))
    model = world.model()
    idx = CompilerIndex(model)
    before = compiled(idx)
    a, b = sorted(world.networks)[:2]
    world.networks[b] = replace(world.networks[b], vni=world.networks[a].vni)
    with pytest.raises(ValueError, match="VNI"):
        idx.updated(world.model())
    assert compiled(idx) == before


def test_indexes_of_other_models_are_refused():
    world = World(random.Random(4))
    a, b = world.model(), world.model()
    with pytest.raises(ValueError):
        affected_hosts(a, b, CompilerIndex(b))


def _renumber_world() -> Model:
    """A routed tenant whose ports are members of a group admitting its own members, with QoS
    and IPv6: everything a port's ofport could reach."""
    from topology.model import Router, Rule, SecurityGroup
    rules = (Rule("r1", 1, "ingress", remote_sg="default"), Rule("r2", 2, "egress", remote_cidr="0.0.0.0/0"),
             Rule("r3", 3, "ingress", remote_sg="default", ethertype="ipv6"))
    nets = {"n1": Network("n1", "red", "n1", "10.0.0.0/24", 1000, "10.0.0.1", router="r", cidr6="fd00:1::/64"),
            "n2": Network("n2", "red", "n2", "10.0.1.0/24", 1001, "10.0.1.1", router="r")}
    place = {"a": ("n1", "hv1", 1, "10.0.0.5"), "b": ("n1", "hv2", 1, "10.0.0.6"),
             "c": ("n2", "hv3", 2, "10.0.1.5"), "d": ("n1", "hv1", 2, "10.0.0.7")}
    return Model(
        tenants={"red": Tenant("red", "red")}, networks=nets,
        ports={p: Port(p, "red", net, p, f"fa:16:3e:00:00:0{i}", (ip,), security_groups=("default",))
               for i, (p, (net, _h, _o, ip)) in enumerate(sorted(place.items()))},
        hosts={h: Host(h, f"192.0.2.{i}", "x") for i, h in enumerate(("hv1", "hv2", "hv3"), 1)},
        bindings={p: Binding(p, h, o) for p, (_n, h, o, _ip) in place.items()},
        routers={"r": Router("r", "red", "r", "02:77:65:00:00:aa", 7)},
        security_groups={"sg": SecurityGroup("sg", "red", "default", rules)})


@pytest.mark.parametrize("port", ["a", "b", "c"])
@pytest.mark.parametrize("change", ["new ofport", "numbered", "unnumbered"])
def test_renumbering_a_port_where_it_is_changes_its_own_host_only(port, change):
    from flows.compiler import PENDING
    base = _renumber_world()
    b = base.bindings[port]
    old = replace(base, bindings={**base.bindings, port: replace(b, ofport=PENDING)}) \
        if change == "numbered" else base
    new = replace(base, bindings={**base.bindings, port: replace(b, ofport=PENDING if change == "unnumbered"
                                                                 else 40 if change == "new ofport" else b.ofport)})
    old_idx = CompilerIndex(old)
    compiled(old_idx)
    truth = really_changed(CompilerIndex(old), CompilerIndex(new))
    assert truth == {b.host}
    assert affected_hosts(old, new, old_idx, old_idx.updated(new)) == {b.host}
    assert affected_hosts(old, new) == {b.host}


def test_a_renumbering_with_any_other_change_takes_the_general_path():
    base = _renumber_world()
    moved = replace(base, bindings={**base.bindings, "a": Binding("a", "hv2", 9)})
    assert affected_hosts(base, moved) == {"hv1", "hv2", "hv3"}      # a's peers and group
    both = replace(base, bindings={**base.bindings, "a": Binding("a", "hv1", 9)},
                   hosts={**base.hosts, "hv3": Host("hv3", "192.0.2.33", "x")})
    assert {"hv1", "hv2", "hv3"} <= affected_hosts(base, both)
