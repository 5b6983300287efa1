"""North-south on the lab: SNAT through a router gateway, floating IPs, their security groups.

The lab's outside namespace holds 203.0.113.1 (the edge router's stand-in) and runs
tests/peerecho.py, which answers every TCP connection with the address it came from, so the
test sees the source address the outside saw. red and blue both use 10.0.0.0/24 (their VMs
share 10.0.0.2) and share the external network admin/ext; red's SNAT runs on hv1, blue's on
hv2, and each tenant's VM sits on the other host, so its traffic crosses the tunnel first.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.labtools import Lab, iperf_server

pytestmark = pytest.mark.integration
ECHO = str(Path(__file__).resolve().parents[1] / "peerecho.py")
EDGE = "203.0.113.1"
GW = {"red": "203.0.113.2", "blue": "203.0.113.3"}
FIP = "203.0.113.50"


def _serve(lab, where: str, *ports: int) -> list:
    procs = [subprocess.Popen([lab.weft_path, "lab", "exec", where, "--", sys.executable, ECHO, str(p)],
                              env=lab.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    return procs


def ask(lab, where: str, ip: str, port: int, wait: float = 3.0) -> str | None:
    """The address the server at ip:port saw this connection come from, or None (no answer
    within `wait` seconds)."""
    r = lab.exec(where, sys.executable, ECHO, "ask", ip, str(port), str(wait), timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def ping(lab, where: str, ip: str, count: int = 2, wait: int = 2) -> bool:
    return lab.exec(where, "ping", "-c", str(count), "-i", "0.2", "-W", str(wait), ip).returncode == 0


def no_answer(lab, where: str, ip: str, port: int) -> bool:
    return ask(lab, where, ip, port, wait=1.5) is None


def eventually(check, timeout: float = 20.0):
    """The first truthy result of check() within `timeout` (the edge MAC is learned by a probe)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


