"""The emulated data centre on real Open vSwitch: underlay reachability, VM plugging, clean-up."""
import json
import os
import subprocess

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


def vsctl(lab: Lab, host: str, *args: str) -> str:
    db = f"unix:{lab.dir}/{host}/db.sock"
    return subprocess.run(["ovs-vsctl", f"--db={db}", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def ext_id(lab: Lab, host: str, iface: str, key: str) -> str:
    return vsctl(lab, host, "--if-exists", "get", "Interface", iface, f"external_ids:{key}").strip('"')


def test_every_hypervisor_reaches_the_others_over_the_underlay(lab3):
    hosts = lab3.json("lab", "status")["hosts"]
    assert [h["name"] for h in hosts] == ["hv1", "hv2", "hv3"]
    for src in hosts:
        for dst in hosts:
            if src is dst:
                continue
            r = lab3.exec(src["name"], "ping", "-c", "1", "-W", "2", dst["underlay_ip"])
            assert r.returncode == 0, f"{src['name']} -> {dst['name']}: {r.stdout}{r.stderr}"


def test_underlay_is_carried_by_br_phy_and_mgmt_reaches_the_controller_address(lab3):
    status = lab3.json("lab", "status")
    for h in status["hosts"]:
        assert vsctl(lab3, h["name"], "get", "bridge", "br-phy", "datapath_type") == "netdev"
        assert vsctl(lab3, h["name"], "get", "bridge", "br-int", "fail_mode") == "secure"
        assert "eth0" in vsctl(lab3, h["name"], "list-ports", "br-phy").split()
        r = lab3.exec(h["name"], "ping", "-c", "1", "-W", "2", status["mgmt_ip"])
        assert r.returncode == 0, r.stdout + r.stderr


def test_vm_nic_is_plugged_into_its_hosts_br_int(lab3):
    lab3.weft("lab", "vm", "create", "plug1", "--host", "hv2", "--port", "red/net1/p1",
              "--mac", "fa:16:3e:12:34:56", "--ip", "10.9.0.7/24", "--iface-id", "port-uuid-1")
    try:
        vm = next(v for v in lab3.json("lab", "status")["vms"] if v["name"] == "plug1")
        assert vm["host"] == "hv2"
        ports = vsctl(lab3, "hv2", "list-ports", "br-int").split()
        found = [p for p in ports
                 if ext_id(lab3, "hv2", p, "iface-id") == "port-uuid-1"]
        assert len(found) == 1
        iface = found[0]
        assert ext_id(lab3, "hv2", iface, "attached-mac") == "fa:16:3e:12:34:56"
        assert int(vsctl(lab3, "hv2", "get", "Interface", iface, "ofport")) > 0
        for other in ("hv1", "hv3"):
            assert iface not in vsctl(lab3, other, "list-ports", "br-int").split()
        link = json.loads(lab3.exec("plug1", "ip", "-j", "link", "show", "eth0").stdout)[0]
        assert link["address"] == "fa:16:3e:12:34:56"
        assert link["mtu"] == 1450
        addrs = json.loads(lab3.exec("plug1", "ip", "-j", "addr", "show", "eth0").stdout)[0]
        assert {"local": "10.9.0.7", "prefixlen": 24} in [
            {"local": a["local"], "prefixlen": a["prefixlen"]} for a in addrs["addr_info"]]
        offload = lab3.exec("plug1", "ethtool", "-k", "eth0").stdout
        assert "tx-checksumming: off" in offload
    finally:
        lab3.weft("lab", "vm", "delete", "plug1")
    assert "plug1" not in [v["name"] for v in lab3.json("lab", "status")["vms"]]
    assert f"{lab3.name}-vm-plug1" not in lab3.namespaces()


@pytest.mark.parametrize("args, message", [
    (["--host", "hv9", "--mac", "fa:16:3e:00:00:09", "--ip", "10.0.0.9/24", "--iface-id", "i"], "unknown host 'hv9'"),
    (["--host", "hv1", "--mac", "not-a-mac", "--ip", "10.0.0.9/24", "--iface-id", "i"], "invalid MAC address"),
    (["--host", "hv1", "--mac", "fa:16:3e:00:00:09", "--ip", "10.0.0.300", "--iface-id", "i"], "invalid IP address"),
    (["--host", "hv1", "--mac", "fa:16:3e:00:00:01", "--ip", "10.0.0.9/24", "--iface-id", "i"], "already exists"),
])
def test_bad_vm_input_is_refused_and_changes_nothing(lab3, args, message):
    lab3.weft("lab", "vm", "create", "dup1", "--host", "hv1", "--port", "red/n/p",
              "--mac", "fa:16:3e:00:00:01", "--ip", "10.0.0.8/24", "--iface-id", "dup1")
    try:
        before = (lab3.json("lab", "status"), lab3.namespaces(), vsctl(lab3, "hv1", "list-ports", "br-int"))
        name = "dup1" if message == "already exists" else "bad1"
        r = lab3.weft("lab", "vm", "create", name, "--port", "red/n/q", *args, check=False)
        assert r.returncode != 0
        assert message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        after = (lab3.json("lab", "status"), lab3.namespaces(), vsctl(lab3, "hv1", "list-ports", "br-int"))
        assert after == before
    finally:
        lab3.weft("lab", "vm", "delete", "dup1")


def test_lab_up_refuses_bad_host_counts_and_a_second_up(lab3):
    for hosts in ("0", "300"):
        r = lab3.weft("lab", "up", "--hosts", hosts, check=False)
        assert r.returncode != 0 and "--hosts must be between 1 and 200" in r.stderr
    r = lab3.weft("lab", "up", "--hosts", "3", check=False)
    assert r.returncode != 0 and "already up" in r.stderr
    assert lab3.json("lab", "status")["status"] == "up"


def test_vm_move_and_exec_errors(lab3):
    lab3.weft("lab", "vm", "create", "mover", "--host", "hv1", "--port", "red/n/m",
              "--mac", "fa:16:3e:00:00:42", "--ip", "10.0.0.42/24", "--iface-id", "mover-id")
    try:
        lab3.weft("lab", "vm", "move", "mover", "--host", "hv3")
        assert "mover-id" not in vsctl(lab3, "hv1", "--columns=external_ids", "list", "Interface")
        assert "mover-id" in vsctl(lab3, "hv3", "--columns=external_ids", "list", "Interface")
        link = json.loads(lab3.exec("mover", "ip", "-j", "link", "show", "eth0").stdout)[0]
        assert link["address"] == "fa:16:3e:00:00:42"
    finally:
        lab3.weft("lab", "vm", "delete", "mover")
    r = lab3.weft("lab", "exec", "ghost", "--", "true", check=False)
    assert r.returncode != 0 and "no VM or host named 'ghost'" in r.stderr
    r = lab3.weft("lab", "vm", "delete", "ghost", check=False)
    assert r.returncode != 0 and "no VM named 'ghost'" in r.stderr


def assert_nothing_left(lab: Lab):
    assert lab.namespaces() == []
    assert lab.processes() == []
    assert not os.path.exists(lab.dir)
    assert not os.path.exists(lab.dir + ".lock")


def test_down_leaves_no_namespace_process_or_file():
    lab = Lab(f"d{os.getpid() % 100000}")
    try:
        lab.weft("lab", "up", "--hosts", "2")
        lab.weft("lab", "vm", "create", "v1", "--host", "hv2", "--port", "a/b/c",
                 "--mac", "fa:16:3e:00:00:11", "--ip", "10.1.0.2/24", "--iface-id", "v1")
        assert len(lab.namespaces()) == 6          # fabric, mgmt, outside, hv1, hv2, vm-v1
        # ovsdb-server and ovs-vswitchd on each host, weftd and its northbound ovsdb-server
        assert len(lab.processes()) == 6
        # something a user left running in a VM (as a benchmark's pinger): down stops it too
        ns = lab.json("lab", "status")["vms"][0]["namespace"]
        stray = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"], start_new_session=True)
        try:
            lab.weft("lab", "down")
            assert stray.wait(timeout=10) is not None, "the process left in the VM's namespace was stopped"
        finally:
            if stray.poll() is None:
                stray.kill()
        assert_nothing_left(lab)
        assert "not up" in lab.weft("lab", "down").stdout
    finally:
        lab.down()


def test_a_lab_without_provider_has_br_phy_and_br_int_only_and_still_switches():
    """`lab up --no-provider`: the OVN peer's layout (bench/bench_port_up.py): no br-ex, no eth1,
    no outside namespace, hosts registered without providers; VMs across hosts still talk."""
    lab = Lab(f"n{os.getpid() % 100000}")
    try:
        lab.weft("lab", "up", "--hosts", "2", "--no-provider")
        assert lab.json("lab", "status")["provider"] is False
        assert not any(n.endswith("-outside") for n in lab.namespaces())
        for h in ("hv1", "hv2"):
            assert vsctl(lab, h, "list-br").split() == ["br-int", "br-phy"]
            assert "eth1" not in lab.exec(h, "ip", "-o", "link").stdout
            assert not [p for p in vsctl(lab, h, "list-ports", "br-int").split() if p.startswith("weft-p-")]
        r = lab.exec("outside", "true")
        assert r.returncode != 0 and "--no-provider" in r.stderr
        lab.weft("tenant", "create", "t")
        lab.weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("a", "hv1", "10.0.0.10"), ("b", "hv2", "10.0.0.20")):
            lab.weft("port", "create", f"t/n/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
        r = lab.exec("a", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.20")
        assert r.returncode == 0, r.stdout + r.stderr
        lab.weft("lab", "down")
        assert_nothing_left(lab)
    finally:
        lab.down()


def test_failed_up_rolls_back_and_leaves_foreign_namespaces_alone():
    lab = Lab(f"f{os.getpid() % 100000}")
    foreign = f"{lab.name}-hv2"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        r = lab.weft("lab", "up", "--hosts", "3", check=False)
        assert r.returncode != 0
        assert "rolled back" in r.stderr and foreign in r.stderr
        assert lab.namespaces() == [foreign]
        assert lab.processes() == []
        assert not os.path.exists(lab.dir)
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
        lab.down()


def test_down_cleans_up_after_up_crashed_halfway():
    lab = Lab(f"c{os.getpid() % 100000}")
    try:
        r = lab.weft("lab", "up", "--hosts", "3", check=False, env={"WEFT_LAB_FAULT": "crash-after-hv2"})
        assert r.returncode == -9
        assert lab.namespaces(), "the crash should have left namespaces behind"
        assert lab.processes(), "the crash should have left Open vSwitch processes behind"
        r = lab.weft("lab", "up", "--hosts", "3", check=False)
        assert r.returncode != 0 and "partly up" in r.stderr
        lab.weft("lab", "down")
        assert_nothing_left(lab)
    finally:
        lab.down()
