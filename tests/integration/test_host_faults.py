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
