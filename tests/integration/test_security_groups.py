"""Security groups on the lab: a three-tier tenant probed over a full matrix, live rule changes, tenants."""
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
TCP_PORTS, UDP_PORTS = (80, 8080, 5432), (5353,)
PROBES = [("tcp", 80), ("tcp", 8080), ("tcp", 5432), ("udp", 5353), ("icmp", 0)]

# group: [(direction, proto, port, remote)]   remote: "sg:NAME" or a CIDR
GROUPS = {
    "client": [("egress", "any", None, "0.0.0.0/0")],
    "web": [("ingress", "tcp", 80, "0.0.0.0/0"), ("egress", "tcp", 8080, "sg:app"),
            ("egress", "icmp", None, "0.0.0.0/0")],
    "app": [("ingress", "tcp", 8080, "sg:web"), ("ingress", "icmp", None, "sg:web"),
            ("egress", "tcp", 5432, "sg:db"), ("egress", "udp", 5353, "sg:db")],
    "db": [("ingress", "tcp", 5432, "sg:app"), ("ingress", "udp", 5353, "sg:app")],
}
# vm: (host, ip, group)
VMS = {"client": ("hv1", "10.0.0.10", "client"), "web1": ("hv1", "10.0.0.11", "web"),
       "web2": ("hv2", "10.0.0.12", "web"), "app1": ("hv2", "10.0.0.21", "app"),
       "app2": ("hv3", "10.0.0.22", "app"), "db1": ("hv3", "10.0.0.31", "db")}


def allowed(src: str, dst: str, proto: str, port: int) -> bool:
    """The expected answer, from the rules above (AWS semantics: egress of src AND ingress of dst)."""
    def admits(group, direction, peer):
        for d, p, prt, remote in GROUPS[group]:
            if d != direction or p not in ("any", proto) or (prt is not None and prt != port):
                continue
            if remote.startswith("sg:"):
                if VMS[peer][2] == remote[3:]:
                    return True
            else:
                return True        # 0.0.0.0/0
        return False
    return admits(VMS[src][2], "egress", dst) and admits(VMS[dst][2], "ingress", src)


def add_rule(lab, tenant, group, direction, proto, port, remote) -> str:
    args = ["sg", "rule", "add", f"{tenant}/{group}", "--direction", direction, "--proto", proto]
    if port is not None:
        args += ["--port", str(port)]
    args += ["--remote-sg", f"{tenant}/{remote[3:]}"] if remote.startswith("sg:") else ["--remote-cidr", remote]
    return lab.json(*args)["id"]


@pytest.fixture(scope="module")
def sglab():
    lab = Lab(f"g{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "3")
    servers = []
    try:
        for tenant in ("red", "blue"):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
            for group in GROUPS:
                lab.weft("sg", "create", f"{tenant}/{group}")
            for group, rules in GROUPS.items():
                for r in rules:
                    add_rule(lab, tenant, group, *r)
        for tenant, vms in (("red", VMS), ("blue", {"bclient": ("hv2", "10.0.0.10", "client"),
                                                   "bapp": ("hv1", "10.0.0.21", "app"),
                                                   "bweb": ("hv2", "10.0.0.50", "web")})):
            for vm, (host, ip, group) in vms.items():
                lab.weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip, "--sg", f"{tenant}/{group}")
                lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
                servers.append(subprocess.Popen(
                    [lab.weft_path, "lab", "exec", vm, "--", PY, PROBE, "serve",
                     ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))],
                    env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        for s in servers:
            assert s.stdout.readline().strip() == "ready"
        yield lab
    finally:
        for s in servers:
            s.kill()
            s.wait()
        lab.down()



def test_full_matrix_connects_exactly_what_the_rules_allow(sglab):
    wrong = []
    for src in VMS:
        targets = [(VMS[dst][1], proto, port) for dst in VMS if dst != src for proto, port in PROBES]
        results = iter(probe(sglab, src, targets))
        for dst in VMS:
            if dst == src:
                continue
            for proto, port in PROBES:
                got, want = next(results), allowed(src, dst, proto, port)
                if got != want:
                    wrong.append(f"{src}->{dst} {proto}/{port}: {'open' if got else 'blocked'}, "
                                 f"expected {'open' if want else 'blocked'}")
    assert not wrong, "\n".join(wrong)
    # the matrix is not trivial: both outcomes occur
    outcomes = {allowed(s, d, p, n) for s in VMS for d in VMS if s != d for p, n in PROBES}
    assert outcomes == {True, False}


def test_the_reply_side_cannot_open_what_the_rules_do_not_allow(sglab):
    # web1 -> app1:8080 is allowed; app1 -> web1:8080 (the "reply" direction, as new) is not
    assert probe(sglab, "web1", [("10.0.0.21", "tcp", 8080)]) == [True]
    assert probe(sglab, "app1", [("10.0.0.11", "tcp", 8080), ("10.0.0.12", "tcp", 8080)]) == [False, False]


