"""Flow history across a weftd restart: the lab's sFlow traffic is still reported, once, afterwards."""
import glob
import os
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration

VMS = {"r1": ("hv1", "10.0.0.11"), "r2": ("hv2", "10.0.0.12")}
PAIR = ("red/net/r1", "red/net/r2")


def pair_rows(rows):
    return {(r["src"], r["dst"]): r for r in rows}


def wait_stable(read, timeout=60.0):
    """The reading once it has both the pair and stayed the same for 3 s (late samples in)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif PAIR in now and time.monotonic() - since >= 3.0:
            return now
        time.sleep(0.5)
    raise AssertionError(f"traffic did not settle: {last}")


@pytest.fixture(scope="module")
def hlab():
    lab = Lab(f"h{os.getpid() % 100000}")
    lab.down()
    try:
        lab.weft("lab", "up", "--hosts", "2")
        lab.weft("traffic", "config", "--sflow-sampling", "2")
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for name, (host, ip) in VMS.items():
            lab.weft("port", "create", f"red/net/{name}", "--ip", ip)
            lab.weft("lab", "vm", "create", name, "--host", host, "--port", f"red/net/{name}")
        yield lab
    finally:
        lab.down()


def test_bad_retention_is_refused_in_one_line_and_changes_nothing(hlab):
    lab = hlab
    before = lab.json("traffic", "config")
    assert before["retention"] == "7d"
    for bad in ("7x", "30m", "0d", "9999d", "7 d"):
        proc = lab.weft("traffic", "config", "--retention", bad, "--sflow-sampling", "3", check=False)
        assert proc.returncode != 0
        assert proc.stderr.strip().count("\n") == 0 and "retention" in proc.stderr, proc.stderr
        assert lab.json("traffic", "config") == before
    assert lab.json("traffic", "config", "--retention", "36h")["retention"] == "36h"
    assert lab.json("traffic", "config")["retention"] == "36h"


def test_weftd_restarted_after_traffic_still_reports_it_once(hlab):
    lab = hlab
    ping = lab.exec("r1", "ping", "-c", "100", "-i", "0.02", "-s", "1000", VMS["r2"][1])
    assert ping.returncode == 0, ping.stdout + ping.stderr

    def read():
        return {k: v["bytes"] for k, v in pair_rows(lab.json("traffic", "matrix", "--since", "1h")).items()}
    matrix = wait_stable(read)
    flows = {(r["src"], r["dst"], r["proto"]): r["bytes"]
             for r in lab.json("traffic", "flows", "--since", "1h")}
    assert matrix[PAIR] > 100 * 1000 / 2 * 0.5        # 100 pings sampled 1 in 2, with slack
    assert flows[PAIR + ("icmp",)] == matrix[PAIR]

    lab.weft("lab", "controller", "restart")
    history = glob.glob(os.path.join(lab.dir, "ctl", "history", "flows", "date=*", "hour=*",
                                     "*.parquet"))
    assert history, "weftd wrote no flow history at stop"
    assert os.path.isdir(os.path.join(lab.dir, "ctl", "history", "templates", "ipfix"))

    after = pair_rows(lab.json("traffic", "matrix", "--since", "1h"))
    # the same traffic, from disk; counted twice would be 2x (an ARP refresh may add a little)
    assert matrix[PAIR] <= after[PAIR]["bytes"] < 1.5 * matrix[PAIR]
    after_flows = {(r["src"], r["dst"], r["proto"]): r["bytes"]
                   for r in lab.json("traffic", "flows", "--since", "1h")}
    assert matrix[PAIR] <= after_flows[PAIR + ("icmp",)] < 1.5 * matrix[PAIR]
    assert after[PAIR]["src_tenant"] == "red" and after[PAIR]["first_seen"] < time.time() - 1

    # new traffic after the restart adds to what is on disk
    ping = lab.exec("r1", "ping", "-c", "100", "-i", "0.02", "-s", "1000", VMS["r2"][1])
    assert ping.returncode == 0
    grown = wait_stable(read)
    assert grown[PAIR] > after[PAIR]["bytes"] + 100 * 1000 / 2 * 0.5
    assert grown[PAIR] < 2.5 * matrix[PAIR]
    tenants = pair_rows(lab.json("traffic", "matrix", "--since", "1h", "--by", "tenant"))
    assert tenants[("red", "red")]["bytes"] >= grown[PAIR]
