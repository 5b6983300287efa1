"""Validation and allocation of model objects: every bad input gets a clear error."""
import random

import netaddr
import pytest

from topology import validate
from topology.errors import WeftError


@pytest.mark.parametrize("value, message", [
    ("banana", "invalid CIDR"), ("10.0.0.1/24", "host bits are set"), ("10.0.0.0/30", "between /8 and /29"),
    ("fd00::/64", "IPv4"), ("0.0.0.0/4", "between /8 and /29"),
])
def test_bad_cidrs(value, message):
    with pytest.raises(WeftError, match=message):
        validate.cidr(value)


def test_gateway_defaults_to_first_address_and_must_be_usable():
    net = validate.cidr("10.0.0.0/24")
    assert validate.gateway(None, net) == "10.0.0.1"
    assert validate.gateway("10.0.0.254", net) == "10.0.0.254"
    for bad, msg in (("10.0.1.1", "not inside"), ("10.0.0.255", "broadcast"), ("10.0.0.0", "network address"),
                     ("x", "invalid gateway")):
        with pytest.raises(WeftError, match=msg):
            validate.gateway(bad, net)


def test_port_ips_are_checked_and_allocated_around_the_gateway_and_taken_ones():
    net = validate.cidr("10.0.0.0/29")
    assert validate.allocate_ip(net, "10.0.0.1", set()) == "10.0.0.2"
    assert validate.allocate_ip(net, "10.0.0.1", {"10.0.0.2", "10.0.0.3"}) == "10.0.0.4"
    with pytest.raises(WeftError, match="no free IP"):
        validate.allocate_ip(net, "10.0.0.1", {f"10.0.0.{i}" for i in range(2, 7)})
    with pytest.raises(WeftError, match="gateway"):
        validate.port_ip("10.0.0.1", net, "10.0.0.1", set())
    with pytest.raises(WeftError, match="already used"):
        validate.port_ip("10.0.0.3", net, "10.0.0.1", {"10.0.0.3"})
    assert validate.port_ip("10.0.0.5", net, "10.0.0.1", set()) == "10.0.0.5"


@pytest.mark.parametrize("value, message", [
    ("zz", "invalid MAC"), ("01:00:5e:00:00:01", "multicast"), ("00:00:00:00:00:00", "all zeros"),
])
def test_bad_macs(value, message):
    with pytest.raises(WeftError, match=message):
        validate.mac(value)


def test_mac_normalised_and_allocated_unique_and_unicast():
    assert validate.mac("02-77-65-AA-BB-CC") == "02:77:65:aa:bb:cc"
    rng = random.Random(1)
    taken = set()
    for _ in range(200):
        mac = validate.allocate_mac(taken, rng)
        assert mac not in taken and not netaddr.EUI(mac).words[0] & 1
        taken.add(mac)


def test_vni_allocation_is_unique_and_in_range():
    assert validate.allocate_vni(set()) == validate.VNI_FIRST
    assert validate.allocate_vni({1000, 1001}) == 1002
    assert validate.allocate_vni({validate.VNI_MAX}) == validate.VNI_FIRST


@pytest.mark.parametrize("ref, parts, ok", [
    ("red/net/p1", 3, True), ("red/net", 3, False), ("red//p", 3, False), ("red/net", 2, True),
    ("red net/x", 2, False), ("a/b/c/d", 3, False),
])
def test_references(ref, parts, ok):
    if ok:
        assert validate.split_ref(ref, parts, "port") == ref.split("/")
    else:
        with pytest.raises(WeftError, match="expected|invalid"):
            validate.split_ref(ref, parts, "port")
