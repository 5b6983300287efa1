"""IPv6 routing on the lab: two VMs on two prefixes of one router, on different hosts, ping each other; another tenant on the same prefixes cannot reach them."""
import os
import re

import pytest

from tests.integration.test_switching import Capture, mac_of, wait_bound
from tests.labtools import Lab

pytestmark = pytest.mark.integration

# name: (tenant, network, host, IPv4, IPv6); blue reuses red's prefixes, bc holds ra's addresses
VMS = {"ra": ("red", "n0", "hv1", "10.0.0.11", "fd00::11"),
       "rb": ("red", "n1", "hv2", "10.0.1.11", "fd00:1::11"),
       "bc": ("blue", "n0", "hv2", "10.0.0.11", "fd00::11"),
       "bd": ("blue", "n1", "hv1", "10.0.1.12", "fd00:1::12")}


@pytest.fixture(scope="module")
def r6lab():
    lab = Lab(f"v{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        for tenant in ("red", "blue"):
            lab.weft("tenant", "create", tenant)
            for i in (0, 1):
                lab.weft("network", "create", f"{tenant}/n{i}", "--cidr", f"10.0.{i}.0/24",
                         "--cidr", f"fd00:{i}::/64")
            lab.weft("router", "create", f"{tenant}/r")
            for i in (0, 1):
                lab.weft("router", "attach", f"{tenant}/r", f"{tenant}/n{i}")
        for vm, (tenant, net, host, ip, ip6) in VMS.items():
            lab.weft("port", "create", f"{tenant}/{net}/{vm}", "--ip", ip, "--ip", ip6)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/{net}/{vm}")
        wait_bound(lab, len(VMS))
        yield lab
    finally:
        lab.down()


def ping6(lab, vm, ip, count=1):
    return lab.exec(vm, "ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", ip)


def test_vms_get_an_ipv6_default_route_via_the_prefix_gateway_and_can_ping_it(r6lab):
    for vm, (_t, net, *_rest) in VMS.items():
        gw = "fd00::1" if net == "n0" else "fd00:1::1"
        out = r6lab.exec(vm, "ip", "-6", "route", "show", "default").stdout
        assert f"via {gw} dev eth0" in out, (vm, out)
        r = ping6(r6lab, vm, gw)
        assert r.returncode == 0, f"{vm} -> {gw}: {r.stdout}"
    nets = r6lab.json("router", "show", "red/r")["networks"]
    assert [(n["cidr6"], n["gateway6"]) for n in nets] == [("fd00::/64", "fd00::1"), ("fd00:1::/64", "fd00:1::1")]


def test_ipv6_between_prefixes_and_hosts_is_routed_with_one_hop(r6lab):
    for src, dst in (("ra", "rb"), ("rb", "ra"), ("bc", "bd"), ("bd", "bc")):
        r = ping6(r6lab, src, VMS[dst][4], count=2)
        assert r.returncode == 0, f"{src} -> {dst}: {r.stdout}"
        assert {int(t) for t in re.findall(r"ttl=(\d+)", r.stdout)} == {63}, r.stdout
    r = r6lab.exec("ra", "ping", "-c", "1", "-W", "2", VMS["rb"][3])     # IPv4 routing as before
    assert r.returncode == 0, r.stdout


def test_another_tenant_on_the_same_prefixes_cannot_reach_them(r6lab, tmp_path):
    blue = {mac_of(r6lab, "bc"), mac_of(r6lab, "bd"), r6lab.json("router", "show", "blue/r")["mac"]}
    with Capture(r6lab, ["ra", "rb", "bc"], tmp_path) as cap:
        assert ping6(r6lab, "bd", "fd00::11", count=2).returncode == 0      # blue's bc, never red's ra
        assert ping6(r6lab, "bd", "fd00:1::11", count=2).returncode != 0    # red's rb: not in blue
        assert ping6(r6lab, "bc", "fd00:1::11", count=2).returncode != 0
    from scapy.layers.inet6 import IPv6
    heard = [f for f in cap.frames("bc") if IPv6 in f and f[IPv6].src == "fd00:1::12"]
    assert heard, "bc did not get bd's routed ping: the test proves nothing"
    for vm in ("ra", "rb"):
        leaked = [f.summary() for f in cap.frames(vm) if f.src in blue]
        assert leaked == [], f"{vm} got blue's frames: {leaked}"


def test_ipv6_static_routes_through_the_cli(r6lab):
    r6lab.weft("router", "route", "add", "red/r", "FD00:9::/64", "--via", "fd00:1::11")
    assert {"cidr": "fd00:9::/64", "via": "fd00:1::11"} in r6lab.json("router", "show", "red/r")["routes"]
    for args, msg in ((["fd00:8::/64", "--via", "fd00:5::1"], "not inside"),
                      (["fd00:8::/64", "--via", "10.0.1.11"], "IPv4 but the route"),
                      (["fe80::/64", "--via", "fd00:1::11"], "never routed"),
                      (["fd00:9::/64", "--via", "fd00:1::11"], "already has a route")):
        r = r6lab.weft("router", "route", "add", "red/r", *args, check=False)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
    r = r6lab.weft("router", "detach", "red/r", "red/n1", check=False)
    assert r.returncode != 0 and "fd00:9::/64" in r.stderr
    r6lab.weft("router", "route", "delete", "red/r", "fd00:9::/64")
    assert r6lab.json("router", "show", "red/r")["routes"] == []
