"""The engine on real switches: refused bundles recovered, --wait=hv, the port-up timeline and metrics."""
import os
import re
import subprocess
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    lab = Lab(f"e{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("a", "hv1", "10.0.0.11"), ("b", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        yield lab
    finally:
        lab.down()


def ofctl(lab: Lab, host: str, *args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", *args[:1],
                           f"unix:{lab.dir}/{host}/br-int.mgmt", *args[1:]],
                          check=True, capture_output=True, text=True).stdout


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def metrics(lab: Lab) -> str:
    """GET /metrics on the lab's API socket (plain HTTP: the CLI has no verb for it)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(f"{lab.dir}/weftd.sock")
    conn = Conn("weftd")
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def test_a_refused_bundle_is_counted_and_the_host_recovers(lab):
    """hv1 loses the DHCP meter (as a switch that was reset would): the bundle plugging a new
    VM is refused as a whole; weftd counts it, says which flow, and reconciles after a backoff,
    re-adding the meter; the VM then works."""
    failed_before = metric(metrics(lab), 'weft_bundles_total{result="failed"}')
    ofctl(lab, "hv1", "del-meters")
    assert "meter=1" not in ofctl(lab, "hv1", "dump-meters")
    lab.weft("port", "create", "red/net/c", "--ip", "10.0.0.13")
    lab.weft("lab", "vm", "create", "c", "--host", "hv1", "--port", "red/net/c")
    status = wait_until(lambda: (s := lab.json_api("/v1/status")["hosts"]["hv1"])["bundle_errors"] and s)
    assert status["bundle_errors"] >= 1, status
    assert "refused" in status["last_error"] and "meter:1" in status["last_error"], status
    assert metric(metrics(lab), 'weft_bundles_total{result="failed"}') > failed_before
    # recovered: meter back, host reconciled, flows equal to what weft computed, traffic flows
    assert wait_until(lambda: lab.json_api("/v1/status")["hosts"]["hv1"]["reconciled"])
    assert "meter=1" in ofctl(lab, "hv1", "dump-meters")
    flows = lab.json("flows", "hv1")
    assert flows and all(not r["owner"].startswith("unknown") for r in flows)
    r = lab.exec("c", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12")
    assert r.returncode == 0, r.stdout


def test_wait_returns_once_every_affected_host_has_committed(lab):
    import json
    # a rule of the default group, which a (hv1) and b (hv2) have: both hosts' flows change
    r = lab.weft("--wait", "sg", "rule", "add", "red/default", "--direction", "ingress",
                 "--proto", "tcp", "--port", "2222", "--remote-cidr", "0.0.0.0/0", "-o", "json")
    waited = json.loads(r.stdout)["wait"]
    assert waited["hosts_pending"] == [] and waited["version"] > 0, waited
    # the answer came after both switches confirmed a bundle carrying that version
    hosts = lab.json_api("/v1/status")["hosts"]
    assert all(hosts[h]["applied_version"] >= waited["version"] for h in ("hv1", "hv2")), hosts
    # committed on both hosts: the rule's flow is in their ingress ACL table already
    for host in ("hv1", "hv2"):
        dump = ofctl(lab, host, "dump-flows", "table=46")
        assert "tp_dst=2222" in dump, (host, dump)
    # a port bound nowhere changes no host's flows: the wait has nothing to wait for
    r = lab.weft("--wait", "port", "create", "red/net/w", "--ip", "10.0.0.20", "-o", "json")
    assert json.loads(r.stdout)["wait"]["hosts_pending"] == []
    for host in ("hv1", "hv2"):
        assert "arp_tpa=10.0.0.20" not in ofctl(lab, host, "dump-flows", "table=20"), host
    bad = lab.weft("--wait", "--wait-timeout", "0", "port", "create", "red/net/w2", check=False)
    assert bad.returncode != 0 and "timeout must be between" in bad.stderr, bad.stderr
    assert lab.weft("port", "show", "red/net/w2", check=False).returncode != 0, "a refused wait changed nothing"


def test_port_up_timeline_and_histogram(lab):
    before = metric(metrics(lab), "weft_port_up_seconds_count")
    lab.weft("port", "create", "red/net/d", "--ip", "10.0.0.14")
    lab.weft("lab", "vm", "create", "d", "--host", "hv2", "--port", "red/net/d")
    port = wait_until(lambda: (p := lab.json("port", "show", "red/net/d"))["up_latency_ms"] is not None and p)
    assert port and 0 < port["up_latency_ms"] < 5000, port
    assert metric(metrics(lab), "weft_port_up_seconds_count") == before + 1
    text = metrics(lab)
    assert "weft_hosts_connected 2.0" in text


def test_a_nic_plugged_again_gets_its_flows_on_the_switchs_own_confirmation(lab):
    """A VM's NIC leaves hv2 and comes back (a restart): weftd compiled its bundle while it was
    away and the bundle went out on hv2's own word (row and port-status), on a new ofport; the
    VM answers across hosts, and the books match the switch (no bundle in flight)."""
    import json as _json
    lab.weft("port", "create", "red/net/r", "--ip", "10.0.0.15")
    lab.weft("lab", "vm", "create", "r", "--host", "hv2", "--port", "red/net/r")
    assert lab.exec("a", "ping", "-c", "1", "-W", "5", "10.0.0.15").returncode == 0
    with open(os.path.join(lab.dir, "state.json")) as f:
        state = _json.load(f)
    vm, host = state["vms"]["r"], state["hosts"]["hv2"]
    vsctl = ["ip", "netns", "exec", host["ns"], "ovs-vsctl", f"--db=unix:{host['dir']}/db.sock"]
    old = lab.json("port", "show", "red/net/r")["ofport"]
    for attempt in range(3):         # a plug whose NIC is numbered before weftd hears it away
        subprocess.run([*vsctl, "del-port", "br-int", vm["tap"]], check=True, capture_output=True)
        assert wait_until(lambda: lab.json("port", "show", "red/net/r")["ofport"] == 0)
        time.sleep(0.3)              # compiled ahead while the NIC is away
        subprocess.run([*vsctl, "add-port", "br-int", vm["tap"], "--", "set", "interface", vm["tap"],
                        f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}"],
                       check=True, capture_output=True)
        port = wait_until(lambda: (p := lab.json("port", "show", "red/net/r"))["ofport"] not in (0, old)
                          and p["up_timeline"] and p["up_timeline"]["committed_ms"] is not None and p)
        assert port, lab.json("port", "show", "red/net/r")
        if port["up_timeline"]["sent_armed"]:
            break
        old = port["ofport"]
    assert port["up_timeline"]["sent_armed"] is True, port
    assert port["up_timeline"]["committed_ms"] >= port["up_timeline"]["sent_ms"], port
    assert lab.exec("a", "ping", "-c", "1", "-W", "5", "10.0.0.15").returncode == 0
    status = lab.json_api("/v1/status")["hosts"]["hv2"]
    assert status["in_flight"] == 0, status
    assert f"in_port={port['ofport']}" in ofctl(lab, "hv2", "dump-flows", "table=0")


def test_hosts_show_their_southbound_configuration_state(lab):
    hosts = lab.json("host", "list")
    assert [h["config"] for h in hosts] == ["configured", "configured"], hosts
    table = lab.weft("host", "list").stdout
    assert "CONFIG" in table.splitlines()[0] and "configured" in table
    status = lab.json_api("/v1/status")["hosts"]
    assert status["hv1"]["config"]["state"] == "configured" and status["hv1"]["config"]["configured_at"]


def _unplugged_vm_on_hv2(lab, name: str, ip: str):
    """VM `name` on hv2 (port red/net/NAME at `ip`), answering a's ping, then its NIC unplugged
    (the port parked on hv2): its lab records, hv2's, a's, and ovs-vsctl on hv2."""
    import json as _json
    lab.weft("port", "create", f"red/net/{name}", "--ip", ip)
    lab.weft("lab", "vm", "create", name, "--host", "hv2", "--port", f"red/net/{name}")
    assert lab.exec("a", "ping", "-c", "1", "-W", "5", ip).returncode == 0
    with open(os.path.join(lab.dir, "state.json")) as f:
        state = _json.load(f)
    vm, host, src = state["vms"][name], state["hosts"]["hv2"], state["vms"]["a"]
    vsctl = ["ip", "netns", "exec", host["ns"], "ovs-vsctl", f"--db=unix:{host['dir']}/db.sock"]
    subprocess.run([*vsctl, "del-port", "br-int", vm["tap"]], check=True, capture_output=True)
    assert wait_until(lambda: lab.json("port", "show", f"red/net/{name}")["ofport"] == 0)
    return vm, host, src, vsctl


def test_a_request_sent_while_a_nic_is_away_is_delivered_once_it_is_back(lab):
    """One ping request (no retry: `-c 1`) sent while the VM's NIC is unplugged from hv2: hv2
    drops it (nobody there), weftd holds its sample for the parked NIC, and sends it back
    through the NIC's new flows right behind its port-up bundle (controller/replay.py), so the
    VM answers it. Without the hold the request is lost and ping fails."""
    vm, host, src, vsctl = _unplugged_vm_on_hv2(lab, "h", "10.0.0.17")
    counts = lambda: lab.json_api("/v1/traffic/drops/status")["packet_ins"]    # noqa: E731
    before = counts()
    time.sleep(0.5)                      # the drop meter's bucket is full again
    ping = subprocess.Popen(["ip", "netns", "exec", src["ns"], "ping", "-n", "-c", "1", "-W", "5", "10.0.0.17"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: counts()["held"] > before["held"]), "hv2 dropped it, weftd held it"
        subprocess.run([*vsctl, "add-port", "br-int", vm["tap"], "--", "set", "interface", vm["tap"],
                        f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}"],
                       check=True, capture_output=True)
        out = ping.communicate(timeout=10)[0]
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    assert ping.returncode == 0, out
    assert counts()["released"] > before["released"]


def test_what_the_datapath_still_drops_for_a_nic_back_is_replayed_through_its_new_flows(lab):
    """A NIC plugged again while traffic to it is waiting: hv2's datapath keeps answering that
    traffic from its cached drop until a revalidator round re-translates it (Open vSwitch starts
    one at most every 5 ms; here they are paused, so the cache stays stale). weftd sends the
    samples of that drop back through the NIC's new flows (controller/replay.py), so the VM
    answers meanwhile; with the revalidators back, the path no longer needs weftd."""
    vm, host, src, vsctl = _unplugged_vm_on_hv2(lab, "s", "10.0.0.16")
    appctl = ["ip", "netns", "exec", host["ns"], "ovs-appctl", "-t", f"{host['dir']}/vs.ctl"]
    replayed = lambda: lab.json_api("/v1/traffic/drops/status")["packet_ins"]["replayed"]   # noqa: E731
    before = replayed()
    # 20 requests a second, under the drop meter's 100: every one dropped on hv2 is sampled
    ping = subprocess.Popen(["ip", "netns", "exec", src["ns"], "ping", "-D", "-n", "-i", "0.05", "-W", "1",
                             "-c", "100", "10.0.0.16"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)                  # hv2's datapath now holds the cached drop of those requests
        subprocess.run([*appctl, "revalidator/pause"], check=True, capture_output=True)
        try:
            plugged = time.time()
            subprocess.run([*vsctl, "add-port", "br-int", vm["tap"], "--", "set", "interface", vm["tap"],
                            f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}"],
                           check=True, capture_output=True)
            assert wait_until(lambda: (t := lab.json("port", "show", "red/net/s")["up_timeline"])
                              and t["committed_ms"] is not None)
            time.sleep(1.5)              # ~30 requests, the revalidators still paused
            during = replayed() - before
            paused_until = time.time()
        finally:
            subprocess.run([*appctl, "revalidator/resume"], check=True, capture_output=True)
    finally:
        out = ping.communicate(timeout=30)[0] if ping.wait(timeout=30) is not None else ""
    replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    answered_while_paused = [t for t in replies if plugged < t < paused_until]
    assert len(answered_while_paused) >= 10, (len(answered_while_paused), during)
    assert during >= 10, f"weftd replayed {during} of the ~30 requests hv2's stale cache dropped"
    assert replies[-1] > paused_until, "answers go on once the revalidators are back"
    after = replayed()
    assert lab.exec("a", "ping", "-c", "5", "-i", "0.05", "10.0.0.16").returncode == 0
    assert replayed() == after, "once the cache is right, nothing more goes through weftd"
