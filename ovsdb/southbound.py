"""Southbound OVSDB: one thread keeps every host's Open vSwitch configured through its IDL and reports VM bindings.

`HostManager` holds one `ovs` IDL per host, all driven by a single thread and one poller (the
number of hosts costs sockets, not threads); other threads only queue requests to it. For
each host it compares the desired configuration (`ovsdb.hostconfig`: br-int's settings, the
controller targets, the flow-based tunnel port, the traffic exporters) with the IDL's rows and
writes ONE transaction with only what differs — nothing differs, no transaction. A transaction
is committed without blocking and its status picked up on later iterations; a conflict, an
error or a lost connection puts the host in `failed`/`connecting` and it is retried with
exponential backoff (0.1 s doubling to 5 s); a reconnect re-checks everything.

A NIC is bound when an Interface has `external_ids:iface-id=<port uuid>`; until ovs-vswitchd
gives it an ofport it is reported as PENDING (0), which lets the controller install everything
that does not need the ofport ahead of it (ofport -1, a failed interface, is not bound).

A standby weftd replica (HA) watches without writing (`set_writable(False)`): it reports
bindings, so its model is hot, but only the active replica configures hosts.
"""
from __future__ import annotations

import copy
import heapq
import json
import logging
import os
import select
import threading
import time
import warnings
import zlib

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from ovsdb import pollfix  # noqa: F401  (poll(2), not select: more than 1,023 hosts)
from ovsdb import idlshare

from flows.compiler import PENDING
from controller.journal import fields as log_fields
from ovsdb import hostconfig
from ovsdb.hostconfig import BRIDGE, IPFIX_SET, TUNNEL_PORT, Change, Desired

LOG = logging.getLogger(__name__)
VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
__all__ = ["BRIDGE", "TUNNEL_PORT", "HostManager", "datapath_id", "snapshot"]

MIN_BACKOFF = 0.1               # seconds; doubled after each failure up to MAX_BACKOFF
MAX_BACKOFF = 5.0
TXN_TIMEOUT = 10.0              # a transaction without an answer for this long is abandoned
FULL_PASS = 30.0                # every host runs at least this often (a safety net)
SWEEP_TICK = 0.25               # ... a slice of them every tick, not all at once
COLUMNS = {
    "Open_vSwitch": ["bridges"],
    "Bridge": ["name", "datapath_type", "fail_mode", "protocols", "other_config", "controller",
               "ports", "sflow", "netflow"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "options", "ofport_request", "external_ids", "ofport", "ifindex",
                  "mtu_request"],
    "Controller": ["target", "max_backoff", "inactivity_probe"],
    "sFlow": ["targets", "sampling", "polling", "header", "agent"],
    "NetFlow": ["targets", "active_timeout", "engine_id"],
    "IPFIX": ["targets", "obs_domain_id", "cache_active_timeout", "cache_max_flows", "other_config"],
    "Flow_Sample_Collector_Set": ["id", "bridge", "ipfix"],
}
EXPORTER_TABLES = {"sflow": "sFlow", "netflow": "NetFlow", "ipfix": "IPFIX"}
RECHECK_DELAY = 0.2     # seconds between a database change and weft checking its configuration


def datapath_id(host: str) -> int:
    """A stable 64-bit datapath id for a host's br-int (so the controller knows who connects)."""
    return 0x7765 << 48 | zlib.crc32(host.encode()) << 8 | 0x01


class ConfigError(Exception):
    """The host's database cannot take weft's configuration as it stands (retried with backoff)."""


# ---- IDL rows <-> plain data ---------------------------------------------------------------------

