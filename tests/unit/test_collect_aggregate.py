"""Aggregation: buckets, since/until windows, grouping, top, totals, retention and key limits."""
from __future__ import annotations

import pytest

from collectors.aggregate import Aggregator
from collectors.attribution import Endpoint


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ep(ref: str | None, host: str | None = None, address: str | None = None,
       tenant: str | None = None) -> Endpoint:
    if ref is None:
        return Endpoint(None, None, tenant, host, address)
    t, n, _p = ref.split("/")
    return Endpoint(ref, f"{t}/{n}", t, host)


RA, RB, RC = ep("red/net/a", "hv1"), ep("red/net/b", "hv2"), ep("red/web/c", "hv2")
BA, BB = ep("blue/net/a", "hv1"), ep("blue/net/b", "hv2")
EXT = ep(None, address="203.0.113.9", tenant="red")


@pytest.fixture
def agg():
    clock = Clock(1000.0)
    a = Aggregator(bucket_seconds=10, retention_seconds=60, clock=clock)
    a.clock_ = clock
    return a


def row(rows, src, dst):
    (r,) = [r for r in rows if r["src"] == src and r["dst"] == dst]
    return r


def test_buckets_since_until_and_rate(agg):
    agg.add(RA, RB, 1000, 1, ts=1000.0)
    agg.add(RA, RB, 500, 2, ts=1005.0)
    agg.add(RA, RB, 4000, 4, ts=1012.0)
    agg.clock_.t = 1020.0
    r = row(agg.matrix(), "red/net/a", "red/net/b")
    assert (r["bytes"], r["packets"], r["first_seen"], r["last_seen"]) == (5500, 7, 1000.0, 1012.0)
    assert r["rate_bps"] == pytest.approx(5500 * 8 / 20)
    late = agg.matrix(since=1010.0)
    assert row(late, "red/net/a", "red/net/b")["bytes"] == 4000
    assert row(late, "red/net/a", "red/net/b")["rate_bps"] == pytest.approx(4000 * 8 / 10)
    early = agg.matrix(until=1010.0)
    assert row(early, "red/net/a", "red/net/b")["bytes"] == 1500
    assert agg.matrix(since=1030.0) == []


def test_grouping_by_vm_network_tenant_and_tenant_filter(agg):
    agg.add(RA, RB, 100, 1, ts=1000)
    agg.add(RA, RC, 200, 1, ts=1000)
    agg.add(BA, BB, 50, 1, ts=1000)
    agg.add(RA, EXT, 7, 1, ts=1000)
    vm = agg.matrix(by="vm")
    assert [(r["src"], r["dst"], r["bytes"]) for r in vm] == [
        ("red/net/a", "red/web/c", 200), ("red/net/a", "red/net/b", 100),
        ("blue/net/a", "blue/net/b", 50), ("red/net/a", "unknown:203.0.113.9", 7)]
    net = agg.matrix(by="network")
    assert row(net, "red/net", "red/net")["bytes"] == 100
    assert row(net, "red/net", "red/web")["bytes"] == 200
    ten = agg.matrix(by="tenant")
    assert row(ten, "red", "red") == {**row(ten, "red", "red"), "bytes": 300, "packets": 2,
                                      "src_tenant": "red", "dst_tenant": "red"}
    assert row(ten, "blue", "blue")["bytes"] == 50
    assert row(ten, "red", "unknown:203.0.113.9")["dst_tenant"] == "red"
    only_blue = agg.matrix(by="tenant", tenant="blue")
    assert [(r["src"], r["dst"]) for r in only_blue] == [("blue", "blue")]
    with pytest.raises(ValueError):
        agg.matrix(by="host")


def test_unknowns_of_different_tenants_are_separate_rows(agg):
    agg.add(ep(None, address="10.0.0.5", tenant="red"), EXT, 1, 1, ts=1000)
    agg.add(ep(None, address="10.0.0.5", tenant="blue"), EXT, 2, 1, ts=1000)
    rows = agg.matrix()
    assert sorted((r["src"], r["src_tenant"], r["bytes"]) for r in rows) == [
        ("unknown:10.0.0.5", "blue", 2), ("unknown:10.0.0.5", "red", 1)]
    assert [r["bytes"] for r in agg.matrix(tenant="blue")] == [2]


