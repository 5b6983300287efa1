"""Prometheus exposition: text format, label escaping, bounded and sticky cardinality, HTTP."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from collectors.aggregate import Aggregator
from collectors.attribution import Endpoint
from collectors.metrics import MetricsRenderer, escape, render_metrics, serve_metrics

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*)\})? '
                    r'(-?[0-9.e+]+)$')
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def exporter_stats(**kw):
    base = dict(datagrams=0, records=0, malformed=0, sequence_gaps=0, lost_datagrams=0,
                lost_records=0, out_of_order=0, sequence_resets=0, templates_known=0,
                pending_sets=0)
    return base | kw


class FakeService:
    def __init__(self) -> None:
        self.aggregator = Aggregator(clock=lambda: 1000.0)
        self.exporters = [{"protocol": "sflow", "exporter": "192.0.2.1", "host": "hv1",
                           **exporter_stats(datagrams=10, records=80, malformed=1)},
                          {"protocol": "ipfix", "exporter": 'we"ird\\', "host": None,
                           **exporter_stats(datagrams=3, templates_known=2)}]

    def tenant_pairs(self):
        return self.aggregator.tenant_pairs()

    def status(self):
        return {"exporters": list(self.exporters),
                "protocols": {"sflow": {"counted": 70, "deduplicated": 10},
                              "ipfix": {"counted": 0, "deduplicated": 0}},
                "sockets": {"sflow": {"datagrams": 10, "kernel_drops": 0},
                            "ipfix": {"datagrams": 3, "kernel_drops": None}},
                "errors": 0, "aggregate": {"keys": 4}}


def parse(text: str) -> dict:
    """{(name, frozenset(labels)): value}; checks every line and HELP/TYPE placement."""
    assert text.endswith("\n")
    out = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge")
                typed.add(parts[2])
            continue
        m = SAMPLE.match(line)
        assert m, line
        name = m.group(1)
        assert name in typed, f"{name} sampled before its TYPE"
        labels = frozenset((k, v) for k, v in LABEL.findall(m.group(3) or ""))
        key = (name, labels)
        assert key not in out, f"duplicate series {key}"
        out[key] = float(m.group(5))
    return out


def value(series, name, **labels):
    return series[(name, frozenset((k, escape(v)) for k, v in labels.items()))]


def test_format_and_health_families():
    s = parse(render_metrics(FakeService()))
    assert value(s, "weft_collector_up") == 1
    assert value(s, "weft_collector_datagrams_total", protocol="sflow", exporter="192.0.2.1") == 10
    assert value(s, "weft_collector_malformed_total", protocol="sflow", exporter="192.0.2.1") == 1
    assert value(s, "weft_collector_templates_known", protocol="ipfix", exporter='we"ird\\') == 2
    assert value(s, "weft_collector_flows_total", protocol="sflow", result="deduplicated") == 10
    assert value(s, "weft_collector_socket_drops_total", socket="ipfix") == 0


def test_label_escaping():
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render_metrics(FakeService())
    assert 'exporter="we\\"ird\\\\"' in text


def pair(agg, src_t, dst_t, nbytes):
    src = Endpoint(f"{src_t}/n/p", f"{src_t}/n", src_t, "hv1")
    dst = Endpoint(f"{dst_t}/n/q", f"{dst_t}/n", dst_t, "hv2")
    agg.add(src, dst, nbytes, 1)


def test_tenant_pair_cardinality_cap_and_other():
    svc = FakeService()
    for i in range(30):
        pair(svc.aggregator, f"t{i}", f"t{i}", 100 + i)
    r = MetricsRenderer(svc, max_pairs=5)
    s = parse(r.render())
    traffic = {k: v for k, v in s.items() if k[0] == "weft_traffic_bytes_total"}
    assert len(traffic) == 6  # 5 labelled + other
    labelled = {dict(k[1])["src_tenant"] for k in traffic}
    assert labelled == {"t29", "t28", "t27", "t26", "t25", "other"}  # largest admitted
    assert sum(traffic.values()) == sum(100 + i for i in range(30))


def test_series_stay_monotonic_as_pairs_change():
    svc = FakeService()
    r = MetricsRenderer(svc, max_pairs=2)
    pair(svc.aggregator, "a", "a", 10)
    first = parse(r.render())
    pair(svc.aggregator, "b", "b", 5)
    pair(svc.aggregator, "c", "c", 1)
    second = parse(r.render())
    pair(svc.aggregator, "d", "d", 10_000)  # huge, but no slot is free: goes to other
    pair(svc.aggregator, "c", "c", 1)
    third = parse(r.render())
    for before, after in ((first, second), (second, third)):
        for key, v in before.items():
            if key[0] == "weft_traffic_bytes_total":
                assert after[key] >= v, key
    assert value(third, "weft_traffic_bytes_total", src_tenant="other",
                 dst_tenant="other") == 10_002
    assert ("weft_traffic_bytes_total", frozenset({("src_tenant", "d"), ("dst_tenant", "d")})) \
        not in third


def test_exporter_cardinality_cap():
    svc = FakeService()
    svc.exporters = [{"protocol": "netflow5", "exporter": f"198.51.100.{i}", "host": None,
                      **exporter_stats(datagrams=i + 1)} for i in range(50)]
    s = parse(MetricsRenderer(svc, max_exporters=10).render())
    dg = {dict(k[1])["exporter"]: v for k, v in s.items()
          if k[0] == "weft_collector_datagrams_total"}
    assert len(dg) == 11 and "other" in dg
    assert sum(dg.values()) == sum(range(1, 51))


def test_http_endpoint():
    server = serve_metrics(FakeService(), "127.0.0.1:0")
    try:
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            parse(resp.read().decode())
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(server.url.replace("/metrics", "/nope"), timeout=5)
        assert exc.value.code == 404
    finally:
        server.close()
