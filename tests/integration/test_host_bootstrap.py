"""Enrolling a hypervisor the operator's way: a bare lab host gets only `weft host bootstrap --apply` and `weft host add`; its VMs reach VMs elsewhere; `weft host remove` drains and forgets it."""
import os
import stat
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    lab = Lab(f"b{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        yield lab
    finally:
        lab.down()


def vsctl(lab, host, *args):
    proc = lab.exec(host, "ovs-vsctl", f"--db=unix:{lab.dir}/{host}/db.sock", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def wait(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_bare_host_enrolled_by_bootstrap_and_host_add_carries_traffic(lab):
    lab.weft("lab", "host", "add", "hv3")
    # a fresh machine: no listener for weftd, no certificate, no br-int, unknown to weftd
    assert vsctl(lab, "hv3", "get-manager") == ""
    assert vsctl(lab, "hv3", "list-br") == "br-phy"
    assert "hv3" not in {h["name"] for h in lab.json("host", "list")}
    pki, certs = f"{lab.dir}/pki", f"{lab.dir}/hv3/weft-pki"
    flags = ["--tunnel-ip", "198.18.0.13", "--mgmt-ip", "198.19.0.13", "--pki", pki,
             "--db", f"unix:{lab.dir}/hv3/db.sock", "--dir", certs, "--datapath-type", "netdev"]
    printed = lab.weft("host", "bootstrap", "hv3", *flags).stdout
    assert printed.startswith("#!/bin/sh") and "set-manager pssl:6640:198.19.0.13" in printed
    assert not os.path.exists(certs)                  # printing changes nothing
    applied = lab.exec("hv3", lab.weft_path, "host", "bootstrap", "hv3", *flags, "--apply")
    assert applied.returncode == 0, applied.stderr
    add = applied.stdout.split("on the controller: ")[1].split()
    assert add[:3] == ["weft", "host", "add"]
    assert stat.S_IMODE(os.stat(f"{certs}/hv3.key").st_mode) == 0o600
    assert vsctl(lab, "hv3", "get-manager") == "pssl:6640:198.19.0.13"
    assert vsctl(lab, "hv3", "get", "bridge", "br-int", "fail_mode") == "secure"
    lab.weft(*add[1:])                                 # the controller side, as printed
    wait(lambda: {h["name"]: h for h in lab.json("host", "list")}["hv3"]["connected"],
         "hv3 did not connect to weftd over TLS")
    assert vsctl(lab, "hv3", "get-controller", "br-int") == "ssl:198.19.0.1:6653"

    lab.weft("tenant", "create", "red")
    lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
    for vm, host, ip in (("v1", "hv1", "10.0.0.11"), ("v2", "hv2", "10.0.0.12"), ("v3", "hv3", "10.0.0.13")):
        lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
        lab.weft("--wait", "lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
    wait(lambda: all(p["host"] for p in lab.json("port", "list")), "VMs not bound")
    for src, dst in (("v3", "10.0.0.11"), ("v3", "10.0.0.12"), ("v1", "10.0.0.13"), ("v2", "10.0.0.13")):
        ping = lab.exec(src, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)
        assert ping.returncode == 0, f"{src} -> {dst}: {ping.stdout}"


def test_host_remove_drains_then_forgets(lab):
    refused = lab.weft("host", "remove", "hv3", check=False)
    assert refused.returncode == 1
    assert "hv3 still has 1 port(s) bound: red/net/v3" in refused.stderr
    assert "hv3" in {h["name"] for h in lab.json("host", "list")}        # nothing changed
    lab.weft("lab", "vm", "delete", "v3")
    removed = lab.weft("host", "remove", "hv3")
    assert "host hv3 removed" in removed.stdout
    assert "hv3" not in {h["name"] for h in lab.json("host", "list")}
    assert lab.json("port", "show", "red/net/v3")["host"] is None
    # the others keep talking
    assert lab.exec("v1", "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.12").returncode == 0
    again = lab.weft("host", "remove", "hv3", check=False)
    assert again.returncode == 1 and "no host named 'hv3'" in again.stderr
