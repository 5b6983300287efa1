"""Flow history: a collector's closed buckets written to the `flows` table, read back seamlessly.

`FlowHistory(history).attach(source, service)` follows a CollectorService's Aggregator: every
`flush_seconds` (and at `stop()`, with the open bucket too) the buckets not yet written go to
the hour-partitioned Parquet table `flows` (collectors.history), one row per bucket and
(src endpoint, dst endpoint, service). The service's matrix/top/flows then answer from the
files *and* the memory: rows of this run's buckets that are on disk come from disk only
(`watermark`: every bucket of this run that starts before it is written, none after it is),
so a bucket is never counted twice, and history written before a restart is there after it.

Table `flows`, one Parquet row per (bucket, src, dst, service) - the schema other engines see:

    collector       string      who wrote it (host name of weftd / weft collect by default)
    source          string      sflow | netflow | ipfix (weftd), collect (weft collect)
    bucket_start    timestamp   start of the time bucket (UTC, microseconds)
    bucket_seconds  double      its length
    src, dst        string      the matrix label: TENANT/NET/PORT, unknown:<ip or mac>, other
    src_vm, dst_vm  string      the port (TENANT/NET/PORT), NULL when not a known port
    src_network, dst_network    TENANT/NET
    src_tenant, dst_tenant      tenant the endpoint was seen in (NULL: not known)
    src_host, dst_host          hypervisor the port is bound on
    src_address, dst_address   raw IP or MAC of an endpoint that is no known port
    proto           smallint    IP protocol number (NULL: not known)
    service_port    integer     the server's port (NULL: none, e.g. ICMP)
    to_server       boolean     the bytes went from the client to the server
    bytes, packets  bigint      with sampling undone
    first_seen, last_seen  timestamp   first and last receive time in the bucket

Grouping as the live matrix does: by network, a known endpoint is src_network and an unknown
one its `src` label; by tenant likewise with src_tenant.

Table `flows_hourly` has the same columns, one row per hour (bucket_seconds 3600) and (src,
dst, service): each hour of `flows` summed once it has closed (`rollup`). A query reads it for
the hours its window covers whole and `flows` only for the hours at its edges, so `--since 24h`
reads 22-23 hourly sums instead of 8,640 buckets (an hour written again later - a write that
had failed - loses its sum until the next rollup).
"""
from __future__ import annotations

import logging
import socket
import threading
import time

from .aggregate import BY, endpoint_label
from .history import HOUR, columns_to_table
from .services import Service
from .services import label as service_label

LOG = logging.getLogger(__name__)
FLOWS = "flows"
FLOWS_HOURLY = "flows_hourly"
NEG_INF = float("-inf")

_ENDPOINT = ("", "_vm", "_network", "_tenant", "_host", "_address")
_MEASURES = {"bytes": "sum", "packets": "sum", "first_seen": "min", "last_seen": "max",
             "bucket_start": None, "bucket_seconds": None}


def flows_schema():
    import pyarrow as pa
    ts = pa.timestamp("us", tz="UTC")
    fields = [("collector", pa.string()), ("source", pa.string()), ("bucket_start", ts),
              ("bucket_seconds", pa.float64())]
    for side in ("src", "dst"):
        fields += [(side + suffix, pa.string()) for suffix in _ENDPOINT]
    fields += [("proto", pa.int16()), ("service_port", pa.int32()), ("to_server", pa.bool_()),
               ("bytes", pa.int64()), ("packets", pa.int64()),
               ("first_seen", ts), ("last_seen", ts)]
    return pa.schema(fields)


def _label_sql(side: str, by: str) -> str:
    if by == "vm":
        return side
    column = f"{side}_network" if by == "network" else f"{side}_tenant"
    return f"CASE WHEN {side}_vm IS NULL THEN {side} ELSE {column} END"


class _Source:
    __slots__ = ("name", "service", "watermark", "errors")

    def __init__(self, name, service):
        self.name, self.service = name, service
        self.watermark = NEG_INF   # buckets of this run starting before it are on disk
        self.errors = 0


