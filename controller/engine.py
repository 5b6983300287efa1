"""The engine: one loop that keeps every connected host's flows equal to what the model compiles to.

Only the loop thread touches the engine's state. Every other thread (the store's IDL, the
southbound watcher, os-ken's OpenFlow thread, the API) only queues inputs with the methods
under "inputs", which return at once, and reads published, immutable snapshots
(`effective_model`, `bindings`, `status`). The loop takes whatever is queued, applies it in
order, recompiles only the affected hosts once per batch, plans the difference against what
each switch is known to hold, and hands the plan to the driver as one atomic bundle.

A switch's flows change in the engine's books only when the switch confirms: a bundle counts
as installed on its commit reply. A bundle the switch rejects is logged with the flow it
refused, counted, and the host is dumped and reconciled again; a switch that disconnects
with bundles in flight is dumped and reconciled on reconnect. Planning uses the *expected*
table (installed plus bundles in flight), so changes can follow each other without waiting
for replies and never send the same flow-mod twice.

On (re)connection the engine dumps the switch's flows first and reconciles; it never
flushes, so a restart with an unchanged model sends nothing.

Live migration (`migrate`, controller/migration.py, flows/migration.py): a migrating port has
two bindings, the active one (the source) and a standby one (the destination NIC, once its
host reports it); an announcement from the standby NIC (packet-in) activates the destination
in one batch on every host, and the source NIC, cut off from then on, ends the migration when
it leaves its host. The migration lives in the loop's memory only: a weftd restarted in the
middle of one sees two NICs with one iface-id and binds the port to the last one reported.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import logging
import queue
import threading
import time

from controller import identity, replay
from controller.journal import fields as log_fields
from controller.refusals import Refusals, addr_text
from flows import compiler, planner
from flows import qos as Q
from flows.index import ModelDiff, _changed
from topology.changes import changes_of
from flows.flow import Flow
from flows.pipeline import DHCP_METER, DROP_METER
from controller.migration import Migration, eth_src, trigger_of
from topology.errors import Conflict, NotFound, WeftError
from topology.model import Binding, Model, derive
from topology.shardmap import ShardMap, writer_of

LOG = logging.getLogger(__name__)
DHCP_PPS, DHCP_BURST = 50, 100     # DHCP packet-ins per host and second: a flood is dropped there
OFPET_BUNDLE_FAILED = 17
OFPET_METER_MOD_FAILED, OFPMMFC_METER_EXISTS = 12, 1
OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE = 11, 0
ROLE_RETRIES = 5                                  # stale role requests retried with a newer id
OFPBCT_COMMIT_REPLY = 5
ROLE_MASTER, ROLE_SLAVE = 2, 3                  # OFPCR_ROLE_*
ROLE_NAMES = {1: "equal", ROLE_MASTER: "master", ROLE_SLAVE: "slave"}
MIN_BACKOFF, MAX_BACKOFF = 0.1, 10.0  # re-dump after a refused bundle, doubling
HISTORY = 4096                      # model versions remembered for wait_applied
RELEASE_SLICE = 0.02                # s of queued syncs (a cold start's held hosts...) per loop batch
BIG_BATCH = 64                      # a batch touching more hosts may send the rest in slices
MAX_ARMS = 3                        # a port-up's bundle is compiled ahead at most this often


@dataclasses.dataclass
class Bundle:
    bundle_id: int
    first_xid: int
    items: list                   # ("delete", table, cookie) or Flow, in xid order after first_xid
    version: int                  # the model version it brings the host to
    sent_at: float
    ports: list = dataclasses.field(default_factory=list)   # ports whose port-up it completes
    meters: list = dataclasses.field(default_factory=list)  # (command, Meter) sent with it, xids after the commit's
    stale: frozenset = frozenset()  # the keys its deletes remove that its adds do not bring back

    def owns(self, xid: int) -> bool:
        return self.first_xid <= xid <= self.first_xid + len(self.items) + 1 + len(self.meters)

    def meter_at(self, xid: int):
        i = xid - self.first_xid - len(self.items) - 2
        return self.meters[i] if 0 <= i < len(self.meters) else None

    def item_at(self, xid: int):
        i = xid - self.first_xid - 1
        return self.items[i] if 0 <= i < len(self.items) else None


@dataclasses.dataclass
class HostState:
    datapath: object = None
    installed: set = dataclasses.field(default_factory=set)   # confirmed {(table, priority, cookie)}
    expected: set = dataclasses.field(default_factory=set)    # installed + bundles in flight
    in_flight: dict = dataclasses.field(default_factory=dict)  # bundle id -> Bundle
    reconciled: bool = False
    reconciled_at: float | None = None
    backoff: float = 0.0                      # after a refused bundle: wait before trying again
    dump_xid: int | None = None
    dumping: list | None = None
    meters: dict = dataclasses.field(default_factory=dict)           # confirmed QoS meters {id: Meter}
    meters_expected: dict = dataclasses.field(default_factory=dict)  # ... plus those in flight
    meter_dump_xid: int | None = None
    meter_dumping: dict | None = None
    meter_xids: dict = dataclasses.field(default_factory=dict)       # recent meter-mod xid -> bundle id
    planned_version: int = 0
    applied_version: int = 0
    flow_mods: int = 0
    bundles: int = 0
    bundle_errors: int = 0
    connects: int = 0
    last_error: str | None = None
    refused: Bundle | None = None             # the last bundle the switch refused
    of_role: str | None = None                # HA: the switch's answer to our role request
    master_at: float | None = None            # HA: when (epoch) the switch confirmed us master
    role_xid: int | None = None               # HA: our last role request, to match its error
    role_retries: int = 0                     # ... and how often it was refused as stale
    armed: "Armed | None" = None              # a port-up's bundle the driver holds (controller/armed.py)


@dataclasses.dataclass
class Armed:
    """A port-up's bundle handed to the driver ahead, to go out on the host's confirmation."""
    name: str                     # the interface the switch must number...
    port: str
    ofport: int                   # ... with this ofport
    bundle: Bundle                # planned against the books as they were when it was armed
    base: Model | None = None     # the compiled model it was derived from
    model: Model | None = None    # ... that model with the guessed binding
    index: object = None          # ... and its compiler index


@dataclasses.dataclass
class PortUp:
    """The port-up timeline of one NIC on one host (monotonic seconds)."""
    host: str
    seen: float                      # the NIC appeared in the host's database (iface-id)
    numbered: float | None = None    # its ofport became known (port-status or OVSDB)
    taken: float | None = None       # the loop took the numbering in
    sent: float | None = None        # the bundle with its ofport flows went out
    committed: float | None = None   # ... and the switch committed it
    taken_cpu: float = 0.0           # the engine thread's CPU clock when it took the numbering
    cpu_ms: float | None = None      # the engine thread's CPU from taken to sent (the rest: waits)
    guess: int | None = None         # the ofport its flows were compiled ahead for (_speculate)
    fired: bool = False              # its bundle went out armed, on the host's confirmation
    arms: int = 0                    # times it was compiled ahead (re-armed after other changes)
    seen_at: float = dataclasses.field(default_factory=time.time)   # wall clock, to correlate

    def latency_ms(self) -> float | None:
        return None if self.committed is None else round((self.committed - self.seen) * 1000, 2)

    def view(self) -> dict:
        rel = lambda t: None if t is None else round((t - self.seen) * 1000, 2)   # noqa: E731
        return {"host": self.host, "seen_at": self.seen_at, "numbered_ms": rel(self.numbered),
                "sent_ms": rel(self.sent), "committed_ms": rel(self.committed),
                "engine_cpu_ms": self.cpu_ms, "sent_armed": self.fired}


# Open vSwitch numbers new ports itself only below this (the upper half is for requested
# numbers, as weft's tunnel port's 60000): the highest number under it is the last it gave
AUTO_OFPORT_LIMIT = 32768


class Engine:
    def __init__(self, driver, metrics=None, datapath_id=None, ha: bool = False,
                 settle: float = 0.0, settle_limit: float = 60.0):
        """ha: one of several replicas (weftd --ha): standby until set_active(True),
        then master on every switch; without it, the only controller (role equal, no requests).
        settle: at the start, hold each host's first bundle until every host has reported its
        bindings or none has for this long (controller/coldsettle.py; 0: no hold)."""
        from controller.coldsettle import ColdSettle
        from controller.enginemetrics import EngineMetrics
        from ovsdb.southbound import datapath_id as default_dpid

        self.driver = driver
        self.metrics = metrics or EngineMetrics()
        self._datapath_id = datapath_id or default_dpid
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._observers: list = []
        self._model_lock = threading.Lock()
        self._pending_model: dict | None = None               # coalesced snapshots not yet taken
        self._timers: list = []                       # heap of (when, seq, fn), run on the loop
        self._timer_seq = itertools.count()
        self._cond = threading.Condition()           # guards the published progress below
        # ---- loop-owned state
        self.nb_model = Model()
        self.nb_version = 0
        self.live: dict[str, dict[str, tuple]] = {}   # host -> {port uuid: (ofport, iface name)}
        self.of_ports: dict[str, dict[str, int]] = {} # host -> {iface name: ofport}, from OpenFlow
        self._last_ofport: dict[str, int] = {}   # host -> highest ofport its switch has numbered
        self.hosts: dict[str, HostState] = {}
        self._host_of_dpid: dict[int, str] = {}
        self.refusals = Refusals(self.metrics)          # switch connections refused (identity)
        self._eff: dict[str, Binding] = {}             # effective bindings, updated incrementally
        self._eff_map = ShardMap()                     # ... as the compiled model's (see _recompute)
        self._live_b: dict[str, dict[str, Binding]] = {}   # host -> its live bindings (hosts of the model)
        self._dirty_hosts: set[str] = set()
        self._first_report: set[str] = set()
        self._live_port_host: dict[str, str] = {}           # port -> the live host reporting it
        self._parked: dict[str, str] = {}                    # port -> host its NIC last left
        self._nb_bindings: dict = {}
        self._migrations: dict[str, Migration] = {}          # port -> migration under way
        self._last_migration: dict[str, Migration] = {}      # port -> its last finished one
        self._activating: dict[str, Migration] = {}          # activated, commits outstanding
        self._standby: dict[str, Binding] = {}               # port -> destination NIC (standby)
        self._sent: dict[str, int] | None = None             # host -> bundle sent by this batch
        self._nb_changes: dict | None = None                 # keys changed since the last compile
        self._compiled_nb: Model | None = None
        self._pending_up: dict[str, set[str]] = {}          # host -> ports numbered, not yet sent
        self._model = Model()
        self._index = None
        self._bundle_id = 0
        self._port_up: dict[tuple[str, str], PortUp] = {}   # (host, port) -> timeline
        self._unnumbered: set[tuple[str, str]] = set()     # port-ups waiting for their ofport
        self._armed_hosts: set[str] = set()                # hosts with an armed bundle (_speculate)
        self._fired: dict[str, Armed] = {}          # host -> armed bundle sent, taken this batch
        self._left: dict[str, tuple] = {}          # port -> (host, interface, arms) its NIC last left
        self._last_up: dict[str, PortUp] = {}               # port -> its last completed timeline
        self._version_batch: dict[int, int] = {}            # model version -> its batch's last version
        self._batch_hosts: dict[int, frozenset] = {}        # batch's last version -> affected hosts
        self._processed_version = 0
        self._processed_at: dict[int, float] = {}           # batch's last version -> when planned
        self.ha = ha
        self.active = not ha                                 # only the active one sends flows
        self.active_since: float | None = None if ha else time.time()
        self._generation = 0                                 # last OpenFlow role generation id
        self._cold = ColdSettle(settle, settle_limit)       # a cold start's hold on first syncs
        self._cold_wake: float | None = None                # the timer that checks it again
        self._releasing: collections.deque = collections.deque()   # hosts to sync, a slice a batch
        self._marks: list = []                              # wait_planned callers: set after the batch
        self._queued: set[str] = set()                      # ... the same, to queue each once
        self._released = [0, 0.0, 0.0]                     # hosts, wall and CPU seconds spent on them
        self._cold_report = False                           # the cold start's summary is due
        # ---- published (read by other threads; replaced, never mutated)
        self._pub_model = Model()
        self._pub_dps: dict[str, object] = {}
        self._pub_hosts_of_dpid: dict[int, str] = {}
        # NICs whose port-up bundle just went out (controller/replay.py; any thread may mark)
        self.fresh = replay.FreshNics()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Engine":
        self._cold.start(time.monotonic())
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(5)

    # ---- inputs: any thread, never blocks ----------------------------------------------------
    def model_changed(self, model: Model, version: int | None = None) -> None:
        """A new northbound snapshot (the store calls this in commit order).

        Snapshots are coalesced, not queued: while the loop has not taken the last one, a new
        one replaces it and their changes add up, so a burst of writes never piles up
        snapshots (each holds copies of the model's dicts) behind a busy loop."""
        changes = changes_of(model)
        with self._model_lock:
            pending = self._pending_model
            if pending is None:
                self._pending_model = {"model": model, "version": version, "versions": [version],
                                       "changes": None if changes is None else
                                       {k: set(v) for k, v in changes.items() if v}}
                self._inbox.put(("model",))
                return
            if version is not None and pending["version"] is not None and version <= pending["version"]:
                LOG.warning("stale model version %s after %s ignored", version, pending["version"])
                return
            pending["model"], pending["version"] = model, version
            pending["versions"].append(version)
            if changes is None or pending["changes"] is None:
                pending["changes"] = None
            else:
                for k, v in changes.items():
                    if v:
                        pending["changes"].setdefault(k, set()).update(v)

    def bindings_changed(self, host: str, bindings: dict[str, tuple]) -> None:
        """What a host's database says: {port uuid: (ofport or PENDING, interface name)}.
        A bundle armed for one of these NICs may go out on this thread (controller/armed.py)."""
        self._inbox.put(("bindings", host, dict(bindings), time.monotonic()))
        seen = getattr(self.driver, "rows_seen", None)     # after: its reply comes after this
        dp = self._pub_dps.get(host) if seen is not None else None
        if dp is not None:
            seen(dp, bindings)

    def switch_connected(self, datapath, names: tuple[str, ...] | None = None) -> None:
        """A switch finished its handshake; `names`: what its verified TLS certificate names
        (`identity.cert_names`), None for a connection without TLS (--insecure-openflow)."""
        self._inbox.put(("connected", datapath, names))

    def switch_refused(self, address, reason: str, detail: str) -> None:
        """The listener refused a connection before OpenFlow began (its TLS handshake failed)."""
        self._inbox.put(("refused", address, reason, detail))

    def switch_disconnected(self, datapath) -> None:
        self._inbox.put(("disconnected", datapath))

    def port_status(self, datapath, name: str, ofport: int | None) -> None:
        """OpenFlow port-status: the switch numbered (or removed) interface `name`. It arrives
        before the ofport reaches the host's database, so a pending binding resolves earlier.
        A bundle armed for exactly that numbering goes out first, on this thread (the
        OpenFlow loop's): queued after it, the event reaches the loop before its reply."""
        at = time.monotonic()
        numbered = getattr(self.driver, "port_numbered", None)
        if numbered is not None:
            numbered(datapath, name, ofport)
        self._inbox.put(("port", datapath, name, ofport, at))


    def announce(self, datapath, in_port: int, frame: bytes) -> None:
        """A packet-in from a standby NIC's flow: the VM may be running on its destination."""
        self._inbox.put(("announce", datapath, in_port, bytes(frame[:64]), time.monotonic()))

    def migrate(self, port: str, host: str, timeout: float = 5.0) -> dict:
        """Program `host` ahead as the destination of port `port` (uuid); the migration's view.
        Raises WeftError (nothing changed) when the port is not bound or already on `host`."""
        return self.call(lambda: self._migrate(port, host), timeout)

    def migration_view(self, port: str, timeout: float = 5.0) -> dict | None:
        """The port's migration under way, else its last one, else None."""
        return self.call(lambda: self._migration_view(port), timeout)

    def set_active(self, active: bool) -> None:
        """HA: this replica holds the active lock (True) or another one does (False)."""
        self._inbox.put(("active", bool(active)))

    def role_reply(self, datapath, role: int) -> None:
        """A switch's answer to a role request, or its role-status (another controller took over)."""
        self._inbox.put(("role", datapath, role, time.time()))

    def port_desc(self, datapath, ports: list[tuple[str, int]]) -> None:
        self._inbox.put(("ports", datapath, ports))

    def flow_stats(self, datapath, xid: int, entries, more: bool) -> None:
        """Part of a flow dump: entries are (table, priority, cookie)."""
        self._inbox.put(("stats", datapath, xid, entries, more))

    def meter_stats(self, datapath, xid: int, meters, more: bool) -> None:
        """Part of a meter-config dump: flows/qos.Meter entries."""
        self._inbox.put(("meters", datapath, xid, list(meters), more))

    def bundle_reply(self, datapath, bundle_id: int, kind: int) -> None:
        self._inbox.put(("bundle", datapath, bundle_id, kind, time.monotonic()))

    def switch_error(self, datapath, xid: int, err_type: int, code: int, data: bytes = b"") -> None:
        self._inbox.put(("error", datapath, xid, err_type, code, data))

    def observe(self, callback) -> None:
        """callback() after every new effective model, on the loop: it must only signal."""
        self._observers.append(callback)

    def call(self, fn, timeout: float = 5.0):
        """Run fn() on the loop (for reads that need the loop's state) and return its result."""
        box, done = [], threading.Event()
        self._inbox.put(("call", fn, box, done))
        if not done.wait(timeout):
            raise TimeoutError("the engine did not answer")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    # ---- reads: any thread ---------------------------------------------------------------------
    def effective_model(self) -> Model:
        """The model with the live bindings, as of the last processed batch."""
        return self._pub_model

    def bindings(self) -> dict[str, Binding]:
        return self._pub_model.bindings

    def status(self, timeout: float = 5.0) -> dict:
        """Per connected-or-known host: connection, reconciliation, flow and bundle counts."""
        return self.call(self._status, timeout)

    def datapath(self, host: str):
        return self._pub_dps.get(host)

    def admitted(self, datapath) -> bool:
        """Whether this connection is the one the engine accepted for its datapath id."""
        host = self._pub_hosts_of_dpid.get(datapath.id)
        return host is not None and self._pub_dps.get(host) is datapath

    def refused(self, timeout: float = 5.0) -> dict:
        """Refused switch connections: {total, by_reason, recent}."""
        return self.call(self.refusals.view, timeout)

    def host_of_dpid(self, dpid: int) -> str | None:
        return self._pub_hosts_of_dpid.get(dpid)

    def fresh_port(self, host: str, mac: bytes) -> "replay.Fresh | None":
        """The NIC with this MAC whose port-up bundle went to the host less than
        replay.FRESH_S ago, or None."""
        return self.fresh.get(host, mac)

    def hold(self, host: str, mac: bytes, vni: int, data: bytes, wire: bytes) -> bool:
        """Hold a drop sample (`wire`: its packet-out, encoded) for a NIC parked on the host
        until it is back (controller/replay.py); False if its bundle went meanwhile, or the host
        holds for too many NICs."""
        return self.fresh.hold(host, mac, vni, data, wire)

    def port_up_latency_ms(self, port: str) -> float | None:
        up = self._last_up.get(port)
        return up.latency_ms() if up else None

    def port_up_timeline(self, port: str) -> dict | None:
        up = self._last_up.get(port)
        return up.view() if up else None

    def desired_flows(self, host: str) -> list[Flow]:
        return self.call(lambda: self._desired(host) or [])

    def wait_processed(self, version: int, timeout: float) -> bool:
        """Block until the loop has taken model `version` in (its plans are queued)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._processed_version >= version, timeout)

    def wait_planned(self, timeout: float) -> float | None:
        """Block until every input queued before this call has been planned: the loop took it,
        recomputed, and queued the bundles of every host it touched (hosts a big batch left to
        later slices included). Returns when (monotonic), or None on timeout."""
        done = threading.Event()
        box: list[float] = []
        self._inbox.put(("mark", done, box))
        return box[0] if done.wait(timeout) else None

    def processed_at(self, version: int) -> float | None:
        """When (monotonic) the loop had planned and handed over model `version`'s changes."""
        with self._cond:
            key = self._version_batch.get(version)
            return self._processed_at.get(key) if key is not None else None

    def wait_applied(self, version: int, timeout: float) -> list[str]:
        """Block until every host the change of model `version` affects has committed it.

        Returns the hosts that have not (empty: all acknowledged). A host that is not
        connected cannot acknowledge, so it is returned at once."""
        deadline = time.monotonic() + timeout
        if not self.wait_processed(version, timeout):
            return ["(engine)"]
        with self._cond:
            key = self._version_batch.get(version)
            if key is None:
                key = min((v for v in self._batch_hosts if v >= version), default=None)
            hosts = self._batch_hosts.get(key, frozenset()) if key is not None else frozenset()

            def late():
                states = self.hosts     # each HostState's applied_version is one int: safe to read
                return sorted(h for h in hosts
                              if h not in states or states[h].applied_version < key)

            def settled():      # applied everywhere, or what is left cannot answer
                return all(h not in self._pub_dps for h in late())
            self._cond.wait_for(settled, max(0.0, deadline - time.monotonic()))
            return late()

    # ---- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            if self._releasing:
                timeout = 0                               # more held hosts to sync: no waiting
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = ("tick",)
            batch = [item]
            while True:                                   # take what has queued meanwhile
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            versions = []
            for item in batch:
                if item is None:
                    return
                try:
                    v = self._handle(item)
                    if v:
                        versions.extend(v)
                except Exception:
                    LOG.exception("engine input %s failed", item[0])
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _when, _seq, fn = heapq.heappop(self._timers)
                try:
                    fn()
                except Exception:
                    LOG.exception("engine timer failed")
            try:
                affected = self._recompute()
            except Exception:
                LOG.exception("recompute failed")
                affected = set()
            self._publish(versions, affected)
            if self._cold.on:
                self._settle_step()
            if self._releasing:
                self._release_slice()
            if self._marks and not self._releasing:
                now = time.monotonic()
                for done, box in self._marks:
                    box.append(now)
                    done.set()
                self._marks.clear()
            if self._unnumbered or self._left:
                try:
                    self._speculate()
                except Exception:         # never the loop: every host would stop converging
                    LOG.exception("compiling ahead failed")

    def _handle(self, item):
        kind = item[0]
        if kind == "model":
            with self._model_lock:
                pending, self._pending_model = self._pending_model, None
            if pending is None:
                return None
            model, version = pending["model"], pending["version"]
            if version is not None and version <= self.nb_version:
                LOG.warning("stale model version %s after %s ignored", version, self.nb_version)
                return None
            first = pending["versions"][0]
            consecutive = version is not None and first == self.nb_version + 1
            self._set_nb(model, pending["changes"] if consecutive else None)
            self.nb_version = version if version is not None else self.nb_version + 1
            return [v for v in pending["versions"] if v is not None] or [self.nb_version]
        if kind == "tick":
            pass                                  # due timers run after every batch
        elif kind == "bindings":
            self._on_bindings(*item[1:])
        elif kind == "announce":
            self._on_announce(*item[1:])
        elif kind == "connected":
            self._on_connected(*item[1:])
        elif kind == "refused":
            self.refusals.record(item[2], item[1], item[3])
        elif kind == "disconnected":
            self._on_disconnected(item[1])
        elif kind == "port":
            self._on_port(*item[1:])
        elif kind == "ports":
            dp, ports = item[1:]
            for name, ofport in ports:
                self._on_port(dp, name, ofport, time.monotonic())
        elif kind == "stats":
            self._on_stats(*item[1:])
        elif kind == "meters":
            self._on_meter_stats(*item[1:])
        elif kind == "bundle":
            self._on_bundle_reply(*item[1:])
        elif kind == "error":
            self._on_error(*item[1:])
        elif kind == "active":
            self._set_active(item[1])
        elif kind == "role":
            self._on_role(*item[1:])
        elif kind == "mark":
            self._marks.append(item[1:])          # set once this batch is planned (_loop)
        elif kind == "call":
            _k, fn, box, done = item
            try:
                box.append(fn())
            except BaseException as exc:       # handed to the caller
                box.append(exc)
            done.set()
        return None

    # ---- model and bindings -------------------------------------------------------------------
    def _drop_meter(self) -> tuple:
        """The drop-sample meter (flows/drops.py) at the configured rate, for driver.hello."""
        t = self.nb_model.traffic
        return ((DROP_METER, t.drop_sample_pps, t.drop_sample_burst),)

    def _set_nb(self, model: Model, changes: dict | None) -> None:
        """A new northbound snapshot; `changes` are the keys it changed since the previous one
        (the store's tracked rows), or None when unknown (then the next compile diffs)."""
        old = self.nb_model
        self.nb_model = model
        if (old.traffic.drop_sample_pps, old.traffic.drop_sample_burst) != (
                model.traffic.drop_sample_pps, model.traffic.drop_sample_burst) and self.active:
            for _host, state in sorted(self.hosts.items()):     # a new drop-sample rate
                if state.datapath is not None:
                    self.driver.set_meters(state.datapath, self._drop_meter())
        if changes is None or self._nb_changes is None:
            self._nb_changes = None
        else:
            for name, keys in changes.items():
                if keys:
                    self._nb_changes.setdefault(name, set()).update(keys)
        if old.hosts is not model.hosts and old.hosts != model.hosts:
            for name in set(old.hosts) ^ set(model.hosts):
                self._dirty_hosts.add(name)              # its live bindings count or not
            for name in set(model.hosts) - set(old.hosts):
                self._host_of_dpid[self._datapath_id(name)] = name
            self._publish_connections()

    def _on_bindings(self, host: str, bindings: dict, seen: float) -> None:
        first = host not in self.live
        old = self.live.get(host, {})
        self.live[host] = bindings
        self._dirty_hosts.add(host)
        if first:
            self._first_report.add(host)
            self._cold.progress(time.monotonic())
            return          # NICs already there when weftd (re)connects are not port-ups
        for port, (ofport, name) in bindings.items():
            if port not in old:
                up = self._port_up[(host, port)] = PortUp(host, seen)
                if self._ofport(host, ofport, name):
                    self._numbered(host, port, seen)
                else:
                    self._unnumbered.add((host, port))
            elif (host, port) in self._port_up and self._port_up[(host, port)].numbered is None \
                    and self._ofport(host, ofport, name):
                self._numbered(host, port, seen)
        for port in old.keys() - bindings.keys():
            self._port_up.pop((host, port), None)
            self._unnumbered.discard((host, port))
            self._pending_up.get(host, set()).discard(port)
            self._left[port] = (host, old[port][1], 0)     # its NIC may come back (_speculate)
        for port in bindings.keys() - old.keys():
            self._left.pop(port, None)
        state = self.hosts.get(host)
        if state is not None and state.armed is not None:
            self._settle_armed(host)

    def _numbered(self, host: str, port: str, at: float) -> None:
        up = self._port_up.get((host, port))
        self._unnumbered.discard((host, port))
        if up is not None and up.numbered is None:
            up.numbered, up.taken = at, time.monotonic()
            up.taken_cpu = time.thread_time()
            self._pending_up.setdefault(host, set()).add(port)

    def _ofport(self, host: str, ofport: int, name: str) -> int:
        if ofport == compiler.PENDING:
            return self.of_ports.get(host, {}).get(name, compiler.PENDING)
        return ofport

    def _live_bindings(self, host: str) -> dict[str, Binding]:
        if host not in self.nb_model.hosts:
            return {}
        return {port: Binding(port, host, self._ofport(host, ofport, name))
                for port, (ofport, name) in self.live.get(host, {}).items()}

    def _update_bindings(self) -> set[str]:
        """Bring the effective bindings up to date; returns the ports whose binding changed.

        Live bindings (what a host's database says now) win; a host weft has not heard from
        yet keeps the bindings the store recorded for it."""
        changed: set[str] = set()
        eff, nb = self._eff, self.nb_model.bindings
        was = {p: (eff.get(p), self._standby.get(p)) for p in self._migrations}
        if self._first_report:                   # the store's word on them no longer counts
            reporting = self._first_report
            for port, b in nb.items():           # one pass for every host that reported first
                if b.host in reporting and eff.get(port) == b:
                    del eff[port]
                    changed.add(port)
            self._first_report = set()
        for host in sorted(self._dirty_hosts):
            before = self._live_b.get(host, {})
            after = self._live_bindings(host)
            if after:
                self._live_b[host] = after
            else:
                self._live_b.pop(host, None)
            live_at = self._live_port_host
            for port in before.keys() - after.keys():
                self.fresh.unmark(host, port)    # what the host drops for it is no replay's now
                if live_at.get(port) == host:
                    del live_at[port]
                if eff.get(port) == before[port]:
                    del eff[port]
                    if host in self.nb_model.hosts and port in self.nb_model.ports:
                        # parked: its NIC left the host, the port stays where it was last seen
                        # (pending, so no local delivery there) until it shows up anywhere:
                        # peers keep their path to it, and a NIC plugged again on the same
                        # host (a restart, a re-plug) changes nothing on the other hosts
                        eff[port] = Binding(port, host, compiler.PENDING)
                        self._parked[port] = host
                    else:
                        restored = nb.get(port)
                        if restored is not None and restored.host not in self.live:
                            eff[port] = restored
                    changed.add(port)
            for port, b in after.items():
                live_at[port] = host
                self._parked.pop(port, None)
                if eff.get(port) != b:
                    eff[port] = b
                    changed.add(port)
        self._dirty_hosts.clear()
        if self._parked:          # a parked port that was deleted, or whose host was, goes
            model = self.nb_model
            for port, host in list(self._parked.items()):
                if port not in model.ports or host not in model.hosts:
                    del self._parked[port]
                    if eff.get(port) == Binding(port, host, compiler.PENDING):
                        del eff[port]
                        changed.add(port)
        if self._nb_bindings is not nb:
            known = self._nb_changes.get("bindings", ()) if self._nb_changes is not None else None
            for port in _changed(self._nb_bindings, nb) if known is None else known:
                if port in self._live_port_host:
                    continue                    # a live binding wins
                b = nb.get(port)
                if b is None or b.host in self.live:
                    if port in eff and eff[port].host not in self.live:
                        del eff[port]
                        changed.add(port)
                elif eff.get(port) != b:
                    eff[port] = b
                    changed.add(port)
            self._nb_bindings = nb
        if was:
            self._settle_migrations(was, changed)
        return changed

    # ---- live migration ------------------------------------------------------------------------
    def _migrate(self, port: str, host: str) -> dict:
        if not self.active:
            raise WeftError("this weftd replica is standby: migrations are run by the active "
                            "replica (`weft cluster status`); retry there", 503)
        model = self.nb_model
        p = model.ports.get(port)
        if p is None:
            raise NotFound(f"no port {port}")
        if host not in model.hosts:
            known = ", ".join(sorted(model.hosts)) or "none"
            raise NotFound(f"unknown host {host!r} (hosts: {known})")
        m = self._migrations.get(port)
        if m is not None and m.activated is not None:
            raise Conflict(f"port {p.ref} is still migrating from {m.source} to {m.dest}: its NIC "
                           f"on {m.source} has not left yet")
        b = self._eff.get(port)
        if b is None or port in self._parked or (m is not None and not self._live_on(m.source, port)):
            where = f" (its NIC left {b.host})" if b is not None else ""
            raise Conflict(f"port {p.ref} is not bound to any host{where}: a migration moves a "
                           f"running VM; plug its NIC first")
        if b.host == host:
            raise WeftError(f"port {p.ref} is already on {host}: name another host with --to")
        self._migrations[port] = Migration(port, b.host, host)
        self._standby.pop(port, None)
        LOG.info("port %s: migration %s -> %s requested", p.ref, b.host, host,
                 extra=log_fields(host=host, port=p.ref))
        return self._migration_view(port)

    def _live_on(self, host: str, port: str) -> bool:
        return port in self.live.get(host, {})

    def _migration_view(self, port: str) -> dict | None:
        m = self._migrations.get(port) or self._last_migration.get(port)
        if m is None:
            return None
        up = self._port_up.get((m.dest, port))
        ready = port in self._standby and (up is None or up.committed is not None) \
            and self._standby[port].ofport != compiler.PENDING
        return m.view(dest_ready=ready, dest_seen=port in self._standby)

    def _settle_migrations(self, was: dict, changed: set[str]) -> None:
        """Override the plain live-binding rule for migrating ports: before activation the
        source stays the binding and the destination NIC is the standby one; after it, the
        destination is the binding and the source NIC counts for nothing until it goes."""
        eff, standby = self._eff, self._standby
        for port, m in list(self._migrations.items()):
            if port not in self.nb_model.ports or m.dest not in self.nb_model.hosts:
                del self._migrations[port]
                self._activating.pop(port, None)
                standby.pop(port, None)
            else:
                src = self._live_b.get(m.source, {}).get(port)
                dst = self._live_b.get(m.dest, {}).get(port)
                if m.activated is None:
                    cur = eff.get(port)
                    if cur is None or cur.host != m.source or src is not None:
                        eff[port] = src or Binding(port, m.source, compiler.PENDING)
                    if dst is not None:
                        standby[port] = dst
                    else:
                        standby.pop(port, None)
                else:
                    standby.pop(port, None)
                    if dst is not None:
                        eff[port] = dst
                    if src is None:             # the source NIC is gone: done
                        m.done = time.monotonic()
                        del self._migrations[port]
                        self._last_migration[port] = m
                        if self._parked.get(port) == m.source:
                            del self._parked[port]
                        LOG.info("port %s: migration %s -> %s done", port, m.source, m.dest)
            now = (eff.get(port), standby.get(port))
            if now != was.get(port):
                changed.add(port)
            elif port in changed and now == was.get(port):
                changed.discard(port)

    def _on_announce(self, datapath, in_port: int, frame: bytes, at: float) -> None:
        host, state = self._host(datapath)
        if state is None:
            return
        for port, m in self._migrations.items():
            sb = self._standby.get(port)
            if m.activated is not None or m.dest != host or sb is None or sb.ofport != in_port:
                continue
            p = self.nb_model.ports.get(port)
            if p is None or eth_src(frame) != p.mac:
                LOG.warning("%s: frame from %s on the standby NIC of %s ignored", host,
                            eth_src(frame), p.ref if p else port)
                return
            m.activated, m.trigger = at, trigger_of(frame)
            self._activating[port] = m
            self._dirty_hosts.add(host)         # _settle_migrations swaps the bindings
            LOG.info("port %s: %s on %s, activating (from %s)", p.ref, m.trigger, host, m.source,
                     extra=log_fields(host=host, port=p.ref))
            return

    def _activation_sent(self) -> None:
        """Right after a batch's syncs: the bundles the activations of this batch wait for."""
        now = time.monotonic()
        for port, m in list(self._activating.items()):
            if m.awaiting is None:
                m.awaiting = dict(self._sent or {})
                if not m.awaiting:
                    m.committed = now
                    del self._activating[port]

    def _activation_committed(self, host: str, bundle_id: int | None, at: float) -> None:
        """A host committed `bundle_id` (None: the host will never confirm: lost or refused)."""
        for port, m in list(self._activating.items()):
            if not m.awaiting or host not in m.awaiting:
                continue
            if bundle_id is None:
                m.unconfirmed.add(host)
            elif m.awaiting[host] != bundle_id:
                continue
            del m.awaiting[host]
            if not m.awaiting:
                m.committed = at
                del self._activating[port]
                LOG.info("port %s: activation committed everywhere, %.1f ms after the announcement",
                         port, (at - m.activated) * 1000)

    def _recompute(self) -> set[str]:
        """Apply the batch's changes to the compiled state; plan and send for affected hosts."""
        old = self._model
        bindings_changed = self._update_bindings()
        fired, self._fired = self._fired, {}
        if self.nb_model is self._compiled_nb and not bindings_changed:
            return set()
        if len(fired) == 1 and self._as_guessed(old, bindings_changed, *next(iter(fired.items()))):
            return set(fired)
        if self._armed_hosts and (bindings_changed or not self._bindings_only()):
            for host in sorted(self._armed_hosts):     # planned against a model that is now old
                self._take_armed(host)
        new = derive(self.nb_model, bindings=self._bindings_map(bindings_changed) if bindings_changed
                     else old.bindings,
                     standby=dict(self._standby) if bindings_changed else old.standby)
        self._compiled_nb = self.nb_model
        nb_changes, self._nb_changes = self._nb_changes, {}
        diff = None
        if nb_changes is not None:        # what changed is known: no O(model) comparison
            get = lambda name: frozenset(nb_changes.get(name, ()))   # noqa: E731
            diff = ModelDiff(get("ports"), frozenset(bindings_changed), get("networks"),
                             get("hosts"), get("routers"), get("security_groups"),
                             get("floating_ips"))
        old_index = self._index
        try:
            if old_index is not None and old_index.model is old:
                new_index = old_index.updated(new, diff)
            else:
                old_index, new_index = compiler.CompilerIndex(old), compiler.CompilerIndex(new)
        except ValueError as exc:
            LOG.error("the model cannot be compiled: %s", exc)
            self._nb_changes = None
            return set()
        affected = compiler.affected_hosts(old, new, old_index, new_index)
        self._model, self._index = new, new_index
        self._pub_model = new
        # a host with a NIC waiting for its flows goes first: that is what port-up waits for
        self._sent = {}
        hosts = sorted(affected | set(self._pending_up), key=lambda h: (h not in self._pending_up, h))
        start = time.monotonic()
        for i, host in enumerate(hosts):
            # no yield between hosts: an API request waiting for the GIL gets it within one
            # switch interval (controller/tuning.py, 0.5 ms) anyway, and a yield per host cost
            # a thread hand-off each (up to a switch interval when another thread is busy):
            # most of a change's wall time when it touches ten hosts on a loaded machine.
            # A batch touching hundreds (switches coming in at a cold start, a group used
            # everywhere) sends the rest in slices between batches (`_release_slice`), so a
            # port-up behind it waits one slice, not a second: never the hosts of a port-up,
            # never during a migration's activation (it counts this batch's bundles)
            if i >= BIG_BATCH and host not in self._pending_up and not self._activating \
                    and time.monotonic() - start >= RELEASE_SLICE:
                self._queue_syncs(hosts[i:])
                break
            self._sync(host)
        if self._activating:
            self._activation_sent()
        self._sent = None
        # observers (the collectors rebuild their attribution from the new model) hear of it
        # once the bundles are out: their work would otherwise compete for the GIL with the
        # compile a port-up waits for
        for observer in self._observers:
            observer()
        return affected

    def _as_guessed(self, old: Model, changed: set[str], host: str, armed: Armed) -> bool:
        """The batch brought exactly what an armed bundle that went out was compiled for: its
        port numbered as guessed, nothing else (no northbound change, no other binding, no
        migration), from the model it was compiled on. Then that compile is the new state (its
        model and index, which `_recompute` would build the same way), the host's books
        already hold its flows, and no other host's flows depend on an ofport
        (flows/compiler._renumbered_hosts): nothing to compile or plan. This is the work that
        ran beside ovs-vswitchd while it brought the NIC up."""
        port = armed.port
        if armed.base is not old or self.nb_model is not self._compiled_nb or changed != {port} \
                or self._eff.get(port) != Binding(port, host, armed.ofport) or self._standby \
                or self._migrations or self._activating or self._pending_up.get(host, set()) - {port} \
                or any(self._pending_up.get(h) for h in self._pending_up if h != host) \
                or self._index is None or self._index.model is not old or old.bindings is not self._eff_map:
            return False
        self._eff_map = armed.model.bindings
        self._model, self._index = armed.model, armed.index
        self._pub_model = armed.model
        state = self.hosts[host]
        state.planned_version = self.nb_version
        self._pending_up.pop(host, None)      # their flows went with the armed bundle
        for observer in self._observers:
            observer()
        return True

    def _bindings_only(self) -> bool:
        """The northbound changes since the last compile are the store's record of bindings
        alone (weftd's binding recorder writes what the hosts report): the compiled model,
        which takes the effective bindings, is the same, and so is every flow."""
        changes = self._nb_changes
        return self.nb_model is self._compiled_nb or (
            changes is not None and all(name == "bindings" for name, keys in changes.items() if keys))

    def _bindings_map(self, changed: set[str]) -> ShardMap:
        """The effective bindings as the model's map: the last one with the changed ports
        written (a ShardMap copies the shards it writes; a dict copy of 10,000 bindings per
        plug cost ~1 ms in weftd's heap). `_update_bindings` names every port it changed."""
        eff, w = self._eff, self._eff_map.writer()
        for port in changed:
            b = eff.get(port)
            if b is None:
                w.pop(port, None)
            else:
                w[port] = b
        self._eff_map = w.done()
        return self._eff_map

    def _settle_step(self) -> None:
        """A cold start's hold (controller/coldsettle.py): over now? Then every held host is
        queued to be synced (`_release_slice`); else the held hosts whose flows are complete
        are, and the loop wakes when time alone may end the hold or let more go."""
        now = time.monotonic()
        if self._cold.over(now, self.nb_model.hosts, self.live):
            held = self._cold.release()
            LOG.info("cold start: the hosts' bindings are in (%d of %d hosts reported), "
                     "sending the %d held hosts their flows", len(self.live),
                     len(self.nb_model.hosts), len(held))
            self._queue_syncs(held)
            self._cold_report = True
            return
        # a host whose flows are complete need not wait for the rest
        if self._index is not None and self._index.model is self._model:
            self._queue_syncs(self._cold.ready(now, self._index, self.live))
        due = self._cold.deadline()
        if due is not None and (self._cold_wake is None or self._cold_wake <= now
                                or due < self._cold_wake):
            self._cold_wake = due
            self._after(max(0.0, due - now) + 0.001, lambda: None)   # the loop checks after timers

    def _queue_syncs(self, hosts) -> None:
        for host in hosts:
            if host not in self._queued:
                self._queued.add(host)
                self._releasing.append(host)

    def _release_slice(self) -> None:
        """Sync released hosts for up to RELEASE_SLICE seconds, then back to the inbox: a
        port-up (or anything else queued) waits for one slice, not for thousands of hosts,
        and the switches' commit replies are taken as they come."""
        start, cpu = time.monotonic(), time.thread_time()
        while self._releasing:              # at least one host a slice
            host = self._releasing.popleft()
            self._queued.discard(host)
            self._sync(host)
            self._released[0] += 1
            if time.monotonic() - start >= RELEASE_SLICE:
                break
        self._released[1] += time.monotonic() - start
        self._released[2] += time.thread_time() - cpu
        if not self._releasing and self._cold_report:
            self._cold_report = False
            hosts, wall, cpu_s = self._released
            LOG.info("cold start: %d held hosts planned and sent (%.1f s in slices of %.0f ms, "
                     "engine CPU %.1f s)", hosts, wall, RELEASE_SLICE * 1000, cpu_s)

    def _speculate(self) -> None:
        """Compile ahead, at idle, the flows of a NIC the engine expects, for the ofport its
        switch will most likely give it (Open vSwitch numbers a new port one above the last it
        numbered): a NIC seen in its host's database but not numbered yet, or else one that
        left its host while its port stays bound there (parked: a VM restarting, a NIC plugged
        again), under the interface name it had. Real inputs come first: nothing is compiled
        while the loop has something queued.

        The bundle is armed (one per host): the driver writes it once the host confirms that
        the interface is the port's and has that ofport (controller/armed.py), and the engine
        counts it when it takes that news in. A wrong guess is never installed, and costs the
        time spent; without a driver that arms, the compile still warms the caches."""
        waiting = collections.Counter(host for host, _port in self._unnumbered)
        candidates = [(host, port, None) for host, port in sorted(self._unnumbered)]
        candidates += [(host, port, name) for port, (host, name, _n) in list(self._left.items())
                       if host not in self._armed_hosts]
        for host, port, left_as in candidates:
            if not self._inbox.empty():
                return
            state = self.hosts.get(host)
            if state is None or state.armed is not None:
                continue
            armable = hasattr(self.driver, "arm") and self.active and not self._cold.on
            if left_as is None:
                up = self._port_up.get((host, port))
                if up is None or up.numbered is not None:
                    continue
                name = self.live.get(host, {}).get(port, (None, None))[1]
                armable = armable and name is not None and up.arms < MAX_ARMS
                if up.guess is not None and not armable:
                    continue                       # compiled ahead once already
            else:
                name, arms = left_as, self._left[port][2]
                if self._parked.get(port) != host or arms >= MAX_ARMS or waiting[host] or not armable:
                    if self._parked.get(port) != host or arms >= MAX_ARMS:
                        del self._left[port]       # gone elsewhere, deleted, or tried enough
                    continue
                up = None
            last = self._last_ofport.get(host)
            bound = self._model.bindings.get(port)
            if state.datapath is None or not state.reconciled or state.dumping is not None \
                    or last is None or bound is None or bound.host != host or self._index is None:
                continue
            guess = last + 1
            if up is not None:
                up.guess = guess
                up.arms += 1
            else:
                self._left[port] = (host, name, self._left[port][2] + 1)
            try:
                guessed = writer_of(self._model.bindings)     # shares all but one shard
                guessed[port] = Binding(port, host, guess)
                model = derive(self._model, bindings=guessed.done())
                index = self._index.updated(model, ModelDiff(frozenset(), frozenset((port,)),
                                                             frozenset(), frozenset()))
                # its fragment cache is a fork (flows/index.py): what it builds for the guessed
                # binding's networks stays its own, the rest holds for the real model too
                plan = planner.plan(state.expected, compiler.compile_host(index, host))
                if not armable or plan.empty or Q.plan_meters(
                        state.meters_expected, compiler.compile_meters(index, host)) != ([], []):
                    if up is not None:
                        up.arms = MAX_ARMS          # QoS meters go outside bundles: the usual path
                    else:
                        del self._left[port]
                    warm = getattr(self.driver, "warm", None)
                    if warm is not None:
                        warm(plan.add)
                    continue
                self._bundle_id = (self._bundle_id + 1) & 0xFFFFFFFF or 1
                first, items = self.driver.arm(state.datapath, name, port, guess, self._bundle_id,
                                               plan.delete, plan.add, seen=up is not None,
                                               refill=self._drop_meter()[0],
                                               on_fire=self._fresh_marker(host, [port], model,
                                                                          state.datapath))
                state.armed = Armed(name, port, guess, Bundle(
                    self._bundle_id, first, items, self.nb_version, 0.0, [port], [], plan.stale),
                    self._model, model, index)
                self._armed_hosts.add(host)
                LOG.debug("%s: bundle %d armed for %s as ofport %d", host, self._bundle_id, name, guess)
            except Exception as exc:          # a guess that does not compile: no harm done
                LOG.debug("compiling ahead for %s on %s failed: %s", port, host, exc)

    def _settle_armed(self, host: str) -> None:
        """Take the host's armed bundle back once the engine knows what decides it: the port's
        row (under which name) and the interface's number. Until then the driver may still
        send it on another thread's news; when the engine's own news came first and says it
        is right, the engine sends it (the driver does, unless it already did)."""
        state = self.hosts[host]
        armed = state.armed
        row = self.live.get(host, {}).get(armed.port)          # (ofport or PENDING, name)
        number = self.of_ports.get(host, {}).get(armed.name)
        if row is not None and row[1] == armed.name:
            if row[0] != compiler.PENDING:
                number = row[0]
            if number is None:
                return                                        # not numbered yet
            if number == armed.ofport:
                self.driver.confirmed(state.datapath, armed.name)
            self._take_armed(host)
        elif row is not None or (number is not None and number != armed.ofport):
            self._take_armed(host)

    def _take_armed(self, host: str) -> None:
        """Take the host's armed bundle back from the driver; if the host's confirmation sent it
        meanwhile, it is in flight from then on, as if `_sync` had sent it."""
        state = self.hosts[host]
        armed, state.armed = state.armed, None
        self._armed_hosts.discard(host)
        if armed is None or state.datapath is None:
            return
        fired = self.driver.disarm(state.datapath, armed.name)
        if fired is None:
            return
        bundle = armed.bundle
        bundle.sent_at = fired
        self._fired[host] = armed
        adds = [f for f in bundle.items if isinstance(f, Flow)]
        self._count_sent(host, state, bundle, adds)
        up = self._port_up.get((host, armed.port))
        if up is not None and up.committed is None:
            up.sent, up.fired, up.cpu_ms = fired, True, 0.0
            up.guess = armed.ofport
        LOG.info("%s: bundle %d with %d deletes, %d adds, armed for %s as ofport %d, sent on the "
                 "host's confirmation", host, bundle.bundle_id, len(bundle.items) - len(adds), len(adds),
                 armed.name, armed.ofport)

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

    # ---- switches -------------------------------------------------------------------------------
    def _host(self, datapath) -> tuple[str | None, HostState | None]:
        host = self._host_of_dpid.get(datapath.id)
        state = self.hosts.get(host) if host else None
        if state is None or state.datapath is not datapath:
            return host, None              # a stale connection's message
        return host, state

    def _on_connected(self, datapath, names: tuple[str, ...] | None = None) -> None:
        host = self._host_of_dpid.get(datapath.id)
        state = self.hosts.get(host) if host else None
        live = state is not None and state.datapath is not None and state.datapath is not datapath
        verdict = identity.admit(datapath.id, host, names, live)
        if not verdict.ok:              # nothing was sent to it: no meter, no dump, no flows
            self.refusals.record(verdict.reason, getattr(datapath, "address", None), verdict.detail,
                                 datapath.id)
            self.driver.close(datapath)
            return
        LOG.info("switch %016x from %s admitted: %s", datapath.id,
                 addr_text(getattr(datapath, "address", None)), verdict.detail, extra=log_fields(host=host))
        state = self.hosts.setdefault(host, HostState())
        if state.armed is not None:
            self._take_armed(host)             # armed on the connection this one replaces
        state.datapath, state.reconciled, state.dumping = datapath, False, None
        state.in_flight.clear()
        state.connects += 1
        self.of_ports[host] = {}
        self._last_ofport.pop(host, None)       # a restarted switch numbers from its own state
        self._dirty_hosts.add(host)
        self._publish_connections(host)
        self._cold.progress(time.monotonic())
        self._greet(host, state)

    def _greet(self, host: str, state: HostState) -> None:
        """What a connection starts with: the role (HA), the meter (not as a slave: refused),
        the port list, and a flow dump to reconcile from."""
        dp = state.datapath
        if self.ha:
            state.role_retries = 0
            self._request_role(state, ROLE_MASTER if self.active else ROLE_SLAVE)
        if self.active:
            self.driver.hello(dp, DHCP_METER, DHCP_PPS, DHCP_BURST, self._drop_meter())
        else:
            self.driver.port_desc(dp)
        self._request_dump(host, state)

    # ---- HA roles (one of several replicas) ---------------------------------------------------
    def _request_role(self, state: HostState, role: int) -> None:
        """Generation ids are wall-clock microseconds, strictly increasing per replica, so a
        request is never stale against one another replica made earlier (clocks in sync). Two
        replicas greeting a switch at once can still cross: the one whose id is older arrives
        last and is refused as stale; _on_role_refused asks again with a newer id."""
        self._generation = max(time.time_ns() // 1000, self._generation + 1)
        state.role_xid = self.driver.role_request(state.datapath, role, self._generation)

    def _on_role_refused(self, host: str, state: HostState, code: int) -> None:
        role = ROLE_MASTER if self.active else ROLE_SLAVE
        if code != OFPRRFC_STALE or state.role_retries >= ROLE_RETRIES:
            state.last_error = f"role request ({ROLE_NAMES[role]}) refused (code={code})"
            LOG.error("%s: %s; the switch keeps our previous role", host, state.last_error)
            return
        state.role_retries += 1
        LOG.warning("%s: role request (%s) refused as stale: another replica asked with a newer "
                    "generation id; asking again with a newer one", host, ROLE_NAMES[role])
        dp = state.datapath

        def again():
            if state.datapath is dp and self.ha:
                self._request_role(state, ROLE_MASTER if self.active else ROLE_SLAVE)
        self._after(0.01 * state.role_retries, again)

    def _set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        self.active_since = time.time() if active else None
        connected = [(h, s) for h, s in sorted(self.hosts.items()) if s.datapath is not None]
        if active:
            LOG.warning("ha: this replica is now active: master on %d connected switch(es), "
                        "dumping and reconciling each (nothing is sent where nothing changed)",
                        len(connected))
            for host, state in connected:
                # what the standby saw may be stale: the books restart from a fresh dump
                state.reconciled, state.dumping = False, None
                state.in_flight.clear()
                self._greet(host, state)
        else:
            LOG.warning("ha: another replica holds the active lock: this one is standby "
                        "(slave on %d switch(es), no flows sent)", len(connected))
            for host in sorted(self._armed_hosts):     # a slave sends no flows
                self._take_armed(host)
            for _host, state in connected:
                state.role_retries = 0
                self._request_role(state, ROLE_SLAVE)

    def _on_role(self, datapath, role: int, at: float) -> None:
        host, state = self._host(datapath)
        if state is None:
            return
        name = ROLE_NAMES.get(role, str(role))
        if name != state.of_role:
            LOG.info("%s: OpenFlow role %s", host, name)
        state.of_role = name
        if role == ROLE_MASTER:
            state.master_at = state.master_at or at
        else:
            state.master_at = None

    def _on_disconnected(self, datapath) -> None:
        host, state = self._host(datapath)
        if state is None:
            return
        LOG.info("%s disconnected (%d bundle(s) in flight)", host, len(state.in_flight),
                 extra=log_fields(host=host))
        self.driver.forget(datapath)          # nothing armed for it goes out any more
        self.fresh.forget(host)
        state.armed = None
        self._armed_hosts.discard(host)
        state.datapath, state.reconciled, state.dumping, state.dump_xid = None, False, None, None
        state.in_flight.clear()
        state.expected = set(state.installed)
        state.meters_expected = dict(state.meters)
        state.meter_dumping, state.meter_dump_xid = None, None
        if self._activating:
            self._activation_committed(host, None, time.monotonic())
        self.of_ports.pop(host, None)
        self._dirty_hosts.add(host)
        self._publish_connections(host)

    def _on_port(self, datapath, name: str, ofport: int | None, at: float) -> None:
        host, state = self._host(datapath)
        if state is None:
            return
        ports = self.of_ports.setdefault(host, {})
        if ofport is not None and ofport < AUTO_OFPORT_LIMIT:
            self._last_ofport[host] = max(self._last_ofport.get(host, 0), ofport)
        if ofport is None:
            ports.pop(name, None)
        elif ports.get(name) == ofport:
            return
        else:
            ports[name] = ofport
        for port, (o, n) in self.live.get(host, {}).items():
            if n == name:
                self._dirty_hosts.add(host)
                if ofport:
                    self._numbered(host, port, at)
        if state.armed is not None:
            self._settle_armed(host)

    def _request_dump(self, host: str, state: HostState) -> None:
        """Dump the switch's flows and its meters; reconciled once both have arrived."""
        if state.armed is not None:
            self._take_armed(host)
        state.dumping = []
        state.meter_dumping = {}
        state.meter_xids.clear()
        state.dump_xid = self.driver.request_dump(state.datapath)
        state.meter_dump_xid = self.driver.request_meter_dump(state.datapath)

    def _on_meter_stats(self, datapath, xid: int, meters, more: bool) -> None:
        host, state = self._host(datapath)
        if state is None or state.meter_dumping is None or xid != state.meter_dump_xid:
            return
        for m in meters:
            if m is not None and m.id >= Q.METER_BASE:      # the DHCP meter is the hello's
                state.meter_dumping[m.id] = m
        if not more:
            state.meters = state.meter_dumping
            state.meter_dumping, state.meter_dump_xid = None, None
            self._dumped(host, state)

    def _on_stats(self, datapath, xid: int, entries, more: bool) -> None:
        host, state = self._host(datapath)
        if state is None or state.dumping is None or xid != state.dump_xid:
            return
        state.dumping.extend(entries)
        if more:
            return
        state.installed = set(state.dumping)
        state.dumping, state.dump_xid = None, None
        self._dumped(host, state)

    def _dumped(self, host: str, state: HostState) -> None:
        """Flows or meters dumped: with both in, the books restart from them; reconcile."""
        if state.dumping is not None or state.meter_dumping is not None:
            return
        state.expected = set(state.installed)
        state.meters_expected = dict(state.meters)
        state.in_flight.clear()
        state.reconciled = True
        state.reconciled_at = time.time()
        self._sync(host)

    def _sync(self, host: str) -> None:
        """Plan the host's desired flows against what it is expected to hold; send a bundle."""
        state = self.hosts.get(host)
        if state is not None and state.armed is not None:
            self._take_armed(host)             # nothing else goes out while one is armed
        if state is None or not state.reconciled or state.datapath is None or not self.active:
            return
        if self._cold.on and self._cold.hold(host, time.monotonic()):
            return                              # its first bundle waits for the others' reports
        desired = self._desired(host)
        if desired is None:
            return
        plan = planner.plan(state.expected, desired)
        want_meters = compiler.compile_meters(self._index, host)
        meters_before, meters_after = Q.plan_meters(state.meters_expected, want_meters)
        version = self.nb_version
        state.planned_version = version
        ports = sorted(self._pending_up.pop(host, ()))
        if ports and state.in_flight:          # those an armed bundle took out are on their way
            ports = [p for p in ports if not any(p in b.ports for b in state.in_flight.values())]
        if plan.empty and not meters_before and not meters_after:
            if not state.in_flight:
                state.applied_version = version
            now = time.monotonic()
            for port in ports:                  # nothing to send: its flows are in place
                self._port_done(host, port, now, now)
            return
        self._bundle_id = (self._bundle_id + 1) & 0xFFFFFFFF or 1
        bid = self._bundle_id
        first, items = self.driver.send_bundle(state.datapath, bid, plan.delete, plan.add,
                                               meters_before, meters_after,
                                               refill=self._drop_meter()[0] if ports else None)
        mark = self._fresh_marker(host, ports, self._model, state.datapath) if ports else None
        if mark is not None:
            mark()
        now = time.monotonic()                  # encoded and written to the connection
        meters = meters_before + meters_after
        bundle = Bundle(bid, first, items, version, now, ports, meters, plan.stale)
        self._count_sent(host, state, bundle, plan.add)
        if meters:
            for i in range(len(meters)):
                state.meter_xids[first + len(items) + 2 + i] = bid
            while len(state.meter_xids) > 4096:
                state.meter_xids.pop(next(iter(state.meter_xids)))
            _apply_meters(state.meters_expected, bundle.meters)
        cpu = time.thread_time() if ports else 0.0     # a system call: only for a port-up
        for port in ports:
            up = self._port_up[(host, port)]
            up.sent = now
            up.cpu_ms = round((cpu - up.taken_cpu) * 1000, 2)
        LOG.info("%s: bundle %d with %d deletes, %d adds%s", host, bid, len(plan.delete), len(plan.add),
                 f", {len(meters)} meter-mods" if meters else "")

    def _count_sent(self, host: str, state: HostState, bundle: Bundle, adds) -> None:
        """A bundle is on its way (sent by `_sync`, or armed and sent on the host's confirmation):
        in flight, and the books expect its effect (its deletes: Plan.stale)."""
        state.in_flight[bundle.bundle_id] = bundle
        state.expected.difference_update(bundle.stale)
        state.expected.update(f.key for f in adds)
        state.flow_mods += len(bundle.items)
        state.bundles += 1
        self.metrics.flow_mods.inc(len(bundle.items))
        if self._sent is not None:
            self._sent[host] = bundle.bundle_id

    def _port_done(self, host: str, port: str, sent: float, committed: float) -> None:
        up = self._port_up.get((host, port))
        if up is None or up.committed is not None:
            return
        up.sent = up.sent or sent
        up.committed = max(committed, up.sent)  # a simulated switch may answer inside the write
        self._last_up[port] = up
        self.metrics.port_up.observe(committed - up.seen)
        bound = self._model.bindings.get(port)
        ahead = "none" if up.guess is None else "right" if bound and bound.ofport == up.guess else "wrong"
        if up.fired:
            ahead += ", sent armed on the host's confirmation"
        LOG.info("port %s up on %s in %.1f ms (seen at %.4f, numbered +%.1f, taken +%.1f, sent +%.1f, "
                 "engine CPU taken -> sent %s ms, compiled ahead: %s)", port, host,
                 (committed - up.seen) * 1000, up.seen_at, ((up.numbered or up.seen) - up.seen) * 1000,
                 ((up.taken or up.seen) - up.seen) * 1000,
                 (up.sent - up.seen) * 1000, up.cpu_ms, ahead)

    def _fresh_marker(self, host: str, ports, model: Model, datapath):
        """What marks these NICs fresh once their bundle is written, and sends back right behind
        it what their host held for them (controller/replay.py); made here on the loop so the
        firing thread reads no engine state; None if none is in a network."""
        marks = []
        for port in ports:
            p = model.ports.get(port)
            net = model.network_of(p) if p is not None else None
            if net is not None:
                marks.append((p.mac, port, net.vni))
        if not marks:
            return None
        fresh, driver = self.fresh, self.driver

        def mark() -> None:
            held = []
            for mac, port, vni in marks:
                held += fresh.mark(host, mac, port, vni)
            if held:
                replay.release(driver, datapath, held)
        return mark

    def _on_bundle_reply(self, datapath, bundle_id: int, kind: int, at: float) -> None:
        if kind != OFPBCT_COMMIT_REPLY:
            return
        host, state = self._host(datapath)
        if state is None:
            return
        if state.armed is not None and state.armed.bundle.bundle_id == bundle_id:
            self._take_armed(host)             # fired: its reply may come before its port-status
        bundle = state.in_flight.pop(bundle_id, None)
        if bundle is None:
            return
        # a cookie-masked delete removed every flow of its table with that cookie. Bundles
        # commit in the order they were planned, so the books hold what the plan assumed and
        # its deletes removed exactly its stale keys and the re-added ones (Plan.stale); a pass
        # over the books per commit cost ~0.1 ms at 160 flows a host. After a refusal (a dump
        # is coming, the host is not reconciled) the books may hold what the refused bundle was
        # to delete: then the pass.
        if state.reconciled:
            state.installed.difference_update(bundle.stale)
        else:
            deleted = {(item[1], item[2]) for item in bundle.items if isinstance(item, tuple)}
            if deleted:
                state.installed = {k for k in state.installed if (k[0], k[2]) not in deleted}
        state.installed.update(f.key for f in bundle.items if isinstance(f, Flow))
        # the meter-mods went before the bundle (adds, changes) and right after it (deletes) on
        # the same connection: the switch handled them in order, and a refusal of one of them
        # (an error with its xid) sends the host back to a dump
        _apply_meters(state.meters, bundle.meters)
        state.applied_version = max(state.applied_version, bundle.version)
        if not state.in_flight:
            state.applied_version = max(state.applied_version, state.planned_version)
        state.backoff = 0.0
        self.metrics.bundles.labels("committed").inc()
        self.metrics.bundle_seconds.observe(at - bundle.sent_at)
        for port in bundle.ports:
            self._port_done(host, port, bundle.sent_at, at)
        if self._activating:
            self._activation_committed(host, bundle_id, at)

    def _after(self, seconds: float, fn) -> None:
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._timer_seq), fn))

    def _on_error(self, datapath, xid: int, err_type: int, code: int, data: bytes) -> None:
        host, state = self._host(datapath)
        if err_type == OFPET_METER_MOD_FAILED and code == OFPMMFC_METER_EXISTS and (
                state is None or xid not in state.meter_xids):
            return          # weft re-adds its DHCP meter on every connection
        if state is None:
            return          # not an admitted connection (refused, or replaced): nothing of ours
        if err_type == OFPET_ROLE_REQUEST_FAILED and xid == state.role_xid:
            self._on_role_refused(host, state, code)
            return
        if xid == state.meter_dump_xid and state.meter_dumping is not None:
            LOG.warning("%s: no meter dump (error type=%s code=%s): counting no QoS meters there",
                        host, err_type, code)
            state.meter_dumping = {}
            self._on_meter_stats(datapath, xid, [], False)
            return
        if state.armed is not None and state.armed.bundle.owns(xid):
            self._take_armed(host)             # fired: its error may come before its port-status
        bundle = next((b for b in state.in_flight.values() if b.owns(xid)), None)
        if bundle is None and xid in state.meter_xids:
            # a meter delete sent after a committed bundle was refused: the books may be wrong
            LOG.error("%s: meter-mod refused after bundle %d (type=%s code=%s); dumping and "
                      "reconciling", host, state.meter_xids[xid], err_type, code)
            state.last_error = f"meter-mod refused (type={err_type} code={code})"
            self._redump_later(host, state)
            return
        if bundle is None and state.refused is not None and state.refused.owns(xid):
            return          # the failed commit of a bundle already reported by its flow-mod
        if bundle is None:
            LOG.error("switch %016x (%s) error type=%s code=%s xid=%s data=%s", datapath.id, host,
                      err_type, code, xid, bytes(data[:64]).hex() if data else "")
            return
        item = bundle.item_at(xid)
        meter = bundle.meter_at(xid)
        what = (f"meter {meter[0]} {meter[1]}" if meter is not None else
                "the bundle" if item is None else
                f"delete table={item[1]} cookie={item[2]:#x}" if isinstance(item, tuple) else
                _describe(item))
        state.last_error = f"bundle {bundle.bundle_id} refused (type={err_type} code={code}): {what}"
        LOG.error("%s: %s; dumping and reconciling", host, state.last_error)
        self.fresh.forget(host)                 # what it drops is its flows' answer again
        state.refused = bundle
        if self._activating:
            self._activation_committed(host, None, time.monotonic())
        if state.in_flight.pop(bundle.bundle_id, None) is not None:
            state.bundle_errors += 1
            self.metrics.bundles.labels("failed").inc()
        # nothing of the atomic bundle was applied: find out what the switch holds, start over,
        # after a backoff so that a switch that keeps refusing is not hammered
        self._redump_later(host, state)

    def _redump_later(self, host: str, state: HostState) -> None:
        state.reconciled = False
        state.backoff = min(MAX_BACKOFF, state.backoff * 2 or MIN_BACKOFF)
        dp = state.datapath

        def retry():
            if state.datapath is dp and not state.reconciled and state.dumping is None:
                # what every connection starts with (the meter may be what the switch lost)
                self.driver.hello(dp, DHCP_METER, DHCP_PPS, DHCP_BURST, self._drop_meter())
                self._request_dump(host, state)
        self._after(state.backoff, retry)

    # ---- publishing ------------------------------------------------------------------------------
    def _publish(self, versions: list[int], affected: set[str]) -> None:
        """Record the batch's progress for wait_processed/wait_applied (O(affected))."""
        with self._cond:
            if versions:
                last = max(versions)
                dps = self._pub_dps
                self._batch_hosts[last] = frozenset(h for h in affected if h in dps)
                for v in versions:
                    self._version_batch[v] = last
                self._processed_version = max(self._processed_version, last)
                self._processed_at[last] = time.monotonic()
                while len(self._processed_at) > HISTORY:
                    self._processed_at.pop(next(iter(self._processed_at)))
                while len(self._version_batch) > HISTORY:
                    self._version_batch.pop(next(iter(self._version_batch)))
                while len(self._batch_hosts) > HISTORY:
                    self._batch_hosts.pop(next(iter(self._batch_hosts)))
            self._cond.notify_all()

    def _publish_connections(self, host: str | None = None) -> None:
        """Copy-on-write views of the connections (they change rarely; reads are lock-free)."""
        dps = dict(self._pub_dps)
        if host is None:
            self._pub_hosts_of_dpid = dict(self._host_of_dpid)
        else:
            dp = self.hosts[host].datapath
            if dp is None:
                dps.pop(host, None)
            else:
                dps[host] = dp
        self._pub_dps = dps
        self.metrics.hosts_connected.set(len(dps))

    def _status(self) -> dict:
        return {host: {"connected": s.datapath is not None, "reconciled": s.reconciled,
                       "reconciled_at": s.reconciled_at,
                       "flows": len(s.installed), "flow_mods": s.flow_mods, "meters": len(s.meters),
                       "bundles": s.bundles, "bundle_errors": s.bundle_errors,
                       "in_flight": len(s.in_flight), "connects": s.connects,
                       "applied_version": s.applied_version, "last_error": s.last_error,
                       **({"of_role": s.of_role, "master_at": s.master_at} if self.ha else {})}
                for host, s in sorted(self.hosts.items())}


def _apply_meters(books: dict, changes) -> None:
    for command, meter in changes:
        if command == "delete":
            books.pop(meter.id, None)
        else:
            books[meter.id] = meter


def _describe(flow: Flow) -> str:
    from controller import ofmsg
    return (f"table={flow.table} priority={flow.priority} cookie={flow.cookie:#x} "
            f"{ofmsg.render_match(flow)} actions={ofmsg.render_actions(flow)}")
