"""The northbound store on a real ovsdb-server: writes, refusals that change nothing, change notifications."""
import pytest

from topology.errors import Conflict, NotFound, WeftError

pytestmark = pytest.mark.integration


def test_model_round_trip_and_notifications(store):
    seen = []
    store.subscribe(lambda model, version: seen.append((version, len(model.ports))))
    start = store.version
    assert start >= 1                                   # the first load is a snapshot, even empty
    store.create_tenant("red")
    net = store.create_network("red", "net", "10.0.0.0/24", dns=["10.0.0.53"])
    a = store.create_port("red", "net", "a")
    b = store.create_port("red", "net", "b", ip="10.0.0.77", mac="02:00:00:00:00:77")
    m = store.model
    assert m.networks[net["id"]].vni == net["vni"] and m.networks[net["id"]].dns == ("10.0.0.53",)
    assert m.ports[a["id"]].ips == ("10.0.0.2",) and a["gateway"] == "10.0.0.1"
    assert m.ports[b["id"]].mac == "02:00:00:00:00:77"
    assert [n for _v, n in seen][-2:] == [1, 2]
    assert [v for v, _n in seen] == list(range(start + 1, store.version + 1))   # every version, in order
    store.sync_bindings("hv1", {a["id"]: 3, "not-a-port": 9})
    assert {p: (x.host, x.ofport) for p, x in store.model.bindings.items()} == {a["id"]: ("hv1", 3)}
    store.sync_bindings("hv1", {})
    assert store.model.bindings == {}


def test_refusals_change_nothing(store):
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/24")
    store.create_port("red", "net", "a")
    before = store.model
    for call, exc in [
        (lambda: store.create_tenant("red"), Conflict),
        (lambda: store.delete_tenant("red"), Conflict),
        (lambda: store.delete_network("red", "net"), Conflict),
        (lambda: store.create_port("red", "net", "a"), Conflict),
        (lambda: store.create_port("red", "nope", "x"), NotFound),
        (lambda: store.create_port("red", "net", "x", ip="10.0.0.2"), WeftError),
        (lambda: store.create_network("red", "n2", "10.0.0.0/33"), WeftError),
        (lambda: store.add_host("hv1", "1.2.3.4", "bogus"), WeftError),
    ]:
        with pytest.raises(exc):
            call()
    assert store.model == before
    store.delete_tenant("red", cascade=True)
    assert not store.model.tenants and not store.model.networks and not store.model.ports


def test_two_tenants_may_share_names_and_cidrs_but_vnis_differ(store):
    for t in ("red", "blue"):
        store.create_tenant(t)
        store.create_network(t, "net", "10.0.0.0/24")
        store.create_port(t, "net", "p", ip="10.0.0.5")
    vnis = {n.vni for n in store.model.networks.values()}
    assert len(vnis) == 2
