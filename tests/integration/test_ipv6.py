"""IPv6 inside tenant networks on the lab: ping across hosts, anti-spoofing, isolation, ND that stays home."""
import json
import os
import time

import pytest

from tests.integration.test_switching import PY, Capture, mac_of, scapy_send, wait_bound
from tests.labtools import Lab

pytestmark = pytest.mark.integration

# name: (host, IPv4, IPv6); blue reuses red's prefixes and addresses (b1 has r2's, b2 has r1's)
RED = {"r1": ("hv1", "10.0.0.11", "fd00:1::11"), "r2": ("hv2", "10.0.0.12", "fd00:1::12"),
       "r3": ("hv1", "10.0.0.13", "fd00:1::13")}
BLUE = {"b1": ("hv1", "10.0.0.12", "fd00:1::12"), "b2": ("hv2", "10.0.0.11", "fd00:1::11")}
NO_SG = ("red/net/r3", "blue/net/b1")


@pytest.fixture(scope="module")
def v6_lab():
    lab = Lab(f"i{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        for tenant, vms in (("red", RED), ("blue", BLUE)):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24", "--cidr", "fd00:1::/64")
            for vm, (host, ip, ip6) in vms.items():
                lab.weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip, "--ip", ip6)
                lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
        for port in NO_SG:           # multicast is delivered only to ports without security groups
            lab.weft("port", "update", port, "--no-sg")
        wait_bound(lab, len(RED) + len(BLUE))
        yield lab
    finally:
        lab.down()


def ping6(lab: Lab, vm: str, ip: str, count: int = 1) -> bool:
    return lab.exec(vm, "ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", ip).returncode == 0


def link_local(lab: Lab, vm: str) -> str:
    """The VM's link-local address (the kernel adds it once the NIC has carrier)."""
    deadline = time.monotonic() + 10
    while True:
        out = lab.exec(vm, "ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope", "link").stdout
        found = [a["local"] for i in json.loads(out or "[]") for a in i.get("addr_info", []) if "local" in a]
        if found or time.monotonic() > deadline:
            return found[0]
        time.sleep(0.05)


def test_the_cli_shows_every_address_and_the_vm_has_them(v6_lab):
    port = v6_lab.json("port", "show", "red/net/r1")
    assert port["ips"] == ["10.0.0.11", "fd00:1::11"] and port["ip"] == "10.0.0.11"
    assert v6_lab.json("network", "show", "red/net")["cidrs"] == ["10.0.0.0/24", "fd00:1::/64"]
    assert "10.0.0.11,fd00:1::11" in v6_lab.weft("port", "list", "red").stdout
    assert link_local(v6_lab, "r1") == port["link_local"]       # EUI-64 of the port's MAC
    shown = v6_lab.exec("r1", "ip", "-6", "addr", "show", "dev", "eth0").stdout
    assert "fd00:1::11/64" in shown and "tentative" not in shown


def test_ipv6_ping_between_vms_across_hosts_global_and_link_local(v6_lab):
    assert ping6(v6_lab, "r1", "fd00:1::12", count=2)            # hv1 -> hv2
    assert ping6(v6_lab, "r2", "fd00:1::13")                     # hv2 -> hv1
    assert ping6(v6_lab, "r1", "fd00:1::13")                     # same host
    assert ping6(v6_lab, "r1", f"{link_local(v6_lab, 'r2')}%eth0")
    assert ping6(v6_lab, "b2", "fd00:1::12")                     # blue's own fd00:1::12 (b1)
    neigh = v6_lab.exec("r1", "ip", "-6", "neigh", "show", "fd00:1::12").stdout
    assert v6_lab.json("port", "show", "red/net/r2")["mac"] in neigh   # answered by weftd for r2