def _opt(value):
    """An optional column as read through the IDL ([] or [x]) -> None or x."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _columns(row, names) -> dict:
    return {n: _opt(getattr(row, n)) if n not in ("targets", "protocols") else getattr(row, n)
            for n in names}


def _bridge_row(idl):
    for row in idl.tables["Bridge"].rows.values():
        if row.name == BRIDGE:
            return row
    return None


def _tunnel_rows(bridge):
    """(Port, Interface) of weft-tun on br-int, or (None, None)."""
    for port in bridge.ports:
        if port.name == TUNNEL_PORT:
            for iface in port.interfaces:
                if iface.name == TUNNEL_PORT:
                    return port, iface
            return port, None
    return None, None


def _local_iface(bridge):
    """br-int's own internal Interface (port and interface named like the bridge), or None."""
    for port in bridge.ports:
        if port.name == BRIDGE:
            return next((i for i in port.interfaces if i.name == BRIDGE), None)
    return None


def _ipfix_set(idl, bridge):
    for row in idl.tables["Flow_Sample_Collector_Set"].rows.values():
        if row.id == IPFIX_SET and row.bridge.uuid == bridge.uuid:
            return row
    return None


def snapshot(idl) -> dict:
    """What weft manages on the host, read from the IDL, in the form `hostconfig.plan` takes."""
    bridge = _bridge_row(idl)
    if bridge is None:
        return {"bridge": None}
    _port, iface = _tunnel_rows(bridge)
    fscs = _ipfix_set(idl, bridge)
    return {"bridge": {
        "datapath_type": bridge.datapath_type,
        "fail_mode": _opt(bridge.fail_mode),
        "protocols": bridge.protocols,
        "other_config": bridge.other_config,
        "controllers": {c.target: _columns(c, ("max_backoff", "inactivity_probe")) for c in bridge.controller},
        "tunnel": None if iface is None else {"type": iface.type, "options": iface.options,
                                              "ofport_request": _opt(iface.ofport_request)},
        "sflow": _columns(bridge.sflow[0], COLUMNS["sFlow"]) if bridge.sflow else None,
        "netflow": _columns(bridge.netflow[0], COLUMNS["NetFlow"]) if bridge.netflow else None,
        "ipfix": _columns(fscs.ipfix[0], COLUMNS["IPFIX"]) if fscs is not None and fscs.ipfix else None,
        "patches": _patches(idl, bridge),
        "local": _local(bridge),
    }}


def _local(bridge) -> dict | None:
    iface = _local_iface(bridge)
    return None if iface is None else {"mtu_request": _opt(iface.mtu_request)}


def _patches(idl, bridge) -> dict:
    """{br-int patch port weft made for a provider: (its peer's bridge, peer name, ofport_request)}."""
    where = {}
    for br in idl.tables["Bridge"].rows.values():
        for port in br.ports:
            where[port.name] = br.name
    found = {}
    for port in bridge.ports:
        if port.name.startswith("weft-p-"):
            for iface in port.interfaces:
                if iface.name == port.name and iface.type == "patch":
                    peer = iface.options.get("peer")
                    found[port.name] = (where.get(peer), peer, _opt(iface.ofport_request))
    return found


def _provider(txn, idl, bridge, port_name: str, spec: tuple) -> None:
    """Make (or fix) the patch pair br-int:port_name <-> spec's bridge:peer."""
    br_name, peer, ofport = spec
    target = next((b for b in idl.tables["Bridge"].rows.values() if b.name == br_name), None)
    if target is None:
        raise ConfigError(f"provider bridge {br_name} does not exist on this host (create it with "
                          f"its uplink, e.g. `ovs-vsctl add-br {br_name} -- add-port {br_name} eth1`)")
    for br, name in ((bridge, port_name), (target, peer)):
        for port in list(br.ports):
            if port.name == name:
                br.delvalue("ports", port)
    ours = _insert(txn, idl, "Interface", {"name": port_name, "type": "patch",
                                           "options": {"peer": peer}, "ofport_request": ofport})
    theirs = _insert(txn, idl, "Interface", {"name": peer, "type": "patch",
                                             "options": {"peer": port_name}})
    bridge.addvalue("ports", _insert(txn, idl, "Port", {"name": port_name, "interfaces": [ours]}))
    target.addvalue("ports", _insert(txn, idl, "Port", {"name": peer, "interfaces": [theirs]}))


