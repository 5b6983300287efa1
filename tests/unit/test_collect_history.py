"""Flow history on disk: Parquet hours that answer like memory, across restarts, with retention."""
import os
import random

import pytest

from collectors.aggregate import Aggregator
from collectors.attribution import Endpoint
from collectors.flow_history import FLOWS, FlowHistory
from collectors.history import HOUR, History, hour_of, partition_of
from collectors.service import CollectorService
from collectors.services import Service
from topology.duration import parse_duration, retention_seconds

T0 = 1_764_489_600.0          # 2025-11-30T08:00:00Z, an hour start


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def vm(tenant, name, host):
    return Endpoint(f"{tenant}/net/{name}", f"{tenant}/net", tenant, host)


VMS = [vm("red", f"r{i}", f"hv{i % 3}") for i in range(6)] + \
      [vm("blue", f"b{i}", f"hv{i % 3}") for i in range(4)] + \
      [Endpoint(address="10.9.9.9", tenant="red"), Endpoint(address="fa:16:3e:00:00:01")]
SERVICES = [Service(6, 80, True), Service(6, 80, False), Service(17, 53, True),
            Service(1, None, True), None]


def collector(clock, tmp_path, max_keys=1000):
    agg = Aggregator(10, 7200, max_keys=max_keys, clock=clock)
    svc = CollectorService(None, sflow=("127.0.0.1", 0), aggregator=agg, clock=clock)
    fh = FlowHistory(History(str(tmp_path), clock=clock), settle=0)
    fh.attach("sflow", svc)
    return agg, svc, fh


def traffic(agg, rng, start, seconds, n=400):
    for _ in range(n):
        src, dst = rng.sample(VMS, 2)
        agg.add(src, dst, rng.randint(60, 9000), rng.randint(1, 6),
                ts=start + rng.random() * seconds, service=rng.choice(SERVICES))


