"""Strict input: names match whole, digits are ASCII, addresses are strings, a port IP's prefix is its network's."""
import netaddr
import pytest

from topology import validate
from topology.errors import WeftError


@pytest.mark.parametrize("bad", ["web\n", "web\r\n", "\nweb", "web ", "wéb", "-web", "", 5, None])
def test_names_must_match_whole(bad):
    with pytest.raises(WeftError, match="invalid port name"):
        validate.name("port", bad)


def test_names_that_are_fine_pass():
    assert validate.name("port", "web-1.a_b") == "web-1.a_b"


@pytest.mark.parametrize("bad", [0x0277650000FF, 167772165, "١٠.0.0.5", b"10.0.0.5"])
def test_addresses_must_be_ascii_strings(bad):
    with pytest.raises(WeftError, match="invalid"):
        validate.address(bad)
    with pytest.raises(WeftError, match="invalid"):
        validate.mac(bad)


def test_integer_ports_from_non_ascii_digits_are_refused():
    with pytest.raises(WeftError, match="expected an integer"):
        validate._int("٨٠", "port", 1, 65535)
    assert validate._int("80", "port", 1, 65535) == 80


def test_a_port_ip_keeps_its_prefix_only_when_it_is_the_networks():
    net = netaddr.IPNetwork("10.1.0.0/24")
    with pytest.raises(WeftError, match="prefix /8 is not the network's /24"):
        validate.port_ip("10.1.0.77/8", net, "10.1.0.1", set())
    with pytest.raises(WeftError, match="prefix /x is not"):
        validate.port_ip("10.1.0.77/x", net, "10.1.0.1", set())
    assert validate.port_ip("10.1.0.77/24", net, "10.1.0.1", set()) == "10.1.0.77"
    assert validate.port_ip("10.1.0.77", net, "10.1.0.1", set()) == "10.1.0.77"
    net6 = netaddr.IPNetwork("fd00:1::/64")
    with pytest.raises(WeftError, match="prefix /48 is not the network's /64"):
        validate.port_ip6("fd00:1::9/48", net6, set())