def _write(row, column: str, value) -> None:
    """Set a column from plain data (None / a scalar for optional columns, any iterable for sets)."""
    kind = row._table.columns[column].type
    if kind.is_map():
        value = dict(value or {})
    elif kind.is_optional():
        value = [] if value is None else [value]
    elif not kind.is_scalar():
        value = list(value)
    setattr(row, column, value)


def _insert(txn, idl, table: str, columns: dict):
    row = txn.insert(idl.tables[table])
    for column, value in columns.items():
        _write(row, column, value)
    return row


def build_transaction(idl, host: str, changes: list[Change]):
    """One IDL transaction that applies `changes` (from `hostconfig.plan`) to the host's database."""
    txn = ovs.db.idl.Transaction(idl)
    try:
        txn.add_comment(f"weft: configure {host}: " + ", ".join(
            c.op + (f" {c.key}" if c.key else "") for c in changes))
        bridge = _bridge_row(idl)
        new_bridge = bridge is None
        ports, other_config = [], {}
        for change in changes:
            if change.op == "add-bridge":
                root = next(iter(idl.tables["Open_vSwitch"].rows.values()), None)
                if root is None:
                    raise ConfigError("the database has no Open_vSwitch record yet "
                                      "(not initialised: `ovs-vsctl init` or ovs-vswitchd's start-up)")
                local = _insert(txn, idl, "Interface", {"name": BRIDGE, "type": "internal",
                                                        **(change.value or {})})
                ports.append(_insert(txn, idl, "Port", {"name": BRIDGE, "interfaces": [local]}))
                bridge = _insert(txn, idl, "Bridge", {"name": BRIDGE})
                root.addvalue("bridges", bridge)
            elif change.op == "bridge":
                _write(bridge, change.key, change.value)
            elif change.op == "local":
                _write(_local_iface(bridge), change.key, change.value)
            elif change.op == "bridge-config":
                if new_bridge:
                    other_config[change.key] = change.value
                    _write(bridge, "other_config", other_config)
                else:
                    bridge.setkey("other_config", change.key, change.value)
            elif change.op == "controllers":
                have = {} if new_bridge else {c.target: c for c in bridge.controller}
                rows = [have[t] for t in change.value["keep"]]
                rows += [_insert(txn, idl, "Controller", {"target": t, **hostconfig.CONTROLLER})
                         for t in change.value["add"]]
                if not new_bridge:
                    bridge.verify("controller")
                _write(bridge, "controller", rows)
            elif change.op == "add-tunnel":
                iface = _insert(txn, idl, "Interface", {"name": TUNNEL_PORT, **change.value})
                port = _insert(txn, idl, "Port", {"name": TUNNEL_PORT, "interfaces": [iface]})
                if new_bridge:
                    ports.append(port)
                else:
                    bridge.addvalue("ports", port)
            elif change.op == "tunnel":
                _port, iface = _tunnel_rows(bridge)
                if iface is None:
                    raise ConfigError(f"port {TUNNEL_PORT} on {BRIDGE} has no interface {TUNNEL_PORT}; "
                                      f"delete the port (ovs-vsctl del-port {TUNNEL_PORT}) and weft re-creates it")
                _write(iface, change.key, change.value)
            elif change.op == "exporter":
                _exporter(txn, idl, bridge, change.key, change.value)
            elif change.op == "provider":
                if new_bridge:
                    continue            # br-int is being made: its patches follow in the next plan
                _provider(txn, idl, bridge, change.key, change.value)
            else:
                raise ValueError(f"unknown change {change.op!r}")
        if new_bridge:
            _write(bridge, "ports", ports)
    except BaseException:
        txn.abort()
        raise
    return txn


