"""Rotating JSON Lines and CSV files of aggregated traffic rows, and a periodic bucket exporter.

Schema, version 1 - one row per (src, dst) pair per exported window; the same fields in
this order in both formats (CSV: a header line starts every file; JSON Lines: one object
per line, UTF-8):

  window_start  ISO 8601 UTC, millisecond precision, e.g. "2024-05-01T12:00:10.000Z":
                start of the aggregated window (inclusive)
  window_end    end of the window (exclusive), same format
  by            "vm" | "network" | "tenant": what src/dst name
  src, dst      "TENANT/NET/PORT" (vm), "TENANT/NET" (network) or "TENANT" (tenant);
                "unknown:<ip or mac>" for an address no port has; "other" for the keys
                folded together when a bucket hit its key limit
  src_tenant, dst_tenant  tenant the endpoint was seen in; JSON null / empty CSV cell if unknown
  bytes         integer, bytes in the window with sampling undone (layer-2 frame bytes for
                sFlow and IPFIX layer2OctetDeltaCount, layer-3 bytes for NetFlow)
  packets       integer, packets in the window with sampling undone
  rate_bps      number, bits per second averaged over the window (bytes * 8 / seconds)
  first_seen, last_seen  ISO 8601 UTC (as window_start): first and last collector receive
                time of a record of this pair in the window

Files are named `<prefix>-<YYYYmmddTHHMMSS>Z-<n>.jsonl|.csv` (creation time, UTC; the name
order is the time order). A file is closed and a new one started when the next row would
take it past `max_bytes`, or when it is older than `max_age` seconds; at most `max_files`
files with the prefix and suffix are kept in the directory (the oldest are deleted).
"""
from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
FIELDS = ("window_start", "window_end", "by", "src", "dst", "src_tenant", "dst_tenant",
          "bytes", "packets", "rate_bps", "first_seen", "last_seen")
_TIME_FIELDS = ("window_start", "window_end", "first_seen", "last_seen")


def iso_time(ts: float | None) -> str | None:
    """Unix seconds -> "YYYY-mm-ddTHH:MM:SS.mmmZ" (UTC)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def schema_row(row: dict, window_start: float, window_end: float, by: str) -> dict:
    """One Aggregator.matrix row as an export record (FIELDS, in order)."""
    out = {"window_start": window_start, "window_end": window_end, "by": by}
    for f in FIELDS[3:]:
        out[f] = row.get(f)
    for f in _TIME_FIELDS:
        out[f] = iso_time(out[f])
    return out


class RotatingWriter:
    """Appends encoded lines to size/time-rotated files; subclasses encode rows."""

    suffix = ".txt"

    def __init__(self, directory, prefix: str = "weft-traffic", max_bytes: int = 64 << 20,
                 max_age: float = 3600.0, max_files: int = 24, clock=time.time) -> None:
        if max_bytes < 1 or max_files < 1 or not max_age > 0:
            raise ValueError("max_bytes, max_files and max_age must be positive")
        if not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"bad file prefix {prefix!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = int(max_bytes)
        self.max_age = float(max_age)
        self.max_files = int(max_files)
        self.clock = clock
        self.rows_written = 0
        self.rotations = 0
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._n = 0
        self._lock = threading.Lock()

    # -- subclass hooks

    def header(self) -> bytes:
        return b""

    def encode(self, record: dict) -> bytes:
        raise NotImplementedError

    # -- files

    def files(self) -> list[Path]:
        """This writer's files in the directory, oldest first."""
        return sorted(p for p in self.directory.glob(f"{self.prefix}-*{self.suffix}")
                      if p.is_file())

    @property
    def path(self) -> Path | None:
        return self._path

    def _open(self) -> None:
        now = self.clock()
        stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
        while True:
            self._n += 1
            path = self.directory / f"{self.prefix}-{stamp}Z-{self._n:04d}{self.suffix}"
            if not path.exists():
                break
        self._file = open(path, "wb")
        self._path = path
        self._opened = now
        head = self.header()
        self._file.write(head)
        self._size = len(head)
        self._prune()

    def _prune(self) -> None:
        files = self.files()
        for old in files[:max(0, len(files) - self.max_files)]:
            if old != self._path:
                try:
                    old.unlink()
                except OSError:
                    pass

    def _rotate(self) -> None:
        self._close()
        self.rotations += 1
        self._open()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write_records(self, records: list[dict]) -> int:
        """Write export records (dicts with FIELDS); returns how many."""
        with self._lock:
            if self._file is None:
                self._open()
            elif self.clock() - self._opened >= self.max_age:
                self._rotate()
            head = len(self.header())
            for rec in records:
                line = self.encode(rec)
                if self._size > head and self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._file.write(line)
                self._size += len(line)
                self.rows_written += 1
            self._file.flush()
            return len(records)

    def write(self, rows: list[dict], window_start: float, window_end: float,
              by: str = "vm") -> int:
        """Write Aggregator.matrix rows of one window."""
        return self.write_records([schema_row(r, window_start, window_end, by) for r in rows])

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonLinesWriter(RotatingWriter):
    suffix = ".jsonl"

    def encode(self, record: dict) -> bytes:
        return (json.dumps({f: record.get(f) for f in FIELDS}, separators=(",", ":"))
                + "\n").encode()


class CsvWriter(RotatingWriter):
    suffix = ".csv"

    def _line(self, values) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue().encode()

    def header(self) -> bytes:
        return self._line(FIELDS)

    def encode(self, record: dict) -> bytes:
        return self._line(["" if record.get(f) is None else record.get(f) for f in FIELDS])


class PeriodicExporter:
    """Writes every closed aggregation bucket once, grouped by each of `by`, to `writers`.

    A bucket is exported once it ended `grace` seconds ago, after calling `flush` (e.g.
    CollectorService.flush, so the receivers' pending batches are in the aggregator)."""

    def __init__(self, aggregator, writers: list[RotatingWriter], by=("vm",),
                 interval: float | None = None, clock=None, flush=None,
                 grace: float = 0.5) -> None:
        self.aggregator = aggregator
        self.writers = list(writers)
        self.by = tuple(by)
        self.interval = interval if interval is not None else aggregator.bucket_seconds
        self.clock = clock if clock is not None else aggregator.clock
        self.flush = flush
        self.grace = grace
        self.exported_until = aggregator.bucket_of(self.clock())
        self.windows = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def export(self, until: float) -> int:
        """Export [exported_until, until) if non-empty; returns rows written per writer."""
        since = self.exported_until
        if until <= since:
            return 0
        if self.flush is not None:
            self.flush()
        n = 0
        for by in self.by:
            rows = self.aggregator.matrix(since=since, until=until, by=by)
            for w in self.writers:
                w.write(rows, since, until, by)
            n += len(rows)
        self.exported_until = until
        self.windows += 1
        return n

    def export_closed(self, now: float | None = None) -> int:
        """Export the buckets that ended at least `grace` seconds before `now`."""
        now = self.clock() if now is None else now
        return self.export(self.aggregator.bucket_of(now - self.grace))

    def start(self) -> PeriodicExporter:
        self._thread = threading.Thread(target=self._run, name="collect-export", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.export_closed()
            except Exception:  # a full disk must not stop the collector
                self.errors += 1

    def stop(self, final: bool = True) -> None:
        """Stop the thread; `final` also writes the current partial window."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if final:
            try:
                self.export(self.clock())
            except Exception:
                self.errors += 1
        for w in self.writers:
            w.close()
