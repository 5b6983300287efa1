"""HostManager against a real ovsdb-server + ovs-vswitchd of the test's own: one idempotent transaction per change."""
import json
import os
import subprocess
import threading
import time

import pytest

from lab.state import pid_from_file, stop_pid
from ovsdb import hostconfig
from ovsdb.southbound import HostManager, datapath_id

pytestmark = pytest.mark.integration

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
CTL = "tcp:127.0.0.1:6653"
EXPORTERS = {
    "sflow": {"target": "127.0.0.1:6343", "sampling": 64, "polling": 10, "agent": None},
    "netflow": {"target": "127.0.0.1:2055", "engine_id": 7, "active_timeout": 10},
    "ipfix": {"target": "127.0.0.1:4739", "obs_domain_id": 1799, "active_timeout": 5},
}
_count = iter(range(1000))


class Ovs:
    """One Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) in a namespace of the test's own."""

    def __init__(self, directory, ns: str):
        self.dir, self.ns = str(directory), ns
        self.sock = os.path.join(self.dir, "db.sock")
        self.remote = f"unix:{self.sock}"
        if len(os.path.join(self.dir, "br-int.mgmt")) > 100:
            raise RuntimeError(f"{self.dir} is too long a path for Open vSwitch's unix sockets")

    def start_db(self, fresh: bool = True) -> None:
        db = os.path.join(self.dir, "conf.db")
        if fresh:
            if os.path.exists(db):
                os.unlink(db)
            subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ovsdb-server", db, f"--remote=punix:{self.sock}",
                        f"--pidfile={self.dir}/ovsdb.pid", "--detach", f"--log-file={self.dir}/ovsdb.log",
                        f"--unixctl={self.dir}/ovsdb.ctl"], check=True)
        if fresh:
            self.vsctl("--no-wait", "init")

    def start_switch(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns, "env", f"OVS_RUNDIR={self.dir}", f"OVS_LOGDIR={self.dir}",
                        "ovs-vswitchd", self.remote, f"--pidfile={self.dir}/vs.pid", "--detach",
                        f"--log-file={self.dir}/vs.log", f"--unixctl={self.dir}/vs.ctl"], check=True)

    def stop(self, what: str) -> None:
        pid = pid_from_file(os.path.join(self.dir, f"{what}.pid"))
        if pid:
            stop_pid(pid, self.dir)          # only if its command line names our directory

    def vsctl(self, *args: str) -> str:
        proc = subprocess.run(["ovs-vsctl", f"--db={self.remote}", "--timeout=10", *args],
                              capture_output=True, text=True, timeout=20)
        if proc.returncode:
            raise AssertionError(f"ovs-vsctl {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()

    def get(self, table: str, record: str, column: str):
        return json.loads(self.vsctl("--format=json", f"--columns={column}", "list", table, record))["data"][0][0]

    def weft_txns(self) -> list[str]:
        """The comments of weft's committed transactions, from the database's own log."""
        out = subprocess.run(["ovsdb-tool", "show-log", os.path.join(self.dir, "conf.db")],
                             capture_output=True, text=True, check=True).stdout
        return [line.split('"', 1)[1].rstrip('"') for line in out.splitlines() if '"weft: configure' in line]


@pytest.fixture
def ovs_factory(tmp_path):
    """Makes Ovs instances (each in its own namespace `tsb<pid>n<k>`); stops and deletes everything after."""
    made = []

    def make(start: bool = True) -> Ovs:
        k = next(_count)
        ns = f"tsb{os.getpid()}n{k}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        d = tmp_path / f"o{k}"
        d.mkdir()
        o = Ovs(d, ns)
        made.append(o)
        if start:
            o.start_db()
            o.start_switch()
        return o

    try:
        yield make
    finally:
        for o in made:
            o.stop("vs")
            o.stop("ovsdb")
            subprocess.run(["ip", "netns", "delete", o.ns], capture_output=True)


@pytest.fixture
def managers():
    made = []

    def make(controllers=(CTL,), tunnel="vxlan"):
        seen = []
        m = HostManager(lambda host, b: seen.append((host, b)), list(controllers), tunnel, "netdev")
        m.seen = seen
        m.start()
        made.append(m)
        return m

    try:
        yield make
    finally:
        for m in made:
            m.stop()


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def configured(m, host="hv1", after=0.0):
    st = m.status().get(host, {})
    return st.get("state") == "configured" and (st.get("configured_at") or 0) > after and st


def settle(o: Ovs, m, host="hv1") -> None:
    """Wait until the manager is configured and nothing more is written for a moment."""
    wait_for(lambda: configured(m, host), what=f"{host} configured")
    n = len(o.weft_txns())
    time.sleep(0.5)
    assert len(o.weft_txns()) == n and configured(m, host)


def bridge_config(o: Ovs, bridge: str) -> dict:
    cols = "name,ports,controller,fail_mode,protocols,other_config,external_ids,datapath_type,sflow,netflow,ipfix"
    data = json.loads(o.vsctl("--format=json", f"--columns={cols}", "list", "Bridge", bridge))
    return dict(zip(data["headings"], data["data"][0]))


def test_fresh_host_gets_everything_in_one_transaction(ovs_factory, managers):
    o = ovs_factory()
    o.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
            "other-config:hwaddr=02:00:00:00:00:01", "--", "add-port", "br-phy", "phy0",
            "--", "set", "interface", "phy0", "type=internal")
    phy_before = bridge_config(o, "br-phy")
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", EXPORTERS)
    settle(o, m)
    assert len(o.weft_txns()) == 1, o.weft_txns()
    assert m.status()["hv1"]["attempts"] == 1 and m.status()["hv1"]["error"] is None
    assert o.get("Bridge", "br-int", "fail_mode") == "secure"
    assert o.get("Bridge", "br-int", "datapath_type") == "netdev"
    assert sorted(o.get("Bridge", "br-int", "protocols")[1]) == ["OpenFlow13", "OpenFlow14"]
    assert dict(o.get("Bridge", "br-int", "other_config")[1]) == {
        "datapath-id": f"{datapath_id('hv1'):016x}", "disable-in-band": "true"}
    assert o.vsctl("get-controller", "br-int") == CTL
    # br-int's own interface keeps one MTU whatever the VMs' taps have (no flip at each plug)
    assert o.get("Interface", "br-int", "mtu_request") == hostconfig.LOCAL_MTU
    ctl = json.loads(o.vsctl("--format=json", "--columns=target,max_backoff,inactivity_probe", "list", "Controller"))
    assert ctl["data"] == [[CTL, 1000, 5000]]
    assert o.get("Interface", "weft-tun", "type") == "vxlan"
    assert dict(o.get("Interface", "weft-tun", "options")[1]) == {
        "remote_ip": "flow", "key": "flow", "local_ip": "198.18.0.11", "tos": "inherit"}
    # ovs-vswitchd took it: the tunnel got the ofport weft's flows use
    wait_for(lambda: o.get("Interface", "weft-tun", "ofport") == 60000, what="weft-tun ofport 60000")
    assert sorted(o.vsctl("list-ports", "br-int").split()) == ["weft-tun"]
    sflow = json.loads(o.vsctl("--format=json", "--columns=targets,sampling,polling,header", "list", "sFlow"))
    assert sflow["data"] == [["127.0.0.1:6343", 64, 10, 128]]
    assert o.vsctl("get", "NetFlow", o.get("Bridge", "br-int", "netflow")[1], "engine_id") == "7"
    fscs = json.loads(o.vsctl("--format=json", "--columns=id,ipfix", "list", "Flow_Sample_Collector_Set"))
    assert [row[0] for row in fscs["data"]] == [1]
    assert o.vsctl("get", "IPFIX", fscs["data"][0][1][1], "obs_domain_id") == "1799"
    assert bridge_config(o, "br-phy") == phy_before
    assert sorted(o.vsctl("list-ports", "br-phy").split()) == ["phy0"]


