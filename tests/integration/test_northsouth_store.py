"""North-south in the northbound store (a real ovsdb-server, no lab): validation and what it records."""
import pytest

from topology.errors import Conflict, NotFound, WeftError

pytestmark = pytest.mark.integration


@pytest.fixture
def ns(store):
    store.create_tenant("admin")
    store.create_network("admin", "ext", "203.0.113.0/24", external=True)
    for name, provs in (("hv1", {"phys": "br-ex"}), ("hv2", {"phys": "br-ex"}), ("hv3", {})):
        store.add_host(name, f"198.18.0.{10 + int(name[2:])}", f"unix:/nowhere/{name}", providers=provs)
    for tenant in ("red", "blue"):
        store.create_tenant(tenant)
        store.create_network(tenant, "net", "10.0.0.0/24")
        store.create_router(tenant, "r")
        store.attach(tenant, "r", "net")
        store.create_port(tenant, "net", "a", ip="10.0.0.2")
    return store


def snapshot(store):
    m = store.model
    return (m.networks, m.routers, m.floating_ips, m.hosts, m.ports)


def refused(store, call, kind, words):
    before = snapshot(store)
    with pytest.raises(kind) as err:
        call()
    text = str(err.value)
    assert words in text and "\n" not in text, text
    assert snapshot(store) == before
    return text


def test_gateways_spread_over_hosts_with_the_provider(ns):
    red = ns.set_gateway("red", "r", "admin/ext")
    blue = ns.set_gateway("blue", "r", "admin/ext")
    assert {red["host"], blue["host"]} == {"hv1", "hv2"}          # hv3 has no provider
    assert (red["ip"], blue["ip"]) == ("203.0.113.2", "203.0.113.3")   # .1 is the edge
    routers = {r.tenant: r for r in ns.model.routers.values()}
    assert routers["red"].gw_vni != routers["blue"].gw_vni
    assert routers["red"].gw_vni not in {n.vni for n in ns.model.networks.values()}


def test_bad_input_changes_nothing(ns):
    ns.set_gateway("red", "r", "admin/ext", ip="203.0.113.20")
    fip = ns.create_fip("red", "admin/ext")
    ns.associate_fip(fip["ip"], "red/net/a")
    refused(ns, lambda: ns.create_network("admin", "ext2", "203.0.113.128/25", external=True),
            Conflict, "overlaps external network admin/ext")
    refused(ns, lambda: ns.create_network("admin", "ext3", "198.51.100.0/24", external=True),
            Conflict, "one external network per provider")
    refused(ns, lambda: ns.create_fip("blue", "admin/ext", ip="203.0.113.20"), Conflict, "already in use")
    refused(ns, lambda: ns.create_fip("blue", "admin/ext", ip=fip["ip"]), Conflict, "already in use")
    refused(ns, lambda: ns.create_fip("blue", "admin/ext", ip="203.0.113.1"), Conflict, "edge router")
    refused(ns, lambda: ns.create_fip("blue", "admin/ext", ip="192.0.2.9"), WeftError, "not inside")
    refused(ns, lambda: ns.set_gateway("blue", "r", "red/net"), WeftError, "is not external")
    refused(ns, lambda: ns.set_gateway("blue", "r", "admin/nope"), NotFound, "no network admin/nope")
    refused(ns, lambda: ns.set_gateway("red", "r", "admin/ext"), Conflict, "already has a gateway")
    refused(ns, lambda: ns.set_gateway("blue", "r", "admin/ext", host="hv3"), Conflict, "no provider")
    other = ns.create_fip("red", "admin/ext")
    refused(ns, lambda: ns.associate_fip(other["ip"], "red/net/a"), Conflict, "already has floating IP")
    ns.create_port("red", "net", "b")
    refused(ns, lambda: ns.associate_fip(fip["ip"], "red/net/b"), Conflict, "already in use by port red/net/a")
    refused(ns, lambda: ns.associate_fip(other["ip"], "blue/net/a"), WeftError, "belongs to tenant red")
    blue_fip = ns.create_fip("blue", "admin/ext")
    refused(ns, lambda: ns.associate_fip(blue_fip["ip"], "blue/net/a"), Conflict, "not attached to a router with a gateway")
    refused(ns, lambda: ns.unset_gateway("red", "r"), Conflict, "disassociate them first")
    refused(ns, lambda: ns.detach("red", "r", "net"), Conflict, "need its router")
    refused(ns, lambda: ns.delete_router("red", "r", cascade=True), Conflict, "need its router")
    refused(ns, lambda: ns.delete_network("admin", "ext"), Conflict, "gateway of router(s) red/r")
    refused(ns, lambda: ns.create_port("admin", "ext", "vm"), WeftError, "is external")
    ns.create_router("admin", "r2")
    refused(ns, lambda: ns.attach("admin", "r2", "ext"), WeftError, "is external")
    refused(ns, lambda: ns.create_network("red", "n2", "10.9.0.0/24", provider="phys"), WeftError,
            "external networks only")


def test_port_delete_frees_its_floating_ip_and_failover_moves_gateways(ns):
    ns.set_gateway("red", "r", "admin/ext", host="hv1")
    ns.set_gateway("blue", "r", "admin/ext", host="hv1")
    fip = ns.create_fip("red", "admin/ext")
    ns.associate_fip(fip["ip"], "red/net/a")
    ns.delete_port("red", "net", "a")
    assert [f.port for f in ns.model.floating_ips.values()] == [None]
    moved = ns.move_gateways("hv1")
    assert sorted(m["router"] for m in moved) == ["blue/r", "red/r"]
    assert {r.gw_host for r in ns.model.routers.values()} == {"hv2"}
    assert ns.move_gateways("hv2", exclude={"hv1"}) == []        # nowhere to go: they stay
    assert {r.gw_host for r in ns.model.routers.values()} == {"hv2"}
