"""Time `placement suggest`'s algorithm at the seed's scale (10,000 VMs, 5,000 hosts) on a synthetic traffic matrix.

The matrix: VMs in applications of 2-8 VMs that talk a lot inside (each pair with probability
0.6, 1-100 MB per service), plus a light background (each VM talks to 2 random VMs, 1-100 kB),
as the collectors' per-service rows (both directions, 1-2 services per pair). VMs start spread
at random, 2 per host; capacity 3 per host. Timed: rows -> pair bytes -> plan (what weftd does
after reading the collectors), median of --runs. No other system suggests placement from
traffic, so the peer is a baseline in the same run: "pairs" colocates the heaviest pairs first
(each VM at most once, same capacity), the obvious hand-written rule.
Last line: `placement vms= hosts= suggest_s= moves= cross_before= cross_after= pairs_after=`.
"""
import argparse
import os
import random
import statistics
import time

from decisions import placement


def matrix(vms: int, hosts: int, seed: int):
    rng = random.Random(seed)
    names = [f"t{i % 100}/net/vm{i:05d}" for i in range(vms)]
    order = names[:]
    rng.shuffle(order)
    host_of = {v: f"hv{i // 2 % hosts:04d}" for i, v in enumerate(order)}
    rows = []

    def talk(a, b, lo, hi):
        for _ in range(rng.randint(1, 2)):
            port = rng.choice((80, 443, 5432, 6379, 8080))
            nbytes = rng.randint(lo, hi)
            rows.append({"src": a, "dst": b, "proto": "tcp", "port": port, "to_server": True,
                         "bytes": nbytes // 10})
            rows.append({"src": b, "dst": a, "proto": "tcp", "port": port, "to_server": False,
                         "bytes": nbytes})

    i = 0
    while i < vms:
        size = rng.randint(2, 8)
        app = names[i:i + size]
        for x in range(len(app)):
            for y in range(x + 1, len(app)):
                if rng.random() < 0.6:
                    talk(app[x], app[y], 1_000_000, 100_000_000)
        i += size
    for a in names:
        for b in rng.sample(names, 2):
            if a != b:
                talk(a, b, 1_000, 100_000)
    return rows, host_of


def suggest(rows, host_of, capacity):
    pairs = placement.pair_bytes(rows, host_of)
    return placement.plan(pairs, host_of, capacity, max_moves=len(host_of)), pairs


def baseline(pairs, host_of, capacity) -> int:
    """Heaviest pairs first: move one end next to the other when that host has room."""
    where = dict(host_of)
    load = {}
    for h in where.values():
        load[h] = load.get(h, 0) + 1
    moved = set()
    for (a, b), _w in sorted(pairs.items(), key=lambda kv: -kv[1]):
        if where[a] == where[b]:
            continue
        for v, other in ((a, b), (b, a)):
            h = where[other]
            if v not in moved and load[h] < capacity:
                load[where[v]] -= 1
                load[h] += 1
                where[v] = h
                moved.add(v)
                break
    return placement.cross_host_bytes(pairs, where)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--capacity", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rows, host_of = matrix(args.vms, args.hosts, args.seed)
    print(f"rows={len(rows)} load_avg={os.getloadavg()[0]:.2f}", flush=True)
    times = []
    for run in range(args.runs):
        t0 = time.perf_counter()
        p, pairs = suggest(rows, host_of, args.capacity)
        times.append(time.perf_counter() - t0)
        print(f"run {run + 1}: {times[-1]:.2f} s, {len(p['moves'])} moves", flush=True)
    t0 = time.perf_counter()
    base = baseline(pairs, host_of, args.capacity)
    base_s = time.perf_counter() - t0
    assert p["max_load_after"] <= args.capacity
    print(f"pairs baseline: cross_after={base} in {base_s:.2f} s")
    print(f"uptime load={os.getloadavg()[0]:.2f}")
    print(f"placement vms={args.vms} hosts={args.hosts} suggest_s={statistics.median(times):.2f} "
          f"moves={len(p['moves'])} cross_before={p['cross_host_bytes_before']} "
          f"cross_after={p['cross_host_bytes_after']} pairs_after={base}")


if __name__ == "__main__":
    main()
