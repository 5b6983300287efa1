"""History on disk: Parquet files partitioned by hour, with retention, compaction and DuckDB queries.

Layout (Hive-style partitions, so Spark, Trino, ClickHouse or DuckDB read it as it is):

    ROOT/TABLE/date=YYYY-MM-DD/hour=HH/PART.parquet        (UTC)

A writer hands a table name, the rows (columns as lists, times as unix seconds) and the
table's pyarrow schema; `write` puts them in one new file of one hour's partition (written
to a hidden temporary name, then renamed: a reader never sees half a file), `write_rows`
splits rows by the hour of a time column first. Every table gets the same care from
`maintain()`: an hour that ended more than `compact_after` seconds ago and holds several
files is rewritten as one file (queries open a file per hour, not one per write), and hours
that ended more than the retention ago are removed.

The interface for other writers (e.g. drop records):

    history.write_rows("drops", {"time": [...], "reason": [...], ...}, SCHEMA, "time")
    history.query("drops", "SELECT reason, sum(packets) FROM {rows} GROUP BY 1", since=t0)

`query` runs DuckDB over the files of the hours that overlap [since, until): `{rows}` in the
SQL stands for them (read with `union_by_name`, so a column added later reads as NULL in
older files); `$name` parameters come from `params`. Writes, compaction swaps and queries
hold `lock`, so weft's own queries never see a file twice or miss one mid-compaction.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from datetime import datetime, timezone

LOG = logging.getLogger(__name__)

HOUR = 3600
DEFAULT_RETENTION = 7 * 86400
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")
RESERVED = frozenset({"templates"})   # not tables: NetFlow/IPFIX templates (collectors.template_store)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})")


def hour_of(ts: float) -> float:
    """The start (unix seconds) of the UTC hour holding `ts`."""
    return (ts // HOUR) * HOUR


def partition_of(hour_start: float) -> str:
    """`date=YYYY-MM-DD/hour=HH` of an hour start."""
    dt = datetime.fromtimestamp(hour_start, tz=timezone.utc)
    return f"date={dt:%Y-%m-%d}/hour={dt:%H}"


def hour_of_partition(rel: str) -> float | None:
    """The hour start of a `date=.../hour=...` path, None if it is not one."""
    m = _PARTITION.fullmatch(rel)
    if m is None:
        return None
    try:
        dt = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H")
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc).timestamp()


def columns_to_table(columns: dict, schema):
    """A pyarrow Table from {name: list}; timestamp columns may be given as unix seconds."""
    import pyarrow as pa
    arrays = []
    n = None
    for f in schema:
        values = columns.get(f.name)
        if values is None:
            if n is None:
                n = len(next(iter(columns.values()))) if columns else 0
            arrays.append(pa.nulls(n, f.type))
            continue
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise ValueError(f"column {f.name!r} has {len(values)} values, others {n}")
        if pa.types.is_timestamp(f.type) and not isinstance(values, pa.Array) and values:
            scale = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[f.type.unit]
            values = pa.array([None if v is None else round(v * scale) for v in values],
                              pa.int64()).cast(f.type)
        arrays.append(values if isinstance(values, pa.Array) else pa.array(values, f.type))
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise ValueError(f"columns not in the schema: {', '.join(sorted(unknown))}")
    return pa.Table.from_arrays(arrays, schema=schema)


class History:
    """Hour-partitioned Parquet tables under `root` with retention (seconds, or a callable)."""

    def __init__(self, root: str, retention=DEFAULT_RETENTION, clock=time.time,
                 writer: str = "weft", compact_after: float = 300.0) -> None:
        self.root = os.path.abspath(root)
        self._retention = retention
        self.clock = clock
        self.writer = _SAFE.sub("_", writer)[:64] or "weft"
        self.compact_after = compact_after
        self.lock = threading.RLock()
        self._seq = 0
        self._con = None
        self.files_written = 0
        self.rows_written = 0
        self.hours_pruned = 0
        self.hours_compacted = 0
        os.makedirs(self.root, mode=0o750, exist_ok=True)

    @property
    def retention_seconds(self) -> float:
        r = self._retention
        return float(r() if callable(r) else r)

    # ------------------------------------------------------------------ writing

    def _table_dir(self, table: str) -> str:
        if not _TABLE.fullmatch(table or "") or table in RESERVED:
            raise ValueError(f"bad history table name {table!r} (lower-case letters, digits, _)")
        return os.path.join(self.root, table)

    def write(self, table: str, hour_start: float, columns, schema, _new_rows: bool = True) -> str | None:
        """Write rows (a {column: list} dict or a pyarrow Table) as one new file of the hour
        partition starting at `hour_start`; returns its path (None when there are no rows)."""
        import pyarrow.parquet as pq
        data = columns if hasattr(columns, "num_rows") else columns_to_table(columns, schema)
        if data.num_rows == 0:
            return None
        hour_start = hour_of(hour_start)
        directory = os.path.join(self._table_dir(table), partition_of(hour_start))
        with self.lock:
            self._seq += 1
            name = f"{self.writer}-{int(self.clock() * 1000)}-{os.getpid()}-{self._seq}.parquet"
            os.makedirs(directory, mode=0o750, exist_ok=True)
            path = os.path.join(directory, name)
            tmp = os.path.join(directory, f".{name}.tmp")
            try:
                pq.write_table(data, tmp, compression="zstd")
                os.replace(tmp, path)
            except BaseException:
                _unlink(tmp)
                raise
            if _new_rows:
                self.files_written += 1
                self.rows_written += data.num_rows
        return path

    def write_rows(self, table: str, columns, schema, time_column: str) -> list[str]:
        """Write rows (a {column: list} dict with `schema`, or a pyarrow Table) that may span
        several hours: split by the hour of `time_column` (a timestamp, or unix seconds), one
        file per hour. Returns the paths written."""
        import pyarrow as pa
        import pyarrow.compute as pc
        data = columns if hasattr(columns, "num_rows") else columns_to_table(columns, schema)
        if data.num_rows == 0:
            return []
        times = data.column(time_column)
        if pa.types.is_timestamp(times.type):
            hours = pc.divide(times.cast(pa.timestamp("us", tz=times.type.tz)).cast(pa.int64()),
                              HOUR * 1_000_000)
        else:
            hours = pc.floor(pc.divide(times.cast(pa.float64()), float(HOUR))).cast(pa.int64())
        unique = sorted(pc.unique(hours).to_pylist())
        paths = []
        for h in unique:
            part = data if len(unique) == 1 else data.filter(pc.equal(hours, h))
            path = self.write(table, h * HOUR, part, None)
            if path:
                paths.append(path)
        return paths

    # ------------------------------------------------------------------ reading

    def hours(self, table: str) -> dict[float, str]:
        """{hour start: partition directory} of a table."""
        base = self._table_dir(table)
        out = {}
        try:
            dates = os.listdir(base)
        except FileNotFoundError:
            return out
        for d in dates:
            try:
                hours = os.listdir(os.path.join(base, d))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for h in hours:
                start = hour_of_partition(f"{d}/{h}")
                if start is not None:
                    out[start] = os.path.join(base, d, h)
        return out

    def files(self, table: str, since: float | None = None, until: float | None = None,
              skip_hours=()) -> list[str]:
        """The Parquet files of the hours overlapping [since, until), oldest hour first
        (but those of the hours in `skip_hours`)."""
        out = []
        for start, directory in sorted(self.hours(table).items()):
            if since is not None and start + HOUR <= since:
                continue
            if until is not None and start >= until:
                continue
            if start in skip_hours:
                continue
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            out += [os.path.join(directory, n) for n in names
                    if n.endswith(".parquet") and not n.startswith(".")]
        return out

    def hour_of_file(self, table: str, path: str) -> float | None:
        """The hour start of the partition holding `path` (a file of `table`)."""
        rel = os.path.relpath(os.path.dirname(path), self._table_dir(table))
        return hour_of_partition(rel)

    def drop_hour(self, table: str, hour_start: float) -> None:
        """Remove one hour partition of a table."""
        directory = os.path.join(self._table_dir(table), partition_of(hour_of(hour_start)))
        with self.lock:
            shutil.rmtree(directory, ignore_errors=True)

    def _connection(self):
        if self._con is None:
            import duckdb
            self._con = duckdb.connect(config={"memory_limit": "1GB"})
        return self._con

    def query(self, table: str, sql: str, params: dict | None = None,
              since: float | None = None, until: float | None = None, arrow: bool = False):
        """Run `sql` (with `{rows}` standing for the table's files over [since, until)) in
        DuckDB: a list of tuples (a pyarrow Table with `arrow`); [] when no file covers the window."""
        with self.lock:
            files = self.files(table, since, until)
            if not files:
                return []
            return self.query_files(sql, {"rows": files}, params, arrow)

    def query_files(self, sql: str, files: dict, params: dict | None = None, arrow: bool = False):
        """Run `sql` where `{NAME}` stands for the Parquet files `files[NAME]` (each list
        non-empty; read with union_by_name, so columns added later read as NULL in older files)."""
        values = dict(params or {})
        for name, paths in files.items():
            if not paths:
                raise ValueError(f"no files for {{{name}}}")
            values[f"files_{name}"] = list(paths)
            sql = sql.replace("{%s}" % name, f"read_parquet($files_{name}, union_by_name = true, "
                                             f"hive_partitioning = false)")
        with self.lock:
            con = self._connection()
            if not arrow:
                return con.execute(sql, values).fetchall()
            rel = con.sql(sql, params=values)
            return (getattr(rel, "to_arrow_table", None) or rel.arrow)()   # DuckDB 2 / 1.x

    # ------------------------------------------------------------------ upkeep

    def tables(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root) if _TABLE.fullmatch(n) and n not in RESERVED
                          and os.path.isdir(os.path.join(self.root, n)))
        except FileNotFoundError:
            return []

    def prune(self, now: float | None = None) -> int:
        """Remove every hour partition that ended more than the retention ago; returns how many."""
        now = self.clock() if now is None else now
        horizon = now - self.retention_seconds
        removed = 0
        with self.lock:
            for table in self.tables():
                for start, directory in self.hours(table).items():
                    if start + HOUR <= horizon:
                        shutil.rmtree(directory, ignore_errors=True)
                        removed += 1
                base = os.path.join(self.root, table)
                for d in os.listdir(base):
                    path = os.path.join(base, d)
                    if d.startswith("date=") and os.path.isdir(path) and not os.listdir(path):
                        os.rmdir(path)
            self.hours_pruned += removed
        return removed

    def compact(self, now: float | None = None) -> int:
        """Rewrite each closed hour that holds several files as one file; returns how many."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        now = self.clock() if now is None else now
        done = 0
        for table in self.tables():
            for start, directory in sorted(self.hours(table).items()):
                if start + HOUR + self.compact_after > now:
                    continue
                names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
                for n in os.listdir(directory):          # a crash's leftovers
                    if n.startswith(".") and n.endswith(".tmp"):
                        _unlink(os.path.join(directory, n))
                parts = [os.path.join(directory, n) for n in names if n.endswith(".parquet")]
                if len(parts) < 2:
                    continue
                try:
                    merged = pa.concat_tables([pq.read_table(p) for p in parts],
                                              promote_options="default")
                except (OSError, pa.ArrowException) as exc:
                    LOG.warning("history: cannot compact %s: %s", directory, exc)
                    continue
                with self.lock:
                    self.write(table, start, merged, None, _new_rows=False)
                    for p in parts:
                        _unlink(p)
                done += 1
        self.hours_compacted += done
        return done

    def maintain(self, now: float | None = None) -> None:
        """Compaction then retention; errors are logged, never raised."""
        try:
            self.compact(now)
            self.prune(now)
        except Exception as exc:  # upkeep must not stop the writer
            LOG.warning("history upkeep in %s failed: %s", self.root, exc)

    def stats(self) -> dict:
        return {"root": self.root, "retention_seconds": self.retention_seconds,
                "files_written": self.files_written, "rows_written": self.rows_written,
                "hours_pruned": self.hours_pruned, "hours_compacted": self.hours_compacted}

    def close(self) -> None:
        with self.lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