def strip(rows):
    """Rows without rate_bps (windows differ), times in microseconds (as on disk)."""
    return sorted(({k: round(v * 1e6) if k in ("first_seen", "last_seen") else v
                    for k, v in r.items() if k != "rate_bps"} for r in rows),
                  key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def answers(svc, since):
    return [strip(svc.matrix(since, by)) for by in ("vm", "network", "tenant")] + \
        [strip(svc.matrix(since, "vm", "blue")), strip(svc.flows(since)),
         strip(svc.flows(since, "red")), strip(svc.top(5, since, "tenant"))]


def reference(agg, since):
    return [strip(agg.matrix(since, by)) for by in ("vm", "network", "tenant")] + \
        [strip(agg.matrix(since, "vm", "blue")), strip(agg.flows(since)),
         strip(agg.flows(since, "red")), strip(agg.top(5, since, "tenant"))]


def test_history_answers_like_memory_before_between_and_after_writes(tmp_path):
    clock = Clock(T0 + 1800)
    agg, svc, fh = collector(clock, tmp_path)
    rng = random.Random(7)
    traffic(agg, rng, T0 + 1800 - 1700, 1700)
    for since in (None, T0 + 300, T0 + 1795):
        assert answers(svc, since) == reference(agg, since)      # nothing written yet
    written = fh.persist("sflow")
    assert written > 0 and fh.sources["sflow"].watermark == T0 + 1800
    assert fh.persist("sflow") == 0                               # nothing new is closed
    for since in (None, T0 + 300, T0 + 1795):
        assert answers(svc, since) == reference(agg, since)      # disk + memory, nothing twice
    clock.t += 95
    traffic(agg, rng, T0 + 1800, 95, 100)                          # some closed, one open bucket
    fh.persist("sflow")
    assert fh.sources["sflow"].watermark == T0 + 1890
    for since in (None, T0 + 1799, T0 + 1885):
        assert answers(svc, since) == reference(agg, since)
    fh.stop()                                                     # the open bucket too
    assert fh.sources["sflow"].watermark == float("inf")
    assert answers(svc, None) == reference(agg, None)
    assert strip(svc.matrix(until=T0 + 1800)) == strip(agg.matrix(until=T0 + 1800)) != []


def test_a_restarted_collector_reports_earlier_history_and_adds_its_own(tmp_path):
    clock = Clock(T0 + 600)
    agg1, svc1, fh1 = collector(clock, tmp_path)
    rng = random.Random(3)
    traffic(agg1, rng, T0, 605)          # the last bucket [T0+600, T0+610) is open at stop
    fh1.persist("sflow")
    fh1.stop()
    before = svc1.matrix(T0 - 10)
    assert before and sum(r["bytes"] for r in before) == sum(r["bytes"] for r in agg1.matrix())
    agg2, svc2, fh2 = collector(clock, tmp_path)      # new process: empty memory, same disk
    assert strip(svc2.matrix(T0 - 10)) == strip(before)
    assert strip(svc2.flows(T0 - 10)) == strip(svc1.flows(T0 - 10))
    a, b = VMS[0], VMS[1]
    agg2.add(a, b, 1000, 2, ts=T0 + 601, service=Service(6, 443, True))   # same bucket as run 1's
    clock.t = T0 + 700
    fh2.persist("sflow")
    combined = Aggregator(10, 7200, clock=clock)
    combined.add_batch({s: {(x, y, sv): [nb, np, f, la] for x, y, sv, nb, np, f, la in rows}
                        for s, rows in agg1.bucket_rows()})
    combined.add(a, b, 1000, 2, ts=T0 + 601, service=Service(6, 443, True))
    assert answers(svc2, T0 - 10) == reference(combined, T0 - 10)


def test_since_window_keeps_only_buckets_that_overlap_it(tmp_path):
    clock = Clock(T0 + 2 * HOUR)
    agg, svc, fh = collector(clock, tmp_path)
    a, b = VMS[0], VMS[1]
    agg.add(a, b, 100, 1, ts=T0 + 5)                # two hours ago
    agg.add(a, b, 10, 1, ts=T0 + HOUR + 1805)       # 25 min ago
    fh.persist("sflow")
    assert [r["bytes"] for r in svc.matrix(clock.t - 3600)] == [10]
    assert [r["bytes"] for r in svc.matrix(clock.t - 3 * 3600)] == [110]
    assert [r["bytes"] for r in svc.matrix(None, until=T0 + 10)] == [100]
    assert len(fh.history.files(FLOWS, clock.t - 3600)) == 1      # one hour's file opened


def test_retention_prunes_hours_that_ended_before_it(tmp_path):
    now = T0 + 30 * 86400
    clock = Clock(now)
    retention = [7 * 86400]
    history = History(str(tmp_path), retention=lambda: retention[0], clock=clock)
    schema = _drops_schema()
    ages = {"10d": now - 10 * 86400, "7d1h": now - 7 * 86400 - HOUR, "6d": now - 6 * 86400,
            "1h": now - HOUR}
    for t in ages.values():
        history.write("drops", t, {"time": [t], "reason": ["acl"], "packets": [1]}, schema)
    history.write("drops", now - 7 * 86400 + 60, {"time": [now - 7 * 86400 + 60],
                                                  "reason": ["acl"], "packets": [1]}, schema)
    assert len(history.hours("drops")) == 5
    assert history.prune() == 2                     # 10d and 7d1h ended before now - 7d
    left = set(history.hours("drops"))
    assert left == {hour_of(now - 7 * 86400 + 60), hour_of(ages["6d"]), hour_of(ages["1h"])}
    assert _total(history) == 3
    retention[0] = retention_seconds("2d")           # `weft traffic config --retention 2d`
    clock.t += 3600
    assert history.prune() == 2
    assert set(history.hours("drops")) == {hour_of(ages["1h"])}
    assert not any(d for d in os.listdir(tmp_path / "drops")
                   if not os.listdir(tmp_path / "drops" / d))     # no empty date directories
    assert history.prune() == 0


def test_closed_hours_are_compacted_to_one_file_with_the_same_rows(tmp_path):
    clock = Clock(T0)
    agg, svc, fh = collector(clock, tmp_path)
    rng = random.Random(11)
    for _ in range(5):
        clock.t += 600
        traffic(agg, rng, clock.t - 600, 600, 50)
        fh.persist("sflow")
    hour0 = fh.history.hours(FLOWS)[T0]
    assert len(os.listdir(hour0)) >= 2
    ref = answers(svc, None)
    assert fh.history.compact() == 0                  # the hour has not ended long enough
    clock.t = T0 + HOUR + 400
    fh.persist("sflow")
    assert fh.history.compact() == 1
    assert len([n for n in os.listdir(hour0) if n.endswith(".parquet")]) == 1
    assert answers(svc, None) == ref


def test_other_writers_use_the_generic_table_api(tmp_path):
    clock = Clock(T0 + 3 * HOUR)
    history = History(str(tmp_path), clock=clock)
    schema = _drops_schema()
    times = [T0 + 10, T0 + 20, T0 + HOUR + 5, T0 + 2 * HOUR + 1]
    paths = history.write_rows("drops", {"time": times, "reason": ["acl", "acl", "mtu", "acl"],
                                         "packets": [1, 2, 3, 4]}, schema, "time")
    assert len(paths) == 3 and all(partition_of(hour_of(t)) in p for t, p in zip(times[1:], paths))
    rows = history.query("drops", "SELECT reason, sum(packets) FROM {rows} WHERE epoch(time) >= $t "
                         "GROUP BY 1 ORDER BY 1", {"t": T0 + 15}, since=T0 + 15)
    assert rows == [("acl", 6), ("mtu", 3)]
    assert history.query("drops", "SELECT count(*) FROM {rows}", since=T0 + 5 * HOUR) == []
    import pyarrow as pa
    wider = pa.schema(list(schema) + [pa.field("host", pa.string())])
    history.write("drops", T0, {"time": [T0 + 30], "reason": ["acl"], "packets": [5],
                                "host": ["hv1"]}, wider)         # a column added later
    assert history.query("drops", "SELECT count(*), count(host) FROM {rows}") == [(5, 1)]
    for bad in ("Drops", "templates", "../x", ""):
        with pytest.raises(ValueError):
            history.write(bad, T0, {"time": [T0], "reason": ["x"], "packets": [1]}, schema)


def test_a_failed_write_is_retried_and_nothing_is_lost(tmp_path, monkeypatch):
    clock = Clock(T0 + 600)
    agg, svc, fh = collector(clock, tmp_path)
    traffic(agg, random.Random(5), T0, 590, 100)
    real = fh.history.write_rows

    def full(*a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fh.history, "write_rows", full)
    assert fh.persist("sflow") == 0 and fh.sources["sflow"].errors == 1
    assert fh.sources["sflow"].watermark == float("-inf")
    assert answers(svc, None) == reference(agg, None)             # memory still answers
    monkeypatch.setattr(fh.history, "write_rows", real)
    assert fh.persist("sflow") > 0
    assert answers(svc, None) == reference(agg, None)


def test_evicted_keys_are_kept_as_other(tmp_path):
    clock = Clock(T0 + 100)
    agg, svc, fh = collector(clock, tmp_path, max_keys=5)
    traffic(agg, random.Random(9), T0, 50, 200)
    fh.persist("sflow")
    rows = svc.matrix(None)
    assert any(r["src"] == "other" for r in rows)
    assert strip(rows) == strip(agg.matrix(None))


@pytest.mark.parametrize("text,seconds", [("1h", 3600), ("36h", 129600), ("7d", 604800),
                                          ("2w", 1209600), ("90m", 5400), ("3650d", 3650 * 86400)])
def test_retention_values(text, seconds):
    assert retention_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["7x", "", "7", "-1d", "0h", "59m", "3651d", "7 d", "٣d", "1.5h",
                                 None, 7, "1h;drop"])