def test_again_changes_nothing_and_changes_only_what_differs(ovs_factory, managers):
    o = ovs_factory()
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", EXPORTERS)
    settle(o, m)
    rows = {kind: o.get("Bridge", "br-int", kind)[1] for kind in ("sflow", "netflow")}
    ctl_uuid = o.get("Bridge", "br-int", "controller")[1]
    m.stop()

    # a restarted controller with the same configuration: configured, no transaction at all
    m2 = managers()
    m2.set_host("hv1", o.remote, "198.18.0.11", EXPORTERS)
    settle(o, m2)
    assert len(o.weft_txns()) == 1 and m2.status()["hv1"]["attempts"] == 0
    m2.set_host("hv1", o.remote, "198.18.0.11", json.loads(json.dumps(EXPORTERS)))   # equal: nothing
    time.sleep(0.3)
    assert len(o.weft_txns()) == 1

    # a new tunnel IP: only the tunnel's options
    t0 = time.time()
    m2.set_host("hv1", o.remote, "198.18.0.99", EXPORTERS)
    wait_for(lambda: configured(m2, after=t0), what="reconfigured")
    settle(o, m2)
    assert o.weft_txns()[1:] == ["weft: configure hv1: tunnel options"]
    assert o.get("Interface", "weft-tun", "options")[1][1] == ["local_ip", "198.18.0.99"]

    # one exporter setting: only that exporter is replaced; the others keep their rows (and sequence numbers)
    changed = json.loads(json.dumps(EXPORTERS))
    changed["sflow"]["sampling"] = 128
    m2.set_host("hv1", o.remote, "198.18.0.99", changed)
    wait_for(lambda: len(o.weft_txns()) == 3, what="the exporter transaction")
    settle(o, m2)
    assert o.weft_txns()[2:] == ["weft: configure hv1: exporter sflow"]
    assert o.get("Bridge", "br-int", "netflow")[1] == rows["netflow"]
    assert o.get("Bridge", "br-int", "sflow")[1] != rows["sflow"]
    assert o.vsctl("get", "sFlow", o.get("Bridge", "br-int", "sflow")[1], "sampling") == "128"

    # exporters None: leave them alone; an exporter turned off is removed
    m2.set_host("hv1", o.remote, "198.18.0.99", None)
    time.sleep(0.3)
    assert len(o.weft_txns()) == 3
    m2.set_host("hv1", o.remote, "198.18.0.99", {**changed, "netflow": None})
    wait_for(lambda: len(o.weft_txns()) == 4, what="the netflow removal")
    settle(o, m2)
    assert o.get("Bridge", "br-int", "netflow") == ["set", []]
    m2.stop()

    # another controller list (weftd restarted with a second target): only the controllers; the kept one stays
    m3 = managers(controllers=(CTL, "tcp:127.0.0.1:6654"))
    m3.set_host("hv1", o.remote, "198.18.0.99", {**changed, "netflow": None})
    wait_for(lambda: len(o.weft_txns()) == 5, what="the controller transaction")
    settle(o, m3)
    assert o.weft_txns()[4:] == ["weft: configure hv1: controllers"]
    assert sorted(o.vsctl("get-controller", "br-int").split()) == [CTL, "tcp:127.0.0.1:6654"]
    assert ctl_uuid in str(o.get("Bridge", "br-int", "controller"))


