"""Live migration on the real lab: `weft lab vm move` while a peer pings every 10 ms, `weft port migrate` input checks."""
import json
import os
import subprocess
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration
PINGS = 300


@pytest.fixture(scope="module")
def mig_lab():
    lab = Lab(f"m{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "3")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("vm1", "hv1", "10.0.0.11"), ("vm2", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        lab.weft("port", "create", "red/net/idle", "--ip", "10.0.0.13")    # no VM: not bound
        deadline = time.monotonic() + 10
        while lab.json("port", "show", "red/net/vm2")["host"] != "hv2" or lab.exec(
                "vm1", "ping", "-c1", "-W1", "10.0.0.12").returncode != 0:
            assert time.monotonic() < deadline, "vm2 never answered"
            time.sleep(0.1)
        yield lab
    finally:
        lab.down()


def iface_ids(lab: Lab, host: str) -> list[str]:
    with open(os.path.join(lab.dir, "state.json")) as f:
        db = "unix:" + os.path.join(json.load(f)["hosts"][host]["dir"], "db.sock")   # local admin socket
    out = lab.exec(host, "ovs-vsctl", f"--db={db}", "--format=json", "--columns=external_ids",
                   "list", "Interface").stdout
    rows = json.loads(out)["data"]
    return [v for row in rows for k, v in row[0][1] if k == "iface-id"]


def test_bad_migrations_are_refused_and_change_nothing(mig_lab):
    lab = mig_lab
    cases = [(("red/net/nope", "--to", "hv3"), "no port red/net/nope"),
             (("red/net/vm2", "--to", "hv9"), "unknown host 'hv9'"),
             (("red/net/vm2", "--to", "hv2"), "already on hv2"),
             (("red/net/idle", "--to", "hv3"), "not bound"),
             (("red/net", "--to", "hv3"), "TENANT/NET/PORT")]
    for args, message in cases:
        r = lab.weft("port", "migrate", *args, check=False)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1
    shown = lab.json("port", "show", "red/net/vm2")
    assert shown["host"] == "hv2" and shown["migration"] is None
    assert shown["last_migration_blackout_ms"] is None
    r = lab.weft("lab", "vm", "move", "vm2", "--host", "hv2", check=False)
    assert r.returncode != 0 and "already on hv2" in r.stderr


def test_vm_moved_while_pinged_loses_almost_nothing_and_ends_on_the_new_host(mig_lab):
    lab = mig_lab
    for dest, source in (("hv3", "hv2"), ("hv2", "hv3")):
        pinger = subprocess.Popen([lab.weft_path, "lab", "exec", "vm1", "--", "ping", "-i", "0.01",
                                   "-c", str(PINGS), "-W", "1", "10.0.0.12"], env=lab.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.8)
            moved = lab.weft("lab", "vm", "move", "vm2", "--host", dest)
            out, _ = pinger.communicate(timeout=60)
        finally:
            if pinger.poll() is None:
                pinger.kill()
                pinger.wait()
        received = int(out.split(" received")[0].rsplit(None, 1)[-1])
        assert received >= PINGS - 5, f"{PINGS - received} of {PINGS} pings lost moving to {dest}:\n{moved.stdout}"
        port = lab.json("port", "show", "red/net/vm2")
        assert port["host"] == dest
        m = port["migration"]
        assert (m["from"], m["to"], m["state"]) == (source, dest, "done")
        # the guest's RARP, or whatever it sent first from its new NIC (with IPv6 up, a
        # multicast listener report or a neighbour solicitation can come before the RARP)
        assert m["trigger"] in ("rarp", "frame"), m
        assert isinstance(port["last_migration_blackout_ms"], float) and port["last_migration_blackout_ms"] > 0
        assert port["last_migration_blackout_ms"] == m["blackout_ms"]
        # the NIC is on the new host only, and the VM answers there
        assert iface_ids(lab, dest).count(port["id"]) == 1
        assert port["id"] not in iface_ids(lab, source)
        status = lab.json("lab", "status")
        assert next(v for v in status["vms"] if v["name"] == "vm2")["host"] == dest
        assert lab.exec("vm1", "ping", "-c1", "-W1", "10.0.0.12").returncode == 0
        assert lab.exec("vm2", "ip", "-br", "addr", "show", "eth0").stdout.split()[2] == "10.0.0.12/24"
