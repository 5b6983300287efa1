"""The engine: keeps every connected host's flows equal to what the model compiles to.

It joins three inputs (the northbound model, the bindings each host reports, the OpenFlow
connections) and, on any change, recompiles only the affected hosts, plans the difference
against what is installed and sends it as one atomic bundle. On (re)connection it dumps the
switch's flows first and reconciles; it never flushes, so a restart with an unchanged model
sends nothing.
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from flows import compiler, planner
from flows.flow import Flow
from topology.model import Binding, Model

LOG = logging.getLogger(__name__)
DHCP_PPS, DHCP_BURST = 50, 100     # DHCP packet-ins per host and second: a flood is dropped there


@dataclasses.dataclass
class HostState:
    datapath: object = None
    installed: set = dataclasses.field(default_factory=set)   # {(table, priority, cookie)}
    reconciled: bool = False
    dumping: list | None = None
    flow_mods: int = 0
    bundles: int = 0
    connects: int = 0


class Engine:
    def __init__(self):
        self.lock = threading.RLock()
        self.nb_model = Model()
        self.live: dict[str, dict[str, tuple]] = {}    # host -> {port uuid: (ofport, iface name)}
        self.of_ports: dict[str, dict[str, int]] = {}  # host -> {iface name: ofport}, from OpenFlow
        self.hosts: dict[str, HostState] = {}
        self.dpids: dict[int, str] = {}                 # datapath id -> host name
        self._model = Model()
        self._index = None
        self._bundle_id = 0
        from controller.wire import WireCache
        self._wire = WireCache()

    # ---- inputs ----------------------------------------------------------------------------
    def set_nb_model(self, model: Model) -> None:
        with self.lock:
            self.nb_model = model
            self._recompute()

    def set_bindings(self, host: str, bindings: dict[str, tuple]) -> None:
        """What a host's database says: {port uuid: (ofport or PENDING, interface name)}."""
        LOG.debug("bindings of %s: %s", host, bindings)
        with self.lock:
            self.live[host] = dict(bindings)
            self._recompute()
            state = self.hosts.get(host)
            if state and state.datapath is not None and not state.reconciled and state.dumping is None:
                self._request_dump(host, state)

    def set_port(self, datapath, name: str, ofport: int | None) -> None:
        """OpenFlow port-status: the switch numbered (or removed) interface `name`.

        It arrives before the ofport reaches the host's database, so a pending binding
        resolves a few milliseconds earlier."""
        LOG.debug("port-status %s ofport %s", name, ofport)
        with self.lock:
            host = self.dpids.get(datapath.id)
            if host is None:
                return
            ports = self.of_ports.setdefault(host, {})
            if ofport is None:
                ports.pop(name, None)
            else:
                ports[name] = ofport
            if any(n == name for _o, n in self.live.get(host, {}).values()):
                self._recompute()

    def register_dpid(self, dpid: int, host: str) -> None:
        with self.lock:
            self.dpids[dpid] = host

    def switch_connected(self, datapath) -> None:
        with self.lock:
            host = self.dpids.get(datapath.id)
            if host is None:
                LOG.warning("unknown datapath %016x connected; ignoring it", datapath.id)
                return
            state = self.hosts.setdefault(host, HostState())
            state.datapath, state.reconciled, state.dumping = datapath, False, None
            state.connects += 1
            self.of_ports[host] = {}
            parser = datapath.ofproto_parser
            from controller import ofmsg
            from flows.pipeline import DHCP_METER
            # before any flow that uses it (an existing meter answers METER_EXISTS, ignored)
            datapath.send_msg(ofmsg.meter_add(datapath, DHCP_METER, pps=DHCP_PPS, burst=DHCP_BURST))
            datapath.send_msg(parser.OFPPortDescStatsRequest(datapath, 0))
            if host in self.live:
                self._request_dump(host, state)

    def switch_disconnected(self, datapath) -> None:
        with self.lock:
            for host, state in self.hosts.items():
                if state.datapath is datapath:
                    state.datapath, state.reconciled, state.dumping = None, False, None
                    self.of_ports.pop(host, None)

    def flow_stats(self, datapath, entries, more: bool) -> None:
        """Part of a flow dump: entries are (table, priority, cookie)."""
        with self.lock:
            host = self.dpids.get(datapath.id)
            state = self.hosts.get(host)
            if state is None or state.dumping is None:
                return
            state.dumping.extend(entries)
            if more:
                return
            state.installed = set(state.dumping)
            state.dumping = None
            state.reconciled = True
            desired = self._desired(host)
            if desired is not None:
                self._apply(host, state, desired)

    # ---- computing -------------------------------------------------------------------------
    def effective_model(self) -> Model:
        return self._model

    def _recompute(self) -> None:
        old = self._model
        nb = self.nb_model
        bindings = {}
        for host, ports in self.live.items():
            if host not in nb.hosts:
                continue
            numbered = self.of_ports.get(host, {})
            for port, (ofport, name) in ports.items():
                if port in nb.ports:
                    if ofport == compiler.PENDING:
                        ofport = numbered.get(name, compiler.PENDING)
                    bindings[port] = Binding(port, host, ofport)
        # hosts we have not heard from yet keep their last known bindings from the store
        for port, b in nb.bindings.items():
            if b.host not in self.live and port not in bindings and port in nb.ports:
                bindings[port] = b
        new = dataclasses.replace(nb, bindings=bindings)
        if new == old:
            return
        old_index = self._index
        try:
            if old_index is not None and old_index.model is old:
                new_index = old_index.updated(new)
            else:
                old_index, new_index = compiler.CompilerIndex(old), compiler.CompilerIndex(new)
        except ValueError as exc:
            LOG.error("the model cannot be compiled: %s", exc)
            return
        affected = compiler.affected_hosts(old, new, old_index, new_index)
        self._model, self._index = new, new_index
        for host in sorted(affected):
            state = self.hosts.get(host)
            if state is not None and state.reconciled:
                desired = self._desired(host)
                if desired is not None:
                    self._apply(host, state, desired)

    def _desired(self, host: str) -> list[Flow] | None:
        """The compiled flows of `host`, or None when its part of the model is inconsistent."""
        if self._index is None:
            self._index = compiler.CompilerIndex(self._model)
        if host not in self._model.hosts:
            return []
        try:
            return compiler.compile_host(self._index, host)
        except ValueError as exc:
            LOG.error("cannot compile flows for %s: %s", host, exc)
            return None

    def desired_flows(self, host: str) -> list[Flow]:
        with self.lock:
            return self._desired(host) or []

    # ---- sending ---------------------------------------------------------------------------
    def _request_dump(self, host: str, state: HostState) -> None:
        dp = state.datapath
        parser, ofp = dp.ofproto_parser, dp.ofproto
        state.dumping = []
        dp.send_msg(parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                               0, 0, parser.OFPMatch()))

    def _apply(self, host: str, state: HostState, desired: list[Flow]) -> None:
        plan = planner.plan(state.installed, desired)
        if plan.empty:
            return
        dp = state.datapath
        ofp = dp.ofproto
        self._bundle_id = (self._bundle_id + 1) & 0xFFFFFFFF
        bid = self._bundle_id
        # the whole bundle goes out in one write: open, the flow-mods, commit
        buf = bytearray(self._wire.bundle_ctrl(dp, bid, ofp.OFPBCT_OPEN_REQUEST))
        for table, cookie in plan.delete:
            buf += self._wire.bundle_add(dp, bid, ("delete", table, cookie))
        for flow in plan.add:
            buf += self._wire.bundle_add(dp, bid, flow)
        buf += self._wire.bundle_ctrl(dp, bid, ofp.OFPBCT_COMMIT_REQUEST)
        dp.send(bytes(buf))
        msgs = len(plan.delete) + len(plan.add)
        deleted = {(t, c) for t, c in plan.delete}
        state.installed = {k for k in state.installed if (k[0], k[2]) not in deleted}
        state.installed |= {f.key for f in plan.add}
        state.flow_mods += msgs
        state.bundles += 1
        LOG.info("%s: bundle %d with %d deletes, %d adds", host, bid, len(plan.delete), len(plan.add))

    # ---- reporting -------------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            return {host: {"connected": s.datapath is not None, "reconciled": s.reconciled,
                           "flows": len(s.installed), "flow_mods": s.flow_mods,
                           "bundles": s.bundles, "connects": s.connects}
                    for host, s in sorted(self.hosts.items())}