def test_external_drift_is_corrected(ovs_factory, managers):
    o = ovs_factory()
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", None)
    settle(o, m)
    o.vsctl("set", "bridge", "br-int", "fail_mode=standalone", "other-config:operator=kept")
    wait_for(lambda: len(o.weft_txns()) == 2, what="the correction")
    settle(o, m)
    assert o.weft_txns()[1] == "weft: configure hv1: bridge fail_mode"
    assert o.get("Bridge", "br-int", "fail_mode") == "secure"
    assert dict(o.get("Bridge", "br-int", "other_config")[1])["operator"] == "kept"
    o.vsctl("remove", "interface", "br-int", "mtu_request", str(hostconfig.LOCAL_MTU))
    wait_for(lambda: len(o.weft_txns()) == 3, what="the MTU correction")
    settle(o, m)
    assert o.weft_txns()[2] == "weft: configure hv1: local mtu_request"
    assert o.get("Interface", "br-int", "mtu_request") == hostconfig.LOCAL_MTU


def test_ovsdb_down_at_first_is_configured_when_it_comes_up(ovs_factory, managers):
    o = ovs_factory(start=False)
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", EXPORTERS)
    time.sleep(1.0)
    assert m.status()["hv1"]["state"] == "connecting"
    t0 = time.monotonic()
    o.start_db()
    o.start_switch()
    wait_for(lambda: configured(m), timeout=10, what="configured after the OVSDB came up")
    assert time.monotonic() - t0 < 6.0          # the reconnect backoff is capped at 5 s
    settle(o, m)
    assert len(o.weft_txns()) == 1

    # the OVSDB restarts with an empty database: the reconnect re-checks and configures it again
    o.stop("vs")
    o.stop("ovsdb")
    wait_for(lambda: m.status()["hv1"]["state"] == "connecting", what="connecting after the OVSDB went away")
    o.start_db(fresh=True)
    o.start_switch()
    wait_for(lambda: o.weft_txns(), timeout=10, what="configured again")
    settle(o, m)
    assert o.vsctl("list-ports", "br-int") == "weft-tun"


