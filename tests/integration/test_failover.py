"""HA on the lab (`lab up --ha`), under `ping -i 0.01` between VMs on two hosts: kill -9 of the active weftd, of the northbound Raft leader."""
import json
import os
import signal
import subprocess
import time

import pytest

from controller.client import Client
from tests.hatools import PINGS, Pinger, Writer
from tests.labtools import Lab
from topology.errors import WeftError

pytestmark = pytest.mark.integration
VMS = {"v1": ("hv1", "10.0.0.11"), "v2": ("hv2", "10.0.0.12")}


@pytest.fixture(scope="module")
def ha_lab():
    lab = Lab(f"f{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--ha", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, (host, ip) in VMS.items():
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        deadline = time.monotonic() + 10
        while sum(1 for p in lab.json("port", "list") if p["host"]) < len(VMS):
            assert time.monotonic() < deadline, lab.json("port", "list")
            time.sleep(0.05)
        assert lab.exec("v1", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12").returncode == 0
        yield lab
    finally:
        lab.down()


def members(lab: Lab) -> list[dict]:
    return lab.json("cluster", "status")


def replica_client(lab: Lab, name: str) -> Client:
    return Client(f"unix:{lab.dir}/{name}.sock", timeout=5)


def the(lab: Lab, kind: str, role: str) -> dict:
    found = [m for m in members(lab) if m["kind"] == kind and m["role"] == role]
    assert len(found) == 1, members(lab)
    return found[0]


def wait_role(lab: Lab, name: str, role: str, timeout: float = 10) -> dict:
    """The replica's /v1/status once it reports `role` (and, active, master on every switch)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = replica_client(lab, name).get("/v1/status")
            hosts = status["hosts"].values()
            if status["ha"]["role"] == role and (role != "active" or all(
                    h["of_role"] == "master" and h["reconciled"] for h in hosts)):
                return status
        except WeftError:
            pass
        assert time.monotonic() < deadline, f"{name} did not become {role} within {timeout} s"
        time.sleep(0.02)


def ports_of(lab: Lab, replica: str) -> set[str]:
    return {p["name"] for p in replica_client(lab, replica).get("/v1/ports")}


def test_lab_ha_runs_three_nb_members_and_two_replicas(ha_lab):
    ms = members(ha_lab)
    assert sorted((m["kind"], m["name"]) for m in ms) == [
        ("nb", "nb1"), ("nb", "nb2"), ("nb", "nb3"), ("weftd", "weftd"), ("weftd", "weftd2")]
    assert sorted(m["role"] for m in ms if m["kind"] == "nb") == ["follower", "follower", "leader"]
    assert sorted(m["role"] for m in ms if m["kind"] == "weftd") == ["active", "standby"]
    assert all(isinstance(m["pid"], int) and m["address"] for m in ms)
    standby = the(ha_lab, "weftd", "standby")["name"]
    # the standby is connected to every switch as a slave (a loaded machine may take a moment
    # after `lab up` to finish the TLS handshakes), and has sent nothing
    deadline = time.monotonic() + 20
    while True:
        status = replica_client(ha_lab, standby).get("/v1/status")
        if all(h["connected"] and h["of_role"] == "slave" for h in status["hosts"].values()):
            break
        assert time.monotonic() < deadline, status["hosts"]
        time.sleep(0.2)
    assert status["flow_mods"] == 0 and status["bundles"] == 0
    # either replica answers the CLI; each host's br-int lists both
    for name in ("weftd", "weftd2"):
        assert replica_client(ha_lab, name).get("/v1/tenants")[0]["name"] == "red"
    targets = ha_lab.exec("hv1", "ovs-vsctl", f"--db=unix:{ha_lab.dir}/hv1/db.sock",
                          "get-controller", "br-int").stdout.split()
    assert sorted(targets) == ["ssl:198.19.0.1:6653", "ssl:198.19.0.2:6653"]     # TLS, as every lab
    # the northbound members talk Raft over TLS: a plain TCP client gets no database
    state = json.load(open(os.path.join(ha_lab.dir, "state.json")))
    rafts = [state["services"][f"nb{k}"]["raft"] for k in (1, 2, 3)]
    assert all(r.startswith("ssl:198.19.0.1:") for r in rafts), rafts
    plain = subprocess.run(["ip", "netns", "exec", f"{ha_lab.name}-mgmt", "ovsdb-client", "--timeout=3",
                            "list-dbs", "tcp:" + rafts[0][len("ssl:"):]], capture_output=True, text=True)
    assert plain.returncode != 0 and "Weft_Northbound" not in plain.stdout, plain


def test_kill_active_weftd_standby_takes_over_losing_no_ping_and_sending_no_flow_mod(ha_lab):
    active, standby = the(ha_lab, "weftd", "active"), the(ha_lab, "weftd", "standby")
    # what the switches hold, in the active replica's books (a standby's are as of its last dump)
    flows_before = {h: s["flows"] for h, s in
                    replica_client(ha_lab, active["name"]).get("/v1/status")["hosts"].items()}
    assert all(flows_before.values()), flows_before
    pinger = Pinger(ha_lab)
    time.sleep(1)
    os.kill(active["pid"], signal.SIGKILL)
    status = wait_role(ha_lab, standby["name"], "active")
    assert pinger.received() == PINGS
    status = replica_client(ha_lab, standby["name"]).get("/v1/status")
    assert status["flow_mods"] == 0 and status["bundles"] == 0, status
    assert {h: s["flows"] for h, s in status["hosts"].items()} == flows_before
    log = open(f"{ha_lab.dir}/ctl{standby['name'][5:]}/weftd.log").read()
    assert log.count("this replica is now active") == 1
    # the killed replica comes back as the standby
    ha_lab.weft("lab", "controller", "start", "--replica", active["name"])
    wait_role(ha_lab, active["name"], "standby")
    assert the(ha_lab, "weftd", "active")["name"] == standby["name"]


def test_api_writes_during_weftd_failover_succeed_or_fail_retryably_and_none_is_lost(ha_lab):
    active, standby = the(ha_lab, "weftd", "active"), the(ha_lab, "weftd", "standby")
    pinger = Pinger(ha_lab)
    writer = Writer(ha_lab, "w")
    writer.start()
    time.sleep(1)
    os.kill(active["pid"], signal.SIGKILL)
    wait_role(ha_lab, standby["name"], "active")
    time.sleep(1)                       # writes after the failover too
    acked = writer.finish()
    assert pinger.received() == PINGS
    assert len(acked) > 10
    assert set(acked) <= ports_of(ha_lab, standby["name"])
    ha_lab.weft("lab", "controller", "start", "--replica", active["name"])
    wait_role(ha_lab, active["name"], "standby")
    assert set(acked) <= ports_of(ha_lab, active["name"])


def test_kill_nb_leader_writes_resume_and_no_acknowledged_write_is_lost(ha_lab):
    leader = the(ha_lab, "nb", "leader")
    pinger = Pinger(ha_lab)
    writer = Writer(ha_lab, "n")
    writer.start()
    time.sleep(1)
    killed_at = time.monotonic()
    os.kill(leader["pid"], signal.SIGKILL)
    before = len(writer.acked)
    while len(writer.acked) <= before + 5:              # writes resume
        assert time.monotonic() - killed_at < 10, writer.errors[-3:]
        time.sleep(0.05)
    acked = writer.finish()
    assert pinger.received() == PINGS
    for replica in ("weftd", "weftd2"):
        assert set(acked) <= ports_of(ha_lab, replica)
    ms = members(ha_lab)
    assert [m["role"] for m in ms if m["name"] == leader["name"]] == ["down"]
    assert sorted(m["role"] for m in ms if m["kind"] == "nb" and m["name"] != leader["name"]) == [
        "follower", "leader"]
    # the loss is logged once, with what weft does about it, by each replica
    for ctl in ("ctl", "ctl2"):
        log = open(f"{ha_lab.dir}/{ctl}/weftd.log").read()
        assert log.count(f"northbound: lost unix:{leader['address'][5:]}") == 1, ctl
        assert "writes answer 503 (retry) until a leader is found" in log
