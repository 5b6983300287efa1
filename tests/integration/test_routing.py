"""Part 2 on the lab: distributed routing between a tenant's subnets, gateway answers, DHCP."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration
PY = sys.executable

# name: (tenant, network, host, ip)
VMS = {
    "ra1": ("red", "n0", "hv1", "10.0.0.11"), "ra2": ("red", "n0", "hv2", "10.0.0.12"),
    "rb1": ("red", "n1", "hv3", "10.0.1.11"), "rb2": ("red", "n1", "hv1", "10.0.1.12"),
    "ba1": ("blue", "n0", "hv2", "10.0.0.21"), "bb1": ("blue", "n1", "hv3", "10.0.1.21"),
}
RED = [v for v, spec in VMS.items() if spec[0] == "red"]


@pytest.fixture(scope="module")
def rlab():
    lab = Lab(f"r{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "3")
    try:
        for tenant in ("red", "blue"):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/n0", "--cidr", "10.0.0.0/24", "--dns", "10.0.0.53")
            lab.weft("network", "create", f"{tenant}/n1", "--cidr", "10.0.1.0/24")
            lab.weft("router", "create", f"{tenant}/r")
            lab.weft("router", "attach", f"{tenant}/r", f"{tenant}/n0")
            lab.weft("router", "attach", f"{tenant}/r", f"{tenant}/n1")
        for vm, (tenant, net, host, ip) in VMS.items():
            lab.weft("port", "create", f"{tenant}/{net}/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/{net}/{vm}")
        yield lab
    finally:
        lab.down()


def ping(lab, vm, ip, count=1, wait=2):
    return lab.exec(vm, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait), ip)


def test_every_red_vm_reaches_every_red_vm_across_subnets_and_hosts(rlab):
    for src in RED:
        for dst in RED:
            if src != dst:
                r = ping(rlab, src, VMS[dst][3])
                assert r.returncode == 0, f"{src} -> {dst}: {r.stdout}"
                ttl = int(re.search(r"ttl=(\d+)", r.stdout).group(1))
                routed = VMS[src][1] != VMS[dst][1]
                assert ttl == (63 if routed else 64), f"{src} -> {dst}: ttl {ttl}"


def test_each_vm_pings_its_gateway_and_the_routers_other_address(rlab):
    for vm in RED:
        net = VMS[vm][1]
        assert ping(rlab, vm, "10.0.0.1" if net == "n0" else "10.0.1.1").returncode == 0, vm
        assert ping(rlab, vm, "10.0.1.1" if net == "n0" else "10.0.0.1").returncode == 0, vm


def test_tcp_across_subnets_and_hosts(rlab):
    server = subprocess.Popen([rlab.weft_path, "lab", "exec", "rb1", "--", "iperf3", "-s", "-1"],
                              env=rlab.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = rlab.exec("ra1", "iperf3", "-c", "10.0.1.11", "-t", "2", "-J", timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] > 10e6
    finally:
        server.kill()
        server.wait()


def test_no_packet_crosses_between_red_and_blue_routers(rlab):
    # blue's addresses from red: routed by red's router, which only knows red's networks
    for src in RED:
        for dst in ("ba1", "bb1"):
            assert ping(rlab, src, VMS[dst][3], wait=1).returncode != 0, f"{src} -> {dst}"
    for src in ("ba1", "bb1"):
        for dst in RED:
            assert ping(rlab, src, VMS[dst][3], wait=1).returncode != 0, f"{src} -> {dst}"
    # blue routes between its own subnets fine
    assert ping(rlab, "ba1", "10.0.1.21").returncode == 0


def test_routers_refuse_other_tenants_networks_and_overlaps(rlab):
    cases = [
        (["router", "attach", "red/r", "blue/n0"], "own tenant"),
        (["router", "attach", "red/r", "red/n0"], "already attached"),
        (["router", "create", "red/r"], "already exists"),
        (["router", "route", "add", "red/r", "192.168.0.0/16", "--via", "172.16.0.1"], "not inside"),
        (["router", "delete", "red/r"], "still attached"),
        (["router", "attach", "red/nope", "red/n0"], "no router red/nope"),
    ]
    rlab.weft("network", "create", "red/dup", "--cidr", "10.0.0.0/25")
    rlab.weft("router", "create", "red/r2")
    try:
        cases.append((["router", "attach", "red/r", "red/dup"], "overlaps"))
        before = rlab.json("router", "list")
        for args, message in cases:
            r = rlab.weft(*args, check=False)
            assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert rlab.json("router", "list") == before
    finally:
        rlab.weft("router", "delete", "red/r2")
        rlab.weft("network", "delete", "red/dup")


def test_static_route_via_a_vm(rlab):
    rlab.weft("router", "route", "add", "red/r", "192.168.50.0/24", "--via", "10.0.1.12")
    try:
        assert "192.168.50.0/24" in rlab.weft("router", "show", "red/r").stdout
        # rb2 is the next hop: the routed echo request arrives there, TTL decremented once
        sniff = subprocess.Popen([rlab.weft_path, "lab", "exec", "rb2", "--", "timeout", "5", "tcpdump",
                                  "-c", "1", "-n", "-v", "-e", "-i", "eth0", "icmp and dst host 192.168.50.1"],
                                 env=rlab.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)
        ping(rlab, "ra1", "192.168.50.1", count=3, wait=1)
        out, _ = sniff.communicate(timeout=10)
        assert "192.168.50.1" in out and "ttl 63" in out, out
    finally:
        rlab.weft("router", "route", "delete", "red/r", "192.168.50.0/24")
    assert "192.168.50.0/24" not in rlab.weft("router", "show", "red/r").stdout


def test_dhcp_gives_the_ports_address_prefix_gateway_and_mtu(rlab):
    rlab.weft("port", "create", "red/n0/dh", "--ip", "10.0.0.77")
    rlab.weft("lab", "vm", "create", "dh", "--host", "hv3", "--port", "red/n0/dh", "--dhcp")
    try:
        addrs = json.loads(rlab.exec("dh", "ip", "-j", "addr", "show", "eth0").stdout)[0]
        inet = [(a["local"], a["prefixlen"]) for a in addrs["addr_info"] if a["family"] == "inet"]
        assert inet == [("10.0.0.77", 24)]
        assert addrs["mtu"] == 1450
        route = json.loads(rlab.exec("dh", "ip", "-j", "route", "show", "default").stdout)
        assert route[0]["gateway"] == "10.0.0.1"
        assert ping(rlab, "dh", "10.0.1.11").returncode == 0      # across subnets after DHCP
    finally:
        rlab.weft("lab", "vm", "delete", "dh", check=False)
        rlab.weft("port", "delete", "red/n0/dh", check=False)


def test_dhcp_never_leases_to_an_unknown_mac_or_another_ports_address(rlab):
    rlab.weft("port", "create", "red/n0/dh2", "--ip", "10.0.0.78")
    try:
        # the VM's NIC has a MAC that is not the port's: port security keeps DHCP from the controller
        r = rlab.weft("lab", "vm", "create", "dh2", "--host", "hv1", "--port", "red/n0/dh2",
                      "--mac", "02:00:00:00:99:99", "--dhcp", check=False)
        assert r.returncode != 0 and "no DHCP lease" in r.stderr
        assert "dh2" not in [v["name"] for v in rlab.json("lab", "status")["vms"]]
        # a VM asking (from its own MAC) for another MAC's lease gets no answer
        out = rlab.exec("ra1", PY, "-c", """
