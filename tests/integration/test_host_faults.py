"""A hypervisor's Open vSwitch restarting: weft reconciles it and traffic comes back, with the same flows."""
import json
import os
import signal
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flab():
    lab = Lab(f"f{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "t")
        lab.weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("a", "hv1", "10.0.0.11"), ("b", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"t/n/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
        yield lab
    finally:
        lab.down()


def ping_ok(lab, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.exec("a", "ping", "-c", "1", "-W", "1", "10.0.0.12").returncode == 0:
            return True
    return False


def test_a_restarted_ovs_vswitchd_gets_its_flows_back_and_traffic_resumes(flab):
    from lab.ovs import HostSwitch
    assert ping_ok(flab, 10)
    before = {h["name"]: h["flows"] for h in flab.json("host", "list")}
    state = json.load(open(os.path.join(flab.dir, "state.json")))
    hv2 = state["hosts"]["hv2"]
    pid = int(open(os.path.join(hv2["dir"], "vs.pid")).read())
    os.kill(pid, signal.SIGKILL)                       # the switch and its userspace datapath die
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flab.exec("a", "ping", "-c", "1", "-W", "1", "10.0.0.12").returncode != 0   # really down
    HostSwitch(hv2["ns"], hv2["dir"]).start_vswitchd()  # an empty flow table, fail_mode secure
    assert ping_ok(flab, 20)                            # weftd reconciled it: traffic is back
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = {h["name"]: h for h in flab.json("host", "list")}
        if after["hv2"]["connected"] and after["hv2"]["flows"] == before["hv2"]:
            break
        time.sleep(0.1)
    assert after["hv2"]["flows"] == before["hv2"] and after["hv1"]["flows"] == before["hv1"], (before, after)


def test_a_killed_ovsdb_server_is_logged_traffic_flows_on_and_bindings_resume(flab):
    from lab.ovs import HostSwitch
    from lab.pki import Pki, lab_pki_dir
    assert ping_ok(flab, 10)
    state = json.load(open(os.path.join(flab.dir, "state.json")))
    hv2 = state["hosts"]["hv2"]
    log = os.path.join(flab.dir, "ctl", "weftd.log")
    log_start = os.path.getsize(log)
    pid = int(open(os.path.join(hv2["dir"], "ovsdb.pid")).read())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)

    def logged() -> str:
        with open(log) as f:
            f.seek(log_start)
            return f.read()
    deadline = time.monotonic() + 15
    while "hv2: lost its OVSDB connection" not in logged():
        assert time.monotonic() < deadline, logged()[-2000:]
        time.sleep(0.2)
    # weft forgets nothing while the database is away: the port stays bound where it was.
    # (ovs-vswitchd itself stops running its bridges once it loses its database lock: with
    # the userspace datapath of this lab, hv2 forwards nothing until the database returns.)
    assert flab.json("port", "show", "t/n/b")["host"] == "hv2"
    time.sleep(2)                                      # logged once, not per retry
    assert logged().count("hv2: lost its OVSDB connection") == 1, logged()[-2000:]
    assert flab.json("port", "show", "t/n/b")["host"] == "hv2"
    pki = Pki(lab_pki_dir(flab.dir))
    key, cert = pki.files("hv2")
    HostSwitch(hv2["ns"], hv2["dir"]).start_db(init=False, create=False,
                                                tls=(key, cert, pki.ca_cert, hv2["mgmt_ip"]))
    assert ping_ok(flab, 30)                           # the old VMs talk again
    # a VM plugged now is bound through the returned database and reaches the other host
    flab.weft("port", "create", "t/n/c", "--ip", "10.0.0.13")
    flab.weft("lab", "vm", "create", "c", "--host", "hv2", "--port", "t/n/c")
    deadline = time.monotonic() + 20
    while flab.exec("c", "ping", "-c", "1", "-W", "1", "10.0.0.11").returncode != 0:
        assert time.monotonic() < deadline, logged()[-2000:]
    assert flab.json("port", "show", "t/n/c")["host"] == "hv2"
    assert "host hv2 configured" in logged()
