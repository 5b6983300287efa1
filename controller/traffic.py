"""weftd's traffic visibility: one collector per protocol, exporter settings for every host, exports.

Each protocol has its own collector (and aggregator) so that sFlow, NetFlow and IPFIX are
never added together: `weft traffic matrix --source sflow|netflow|ipfix` picks one (sFlow by
default) and the others can be compared with it. Hosts export from their management
address (Host.mgmt_ip), which maps a datagram to its host; a datagram from any other address
is counted and dropped unread (`weft traffic status`), so no stranger adds to the matrix.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading

from collectors.service import CollectorService

LOG = logging.getLogger(__name__)
PORTS = {"sflow": 6343, "netflow": 2055, "ipfix": 4739}
SOURCES = tuple(PORTS)


def exporter_settings(traffic, collector_ip: str, agent: str | None, engine_id: int) -> dict:
    """The southbound exporter configuration (ovsdb.southbound.configure_exporters) for one host."""
    return {
        "sflow": {"target": f"{collector_ip}:{PORTS['sflow']}", "sampling": traffic.sflow_sampling,
                  "polling": traffic.sflow_polling, "agent": agent} if traffic.sflow else None,
        "netflow": {"target": f"{collector_ip}:{PORTS['netflow']}", "engine_id": engine_id & 0xFF,
                    "active_timeout": traffic.netflow_active_timeout} if traffic.netflow else None,
        "ipfix": {"target": f"{collector_ip}:{PORTS['ipfix']}", "obs_domain_id": engine_id,
                  "active_timeout": 5} if traffic.ipfix else None,
    }


class TrafficCollectors:
    def __init__(self, engine, listen_ip: str, export_dir: str | None = None, bucket_seconds: float = 10,
                 history_dir: str | None = None):
        self.engine = engine
        self.services: dict[str, CollectorService] = {}
        templates = os.path.join(history_dir, "templates") if history_dir else None
        for source, port in PORTS.items():
            kwargs = {k: None for k in PORTS}
            kwargs[source] = (listen_ip, port)
            # workers=None: the cores minus one share each port (collectors.workers)
            self.services[source] = CollectorService(engine.effective_model, bucket_seconds=bucket_seconds,
                                                     model_refresh=1.0, known_exporters_only=True,
                                                     workers=None, template_dir=templates,
                                                     **kwargs)
        self.export_dir = export_dir
        self._exporters = []
        self._ifindexes: dict[str, dict[str, int]] = {}
        self._ifindex_lock = threading.Lock()
        self.history = None
        if history_dir:         # flow history on disk, retention from `weft traffic config`
            from collectors.flow_history import FlowHistory
            from collectors.history import History
            self.history = FlowHistory(History(history_dir, retention=self._retention))
            for source, svc in self.services.items():
                self.history.attach(source, svc)

    def ifindexes_changed(self, host: str, ifindexes: dict[str, int]) -> None:
        """From the southbound thread: {port uuid: kernel ifindex} on `host`, so sFlow's
        interface numbers name ports (two tenants' same MAC and IP on one host stay apart)."""
        with self._ifindex_lock:
            self._ifindexes[host] = dict(ifindexes)
            merged = {(h, i): port for h, m in self._ifindexes.items() for port, i in m.items()}
        for svc in self.services.values():
            svc.ifindexes_changed(merged)        # taken in by its refresher, off the port-up

    def _retention(self) -> int:
        from topology.duration import DEFAULT_RETENTION, retention_seconds
        try:
            return retention_seconds(self.engine.effective_model().traffic.retention)
        except ValueError:
            return retention_seconds(DEFAULT_RETENTION)

    def start(self) -> None:
        for svc in self.services.values():
            svc.start()
        if self.history is not None:
            self.history.start()
        if self.export_dir:
            from collectors.export import CsvWriter, JsonLinesWriter, PeriodicExporter
            os.makedirs(self.export_dir, exist_ok=True)
            svc = self.services["sflow"]
            writers = [JsonLinesWriter(self.export_dir), CsvWriter(self.export_dir)]
            exporter = PeriodicExporter(svc.aggregator, writers, by=("vm", "tenant"),
                                        flush=svc.flush)
            exporter.start()
            self._exporters.append(exporter)

    def stop(self) -> None:
        for exporter in self._exporters:
            exporter.stop()
        for svc in self.services.values():
            svc.stop()
        if self.history is not None:
            self.history.stop()         # writes the buckets still in memory, the open ones too

    def service(self, source: str) -> CollectorService:
        if source not in self.services:
            from topology.errors import WeftError
            raise WeftError(f"unknown traffic source {source!r}: use sflow, netflow or ipfix")
        return self.services[source]

    def status(self) -> dict:
        out = {"sources": {}, "exporters": [], "rejected": []}
        for source, svc in self.services.items():
            st = svc.status()
            out["sources"][source] = {"listen": "%s:%d" % svc.addresses.get(source, ("-", 0))
                                      if svc.addresses.get(source) else None,
                                      "totals": st.get("totals"), "protocols": st.get("protocols")}
            out["exporters"] += st.get("exporters", [])
            out["rejected"] += st.get("rejected", [])
        if self.history is not None:
            out["history"] = self.history.status()
        return out

    def config(self) -> dict:
        return dataclasses.asdict(self.engine.effective_model().traffic)
