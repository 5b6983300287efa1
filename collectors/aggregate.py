"""Time-bucketed traffic between endpoints, with matrix/top/host/network queries and bounded memory.

Storage: buckets of `bucket_seconds` (default 10 s, by collector receive time), each a dict
(src Endpoint, dst Endpoint, Service or None) -> [bytes, packets, first_seen, last_seen]
(`collectors.services`: IP protocol, service port, towards the server or not). Memory is bounded
by `retention_seconds / bucket_seconds` buckets (older ones are dropped) times `max_keys`
keys per bucket: when a bucket grows past `max_keys`, its smallest keys (by bytes) are folded
into one `other` -> `other` key, so totals stay exact while detail is lost.

Queries merge buckets that overlap [since, until) and group by "vm" (port ref), "network"
("TENANT/NET") or "tenant"; unknown endpoints appear as `unknown:<ip or mac>`. Rows are
`{src, dst, src_tenant, dst_tenant, bytes, packets, rate_bps, first_seen, last_seen}`;
rate_bps is the average over the query window (since, or the oldest bucket/aggregator
start, until now or `until`), so it has bucket granularity. `src_tenant`/`dst_tenant` is the
tenant the endpoint was seen in (also set for an unknown address seen inside a tenant's
network), None when not known; a `tenant=` filter keeps rows where either side is that tenant.

`flows()` keeps the service: rows per (src VM, dst VM, proto, port, to_server), the raw
material of least-privilege suggestions and what-if replays.

`tenant_pairs()` holds cumulative (since start) bytes/packets per (src tenant, dst tenant)
pair, with "unknown" for any endpoint that is not a known port: a monotonic source for
Prometheus counters, bounded by `max_pairs` (overflow goes to ("other", "other")).
"""
from __future__ import annotations

import threading
import time

from .attribution import Endpoint
from .services import label as service_label

BY = ("vm", "network", "tenant")
OTHER = Endpoint(address="other")
OTHER_PAIR = ("other", "other")


def endpoint_label(ep: Endpoint, by: str) -> str:
    if ep is OTHER or ep == OTHER:
        return "other"
    return ep.label(by)


def pair_tenant(ep: Endpoint) -> str:
    """The tenant label for tenant-pair counters: the port's tenant, else 'unknown'."""
    return ep.tenant if ep.port is not None else "unknown"


