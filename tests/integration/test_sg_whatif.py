"""`weft sg what-if` on the three-tier example: after real traffic (sFlow sampling every packet),
the what-if of deleting rules lists exactly the connections that the real deletion then blocks,
checked by probing every VM pair before and after; the what-if itself changes nothing."""
import os
import subprocess
import sys
import time

import pytest

from tests.labtools import Lab
from test_security_groups import GROUPS, PROBE, PROBES, TCP_PORTS, UDP_PORTS, VMS, add_rule, probe

pytestmark = pytest.mark.integration
PY = sys.executable
REF = {vm: f"red/net/{vm}" for vm in VMS}


@pytest.fixture(scope="module")
def wlab():
    lab = Lab(f"w{os.getpid() % 100000}")
    lab.down()
    servers = []
    try:
        lab.weft("lab", "up", "--hosts", "3")
        lab.weft("traffic", "config", "--sflow-sampling", "1")
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for group in GROUPS:
            lab.weft("sg", "create", f"red/{group}")
        ids = {(group, r): add_rule(lab, "red", group, *r) for group, rules in GROUPS.items() for r in rules}
        for vm, (host, ip, group) in VMS.items():
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip, "--sg", f"red/{group}")
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
            servers.append(subprocess.Popen(
                [lab.weft_path, "lab", "exec", vm, "--", PY, PROBE, "serve",
                 ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))],
                env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        for s in servers:
            assert s.stdout.readline().strip() == "ready"
        yield lab, ids
    finally:
        for s in servers:
            s.kill()
            s.wait()
        lab.down()


def reachability(lab) -> dict:
    """{(client ref, server ref, proto, port or None): connected} over every pair and probe."""
    out = {}
    for src in VMS:
        dsts = [d for d in VMS if d != src]
        results = iter(probe(lab, src, [(VMS[d][1], proto, port) for d in dsts for proto, port in PROBES]))
        for dst in dsts:
            for proto, port in PROBES:
                out[(REF[src], REF[dst], proto, port or None)] = next(results)
    return out


def observed(lab) -> set:
    """The connections the collectors saw, keyed like reachability()."""
    seen = set()
    for r in lab.json("traffic", "flows", "--tenant", "red"):
        if r["proto"] in ("tcp", "udp"):
            client, server = (r["src"], r["dst"]) if r["to_server"] else (r["dst"], r["src"])
            seen.add((client, server, r["proto"], r["port"]))
        elif r["proto"] == "icmp":
            seen.add((r["src"], r["dst"], "icmp", None))
    return seen


def test_what_if_lists_exactly_what_the_real_deletion_blocks(wlab):
    lab, ids = wlab
    before = reachability(lab)
    connected = {k for k, ok in before.items() if ok}
    assert len(connected) >= 8 and len(connected) < len(before)
    deadline = time.monotonic() + 30            # every connection that went through was seen
    while not connected <= (seen := observed(lab)):
        assert time.monotonic() < deadline, sorted(connected - seen)
        time.sleep(0.5)
    # app: in from web on tcp/8080 and icmp (web -> app pings and connections)
    rules = [ids[("app", ("ingress", "tcp", 8080, "sg:web"))], ids[("app", ("ingress", "icmp", None, "sg:web"))]]
    args = ["sg", "what-if", "red/app", "--since", "10m"] + [a for r in rules for a in ("--delete-rule", r)]
    answer = lab.json(*args)
    listed = {(c["client"], c["server"], c["proto"], c["port"]) for c in answer["blocked"]}
    assert answer["allowed"] == [] and answer["connections"] >= len(connected)
    assert all(c["bytes"] > 0 and not c["after"]["allowed"] and "red/app" in c["after"]["reason"]
               for c in answer["blocked"])
    table = lab.weft(*args).stdout
    assert f"would become BLOCKED: {len(listed)}" in table and "red/net/web1" in table
    # the what-if changed nothing: the rules are there and traffic still passes
    assert set(rules) <= {r["id"] for r in lab.json("sg", "show", "red/app")["rules"]}
    assert probe(lab, "web1", [(VMS["app1"][1], "tcp", 8080)]) == [True]

    for rule in rules:
        lab.weft("--wait", "sg", "rule", "delete", "red/app", rule)
    after = reachability(lab)
    blocked = {k for k in before if before[k] and not after[k]}
    assert listed == blocked, (sorted(listed - blocked), sorted(blocked - listed))
    # web1/web2 -> app1/app2 on tcp/8080 and icmp: 8 connections, and nothing newly open
    assert len(blocked) == 8 and not any(after[k] and not before[k] for k in before)


def test_what_if_refuses_bad_input_and_changes_nothing(wlab):
    lab, ids = wlab
    before = lab.json("sg", "show", "red/db")
    for args, message in ((["--delete-rule", "no-such-rule"], "has no rule no-such-rule"),
                          ([], "nothing to try"),
                          (["--proto", "tcp"], "give --add-rule too"),
                          (["--add-rule", "--direction", "ingress", "--proto", "tcp", "--port", "5432",
                            "--remote-sg", "red/app"], "already has this rule"),
                          (["--add-rule", "--direction", "ingress", "--remote-sg", "red/nope"],
                           "no security group red/nope"),
                          (["--delete-rule", ids[("db", ("ingress", "tcp", 5432, "sg:app"))], "--since", "1x"],
                           "invalid --since")):
        r = lab.weft("sg", "what-if", "red/db", *args, check=False)
        assert r.returncode != 0 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
            (args, r.stderr)
    assert lab.json("sg", "show", "red/db") == before
