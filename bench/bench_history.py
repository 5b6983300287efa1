"""Cost of the flow history on disk: write throughput (rows/s) and `--since 24h` query times.

200 VMs in 10 tenants on 20 hosts talk at random; every 10 s bucket holds KEYS distinct
(src VM, dst VM, service) rows (default 1,000: the Aggregator's per-bucket key limit, so a
bucket never holds more). Write: the rows of BUCKETS buckets go through the real path
(FlowHistory.table + History.write_rows: Python rows -> Arrow -> zstd Parquet), timed per
run. Query: a day of such buckets (8,640 x KEYS rows; the first hour is written by the real
path, the other 23 are copies of it shifted in time, written as compacted hours are) is read
by FlowHistory's matrix (by vm and by tenant), top 10 and flows for `--since 24h`, as
`weft traffic matrix|top|flows --since 24h` does (plus an empty memory part).

    .venv/bin/python bench/bench_history.py [--keys 1000] [--runs 5] [--hours 24] [--steady] [--peer none]

Prints medians with the machine load (`uptime`) and, last, one line:
`history write_rows_per_s=W query_matrix_24h_s=Q1 query_flows_24h_s=Q2
buckets_only_matrix_24h_s=Q3 rows_day=N nfdump_top10_s=P1 nfdump_matrix_s=P2` (Q1, Q2 with the
hourly sums, Q3 before them; P1, P2: the peer, nfdump, over as many raw records in the same
run - it stores records, not aggregates, so it scans them all for any question).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from collectors.aggregate import Aggregator  # noqa: E402
from collectors.attribution import Endpoint  # noqa: E402
from collectors.flow_history import FLOWS, FLOWS_HOURLY, FlowHistory  # noqa: E402
from collectors.history import HOUR, History  # noqa: E402
from collectors.service import CollectorService  # noqa: E402
from collectors.services import Service  # noqa: E402

T0 = 1_764_460_800.0      # a UTC midnight
BUCKET = 10.0


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def vms(n=200, tenants=10, hosts=20):
    return [Endpoint(f"t{i % tenants}/net/vm{i}", f"t{i % tenants}/net", f"t{i % tenants}",
                     f"hv{i % hosts}") for i in range(n)]


SERVICES = [Service(6, 80, True), Service(6, 80, False), Service(6, 443, True),
            Service(17, 53, True), Service(1, None, True), Service(6, 5432, True)]


def draw_keys(rng, eps, keys):
    seen = []
    chosen = set()
    while len(seen) < keys:
        key = (rng.randrange(len(eps)), rng.randrange(len(eps)), rng.randrange(len(SERVICES)))
        if key[0] != key[1] and key not in chosen:
            chosen.add(key)
            seen.append(key)
    return seen


def buckets(rng, eps, start, count, keys, steady=None):
    """`count` buckets of `keys` rows: drawn at random per bucket, or the `steady` keys each time."""
    services = SERVICES
    out = []
    for b in range(count):
        s = start + b * BUCKET
        rows = []
        for key in steady or draw_keys(rng, eps, keys):
            t = s + rng.random() * BUCKET
            rows.append((eps[key[0]], eps[key[1]], services[key[2]], rng.randint(64, 150_000),
                         rng.randint(1, 100), t, min(t + 1, s + BUCKET - 0.001)))
        out.append((s, rows))
    return out


def bench_write(eps, keys, runs, nbuckets, root):
    rng = random.Random(1)
    rates = []
    for r in range(runs):
        data = buckets(rng, eps, T0 + r * nbuckets * BUCKET, nbuckets, keys)
        history = History(os.path.join(root, f"w{r}"), clock=lambda: T0)
        fh = FlowHistory(history)
        t = time.perf_counter()
        history.write_rows(FLOWS, fh.table("sflow", BUCKET, data), None, "bucket_start")
        dt = time.perf_counter() - t
        rates.append(nbuckets * keys / dt)
    return rates


def make_day(eps, keys, hours, root, steady):
    """A day of buckets: hour 0 by the real writer, the others shifted copies (one file each)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    history = History(root, clock=lambda: T0 + hours * HOUR + 1800, retention=3650 * 86400)
    fh = FlowHistory(history)
    rng = random.Random(2)
    data = buckets(rng, eps, T0, int(HOUR / BUCKET), keys,
                   draw_keys(rng, eps, keys) if steady else None)
    t = time.perf_counter()
    [first] = history.write_rows(FLOWS, fh.table("sflow", BUCKET, data), None, "bucket_start")
    hour_write = time.perf_counter() - t
    table = pq.read_table(first)
    for h in range(1, hours):
        shifted = table
        for name in ("bucket_start", "first_seen", "last_seen"):
            col = table.column(name).cast(pa.int64())
            shifted = shifted.set_column(shifted.schema.get_field_index(name), name,
                                         pc.add(col, int(h * HOUR * 1e6)).cast(table.schema.field(name).type))
        history.write(FLOWS, T0 + h * HOUR, shifted, None)
    return history, table.num_rows * hours, hour_write, table.num_rows