def test_bad_retention_values_get_a_one_line_error(bad):
    with pytest.raises(ValueError) as exc:
        retention_seconds(bad)
    assert "\n" not in str(exc.value) and "retention" in str(exc.value)
    assert parse_duration(bad) is None or not 3600 <= parse_duration(bad) <= 3650 * 86400


def test_validate_refuses_a_bad_retention_in_the_traffic_config():
    import dataclasses

    from topology.errors import WeftError
    from topology.model import TrafficConfig
    from topology.validate import traffic_config
    traffic_config(TrafficConfig())
    assert TrafficConfig().retention == "7d"
    with pytest.raises(WeftError, match="retention must be a duration"):
        traffic_config(dataclasses.replace(TrafficConfig(), retention="forever"))


def test_weft_collect_refuses_a_bad_retention(capsys, tmp_path):
    from collectors.cli import main
    assert main(["--sflow", "127.0.0.1:0", "--history", str(tmp_path), "--retention", "7x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--retention" in err
    assert not os.listdir(tmp_path)                   # nothing made


def _drops_schema():
    import pyarrow as pa
    return pa.schema([("time", pa.timestamp("us", tz="UTC")), ("reason", pa.string()),
                      ("packets", pa.int64())])


def _total(history):
    rows = history.query("drops", "SELECT sum(packets) FROM {rows}")
    return rows[0][0] if rows else 0


def test_hourly_sums_answer_like_the_buckets_and_late_rows_unroll_them(tmp_path):
    from collectors.flow_history import FLOWS_HOURLY
    clock = Clock(T0)
    agg, svc, fh = collector(clock, tmp_path)
    agg.retention_seconds = 6 * HOUR
    rng = random.Random(13)
    for _ in range(3 * 6):                      # three hours, written every 10 minutes
        clock.t += 600
        traffic(agg, rng, clock.t - 600, 600, 60)
        fh.persist("sflow")
    clock.t += 400
    windows = [(None, None), (T0, None), (T0 + 1234, None), (T0 + HOUR, T0 + 2 * HOUR),
               (T0 + 30, T0 + 3 * HOUR - 30), (None, T0 + HOUR + 5)]
    before = [answers_window(svc, s, u) for s, u in windows]
    assert before == [reference_window(agg, s, u) for s, u in windows]
    assert fh.rollup() == 3 and fh.rollup() == 0
    assert sorted(fh.history.hours(FLOWS_HOURLY)) == [T0, T0 + HOUR, T0 + 2 * HOUR]
    fine = fh.history.query(FLOWS, "SELECT count(*) FROM {rows}")[0][0]
    summed = fh.history.query(FLOWS_HOURLY, "SELECT count(*) FROM {rows}")[0][0]
    assert summed < fine
    assert [answers_window(svc, s, u) for s, u in windows] == before   # same answers
    # a late write into a summed hour (e.g. after a failed write) drops that hour's sum
    late = Aggregator(10, 7 * 86400, clock=clock)
    late.add(VMS[0], VMS[1], 777, 1, ts=T0 + 100)
    fh2 = FlowHistory(fh.history, settle=0)
    svc2 = CollectorService(None, sflow=("127.0.0.1", 0), aggregator=late, clock=clock)
    fh2.attach("sflow", svc2)
    fh2.persist("sflow", final=True)
    assert sorted(fh.history.hours(FLOWS_HOURLY)) == [T0 + HOUR, T0 + 2 * HOUR]
    total = sum(r["bytes"] for r in svc.matrix(None))
    assert total == sum(r["bytes"] for r in agg.matrix(None)) + 777
    assert fh.rollup() == 1
    assert sum(r["bytes"] for r in svc.matrix(None)) == total


def answers_window(svc, since, until):
    return [strip(svc.matrix(since, by, until=until)) for by in ("vm", "tenant")] + \
        [strip(svc.flows(since, until=until))]


def reference_window(agg, since, until):
    return [strip(agg.matrix(since, by, until=until)) for by in ("vm", "tenant")] + \
        [strip(agg.flows(since, until=until))]
