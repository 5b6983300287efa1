"""HA failover times on `weft lab up --ha --hosts 2`: kill -9 of the active weftd, of the northbound Raft leader.

Lab "benchfo" in /run/weft-bench: 3 northbound members, 2 weftd replicas, v1 on hv1 and v2 on
hv2; v1 pings v2 every 10 ms (400 pings, -W 1) through each kill. Per round:

* weftd: kill -9 of the active replica -> the standby is master on every switch (the latest
  `master_at` in its /v1/status, the wall-clock time of the switch's role reply); the killed
  replica is started again (as the standby) before the next round;
* northbound: a writer creates a port every ~10 ms through both replicas' APIs; kill -9 of
  the Raft leader -> the first acknowledged write of a request sent after the kill; the
  killed member is started again and rejoins before the next round.

* host: kill -9 of hv2's ovs-vswitchd, started again at once -> the first echo reply after its
  start (weftd reconciles its empty table as it reconnects).

Prints each round, then `failover weftd_s=X nb_leader_s=Y lost_pings=Z vswitchd_restart_s=V`
(medians over the rounds; lost_pings over the weftd and northbound kills). Needs root. Leaves nothing behind.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchlab import RUN_DIR, BenchLab  # noqa: E402
from controller.client import Client  # noqa: E402
from topology.errors import WeftError  # noqa: E402

PINGS = 400


def members(lab: BenchLab) -> list[dict]:
    import json
    return json.loads(lab.weft("cluster", "status", "-o", "json"))


def one(lab: BenchLab, kind: str, role: str) -> dict:
    found = [m for m in members(lab) if m["kind"] == kind and m["role"] == role]
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} {role}: {members(lab)}")
    return found[0]


def replica(lab: BenchLab, name: str) -> Client:
    return Client(f"unix:{lab.dir}/{name}.sock", timeout=5)


class Pinger:
    def __init__(self, lab: BenchLab):
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.state()["vms"]["v1"]["ns"], "ping",
                                      "-i", "0.01", "-c", str(PINGS), "-W", "1", "10.0.0.12"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def lost(self) -> int:
        try:
            out, _ = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        m = re.search(r"(\d+) received", out)
        if not m:
            raise SystemExit(f"no ping summary: {out[-300:]}")
        return PINGS - int(m.group(1))


def weftd_round(lab: BenchLab) -> tuple[float, int]:
    active, standby = one(lab, "weftd", "active"), one(lab, "weftd", "standby")
    pinger = Pinger(lab)
    time.sleep(1)
    killed = time.time()
    os.kill(active["pid"], signal.SIGKILL)
    client = replica(lab, standby["name"])
    while True:
        try:
            hosts = client.get("/v1/status")["hosts"].values()
            if all(h.get("of_role") == "master" and h.get("master_at") for h in hosts):
                break
        except WeftError:
            pass
        if time.time() - killed > 30:
            raise SystemExit("the standby did not take over within 30 s")
        time.sleep(0.01)
    took = max(h["master_at"] for h in hosts) - killed
    lost = pinger.lost()
    lab.weft("lab", "controller", "start", "--replica", active["name"])
    return took, lost


class Writer(threading.Thread):
    def __init__(self, lab: BenchLab, prefix: str):
        super().__init__(daemon=True)
        self.client = Client(f"unix:{lab.dir}/weftd.sock,unix:{lab.dir}/weftd2.sock", timeout=5)
        self.prefix, self.stop = prefix, threading.Event()
        self.acks: list[tuple[float, float]] = []      # (sent, answered), epoch seconds

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            sent = time.time()
            try:
                self.client.post("/v1/ports", {"tenant": "red", "network": "net",
                                               "name": f"{self.prefix}{i}"})
                self.acks.append((sent, time.time()))
                i += 1
            except WeftError as exc:
                if exc.status == 409:           # an unanswered attempt had been committed
                    i += 1
            time.sleep(0.01)


def nb_round(lab: BenchLab, k: int) -> tuple[float, int]:
    from ovsdb import nbcluster
    leader = one(lab, "nb", "leader")
    pinger = Pinger(lab)
    writer = Writer(lab, f"b{k}x")
    writer.start()
    time.sleep(1)
    killed = time.time()
    os.kill(leader["pid"], signal.SIGKILL)
    while not any(sent > killed for sent, _ in writer.acks):
        if time.time() - killed > 30:
            raise SystemExit("no write acknowledged within 30 s of the kill")
        time.sleep(0.01)
    took = min(done for sent, done in writer.acks if sent > killed) - killed
    writer.stop.set()
    writer.join()
    lost = pinger.lost()
    from lab.services import nb_members
    from lab.state import LabPaths
    member = next(m for m in nb_members(LabPaths(lab.env["WEFT_LAB"], RUN_DIR)) if m.name == leader["name"])
    nbcluster.start(member, lab.env["WEFT_LAB"] + "-mgmt")
    deadline = time.time() + 30
    while nbcluster.status(member).get("status") != "cluster member":
        if time.time() > deadline:
            raise SystemExit(f"{member.name} did not rejoin")
        time.sleep(0.1)
    return took, lost


def vswitchd_round(lab: BenchLab) -> tuple[float, int]:
    """kill -9 of hv2's ovs-vswitchd, started again at once: seconds from its start to the
    first echo reply (ping -D timestamps), and the pings lost over the whole round."""
    from lab.ovs import HostSwitch
    hv2 = lab.state()["hosts"]["hv2"]
    pinger = subprocess.Popen(["ip", "netns", "exec", lab.state()["vms"]["v1"]["ns"], "ping", "-D",
                               "-i", "0.01", "-c", str(PINGS), "-W", "1", "10.0.0.12"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    pid = int(open(os.path.join(hv2["dir"], "vs.pid")).read())
    os.kill(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.005)
    started = time.time()
    HostSwitch(hv2["ns"], hv2["dir"]).start_vswitchd()
    out, _ = pinger.communicate(timeout=120)
    replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    after = [t for t in replies if t > started]
    if not after:
        raise SystemExit(f"no reply after ovs-vswitchd restarted: {out[-300:]}")
    received = re.search(r"(\d+) received", out)
    return after[0] - started, PINGS - int(received.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lab = BenchLab("benchfo")
    if lab.exists():
        lab.weft("lab", "down")
    lab.weft("lab", "up", "--ha", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("v1", "hv1", "10.0.0.11"), ("v2", "hv2", "10.0.0.12")):
            lab.weft("port", "create", f"red/net/{vm}", "--ip", ip)
            lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        time.sleep(1)
        weftd_s, nb_s, vs_s, lost = [], [], [], []
        for k in range(args.rounds):
            took, l1 = weftd_round(lab)
            weftd_s.append(took)
            lost.append(l1)
            took2, l2 = nb_round(lab, k)
            nb_s.append(took2)
            lost.append(l2)
            took3, l3 = vswitchd_round(lab)
            vs_s.append(took3)
            print(f"round {k + 1}: weftd {took:.3f} s ({l1} lost), nb leader {took2:.3f} s ({l2} lost), "
                  f"host ovs-vswitchd restart -> traffic {took3:.3f} s ({l3} lost while it was down)",
                  flush=True)
        print(f"failover weftd_s={statistics.median(weftd_s):.3f} nb_leader_s={statistics.median(nb_s):.3f} "
              f"lost_pings={statistics.median(lost):g} vswitchd_restart_s={statistics.median(vs_s):.3f}")
    finally:
        lab.weft("lab", "down", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