def _exporter(txn, idl, bridge, kind: str, columns: dict | None) -> None:
    """Replace (or remove, columns None) one exporter; the bridge-level sFlow/NetFlow, or
    IPFIX behind Flow_Sample_Collector_Set 1 (the old IPFIX row goes with its last reference)."""
    row = _insert(txn, idl, EXPORTER_TABLES[kind], columns) if columns is not None else None
    if kind in ("sflow", "netflow"):
        _write(bridge, kind, row)
        return
    fscs = None if bridge._data is None else _ipfix_set(idl, bridge)
    if row is None:
        if fscs is not None:
            fscs.delete()
    elif fscs is not None:
        _write(fscs, "ipfix", row)
    else:
        _insert(txn, idl, "Flow_Sample_Collector_Set", {"id": IPFIX_SET, "bridge": bridge, "ipfix": row})


def bindings(idl) -> dict[str, tuple[int, str]]:
    """{port uuid: (ofport or PENDING, interface name)} of every NIC with an iface-id."""
    found = {}
    for row in idl.tables["Interface"].rows.values():
        iface_id = row.external_ids.get("iface-id")
        ofport = row.ofport
        if isinstance(ofport, list):
            ofport = ofport[0] if ofport else PENDING
        if iface_id and isinstance(ofport, int) and ofport >= 0:
            found[iface_id] = (ofport, row.name)   # 0: not numbered by vswitchd yet
    return found


def ifindexes(idl) -> dict[str, int]:
    """{port uuid: kernel ifindex} of every NIC with an iface-id and an ifindex (what sFlow
    names interfaces by; the collectors map it back to the port)."""
    found = {}
    for row in idl.tables["Interface"].rows.values():
        iface_id = row.external_ids.get("iface-id")
        ifindex = getattr(row, "ifindex", None)
        if isinstance(ifindex, list):
            ifindex = ifindex[0] if ifindex else None
        if iface_id and isinstance(ifindex, int) and ifindex > 0:
            found[iface_id] = ifindex
    return found


def _error_text(error: str) -> str:
    """An OVSDB error ({"error": ..., "details": ...} as JSON) as one readable line."""
    try:
        parsed = json.loads(error)
    except ValueError:
        return error
    if isinstance(parsed, dict) and "error" in parsed:
        return parsed["error"] + (f": {parsed['details']}" if parsed.get("details") else "")
    return error


# ---- the manager ------------------------------------------------------------------------------------

class _Waits(ovs.poller.Poller):
    """What one host's IDL asks to wait for, recorded (fd -> events, the earliest timeout in ms,
    -1 none, 0 at once) instead of registered in a poller of its own."""

    def __init__(self):                 # noqa: no poll object of its own
        self.fds: dict[int, int] = {}
        self.timeout = -1

    def fd_wait(self, fd, events):
        fd = fd if isinstance(fd, int) else fd.fileno()
        self.fds[fd] = self.fds.get(fd, 0) | events


class _Host:
    """The manager thread's view of one host (touched by that thread only)."""

    def __init__(self, name: str, spec: tuple):
        self.name = name
        self.remote, self.tunnel_ip, self.exporters, self.providers = spec
        self.idl = None
        self.session_seqno = None
        self.planned_seqno = None       # the IDL change_seqno the last plan looked at
        self.bound_seqno = None
        self.bindings = None
        self.dirty = True               # plan at the next opportunity
        self.txn = None
        self.txn_since = 0.0
        self.retry_at = 0.0             # monotonic
        self.backoff = MIN_BACKOFF
        self.just_committed = False     # the last plan was applied: a non-empty plan next is suspect
        self.ever_connected = False
        self.recheck_at = None          # a database change to look at after RECHECK_DELAY
        self.fds: dict[int, int] = {}   # what its IDL waits on: fd -> poll events
        self.timer_seq = -1             # its entry in the manager's timer heap (older ones lapse)


