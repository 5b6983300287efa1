"""The running collector: UDP receivers -> decode -> normalise -> attribute -> aggregate.

One thread per socket (sFlow; NetFlow v5 and v9 share the NetFlow socket; IPFIX) with a
large receive buffer, draining the socket non-blocking in bursts. Decoding, normalising and
attribution happen in the receiving thread; records are pre-aggregated per thread and merged
into the shared `Aggregator` every `flush_interval` seconds (and when the socket goes idle,
and on `flush()`/`stop()`). A malformed or hostile datagram is counted (`malformed`) and
dropped; an unexpected exception while handling one is counted too (`errors`) and never
stops the thread.

Exporter identity: NetFlow/IPFIX exporters are the UDP source address; sFlow exporters are
the agent address in the datagram (the UDP source when the agent is "unknown"). Counters are
kept per protocol and per exporter with `collectors.stats.CollectorStats`; `status()` adds
per-protocol totals, records counted/deduplicated (see `collectors.attribution`) and the
kernel's drop count of each socket (from /proc/net/udp).
"""
from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time

from . import netflow_v5, normalise, sflow
from .aggregate import Aggregator
from .columnar import Netflow5Columns, Pending, SflowColumns
from .attribution import Attributor
from .errors import MalformedDatagram
from .ipfix import IpfixDecoder
from .netflow_v9 import NetflowV9Decoder
from .packet import VXLAN_PORT
from .recvmany import ManyReceiver
from .services import classify, classify_ipv4
from .sflow import HEADER_ETHERNET, FlowSample, RawPacketHeader
from .stats import CollectorStats
from .templcolumns import NetflowColumns, TemplateColumns
from .templates import TemplateCache
from .workers import Worker, default_workers, merge_status

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
DEFAULT_RCVBUF = 32 << 20
BURST = 1024           # datagrams handled at once, at most (a columnar burst has a fixed cost
                       # of ~0.5-1 ms: a larger burst costs less a record)
RECV_SLOTS = 512       # datagrams read a system call, at most
MIN_BATCH = 1024       # columnar bursts: wait for this many datagrams ...
BATCH_WAIT = 0.05      # ... or this long (s), whichever comes first,
BATCH_NAP = 0.005      # ... looking every this long (s)
SMALL_BURST = 64       # fewer datagrams than this go the per-record path: ~50 us a datagram,
                       # where a columnar burst of one costs ~0.5 ms (numpy set-up)
MODEL_SETTLE_S = 0.1   # a model change is taken in this long after it was signalled
TEMPLATE_WRITE_EVERY_S = 1.0   # an exporter's saved templates are rewritten at most this often
PROTOCOLS_OF = {"sflow": ("sflow",), "netflow": ("netflow5", "netflow9"), "ipfix": ("ipfix",)}
_COUNTERS = ("datagrams", "records", "malformed", "sequence_gaps", "lost_datagrams",
             "lost_records", "out_of_order", "sequence_resets", "pending_sets")