class Aggregator:
    """Thread-safe bucketed aggregation of (src, dst) traffic."""

    def __init__(self, bucket_seconds: float = 10.0, retention_seconds: float = 3600.0,
                 max_keys: int = 1000, max_pairs: int = 10_000, clock=time.time) -> None:
        if not bucket_seconds > 0:
            raise ValueError("bucket_seconds must be > 0")
        if not retention_seconds >= bucket_seconds:
            raise ValueError("retention_seconds must be >= bucket_seconds")
        if max_keys < 1 or max_pairs < 1:
            raise ValueError("max_keys and max_pairs must be >= 1")
        self.bucket_seconds = float(bucket_seconds)
        self.retention_seconds = float(retention_seconds)
        self.max_keys = int(max_keys)
        self.max_pairs = int(max_pairs)
        self.clock = clock
        self.started = clock()
        self.evicted_keys = 0
        self.dropped_buckets = 0
        self._buckets: dict[float, dict] = {}
        self._pairs: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self._last_prune = 0.0

    # ------------------------------------------------------------------ input

    def bucket_of(self, ts: float) -> float:
        b = self.bucket_seconds
        return (ts // b) * b

    def add(self, src: Endpoint, dst: Endpoint, nbytes: int, packets: int,
            ts: float | None = None, service=None) -> None:
        """Account one (already deduplicated) record."""
        if ts is None:
            ts = self.clock()
        self.add_batch({self.bucket_of(ts): {(src, dst, service): [nbytes, packets, ts, ts]}})

    def add_batch(self, batch: dict, tenant_pairs: dict | None = None, folded: int = 0) -> None:
        """Merge {bucket_start: {(src, dst[, service]): [bytes, packets, first, last]}}.

        `tenant_pairs` {(src tenant, dst tenant): [bytes, packets]}: the batch's traffic per
        tenant pair, given when the batch's smaller keys were already folded into
        other->other (collectors.columnar); the keys are then not counted per tenant pair
        again. `folded`: how many keys were folded so (counted as evicted)."""
        with self._lock:
            pairs = self._pairs
            self.evicted_keys += folded
            for pk, (nb, np) in (tenant_pairs or {}).items():
                self._count_pair(pk, nb, np)
            per_key = tenant_pairs is None
            for start, entries in batch.items():
                bucket = self._buckets.get(start)
                if bucket is None:
                    bucket = self._buckets[start] = {}
                for key, (nb, np, first, last) in entries.items():
                    if len(key) == 2:
                        key = (key[0], key[1], None)
                    e = bucket.get(key)
                    if e is None:
                        bucket[key] = [nb, np, first, last]
                    else:
                        e[0] += nb
                        e[1] += np
                        if first < e[2]:
                            e[2] = first
                        if last > e[3]:
                            e[3] = last
                    if not per_key:
                        continue
                    pk = (pair_tenant(key[0]), pair_tenant(key[1]))
                    pe = pairs.get(pk)
                    if pe is None:
                        self._count_pair(pk, nb, np)
                    else:
                        pe[0] += nb
                        pe[1] += np
                if len(bucket) > self.max_keys:
                    self._evict(bucket)
            now = self.clock()
            if now - self._last_prune >= 1.0:
                self._prune(now)

    def _count_pair(self, pk: tuple, nb: int, np: int) -> None:
        """Add to a tenant pair's cumulative counters (("other", "other") past max_pairs)."""
        pairs = self._pairs
        pe = pairs.get(pk)
        if pe is None:
            if len(pairs) >= self.max_pairs:
                pk = OTHER_PAIR
                pe = pairs.get(pk)
            if pe is None:
                pe = pairs[pk] = [0, 0]
        pe[0] += nb
        pe[1] += np

    def _evict(self, bucket: dict) -> None:
        """Fold the smallest keys into other->other, leaving ~90% of max_keys."""
        keep = max(1, self.max_keys - self.max_keys // 10)
        other_key = (OTHER, OTHER, None)
        other = bucket.pop(other_key, None)
        victims = sorted(bucket.items(), key=lambda kv: kv[1][0])[:max(0, len(bucket) - keep + 1)]
        if other is None:
            other = [0, 0, float("inf"), float("-inf")]
        for key, (nb, np, first, last) in victims:
            del bucket[key]
            other[0] += nb
            other[1] += np
            other[2] = min(other[2], first)
            other[3] = max(other[3], last)
        self.evicted_keys += len(victims)
        bucket[other_key] = other

    def _prune(self, now: float) -> None:
        self._last_prune = now
        horizon = now - self.retention_seconds
        old = [s for s in self._buckets if s + self.bucket_seconds <= horizon]
        for s in old:
            del self._buckets[s]
        self.dropped_buckets += len(old)

    def prune(self, now: float | None = None) -> None:
        with self._lock:
            self._prune(self.clock() if now is None else now)

    # ------------------------------------------------------------------ queries

    def _selected(self, since, until):
        """(buckets overlapping [since, until), window seconds); caller holds the lock."""
        now = self.clock()
        b = self.bucket_seconds
        out = [(s, d) for s, d in self._buckets.items()
               if (since is None or s + b > since) and (until is None or s < until)]
        end = now if until is None else until
        if since is not None:
            start = max(since, self.started)
        elif out:
            start = max(min(s for s, _ in out), self.started)
        else:
            start = self.started
        return out, max(end - start, 1e-9)

    def _grouped(self, since, until, tenant, by: str, with_service: bool) -> tuple[dict, float]:
        """({(src label, dst label, src tenant, dst tenant[, service]): [bytes, packets, first,
        last]}, window seconds) over the buckets of [since, until)."""
        rows: dict[tuple, list] = {}
        with self._lock:
            buckets, window = self._selected(since, until)
            labels: dict = {}
            for _s, entries in buckets:
                for (src, dst, svc), (nb, np, first, last) in entries.items():
                    st, dt = src.tenant, dst.tenant
                    if tenant is not None and st != tenant and dt != tenant:
                        continue
                    sl = labels.get(src)
                    if sl is None:
                        sl = labels[src] = endpoint_label(src, by)
                    dl = labels.get(dst)
                    if dl is None:
                        dl = labels[dst] = endpoint_label(dst, by)
                    k = (sl, dl, st, dt, svc) if with_service else (sl, dl, st, dt)
                    r = rows.get(k)
                    if r is None:
                        rows[k] = [nb, np, first, last]
                    else:
                        r[0] += nb
                        r[1] += np
                        if first < r[2]:
                            r[2] = first
                        if last > r[3]:
                            r[3] = last
        return rows, window

    def matrix(self, since: float | None = None, by: str = "vm", tenant: str | None = None,
               until: float | None = None) -> list[dict]:
        """Traffic rows grouped by `by`, largest bytes first."""
        if by not in BY:
            raise ValueError(f"unknown grouping {by!r} (vm, network or tenant)")
        rows, window = self._grouped(since, until, tenant, by, with_service=False)
        out = [{"src": sl, "dst": dl, "src_tenant": st, "dst_tenant": dt, "bytes": nb,
                "packets": np, "rate_bps": round(nb * 8 / window, 3),
                "first_seen": first, "last_seen": last}
               for (sl, dl, st, dt), (nb, np, first, last) in rows.items()]
        out.sort(key=lambda r: (-r["bytes"], r["src"], r["dst"]))
        return out

    def top(self, n: int = 10, since: float | None = None, by: str = "vm",
            tenant: str | None = None, until: float | None = None) -> list[dict]:
        """The `n` largest rows of `matrix` by bytes."""
        return self.matrix(since, by, tenant, until)[:max(0, n)]

    def flows(self, since: float | None = None, tenant: str | None = None,
              until: float | None = None) -> list[dict]:
        """Rows per (src VM, dst VM, service), largest bytes first: `proto` (tcp, udp, icmp...
        or the number), `port` (the service port, None without ports), `to_server` (the
        bytes went from the client to the service) besides matrix's columns."""
        rows, window = self._grouped(since, until, tenant, "vm", with_service=True)
        out = []
        for (sl, dl, st, dt, svc), (nb, np, first, last) in rows.items():
            proto, port = service_label(svc)
            out.append({"src": sl, "dst": dl, "src_tenant": st, "dst_tenant": dt,
                        "proto": proto, "port": port,
                        "to_server": None if svc is None else svc.to_server,
                        "bytes": nb, "packets": np, "rate_bps": round(nb * 8 / window, 3),
                        "first_seen": first, "last_seen": last})
        out.sort(key=lambda r: (-r["bytes"], r["src"], r["dst"], r["proto"] or "",
                                r["port"] or 0))
        return out

    def _totals(self, since, until, side_keys) -> list[dict]:
        acc: dict = {}
        with self._lock:
            buckets, window = self._selected(since, until)
            for _s, entries in buckets:
                for (src, dst, _svc), (nb, np, _f, _l) in entries.items():
                    for direction, ep in (("tx", src), ("rx", dst)):
                        k = side_keys(ep)
                        if k is None:
                            continue
                        a = acc.get(k)
                        if a is None:
                            a = acc[k] = [0, 0, 0, 0]
                        i = 0 if direction == "tx" else 2
                        a[i] += nb
                        a[i + 1] += np
        return [(k, a, window) for k, a in acc.items()]

    def host_totals(self, since: float | None = None, until: float | None = None) -> list[dict]:
        """Bytes/packets sent (tx) and received (rx) by the known ports bound on each host."""
        rows = self._totals(since, until,
                            lambda ep: ep.host if ep.port is not None and ep.host else None)
        out = [{"host": h, "tx_bytes": a[0], "tx_packets": a[1], "rx_bytes": a[2],
                "rx_packets": a[3], "tx_bps": round(a[0] * 8 / w, 3),
                "rx_bps": round(a[2] * 8 / w, 3)} for h, a, w in rows]
        return sorted(out, key=lambda r: r["host"])

    def network_totals(self, since: float | None = None, tenant: str | None = None,
                       until: float | None = None) -> list[dict]:
        """Bytes/packets sent (tx) and received (rx) by the known ports of each network."""
        rows = self._totals(since, until, lambda ep: (ep.network, ep.tenant)
                            if ep.port is not None else None)
        out = [{"network": k[0], "tenant": k[1], "tx_bytes": a[0], "tx_packets": a[1],
                "rx_bytes": a[2], "rx_packets": a[3], "tx_bps": round(a[0] * 8 / w, 3),
                "rx_bps": round(a[2] * 8 / w, 3)} for k, a, w in rows
               if tenant is None or k[1] == tenant]
        return sorted(out, key=lambda r: r["network"])

    def bucket_rows(self, since: float | None = None, until: float | None = None) -> list:
        """A copy of the buckets starting in [since, until), oldest first:
        [(start, [(src, dst, service, bytes, packets, first, last), ...])] (flow history)."""
        with self._lock:
            picked = sorted(s for s in self._buckets
                            if (since is None or s >= since) and (until is None or s < until))
            return [(s, [(k[0], k[1], k[2], e[0], e[1], e[2], e[3])
                         for k, e in self._buckets[s].items()]) for s in picked]

    def tenant_pairs(self) -> dict[tuple, tuple[int, int]]:
        """Cumulative {(src tenant, dst tenant): (bytes, packets)} since start."""
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self._pairs.items()}

    def stats(self) -> dict:
        with self._lock:
            return {"buckets": len(self._buckets),
                    "keys": sum(len(b) for b in self._buckets.values()),
                    "evicted_keys": self.evicted_keys, "dropped_buckets": self.dropped_buckets,
                    "tenant_pairs": len(self._pairs)}
