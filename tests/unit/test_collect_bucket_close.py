"""A closed columnar bucket is grouped and folded to max_keys in numpy (columnar.Pending.drain),
and the aggregator then holds what the per-record path gives: the same keys (the largest ones,
exactly), the same totals and the same tenant-pair counters."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_columnar as tc  # noqa: E402
import test_collect_service as ts  # noqa: E402

from collectors.aggregate import OTHER, Aggregator  # noqa: E402
from collectors.attribution import Attribution, Endpoint  # noqa: E402
from collectors.columnar import Pending  # noqa: E402
from collectors.service import CollectorService, _Receiver  # noqa: E402
from collectors.vecservice import service_of  # noqa: E402

BUCKET = 10.0
T0 = 1_700_000_003.0      # inside the bucket starting at 1_700_000_000


def run(datagrams, columnar: bool, max_keys: int, close: bool):
    """The aggregator after both receivers took `datagrams` [(kind, source, data)] at T0, then
    (`close`) the clock moved past the bucket and the receivers did their housekeeping, or
    (not `close`) a query's flush."""
    clock = [T0]
    agg = Aggregator(BUCKET, max_keys=max_keys, max_pairs=10 ** 6, clock=lambda: clock[0])
    svc = CollectorService(ts.model(), sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                           exporter_hosts=ts.EXPORTERS, sflow_ifindexes=ts.IFINDEX,
                           columnar=columnar, aggregator=agg, clock=lambda: clock[0])
    svc.refresh_model()
    rs = {k: _Receiver(svc, k, ("127.0.0.1", 0)) for k in ("sflow", "netflow")}
    try:
        for kind, r in rs.items():
            mine = [(d, e) for k, e, d in datagrams if k == kind]
            for i in range(0, len(mine), 64):
                r.handle_batch(mine[i:i + 64], T0)
        clock[0] = T0 + 2 * BUCKET
        for r in rs.values():
            with r.lock:
                if close:
                    r._housekeep()      # closed buckets only, as the receive loop does
                else:
                    r._flush()
            assert not r.pending        # (the closed bucket went over whole)
    finally:
        for r in rs.values():
            r.sock.close()
    return agg


def keys_of(agg) -> dict:
    [(start, rows)] = agg.bucket_rows()
    assert start == T0 // BUCKET * BUCKET
    return {(s, d, v): (b, p) for s, d, v, b, p, _f, _l in rows}


def totals(keys: dict) -> tuple[int, int]:
    return sum(b for b, _p in keys.values()), sum(p for _b, p in keys.values())


def check_folded(full: dict, folded: dict, keep: int) -> None:
    """`folded` holds the `keep` largest keys of `full` exactly, plus other->other."""
    other = folded.pop((OTHER, OTHER, None), None)
    assert other is not None and len(folded) == keep
    for k, v in folded.items():
        assert full[k] == v
    rest = [b for k, (b, _p) in full.items() if k not in folded]
    assert min(b for b, _p in folded.values()) >= max(rest)
    assert other == (sum(rest), sum(p for k, (_b, p) in full.items() if k not in folded))


def test_a_closed_bucket_keeps_the_largest_keys_exactly_and_every_byte():
    """Per socket (each receiver folds its own keys; the aggregator then evicts from their
    union as it always did)."""
    _m, generated = tc.generated()
    for kind in ("sflow", "netflow"):
        datagrams = [d for d in generated if d[0] == kind]
        truth = run(datagrams, columnar=False, max_keys=10 ** 7, close=True)
        full = keys_of(truth)
        assert len(full) >= 12
        max_keys = len(full) * 2 // 3
        keep = max_keys - max_keys // 10 - 1   # and other->other, as Aggregator._evict
        for close in (True, False):
            col = run(datagrams, columnar=True, max_keys=max_keys, close=close)
            got = keys_of(col)
            assert totals(got) == totals(full)
            check_folded(full, got, keep)
            assert col.tenant_pairs() == truth.tenant_pairs()
            assert col.stats()["evicted_keys"] == len(full) - keep
        # nothing to fold: the very keys and counters of the per-record path
        col = run(datagrams, columnar=True, max_keys=10 ** 7, close=True)
        assert keys_of(col) == full and col.tenant_pairs() == truth.tenant_pairs()


def _ep(name: str, tenant: str) -> Endpoint:
    return Endpoint(port=f"{tenant}/net/{name}", network=f"{tenant}/net", tenant=tenant,
                    host="hv1")


def test_drain_groups_attributions_of_one_pair_and_sums_exactly_past_int64():
    a, b, c = _ep("a", "red"), _ep("b", "red"), _ep("c", "blue")
    unknown = Endpoint(address="10.9.9.9")
    attrs = [Attribution(a, b, "hv1", True), Attribution(a, b, "hv2", True),   # one pair
             Attribution(c, unknown, "hv1", True), Attribution(b, a, "hv1", True),
             Attribution(unknown, c, None, True)]
    big = 1 << 61
    p = Pending()
    tcp80 = (6 << 18) | (80 << 1) | 1
    for now in (T0, T0 + 1, T0 + 2):     # three bursts: 3 * 2**61 bytes on the first pair
        p.add(1_700_000_000.0, attrs, np.array([0, 1, 2, 3, 4]), np.full(5, tcp80),
              np.array([big // 2, big // 2, 7, 5, 3]), np.array([1, 1, 1, 1, 1]), now)
    batch, tenant_pairs, folded = p.drain(max_keys=4)        # 3 keys and other->other
    [(start, entries)] = batch.items()
    svc = service_of(tcp80)
    assert start == 1_700_000_000.0 and folded == 1
    assert entries[(a, b, svc)] == [3 * big, 6, T0, T0 + 2]
    assert entries[(c, unknown, svc)] == [21, 3, T0, T0 + 2]
    assert entries[(b, a, svc)] == [15, 3, T0, T0 + 2]
    assert entries[(OTHER, OTHER, None)] == [9, 3, T0, T0 + 2]
    assert tenant_pairs == {("red", "red"): [3 * big + 15, 9], ("blue", "unknown"): [21, 3],
                            ("unknown", "blue"): [9, 3]}
    assert not p and p.drain() == ({}, {}, 0)


def test_the_aggregator_takes_folded_batches_and_their_tenant_pairs():
    a, b = _ep("a", "red"), _ep("b", "red")
    agg = Aggregator(BUCKET, max_keys=10, clock=lambda: T0)
    agg.add_batch({1_700_000_000.0: {(a, b, None): [10, 1, T0, T0],
                                     (OTHER, OTHER, None): [5, 2, T0, T0]}},
                  tenant_pairs={("red", "red"): [12, 2], ("red", "unknown"): [3, 1]}, folded=4)
    agg.add_batch({1_700_000_000.0: {(a, b, None): [1, 1, T0, T0]}})   # per key, as before
    assert agg.tenant_pairs() == {("red", "red"): (13, 3), ("red", "unknown"): (3, 1)}
    assert agg.stats()["evicted_keys"] == 4
    assert {r["src"]: r["bytes"] for r in agg.matrix()} == {"red/net/a": 11, "other": 5}