class HostManager:
    """Keeps every host's Open vSwitch configured and reports its VM bindings; one thread, one poller."""

    def __init__(self, on_bindings, controllers: list[str], tunnel: str, datapath_type: str | None,
                 tls: bool = False):
        self.on_bindings = on_bindings      # callback(host, {port uuid: (ofport, interface name)})
        self.on_ifindexes = None            # optional callback(host, {port uuid: kernel ifindex})
        self.tls = tls                      # weftd has a key, certificate and CA for ssl: remotes
        self.controllers = tuple(controllers)
        self.tunnel = tunnel
        self.datapath_type = datapath_type
        self._lock = threading.Lock()
        self._specs: dict[str, tuple] = {}      # what set_host was last told, per host
        self._requests: dict[str, tuple | None] = {}   # for the thread: spec, or None = remove
        self._status: dict[str, dict] = {}
        self._hosts: dict[str, _Host] = {}      # the thread's own
        self._stop = False
        self._writable = True           # False: a standby replica, bindings only
        self._shared_helper = None
        self._wake_r = self._wake_w = None
        self._ready: set[_Host] = set()         # hosts to run in the next pass (the thread's)
        self._timers: list = []                 # heap of (monotonic, seq, host)
        self._timer_seq = 0
        self._fd_hosts: dict[int, set] = {}     # fd -> the hosts waiting on it
        self._poll = select.poll()
        self._sweep_at = 0.0                    # next slice of the rolling safety-net pass
        self._sweep_order: list[str] = []       # the pass's hosts, in order
        self._sweep_pos = 0
        self._all_ready = False
        self._thread = threading.Thread(target=self._loop, name="southbound", daemon=True)

    # -- any thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def set_host(self, name: str, remote: str, tunnel_ip: str, exporters: dict | None,
                 providers: tuple = ()) -> None:
        """Configure host `name` through OVSDB `remote`; cheap (no wake-up) when nothing changed."""
        spec = (remote, tunnel_ip, exporters, tuple(providers))
        with self._lock:
            if self._specs.get(name) == spec:
                return
            spec = (remote, tunnel_ip, copy.deepcopy(exporters), tuple(providers))
            self._specs[name] = spec
            self._requests[name] = spec
            self._status.setdefault(name, {"state": "connecting", "configured_at": None,
                                           "error": None, "attempts": 0})
        self._wake()

    def set_writable(self, writable: bool) -> None:
        """HA: configure hosts (the active replica) or only watch them (a standby)."""
        self._writable = bool(writable)
        self._all_ready = True
        self._wake()

    def remove_host(self, name: str) -> None:
        with self._lock:
            if self._specs.pop(name, None) is None:
                return
            self._requests[name] = None
            self._status.pop(name, None)
        self._wake()

    def status(self) -> dict[str, dict]:
        with self._lock:
            return {name: dict(st) for name, st in self._status.items()}

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass                    # already woken

    # -- the manager thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        failures = 0
        try:
            while not self._stop:
                try:
                    self._iteration()
                    failures = 0
                except Exception:        # never die silently: every host would stay unconfigured
                    failures += 1
                    if failures in (1, 10, 100) or failures % 1000 == 0:
                        LOG.exception("southbound: loop failed (%d times in a row); retrying", failures)
                    time.sleep(min(1.0, 0.01 * failures))
        finally:
            for host in self._hosts.values():
                self._close(host)

    def _iteration(self) -> None:
        """One pass: take requests, run the hosts that have something to do (their socket is
        ready, a timer of theirs is due, they are new or changed), wait for the next event.

        Only those hosts run: running every host's IDL at every wake-up cost a pass over all of
        them for each event of any one (150 ms and more per pass at 5,000 hosts, paid by every
        port-up). What each host waits for is recorded (`_Waits`) and kept in one poll set and
        one timer heap; every host runs at least every FULL_PASS seconds anyway (a safety net,
        a slice every SWEEP_TICK: all at once, 5,000 idle IDLs held the interpreter for a
        second, and a port-up landing in it waited that long)."""
        self._take_requests()
        now = time.monotonic()
        if self._all_ready:
            self._ready.update(self._hosts.values())
            self._all_ready = False
        if now >= self._sweep_at:
            self._sweep_slice()
            self._sweep_at = now + SWEEP_TICK
        while self._timers and self._timers[0][0] <= now:
            _at, _seq, host = heapq.heappop(self._timers)
            if host.timer_seq == _seq:
                self._ready.add(host)
        ready, self._ready = self._ready, set()
        for host in ready:
            if self._hosts.get(host.name) is not host:
                continue                 # removed or replaced meanwhile
            try:
                self._run_host(host)
            except Exception as exc:     # a bug must not stop the other hosts' configuration
                LOG.exception("southbound: host %s", host.name)
                self._failed(host, f"internal error: {exc}")
            self._record_waits(host)
        timeout = 0 if self._ready else 1000
        if self._timers:
            timeout = min(timeout, max(0, int((self._timers[0][0] - time.monotonic()) * 1000) + 1))
        timeout = min(timeout, max(0, int((self._sweep_at - time.monotonic()) * 1000) + 1))
        for fd, events in self._poll.poll(timeout):
            if fd == self._wake_r:
                continue
            self._ready.update(self._fd_hosts.get(fd, ()))
            if events & select.POLLNVAL and not self._fd_hosts.get(fd):
                self._unwatch_fd(fd)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _sweep_slice(self) -> None:
        """The next 1/(FULL_PASS/SWEEP_TICK) of the hosts into the pass (a new round of them
        once the last one has been taken)."""
        if self._sweep_pos >= len(self._sweep_order):
            self._sweep_order, self._sweep_pos = sorted(self._hosts), 0
        count = -(-len(self._sweep_order) * SWEEP_TICK // FULL_PASS)      # rounded up
        for name in self._sweep_order[self._sweep_pos:self._sweep_pos + int(count)]:
            host = self._hosts.get(name)
            if host is not None:
                self._ready.add(host)
        self._sweep_pos += int(count)

    def _record_waits(self, host: _Host) -> None:
        """What the host's IDL (and transaction, retry, recheck) waits for, into the poll set and
        the timer heap."""
        waits = _Waits()
        host.idl.wait(waits)
        if host.txn is not None:
            host.txn.wait(waits)
        now = time.monotonic()
        wait = host.retry_at - now
        if host.dirty and host.txn is None and wait > 0:
            waits.timer_wait(int(wait * 1000) + 1)
        if host.recheck_at is not None:
            waits.timer_wait(max(0, int((host.recheck_at - now) * 1000)) + 1)
        self._watch(host, waits.fds)
        host.timer_seq = self._timer_seq = self._timer_seq + 1
        if waits.timeout == 0:
            self._ready.add(host)
        elif waits.timeout > 0:
            heapq.heappush(self._timers, (now + waits.timeout / 1000.0, host.timer_seq, host))

    def _watch(self, host: _Host, fds: dict[int, int]) -> None:
        for fd in host.fds.keys() - fds.keys():
            self._fd_hosts.get(fd, set()).discard(host)
            self._reregister(fd)
        for fd in fds:
            if host.fds.get(fd) != fds[fd] or host not in self._fd_hosts.get(fd, ()):
                self._fd_hosts.setdefault(fd, set()).add(host)
                host.fds[fd] = fds[fd]
                self._reregister(fd)
        for fd in host.fds.keys() - fds.keys():
            del host.fds[fd]

    def _reregister(self, fd: int) -> None:
        hosts = self._fd_hosts.get(fd)
        if not hosts:
            self._unwatch_fd(fd)
            return
        events = 0
        for h in hosts:
            events |= h.fds.get(fd, 0)
        self._poll.register(fd, events)

    def _unwatch_fd(self, fd: int) -> None:
        self._fd_hosts.pop(fd, None)
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass

    def _forget(self, host: _Host) -> None:
        """A host removed or replaced: out of the poll set (its timers lapse on their own)."""
        self._watch(host, {})
        host.timer_seq = -1

    def _take_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, {}
        for name, spec in requests.items():
            host = self._hosts.get(name)
            if spec is None:
                if host is not None:
                    self._close(self._hosts.pop(name))
                continue
            if host is None or host.remote != spec[0]:
                if host is not None:
                    self._close(self._hosts.pop(name))
                if spec[0].startswith("ssl:") and not self.tls:
                    error = f"{spec[0]} needs TLS but weftd has no --ssl-key, --ssl-cert and --ssl-ca"
                    LOG.error("cannot configure host %s: %s", name, error)
                    self._set_status(_Host(name, spec), state="failed", error=error)
                    continue
                host = self._hosts[name] = _Host(name, spec)
                host.idl = idlshare.HostIdl(spec[0], self._schema_helper())
                # reconnect quickly (the default backoff grows to 8 s): a host's OVSDB that comes
                # up late is configured within MAX_BACKOFF of it
                host.idl._session.reconnect.set_backoff(int(MIN_BACKOFF * 1000), int(MAX_BACKOFF * 1000))
                self._set_status(host, state="connecting", error=None, attempts=0)
            else:
                host.remote, host.tunnel_ip, host.exporters, host.providers = spec
                host.dirty, host.retry_at, host.backoff = True, 0.0, MIN_BACKOFF
                self._set_status(host, attempts=0)
            self._ready.add(host)

    def _schema_helper(self):
        """One helper for every IDL, holding the schema parsed once (`ovsdb.idlshare`): ovs's
        own parsing and checking took most of a host's set-up time."""
        if self._shared_helper is None:
            with open(VSWITCH_SCHEMA) as f:
                helper = ovs.db.idl.SchemaHelper(schema_json=json.loads(f.read()))
            for table, columns in COLUMNS.items():
                helper.register_columns(table, columns)
            self._shared_helper = idlshare.SharedSchemaHelper(helper)
        return self._shared_helper

    def _close(self, host: _Host) -> None:
        self._forget(host)
        if host.txn is not None:
            host.txn.abort()
            host.txn = None
        host.idl.close()

    def _desired(self, host: _Host) -> Desired:
        return Desired(datapath_id=f"{datapath_id(host.name):016x}", controllers=self.controllers,
                       tunnel_type=self.tunnel, tunnel_ip=host.tunnel_ip, providers=host.providers,
                       datapath_type=self.datapath_type, exporters=host.exporters)

    def _run_host(self, host: _Host) -> None:
        idl = host.idl
        idl.run()
        # reported only once the database has been read: before that an IDL holds no rows, and
        # an empty report would tell the engine the host had no NICs (the store's bindings of it
        # dropped, its NICs then counted as new port-ups, a cold start's first bundles wrong)
        if idl.change_seqno != host.bound_seqno and idl.state == idl.IDL_S_MONITORING:
            host.bound_seqno = idl.change_seqno
            found = bindings(idl)
            if found != host.bindings:
                host.bindings = found
                # reported at once, before any configuration work: port-up waits for it
                try:
                    self.on_bindings(host.name, found)
                except Exception:
                    LOG.exception("binding callback failed for %s", host.name)
            if self.on_ifindexes is not None:
                idx = ifindexes(idl)
                if idx != getattr(host, "ifindexes", None):
                    host.ifindexes = idx
                    try:
                        self.on_ifindexes(host.name, idx)
                    except Exception:
                        LOG.exception("ifindex callback failed for %s", host.name)
        if host.txn is not None:
            self._poll_txn(host)
        connected = idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING
        seqno = idl._session.get_seqno()
        if seqno != host.session_seqno:
            host.session_seqno = seqno
            host.dirty = True
        if not connected:
            if host.txn is None:
                if host.ever_connected and self._status_of(host, "state") != "connecting":
                    LOG.warning("host %s: lost its OVSDB connection (%s); reconnecting (0.1 s "
                                "doubling to %.0f s); its switch keeps its flows, bindings resume "
                                "when the database is back", host.name, host.remote, MAX_BACKOFF)
                self._set_status(host, state="connecting",
                                 error=f"lost the connection to {host.remote}; reconnecting"
                                 if host.ever_connected else None)
                host.dirty = True
            return
        host.ever_connected = True
        if host.txn is not None:
            return
        if not self._writable:              # standby: watch only; plan once writable
            host.dirty = True
            self._set_status(host, state="standby", error=None)
            return
        if not host.dirty and idl.change_seqno == host.planned_seqno:
            return
        if not host.dirty:
            # only the database changed (most often a VM's NIC, which is not weft's to
            # configure): look at it a little later, once, so that checking the configuration
            # never competes with the port-up that the same change starts
            now = time.monotonic()
            if host.recheck_at is None:
                host.recheck_at = now + RECHECK_DELAY
            if now < host.recheck_at:
                return
        host.recheck_at = None
        if time.monotonic() < host.retry_at:
            host.dirty = True
            return
        host.dirty = False
        host.planned_seqno = idl.change_seqno
        changes = hostconfig.plan(self._desired(host), snapshot(idl))
        if not changes:
            host.just_committed = False
            host.backoff = MIN_BACKOFF
            self._configured(host)
            return
        if host.just_committed:
            # the last transaction succeeded yet the host still differs: do not spin on it
            LOG.warning("host %s still differs after a successful transaction: %s", host.name, changes)
            host.just_committed = False
            self._retry_later(host)
            return
        try:
            txn = build_transaction(idl, host.name, changes)
        except ConfigError as exc:
            self._failed(host, str(exc))
            return
        self._set_status(host, state="configuring", attempts=self._status_of(host, "attempts") + 1)
        LOG.info("host %s: %s", host.name, ", ".join(c.op + (f" {c.key}" if c.key else "") for c in changes))
        host.txn, host.txn_since = txn, time.monotonic()
        txn.commit()
        self._poll_txn(host)

    def _poll_txn(self, host: _Host) -> None:
        status = host.txn.commit()      # no blocking: the IDL's run() moves it along
        Txn = ovs.db.idl.Transaction
        if status == Txn.INCOMPLETE:
            if time.monotonic() - host.txn_since > TXN_TIMEOUT:
                host.txn.abort()
                host.txn = None
                self._failed(host, f"no answer to the transaction in {TXN_TIMEOUT:.0f} s")
            return
        txn, host.txn = host.txn, None
        if status in (Txn.SUCCESS, Txn.UNCHANGED):
            host.just_committed = True
            host.backoff = MIN_BACKOFF
            host.dirty = False          # checked again once the IDL has the result (change_seqno)
            self._configured(host)
        elif status == Txn.TRY_AGAIN and not host.idl._session.is_connected():
            self._set_status(host, state="connecting", error=f"lost the connection to {host.remote}")
            host.dirty = True
        else:
            self._failed(host, "transaction failed: " + _error_text(txn.get_error()))

    def _retry_later(self, host: _Host) -> None:
        host.dirty = True
        host.retry_at = time.monotonic() + host.backoff
        host.backoff = min(host.backoff * 2, MAX_BACKOFF)

    def _failed(self, host: _Host, error: str) -> None:
        LOG.error("cannot configure host %s: %s (retrying in %.1f s)", host.name, error, host.backoff,
                  extra=log_fields(host=host.name))
        self._set_status(host, state="failed", error=error)
        self._retry_later(host)

    def _configured(self, host: _Host) -> None:
        if self._status_of(host, "state") != "configured":
            LOG.info("host %s configured (%s)", host.name, host.remote, extra=log_fields(host=host.name))
            self._set_status(host, state="configured", configured_at=time.time(), error=None)

    def _status_of(self, host: _Host, key: str):
        with self._lock:
            return self._status.get(host.name, {}).get(key)

    def _set_status(self, host: _Host, **fields) -> None:
        with self._lock:
            if self._specs.get(host.name, (host.remote,))[0] == host.remote and host.name in self._status:
                self._status[host.name].update(fields)