from scapy.all import *
conf.verb = 0
me = get_if_hwaddr('eth0')
req = (Ether(src=me, dst='ff:ff:ff:ff:ff:ff') / IP(src='0.0.0.0', dst='255.255.255.255') /
       UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex('020000009999') + bytes(10), xid=77) /
       DHCP(options=[('message-type', 'discover'), 'end']))
ans = srp1(req, iface='eth0', timeout=2)
print('answered' if ans else 'none')
""")
        assert out.stdout.strip() == "none", out.stdout + out.stderr
    finally:
        rlab.weft("port", "delete", "red/n0/dh2", check=False)


def test_no_dhcp_networks_get_no_answer(rlab):
    rlab.weft("network", "create", "red/quiet", "--cidr", "10.9.0.0/24", "--no-dhcp")
    rlab.weft("port", "create", "red/quiet/q")
    try:
        r = rlab.weft("lab", "vm", "create", "q", "--host", "hv2", "--port", "red/quiet/q", "--dhcp",
                      check=False)
        assert r.returncode != 0 and "no DHCP lease" in r.stderr
    finally:
        rlab.weft("network", "delete", "red/quiet", "--cascade")


def test_detach_cuts_cross_subnet_traffic_and_keeps_same_subnet(rlab):
    rlab.weft("--wait", "router", "detach", "red/r", "red/n1")     # every host has it: no race
    try:
        assert ping(rlab, "ra1", "10.0.1.11", wait=1).returncode != 0
        assert ping(rlab, "rb1", "10.0.0.11", wait=1).returncode != 0
        assert ping(rlab, "ra1", "10.0.0.12").returncode == 0
        assert ping(rlab, "rb1", "10.0.1.12").returncode == 0
    finally:
        rlab.weft("--wait", "router", "attach", "red/r", "red/n1")
    assert ping(rlab, "ra1", "10.0.1.11", count=3).returncode == 0