def test_identical_groups_of_another_tenant_admit_nothing(sglab):
    # blue's client may send anything and red web's 80 is open to 0.0.0.0/0: tenants still never meet
    assert probe(sglab, "bclient", [("10.0.0.11", "tcp", 80), ("10.0.0.12", "tcp", 80)]) == [False, False]
    # blue's web (named like red's) reaches blue's app, which holds red app1's address ...
    assert probe(sglab, "bweb", [("10.0.0.21", "tcp", 8080)]) == [True]
    # ... while red app1, on bweb's very host, admits from red's web members only: no flow of its
    # ingress table names bweb's address, which only blue's `web` group contains
    rows = sglab.json("flows", "hv2")
    ingress = [r for r in rows if r["table"] == 46]
    assert any("ipv4_src=10.0.0.11" in r["match"] for r in ingress)      # red web1, a real member
    assert not [r for r in ingress if "ipv4_src=10.0.0.50" in r["match"]]


def test_removing_a_rule_stops_a_running_stream_and_adding_it_back_allows_new(sglab):
    # a rule of its own for the stream: web -> app on 8081
    extra = add_rule(sglab, "red", "app", "ingress", "tcp", 8081, "sg:web")
    extra_egress = add_rule(sglab, "red", "web", "egress", "tcp", 8081, "sg:app")
    sink = subprocess.Popen([sglab.weft_path, "lab", "exec", "app1", "--", PY, PROBE, "sink", "8081"],
                            env=sglab.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sender = None
    try:
        assert sink.stdout.readline().strip() == "ready"
        sender = subprocess.Popen([sglab.weft_path, "lab", "exec", "web1", "--", PY, PROBE, "stream",
                                   "10.0.0.21", "8081", "5"], env=sglab.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        early, deadline = [], time.time() + 30      # cut once the stream flows (a loaded machine
        while time.time() < deadline:               # may take seconds to start the sender)
            line = sink.stdout.readline()
            if not line:
                break
            early.append(line)
            if int(line.split()[1]) > 1_000_000:
                break
        cut_at = time.time()
        sglab.weft("sg", "rule", "delete", "red/app", extra)
        sender.wait(timeout=30)
        sink.kill()
        out, _ = sink.communicate(timeout=10)
        lines = early + out.split("\n")
        samples = [(float(t), int(b)) for t, b in (line.split() for line in lines if line.strip())]
        # what was read before the cut came before it (the sink's times are rounded to the ms:
        # the last line read may carry a time a fraction of a ms after cut_at)
        before = [int(line.split()[1]) for line in early]
        settled = [b for t, b in samples if t > cut_at + 1.0]
        assert before and before[-1] > 1_000_000, samples[:5]          # the stream was flowing
        assert settled and settled[-1] == settled[0], f"still flowing 1 s after the cut: {samples}"
    finally:
        for proc in (sink, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        sglab.weft("sg", "rule", "delete", "red/web", extra_egress, check=False)
        sglab.weft("sg", "rule", "delete", "red/app", extra, check=False)
    assert probe(sglab, "web1", [("10.0.0.21", "tcp", 8080)]) == [True]     # other rules untouched
    again = add_rule(sglab, "red", "app", "ingress", "tcp", 5432, "sg:web")
    try:     # adding a rule back allows new connections (web may send 5432? no: web egress lacks it)
        assert probe(sglab, "web1", [("10.0.0.21", "tcp", 5432)]) == [False]
        egress = add_rule(sglab, "red", "web", "egress", "tcp", 5432, "sg:app")
        assert probe(sglab, "web1", [("10.0.0.21", "tcp", 5432)]) == [True]
        sglab.weft("sg", "rule", "delete", "red/web", egress)
    finally:
        sglab.weft("sg", "rule", "delete", "red/app", again)


def test_adding_a_rule_opens_new_connections_immediately(sglab):
    assert probe(sglab, "client", [("10.0.0.31", "tcp", 5432)]) == [False]
    rid = add_rule(sglab, "red", "db", "ingress", "tcp", 5432, "sg:client")
    try:
        assert probe(sglab, "client", [("10.0.0.31", "tcp", 5432)]) == [True]
    finally:
        sglab.weft("sg", "rule", "delete", "red/db", rid)
    assert probe(sglab, "client", [("10.0.0.31", "tcp", 5432)]) == [False]


def test_flows_name_their_group_and_rule(sglab):
    text = sglab.weft("flows", "hv3").stdout
    assert "[acl: rule " in text and "of red/db]" in text
