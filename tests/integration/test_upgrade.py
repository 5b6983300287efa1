"""Rolling upgrade with HA: each weftd replica restarted in turn onto a newer northbound schema, under `ping -i 0.01` and a stream of API writes: 0 lost, no write lost; an older weftd then refuses to start."""
import json
import os
import subprocess
import time

import pytest

from controller.client import Client
from ovsdb import nbschema
from tests.hatools import Pinger, Writer
from tests.labtools import Lab
from topology.errors import WeftError

pytestmark = pytest.mark.integration
PINGS = 3000                             # 30 s at 10 ms: both restarts fall inside (checked)


def newer_schema(path) -> str:
    """Today's schema with one more optional column and the minor version bumped: what the next
    release's additive change looks like, whatever today's schema holds."""
    with open(nbschema.DEFAULT_SCHEMA) as f:
        schema = json.load(f)
    major, minor, _ = nbschema.parse_version(schema["version"])
    schema["version"] = f"{major}.{minor + 1}.0"
    schema["tables"]["Tenant"]["columns"]["upgrade_probe"] = {"type": {"key": "string", "min": 0, "max": 1}}
    path.write_text(json.dumps(schema))
    return schema["version"]


@pytest.fixture(scope="module")
def ha_lab():
    lab = Lab(f"u{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--ha", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/16")   # room for the writer
        for vm, host, ip in (("v1", "hv1", "10.0.0.11"), ("v2", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        deadline = time.monotonic() + 10
        while sum(1 for p in lab.json("port", "list") if p["host"]) < 2:
            assert time.monotonic() < deadline, lab.json("port", "list")
            time.sleep(0.05)
        assert lab.exec("v1", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12").returncode == 0
        yield lab
    finally:
        lab.down()


def replica(lab, name):
    return Client(f"unix:{lab.dir}/{name}.sock", timeout=5)


def roles(lab) -> dict[str, str]:
    found = {}
    for name in ("weftd", "weftd2"):
        try:
            found[name] = replica(lab, name).get("/v1/status")["ha"]["role"]
        except WeftError:
            found[name] = "down"
    return found


def wait_roles(lab, want: dict[str, str], timeout: float = 20) -> None:
    """Until the replicas have these roles, the active one master and reconciled on every switch."""
    deadline = time.monotonic() + timeout
    while True:
        if roles(lab) == want:
            active = next(n for n, r in want.items() if r == "active")
            hosts = replica(lab, active).get("/v1/status")["hosts"].values()
            if all(h["of_role"] == "master" and h["reconciled"] for h in hosts):
                return
        assert time.monotonic() < deadline, f"replicas {roles(lab)}, wanted {want}"
        time.sleep(0.05)


def server_version(lab) -> str:
    remote = ",".join(f"unix:{lab.dir}/nb/nb{k}.sock" for k in (1, 2, 3))
    return subprocess.run(["ovsdb-client", "get-schema-version", remote, nbschema.DB_NAME],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_replicas_restarted_one_at_a_time_onto_a_newer_schema_lose_no_packet_and_no_write(ha_lab, tmp_path):
    old = nbschema.known_version()
    new_schema = tmp_path / "weft_nb.ovsschema"
    new = newer_schema(new_schema)
    upgraded = {"WEFT_NB_SCHEMA": str(new_schema)}
    r = roles(ha_lab)
    active = next(n for n, role in r.items() if role == "active")
    standby = next(n for n, role in r.items() if role == "standby")
    assert server_version(ha_lab) == old
    pinger = Pinger(ha_lab, PINGS)
    writer = Writer(ha_lab, "u")
    writer.start()
    time.sleep(1)
    # the standby first: it converts the cluster's database in place; the active keeps serving
    ha_lab.weft("lab", "controller", "restart", "--replica", standby, env=upgraded)
    wait_roles(ha_lab, {active: "active", standby: "standby"})
    assert server_version(ha_lab) == new
    time.sleep(1)
    # then the active: the upgraded standby takes over, the restarted one comes back as standby
    ha_lab.weft("lab", "controller", "restart", "--replica", active, env=upgraded)
    wait_roles(ha_lab, {active: "standby", standby: "active"})
    time.sleep(1)
    assert pinger.proc.poll() is None, "the ping ended before both restarts were done: raise PINGS"
    acked = writer.finish()
    assert pinger.received() == PINGS
    assert len(acked) > 20, writer.errors[-3:]
    for name in (active, standby):
        assert set(acked) <= {p["name"] for p in replica(ha_lab, name).get("/v1/ports")}, name
    logs = {n: open(f"{ha_lab.dir}/ctl{n[5:]}/weftd.log").read() for n in (active, standby)}
    assert f"northbound schema upgraded in place: {old} -> {new}" in logs[standby]
    assert "upgraded in place" not in logs[active].split("weftd stopping")[-1]    # already current
    # an older weftd refuses the newer database, and changes nothing
    refused = ha_lab.weft("lab", "controller", "restart", "--replica", active, check=False)
    assert refused.returncode != 0
    log = open(f"{ha_lab.dir}/ctl{active[5:]}/weftd.log").read().split("weftd stopping")[-1]
    assert f"has schema version {new}, newer than this weftd knows ({old})" in log
    assert server_version(ha_lab) == new
    assert roles(ha_lab)[standby] == "active"
    assert ha_lab.exec("v1", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12").returncode == 0
