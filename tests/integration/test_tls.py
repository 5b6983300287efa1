"""TLS and switch identity on the real lab: fake switches over real TLS get no flows and are hung up on; the real ones keep theirs.

The fake switch (`tests/ofimpostor.py`, standard library only) runs inside hv2's namespace and
talks to weftd's listener on the management network. A control case shows it can get flows:
with the certificate of `ghost` — a host registered in weft that has no switch of its own — and
ghost's datapath id it is admitted and sent a bundle; every other case is the same program with
one thing wrong.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.pki import Pki, self_signed
from ovsdb.southbound import datapath_id
from tests.labtools import Lab

pytestmark = pytest.mark.integration
IMPOSTOR = str(Path(__file__).resolve().parent.parent / "ofimpostor.py")
LISTENER = "198.19.0.1:6653"
# what any connection may be sent before weftd has decided: os-ken's handshake (HELLO,
# FEATURES_REQUEST, a port-desc request) and echo requests
HANDSHAKE = {0, 2, 5, 18}
FLOW_MOD, PACKET_OUT, METER_MOD, BUNDLE_CONTROL, BUNDLE_ADD = 14, 13, 29, 33, 34


@pytest.fixture(scope="module")
def tls_lab():
    lab = Lab(f"k{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("v1", "hv1", "10.0.0.11"), ("v2", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        deadline = time.monotonic() + 10
        while lab.exec("v1", "ping", "-c1", "-W1", "10.0.0.12").returncode != 0:
            assert time.monotonic() < deadline, "v2 never answered over the TLS-programmed lab"
            time.sleep(0.1)
        # ghost: a host weft knows, whose switch never comes (its OVSDB is an address nobody holds)
        lab.weft("host", "add", "ghost", "--tunnel-ip", "198.18.0.250", "--ovsdb", "ssl:198.19.0.250:6640")
        pki = Pki(os.path.join(lab.dir, "pki"))
        pki.issue("ghost")
        self_signed(os.path.join(lab.dir, "rogue"), "ghost")
        yield lab
    finally:
        lab.down()


def pki_files(lab: Lab, name: str) -> list[str]:
    pki = Pki(os.path.join(lab.dir, "pki"))
    key, cert = pki.files(name)
    return ["--cert", cert, "--key", key]


def fake_switch(lab: Lab, host: str, *args: str, hold: float = 15) -> dict:
    """The fake switch claiming `host`'s datapath id (or a raw hex id), run in hv2's namespace."""
    dpid = f"{datapath_id(host):016x}" if not host.startswith("0x") else host[2:]
    argv = ["ip", "netns", "exec", f"{lab.name}-hv2", sys.executable, IMPOSTOR,
            "--connect", LISTENER, "--dpid", dpid, "--ca", os.path.join(lab.dir, "pki", "ca.pem"),
            "--hold", str(hold), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=hold + 30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refusals(lab: Lab) -> dict:
    return lab.json_api("/v1/status")["switch_refusals"]["by_reason"]


def hosts(lab: Lab) -> dict:
    return {h["name"]: h for h in lab.json("host", "list")}


def metric(lab: Lab, reason: str) -> float:
    """weft_switch_refusals_total{reason} from GET /metrics on the lab's API socket."""
    from tests.integration.test_engine_lab import metrics
    prefix = f'weft_switch_refusals_total{{reason="{reason}"}} '
    return float(next(ln for ln in metrics(lab).splitlines() if ln.startswith(prefix)).split()[-1])


def assert_refused(report: dict) -> None:
    """Hung up on, having been sent nothing beyond the handshake: no flows, meters, bundles,
    packet-outs, not even a flow dump request."""
    assert report["closed_by_peer"], report
    assert set(report["received"]) <= HANDSHAKE, report
    assert not {FLOW_MOD, PACKET_OUT, METER_MOD, BUNDLE_CONTROL, BUNDLE_ADD} & set(report["received"])
    assert report["flow_stats_requests"] == 0


def test_the_lab_runs_on_tls(tls_lab):
    """Every switch and every OVSDB session of the lab is TLS, and weftd's listener is TLS-only."""
    lab = tls_lab
    state = lab.json("lab", "status")
    assert all(h["ovsdb"].startswith("ssl:") for h in state["hosts"])
    listed = hosts(lab)
    assert listed["hv1"]["connected"] and listed["hv1"]["config"] == "configured"
    assert listed["hv1"]["ovsdb"].startswith("ssl:")
    for host in ("hv1", "hv2"):      # ovs-vswitchd writes is_connected a few seconds late
        deadline = time.monotonic() + 15
        while True:
            ctl = lab.exec(host, "ovs-vsctl", f"--db=unix:{lab.dir}/{host}/db.sock",
                           "--format=json", "--columns=target,is_connected", "list", "Controller")
            rows = json.loads(ctl.stdout)["data"]
            if rows == [[f"ssl:{LISTENER}", True]] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rows == [[f"ssl:{LISTENER}", True]], rows
    key = os.stat(os.path.join(lab.dir, "pki", "ca.key"))
    assert key.st_mode & 0o777 == 0o600
    # a plain-TCP OpenFlow client gets no further than the TLS handshake
    before = refusals(lab)["tls-handshake"]
    probe = subprocess.run(["ip", "netns", "exec", f"{lab.name}-hv2", sys.executable, "-c",
                            "import socket,struct; s=socket.create_connection(('198.19.0.1',6653),10);"
                            "s.sendall(struct.pack('!BBHI',5,0,8,1)); s.settimeout(10);"
                            "print(s.recv(100).hex())"], capture_output=True, text=True, timeout=30)
    assert "0500" not in probe.stdout            # never an OpenFlow HELLO back
    assert refusals(lab)["tls-handshake"] == before + 1


