"""Acceptance: `weft collect` keeps every one of 900,000 distinct NetFlow v5 records sent at a rate.

    python bench/accept_collect.py [--workers 1] [--rate 600000] [--records 900000]

Runs `weft collect --netflow 127.0.0.1:PORT --model M -o json --workers N` (the model: the
200 VMs of bench_collectors, whose hosts export from 127.0.0.10-12), sends it `--records`
distinct records (30 a datagram) at `--rate` records/s from 32 exporter sockets (so
SO_REUSEPORT spreads them over the workers), waits for it to drain, stops it with SIGINT
and reads the counters it prints: records counted, malformed, kernel drops. Prints
`accept_collect workers=N rate=R sent=S kept=K lost=L` last and exits 0 when nothing was
lost. (Not a timing test: a check of the pipeline at a load, reported with the machine's.)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_collectors as bc  # noqa: E402

WEFT = str(Path(sys.executable).parent / "weft")
SOCKETS = 32


def model_file(model, directory: str) -> str:
    """The model as `weft collect --model` reads it (lists of records, exporters)."""
    data = {k: [asdict(v) for v in getattr(model, k).values()]
            for k in ("tenants", "networks", "ports", "hosts", "bindings")}
    data["exporters"] = dict(bc.MGMT)
    path = os.path.join(directory, "model.json")
    with open(path, "w") as f:
        json.dump(data, f, default=list)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=None,
                    help="records/s (default 600,000 per worker)")
    ap.add_argument("--records", type=int, default=900_000)
    args = ap.parse_args()
    rate = args.rate or 600_000.0 * args.workers
    model = bc.synthetic_model()
    want = args.records // bc.NF5_PER_DGRAM
    stream = bc.netflow5_stream(model, want + len(bc.HOSTS))[:want]
    # 32 sockets on the 3 exporter addresses; a datagram keeps its exporter address
    socks = {}
    for i in range(SOCKETS):
        addr = list(bc.MGMT)[i % len(bc.MGMT)]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind((addr, 0))
        socks.setdefault(addr, []).append(s)
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([WEFT, "collect", "--netflow", "127.0.0.1:0", "--model",
                                 model_file(model, d), "-o", "json", "--workers",
                                 str(args.workers)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()
            if "listening" not in line:
                print(f"weft collect did not start: {line}{proc.stderr.read()}")
                return 1
            port = int(line.rsplit(":", 1)[1])
            n = {a: 0 for a in socks}
            per_slot = rate / bc.NF5_PER_DGRAM / 1000.0
            t0 = time.perf_counter()
            sent, slot, credit = 0, 0, 0.0
            dest = ("127.0.0.1", port)
            while sent < len(stream):
                slot += 1
                credit += per_slot
                k = min(int(credit), len(stream) - sent)
                credit -= k
                for addr, data in stream[sent:sent + k]:
                    group = socks[addr]
                    group[n[addr] % len(group)].sendto(data, dest)
                    n[addr] += 1
                sent += k
                delay = t0 + slot / 1000.0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            elapsed = time.perf_counter() - t0
            time.sleep(3.0)           # drain
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    counters = json.loads(out)
    kept = counters["protocols"]["netflow5"]["records"]
    drops = sum(s.get("kernel_drops") or 0 for s in counters["sockets"].values())
    records = sent * bc.NF5_PER_DGRAM
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"sent {records:,} records in {elapsed:.2f}s ({records / elapsed:,.0f}/s achieved), "
          f"kept {kept:,}, kernel drops {drops}, malformed "
          f"{counters['protocols']['netflow5']['malformed']}; load average {load}")
    print(f"accept_collect workers={args.workers} rate={rate:.0f} sent={records} kept={kept} "
          f"lost={records - kept}")
    return 0 if kept == records else 1


if __name__ == "__main__":
    sys.exit(main())