def parse_addr(value, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """(host, port) from a tuple or "HOST:PORT" / "[V6]:PORT" / ":PORT"; ValueError if bad."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"address {value!r} is not (host, port)")
        host, port = value
    else:
        text = str(value).strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError(f"bad address {value!r} (want [ADDR]:PORT)")
            port = rest[1:]
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError(f"bad address {value!r} (want ADDR:PORT)")
        host = host or default_host
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"bad port in {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range in {value!r}")
    return str(host), port


def udp_socket(addr: tuple[str, int], rcvbuf: int = DEFAULT_RCVBUF,
               reuse_port: bool = False) -> socket.socket:
    """A bound, non-blocking UDP socket with the largest receive buffer we can get;
    `reuse_port`: SO_REUSEPORT, so the workers of one collector share the port (only
    sockets of the same user can join)."""
    host, port = addr
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _t, _p, _c, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if rcvbuf:
            for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                    break
                except OSError:
                    continue
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_VXLAN_DPORT = VXLAN_PORT.to_bytes(2, "big")


def vxlan_key(h: bytes) -> bytes | None:
    """For an untagged Ethernet/IPv4/UDP:4789/VXLAN(I)/Ethernet/IPv4 header: the bytes that
    decide its attribution (VNI, inner MACs, inner IPs); None for any other layout."""
    if (len(h) >= 84 and h[12] == 8 and h[13] == 0 and h[14] == 0x45 and h[23] == 17
            and not (h[20] & 0x1F or h[21]) and h[36:38] == _VXLAN_DPORT and h[42] & 0x08
            and h[62] == 8 and h[63] == 0 and h[64] == 0x45):
        return h[46:49] + h[50:62] + h[76:84]
    return None


def kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's drop counter for this UDP socket (/proc/net/udp[6]), None if unknown."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == inode:
                        return int(cols[12])
        except OSError:
            continue
    return None


MAX_REJECTED_SOURCES = 256      # distinct unknown sources listed; the rest count as "other"


class _Receiver:
    """One socket, one thread: receive, decode, account; owns its stats and batch."""

    def __init__(self, service: CollectorService, kind: str, addr: tuple[str, int]) -> None:
        self.service = service
        self.kind = kind
        self.sock = udp_socket(addr, service.rcvbuf, service.reuse_port)
        self.address = self.sock.getsockname()[:2]
        self.lock = threading.Lock()
        self.stats = {p: CollectorStats() for p in PROTOCOLS_OF[kind]}
        self.flows = {p: [0, 0, 0] for p in PROTOCOLS_OF[kind]}  # records, counted, dedup
        self.datagrams = 0
        self.bytes = 0
        self.errors = 0
        self.rejected: dict[str, int] = {}      # source address -> datagrams dropped (not a host)
        self.last_error: str | None = None
        self.caches = {}
        self.template_stores: list = []         # the TemplateStores following these caches
        if kind == "netflow":
            self.caches["netflow9"] = TemplateCache()
            self.v9 = NetflowV9Decoder(self.caches["netflow9"])
        elif kind == "ipfix":
            self.caches["ipfix"] = TemplateCache()
            self.ipfix = IpfixDecoder(self.caches["ipfix"])
        self.handle = {"sflow": self._sflow, "netflow": self._netflow,
                       "ipfix": self._ipfix}[kind]
        # the columnar path (collectors.columnar) for bursts, when the service asks for it
        self.columns = None
        if service.columnar and kind == "netflow":     # v5, then v9 (collectors.templcolumns)
            self.columns = NetflowColumns(self, Netflow5Columns(self))
        elif service.columnar and kind == "ipfix":
            self.columns = TemplateColumns(self, "ipfix")
        elif service.columnar and kind == "sflow":
            self.columns = SflowColumns(self)
        self.pending = Pending()
        self._batch: dict = {}
        self._cur: dict | None = None
        self._cur_start = None
        self._last_flush = time.monotonic()
        self._last_expire = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"collect-{kind}", daemon=True)

    # ---------------------------------------------------------------- loop

    def _run(self) -> None:
        sock = self.sock
        recv = ManyReceiver(sock, RECV_SLOTS).recv
        clock = self.service.clock
        stop = self._stop
        interval = self.service.flush_interval
        known_only = self.service.known_exporters_only
        host_of = self.service.attributor.host_of
        poller = select.poll()  # (select.select fails for descriptors >= 1024)
        poller.register(sock, select.POLLIN)
        columnar = self.columns is not None
        last_got = 0            # datagrams of the last burst: it tells the rate they come at
        while not stop.is_set():
            try:
                ready = poller.poll(100)
            except (OSError, ValueError):
                if stop.is_set():
                    break
                time.sleep(0.01)
                continue
            batch, rejected, failed = [], [], None
            append = batch.append
            nbytes = got = 0
            deadline = None
            while ready:
                while got < BURST:      # what is waiting, RECV_SLOTS a system call
                    want = min(RECV_SLOTS, BURST - got)
                    try:
                        got_now = recv(want)
                    except OSError as exc:
                        failed, got_now = exc, ()
                    got += len(got_now)
                    for data, src in got_now:
                        nbytes += len(data)
                        if known_only and host_of(src) is None:
                            rejected.append(src)
                            continue
                        append((data, src))
                    if len(got_now) < want:
                        break
                # the columnar path costs about the same per burst however small: at low
                # rates it waits up to BATCH_WAIT for MIN_BATCH datagrams (outside the lock),
                # sleeping BATCH_NAP at a time (a poll would wake for every datagram) while
                # they come fast enough to fill a burst before then; slower (the last burst
                # was not full), in one sleep. A host's exporters at line rate send a few
                # dozen datagrams a second: ten naps and a columnar burst for each one or two
                # of them cost weftd ~30 ms of CPU a second, taken from the cores the
                # hypervisors' switches need (bench_datapath); one sleep and the per-record
                # path below SMALL_BURST, ~10 ms (its decoding of ~250 samples a second)
                if not columnar or len(batch) >= MIN_BATCH or failed or stop.is_set():
                    break
                mono = time.monotonic()
                if deadline is None:
                    deadline = mono + BATCH_WAIT
                if mono >= deadline:
                    break
                nap = BATCH_NAP if last_got >= MIN_BATCH else deadline - mono
                time.sleep(min(nap, deadline - mono))
            if ready:
                last_got = got
            with self.lock:
                if ready:
                    for addr in rejected:
                        self._reject(addr)
                    if failed is not None:
                        self._error(failed)
                    self.datagrams += got
                    self.bytes += nbytes
                    if len(batch) >= self.service.small_burst:
                        self.handle_batch(batch, clock())
                    elif batch:
                        now = clock()
                        for data, src in batch:
                            self.handle_one(data, src, now)
                    mono = time.monotonic()
                    if mono - self._last_flush < interval:
                        continue
                self._housekeep()

    def handle_one(self, data: bytes, src: str, now: float) -> None:
        """The per-record path for one datagram, counting what it rejects."""
        try:
            self.handle(data, src, now)
        except MalformedDatagram:
            self._malformed(data, src)
        except Exception as exc:  # a decoder bug must not kill the thread
            self._malformed(data, src)
            self._error(exc)

    def handle_batch(self, batch: list, now: float) -> None:
        """A burst [(data, source address)]: the columnar path where it applies (it hands
        the rest to the per-record path in order), else one datagram at a time."""
        if self.columns is None:
            for data, src in batch:
                self.handle_one(data, src, now)
            return
        try:
            self.columns.run(batch, now, lambda data, src: self.handle_one(data, src, now))
        except Exception as exc:
            # the columnar path raises before it changes any count (an attribution that
            # failed, a bug): counted, and the burst goes the per-record path instead
            self._error(exc)
            for data, src in batch:
                self.handle_one(data, src, now)

    def _housekeep(self) -> None:
        """Flush the batch (the columnar sums of closed buckets only), expire templates;
        caller holds the lock."""
        mono = time.monotonic()
        self._flush(final=False)
        self._last_flush = mono
        if mono - self._last_expire >= 10.0:
            self._last_expire = mono
            for cache in self.caches.values():
                cache.expire()
        for store in self.template_stores:      # a burst of templates, saved once it is over
            store.flush()

    def _reject(self, addr: str) -> None:
        """A datagram from an address that is no known host: counted (per address, bounded) and
        dropped unread, so a stranger can never put traffic into the matrix."""
        if addr not in self.rejected:
            if len(self.rejected) >= MAX_REJECTED_SOURCES:
                addr = "other"
            else:
                log.warning("collector %s: dropping datagrams from %s: not a known host's exporter",
                            self.kind, addr)
        self.rejected[addr] = self.rejected.get(addr, 0) + 1

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.last_error is None or self.errors % 1000 == 1:
            log.warning("collector %s: %s: %s", self.kind, type(exc).__name__, exc)
        self.last_error = f"{type(exc).__name__}: {exc}"

    def _malformed(self, data: bytes, exporter) -> None:
        if self.kind == "netflow":
            proto = "netflow9" if data[:2] == b"\x00\x09" else "netflow5"
        else:
            proto = PROTOCOLS_OF[self.kind][0]
        self.stats[proto].malformed(exporter)

    # ---------------------------------------------------------------- protocols

    # Fast paths: the Attribution of a record depends only on a few of its fields, so it
    # is memoised (Attributor.memo, emptied on model change) under those fields as they
    # come off the wire; a record is fully normalised only on a memo miss. The result is
    # the same as normalise + attribute for every record (tests check the equivalence).

    def _sflow(self, data: bytes, src: str, now: float) -> None:
        dg = sflow.decode(data)
        agent = dg.agent if dg.agent is not None else src
        self.stats["sflow"].observe_sflow(dg, agent)
        attributor = self.service.attributor
        memo = attributor.memo()
        items = []
        append = items.append
        full = None
        i = -1
        for s in dg.samples:
            if type(s) is not FlowSample:
                continue
            i += 1
            raw = None
            for r in s.records:
                if type(r) is RawPacketHeader:
                    raw = r
            key = None
            if raw is not None and raw.protocol == HEADER_ETHERNET:
                vk = vxlan_key(raw.header)
                if vk is not None:
                    key = (agent, vk, s.input_ifindex, s.output_ifindex)
                    a = memo.get(key)
                    if a is not None:
                        rate = s.sampling_rate or 1
                        # the inner IPv4 header starts at byte 64 (vxlan_key checked it)
                        append((a, raw.frame_length * rate, rate, classify_ipv4(raw.header, 64)))
                        continue
            if full is None:
                full = normalise.from_sflow(dg, agent, now)
            rec = full[i]
            a = attributor.attribute(rec)
            if key is not None:
                if len(memo) >= attributor.cache_max:
                    memo.clear()
                memo[key] = a
            append((a, rec.bytes, rec.packets,
                    classify(rec.ip_protocol, rec.src_port, rec.dst_port)))
        self._account("sflow", items, now)

    def _netflow(self, data: bytes, src: str, now: float) -> None:
        if data[:2] == b"\x00\x09":
            pkt = self.v9.decode(data, src)
            self.stats["netflow9"].observe_netflow9(pkt, src, self.caches["netflow9"])
            self._records("netflow9", normalise.from_netflow9(pkt, src), now)
            return
        pkt = netflow_v5.decode(data)
        self.stats["netflow5"].observe_netflow5(pkt, src)
        scale = pkt.sampling_interval if pkt.sampling_interval > 1 else 1
        attributor = self.service.attributor
        memo = attributor.memo()
        items = []
        append = items.append
        full = None
        for i, r in enumerate(pkt.records):
            # 5-tuple: never equal to the 4-tuple sFlow keys sharing the memo
            key = (src, r.src_addr, r.dst_addr, r.input, r.output)
            a = memo.get(key)
            if a is None:
                if full is None:
                    full = normalise.from_netflow5(pkt, src)
                a = attributor.attribute(full[i])
                if len(memo) >= attributor.cache_max:
                    memo.clear()
                memo[key] = a
            append((a, r.octets * scale, r.packets * scale,
                    classify(r.protocol, r.src_port, r.dst_port)))
        self._account("netflow5", items, now)

    def _ipfix(self, data: bytes, src: str, now: float) -> None:
        msg = self.ipfix.decode(data, src)
        self.stats["ipfix"].observe_ipfix(msg, src, self.caches["ipfix"])
        self._records("ipfix", normalise.from_ipfix(msg, src), now)

    def _records(self, proto: str, recs: list, now: float) -> None:
        attribute = self.service.attributor.attribute
        self._account(proto, [(attribute(r), r.bytes, r.packets,
                               classify(r.ip_protocol, r.src_port, r.dst_port)) for r in recs],
                      now)

    def _account(self, proto: str, items: list, now: float) -> None:
        """Pre-aggregate (Attribution, bytes, packets, Service); keyed by the memoised
        attribution's id and the service."""
        bs = self.service.bucket_seconds
        start = (now // bs) * bs
        if start != self._cur_start:
            self._cur = self._batch.setdefault(start, {})
            self._cur_start = start
        cur = self._cur
        counted = 0
        for a, nb, np, svc in items:
            if a.counted:
                counted += 1
                k = (id(a), svc)
                e = cur.get(k)
                if e is None:
                    cur[k] = [a, svc, nb, np, now, now]
                else:
                    e[2] += nb
                    e[3] += np
                    e[5] = now
        f = self.flows[proto]
        f[0] += len(items)
        f[1] += counted
        f[2] += len(items) - counted

    def _flush(self, final: bool = True) -> None:
        """Hand the pre-aggregated batch to the aggregator; columnar sums stay in numpy
        until their bucket closes, unless `final` (a query, stop)."""
        aggregator = self.service.aggregator
        if self.pending:
            before = None if final else self.service.clock() - self.service.bucket_seconds
            batch, tenant_pairs, folded = self.pending.drain(
                before, max_keys=getattr(aggregator, "max_keys", None))
            if batch:
                aggregator.add_batch(batch, tenant_pairs, folded)
        if not self._batch:
            return
        out: dict = {}
        for start, entries in self._batch.items():
            merged = out.setdefault(start, {})
            for a, svc, nb, np, first, last in entries.values():
                key = (a.src, a.dst, svc)
                m = merged.get(key)
                if m is None:
                    merged[key] = [nb, np, first, last]
                else:
                    m[0] += nb
                    m[1] += np
                    m[2] = min(m[2], first)
                    m[3] = max(m[3], last)
        self._batch = {}
        self._cur = None
        self._cur_start = None
        aggregator.add_batch(out)

    # ---------------------------------------------------------------- control

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.thread.join(timeout)
        with self.lock:
            self._flush()
            for store in self.template_stores:
                store.flush(force=True)
        self.sock.close()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "address": f"{self.address[0]}:{self.address[1]}",
                "datagrams": self.datagrams, "bytes": self.bytes, "errors": self.errors,
                "last_error": self.last_error,
                "kernel_drops": kernel_drops(self.sock) if self.sock.fileno() >= 0 else None,
                "stats": {p: s.snapshot() for p, s in self.stats.items()},
                "flows": {p: list(v) for p, v in self.flows.items()},
                "templates": {p: len(c) for p, c in self.caches.items()},
                "rejected": dict(self.rejected),
            }


class CollectorService:
    """sFlow / NetFlow / IPFIX collection into an Aggregator, attributed to a weft model.

    `model_provider` is a Model, None, or a callable returning the current Model (polled
    every `model_refresh` seconds; a different object rebuilds the attribution index).
    `exporter_hosts` maps exporter addresses to host names; `sflow_ifindexes` maps
    (host, kernel ifindex) to port uuid for sFlow (see collectors.attribution).
    Addresses are (host, port) or "HOST:PORT"; port 0 binds an ephemeral port (see
    `addresses` after `start()`). `columnar`: bursts of NetFlow v5 and sFlow go through
    collectors.columnar, of NetFlow v9 and IPFIX through collectors.templcolumns;
    `workers`: processes sharing each port (collectors.workers; None: the cores minus one).
    """

    def __init__(self, model_provider=None, sflow=("127.0.0.1", 6343), netflow=None,
                 ipfix=None, exporter_hosts: dict | None = None,
                 aggregator: Aggregator | None = None, bucket_seconds: float = 10.0,
                 sflow_ifindexes: dict | None = None,
                 flush_interval: float = 0.25, model_refresh: float = 5.0,
                 rcvbuf: int = DEFAULT_RCVBUF, clock=time.time,
                 known_exporters_only: bool = False, columnar: bool = True,
                 workers: int | None = 1, reuse_port: bool = False,
                 template_dir: str | None = None) -> None:
        self.model_provider = model_provider
        # more processes on the same ports (collectors.workers); None: cores - 1
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        self.reuse_port = reuse_port or self.workers > 1
        self._workers: list = []
        self._final_worker_status: list = []   # the workers' last status(), after stop()
        self._update_lock = threading.Lock()   # attribution index rebuilds, one at a time
        # True: bursts of NetFlow v5 and sFlow go through collectors.columnar (numpy);
        # False: every datagram through the per-record path
        self.columnar = columnar
        self.small_burst = SMALL_BURST     # smaller bursts go the per-record path anyway
        # True: only datagrams from a known host's address (the model's hosts' management or
        # tunnel address, or `exporter_hosts`) are read; others are counted and dropped
        self.known_exporters_only = known_exporters_only
        self.endpoints = {k: (parse_addr(v) if v is not None else None)
                          for k, v in (("sflow", sflow), ("netflow", netflow), ("ipfix", ipfix))}
        if not any(self.endpoints.values()):
            raise ValueError("no collector socket configured (sflow, netflow or ipfix)")
        self.aggregator = aggregator if aggregator is not None else Aggregator(bucket_seconds)
        self.bucket_seconds = self.aggregator.bucket_seconds
        self.flush_interval = flush_interval
        self.model_refresh = model_refresh
        self.rcvbuf = rcvbuf
        self.clock = clock
        self.attributor = Attributor(None, exporter_hosts, ifindexes=sflow_ifindexes)
        self._model = None
        self._receivers: dict[str, _Receiver] = {}
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._pending_ifindexes: dict | None = None    # for the refresher (ifindexes_changed)
        self._refresher: threading.Thread | None = None
        self.started: float | None = None
        self.model_errors = 0
        # NetFlow v9/IPFIX templates kept here survive a restart (collectors.template_store)
        self.template_dir = template_dir
        self.template_stores: list = []
        # set by collectors.flow_history: matrix/flows/top then read the history on disk too
        self.history = None

    # ---------------------------------------------------------------- lifecycle

    def _current_model(self):
        p = self.model_provider
        return p() if callable(p) else p

    def set_ifindexes(self, ifindexes: dict) -> None:
        """{(host, kernel ifindex): port uuid}: sFlow's interfaces name these ports (the
        attribution index is rebuilt when the map changed; workers get it too)."""
        ifindexes = dict(ifindexes)
        with self._update_lock:
            if ifindexes == self.attributor.ifindexes:
                return
            self.attributor.update(self._model, ifindexes=ifindexes)
        for w in self._workers:
            w.send("ifindexes", ifindexes)

    def ifindexes_changed(self, ifindexes: dict) -> None:
        """A new {(host, kernel ifindex): port uuid} map, taken in as model_changed is: on the
        refresher thread MODEL_SETTLE_S later (without one, at once). The southbound reports it
        for the NIC a port-up is plugging, in the same moment as its ofport: three rebuilds of
        the attribution there held the interpreter while weftd read the port-status and
        compiled the port's flows."""
        if self._refresher is None or not self._refresher.is_alive():
            self.set_ifindexes(ifindexes)
            return
        with self._update_lock:
            self._pending_ifindexes = dict(ifindexes)
        self._changed.set()

    def refresh_model(self) -> bool:
        """Poll the provider now; True when the attribution index was rebuilt."""
        try:
            model = self._current_model()
        except Exception as exc:  # a failing provider keeps the last model
            self.model_errors += 1
            log.warning("collector model provider failed: %s", exc)
            return False
        with self._update_lock:
            if model is self._model:
                return False
            self._model = model
            self.attributor.update(model)
        for w in self._workers:
            w.send("model", model)
        return True

    def start(self) -> CollectorService:
        if self._receivers:
            raise RuntimeError("collector already started")
        self.refresh_model()
        try:
            for kind, addr in self.endpoints.items():
                if addr is not None:
                    self._receivers[kind] = _Receiver(self, kind, addr)
        except BaseException:
            for r in self._receivers.values():
                r.sock.close()
            self._receivers = {}
            raise
        if self.template_dir:
            self._load_templates()
        if self.workers > 1:
            try:
                self._start_workers()
            except BaseException:
                for w in self._workers:
                    w.stop()
                self._workers = []
                for r in self._receivers.values():
                    r.sock.close()
                self._receivers = {}
                raise
        for r in self._receivers.values():
            r.start()
        self.started = self.clock()
        self._stop.clear()
        if callable(self.model_provider) and self.model_refresh:
            self._refresher = threading.Thread(target=self._refresh_loop,
                                               name="collect-model", daemon=True)
            self._refresher.start()
        return self

    def _start_workers(self) -> None:
        addrs = {k: None for k in self.endpoints}
        for kind, r in self._receivers.items():
            addrs[kind] = r.address
        config = dict(model=self._model, exporter_hosts=self.attributor.exporter_hosts,
                      sflow_ifindexes=self.attributor.ifindexes,
                      bucket_seconds=self.bucket_seconds, flush_interval=self.flush_interval,
                      max_keys=getattr(self.aggregator, "max_keys", None),
                      model_refresh=0, rcvbuf=self.rcvbuf,
                      known_exporters_only=self.known_exporters_only, columnar=self.columnar,
                      template_dir=self.template_dir,
                      **addrs)
        for _ in range(self.workers - 1):
            self._workers.append(Worker(self.aggregator, dict(config)))

    def _load_templates(self) -> None:
        """Attach a TemplateStore to each template cache (before the receivers run)."""
        from .template_store import TemplateStore
        for r in self._receivers.values():
            for proto, cache in r.caches.items():
                store = TemplateStore(self.template_dir, proto, min_interval=TEMPLATE_WRITE_EVERY_S)
                n = store.attach(cache)
                self.template_stores.append(store)
                r.template_stores.append(store)
                if n:
                    log.info("collector %s: %d %s templates loaded from %s", r.kind, n, proto,
                             store.directory)

    def model_changed(self) -> None:
        """The provider has a new model: rebuild attribution on the refresher thread, soon.
        Cheap and non-blocking, so the model's owner may call it from its own loop."""
        self._changed.set()

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            if self._changed.wait(self.model_refresh):
                # a change: let the burst it belongs to settle (a NIC plugged is two or three
                # snapshots), so it is one rebuild, and one that does not compete with the
                # controller's own work on that change (a port-up's bundle)
                self._stop.wait(MODEL_SETTLE_S)
            self._changed.clear()
            if self._stop.is_set():
                break
            with self._update_lock:
                ifindexes, self._pending_ifindexes = self._pending_ifindexes, None
            if ifindexes is not None:
                self.set_ifindexes(ifindexes)
            self.refresh_model()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        for r in self._receivers.values():
            r.stop()
        if self._workers:   # their last batches and counters, for status() after stop
            self.flush_workers()
            self._final_worker_status = [st for st in (w.ask("status", "status")
                                                       for w in self._workers) if st]
        for w in self._workers:
            w.stop()
        self._workers = []
        if self._refresher is not None:
            self._refresher.join(5.0)
            self._refresher = None

    def __enter__(self) -> CollectorService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Bound (host, port) per socket kind (sflow / netflow / ipfix)."""
        return {k: r.address for k, r in self._receivers.items()}

    def flush(self) -> None:
        """Merge every receiver's (and worker's) pending batch into the aggregator now."""
        for r in self._receivers.values():
            r.flush()
        self.flush_workers()

    def flush_workers(self) -> None:
        for w in self._workers:
            w.ask("flush", "flushed")

    # ---------------------------------------------------------------- status

    def status(self) -> dict:
        protocols: dict[str, dict] = {}
        exporters: list[dict] = []
        rejected: list[dict] = []
        sockets: dict[str, dict] = {}
        errors = 0
        for kind, r in self._receivers.items():
            snap = r.snapshot()
            errors += snap["errors"]
            sockets[kind] = {k: snap[k] for k in ("address", "datagrams", "bytes", "errors",
                                                  "last_error", "kernel_drops")}
            rejected += [{"socket": kind, "source": addr, "datagrams": n}
                         for addr, n in sorted(snap["rejected"].items())]
            for proto, per_exp in snap["stats"].items():
                tot = dict.fromkeys(_COUNTERS, 0)
                cache = r.caches.get(proto)
                for exp, st in per_exp.items():
                    for c in _COUNTERS:
                        tot[c] += st[c]
                    exporters.append({"protocol": proto, "exporter": str(exp),
                                      "host": self.attributor.host_of(exp), **st,
                                      "templates": cache.count(exp) if cache is not None else 0})
                flows, counted, dedup = snap["flows"][proto]
                tot.update(exporters=len(per_exp), templates=snap["templates"].get(proto, 0),
                           flows=flows, counted=counted, deduplicated=dedup)
                protocols[proto] = tot
        totals = dict.fromkeys(("datagrams", "records", "malformed", "flows", "counted",
                                "deduplicated"), 0)
        for p in protocols.values():
            for k in totals:
                totals[k] += p[k]
        totals["rejected"] = sum(r["datagrams"] for r in rejected)
        own = {"uptime": (self.clock() - self.started) if self.started else 0.0,
               "totals": totals, "protocols": protocols, "exporters": exporters,
               "rejected": rejected,
               "sockets": sockets, "errors": errors, "model_errors": self.model_errors,
               "aggregate": self.aggregator.stats()}
        if not self._workers and not self._final_worker_status:
            return own
        parts = [own]
        for w in self._workers:
            st = w.ask("status", "status")
            if st is not None:
                parts.append(st)
        if not self._workers:
            parts += self._final_worker_status
        return merge_status(parts)

    # ---------------------------------------------------------------- queries
    # Each query first merges the receivers' pending batches, so it sees every record
    # counted in status() before it (the receivers wait for a moment meanwhile).

    def matrix(self, since: float | None = None, by: str = "vm", tenant: str | None = None,
               until: float | None = None) -> list[dict]:
        if self.history is not None:
            return self.history.matrix(since, by, tenant, until)
        self.flush()
        return self.aggregator.matrix(since, by, tenant, until)

    def flows(self, since: float | None = None, tenant: str | None = None,
              until: float | None = None) -> list[dict]:
        if self.history is not None:
            return self.history.flows(since, tenant, until)
        self.flush()
        return self.aggregator.flows(since, tenant, until)

    def top(self, n: int = 10, since: float | None = None, by: str = "vm",
            tenant: str | None = None, until: float | None = None) -> list[dict]:
        if self.history is not None:
            return self.history.top(n, since, by, tenant, until)
        self.flush()
        return self.aggregator.top(n, since, by, tenant, until)

    def host_totals(self, since: float | None = None) -> list[dict]:
        self.flush()
        return self.aggregator.host_totals(since)

    def network_totals(self, since: float | None = None, tenant: str | None = None) -> list[dict]:
        self.flush()
        return self.aggregator.network_totals(since, tenant)

    def tenant_pairs(self) -> dict:
        self.flush()
        return self.aggregator.tenant_pairs()
