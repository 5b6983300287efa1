"""API reads over the store's snapshot and the engine's bindings: same answers as the old
linear scans, a write is visible to the next read, bindings come from the engine."""
import random

import pytest

from controller.api import Api
from flows import cookies
from topology.errors import NotFound
from topology.model import Binding

pytestmark = pytest.mark.integration


class LaggingEngine:
    """An engine that has processed nothing yet: reads must not depend on its model."""

    def __init__(self):
        self.live = {}

    def bindings(self):
        return self.live

    def effective_model(self):
        raise AssertionError("the API read the engine's model")

    def port_up_latency_ms(self, port):
        return 1.5 if port in self.live else None

    def status(self):
        return {"hv1": {"connected": True, "flows": 3}}


def call(api, method, path, body=None, **q):
    return api.dispatch(method, path, {k: [v] for k, v in q.items()}, body or {})


def _fill(store, engine, rng):
    for t in ("red", "blue", "green"):
        store.create_tenant(t)
        store.create_sg(t, "web")
        store.create_router(t, "r")
        for n in ("a", "b", "a-b"):
            store.create_network(t, n, f"10.{rng.randint(0, 200)}.0.0/24")
            if rng.random() < 0.5:
                store.attach(t, "r", n)
            for i in range(rng.randint(0, 5)):
                store.create_port(t, n, f"p{i}", security_groups=rng.choice([[], ["web"], ["web", "default"]]))
    store.add_host("hv1", "192.0.2.1", "unix:/x")
    store.add_host("hv2", "192.0.2.2", "unix:/y")
    ports = sorted(store.model.ports)
    for i, u in enumerate(rng.sample(ports, len(ports) // 2)):
        engine.live[u] = Binding(u, rng.choice(["hv1", "hv2"]), i + 1)


def _naive_port(model, bindings, p):
    net = next((n for n in model.networks.values() if (n.tenant, n.name) == (p.tenant, p.network)), None)
    b = bindings.get(p.uuid)
    return {"id": p.uuid, "ref": p.ref, "gateway": net.gateway if net else None,
            "prefixlen": int(net.cidr.split("/")[1]) if net else None,
            "host": b.host if b else None, "ofport": b.ofport if b else None}


def _short(view):
    return {k: view[k] for k in ("id", "ref", "gateway", "prefixlen", "host", "ofport")}


@pytest.mark.parametrize("seed", [1, 2])
def test_reads_answer_what_the_linear_scans_did(store, seed):
    engine = LaggingEngine()
    api = Api(store, engine)
    _fill(store, engine, random.Random(seed))
    m, live = store.model, engine.live
    for tenant, network in [(None, None), ("red", None), ("blue", "a-b"), ("green", "a")]:
        q = {k: v for k, v in (("tenant", tenant), ("network", network)) if v}
        want = [_naive_port(m, live, p) for p in sorted(m.ports.values(), key=lambda p: p.ref)
                if (not tenant or p.tenant == tenant) and (not network or p.network == network)]
        got = call(api, "GET", "/v1/ports", **q)
        assert [_short(v) for v in got] == want
        assert all(v["up_latency_ms"] == (1.5 if v["id"] in live else None) for v in got)
    nets = call(api, "GET", "/v1/networks")
    assert [(n["ref"], n["ports"]) for n in nets] == [
        (n.ref, sum(1 for p in m.ports.values() if (p.tenant, p.network) == (n.tenant, n.name)))
        for n in sorted(m.networks.values(), key=lambda n: (n.tenant, n.name))]
    assert [n["ref"] for n in call(api, "GET", "/v1/networks", tenant="blue")] == ["blue/a", "blue/a-b", "blue/b"]
    shown = call(api, "GET", "/v1/networks/red/a-b")
    assert [v["name"] for v in shown["port_list"]] == sorted(
        p.name for p in m.ports.values() if (p.tenant, p.network) == ("red", "a-b"))
    assert call(api, "GET", "/v1/tenants") == [
        {"id": t.uuid, "name": t.name, "networks": sum(1 for n in m.networks.values() if n.tenant == t.name),
         "ports": sum(1 for p in m.ports.values() if p.tenant == t.name)}
        for t in sorted(m.tenants.values(), key=lambda t: t.name)]
    for sg in call(api, "GET", "/v1/security-groups"):
        assert sg["ports"] == sorted(p.ref for p in m.ports.values()
                                     if p.tenant == sg["tenant"] and sg["name"] in p.security_groups)
    for r in call(api, "GET", "/v1/routers"):
        assert [n["network"] for n in r["networks"]] == sorted(
            n.ref for n in m.networks.values() if n.tenant == r["tenant"] and n.router == r["name"])
    hosts = {h["name"]: h["ports_bound"] for h in call(api, "GET", "/v1/hosts")}
    assert hosts == {h: sum(1 for b in live.values() if b.host == h) for h in ("hv1", "hv2")}
    owners = api._owner_names(m)
    for p in m.ports.values():
        assert owners.get(cookies.object_id(p.uuid)) == f"port {p.ref}"
    assert owners.get(12345, "none") == "none"


def test_a_write_is_visible_to_the_next_read_whatever_the_engine_did(store):
    engine = LaggingEngine()
    api = Api(store, engine)
    call(api, "POST", "/v1/tenants", {"name": "red"})
    call(api, "POST", "/v1/networks", {"tenant": "red", "name": "net", "cidr": "10.0.0.0/24"})
    made = call(api, "POST", "/v1/ports", {"tenant": "red", "network": "net", "name": "web"})
    shown = call(api, "GET", "/v1/ports/red/net/web")
    assert shown["id"] == made["id"] and shown["host"] is None and shown["up_latency_ms"] is None
    engine.live[made["id"]] = Binding(made["id"], "hv1", 4)
    shown = call(api, "GET", "/v1/ports/red/net/web")
    assert (shown["host"], shown["ofport"], shown["up_latency_ms"]) == ("hv1", 4, 1.5)
    listed = call(api, "GET", "/v1/ports")                 # views are kept between requests ...
    assert listed[0]["security_groups"] == ["default"]
    call(api, "PATCH", "/v1/ports/red/net/web", {"security_groups": [], "port_security": False})
    listed = call(api, "GET", "/v1/ports")                 # ... and rebuilt when the port changes
    assert (listed[0]["security_groups"], listed[0]["port_security"]) == ([], False)
    del engine.live[made["id"]]
    assert call(api, "GET", "/v1/ports")[0]["host"] is None
    call(api, "DELETE", "/v1/ports/red/net/web")
    with pytest.raises(NotFound, match="no port red/net/web"):
        call(api, "GET", "/v1/ports/red/net/web")
    with pytest.raises(NotFound, match="no network red/nope"):
        call(api, "GET", "/v1/ports", tenant="red", network="nope")
