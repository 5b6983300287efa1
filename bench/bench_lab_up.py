"""Time `weft lab up --hosts N` (and `down`) end to end, as a user runs it, and weftd's share of it: medians of several runs.

The last line is `lab_up hosts=N total_s=X controller_s=Y`: X is `weft lab up` end to end; Y runs
from the moment the last hypervisor's Open vSwitch is up (the lab journals `ovs_up_at` per host)
to every host configured and reconciled by weftd (the latest per-host `reconciled_at` of
`GET /v1/status` when weftd reports it, else the lab's `in_sync_at`: when `weft lab up` saw them
all reconciled, polling every 20 ms). The lab is WEFT_LAB (default benchup) under WEFT_RUN_DIR
(default /run/weft-bench); `weft lab down` runs after every run, and on any failure or signal.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controller.client import Client  # noqa: E402

WEFT = str(Path(sys.executable).parent / "weft")


def controller_share(env: dict) -> tuple[float, str]:
    """(seconds from the last OVS up to every host reconciled, which clock said so)."""
    lab_dir = os.path.join(env["WEFT_RUN_DIR"], env["WEFT_LAB"])
    with open(os.path.join(lab_dir, "state.json")) as f:
        state = json.load(f)
    ovs_up = max(h["ovs_up_at"] for h in state["hosts"].values())
    svc = state["services"]["weftd"]
    hosts = Client("unix:" + svc["api"], timeout=10).get("/v1/status")["hosts"]
    reconciled = [h.get("reconciled_at") for h in hosts.values()]
    if reconciled and all(reconciled):
        return max(reconciled) - ovs_up, "weftd reconciled_at"
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
            share, source = controller_share(env)
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
