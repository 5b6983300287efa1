"""Light VMs (lab/lightvm.py) on a real lab: own MAC and address, journalled, and the real-host scale bench end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _python(lab: Lab, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=lab.env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_light_vms_have_their_own_stack_and_go_with_lab_down():
    lab = Lab(f"lv{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        specs = [{"name": "a", "host": "hv1", "mac": "fa:16:3e:00:00:01", "ip": "10.0.0.5/24"},
                 {"name": "b", "host": "hv2", "mac": "fa:16:3e:00:00:02", "ip": "10.0.0.5/24"}]
        _python(lab, f"from lab import lightvm; lightvm.create({specs!r})")
        for spec in specs:           # the same address in two VMs: each has a stack of its own
            link = json.loads(lab.exec(spec["name"], "ip", "-j", "addr", "show", "eth0").stdout)[0]
            assert link["address"] == spec["mac"]
            assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] \
                == [("10.0.0.5", 24)]
        status = lab.json("lab", "status")
        assert sorted(v["name"] for v in status["vms"]) == ["a", "b"]
        # a created VM already exists: refused, nothing changed
        proc = subprocess.run([sys.executable, "-c", f"from lab import lightvm; lightvm.create({specs[:1]!r})"],
                              cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "already exists" in proc.stderr
        assert f"{lab.name}-vm-a" in lab.namespaces()
    finally:
        lab.down()
    assert lab.namespaces() == [] and lab.processes() == []


def test_real_host_scale_bench_pings_as_allowed_and_isolates_tenants():
    """bench_scale.py --real-hosts on 2 hosts, 8 light VMs of 2 tenants with overlapping
    addresses: every host's flows equal the compiled ones, the allowed pairs answer and the
    security-group-denied and cross-tenant pairs do not; the lab is gone afterwards."""
    lab = Lab(f"lb{os.getpid() % 100000}")
    lab.down()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--real-hosts", "2",
                               "--vms", "8", "--tenants", "2", "--pairs", "12", "--converge-timeout", "60"],
                              cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        last = proc.stdout.strip().splitlines()[-1]
        assert last.startswith("scale real_hosts=2 vms=8 converge_s=") and "converge_s=nan" not in last, proc.stdout
        assert last.endswith("ping_pairs_ok=12/12"), proc.stdout
        assert "allowed 6/6, sg-denied 3/3, cross-tenant 3/3" in proc.stdout
    finally:
        lab.down()
    assert lab.namespaces() == [] and lab.processes() == []
