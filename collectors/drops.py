"""The drop aggregate: samples of packets the data path dropped, by (src, dst, proto, dport, reason, group).

A small interface on purpose: `add(DropSample)` records one sample (weftd's drop service
calls it for every drop packet-in, controller/drop_service.py), `subscribe(sink)` hands each
sample to another store as well (a flow-history store, say), `rows(since, tenant)` answers
`weft traffic drops`, `status()` counts samples per host and reason, and `render_metrics()`
gives Prometheus text (`weft_drop_samples_total{reason}`).

Samples are kept in 10-second buckets for an hour (older buckets are forgotten), at most
MAX_KEYS distinct keys per bucket (beyond, a bucket counts the sample under an overflow
key), so memory stays bounded whatever a flood looks like. `packets` counts samples: the
switch's drop meter lets through at most the configured rate per host, so under a flood it
is a lower bound of what was dropped.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest

BUCKET_S = 10.0
RETENTION_S = 3600.0
MAX_KEYS = 5000


@dataclass(frozen=True)
class DropSample:
    """One dropped packet, as weftd saw its sample."""
    time: float
    host: str
    reason: str
    table: int
    src: str                    # a port TENANT/NET/PORT, else an IP or MAC
    dst: str
    proto: str                  # tcp, udp, icmp, icmpv6, arp, ipv4, ipv6, or an ethertype
    dport: int | None = None
    group: str | None = None    # security-group drops: the groups without an allowing rule
    owner: str | None = None    # what the drop flow's cookie names (a port, a router) or None
    src_tenant: str | None = None
    dst_tenant: str | None = None


_KEY_FIELDS = ("src", "dst", "proto", "dport", "reason", "group", "host", "owner", "src_tenant",
               "dst_tenant")
_OVERFLOW = ("(overflow)", "(overflow)", "-", None, "(overflow)", None, "-", None, None, None)


class DropLog:
    def __init__(self, bucket_s: float = BUCKET_S, retention_s: float = RETENTION_S,
                 max_keys: int = MAX_KEYS, clock=time.time):
        self.bucket_s, self.retention_s, self.max_keys, self.clock = bucket_s, retention_s, max_keys, clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[int, dict] = OrderedDict()     # bucket start -> {key: [n, first, last]}
        self._hosts: dict[str, dict] = {}
        self._reasons: dict[str, int] = {}
        self._sinks: list = []
        self.registry = CollectorRegistry()
        self._counter = Counter("weft_drop_samples", "Samples of packets the data path dropped "
                                "(drop flows' packet-ins, metered per host), by reason.",
                                ["reason"], registry=self.registry)
        from flows.cookies import DROP_REASONS
        from flows.drops import DERIVED
        for reason in (*DROP_REASONS, *DERIVED):
            self._counter.labels(reason)

    def subscribe(self, sink) -> None:
        """sink(DropSample) for every sample from now on (called on the adding thread)."""
        self._sinks.append(sink)

    def add(self, sample: DropSample) -> None:
        key = tuple(getattr(sample, f) for f in _KEY_FIELDS)
        start = int(sample.time // self.bucket_s)
        with self._lock:
            bucket = self._buckets.get(start)
            if bucket is None:
                bucket = self._buckets[start] = {}
                oldest = int((sample.time - self.retention_s) // self.bucket_s)
                while self._buckets and next(iter(self._buckets)) < oldest:
                    self._buckets.popitem(last=False)
            entry = bucket.get(key)
            if entry is None:
                if len(bucket) >= self.max_keys:
                    key = _OVERFLOW
                    entry = bucket.get(key)
                if entry is None:
                    entry = bucket[key] = [0, sample.time, sample.time]
            entry[0] += 1
            entry[1] = min(entry[1], sample.time)
            entry[2] = max(entry[2], sample.time)
            h = self._hosts.setdefault(sample.host, {"samples": 0, "first": sample.time, "last": 0.0})
            h["samples"] += 1
            h["last"] = max(h["last"], sample.time)
            self._reasons[sample.reason] = self._reasons.get(sample.reason, 0) + 1
        self._counter.labels(sample.reason).inc()
        for sink in self._sinks:
            sink(sample)

    def rows(self, since: float | None = None, tenant: str | None = None) -> list[dict]:
        """Aggregated samples (newest last_seen first), from buckets that end after `since`."""
        first_bucket = None if since is None else int(since // self.bucket_s)
        merged: dict = {}
        with self._lock:
            for start, bucket in self._buckets.items():
                if first_bucket is not None and start < first_bucket:
                    continue
                for key, (n, first, last) in bucket.items():
                    if since is not None and last < since:
                        continue
                    m = merged.get(key)
                    if m is None:
                        merged[key] = [n, first, last]
                    else:
                        m[0] += n
                        m[1], m[2] = min(m[1], first), max(m[2], last)
        out = []
        for key, (n, first, last) in merged.items():
            row = dict(zip(_KEY_FIELDS, key))
            if tenant is not None and tenant not in (row["src_tenant"], row["dst_tenant"]):
                continue
            row.update(packets=n, first_seen=round(first, 3), last_seen=round(last, 3))
            out.append(row)
        out.sort(key=lambda r: (-r["last_seen"], r["reason"], r["src"], r["dst"]))
        return out

    def oldest_time(self) -> float | None:
        """The start of the oldest bucket held (samples before it are forgotten), or None."""
        with self._lock:
            return next(iter(self._buckets)) * self.bucket_s if self._buckets else None

    def status(self) -> dict:
        with self._lock:
            return {"samples": sum(self._reasons.values()), "by_reason": dict(self._reasons),
                    "hosts": {h: dict(v) for h, v in sorted(self._hosts.items())}}

    def render_metrics(self) -> bytes:
        return generate_latest(self.registry)


def sample_dict(sample: DropSample) -> dict:
    return asdict(sample)
