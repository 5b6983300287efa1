"""Time `weft lab up --hosts N` (and `down`) end to end, as a user runs it: median of several runs."""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "WEFT_LAB": "benchup", "WEFT_RUN_DIR": "/run/weft-bench"}
    subprocess.run([WEFT, "lab", "down"], env=env, capture_output=True)
    ups, downs = [], []
    for _ in range(args.runs):
        t0 = time.monotonic()
        subprocess.run([WEFT, "lab", "up", "--hosts", str(args.hosts)], env=env, check=True,
                       capture_output=True)
        t1 = time.monotonic()
        subprocess.run([WEFT, "lab", "down"], env=env, check=True, capture_output=True)
        t2 = time.monotonic()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    print(f"weft lab up --hosts {args.hosts}: median {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f}, {args.runs} runs)")
    print(f"weft lab down:          median {statistics.median(downs):.2f} s "
          f"(min {min(downs):.2f}, max {max(downs):.2f})")


if __name__ == "__main__":
    main()
