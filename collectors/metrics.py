"""Prometheus text exposition (format 0.0.4) of collector health and tenant-pair traffic.

Families (all counters unless noted):
  weft_collector_up                                   gauge, 1 while serving
  weft_collector_{datagrams,records,malformed,sequence_gaps}_total  {protocol, exporter}
  weft_collector_{lost_records,lost_datagrams,templates_known}  gauges {protocol, exporter}
                                                      (a late datagram takes loss back)
  weft_collector_flows_total                          {protocol, result="counted"|"deduplicated"}
  weft_collector_socket_datagrams_total, weft_collector_socket_drops_total   {socket}
  weft_collector_errors_total                         unexpected handler exceptions
  weft_collector_aggregate_keys                       gauge, keys held by the aggregator
  weft_traffic_bytes_total, weft_traffic_packets_total  {src_tenant, dst_tenant}
                                                      cumulative, sampling undone, deduplicated

Label cardinality is bounded: at most `max_pairs` tenant pairs and `max_exporters` exporters
per protocol get their own series; the rest are summed into `other`. The labelled set is
sticky (a key, once labelled, keeps its series; new keys are admitted largest first while
slots are free), so every series, `other` included, only ever increases.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
_EXPORTER_COUNTERS = (
    ("datagrams", "Datagrams received (malformed included)."),
    ("records", "Samples or flow records decoded."),
    ("malformed", "Datagrams dropped as malformed or hostile."),
    ("sequence_gaps", "Sequence gaps (loss events) seen."),
)
_EXPORTER_GAUGES = (
    ("lost_records", "Records lost by sequence numbers (late arrivals take it back)."),
    ("lost_datagrams", "Datagrams lost by sequence numbers (late arrivals take it back)."),
    ("templates_known", "NetFlow v9/IPFIX templates known."),
)

_ALL = tuple(c for c, _ in _EXPORTER_COUNTERS + _EXPORTER_GAUGES)


def escape(value) -> str:
    """A label value escaped for the text format."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kw) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in kw.items()) + "}"


class StickyLabels:
    """Chooses which keys get their own series: at most `limit`, never taken back."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.labelled: set = set()

    def admit(self, values: dict) -> set:
        """Admit new keys of {key: size}, largest first, while slots remain."""
        free = self.limit - len(self.labelled)
        if free > 0:
            new = [k for k in values if k not in self.labelled]
            new.sort(key=lambda k: values[k], reverse=True)
            self.labelled.update(new[:free])
        return self.labelled


class MetricsRenderer:
    """Renders a CollectorService's metrics; keep one per service so labels stay sticky."""

    def __init__(self, service, max_pairs: int = 20, max_exporters: int = 100) -> None:
        self.service = service
        self.pairs = StickyLabels(max_pairs)
        self.exporters: dict[str, StickyLabels] = {}
        self.max_exporters = max_exporters
        self._lock = threading.Lock()

    def render(self) -> str:
        with self._lock:
            return self._render()

    def _render(self) -> str:
        st = self.service.status()
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, object]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{labels} {value}")

        family("weft_collector_up", "gauge", "1 while the collector runs.", [("", 1)])

        # per protocol and exporter, top exporters labelled and the rest in "other"
        per: dict[tuple, dict] = {}
        by_proto: dict[str, dict] = {}
        for e in st["exporters"]:
            by_proto.setdefault(e["protocol"], {})[e["exporter"]] = e
        for proto, exps in by_proto.items():
            sticky = self.exporters.setdefault(proto, StickyLabels(self.max_exporters))
            labelled = sticky.admit({k: v["datagrams"] for k, v in exps.items()})
            for exp, e in exps.items():
                key = (proto, exp if exp in labelled else OTHER)
                acc = per.setdefault(key, dict.fromkeys(_ALL, 0))
                for c in _ALL:
                    acc[c] += e[c]
        keys = sorted(per)
        for c, help_ in _EXPORTER_COUNTERS:
            family(f"weft_collector_{c}_total", "counter", help_ + " By protocol and exporter.",
                   [(_labels(protocol=p, exporter=x), per[(p, x)][c]) for p, x in keys])
        for c, help_ in _EXPORTER_GAUGES:
            family(f"weft_collector_{c}", "gauge", help_,
                   [(_labels(protocol=p, exporter=x), per[(p, x)][c]) for p, x in keys])

        flows = []
        for proto in sorted(st["protocols"]):
            p = st["protocols"][proto]
            flows.append((_labels(protocol=proto, result="counted"), p["counted"]))
            flows.append((_labels(protocol=proto, result="deduplicated"), p["deduplicated"]))
        family("weft_collector_flows_total", "counter",
               "Flow records attributed: counted, or left to the sender's host (dedup).", flows)
        socks = sorted(st["sockets"].items())
        family("weft_collector_socket_datagrams_total", "counter", "Datagrams read per socket.",
               [(_labels(socket=k), v["datagrams"]) for k, v in socks])
        family("weft_collector_socket_drops_total", "counter",
               "Datagrams the kernel dropped on the socket (receive buffer full).",
               [(_labels(socket=k), v["kernel_drops"] or 0) for k, v in socks])
        family("weft_collector_errors_total", "counter",
               "Unexpected exceptions while handling a datagram.", [("", st["errors"])])
        family("weft_collector_aggregate_keys", "gauge", "(src, dst) keys held in memory.",
               [("", st["aggregate"]["keys"])])

        pairs = self.service.tenant_pairs()
        labelled = self.pairs.admit({k: v[0] for k, v in pairs.items()})
        acc: dict[tuple, list] = {}
        for k, (nb, np) in pairs.items():
            key = k if k in labelled else (OTHER, OTHER)
            a = acc.setdefault(key, [0, 0])
            a[0] += nb
            a[1] += np
        pk = sorted(acc)
        family("weft_traffic_bytes_total", "counter",
               "Bytes between tenants (sampling undone, each flow counted once).",
               [(_labels(src_tenant=s, dst_tenant=d), acc[(s, d)][0]) for s, d in pk])
        family("weft_traffic_packets_total", "counter", "Packets between tenants.",
               [(_labels(src_tenant=s, dst_tenant=d), acc[(s, d)][1]) for s, d in pk])
        return "\n".join(out) + "\n"


def render_metrics(service, max_pairs: int = 20, max_exporters: int = 100) -> str:
    """One-off rendering (labels are sticky only within a MetricsRenderer)."""
    return MetricsRenderer(service, max_pairs, max_exporters).render()


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, renderer: MetricsRenderer) -> None:
        self.renderer = renderer
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,),
                                        name="collect-metrics", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5.0)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body = self.server.renderer.render().encode()
        except Exception as exc:  # report, keep serving
            self._send(500, f"error: {exc}\n".encode(), "text/plain; charset=utf-8")
            return
        self._send(200, body, CONTENT_TYPE)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve_metrics(service, addr=("127.0.0.1", 9477), max_pairs: int = 20,
                  max_exporters: int = 100) -> MetricsServer:
    """Serve GET /metrics for `service` from a daemon thread; `close()` to stop.

    `addr` is (host, port) or "HOST:PORT"; port 0 picks a free one (see `.url`)."""
    from .service import parse_addr
    server = MetricsServer(parse_addr(addr), MetricsRenderer(service, max_pairs, max_exporters))
    server._thread.start()
    return server
