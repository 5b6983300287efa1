"""Rotating JSON Lines / CSV exports: schema, size/time rotation, file bound, periodic export."""
from __future__ import annotations

import csv
import json
import re

import pytest

from collectors.aggregate import Aggregator
from collectors.attribution import Endpoint
from collectors.export import (FIELDS, CsvWriter, JsonLinesWriter, PeriodicExporter, iso_time,
                               schema_row)


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ROW = {"src": "red/net/a", "dst": "unknown:203.0.113.9", "src_tenant": "red",
       "dst_tenant": None, "bytes": 1500, "packets": 3, "rate_bps": 1200.0,
       "first_seen": 1_700_000_001.25, "last_seen": 1_700_000_009.5}


def test_iso_time():
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_700_000_001.25) == "2023-11-14T22:13:21.250Z"
    assert iso_time(None) is None


def test_jsonl_schema(tmp_path):
    with JsonLinesWriter(tmp_path, clock=Clock()) as w:
        w.write([ROW], 1_700_000_000.0, 1_700_000_010.0, "vm")
    (f,) = w.files()
    assert f.name.startswith("weft-traffic-20231114T221320Z-") and f.suffix == ".jsonl"
    (line,) = f.read_text().splitlines()
    obj = json.loads(line)
    assert tuple(obj) == FIELDS
    assert obj["window_start"] == "2023-11-14T22:13:20.000Z"
    assert obj["window_end"] == "2023-11-14T22:13:30.000Z"
    assert (obj["by"], obj["src"], obj["dst_tenant"], obj["bytes"], obj["rate_bps"]) == (
        "vm", "red/net/a", None, 1500, 1200.0)
    assert all(ISO.match(obj[k]) for k in ("window_start", "window_end", "first_seen",
                                           "last_seen"))


def test_csv_schema_header_per_file(tmp_path):
    w = CsvWriter(tmp_path, max_bytes=400, clock=Clock())
    for _ in range(6):
        w.write([ROW], 1_700_000_000.0, 1_700_000_010.0, "network")
    w.close()
    files = w.files()
    assert len(files) > 1
    rows = []
    for f in files:
        with open(f, newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames) == FIELDS
            rows.extend(reader)
    assert len(rows) == 6
    assert rows[0]["dst_tenant"] == "" and rows[0]["bytes"] == "1500"
    assert rows[0]["by"] == "network" and ISO.match(rows[0]["first_seen"])


def test_size_rotation_bounds_files_and_keeps_newest(tmp_path):
    w = JsonLinesWriter(tmp_path, max_bytes=1000, max_files=3, clock=Clock())
    line_len = len(w.encode(schema_row(ROW, 0, 10, "vm")))
    for i in range(40):
        w.write([{**ROW, "bytes": i}], 0, 10, "vm")
    w.close()
    files = w.files()
    assert len(files) == 3
    assert w.rotations >= 10
    for f in files:
        assert f.stat().st_size <= 1000
    for f in files[:-1]:  # the current file may be partly filled
        assert f.stat().st_size > 1000 - line_len  # filled before rotating
    kept = [json.loads(x)["bytes"] for f in files for x in f.read_text().splitlines()]
    assert kept == list(range(40 - len(kept), 40))  # the newest, in order


def test_time_rotation(tmp_path):
    clock = Clock()
    w = JsonLinesWriter(tmp_path, max_age=60, clock=clock)
    w.write([ROW], 0, 10)
    clock.t += 30
    w.write([ROW], 0, 10)
    assert len(w.files()) == 1
    clock.t += 31
    w.write([ROW], 0, 10)
    w.close()
    files = w.files()
    assert len(files) == 2
    assert [len(f.read_text().splitlines()) for f in files] == [2, 1]


def test_existing_files_count_toward_the_bound(tmp_path):
    for i in range(5):
        (tmp_path / f"weft-traffic-20200101T00000{i}Z-0001.jsonl").write_text("{}\n")
    (tmp_path / "unrelated.jsonl").write_text("x\n")
    w = JsonLinesWriter(tmp_path, max_files=2, clock=Clock())
    w.write([ROW], 0, 10)
    w.close()
    assert len(w.files()) == 2
    assert (tmp_path / "unrelated.jsonl").exists()


def test_bad_writer_parameters(tmp_path):
    with pytest.raises(ValueError):
        JsonLinesWriter(tmp_path, max_files=0)
    with pytest.raises(ValueError):
        JsonLinesWriter(tmp_path, prefix="a/b")


def test_periodic_exporter_writes_each_closed_bucket_once(tmp_path):
    clock = Clock(1000.0)
    agg = Aggregator(bucket_seconds=10, clock=clock)
    a = Endpoint("red/net/a", "red/net", "red", "hv1")
    b = Endpoint("red/net/b", "red/net", "red", "hv2")
    w = JsonLinesWriter(tmp_path, clock=clock)
    flushes = []
    ex = PeriodicExporter(agg, [w], by=("vm", "tenant"), flush=lambda: flushes.append(1),
                          grace=1.0)
    agg.add(a, b, 100, 1, ts=1001.0)
    clock.t = 1005.0
    assert ex.export_closed() == 0  # bucket 1000 still open
    agg.add(a, b, 50, 1, ts=1012.0)
    clock.t = 1010.5
    assert ex.export_closed() == 0  # closed, but within the grace time
    clock.t = 1013.0
    assert ex.export_closed() == 2  # bucket 1000 as vm and as tenant rows
    assert flushes == [1]
    assert ex.export_closed() == 0  # not twice
    clock.t = 1015.0
    ex.stop(final=True)  # the partial bucket 1010-1015
    lines = [json.loads(x) for f in w.files() for x in f.read_text().splitlines()]
    assert [(x["by"], x["src"], x["bytes"], x["window_start"][-13:], x["window_end"][-13:])
            for x in lines] == [
        ("vm", "red/net/a", 100, "00:16:40.000Z", "00:16:50.000Z"),
        ("tenant", "red", 100, "00:16:40.000Z", "00:16:50.000Z"),
        ("vm", "red/net/a", 50, "00:16:50.000Z", "00:16:55.000Z"),
        ("tenant", "red", 50, "00:16:50.000Z", "00:16:55.000Z")]
    assert lines[0]["rate_bps"] == pytest.approx(80.0)
