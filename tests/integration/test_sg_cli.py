"""The security-group CLI against a running weftd (one 1-host lab for the module)."""
import os
import re

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def sg_lab():
    lab = Lab(f"c{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "1")
    try:
        for tenant in ("red", "blue"):
            lab.weft("tenant", "create", tenant)
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        yield lab
    finally:
        lab.down()


def state(lab):
    return lab.json("sg", "list"), lab.json("port", "list"), lab.json("tenant", "list")


def test_groups_rules_and_ports_from_the_cli(sg_lab):
    lab = sg_lab
    assert [g["ref"] for g in lab.json("sg", "list", "red")] == ["red/default"]
    default = lab.json("sg", "show", "red/default")
    assert [(r["direction"], r["proto"], r["remote_cidr"], r["remote_sg"], r["ethertype"])
            for r in default["rules"]] == [
        ("egress", "any", "0.0.0.0/0", None, "ipv4"), ("egress", "any", "::/0", None, "ipv6"),
        ("ingress", "any", None, "default", "ipv4"), ("ingress", "any", None, "default", "ipv6")]
    a = lab.json("port", "create", "red/net/a")
    assert a["security_groups"] == ["default"]

    made = lab.json("sg", "create", "red/web")
    assert made["ref"] == "red/web" and UUID.match(made["id"])
    assert lab.json("sg", "show", "red/web")["rules"] == []
    assert "security group red/db created" in lab.weft("sg", "create", "red/db").stdout
    assert lab.json("sg", "show", "red/db")["rules"] == []

    out = lab.weft("sg", "rule", "add", "red/web", "--direction", "ingress", "--proto", "tcp",
                   "--port", "22").stdout
    ssh = out.strip()
    assert UUID.match(ssh), out                                  # only the rule id
    http = lab.json("sg", "rule", "add", "red/web", "--direction", "ingress", "--proto", "tcp",
                    "--port", "8000-8080", "--remote-cidr", "192.168.0.0/16")
    assert (http["port_min"], http["port_max"], http["remote_cidr"], http["remote_sg"]) == (
        8000, 8080, "192.168.0.0/16", None)
    assert UUID.match(http["id"]) and http["key"] > 0
    ping = lab.json("sg", "rule", "add", "red/web", "--direction", "ingress", "--proto", "icmp",
                    "--icmp-type", "8", "--remote-sg", "red/default", "--ethertype", "ipv4")
    assert (ping["proto"], ping["icmp_type"], ping["remote_sg"], ping["remote_cidr"]) == (
        "icmp", 8, "default", None)
    lab.weft("sg", "rule", "add", "red/db", "--direction", "ingress", "--proto", "tcp", "--port", "5432",
             "--remote-sg", "red/web")

    web = lab.json("sg", "show", "red/web")
    assert set(web) >= {"id", "tenant", "name", "ref", "rules", "ports"}
    rules = {r["id"]: r for r in web["rules"]}
    assert set(rules) == {ssh, http["id"], ping["id"]}
    for r in web["rules"]:
        assert set(r) >= {"id", "key", "direction", "proto", "port_min", "port_max", "icmp_type",
                          "remote_cidr", "remote_sg", "ethertype"}
    assert (rules[ssh]["proto"], rules[ssh]["port_min"], rules[ssh]["port_max"],
            rules[ssh]["remote_cidr"]) == ("tcp", 22, 22, "0.0.0.0/0")
    table = lab.weft("sg", "show", "red/web").stdout
    assert "8000-8080" in table and "sg:default" in table and ssh in table

    b = lab.json("port", "create", "red/net/b", "--sg", "red/web", "--sg", "red/db")
    assert b["security_groups"] == ["db", "web"]
    assert lab.json("sg", "show", "red/web")["ports"] == ["red/net/b"]
    upd = lab.json("port", "update", "red/net/a", "--sg", "red/web", "--sg", "red/default")
    assert upd["security_groups"] == ["default", "web"] and upd["ref"] == "red/net/a"
    off = lab.weft("port", "update", "red/net/a", "--no-sg", "--no-port-security").stdout
    assert "security groups none; port security off" in off
    shown = lab.json("port", "show", "red/net/a")
    assert shown["security_groups"] == [] and shown["port_security"] is False
    assert lab.json("port", "update", "red/net/a", "--port-security")["security_groups"] == ["default"]
    listed = {g["ref"]: g for g in lab.json("sg", "list")}
    assert set(listed) == {"red/default", "red/web", "red/db", "blue/default"}
    assert "red/web" in lab.weft("sg", "list").stdout


def test_errors_are_one_line_and_change_nothing(sg_lab):
    lab = sg_lab
    if not any(g["ref"] == "red/web" for g in lab.json("sg", "list", "red")):
        pytest.skip("needs the groups of the previous test")
    ssh = next(r for r in lab.json("sg", "show", "red/web")["rules"] if r["port_min"] == 22)
    rule = ["sg", "rule", "add", "red/web", "--direction", "ingress"]
    before = state(lab)
    cases = [
        (["sg", "create", "red/web"], "already exists"),
        (["sg", "create", "red"], "expected TENANT/SG"),
        (["sg", "create", "nobody/x"], "no tenant named 'nobody'"),
        (["sg", "delete", "red/default"], "deleted only with the tenant"),
        (["sg", "delete", "red/web"], "used by port(s) red/net/b"),
        (["sg", "delete", "red/nope"], "no security group red/nope"),
        (["sg", "show", "red/nope"], "no security group red/nope"),
        (["sg", "list", "nobody"], "no tenant named 'nobody'"),
        (rule + ["--proto", "tcp", "--port", "22"], "already has this rule"),
        (rule + ["--proto", "icmp", "--port", "22"], "not to icmp"),
        (rule + ["--proto", "tcp", "--port", "80-22"], "the first port is above the last"),
        (rule + ["--proto", "tcp", "--port", "http"], "expected N or N-M"),
        (rule + ["--proto", "icmp", "--icmp-type", "300"], "invalid ICMP type 300"),
        (rule + ["--icmp-type", "3"], "not to any"),
        (rule + ["--remote-cidr", "10.0.0.1/8"], "host bits are set"),
        (rule + ["--remote-sg", "blue/default"], "cannot use security group blue/default"),
        (rule + ["--remote-sg", "red/nope"], "no security group red/nope"),
        (rule + ["--remote-sg", "red/db", "--remote-cidr", "10.0.0.0/8"], "not allowed with argument"),
        (rule + ["--ethertype", "ipx"], "invalid choice"),
        (rule + ["--ethertype", "ipv6", "--remote-cidr", "10.0.0.0/8"], "is IPv4 but the rule's ethertype is ipv6"),
        (["sg", "rule", "add", "red/web", "--direction", "sideways"], "invalid choice"),
        (["sg", "rule", "add", "red/web"], "required: --direction"),
        (["sg", "rule", "add", "red/nope", "--direction", "egress"], "no security group red/nope"),
        (["sg", "rule", "delete", "red/web", "nope"], "has no rule nope"),
        (["sg", "rule", "delete", "red/db", ssh["id"]], "red/db has no rule"),
        (["port", "create", "red/net/c", "--sg", "blue/default"], "cannot use security group blue/default"),
        (["port", "create", "red/net/c", "--sg", "red/nope"], "no security group red/nope"),
        (["port", "create", "red/net/c", "--sg", "red/web", "--no-port-security"], "need port security"),
        (["port", "update", "red/net/b"], "nothing to update"),
        (["port", "update", "red/net/b", "--no-port-security"], "still has security groups (db, web)"),
        (["port", "update", "red/net/b", "--sg", "red/web", "--no-sg"], "not allowed with argument"),
        (["port", "update", "red/net/b", "--sg", "blue/default"], "cannot use security group blue/default"),
        (["port", "update", "red/net/zz", "--no-sg"], "no port red/net/zz"),
    ]
    for args, message in cases:
        r = lab.weft(*args, check=False)
        assert r.returncode != 0, args
        assert message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)
    assert state(lab) == before


def test_deleting_rules_groups_and_tenants(sg_lab):
    lab = sg_lab
    lab.weft("sg", "create", "red/tmp")
    rule_id = lab.weft("sg", "rule", "add", "red/tmp", "--direction", "egress", "--proto", "udp",
                       "--port", "53").stdout.strip()
    out = lab.weft("sg", "rule", "delete", "red/tmp", rule_id).stdout
    assert f"rule {rule_id} deleted from red/tmp" in out
    assert rule_id not in [r["id"] for r in lab.json("sg", "show", "red/tmp")["rules"]]
    assert "security group red/tmp deleted" in lab.weft("sg", "delete", "red/tmp").stdout
    assert "red/tmp" not in [g["ref"] for g in lab.json("sg", "list")]
    lab.weft("tenant", "delete", "blue")                   # only its default group: no --cascade
    assert all(g["tenant"] != "blue" for g in lab.json("sg", "list"))