class FlowHistory:
    """Writes attached collectors' buckets to `history` and merges them into their queries."""

    def __init__(self, history, flush_seconds: float = 60.0, collector: str | None = None,
                 settle: float = 2.0) -> None:
        self.history = history
        self.flush_seconds = flush_seconds
        self.collector = collector or socket.gethostname()
        self.settle = settle          # a bucket is closed `settle` seconds after its end
        self.clock = history.clock
        self.sources: dict[str, _Source] = {}
        self._schema = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, source: str, service) -> None:
        """Record `service`'s aggregator as `source`; its matrix/flows/top read history too."""
        self.sources[source] = _Source(source, service)
        service.history = _Reader(self, source)

    # ------------------------------------------------------------------ writing

    def start(self) -> FlowHistory:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flow-history", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.history.maintain()
        self.rollup()
        while not self._stop.wait(self.flush_seconds):
            self.persist_all()
            self.history.maintain()
            self.rollup()

    def stop(self) -> None:
        """Stop the writer and write every bucket left, the open ones too."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        self.persist_all(final=True)

    def persist_all(self, final: bool = False) -> int:
        return sum(self.persist(name, final) for name in list(self.sources))

    def persist(self, source: str, final: bool = False) -> int:
        """Write the closed buckets of `source` not written yet (all of them when `final`);
        returns the rows written. A failed write is logged and retried next time."""
        src = self.sources[source]
        agg = src.service.aggregator
        with self.history.lock:
            cutoff = float("inf") if final else agg.bucket_of(self.clock() - self.settle)
            if cutoff <= src.watermark:
                return 0
            src.service.flush()
            buckets = agg.bucket_rows(None if src.watermark == NEG_INF else src.watermark,
                                      None if final else cutoff)
            rows = self.table(source, agg.bucket_seconds, buckets)
            try:
                if rows.num_rows:
                    paths = self.history.write_rows(FLOWS, rows, None, "bucket_start")
                    self._unroll(paths)
            except Exception as exc:
                src.errors += 1
                LOG.warning("flow history: cannot write %s buckets: %s", source, exc)
                return 0
            src.watermark = cutoff
            return rows.num_rows

    def _unroll(self, paths) -> None:
        """Drop the hourly sums of hours just written to (late rows; rebuilt by `rollup`)."""
        rolled = self.history.hours(FLOWS_HOURLY)
        for path in paths:
            hour = self.history.hour_of_file(FLOWS, path)
            if hour in rolled:
                self.history.drop_hour(FLOWS_HOURLY, hour)

    def rollup(self, now: float | None = None) -> int:
        """Sum each closed hour of `flows` that has no `flows_hourly` sum yet; returns how many.
        Errors are logged, never raised."""
        h = self.history
        now = self.clock() if now is None else now
        done = 0
        try:
            rolled = h.hours(FLOWS_HOURLY)
            for start in sorted(h.hours(FLOWS)):
                if start in rolled or start + HOUR + h.compact_after > now:
                    continue
                with h.lock:
                    files = h.files(FLOWS, start, start + HOUR)
                    if not files:
                        continue
                    names = self.schema.names
                    dims = [n for n in names if n not in _MEASURES]
                    select = ", ".join(
                        "to_timestamp($hour) AS bucket_start" if n == "bucket_start" else
                        "3600.0::DOUBLE AS bucket_seconds" if n == "bucket_seconds" else
                        f"{_MEASURES[n]}({n}) AS {n}" if n in _MEASURES else n for n in names)
                    group = ", ".join(n for n in dims if n not in ("bucket_start", "bucket_seconds"))
                    table = h.query_files(f"SELECT {select} FROM {{rows}} GROUP BY {group}",
                                          {"rows": files}, {"hour": start}, arrow=True)
                    h.write(FLOWS_HOURLY, start, table.cast(self.schema), None, _new_rows=False)
                done += 1
        except Exception as exc:
            LOG.warning("flow history: hourly sums failed: %s", exc)
        return done

    @property
    def schema(self):
        if self._schema is None:
            self._schema = flows_schema()
        return self._schema

    def table(self, source: str, bucket_seconds: float, buckets: list):
        """The `flows` rows of Aggregator.bucket_rows output, as a pyarrow Table.

        Endpoints and services repeat across rows and buckets: each distinct one is turned
        into its column values once, and rows carry indexes into them (Arrow's `take` builds
        the columns), which makes this several times faster than appending every value."""
        import pyarrow as pa
        ep_index: dict = {}
        svc_index: dict = {}
        src_i, dst_i, svc_i = [], [], []
        bstart, nbytes, npackets, first_seen, last_seen = [], [], [], [], []
        for start, entries in buckets:
            for src, dst, svc, nb, np, first, last in entries:
                i = ep_index.get(src)
                if i is None:
                    i = ep_index[src] = len(ep_index)
                j = ep_index.get(dst)
                if j is None:
                    j = ep_index[dst] = len(ep_index)
                k = svc_index.get(svc)
                if k is None:
                    k = svc_index[svc] = len(svc_index)
                src_i.append(i)
                dst_i.append(j)
                svc_i.append(k)
                bstart.append(start)
                nbytes.append(nb)
                npackets.append(np)
                first_seen.append(first)
                last_seen.append(last)
        n = len(nbytes)
        schema = self.schema
        eps = [(endpoint_label(ep, "vm"), ep.port, ep.network, ep.tenant, ep.host, ep.address)
               for ep in ep_index]
        svcs = [(None, None, None) if svc is None else (svc.proto, svc.port, svc.to_server)
                for svc in svc_index]
        src_idx, dst_idx = pa.array(src_i, pa.int32()), pa.array(dst_i, pa.int32())
        svc_idx = pa.array(svc_i, pa.int32())
        columns = {"collector": pa.array([self.collector] * n, pa.string()),
                   "source": pa.array([source] * n, pa.string()),
                   "bucket_start": bstart,
                   "bucket_seconds": pa.array([float(bucket_seconds)] * n, pa.float64())}
        for side, idx in (("src", src_idx), ("dst", dst_idx)):
            for k, suffix in enumerate(_ENDPOINT):
                values = pa.array([e[k] for e in eps], pa.string())
                columns[side + suffix] = values.take(idx)
        for k, name in enumerate(("proto", "service_port", "to_server")):
            values = pa.array([v[k] for v in svcs], schema.field(name).type)
            columns[name] = values.take(svc_idx)
        columns.update(bytes=nbytes, packets=npackets, first_seen=first_seen, last_seen=last_seen)
        return columns_to_table(columns, schema)

    # ------------------------------------------------------------------ reading

    def _disk(self, source: str, select: str, since, until, tenant, group: str) -> list[tuple]:
        """Grouped sums from disk: hourly sums for the hours the window covers whole, buckets
        for the others. Caller holds the history lock."""
        where = ["source = $source"]
        params = {"source": source}
        if since is not None:
            where.append("epoch(bucket_start) + bucket_seconds > $since")
            params["since"] = since
        if until is not None:
            where.append("epoch(bucket_start) < $until")
            params["until"] = until
        if tenant is not None:
            where.append("(src_tenant = $tenant OR dst_tenant = $tenant)")
            params["tenant"] = tenant
        h = self.history
        lo = float("-inf") if since is None else -(-since // HOUR) * HOUR
        hi = float("inf") if until is None else (until // HOUR) * HOUR
        hourly = h.hours(FLOWS_HOURLY)
        whole = {s for s in hourly if lo <= s and s + HOUR <= hi}
        files = {"fine": h.files(FLOWS, since, until, skip_hours=whole),
                 "hourly": h.files(FLOWS_HOURLY, since, until, skip_hours=set(hourly) - whole)}
        files = {k: v for k, v in files.items() if v}
        if not files:
            return []
        rows = " UNION ALL BY NAME ".join(f"SELECT * FROM {{{k}}}" for k in files)
        sql = (f"SELECT {select}, sum(bytes)::BIGINT, sum(packets)::BIGINT, "
               f"min(epoch(first_seen)), max(epoch(last_seen)) FROM ({rows}) "
               f"WHERE {' AND '.join(where)} GROUP BY {group}")
        return h.query_files(sql, files, params)

    def _flushed(self, source: str):
        """The source's aggregator, with the receivers' pending records merged into it."""
        svc = self.sources[source].service
        svc.flush()
        return svc.aggregator

    def _memory_since(self, source: str, since):
        """`since` for the aggregator's part of a query - only the buckets not on disk -
        or False when every bucket is on disk (after `stop`)."""
        w = self.sources[source].watermark
        if w == float("inf"):
            return False
        if w == NEG_INF or (since is not None and since >= w):
            return since
        return w

    def matrix(self, source: str, since=None, by: str = "vm", tenant=None, until=None) -> list[dict]:
        if by not in BY:
            raise ValueError(f"unknown grouping {by!r} (vm, network or tenant)")
        rows: dict = {}
        with self.history.lock:
            agg = self._flushed(source)
            disk = self._disk(source, f"{_label_sql('src', by)}, {_label_sql('dst', by)}, "
                              "src_tenant, dst_tenant", since, until, tenant, "1, 2, 3, 4")
            mem_since = self._memory_since(source, since)
            memory = [] if mem_since is False else agg.matrix(mem_since, by, tenant, until)
        for sl, dl, st, dt, nb, np, first, last in disk:
            rows[(sl, dl, st, dt)] = [nb, np, first, last]         # GROUP BY: unique keys
        for r in memory:
            _merge(rows, (r["src"], r["dst"], r["src_tenant"], r["dst_tenant"]), r["bytes"],
                   r["packets"], r["first_seen"], r["last_seen"])
        window = self._window(since, until, rows)
        out = [{"src": sl, "dst": dl, "src_tenant": st, "dst_tenant": dt, "bytes": nb,
                "packets": np, "rate_bps": round(nb * 8 / window, 3),
                "first_seen": first, "last_seen": last}
               for (sl, dl, st, dt), (nb, np, first, last) in rows.items()]
        out.sort(key=lambda r: (-r["bytes"], r["src"], r["dst"]))
        return out

    def top(self, source: str, n: int = 10, since=None, by: str = "vm", tenant=None,
            until=None) -> list[dict]:
        return self.matrix(source, since, by, tenant, until)[:max(0, n)]

    def flows(self, source: str, since=None, tenant=None, until=None) -> list[dict]:
        rows: dict = {}
        with self.history.lock:
            agg = self._flushed(source)
            disk = self._disk(source, "src, dst, src_tenant, dst_tenant, proto, service_port, "
                              "to_server", since, until, tenant, "1, 2, 3, 4, 5, 6, 7")
            mem_since = self._memory_since(source, since)
            memory = [] if mem_since is False else agg.flows(mem_since, tenant, until)
        names = {}
        for sl, dl, st, dt, proto, port, to_server, nb, np, first, last in disk:
            name = names.get(proto)
            if name is None:     # services.label's names
                name = names[proto] = service_label(Service(proto, None, True))[0] \
                    if proto is not None else None
            rows[(sl, dl, st, dt, name, port, to_server)] = [nb, np, first, last]  # unique keys
        for r in memory:
            _merge(rows, (r["src"], r["dst"], r["src_tenant"], r["dst_tenant"], r["proto"],
                          r["port"], r["to_server"]), r["bytes"], r["packets"],
                   r["first_seen"], r["last_seen"])
        window = self._window(since, until, rows)
        out = [{"src": sl, "dst": dl, "src_tenant": st, "dst_tenant": dt, "proto": proto,
                "port": port, "to_server": to_server, "bytes": nb, "packets": np,
                "rate_bps": round(nb * 8 / window, 3), "first_seen": first, "last_seen": last}
               for (sl, dl, st, dt, proto, port, to_server), (nb, np, first, last) in rows.items()]
        out.sort(key=lambda r: (-r["bytes"], r["src"], r["dst"], r["proto"] or "",
                                r["port"] or 0))
        return out

    def _window(self, since, until, rows) -> float:
        end = self.clock() if until is None else until
        if since is None:
            since = min((v[2] for v in rows.values()), default=end)
        return max(end - since, 1e-9)

    def status(self) -> dict:
        return {**self.history.stats(),
                "sources": {n: {"watermark": s.watermark if s.watermark not in
                                (NEG_INF, float("inf")) else None, "errors": s.errors}
                            for n, s in self.sources.items()}}


def _merge(rows: dict, key, nb, np, first, last) -> None:
    r = rows.get(key)
    if r is None:
        rows[key] = [nb, np, first, last]
        return
    r[0] += nb
    r[1] += np
    if first is not None and (r[2] is None or first < r[2]):
        r[2] = first
    if last is not None and (r[3] is None or last > r[3]):
        r[3] = last


class _Reader:
    """What CollectorService.history calls: the service's queries over disk and memory."""

    def __init__(self, flow_history: FlowHistory, source: str) -> None:
        self.flow_history, self.source = flow_history, source

    def matrix(self, since=None, by="vm", tenant=None, until=None):
        return self.flow_history.matrix(self.source, since, by, tenant, until)

    def flows(self, since=None, tenant=None, until=None):
        return self.flow_history.flows(self.source, since, tenant, until)

    def top(self, n=10, since=None, by="vm", tenant=None, until=None):
        return self.flow_history.top(self.source, n, since, by, tenant, until)
