"""Security-group validation (pure): rule fields, port ranges, peers, group references, rule keys."""
import pytest

from topology import validate
from topology.errors import WeftError


def rule(direction="ingress", **kw):
    return validate.sg_rule(direction, **kw)


def test_a_rule_is_normalised_and_defaults_to_any_protocol_from_anyone():
    assert rule() == {"direction": "ingress", "proto": "any", "port_min": None, "port_max": None,
                      "icmp_type": None, "remote_cidr": "0.0.0.0/0", "remote_sg": None,
                      "ethertype": "ipv4"}
    assert rule("EGRESS", proto="TCP", port_min=22, ethertype="IPv4") == {
        "direction": "egress", "proto": "tcp", "port_min": 22, "port_max": 22, "icmp_type": None,
        "remote_cidr": "0.0.0.0/0", "remote_sg": None, "ethertype": "ipv4"}
    udp = rule(proto="udp", port_min="8000", port_max="8080")
    assert (udp["port_min"], udp["port_max"]) == (8000, 8080)
    assert rule(proto="icmp", icmp_type=8)["icmp_type"] == 8
    assert rule(proto="icmp", icmp_type=0)["icmp_type"] == 0
    assert rule(remote_cidr="10.1.0.0/255.255.0.0")["remote_cidr"] == "10.1.0.0/16"
    assert rule(remote_cidr="10.1.2.3")["remote_cidr"] == "10.1.2.3/32"
    only_group = rule(remote_sg="web")
    assert only_group["remote_sg"] == "web" and only_group["remote_cidr"] is None


@pytest.mark.parametrize("kw, message", [
    ({"direction": "inbound"}, "invalid direction 'inbound': expected ingress or egress"),
    ({"direction": None}, "invalid direction None"),
    ({"proto": "sctp"}, "invalid protocol 'sctp': expected tcp, udp, icmp or any"),
    ({"proto": "any", "port_min": 22}, "port range only applies to tcp and udp rules, not to any"),
    ({"proto": "icmp", "port_min": 22}, "not to icmp"),
    ({"proto": "tcp", "port_max": 22}, "needs its first port"),
    ({"proto": "tcp", "port_min": 0}, "invalid port 0: expected an integer from 1 to 65535"),
    ({"proto": "tcp", "port_min": 65536}, "invalid port 65536"),
    ({"proto": "tcp", "port_min": 80, "port_max": 22}, "invalid port range 80-22: the first port is above"),
    ({"proto": "tcp", "port_min": True}, "invalid port True"),
    ({"proto": "tcp", "port_min": "http"}, "invalid port 'http'"),
    ({"proto": "tcp", "icmp_type": 8}, "ICMP type only applies to icmp rules, not to tcp"),
    ({"proto": "any", "icmp_type": 8}, "not to any"),
    ({"proto": "icmp", "icmp_type": 256}, "invalid ICMP type 256: expected an integer from 0 to 255"),
    ({"proto": "icmp", "icmp_type": -1}, "invalid ICMP type -1"),
    ({"remote_cidr": "10.0.0.1/24"}, "host bits are set \\(did you mean 10.0.0.0/24\\?\\)"),
    ({"remote_cidr": "banana"}, "invalid remote CIDR 'banana'"),
    ({"remote_cidr": "fd00::/64"}, "is IPv6 but the rule's ethertype is ipv4"),
    ({"remote_cidr": "10.0.0.0/8", "ethertype": "ipv6"}, "is IPv4 but the rule's ethertype is ipv6"),
    ({"remote_cidr": "10.0.0.0/8", "remote_sg": "web"}, "mutually exclusive"),
    ({"remote_sg": "no good"}, "invalid security group name 'no good'"),
    ({"ethertype": "ipx"}, "invalid ethertype 'ipx': expected ipv4 or ipv6"),
])
def test_bad_rules_are_refused_with_one_clear_line(kw, message):
    kw = {"direction": "ingress", **kw}
    with pytest.raises(WeftError, match=message) as info:
        validate.sg_rule(**kw)
    assert "\n" not in str(info.value) and info.value.status == 400


