"""The lab demo: bring up hypervisors, plug VMs, show real packets crossing the underlay, tear down."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")


def weft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    print(f"$ weft {' '.join(args)}", flush=True)
    proc = subprocess.run([WEFT, *args], text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `weft {' '.join(args)}` failed")
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()
    weft("lab", "down")
    try:
        weft("lab", "up", "--hosts", "3")
        weft("lab", "exec", "hv1", "--", "ping", "-c", "2", "-i", "0.2", "198.18.0.12")
        weft("lab", "vm", "create", "red1", "--host", "hv1", "--port", "red/net/p1",
             "--mac", "fa:16:3e:00:00:01", "--ip", "10.0.0.11/24")
        weft("lab", "vm", "create", "red2", "--host", "hv2", "--port", "red/net/p2",
             "--mac", "fa:16:3e:00:00:02", "--ip", "10.0.0.12/24")
        weft("lab", "status")
    finally:
        if not args.keep:
            weft("lab", "down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
