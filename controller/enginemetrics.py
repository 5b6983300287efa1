"""The engine's Prometheus metrics: port-up latency, bundles committed and refused, flow-mods, connections, refused switches."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# port-up is tens of milliseconds on a quiet host; the tail shows a switch or a controller in trouble
PORT_UP_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EngineMetrics:
    """One registry per engine (tests run several engines in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.port_up = Histogram(
            "weft_port_up_seconds",
            "From a NIC appearing in its host's database to the switch committing its flows.",
            buckets=PORT_UP_BUCKETS, registry=self.registry)
        self.bundles = Counter("weft_bundles", "Bundles sent to switches, by outcome.",
                               ["result"], registry=self.registry)
        self.bundle_seconds = Histogram(
            "weft_bundle_commit_seconds", "From a bundle's write to the switch's commit reply.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry)
        self.flow_mods = Counter("weft_flow_mods", "Flow-mods sent in bundles.", registry=self.registry)
        self.hosts_connected = Gauge("weft_hosts_connected", "Switches connected over OpenFlow.",
                                     registry=self.registry)
        for result in ("committed", "failed"):
            self.bundles.labels(result)
        self.switch_refusals = Counter(
            "weft_switch_refusals", "Switch connections refused (TLS handshake, unknown datapath "
            "id, certificate naming another host, second connection), by reason.",
            ["reason"], registry=self.registry)
        from controller.identity import REFUSALS
        for reason in REFUSALS:
            self.switch_refusals.labels(reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
