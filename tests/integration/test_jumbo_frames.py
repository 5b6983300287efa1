"""Jumbo frames end to end: a 9000-byte underlay gives VMs 8950 (static and by DHCP), and full-size
frames cross hosts unfragmented."""
import os

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jumbo():
    lab = Lab(f"j{os.getpid() % 100000}")
    lab.down()
    bad = lab.weft("lab", "up", "--hosts", "2", "--underlay-mtu", "100", check=False)
    assert bad.returncode != 0 and "underlay MTU must be an integer from 1280 to 9216" in bad.stderr
    assert not os.path.exists(lab.dir)            # refused before anything was made
    lab.weft("lab", "up", "--hosts", "2", "--underlay-mtu", "9000")
    try:
        lab.weft("tenant", "create", "t")
        lab.weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        for name, host, extra in (("a", "hv1", ()), ("b", "hv2", ()), ("c", "hv2", ("--dhcp",))):
            lab.weft("port", "create", f"t/n/{name}")
            lab.weft("lab", "vm", "create", name, "--host", host, "--port", f"t/n/{name}", *extra)
        yield lab
    finally:
        lab.down()


def mtu(lab, vm) -> int:
    return int(open_sysfs(lab, vm, "/sys/class/net/eth0/mtu"))


def open_sysfs(lab, vm, path) -> str:
    r = lab.exec(vm, "cat", path)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_lab_and_its_vms_have_the_jumbo_mtu(jumbo):
    assert jumbo.json("lab", "status")["underlay_mtu"] == 9000
    assert mtu(jumbo, "a") == mtu(jumbo, "b") == 8950
    assert mtu(jumbo, "c") == 8950                 # from DHCP option 26


def test_full_size_frames_cross_hosts_unfragmented(jumbo):
    b_ip = jumbo.json("port", "show", "t/n/b")["ips"][0]
    # 8950 - 20 (IPv4) - 8 (ICMP) = 8922 bytes of payload, don't-fragment set
    r = jumbo.exec("a", "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", "8922", b_ip)
    assert r.returncode == 0, r.stdout + r.stderr
    too_big = jumbo.exec("a", "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "8923", b_ip)
    assert too_big.returncode != 0                 # the VM's own MTU: the limit is where it should be
    c_ip = jumbo.json("port", "show", "t/n/c")["ips"][0]
    r = jumbo.exec("c", "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "8922", jumbo.json(
        "port", "show", "t/n/a")["ips"][0])
    assert r.returncode == 0, (c_ip, r.stdout + r.stderr)
