"""IPv6 prefixes and addresses of networks and ports: checks, normal forms, allocation, link-locals."""
import netaddr
import pytest

from topology import addresses, validate
from topology.errors import WeftError


@pytest.mark.parametrize("value, message", [
    ("fd00:1::1/64", "host bits are set"), ("fd00:1::/40", "between /48 and /124"),
    ("fd00:1::/127", "between /48 and /124"), ("fe80::/64", "link-local"), ("ff02::/64", "multicast"),
    ("::/64", "reserved"), ("10.0.0.0/24", "IPv4 only"), ("zz::/64", "invalid IPv6 CIDR"),
])
def test_bad_ipv6_cidrs(value, message):
    with pytest.raises(WeftError, match=message):
        validate.cidr6(value)


def test_network_takes_one_ipv4_and_at_most_one_ipv6_prefix():
    v4, v6 = validate.network_cidrs(["fd00:1::/64", "10.0.0.0/24"])
    assert (str(v4), str(v6)) == ("10.0.0.0/24", "fd00:1::/64")
    assert validate.network_cidrs("10.0.0.0/24")[1] is None
    for bad, msg in ((["10.0.0.0/24", "10.0.1.0/24"], "at most one IPv4 and one IPv6"),
                     (["10.0.0.0/24", "fd00:1::/64", "fd00:2::/64"], "at most one IPv4 and one IPv6"),
                     (["fd00:1::/64"], "needs an IPv4 CIDR"), ([], "invalid cidrs"), ([5], "invalid cidrs")):
        with pytest.raises(WeftError, match=msg):
            validate.network_cidrs(bad)


def test_port_addresses_are_split_checked_and_normalised():
    v4, v6 = validate.cidr("10.0.0.0/24"), validate.cidr6("fd00:1::/64")
    taken = {"10.0.0.5", "fd00:1::5"}
    assert validate.port_ips(["FD00:1:0::0:7", "10.0.0.9", "fd00:1::8/64"], v4, "10.0.0.1", v6, taken) \
        == (["10.0.0.9"], ["fd00:1::7", "fd00:1::8"])
    assert validate.port_ips(None, v4, "10.0.0.1", v6, taken) == ([], [])
    for bad, msg in ((["fd00:2::7"], "not inside the network's IPv6 CIDR fd00:1::/64"),
                     (["fd00:1::5"], "already used"), (["fd00:1::"], "subnet-router anycast"),
                     (["fd00:1::1"], "reserved for the network's router"),
                     (["10.0.0.7", "10.0.0.8"], "one IPv4 address"),
                     (["fd00:1::7", "fd00:1:0::7"], "given twice"), (["fd00:1::zz"], "invalid IPv6")):
        with pytest.raises(WeftError, match=msg):
            validate.port_ips(bad, v4, "10.0.0.1", v6, taken)
    with pytest.raises(WeftError, match="the network has no IPv6 CIDR"):
        validate.port_ips(["fd00:1::7"], v4, "10.0.0.1", None, set())


def test_ipv6_allocation_starts_at_2_and_skips_taken_ones():
    net = validate.cidr6("fd00:1::/64")
    assert validate.allocate_ip6(net, set()) == "fd00:1::2"
    assert validate.allocate_ip6(net, {"fd00:1::2", "fd00:1::3"}) == "fd00:1::4"
    small = validate.cidr6("fd00:1::/124")
    with pytest.raises(WeftError, match="no free IP"):
        validate.allocate_ip6(small, {str(netaddr.IPAddress(small.first + i, 6)) for i in range(2, 16)})


def test_link_local_is_modified_eui64_of_the_mac():
    assert addresses.link_local("02:77:65:00:00:01") == "fe80::77:65ff:fe00:1"
    assert addresses.link_local("fa:16:3e:12:34:56") == "fe80::f816:3eff:fe12:3456"
    assert addresses.solicited_node("fd00:1::abcd:1234") == "ff02::1:ffcd:1234"
    assert addresses.multicast_mac("ff02::1:ffcd:1234") == "33:33:ff:cd:12:34"
    assert addresses.ordered(("fd00::2", "10.0.0.2", "2001:db8::1")) == ("10.0.0.2", "fd00::2", "2001:db8::1")


def test_static_route_destinations_and_next_hops_of_either_family():
    from topology import validate as V
    assert V.route_text(V.route_cidr("FD00:9:0::/64")) == "fd00:9::/64"
    assert V.route_text(V.route_cidr("::/0")) == "::/0"
    assert V.route_text(V.route_cidr("192.168.5.0/24")) == "192.168.5.0/24"
    for bad, msg in (("fd00:9::1/64", "host bits"), ("fe80::/64", "never routed"),
                     ("ff05::/16", "never routed"), ("fd00::/129", "expected")):
        with pytest.raises(WeftError, match=msg):
            V.route_cidr(bad)
    hop = V.next_hop("fd00:1::5")
    assert V.in_network(hop, "10.0.1.0/24", "fd00:1::/64")
    assert not V.in_network(hop, "10.0.1.0/24", "fd00:2::/64")
    assert not V.in_network(hop, "10.0.1.0/24", None)
    assert V.in_network(V.next_hop("10.0.1.5"), "10.0.1.0/24", None)
    with pytest.raises(WeftError, match="invalid next hop"):
        V.next_hop("fd00::1::2")