def test_a_switch_with_the_hosts_certificate_is_admitted_and_gets_flows(tls_lab):
    """The control case: the fake switch is able to get flows when it is who it says it is."""
    lab = tls_lab
    report = fake_switch(lab, "ghost", *pki_files(lab, "ghost"), "--until-flows")
    assert report["handshake"] == "ok" and not report["closed_by_peer"], report
    assert BUNDLE_ADD in report["received"] and METER_MOD in report["received"]
    assert report["flow_stats_requests"] >= 1


@pytest.mark.parametrize("case", ["no-certificate", "self-signed"])
def test_a_switch_without_a_valid_certificate_gets_nothing(tls_lab, case):
    lab = tls_lab
    before = refusals(lab)["tls-handshake"]
    args = [] if case == "no-certificate" else [
        "--cert", os.path.join(lab.dir, "rogue", "ghost.pem"), "--key", os.path.join(lab.dir, "rogue", "ghost.key")]
    report = fake_switch(lab, "ghost", *args)
    assert_refused(report)
    assert report["received"] == []              # not even a HELLO: TLS never completed
    assert refusals(lab)["tls-handshake"] == before + 1
    assert not hosts(lab)["ghost"]["connected"]


def test_a_switch_with_another_hosts_certificate_gets_nothing(tls_lab):
    lab = tls_lab
    before = refusals(lab)["certificate-mismatch"]
    report = fake_switch(lab, "ghost", *pki_files(lab, "hv2"))      # hv2's real certificate
    assert_refused(report)
    assert refusals(lab)["certificate-mismatch"] == before + 1
    assert metric(lab, "certificate-mismatch") == before + 1
    assert not hosts(lab)["ghost"]["connected"]
    log = open(os.path.join(lab.dir, "ctl", "weftd.log")).read()
    assert "refused (certificate-mismatch)" in log and "belongs to ghost but the certificate names hv2" in log


def test_a_valid_certificate_with_an_unknown_datapath_id_gets_nothing(tls_lab):
    lab = tls_lab
    before = refusals(lab)["unknown-datapath"]
    report = fake_switch(lab, "0x00000000deadbeef", *pki_files(lab, "ghost"))
    assert_refused(report)
    assert refusals(lab)["unknown-datapath"] == before + 1
    recent = lab.json_api("/v1/status")["switch_refusals"]["recent"]
    assert any(r["reason"] == "unknown-datapath" and r["datapath_id"] == "00000000deadbeef" for r in recent)


def test_a_second_connection_for_a_live_switch_is_refused_and_the_first_keeps_working(tls_lab):
    """hv1's own certificate and datapath id, while hv1 is connected: refused; hv1 keeps its
    connection and its flows, and traffic through it never stops."""
    lab = tls_lab
    before = refusals(lab)["duplicate-connection"]
    status = lab.json_api("/v1/status")["hosts"]["hv1"]
    # 100 pings 50 ms apart from v1 (hv1) to v2 (hv2), running while the impostors try
    pinger = subprocess.Popen(["ip", "netns", "exec", f"{lab.name}-vm-v1", "ping", "-c", "100", "-i", "0.05",
                               "-W", "5", "10.0.0.12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        report = fake_switch(lab, "hv1", *pki_files(lab, "hv1"))
        report_again = fake_switch(lab, "hv1", *pki_files(lab, "hv1"))
    finally:
        out, _ = pinger.communicate(timeout=60)
    assert_refused(report)
    assert_refused(report_again)
    # the engine counts a refusal on its loop, a moment after the impostor was hung up on
    deadline = time.monotonic() + 10
    while refusals(lab)["duplicate-connection"] < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refusals(lab)["duplicate-connection"] == before + 2, \
        lab.json_api("/v1/status")["switch_refusals"]       # every reason and the recent ones
    after = lab.json_api("/v1/status")["hosts"]["hv1"]
    assert after["connected"] and after["connects"] == status["connects"]   # never replaced
    assert after["flows"] == status["flows"] and after["flow_mods"] == status["flow_mods"]
    sent, received = (int(w) for w in
                      re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent > 0 and received == sent, out
    # the log says so once for this peer, however often it tried
    log = open(os.path.join(lab.dir, "ctl", "weftd.log")).read()
    assert log.count("refused (duplicate-connection)") == 1


def test_a_host_with_a_plain_ovsdb_remote_needs_insecure(tls_lab):
    lab = tls_lab
    before = lab.json("host", "list")
    r = lab.weft("host", "add", "plain", "--tunnel-ip", "198.18.0.251", "--ovsdb", "tcp:198.19.0.251:6640",
                 check=False)
    assert r.returncode != 0 and "not TLS" in r.stderr and "--insecure" in r.stderr
    assert lab.json("host", "list") == before        # nothing changed
    lab.weft("host", "add", "plain", "--tunnel-ip", "198.18.0.251", "--ovsdb", "tcp:198.19.0.251:6640",
             "--insecure")
    assert "plain" in hosts(lab)
    lab.weft("host", "delete", "plain")
