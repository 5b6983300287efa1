"""Time `weft lab up --hosts N` (and `down`) end to end, as a user runs it, and weftd's share of it: medians of several runs.

The last line is `lab_up hosts=N total_s=X controller_s=Y`: X is `weft lab up` end to end; Y runs
from the moment the last hypervisor's Open vSwitch is up (the lab journals `ovs_up_at` per host)
to every host configured and reconciled by weftd: the latest of the per-host `reconciled_at` of
`GET /v1/status` and of weftd's HostManager "host hvN configured" log lines (else the lab's
`in_sync_at`: when `weft lab up` saw them all reconciled, polling every 20 ms); -v also prints
where that time went. The lab is WEFT_LAB (default benchup) under WEFT_RUN_DIR (default
/run/weft-bench); `weft lab down` runs after every run, and on any failure or signal.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controller.client import Client  # noqa: E402

WEFT = str(Path(sys.executable).parent / "weft")


def _log_time(line: str) -> float:
    """Epoch seconds of a weftd log line ("2024-01-02 03:04:05,678 INFO ...", local time)."""
    return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000


def configured_times(log: str) -> dict[str, float]:
    """When weftd's HostManager last reported each host configured ("host hvN configured (...)")."""
    found = {}
    with open(log, errors="replace") as f:
        for line in f:
            words = line.split()
            if len(words) >= 7 and words[4] == "host" and words[6] == "configured":
                found[words[5]] = _log_time(line)
    return found


STEPS = (("planned", re.compile(r"southbound: host (hv\d+): ")),      # its first configuration transaction
         ("configured", re.compile(r"host (hv\d+) configured")),
         ("admitted", re.compile(r"admitted: (hv\d+) ")),             # its OpenFlow connection
         ("bundle", re.compile(r"engine: (hv\d+): bundle ")))         # its first flows sent


def timeline(log: str) -> dict[str, dict[str, float]]:
    """{host: {step: epoch seconds of its first log line}} for the STEPS of weftd's log."""
    found: dict[str, dict[str, float]] = {}
    with open(log, errors="replace") as f:
        for line in f:
            for step, rx in STEPS:
                m = rx.search(line)
                if m:
                    found.setdefault(m.group(1), {}).setdefault(step, _log_time(line))
    return found


def where(state: dict, reconciled: dict, log: str) -> str:
    """Each step's median and max over the hosts (s after the host's own OVS was up), and the
    steps of the host weftd reconciled last."""
    steps = timeline(log)
    rows = {h: {**{k: v - info["ovs_up_at"] for k, v in steps.get(h, {}).items()},
                **({"reconciled": reconciled[h] - info["ovs_up_at"]} if reconciled.get(h) else {})}
            for h, info in state["hosts"].items()}
    names = [s for s, _ in STEPS] + ["reconciled"]
    parts = []
    for step in names:
        v = [r[step] for r in rows.values() if step in r]
        if v:
            parts.append(f"{step} {statistics.median(v):.2f}/{max(v):.2f}")
    last = max(rows, key=lambda h: rows[h].get("reconciled", 0))
    return (f"  per host, s after its OVS was up (median/max): {', '.join(parts)}\n"
            f"  reconciled last: {last}: " + ", ".join(f"{k} +{v:.2f}" for k, v in rows[last].items()) + "\n")


def controller_share(env: dict, verbose: bool = False) -> tuple[float, str]:
    """(seconds from the last OVS up to every host configured and reconciled, which clock said so)."""
    lab_dir = os.path.join(env["WEFT_RUN_DIR"], env["WEFT_LAB"])
    with open(os.path.join(lab_dir, "state.json")) as f:
        state = json.load(f)
    ovs_up = max(h["ovs_up_at"] for h in state["hosts"].values())
    svc = state["services"]["weftd"]
    hosts = Client("unix:" + svc["api"], timeout=10).get("/v1/status")["hosts"]
    reconciled = {name: hosts.get(name, {}).get("reconciled_at") for name in state["hosts"]}
    configured = configured_times(svc["log"])
    missing = sorted(set(state["hosts"]) - set(configured))
    if missing:
        raise SystemExit(f"weftd never reported these hosts configured: {', '.join(missing[:10])}")
    if verbose:
        first_ovs = min(h["ovs_up_at"] for h in state["hosts"].values())
        sys.stderr.write(f"  first OVS up {first_ovs - ovs_up:+.2f} s, last OVS up 0, "
                         f"last configured {max(configured.values()) - ovs_up:+.2f} s, "
                         f"last reconciled {max(filter(None, reconciled.values()), default=0) - ovs_up:+.2f} s, "
                         f"lab saw all in sync {svc['in_sync_at'] - ovs_up:+.2f} s\n")
        sys.stderr.write(where(state, reconciled, svc["log"]))
    if all(reconciled.values()):
        return max(max(reconciled.values()), max(configured.values())) - ovs_up, "weftd reconciled_at"
    return svc["in_sync_at"] - ovs_up, "lab in_sync_at"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per run on stderr")
    args = ap.parse_args()
    env = {**os.environ, "WEFT_LAB": os.environ.get("WEFT_LAB", "benchup"),
           "WEFT_RUN_DIR": os.environ.get("WEFT_RUN_DIR", "/run/weft-bench")}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # unwind through the lab down below
    subprocess.run([WEFT, "lab", "down"], env=env, capture_output=True)
    ups, downs, ctl, source = [], [], [], ""
    for run in range(args.runs):
        try:
            t0 = time.monotonic()
            proc = subprocess.run([WEFT, "lab", "up", "--hosts", str(args.hosts)], env=env,
                                  capture_output=True, text=True)
            t1 = time.monotonic()
            if proc.returncode != 0:
                raise SystemExit(f"weft lab up --hosts {args.hosts} failed (run {run + 1}): {proc.stderr.strip()}")
            share, source = controller_share(env, args.verbose)
        finally:
            t2 = time.monotonic()
            down = subprocess.run([WEFT, "lab", "down"], env=env, capture_output=True, text=True)
            t3 = time.monotonic()
            if down.returncode != 0:
                sys.stderr.write(f"weft lab down failed: {down.stderr.strip()}\n")
        ups.append(t1 - t0)
        downs.append(t3 - t2)
        ctl.append(share)
        if args.verbose:
            sys.stderr.write(f"run {run + 1}: up {t1 - t0:.2f} s, controller {share:.2f} s ({source}), "
                             f"down {t3 - t2:.2f} s\n")
    print(f"weft lab up --hosts {args.hosts}: median {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f}, {args.runs} runs)")
    print(f"weft lab down:          median {statistics.median(downs):.2f} s "
          f"(min {min(downs):.2f}, max {max(downs):.2f})")
    print(f"lab_up hosts={args.hosts} total_s={statistics.median(ups):.2f} "
          f"controller_s={statistics.median(ctl):.2f}")


if __name__ == "__main__":
    main()