@pytest.fixture(scope="module")
def nlab():
    lab = Lab(f"n{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    servers = []
    try:
        from controller.client import Client
        api = Client(f"unix:{lab.dir}/weftd.sock")       # the set-up through the API: no CLI start-ups
        api.post("/v1/tenants", {"name": "admin"})
        api.post("/v1/networks", {"tenant": "admin", "name": "ext", "cidr": "203.0.113.0/24",
                                  "external": True})
        for tenant, gw_host, vm_host in (("red", "hv1", "hv2"), ("blue", "hv2", "hv1")):
            api.post("/v1/tenants", {"name": tenant})
            api.post("/v1/networks", {"tenant": tenant, "name": "net", "cidr": "10.0.0.0/24"})
            api.post("/v1/routers", {"tenant": tenant, "name": "r"})
            api.post(f"/v1/routers/{tenant}/r/attach", {"network": f"{tenant}/net"})
            lab.weft("router", "gateway", "set", f"{tenant}/r", "admin/ext", "--ip", GW[tenant],
                     "--host", gw_host)
            api.post("/v1/ports", {"tenant": tenant, "network": "net", "name": "a", "ip": "10.0.0.2"})
            lab.weft("lab", "vm", "create", f"{tenant[0]}a", "--host", vm_host, "--port", f"{tenant}/net/a")
        # red/net/b: reachable from outside through a floating IP, for ICMP and TCP 7001 only
        api.post("/v1/security-groups", {"tenant": "red", "name": "pub"})
        for rule in ({"direction": "ingress", "proto": "icmp", "remote_cidr": "0.0.0.0/0"},
                     {"direction": "ingress", "proto": "tcp", "port_min": 7001, "port_max": 7001,
                      "remote_cidr": "0.0.0.0/0"},
                     {"direction": "egress", "remote_cidr": "0.0.0.0/0"}):
            api.post("/v1/security-groups/red/pub/rules", rule)
        api.post("/v1/ports", {"tenant": "red", "network": "net", "name": "b", "ip": "10.0.0.3",
                               "security_groups": ["pub"]})
        lab.weft("lab", "vm", "create", "rb", "--host", "hv2", "--port", "red/net/b")
        lab.weft("fip", "create", "red", "--external", "admin/ext", "--ip", FIP)
        servers += _serve(lab, "outside", 7000)
        servers += _serve(lab, "rb", 7001, 7002)
        yield lab
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        lab.down()


def test_vm_without_floating_ip_reaches_outside_as_the_gateway(nlab):
    assert eventually(lambda: ping(nlab, "ra", EDGE)), "ra cannot ping the edge"
    assert eventually(lambda: ask(nlab, "ra", EDGE, 7000)) == GW["red"]


def test_red_and_blue_on_the_same_cidr_both_reach_outside_at_once(nlab):
    eventually(lambda: ask(nlab, "ra", EDGE, 7000) and ask(nlab, "ba", EDGE, 7000))
    for _round in range(2):
        procs = {vm: subprocess.Popen([nlab.weft_path, "lab", "exec", vm, "--", sys.executable, ECHO,
                                       "ask", EDGE, "7000"], env=nlab.env, stdout=subprocess.PIPE,
                                      text=True)
                 for vm in ("ra", "ba")}
                                                     # both 10.0.0.2, each through its own gateway
        seen = {vm: p.communicate(timeout=30)[0].strip() for vm, p in procs.items()}
        assert seen == {"ra": GW["red"], "ba": GW["blue"]}
        pings = {vm: subprocess.Popen([nlab.weft_path, "lab", "exec", vm, "--", "ping", "-c", "3",
                                       "-i", "0.2", "-W", "2", EDGE], env=nlab.env,
                                      stdout=subprocess.DEVNULL)
                 for vm in ("ra", "ba")}
        assert {vm: p.wait(timeout=30) for vm, p in pings.items()} == {"ra": 0, "ba": 0}


def test_floating_ip_inbound_outbound_security_groups_and_disassociation(nlab):
    assert no_answer(nlab, "outside", FIP, 7001)            # not associated yet: nothing there
    nlab.weft("--wait", "fip", "associate", FIP, "red/net/b")
    assert eventually(lambda: ping(nlab, "outside", FIP)), "the outside cannot ping the floating IP"
    assert ask(nlab, "outside", FIP, 7001) == EDGE           # the VM sees the outside's own address
    assert eventually(lambda: ask(nlab, "rb", EDGE, 7000)) == FIP    # its own traffic leaves from it
    # red/pub does not allow 7002: blocked from outside as from anywhere
    assert no_answer(nlab, "outside", FIP, 7002)
    listed = nlab.json("fip", "list", "red")
    assert [(f["ip"], f["port"], f["fixed_ip"], f["host"]) for f in listed] == \
        [(FIP, "red/net/b", "10.0.0.3", "hv2")]
    nlab.weft("--wait", "fip", "disassociate", FIP)
    assert no_answer(nlab, "outside", FIP, 7001)             # at once: the next connection fails
    assert not ping(nlab, "outside", FIP, count=1, wait=1)
    assert ask(nlab, "rb", EDGE, 7000) == GW["red"]          # back to the router's SNAT


def _iperf_from_outside(lab, *args: str) -> float:
    """Mbit/s received of one iperf3 UDP run from the outside to the floating IP (-R: the VM
    sends); the server runs in rb, started fresh for the run."""
    with iperf_server(lab, "rb"):
        r = lab.exec("outside", "iperf3", "-c", FIP, "-J", "-u", "-b", "70M", "-w", "2M", "-t", "4",
                     "-O", "1", *args, timeout=60)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6


def test_qos_limits_floating_ip_traffic_both_ways(nlab):
    """The port's meters sit at the VM's own port, so traffic through its floating IP (NAT on
    the same host) is limited like any other: 50 Mbit/s measures 45-55 each way (a run below 45
    is repeated, at most 3: a starved receiver on this shared machine drops a burst now and
    then; every run must stay at or under 55)."""
    rules = [nlab.json("sg", "rule", "add", "red/pub", "--direction", "ingress", "--proto", proto,
                       "--port", "5201", "--remote-cidr", "0.0.0.0/0")["id"] for proto in ("tcp", "udp")]
    nlab.weft("--wait", "port", "update", "red/net/b", "--egress-rate", "50mbit", "--egress-burst", "5mbit",
              "--ingress-rate", "50mbit", "--ingress-burst", "5mbit")
    nlab.weft("--wait", "fip", "associate", FIP, "red/net/b")
    try:
        assert eventually(lambda: ping(nlab, "outside", FIP)), "the outside cannot ping the floating IP"
        for direction, args in (("ingress", ()), ("egress", ("-R",))):
            runs = []
            for _ in range(3):
                got = _iperf_from_outside(nlab, *args)
                runs.append(got)
                print(f"floating IP {direction}: {got:.1f} Mbit/s received, load {os.getloadavg()}")
                assert got <= 55, f"{direction} through the floating IP: {got:.1f} Mbit/s over a 50 Mbit/s limit"
                if got >= 45:
                    break
            assert max(runs) >= 45, f"{direction} through the floating IP measured {runs} Mbit/s"
    finally:
        nlab.weft("--wait", "fip", "disassociate", FIP)
        nlab.weft("--wait", "port", "update", "red/net/b", "--no-qos")
        for rule in rules:
            nlab.weft("sg", "rule", "delete", "red/pub", rule)


def test_bad_input_is_one_line_and_changes_nothing(nlab):
    nlab.weft("fip", "create", "red", "--external", "admin/ext", "--ip", "203.0.113.60")
    nlab.weft("fip", "associate", "203.0.113.60", "red/net/a")
    before = (nlab.json("network", "list"), nlab.json("fip", "list"), nlab.json("router", "list"))
    cases = [
        (("network", "create", "admin/ext2", "--cidr", "203.0.113.128/25", "--external"), "overlaps"),
        (("fip", "create", "blue", "--external", "admin/ext", "--ip", "203.0.113.60"), "already in use"),
        (("fip", "create", "blue", "--external", "admin/ext", "--ip", GW["red"]), "already in use"),
        (("fip", "associate", "203.0.113.60", "red/net/b"), "already in use"),
        (("router", "gateway", "set", "blue/r", "red/net"), "not external"),
        (("router", "create", "blue/r2"), None),
        (("router", "gateway", "set", "blue/r2", "blue/net"), "not external"),
        (("network", "create", "admin/ext3", "--cidr", "198.51.100.0/24", "--provider", "x"), "external"),
    ]
    for args, words in cases:
        r = nlab.weft(*args, check=False)
        if words is None:
            assert r.returncode == 0, r.stderr
            before = (nlab.json("network", "list"), nlab.json("fip", "list"), nlab.json("router", "list"))
            continue
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("weft: error:") and words in lines[0], (args, r.stderr)
    after = (nlab.json("network", "list"), nlab.json("fip", "list"), nlab.json("router", "list"))
    assert after == before
    nlab.weft("fip", "delete", "203.0.113.60")


def test_gateway_moves_when_its_host_disconnects(nlab):
    """Last in the module: it stops hv1's switch (and starts it again, empty)."""
    from lab.ovs import HostSwitch
    assert eventually(lambda: ask(nlab, "ra", EDGE, 7000)) == GW["red"]     # SNAT on hv1 now
    hv1 = json.load(open(os.path.join(nlab.dir, "state.json")))["hosts"]["hv1"]
    pid = int(open(os.path.join(hv1["dir"], "vs.pid")).read())
    os.kill(pid, signal.SIGKILL)                      # hv1's switch and its datapath die
    try:
        # weftd notices, waits FAILOVER_AFTER (3 s), moves red's gateway to hv2 (the only other
        # host with the provider); ra, on hv2, leaves from there, still as the gateway address
        assert eventually(lambda: ask(nlab, "ra", EDGE, 7000, wait=1.5), timeout=30) == GW["red"]
        routers = {r["ref"]: r for r in nlab.json("router", "list")}
        assert routers["red/r"]["gateway"]["host"] == "hv2"
    finally:
        HostSwitch(hv1["ns"], hv1["dir"]).start_vswitchd()
    assert eventually(lambda: ask(nlab, "ra", EDGE, 7000)) == GW["red"]     # stays on hv2: no flap
