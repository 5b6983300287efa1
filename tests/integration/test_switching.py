"""Part 1 end to end on the lab: tenants on the same CIDR, stretched L2, isolation, anti-spoofing, restarts."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration
PY = sys.executable

RED = {"r1": ("hv1", "10.0.0.11"), "r2": ("hv1", "10.0.0.12"), "r3": ("hv2", "10.0.0.13"),
       "r4": ("hv3", "10.0.0.14")}
BLUE = {"b1": ("hv1", "10.0.0.13"), "b2": ("hv2", "10.0.0.11"), "b3": ("hv3", "10.0.0.21")}


@pytest.fixture(scope="module")
def net_lab():
    lab = Lab(f"s{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "3")
    try:
        for tenant, vms in (("red", RED), ("blue", BLUE)):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
            for vm, (host, ip) in vms.items():
                lab.weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip)
                lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
        wait_bound(lab, len(RED) + len(BLUE))
        yield lab
    finally:
        lab.down()


def wait_bound(lab: Lab, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ports = lab.json("port", "list")
        if sum(1 for p in ports if p["host"]) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"ports not bound in time: {lab.json('port', 'list')}")


def ping(lab: Lab, vm: str, ip: str, count: int = 1, wait: float = 2) -> bool:
    r = lab.exec(vm, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait), ip)
    return r.returncode == 0


def mac_of(lab: Lab, vm: str) -> str:
    return json.loads(lab.exec(vm, "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]


class Capture:
    """tcpdump inside VMs while a test sends traffic; returns the captured frames (scapy)."""

    def __init__(self, lab: Lab, vms, tmp_path):
        self.lab, self.vms, self.tmp = lab, list(vms), tmp_path
        self.procs = {}
        self.tmp.mkdir(parents=True, exist_ok=True)

    def __enter__(self):
        for vm in self.vms:
            path = str(self.tmp / f"{vm}.pcap")
            self.procs[vm] = (subprocess.Popen(
                [self.lab.weft_path, "lab", "exec", vm, "--", "tcpdump", "-U", "--immediate-mode", "-n", "-i", "eth0",
                 "-w", path], env=self.lab.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path)
        for vm, (proc, path) in self.procs.items():
            deadline = time.monotonic() + 5
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)
        for proc, _path in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc, _path in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def frames(self, vm):
        from scapy.all import rdpcap
        path = self.procs[vm][1]
        return list(rdpcap(path)) if os.path.getsize(path) > 24 else []


def scapy_send(lab: Lab, vm: str, code: str) -> None:
    script = "from scapy.all import *\nconf.verb=0\n" + code
    r = lab.exec(vm, PY, "-c", script)
    assert r.returncode == 0, r.stderr


def test_every_vm_reaches_every_vm_of_its_network_on_any_host(net_lab):
    for vms in (RED, BLUE):
        for src in vms:
            for dst, (_host, ip) in vms.items():
                if src != dst:
                    assert ping(net_lab, src, ip), f"{src} -> {dst} ({ip})"


def test_tcp_across_hosts_with_iperf3(net_lab):
    server = subprocess.Popen([net_lab.weft_path, "lab", "exec", "r4", "--", "iperf3", "-s", "-1"],
                              env=net_lab.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = net_lab.exec("r1", "iperf3", "-c", "10.0.0.14", "-t", "2", "-J", timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        result = json.loads(r.stdout)
        assert result["end"]["sum_received"]["bits_per_second"] > 10e6
    finally:
        server.kill()
        server.wait()


def test_tenants_on_the_same_cidr_never_reach_each_other(net_lab, tmp_path):
    red_macs = {mac_of(net_lab, vm) for vm in RED}
    blue_macs = {mac_of(net_lab, vm) for vm in BLUE}
    with Capture(net_lab, BLUE, tmp_path) as cap:
        assert not ping(net_lab, "r1", "10.0.0.21", wait=1)          # blue-only address
        assert ping(net_lab, "r1", "10.0.0.13")                      # red r3; blue b1 holds it too
        b3_mac = mac_of(net_lab, "b3")
        scapy_send(net_lab, "r4", f"""
