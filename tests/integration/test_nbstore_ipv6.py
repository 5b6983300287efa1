"""IPv6 prefixes and addresses in the northbound store and its API: allocation, given addresses, refusals."""
import pytest

from controller.api import Api
from topology.errors import WeftError

pytestmark = pytest.mark.integration


def test_networks_with_an_ipv6_prefix_give_ports_an_address_of_each_family(store):
    store.create_tenant("red")
    net = store.create_network("red", "net", ["10.0.0.0/24", "fd00:1::/64"])
    assert net["cidrs"] == ["10.0.0.0/24", "fd00:1::/64"] and net["cidr6"] == "fd00:1::/64"
    a = store.create_port("red", "net", "a", mac="02:00:00:00:00:0a")
    b = store.create_port("red", "net", "b", ip=["fd00:1::b", "fd00:1::2:b"])
    c = store.create_port("red", "net", "c", ip="10.0.0.99")
    d = store.create_port("red", "net", "d", ip="FD00:1::00d")
    m = store.model
    assert m.networks[net["id"]].cidr6 == "fd00:1::/64"
    assert m.ports[a["id"]].ips == ("10.0.0.2", "fd00:1::2")
    assert a["ip6"] == "fd00:1::2" and a["prefixlen6"] == 64 and a["link_local"] == "fe80::ff:fe00:a"
    assert m.ports[b["id"]].ips == ("10.0.0.3", "fd00:1::2:b", "fd00:1::b")  # IPv4 first, always
    assert m.ports[c["id"]].ips == ("10.0.0.99", "fd00:1::3")
    assert m.ports[d["id"]].ips == ("10.0.0.4", "fd00:1::d")
    old = store.create_network("red", "old", "10.1.0.0/24")       # IPv4 alone, as before
    assert old["cidr6"] is None and store.create_port("red", "old", "x")["ips"] == ["10.1.0.2"]
    assert store.model.networks[old["id"]].cidrs == ("10.1.0.0/24",)


def test_bad_ipv6_input_is_refused_and_changes_nothing(store):
    store.create_tenant("red")
    store.create_network("red", "net", ["10.0.0.0/24", "fd00:1::/64"])
    store.create_network("red", "v4", "10.1.0.0/24")
    store.create_port("red", "net", "a", ip="fd00:1::a")
    before = store.model
    for call, msg in [
        (lambda: store.create_network("red", "n2", ["10.2.0.0/24", "fd00:2::/64", "fd00:3::/64"]),
         "at most one IPv4 and one IPv6"),
        (lambda: store.create_network("red", "n2", ["fd00:2::/64"]), "needs an IPv4 CIDR"),
        (lambda: store.create_network("red", "n2", ["10.2.0.0/24", "fe80::/64"]), "link-local"),
        (lambda: store.create_port("red", "net", "b", ip="fd00:1::a"), "already used"),
        (lambda: store.create_port("red", "net", "b", ip="fd00:9::a"), "not inside"),
        (lambda: store.create_port("red", "v4", "b", ip="fd00:1::b"), "no IPv6 CIDR"),
        (lambda: store.create_port("red", "net", "b", ip=["10.0.0.7", "10.0.0.8"]), "one IPv4"),
    ]:
        with pytest.raises(WeftError, match=msg):
            call()
    assert store.model == before


class _NoBindings:
    """The engine as the API sees it: no port is bound anywhere."""
    def bindings(self):
        return {}

    def port_up_latency(self, _uuid):
        return None


def test_api_views_keep_ip_and_add_every_address(store):
    api = Api(store, _NoBindings())
    api.create_tenant({}, {"name": "red"})
    created = api.create_network({}, {"tenant": "red", "name": "net", "cidrs": ["10.0.0.0/24", "fd00:1::/64"]})
    assert created["cidrs"] == ["10.0.0.0/24", "fd00:1::/64"]
    api.create_network({}, {"tenant": "red", "name": "old", "cidr": "10.1.0.0/24", "cidr6": "fd00:2::/64"})
    port = api.create_port({}, {"tenant": "red", "network": "net", "name": "a", "ips": ["fd00:1::a"]})
    assert port["ip"] == "10.0.0.2" and port["ips"] == ["10.0.0.2", "fd00:1::a"]
    shown = api.show_port("red", "net", "a", {}, {})
    assert (shown["ip"], shown["ips"], shown["ip6"], shown["prefixlen6"]) == \
        ("10.0.0.2", ["10.0.0.2", "fd00:1::a"], "fd00:1::a", 64)
    assert shown["link_local"].startswith("fe80::")
    net = api.show_network("red", "old", {}, {})
    assert (net["cidr"], net["cidr6"], net["cidrs"]) == ("10.1.0.0/24", "fd00:2::/64", ["10.1.0.0/24", "fd00:2::/64"])
    with pytest.raises(WeftError, match="not both"):
        api.create_port({}, {"tenant": "red", "network": "net", "name": "b", "ips": ["fd00:1::b"],
                             "ip": "10.0.0.9"})