def test_a_spoofed_ipv6_source_is_dropped(v6_lab, tmp_path):
    with Capture(v6_lab, ["r2", "r3", "b1"], tmp_path) as cap:
        scapy_send(v6_lab, "r1", """
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, ICMPv6ND_RA
me, r2 = get_if_hwaddr('eth0'), sys.argv[1] if len(sys.argv) > 1 else None
pkts = [Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fd00:1::99', dst='ff02::1')/ICMPv6EchoRequest(data=b'FORGEDSRC'),
        Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fd00:1::12', dst='ff02::1')/ICMPv6EchoRequest(data=b'FORGEDSRC'),
        Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fe80::1', dst='ff02::1')/ICMPv6EchoRequest(data=b'FORGEDSRC'),
        Ether(src='02:00:00:de:ad:01', dst='33:33:00:00:00:01')/IPv6(src='fd00:1::11', dst='ff02::1')/ICMPv6EchoRequest(data=b'FORGEDMAC'),
        Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fd00:1::11', dst='ff02::1', hlim=255)/ICMPv6ND_NA(tgt='fd00:1::12', R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr=me),
        Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fd00:1::11', dst='ff02::1', hlim=255)/ICMPv6ND_RA(),
        Ether(src=me, dst='33:33:00:00:00:01')/IPv6(src='fd00:1::11', dst='ff02::1')/ICMPv6EchoRequest(data=b'GENUINE')]
sendp(pkts, iface='eth0', count=3)
""")
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_RA
    genuine = [f for f in cap.frames("r3") if b"GENUINE" in bytes(f)]
    assert genuine, "the genuine multicast from r1's own address did not arrive: the test proves nothing"
    for vm in ("r2", "r3", "b1"):
        frames = cap.frames(vm)
        forged = [f.summary() for f in frames if b"FORGED" in bytes(f)
                  or ICMPv6ND_RA in f or ICMPv6ND_NA in f and f[ICMPv6ND_NA].tgt == "fd00:1::12"]
        assert forged == [], f"{vm} got forged frames: {forged}"
        if vm == "b1":
            assert not [f for f in frames if b"GENUINE" in bytes(f)], "blue got red's multicast"
    assert ping6(v6_lab, "r1", "fd00:1::12")                     # r1 still works normally


def test_tenants_sharing_prefixes_and_addresses_never_reach_each_other(v6_lab, tmp_path):
    r1 = link_local(v6_lab, "r1")
    with Capture(v6_lab, ["r3", "b1", "b2"], tmp_path) as cap:
        assert ping6(v6_lab, "r1", "fd00:1::12", count=2)        # red r2, never blue b1
        assert ping6(v6_lab, "r2", "fd00:1::11")                 # red r1, never blue b2
        ping6(v6_lab, "r1", "ff02::1%eth0", count=2)             # all-nodes multicast, from r1
    from scapy.layers.inet6 import IPv6
    heard = [f for f in cap.frames("r3") if IPv6 in f and f[IPv6].src == r1 and f[IPv6].dst == "ff02::1"]
    assert heard, "r3 (red, no security group) did not get r1's multicast: the test proves nothing"
    for vm in ("b1", "b2"):
        own = mac_of(v6_lab, vm)                                  # what the VM sent itself
        red = [f.summary() for f in cap.frames(vm) if IPv6 in f and f.src != own and
               (f[IPv6].src in ("fd00:1::11", "fd00:1::12", r1) or f[IPv6].dst == "ff02::1")]
        assert red == [], f"{vm} saw red's IPv6: {red}"


def test_nd_for_an_unknown_address_does_not_cross_hosts(v6_lab, tmp_path):
    with Capture(v6_lab, ["r2", "r3", "b2"], tmp_path) as cap:
        assert not ping6(v6_lab, "r1", "fd00:1::99")
        known = v6_lab.exec("r1", PY, "-c", "from scapy.all import *; from scapy.layers.inet6 import *; "
                            "conf.verb=0; a=neighsol('fd00:1::12', 'fd00:1::11', iface='eth0', timeout=2); "
                            "print(a[ICMPv6NDOptDstLLAddr].lladdr if a else 'none')")
    from scapy.layers.inet6 import ICMPv6ND_NS
    assert known.stdout.strip() == v6_lab.json("port", "show", "red/net/r2")["mac"]
    for vm in ("r2", "r3", "b2"):
        solicitations = [f.summary() for f in cap.frames(vm) if ICMPv6ND_NS in f]
        assert solicitations == [], f"{vm} saw neighbour solicitations: {solicitations}"


def test_a_moved_vm_keeps_its_ipv6_addresses_and_peers(v6_lab):
    v6_lab.weft("lab", "vm", "move", "r2", "--host", "hv1")
    shown = v6_lab.exec("r2", "ip", "-6", "addr", "show", "dev", "eth0").stdout
    assert "fd00:1::12/64" in shown
    assert ping6(v6_lab, "r1", "fd00:1::12", count=2) and ping6(v6_lab, "r2", "fd00:1::11")