me = get_if_hwaddr('eth0')
pkts = [Ether(src=me, dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc=me, psrc='10.0.0.14', pdst='10.0.0.21'),
        Ether(src=me, dst='ff:ff:ff:ff:ff:ff')/IP(src='10.0.0.14', dst='10.0.0.255')/UDP(dport=9)/b'BCAST',
        Ether(src=me, dst='{b3_mac}')/IP(src='10.0.0.14', dst='10.0.0.21')/ICMP()/b'UNI',
        Ether(src=me, dst='{b3_mac}')/IP(src='10.0.0.14', dst='10.0.0.21')/TCP(dport=80, flags='S'),
        Ether(src=me, dst='{b3_mac}')/IP(src='10.0.0.14', dst='10.0.0.21')/UDP(dport=53)/b'UDP']
sendp(pkts, iface='eth0', count=3)
""")
        net_lab.exec("r2", "ping", "-b", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.255")
    for vm in BLUE:
        leaked = [f for f in cap.frames(vm) if f.src in red_macs]
        assert leaked == [], f"{vm} received red frames: {[f.summary() for f in leaked]}"
    # the capture itself works: blue's own traffic is seen by the other blue VMs
    with Capture(net_lab, ["b2", "b3"], tmp_path / "own") as cap:
        net_lab.exec("b1", "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.11")
        net_lab.exec("b1", "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.21")
    for vm in ("b2", "b3"):
        assert any(f.src in blue_macs for f in cap.frames(vm)), vm


def test_forged_sources_and_arp_spoofing_reach_no_one(net_lab, tmp_path):
    others = ["r2", "r3", "r4"]
    with Capture(net_lab, others, tmp_path) as cap:
        scapy_send(net_lab, "r1", """
me = get_if_hwaddr('eth0')
pkts = [Ether(src='02:00:00:de:ad:01', dst='ff:ff:ff:ff:ff:ff')/IP(src='10.0.0.11', dst='10.0.0.255')/UDP(dport=9)/b'FORGEDMAC',
        Ether(src='02:00:00:de:ad:01')/IP(src='10.0.0.11', dst='10.0.0.13')/ICMP()/b'FORGEDMAC',
        Ether(src=me, dst='ff:ff:ff:ff:ff:ff')/IP(src='10.0.0.99', dst='10.0.0.255')/UDP(dport=9)/b'FORGEDIP',
        Ether(src=me)/IP(src='10.0.0.12', dst='10.0.0.13')/ICMP()/b'FORGEDIP',
        Ether(src=me, dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, hwsrc=me, psrc='10.0.0.13', hwdst='ff:ff:ff:ff:ff:ff', pdst='10.0.0.13'),
        Ether(src=me, dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc=me, psrc='10.0.0.12', pdst='10.0.0.14')]
