"""weft trace and drop samples on the lab (real OVS): traces agree with real probes, a blocked probe is
reported with its reason and group within 5 s, a flood is sampled at most at the meter's rate, and a
flow removed by hand from a switch shows up in `weft trace --installed`."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.labtools import Lab, probe

pytestmark = pytest.mark.integration
PY = sys.executable
PROBE = str(Path(__file__).resolve().parent.parent / "vmprobe.py")
# vm: (tenant, host, ip, group)
VMS = {"web1": ("red", "hv1", "10.0.0.11", "web"), "db1": ("red", "hv2", "10.0.0.31", "db"),
       "bvm": ("blue", "hv2", "10.0.0.50", "default")}


@pytest.fixture(scope="module")
def lab():
    lab = Lab(f"t{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    servers = []
    try:
        for tenant in ("red", "blue"):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
        lab.weft("sg", "create", "red/web")
        lab.weft("sg", "rule", "add", "red/web", "--direction", "egress", "--proto", "any",
                 "--remote-cidr", "0.0.0.0/0")
        lab.weft("sg", "create", "red/db")
        lab.weft("sg", "rule", "add", "red/db", "--direction", "ingress", "--proto", "tcp",
                 "--port", "5432", "--remote-sg", "red/web")
        for vm, (tenant, host, ip, group) in VMS.items():
            lab.weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip, "--sg", f"{tenant}/{group}")
            lab.weft("--wait", "lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
        servers.append(subprocess.Popen([lab.weft_path, "lab", "exec", "db1", "--", PY, PROBE, "serve",
                                         "80,5432", ""], env=lab.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True))
        assert servers[0].stdout.readline().strip() == "ready"
        yield lab
    finally:
        for s in servers:
            s.kill()
            s.wait()
        lab.down()



def trace(lab, *args):
    return lab.json("trace", *args)


def test_an_allowed_tcp_connection_across_hosts_is_delivered(lab):
    t = trace(lab, "red/net/web1", "--dst", "10.0.0.31", "--proto", "tcp", "--dport", "5432")
    assert t["verdict"] == "delivered", t
    assert t["delivered_to"] == [{"host": "hv2", "ofport": t["delivered_to"][0]["ofport"], "port": "red/net/db1"}]
    assert t["tunnels"][0]["from"] == "hv1" and t["tunnels"][0]["to"] == "hv2"
    assert {s["host"] for s in t["steps"]} == {"hv1", "hv2"}
    owners = {s["owner"] for s in t["steps"]}
    assert "port red/net/db1" in owners or any("red/net/db1" in o for o in owners), owners
    assert probe(lab, "web1", [["10.0.0.31", "tcp", 5432]]) == [True]      # and so it is
    table = lab.weft("trace", "red/net/web1", "--dst", "10.0.0.31", "--dport", "5432").stdout
    assert "verdict: delivered to red/net/db1 on hv2" in table


def test_a_connection_blocked_by_a_group_names_the_group(lab):
    t = trace(lab, "red/net/web1", "--dst", "red/net/db1", "--proto", "tcp", "--dport", "80")
    assert (t["verdict"], t["reason"], t["groups"], t["drop_host"]) == (
        "dropped", "security-group", ["red/db"], "hv2"), t
    assert "ingress" in t["detail"]
    assert probe(lab, "web1", [["10.0.0.31", "tcp", 80]]) == [False]


def test_a_spoofed_source_is_port_security(lab):
    t = trace(lab, "red/net/web1", "--dst", "10.0.0.31", "--proto", "tcp", "--dport", "5432",
              "--src-ip", "10.0.0.99")
    assert (t["verdict"], t["reason"], t["drop_host"], t["drop_table"]) == ("dropped", "port-security", "hv1", 10)
    assert "10.0.0.99" in t["detail"]


def test_a_trace_across_tenants_ends_in_isolation(lab):
    for dst in ("10.0.0.50", "blue/net/bvm"):
        t = trace(lab, "red/net/web1", "--dst", dst)
        assert (t["verdict"], t["reason"]) == ("dropped", "isolation"), t
        assert "blue/net/bvm" in t["detail"]
    assert probe(lab, "web1", [["10.0.0.50", "icmp", 0]]) == [False]


def test_bad_trace_requests_fail_with_one_line(lab):
    r = lab.weft("trace", "red/net/web1", "--dst", "10.0.0.31", "--proto", "udp", check=False)
    assert r.returncode != 0 and "--dport is needed" in r.stderr and len(r.stderr.splitlines()) == 1
    r = lab.weft("trace", "red/net/ghost", "--dst", "10.0.0.31", check=False)
    assert r.returncode != 0 and "no port red/net/ghost" in r.stderr


def test_a_blocked_probe_appears_in_traffic_drops_within_5_s(lab):
    start = time.time()
    assert probe(lab, "web1", [["10.0.0.31", "tcp", 80]]) == [False]
    want = None
    while time.time() - start < 5 and want is None:
        rows = lab.json("traffic", "drops", "--tenant", "red", "--since", "1m")
        want = next((r for r in rows if (r["src"], r["dst"], r["proto"], r["dport"]) ==
                     ("red/net/web1", "red/net/db1", "tcp", 80) and r["last_seen"] >= start - 1), None)
        time.sleep(0.2)
    assert want is not None, rows
    assert (want["reason"], want["group"], want["host"]) == ("security-group", "red/db", "hv2")
    assert want["packets"] >= 1 and want["first_seen"] <= want["last_seen"]
    metrics = lab.json_api("/v1/traffic/drops/status")
    assert metrics["by_reason"]["security-group"] >= 1


def _drop_flow_packets(lab, host: str) -> int:
    rows = lab.json("flows", host)
    return sum(r["packets"] for r in rows if r["table"] == 46 and r["feature"] == "drop:security-group")


def test_a_flood_is_sampled_at_most_at_the_configured_rate(lab):
    pps, burst = 20, 5
    lab.weft("traffic", "config", "--drop-sample-pps", str(pps), "--drop-sample-burst", str(burst))
    assert lab.json("traffic", "config")["drop_sample_pps"] == pps
    time.sleep(1.0)                     # the meter is set on every switch (a meter-mod each)
    before = lab.json_api("/v1/traffic/drops/status")["hosts"].get("hv2", {}).get("samples", 0)
    dropped_before = _drop_flow_packets(lab, "hv2")
    # paced at 25,000/s so that the userspace datapath (2 shared cores) carries most of them
    r = lab.exec("web1", PY, PROBE, "flood", "10.0.0.31", "9999", "100000", "25000", timeout=120)
    assert r.returncode == 0, r.stderr
    flood = json.loads(r.stdout)
    assert flood["sent"] == 100000
    end = time.monotonic() + 2
    while time.monotonic() < end:        # samples still on their way
        time.sleep(0.5)
    after = lab.json_api("/v1/traffic/drops/status")["hosts"]["hv2"]["samples"]
    dropped = _drop_flow_packets(lab, "hv2") - dropped_before
    samples = after - before
    allowed = pps * (flood["seconds"] + 3) + burst       # the flood, plus the time samples trail it
    print(f"flood: sent={flood['sent']} in {flood['seconds']} s, reached the drop flow={dropped}, "
          f"samples at weftd={samples} (meter {pps} pps burst {burst}: at most {allowed:.0f})")
    assert dropped >= 50000, f"only {dropped} packets reached the drop flow"
    assert 1 <= samples <= allowed, (samples, allowed, flood, dropped)
    lab.weft("traffic", "config", "--drop-sample-pps", "100", "--drop-sample-burst", "25")


def test_a_flow_removed_by_hand_shows_as_a_difference_with_installed(lab):
    args = ("red/net/web1", "--dst", "10.0.0.31", "--dport", "5432", "--installed")
    t = trace(lab, *args)
    assert t["differences_total"] == 0 and not t["verdicts_differ"], t["differences"]
    assert t["installed"]["verdict"] == "delivered"
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "del-flows", f"unix:{lab.dir}/hv2/br-int.mgmt",
                    "table=40"], check=True, capture_output=True)
    t = trace(lab, *args)
    assert t["verdict"] == "delivered"                         # what weft compiled
    assert (t["installed"]["verdict"], t["installed"]["reason"], t["installed"]["drop_host"]) == (
        "dropped", "no-flow", "hv2")
    assert t["verdicts_differ"]
    missing = [d for d in t["differences"] if d["kind"] == "missing"]
    assert missing and {(d["host"], d["table"]) for d in missing} == {("hv2", 40)}
    assert any(d["on_path"] and "red/net/db1" in d["owner"] for d in missing)
    out = lab.weft("trace", *args).stdout
    assert "differences between compiled and installed" in out and "missing" in out
