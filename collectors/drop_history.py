"""Drop samples on disk: the `drops` table of the flow history, and `weft traffic drops` across restarts.

`DropHistory` subscribes to the DropLog (collectors/drops.py): every sample is buffered (at
most MAX_BUFFERED; beyond, samples are counted as `lost` rather than letting a flood grow
memory) and written every `flush_seconds` (and at `stop`) as rows of the `drops` table, one
row per sample (`packets` = 1), split by hour like the flows. `rows(since, tenant)` answers
like `DropLog.rows` over both: history for the samples older than the oldest bucket the
DropLog still holds, the DropLog for the rest, so a sample is never counted twice and a
restarted weftd still reports the drops seen before.
"""
from __future__ import annotations

import logging
import threading

from .drops import _KEY_FIELDS, DropLog, DropSample

LOG = logging.getLogger(__name__)
TABLE = "drops"
MAX_BUFFERED = 200_000


def schema():
    import pyarrow as pa
    return pa.schema([("time", pa.timestamp("ms", tz="UTC")), ("host", pa.string()),
                      ("reason", pa.string()), ("table", pa.int16()), ("src", pa.string()),
                      ("dst", pa.string()), ("proto", pa.string()), ("dport", pa.int32()),
                      ("group", pa.string()), ("owner", pa.string()), ("src_tenant", pa.string()),
                      ("dst_tenant", pa.string()), ("packets", pa.int64())])


class DropHistory:
    def __init__(self, history, log: DropLog, flush_seconds: float = 60.0) -> None:
        self.history, self.log, self.flush_seconds = history, log, flush_seconds
        self._buffer: list[DropSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.lost = 0
        log.subscribe(self._add)

    def _add(self, sample: DropSample) -> None:
        with self._lock:
            if len(self._buffer) >= MAX_BUFFERED:
                self.lost += 1
                return
            self._buffer.append(sample)

    def start(self) -> DropHistory:
        self._thread = threading.Thread(target=self._run, name="drop-history", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self.flush()

    def flush(self) -> int:
        """Write the buffered samples; how many were written."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        columns = {f: [getattr(s, f) for s in batch] for f in ("time", "host", "reason", "table",
                                                               *_KEY_FIELDS)}
        columns["packets"] = [1] * len(batch)
        try:
            self.history.write_rows(TABLE, columns, schema(), "time")
        except Exception:                       # a full disk must not stop the samples
            LOG.exception("writing %d drop samples to the history failed", len(batch))
            self.lost += len(batch)
            return 0
        self.written += len(batch)
        return len(batch)

    def rows(self, since: float | None = None, tenant: str | None = None) -> list[dict]:
        cut = self.log.oldest_time()
        memory = self.log.rows(since, tenant)
        if since is not None and cut is not None and since >= cut:
            return memory
        keys = ", ".join(f'"{k}"' for k in _KEY_FIELDS)
        where = ["epoch_ms(time) < $cut * 1000"]
        params = {"cut": cut if cut is not None else self.history.clock()}
        if since is not None:
            where.append("epoch_ms(time) >= $since * 1000")
            params["since"] = since
        if tenant is not None:
            where.append("(src_tenant = $tenant OR dst_tenant = $tenant)")
            params["tenant"] = tenant
        sql = (f"SELECT {keys}, sum(packets), min(epoch_ms(time)) / 1000.0, "
               f"max(epoch_ms(time)) / 1000.0 FROM {{rows}} WHERE {' AND '.join(where)} "
               f"GROUP BY {keys}")
        merged = {tuple(r[k] for k in _KEY_FIELDS): r for r in memory}
        for rec in self.history.query(TABLE, sql, params, since=since, until=params["cut"] + 1):
            key, (n, first, last) = tuple(rec[:len(_KEY_FIELDS)]), rec[len(_KEY_FIELDS):]
            row = merged.get(key)
            if row is None:
                merged[key] = row = dict(zip(_KEY_FIELDS, key), packets=0,
                                         first_seen=round(first, 3), last_seen=round(last, 3))
            row["packets"] += int(n)
            row["first_seen"] = min(row["first_seen"], round(first, 3))
            row["last_seen"] = max(row["last_seen"], round(last, 3))
        out = list(merged.values())
        out.sort(key=lambda r: (-r["last_seen"], r["reason"], r["src"], r["dst"]))
        return out