def test_a_failing_transaction_is_retried_with_backoff(ovs_factory, managers):
    o = ovs_factory()
    # an interface named weft-tun elsewhere: weft's port cannot be added (names are unique)
    o.vsctl("add-br", "br-x", "--", "set", "bridge", "br-x", "datapath_type=netdev",
            "--", "add-port", "br-x", "weft-tun", "--", "set", "interface", "weft-tun", "type=internal")
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", None)
    wait_for(lambda: m.status()["hv1"]["state"] == "failed", what="failed")
    time.sleep(1.5)
    # read between attempts (the one due 1.5 s after the first failure may be in flight)
    wait_for(lambda: m.status()["hv1"]["state"] == "failed", what="failed again")
    st = m.status()["hv1"]
    assert st["state"] == "failed" and "constraint violation" in st["error"], st
    assert 3 <= st["attempts"] <= 8, st          # 0.1, 0.2, 0.4, 0.8 s ...: backoff, not a spin
    o.vsctl("del-br", "br-x")
    wait_for(lambda: configured(m), timeout=8, what="configured after the conflict went away")
    assert o.vsctl("list-ports", "br-int") == "weft-tun"


def test_bindings_pending_then_numbered(ovs_factory, managers):
    o = ovs_factory()
    m = managers()
    m.set_host("hv1", o.remote, "198.18.0.11", None)
    settle(o, m)
    assert m.seen == [("hv1", {})]
    # ovs-vswitchd down: the NIC is in the database without an ofport -> pending (0)
    o.stop("vs")
    o.vsctl("--no-wait", "add-port", "br-int", "vm1", "--", "set", "interface", "vm1", "type=internal",
            "external_ids:iface-id=port-x")
    wait_for(lambda: m.seen[-1] == ("hv1", {"port-x": (0, "vm1")}), what="pending binding")
    o.start_switch()
    ofport = wait_for(lambda: m.seen[-1][1].get("port-x", (0,))[0], what="numbered binding")
    assert m.seen[-1] == ("hv1", {"port-x": (ofport, "vm1")}) and ofport > 0
    assert int(o.get("Interface", "vm1", "ofport")) == ofport
    # a NIC ovs-vswitchd cannot open (ofport -1) is not bound (it may show as pending until
    # vswitchd has tried); a set that did not change is never reported twice in a row
    o.vsctl("add-port", "br-int", "nosuch0", "--", "set", "interface", "nosuch0", "type=system",
            "external_ids:iface-id=port-y")
    wait_for(lambda: o.get("Interface", "nosuch0", "ofport") == -1, what="ofport -1")
    wait_for(lambda: m.seen[-1] == ("hv1", {"port-x": (ofport, "vm1")}), what="port-y not bound")
    time.sleep(0.3)
    assert m.seen[-1] == ("hv1", {"port-x": (ofport, "vm1")})
    assert all(a != b for a, b in zip(m.seen, m.seen[1:])), m.seen
    # weft's own configuration left the VM's port alone
    assert sorted(o.vsctl("list-ports", "br-int").split()) == ["nosuch0", "vm1", "weft-tun"]
    assert len(o.weft_txns()) == 1
    o.vsctl("del-port", "br-int", "vm1")
    wait_for(lambda: m.seen[-1] == ("hv1", {}), what="unbound")


def test_many_hosts_one_thread_and_remove(ovs_factory, managers):
    hosts = {f"hv{k}": ovs_factory() for k in (1, 2, 3)}
    before = threading.active_count()
    m = managers()
    for name, o in hosts.items():
        m.set_host(name, o.remote, f"198.18.0.{10 + int(name[2:])}", None)
    for name, o in hosts.items():
        settle(o, m, name)
        assert o.get("Bridge", "br-int", "other_config")[1][0] == ["datapath-id", f"{datapath_id(name):016x}"]
    assert threading.active_count() == before + 1
    m.remove_host("hv2")
    assert set(m.status()) == {"hv1", "hv3"}