def bench_query(history, hours, runs):
    clock = lambda: T0 + hours * HOUR + 1800  # noqa: E731
    agg = Aggregator(BUCKET, 3600, clock=clock)
    svc = CollectorService(None, sflow=("127.0.0.1", 0), aggregator=agg, clock=clock)
    fh = FlowHistory(history)
    fh.attach("sflow", svc)
    since = clock() - 24 * HOUR
    out = {}
    for name, q in (("matrix_vm", lambda: svc.matrix(since)),
                    ("matrix_tenant", lambda: svc.matrix(since, "tenant")),
                    ("top10", lambda: svc.top(10, since)),
                    ("flows", lambda: svc.flows(since))):
        times, n = [], 0
        for _ in range(runs):
            t = time.perf_counter()
            n = len(q())
            times.append(time.perf_counter() - t)
        out[name] = (statistics.median(times), min(times), n)
    return out


PEER_DIR = "/work/shared/bench"


def peer_nfdump(records: int, runs: int) -> dict:
    """nfdump, the peer: nfcapd stores `records` distinct NetFlow v5 records (flowgen, 200 VMs,
    loopback), then `nfdump -R` answers a day's top 10 talkers and the src/dst matrix from them.
    nfdump is installed from Debian here when missing (a benchmark-only peer)."""
    import socket
    if shutil.which("nfcapd") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "nfdump"], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    d = tempfile.mkdtemp(prefix="weft-bench-nfcapd-")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cap = subprocess.Popen(["nfcapd", "-p", str(port), "-b", "127.0.0.1", "-l", d, "-B", "8000000"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        datagrams = records // 30
        subprocess.run([sys.executable, os.path.join(PEER_DIR, "flowgen.py"), "nf5", str(port),
                        str(datagrams), "8000"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1.0)
    finally:
        cap.terminate()
        cap.wait(30)
    try:
        stat = subprocess.run(["nfdump", "-R", d, "-I"], capture_output=True, text=True).stdout
        kept = next((int(line.split(":")[1]) for line in stat.splitlines()
                     if line.startswith("Flows:")), 0)
        out = {"kept": kept}
        for name, argv in (("top10", ["-s", "srcip/bytes", "-n", "10"]),
                           ("matrix", ["-A", "srcip,dstip", "-N", "-q", "-o", "fmt:%sa %da %byt"])):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                subprocess.run(["nfdump", "-R", d, *argv], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                times.append(time.perf_counter() - t)
            out[name] = statistics.median(times)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1000, help="rows per 10 s bucket (default 1000)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write-buckets", type=int, default=60, help="buckets per write run (default 60)")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--steady", action="store_true",
                    help="the same KEYS flows in every bucket (pairs that keep talking) instead of "
                         "new random ones each bucket (the worst case, default)")
    ap.add_argument("--peer", choices=["nfdump", "none"], default="nfdump",
                    help="also time nfdump over as many raw records (default nfdump)")
    args = ap.parse_args()
    eps = vms()
    root = tempfile.mkdtemp(prefix="weft-bench-history-")
    try:
        print(f"load before: {load()}")
        rates = bench_write(eps, args.keys, args.runs, args.write_buckets, root)
        w = statistics.median(rates)
        print(f"write: {args.write_buckets} buckets x {args.keys} rows per run, {args.runs} runs: "
              f"median {w:,.0f} rows/s (min {min(rates):,.0f}, max {max(rates):,.0f})")
        print(f"traffic: {'the same' if args.steady else 'new random'} {args.keys} "
              f"(src, dst, service) keys in every 10 s bucket")
        history, rows_day, hour_write, hour_rows = make_day(eps, args.keys, args.hours,
                                                            os.path.join(root, "day"), args.steady)
        size = sum(os.path.getsize(f) for f in history.files(FLOWS))
        print(f"day: {args.hours} hours x {hour_rows:,} rows = {rows_day:,} rows in "
              f"{len(history.files(FLOWS))} files, {size / 1e6:.1f} MB "
              f"({size / rows_day:.1f} B/row); one hour through the writer in {hour_write:.2f} s")
        print(f"load before queries: {load()}")
        fine = bench_query(history, args.hours, args.runs)
        for name, (med, best, n) in fine.items():
            print(f"query --since 24h {name}, buckets only: median {med:.2f} s (best {best:.2f} s), "
                  f"{n} rows out")
        t = time.perf_counter()
        fh = FlowHistory(history)
        rolled = fh.rollup()
        dt = time.perf_counter() - t
        summed = history.query(FLOWS_HOURLY, "SELECT count(*) FROM {rows}")[0][0]
        print(f"hourly sums: {rolled} hours in {dt:.1f} s ({dt / max(rolled, 1):.2f} s an hour), "
              f"{summed:,} rows; load {load()}")
        res = bench_query(history, args.hours, args.runs)
        for name, (med, best, n) in res.items():
            print(f"query --since 24h {name}, hourly sums + edge buckets: median {med:.2f} s "
                  f"(best {best:.2f} s), {n} rows out")
        print(f"load after: {load()}")
        peer = ""
        if args.peer == "nfdump":
            nf = peer_nfdump(rows_day, args.runs)
            print(f"peer nfdump over {nf['kept']:,} raw NetFlow records kept by nfcapd (of "
                  f"{rows_day:,} sent): top 10 talkers median {nf['top10']:.2f} s, src/dst matrix "
                  f"median {nf['matrix']:.2f} s; load {load()}")
            peer = f" nfdump_top10_s={nf['top10']:.2f} nfdump_matrix_s={nf['matrix']:.2f}"
        print(f"history write_rows_per_s={w:.0f} query_matrix_24h_s={res['matrix_vm'][0]:.2f} "
              f"query_flows_24h_s={res['flows'][0]:.2f} buckets_only_matrix_24h_s="
              f"{fine['matrix_vm'][0]:.2f} rows_day={rows_day}{peer}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
