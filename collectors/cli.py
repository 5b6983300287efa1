"""`weft collect`: run the flow collector in the foreground; and traffic-row rendering.

    weft collect --sflow 0.0.0.0:6343 [--netflow ADDR:PORT] [--ipfix ADDR:PORT]
                 [--model FILE] [--exporter ADDR=HOST ...] [--export-dir DIR]
                 [--history DIR [--retention 7d]] [--metrics ADDR:PORT] [--workers N] [-o table|json]

`--workers N` runs N processes on each port (SO_REUSEPORT: one exporter's datagrams always
reach the same one), merged into one set of counters and traffic rows; default: the
machine's cores minus one. Runs until SIGINT or SIGTERM, then prints its counters (per protocol: datagrams, records,
malformed, flows counted/deduplicated, sequence gaps) as a table or JSON and exits 0. The
bound addresses go to stderr at start (`listening sflow=127.0.0.1:6343 ...`), so port 0
(ephemeral) can be used. Bad arguments: one line on stderr, exit 2; a socket that cannot be
bound: one line, exit 1.

`--model FILE` is a JSON model dump used for attribution: an object with "tenants",
"networks", "ports", "hosts", "bindings" (each a list of objects, or an object keyed by id,
with the fields of topology.model's records; `ips` a list) and optionally "exporters":
{"ADDR": "HOST"} (exporter address -> host name, merged with --exporter) and
"sflow_ifindexes": [{"host": H, "ifindex": N, "port": UUID}] (sFlow reports kernel
ifindexes, not OpenFlow ports).
`--history DIR` keeps what a restart must not lose in DIR: the flow history (closed buckets
written every minute and at exit to DIR/flows/date=YYYY-MM-DD/hour=HH/*.parquet, source
"collect", pruned after `--retention`, default 7d; see collectors.flow_history for the
schema) and the NetFlow v9/IPFIX templates (DIR/templates). Without it nothing is written.
Standalone: `python -m collectors.cli --sflow 127.0.0.1:6343`.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import sys
import threading
from dataclasses import fields as dc_fields

from topology.model import Binding, Host, Model, Network, Port, Tenant

PROG = "weft collect"
MATRIX_COLUMNS = ("src", "dst", "src_tenant", "dst_tenant", "bytes", "packets", "rate_bps",
                  "first_seen", "last_seen")
FLOW_COLUMNS = ("src", "dst", "proto", "port", "to_server", "src_tenant", "dst_tenant", "bytes",
                "packets", "rate_bps", "first_seen", "last_seen")
COUNTER_COLUMNS = ("protocol", "datagrams", "records", "malformed", "flows", "counted",
                   "deduplicated", "sequence_gaps", "lost_records", "exporters")


class UsageError(Exception):
    """A bad command-line argument (exit status 2)."""


# ------------------------------------------------------------------ rendering


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def _table_cell(col: str, value) -> str:
    if value is None:
        return "-"
    if col == "rate_bps":
        return _si(float(value), "bit/s")
    if col == "bytes":
        return _si(float(value), "B")
    if col in ("first_seen", "last_seen"):
        from .export import iso_time
        return iso_time(value)[:-5] + "Z"  # seconds precision in tables
    return str(value)


def render_table(rows: list[dict], columns) -> str:
    if not rows:
        return "(none)"
    cells = [[_table_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def render_matrix(records: list[dict], fmt: str = "table", columns=MATRIX_COLUMNS) -> str:
    """Aggregator.matrix/top rows as "table" (human units, UTC times), "json" (the rows as
    they are: unix-second times, bytes, bit/s) or "csv" (header + raw values, ISO times)."""
    if fmt == "json":
        return json.dumps(records, indent=2, default=str)
    if fmt == "csv":
        from .export import iso_time
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in records:
            w.writerow(["" if r.get(c) is None else
                        iso_time(r[c]) if c in ("first_seen", "last_seen") else r.get(c)
                        for c in columns])
        return buf.getvalue().rstrip("\n")
    if fmt == "table":
        return render_table(records, columns)
    raise ValueError(f"unknown format {fmt!r} (table, json or csv)")


def counters(status: dict) -> dict:
    """The counters printed at exit, from CollectorService.status()."""
    protos = {p: {c: v[c] for c in COUNTER_COLUMNS[1:]} for p, v in status["protocols"].items()}
    return {"uptime": round(status["uptime"], 3), "totals": status["totals"],
            "protocols": protos, "errors": status["errors"],
            "sockets": status["sockets"], "exporters": status["exporters"]}


def render_counters(c: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(c, indent=2, default=str)
    rows = [{"protocol": p, **v} for p, v in c["protocols"].items()]
    rows.append({"protocol": "total", **c["totals"]})
    out = render_table(rows, COUNTER_COLUMNS)
    drops = {k: v.get("kernel_drops") for k, v in c["sockets"].items()}
    out += f"\nuptime {c['uptime']:.1f}s, errors {c['errors']}, kernel drops " + (
        ", ".join(f"{k}={v if v is not None else '?'}" for k, v in drops.items()) or "-")
    return out


# ------------------------------------------------------------------ model file


def _records(section, cls) -> list:
    items = section.values() if isinstance(section, dict) else (section or [])
    names = {f.name for f in dc_fields(cls)}
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise UsageError(f"model file: {cls.__name__.lower()} entries must be objects")
        kw = {k: v for k, v in item.items() if k in names}
        for k in ("ips", "dns", "security_groups"):
            if k in kw and isinstance(kw[k], list):
                kw[k] = tuple(kw[k])
        if cls is Host:
            kw.setdefault("ovsdb", "")
        try:
            out.append(cls(**kw))
        except TypeError as exc:
            raise UsageError(f"model file: bad {cls.__name__.lower()}: {exc}") from None
    return out


def model_from_dict(data: dict) -> tuple[Model, dict, dict]:
    """(Model, exporter map, sFlow ifindex map) from a JSON model dump (module docstring)."""
    if not isinstance(data, dict):
        raise UsageError("model file: top level must be an object")
    m = Model()
    for t in _records(data.get("tenants"), Tenant):
        m.tenants[t.name] = t
    for n in _records(data.get("networks"), Network):
        m.networks[n.uuid] = n
    for p in _records(data.get("ports"), Port):
        m.ports[p.uuid] = p
    for h in _records(data.get("hosts"), Host):
        m.hosts[h.name] = h
    for b in _records(data.get("bindings"), Binding):
        m.bindings[b.port] = b
    exporters = data.get("exporters") or {}
    if not isinstance(exporters, dict):
        raise UsageError("model file: exporters must be an object {address: host}")
    ifindexes = {}
    for item in data.get("sflow_ifindexes") or []:
        try:
            ifindexes[(str(item["host"]), int(item["ifindex"]))] = str(item["port"])
        except (TypeError, KeyError, ValueError):
            raise UsageError(f"model file: bad sflow_ifindexes entry {item!r}") from None
    return m, {str(k): str(v) for k, v in exporters.items()}, ifindexes


def load_model(path: str) -> tuple[Model, dict, dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"model file {path} is not JSON: {exc}") from None
    return model_from_dict(data)


# ------------------------------------------------------------------ command


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `collect` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("collect", help="run the sFlow/NetFlow/IPFIX collector",
                              description=__doc__.splitlines()[0])
    configure(p)
    return p


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--sflow", metavar="ADDR:PORT", help="receive sFlow v5 here (e.g. :6343)")
    p.add_argument("--netflow", metavar="ADDR:PORT", help="receive NetFlow v5/v9 here")
    p.add_argument("--ipfix", metavar="ADDR:PORT", help="receive IPFIX here")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="format of the counters printed at exit (default: table)")
    p.add_argument("--model", metavar="FILE", help="JSON model dump used for attribution")
    p.add_argument("--exporter", action="append", default=[], metavar="ADDR=HOST",
                   help="exporter address -> host name (repeatable)")
    p.add_argument("--export-dir", metavar="DIR", help="write closed buckets to rotating files")
    p.add_argument("--export-format", choices=["jsonl", "csv", "both"], default="jsonl")
    p.add_argument("--history", metavar="DIR",
                   help="keep flow history (Parquet by hour) and NetFlow/IPFIX templates here, "
                        "across restarts (default: none)")
    p.add_argument("--retention", metavar="DURATION", default="7d",
                   help="with --history: keep this long (1h to 3650d, e.g. 36h, 7d; default 7d)")
    p.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus /metrics here")
    p.add_argument("--bucket", type=float, default=10.0, metavar="SECONDS",
                   help="aggregation bucket (default 10)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes sharing each port (SO_REUSEPORT; default: cores - 1)")
    p.set_defaults(func=run)
    return p


def _addr(value: str | None, flag: str):
    from .service import parse_addr
    if value is None:
        return None
    try:
        return parse_addr(value, default_host="0.0.0.0")
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _build(args):
    """(service, exporter or None, metrics address or None) from parsed arguments."""
    from .aggregate import Aggregator
    from .service import CollectorService
    addrs = {k: _addr(getattr(args, k), f"--{k}") for k in ("sflow", "netflow", "ipfix")}
    if not any(addrs.values()):
        raise UsageError("give at least one of --sflow, --netflow, --ipfix (ADDR:PORT)")
    metrics = _addr(args.metrics, "--metrics")
    if not args.bucket > 0:
        raise UsageError("--bucket must be > 0")
    model, exporters, ifindexes = (None, {}, {})
    if args.model:
        model, exporters, ifindexes = load_model(args.model)
    for item in args.exporter:
        addr, sep, host = item.partition("=")
        if not sep or not addr or not host:
            raise UsageError(f"--exporter {item!r}: want ADDR=HOST")
        exporters[addr] = host
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UsageError("--workers must be between 1 and 256")
    from topology.duration import retention_seconds
    try:
        retention = retention_seconds(args.retention)
    except ValueError as exc:
        raise UsageError(f"--retention: {exc}") from None
    history = None
    if args.history:
        from .flow_history import FlowHistory
        from .history import History
        try:
            history = FlowHistory(History(args.history, retention))
        except OSError as exc:
            raise UsageError(f"--history {args.history}: {exc.strerror or exc}") from None
    agg = Aggregator(bucket_seconds=args.bucket, retention_seconds=max(3600.0, args.bucket))
    svc = CollectorService(model, exporter_hosts=exporters, aggregator=agg,
                           sflow_ifindexes=ifindexes, workers=args.workers,
                           template_dir=os.path.join(args.history, "templates") if history else None,
                           **addrs)
    if history is not None:
        history.attach("collect", svc)
    svc.flow_history = history
    return svc, metrics


def run(args) -> int:
    """Run until SIGINT/SIGTERM (call from the main thread), print counters; exit status."""
    out, err = sys.stdout, sys.stderr
    try:
        svc, metrics_addr = _build(args)
    except UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 2
    from .workers import collector_gc
    collector_gc()
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread: rely on KeyboardInterrupt
            pass
    exporter = server = None
    try:
        try:
            svc.start()
        except OSError as exc:
            err.write(f"{PROG}: error: cannot listen: {exc.strerror or exc}\n")
            return 1
        if svc.flow_history is not None:
            svc.flow_history.start()
        try:
            if args.export_dir:
                exporter = _exporter(svc, args)
            if metrics_addr is not None:
                from .metrics import serve_metrics
                server = serve_metrics(svc, metrics_addr)
        except OSError as exc:
            svc.stop()
            if svc.flow_history is not None:
                svc.flow_history.stop()
            err.write(f"{PROG}: error: {exc.strerror or exc}\n")
            return 1
        listening = " ".join(f"{k}={h}:{p}" for k, (h, p) in svc.addresses.items())
        if server is not None:
            listening += f" metrics={server.url}"
        err.write(f"{PROG}: listening {listening}\n")
        err.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        if server is not None:
            server.close()
        svc.stop()
        if svc.flow_history is not None:
            svc.flow_history.stop()
        if exporter is not None:
            exporter.stop(final=True)
        out.write(render_counters(counters(svc.status()), args.output) + "\n")
        out.flush()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exporter(svc, args):
    from .export import CsvWriter, JsonLinesWriter, PeriodicExporter
    writers = []
    if args.export_format in ("jsonl", "both"):
        writers.append(JsonLinesWriter(args.export_dir))
    if args.export_format in ("csv", "both"):
        writers.append(CsvWriter(args.export_dir))
    return PeriodicExporter(svc.aggregator, writers, by=("vm",), flush=svc.flush).start()


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m collectors.cli ...`)."""
    args = configure(_Parser(prog=PROG, description=__doc__.splitlines()[0])).parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
