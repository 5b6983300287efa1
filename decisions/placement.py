"""Network-aware placement: which VM moves cut the traffic crossing hosts (tunnel bytes) the most.

Objective: minimise the cross-host bytes, sum over VM pairs (a, b) on different hosts of the
bytes they exchanged over the window (both directions, every service), under a capacity of
`capacity` ports per host: a move never takes a host above it (hosts already above it may only
shed ports), and every prefix of the plan respects it, so the moves can run one after another.

Algorithm: greedy best-improvement with a lazy max-heap. The gain of moving VM v from host s
to host h is  bytes(v, VMs on h) - bytes(v, VMs on s);  only hosts of v's peers are candidates
(moving elsewhere gains nothing). Every VM's best feasible move is in the heap; the loop pops
the largest gain, re-checks it (stale entries — a peer of v or v moved, or h filled up — are
recomputed and pushed again), applies it, recomputes v's peers (their gains changed) and, when
the source host was full, the peers of the VMs left on it (it has room now). A VM moves at most
once (a live migration each; no ping-pong) and only gains > 0 are taken, so the loop ends after
at most min(N, max_moves) moves. Each move's saving is exact at the time it is applied, so the
savings add up to before - after.

Complexity: building the adjacency O(R) for R traffic rows; initial gains O(E) for E talking
pairs; heap O(N log N); each move O(sum of its peers' degrees + log N) recomputations (plus the
peers of the source host's VMs when it was full). With bounded degree d: O(R + E + N log N +
M·d²·log N) for M moves. A local optimum of single moves: swaps of two VMs on full hosts
(Kernighan-Lin) are not tried.
"""
from __future__ import annotations

import heapq
from collections import defaultdict


def pair_bytes(rows, host_of: dict) -> dict[tuple[str, str], int]:
    """Undirected bytes per VM pair {(a, b): bytes} (a < b) from flow rows (src, dst, bytes),
    summed over services and directions; only pairs of two bound ports count."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        a, b = r["src"], r["dst"]
        if a == b or a not in host_of or b not in host_of:
            continue
        out[(a, b) if a < b else (b, a)] += r.get("bytes") or 0
    return dict(out)


def cross_host_bytes(pairs: dict, host_of: dict) -> int:
    return sum(w for (a, b), w in pairs.items() if host_of[a] != host_of[b])


def plan(pairs: dict[tuple[str, str], int], host_of: dict[str, str], capacity: int,
         max_moves: int, movable=None, hosts=None) -> dict:
    """The moves (see the module's docstring). `host_of`: every bound VM -> its host (all of them
    count for the hosts' load); `movable`: the VMs that may move (default all that talk);
    `hosts`: every host name (default those in host_of)."""
    names = sorted(set(host_of.values()) | set(hosts or ()))
    hid = {h: i for i, h in enumerate(names)}
    vms = sorted(host_of)
    vid = {v: i for i, v in enumerate(vms)}
    where = [hid[host_of[v]] for v in vms]
    load = [0] * len(names)
    for h in where:
        load[h] += 1
    load0 = list(load)
    on_host: list[set] = [set() for _ in names]
    for v, h in enumerate(where):
        on_host[h].add(v)
    nbr: list[dict] = [dict() for _ in vms]
    for (a, b), w in pairs.items():
        if w <= 0 or a not in vid or b not in vid:
            continue
        ia, ib = vid[a], vid[b]
        nbr[ia][ib] = nbr[ia].get(ib, 0) + w
        nbr[ib][ia] = nbr[ib].get(ia, 0) + w
    may = [False] * len(vms)
    for v in (vms if movable is None else movable):
        if v in vid:
            may[vid[v]] = True
    before = sum(w for (a, b), w in pairs.items() if a in vid and b in vid and host_of[a] != host_of[b])

    stamp = [0] * len(vms)
    moved = [False] * len(vms)

    def best(v):
        """(gain, host) of v's best feasible move, or None."""
        acc: dict[int, int] = {}
        for u, w in nbr[v].items():
            h = where[u]
            acc[h] = acc.get(h, 0) + w
        here = acc.get(where[v], 0)
        found = None
        for h, b in acc.items():
            gain = b - here
            if h == where[v] or gain <= 0 or load[h] >= capacity:
                continue
            if found is None or (gain, -load[h], -h) > (found[0], -load[found[1]], -found[1]):
                found = (gain, h)
        return found

    heap: list = []

    def push(v):
        if moved[v] or not may[v] or not nbr[v]:
            return
        b = best(v)
        if b is not None:
            heapq.heappush(heap, (-b[0], v, b[1], stamp[v]))

    for v in range(len(vms)):
        push(v)

    moves = []
    cross = before
    while heap and len(moves) < max_moves:
        neg, v, h, st = heapq.heappop(heap)
        if moved[v] or st != stamp[v] or load[h] >= capacity:
            if not moved[v] and st == stamp[v]:
                push(v)                      # its destination filled up: its next best
            continue
        s = where[v]
        gain = -neg
        was_full = load[s] >= capacity
        where[v] = h
        load[s] -= 1
        load[h] += 1
        on_host[s].discard(v)
        on_host[h].add(v)
        moved[v] = True
        stamp[v] += 1
        cross -= gain
        moves.append({"vm": vms[v], "from": names[s], "to": names[h], "bytes_saved": gain,
                      "cross_host_bytes_after": cross})
        for u in nbr[v]:
            stamp[u] += 1
            push(u)
        if was_full:                         # room on s now: whoever would go there may
            for x in on_host[s]:
                for y in nbr[x]:
                    if where[y] != s and not moved[y]:
                        stamp[y] += 1
                        push(y)
    changed = sorted({m["from"] for m in moves} | {m["to"] for m in moves})
    return {"moves": moves, "cross_host_bytes_before": before, "cross_host_bytes_after": cross,
            "capacity": capacity,
            "hosts": [{"host": n, "load_before": load0[hid[n]], "load_after": load[hid[n]],
                       "capacity": capacity} for n in changed],
            "max_load_after": max(load, default=0)}