sendp(pkts, iface='eth0', count=3)
""")
    for vm in others:
        frames = cap.frames(vm)
        forged = [f for f in frames if b"FORGED" in bytes(f)]
        assert forged == [], f"{vm} got forged frames: {[f.summary() for f in forged]}"
        from scapy.all import ARP
        spoofed_arp = [f for f in frames if ARP in f and f[ARP].psrc in ("10.0.0.13", "10.0.0.12")
                       and f.src == mac_of(net_lab, "r1")]
        assert spoofed_arp == [], f"{vm} got spoofed ARP: {[f.summary() for f in spoofed_arp]}"
    # and r1 still works normally afterwards
    assert ping(net_lab, "r1", "10.0.0.13")


def test_arp_is_answered_locally_without_flooding_across_hosts(net_lab, tmp_path):
    with Capture(net_lab, ["r3", "r4"], tmp_path) as cap:
        r = net_lab.exec("r1", PY, "-c", "from scapy.all import *; conf.verb=0;"
                         "a=srp1(Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(pdst='10.0.0.14'),iface='eth0',timeout=2);"
                         "print(a[ARP].hwsrc if a else 'none')")
    assert r.stdout.strip() == mac_of(net_lab, "r4")
    from scapy.all import ARP
    for vm in ("r3", "r4"):
        assert [f for f in cap.frames(vm) if ARP in f and f[ARP].pdst == "10.0.0.14"] == []


def test_port_delete_cuts_the_vm_off_and_a_recreated_port_works(net_lab):
    net_lab.weft("port", "create", "red/net/tmp", "--ip", "10.0.0.31")
    net_lab.weft("lab", "vm", "create", "rtmp", "--host", "hv2", "--port", "red/net/tmp")
    try:
        assert ping(net_lab, "r1", "10.0.0.31", count=2)
        net_lab.weft("port", "delete", "red/net/tmp")
        assert not ping(net_lab, "r1", "10.0.0.31", count=2, wait=1)
        assert not ping(net_lab, "rtmp", "10.0.0.11", count=2, wait=1)
        net_lab.weft("port", "create", "red/net/tmp", "--ip", "10.0.0.31")
        net_lab.weft("lab", "vm", "delete", "rtmp")
        net_lab.weft("lab", "vm", "create", "rtmp", "--host", "hv2", "--port", "red/net/tmp")
        # the new port has a new MAC: peers without a stale neighbour entry reach it at once
        assert ping(net_lab, "rtmp", "10.0.0.14", count=3)
        assert ping(net_lab, "r3", "10.0.0.31", count=3)
    finally:
        net_lab.weft("lab", "vm", "delete", "rtmp", check=False)
        net_lab.weft("port", "delete", "red/net/tmp", check=False)


def test_a_recreated_port_answers_a_peer_that_has_the_old_mac_cached(net_lab):
    net_lab.weft("port", "create", "red/net/stale", "--ip", "10.0.0.41")
    net_lab.weft("lab", "vm", "create", "rst", "--host", "hv2", "--port", "red/net/stale")
    try:
        assert ping(net_lab, "r1", "10.0.0.41", count=2)
        old_mac = mac_of(net_lab, "rst")
        net_lab.weft("lab", "vm", "delete", "rst")
        net_lab.weft("port", "delete", "red/net/stale")
        net_lab.weft("port", "create", "red/net/stale", "--ip", "10.0.0.41")
        net_lab.weft("lab", "vm", "create", "rst", "--host", "hv3", "--port", "red/net/stale")
        assert mac_of(net_lab, "rst") != old_mac
        # r1 keeps the old MAC for the address, as a guest's stale neighbour entry does (pinned:
        # it can never learn the new one, so only the network can get its packets there)
        r = net_lab.exec("r1", "ip", "neigh", "replace", "10.0.0.41", "lladdr", old_mac, "dev", "eth0",
                         "nud", "permanent")
        assert r.returncode == 0, r.stderr
        r = net_lab.exec("r1", "ping", "-c", "20", "-i", "0.05", "-W", "1", "10.0.0.41")
        got = re.search(r"(\d+) received", r.stdout)
        assert got and int(got.group(1)) >= 15, r.stdout[-300:]     # answered within the second
        neigh = net_lab.exec("r1", "ip", "neigh", "show", "10.0.0.41").stdout
        assert old_mac in neigh and "PERMANENT" in neigh            # the guest changed nothing
    finally:
        net_lab.exec("r1", "ip", "neigh", "del", "10.0.0.41", "dev", "eth0")
        net_lab.weft("lab", "vm", "delete", "rst", check=False)
        net_lab.weft("port", "delete", "red/net/stale", check=False)


def test_a_frame_to_an_unknown_mac_reaches_no_other_host(net_lab, tmp_path):
    """Captured on the other hosts' underlay: tunnelled frames, their inner destination MAC.

    r1 has port security: what it sends is IPv4 from its own addresses (other frames do not
    leave its port at all); a known MAC, r3's, is the capture's control."""
    r3_mac = mac_of(net_lab, "r3")
    with Capture(net_lab, ["hv2", "hv3"], tmp_path) as cap:
        scapy_send(net_lab, "r1", f"""