@pytest.mark.parametrize("text, expected", [
    ("22", (22, 22)), ("8000-8080", (8000, 8080)), (" 1 - 65535 ", (1, 65535)), ("443-443", (443, 443)),
])
def test_port_ranges(text, expected):
    assert validate.port_range(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "expected N or N-M"), ("http", "expected N or N-M"), ("22-", "expected N or N-M"),
    ("-22", "expected N or N-M"), ("1-2-3", "expected N or N-M"), ("0", "invalid port 0"),
    ("70000", "invalid port 70000"), ("80-22", "the first port is above the last"), (None, "expected N"),
])
def test_bad_port_ranges(text, message):
    with pytest.raises(WeftError, match=message):
        validate.port_range(text)


def test_rule_cidr_allows_anyone_and_hosts():
    assert validate.rule_cidr("0.0.0.0/0") == "0.0.0.0/0"
    assert validate.rule_cidr("192.168.5.0/24") == "192.168.5.0/24"
    with pytest.raises(WeftError, match="did you mean 0.0.0.0/0"):
        validate.rule_cidr("1.0.0.0/0")


def test_identity_makes_equal_rules_equal_whatever_the_spelling():
    a = rule(proto="TCP", port_min=22)
    b = rule(proto="tcp", port_min="22", port_max=22, remote_cidr="0.0.0.0/0")
    assert validate.rule_identity(a) == validate.rule_identity(b)
    assert validate.rule_identity(a) != validate.rule_identity(rule(proto="tcp", port_min=22, port_max=23))
    assert validate.rule_identity(a) != validate.rule_identity(rule("egress", proto="tcp", port_min=22))


def test_the_default_groups_rules():
    out, out6, into, into6 = validate.default_sg_rules()
    assert (out["direction"], out["proto"], out["remote_cidr"], out["remote_sg"], out["ethertype"]) == (
        "egress", "any", "0.0.0.0/0", None, "ipv4")
    assert (out6["direction"], out6["remote_cidr"], out6["ethertype"]) == ("egress", "::/0", "ipv6")
    assert (into["direction"], into["proto"], into["remote_cidr"], into["remote_sg"]) == (
        "ingress", "any", None, "default")
    assert (into6["direction"], into6["remote_sg"], into6["ethertype"]) == ("ingress", "default", "ipv6")


def test_group_references_must_be_of_the_users_tenant():
    assert validate.group_name("web", "red", "port red/net/a") == "web"
    assert validate.group_name("red/web", "red", "port red/net/a") == "web"
    with pytest.raises(WeftError, match="port red/net/a cannot use security group blue/web: only "
                                        "groups of its own tenant \\(red\\)"):
        validate.group_name("blue/web", "red", "port red/net/a")
    with pytest.raises(WeftError, match="expected TENANT/SG"):
        validate.group_name("red/web/x", "red", "port red/net/a")
    with pytest.raises(WeftError, match="invalid security group name"):
        validate.group_name("we b", "red", "port red/net/a")
    assert validate.group_names(["web", "red/db", "red/web"], "red", "p") == ["db", "web"]
    assert validate.group_names(None, "red", "p") == []
    with pytest.raises(WeftError, match="expected a list"):
        validate.group_names("web", "red", "p")


def test_two_part_references_name_their_shape():
    with pytest.raises(WeftError, match="invalid security group reference 'red': expected TENANT/SG"):
        validate.split_ref("red", 2, "security group")
    with pytest.raises(WeftError, match="expected TENANT/ROUTER"):
        validate.split_ref("red", 2, "router")
    with pytest.raises(WeftError, match="expected TENANT/NET"):
        validate.split_ref("red", 2, "network")
    assert validate.split_ref("red/web", 2, "security group") == ["red", "web"]


def test_rule_keys_start_at_one_grow_and_fill_gaps_only_when_exhausted():
    assert validate.allocate_rule_key(set()) == 1
    assert validate.allocate_rule_key({1, 2}) == 3
    assert validate.allocate_rule_key({2, 7}) == 8      # a deleted key is not reused while it can be avoided
    assert validate.allocate_rule_key({validate.RULE_KEY_MAX}) == 1
    assert validate.allocate_rule_key({1, 2, 4, validate.RULE_KEY_MAX}) == 3
    assert validate.RULE_KEY_MAX == 2 ** 32 - 1