def test_top_orders_by_bytes(agg):
    for i, (s, d) in enumerate(((RA, RB), (RB, RA), (BA, BB), (BB, BA))):
        agg.add(s, d, (i + 1) * 100, 1, ts=1000)
    assert [(r["src"], r["bytes"]) for r in agg.top(2)] == [("blue/net/b", 400),
                                                         ("blue/net/a", 300)]
    assert [r["src"] for r in agg.top(1, by="tenant")] == ["blue"]
    assert agg.top(0) == []


def test_host_and_network_totals(agg):
    agg.add(RA, RB, 100, 1, ts=1000)
    agg.add(RB, RA, 30, 3, ts=1000)
    agg.add(BA, EXT, 5, 1, ts=1000)
    agg.clock_.t = 1010.0
    hosts = {r["host"]: r for r in agg.host_totals()}
    assert (hosts["hv1"]["tx_bytes"], hosts["hv1"]["rx_bytes"]) == (105, 30)
    assert (hosts["hv2"]["tx_bytes"], hosts["hv2"]["rx_packets"]) == (30, 1)
    assert hosts["hv1"]["tx_bps"] == pytest.approx(105 * 8 / 10)
    nets = {r["network"]: r for r in agg.network_totals()}
    assert (nets["red/net"]["tx_bytes"], nets["red/net"]["rx_bytes"]) == (130, 130)
    assert nets["blue/net"]["tx_bytes"] == 5 and nets["blue/net"]["rx_bytes"] == 0
    assert [r["network"] for r in agg.network_totals(tenant="blue")] == ["blue/net"]


def test_retention_drops_old_buckets(agg):
    agg.add(RA, RB, 1, 1, ts=1000)
    agg.clock_.t = 1100.0  # 60 s retention: the 1000 bucket is gone at the next add
    agg.add(RB, RA, 2, 1, ts=1100)
    assert agg.stats()["buckets"] == 1
    assert [r["bytes"] for r in agg.matrix()] == [2]
    assert agg.stats()["dropped_buckets"] == 1
    assert agg.tenant_pairs()[("red", "red")] == (3, 2)  # cumulative counters keep everything


def test_key_limit_folds_smallest_into_other_and_keeps_totals():
    clock = Clock(1000.0)
    agg = Aggregator(bucket_seconds=10, retention_seconds=60, max_keys=20, clock=clock)
    total = 0
    for i in range(100):
        src = ep(None, address=f"10.9.0.{i}")
        agg.add(src, RB, i + 1, 1, ts=1000)
        total += i + 1
    st = agg.stats()
    assert st["keys"] <= 20 and st["evicted_keys"] > 0
    rows = agg.matrix()
    assert sum(r["bytes"] for r in rows) == total
    assert sum(r["packets"] for r in rows) == 100
    other = row(rows, "other", "other")
    kept = [r for r in rows if r["src"] != "other"]
    assert min(r["bytes"] for r in kept) > 50  # the largest survive
    assert other["bytes"] == total - sum(r["bytes"] for r in kept)


def test_tenant_pairs_are_cumulative_and_bounded():
    agg = Aggregator(max_pairs=2, clock=Clock())
    agg.add(RA, RB, 10, 1)
    agg.add(BA, BB, 20, 2)
    agg.add(RA, EXT, 5, 1)  # a third pair: overflow
    agg.add(RA, RB, 1, 1)
    assert agg.tenant_pairs() == {("red", "red"): (11, 2), ("blue", "blue"): (20, 2),
                                  ("other", "other"): (5, 1)}


def test_add_batch_merges_first_and_last():
    agg = Aggregator(clock=Clock())
    agg.add_batch({1000.0: {(RA, RB): [10, 1, 1001.0, 1002.0]}})
    agg.add_batch({1000.0: {(RA, RB): [5, 1, 1000.5, 1001.5]}})
    r = row(agg.matrix(), "red/net/a", "red/net/b")
    assert (r["bytes"], r["first_seen"], r["last_seen"]) == (15, 1000.5, 1002.0)


def test_bad_parameters_rejected():
    for kw in ({"bucket_seconds": 0}, {"bucket_seconds": 10, "retention_seconds": 5},
               {"max_keys": 0}):
        with pytest.raises(ValueError):
            Aggregator(**kw)