me = get_if_hwaddr('eth0')
for i in range(5):
    sendp(Ether(src=me, dst='02:aa:bb:cc:dd:ee', type=0x88b5)/Raw(b'unknown-mac'), iface='eth0')
    sendp(Ether(src=me, dst='02:aa:bb:cc:dd:ee')/IP(src='10.0.0.11', dst='10.0.0.99')/UDP(dport=9), iface='eth0')
    sendp(Ether(src=me, dst='{r3_mac}')/IP(src='10.0.0.11', dst='10.0.0.13')/UDP(dport=9), iface='eth0')
""")
    from scapy.all import VXLAN, Ether
    inner = {host: [f[VXLAN][Ether].dst for f in cap.frames(host) if VXLAN in f and Ether in f[VXLAN]]
             for host in ("hv2", "hv3")}
    assert inner["hv2"].count(r3_mac) == 5, inner        # the capture sees tunnelled frames
    assert all("02:aa:bb:cc:dd:ee" not in got for got in inner.values()), inner


def test_weftd_restart_under_ping_loses_nothing_and_sends_no_flow_mods(net_lab):
    before = {h["name"]: h["flows"] for h in net_lab.json("host", "list")}
    pinger = subprocess.Popen([net_lab.weft_path, "lab", "exec", "r1", "--", "ping", "-i", "0.01",
                               "-c", "400", "-W", "1", "10.0.0.14"],
                              env=net_lab.env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        net_lab.weft("lab", "controller", "restart")
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    loss = re.search(r"(\d+) received", out)
    assert loss and int(loss.group(1)) == 400, out[-300:]
    status = net_lab.json_api("/v1/status")
    assert status["flow_mods"] == 0, status
    assert all(h["reconciled"] for h in status["hosts"].values())
    assert {h["name"]: h["flows"] for h in net_lab.json("host", "list")} == before


def test_flows_are_annotated_with_their_owner(net_lab):
    rows = net_lab.json("flows", "hv3")
    owners = {r["owner"] for r in rows}
    assert "port red/net/r4" in owners and "port blue/net/b3" in owners
    assert "network red/net" in owners
    assert all(r["cookie"].startswith("0x") for r in rows)
    text = net_lab.weft("flows", "hv3").stdout
    assert "[l2: port red/net/r4]" in text


def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(net_lab):
    before = (net_lab.json("port", "list"), net_lab.json("network", "list"), net_lab.json("tenant", "list"))
    cases = [
        (["tenant", "create", "red"], "already exists"),
        (["tenant", "delete", "red"], "still has 1 network"),
        (["network", "create", "red/net", "--cidr", "10.1.0.0/24"], "already exists"),
        (["network", "create", "red/x", "--cidr", "10.1.0.1/24"], "host bits are set"),
        (["network", "create", "red/x", "--cidr", "banana"], "invalid CIDR"),
        (["network", "create", "nobody/x", "--cidr", "10.1.0.0/24"], "no tenant named 'nobody'"),
        (["network", "delete", "red/net"], "still has"),
        (["port", "create", "red/net/r1"], "already exists"),
        (["port", "create", "red/net/z", "--ip", "10.0.0.11"], "already used"),
        (["port", "create", "red/net/z", "--ip", "10.9.0.1"], "not inside"),
        (["port", "create", "red/net/z", "--mac", "zz"], "invalid MAC"),
        (["port", "create", "red/net"], "expected TENANT/NET/PORT"),
        (["port", "show", "red/net/nope"], "no port red/net/nope"),
        (["flows", "hv9"], "no host named 'hv9'"),
    ]
    for args, message in cases:
        r = net_lab.weft(*args, check=False)
        assert r.returncode != 0, args
        assert message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    after = (net_lab.json("port", "list"), net_lab.json("network", "list"), net_lab.json("tenant", "list"))
    assert after == before
