"""Collector throughput on one core with distinct records, against nfcapd/sfcapd in the same run.

    python bench/bench_collectors.py [--trial 2] [--runs 3] [--quick] [--no-nfdump] [-v]

A `CollectorService` (one worker, columnar path, sFlow + NetFlow sockets on 127.0.0.1,
attribution to a model of 200 VMs: 2 tenants x 5 networks x 20 ports with identical CIDRs
and MACs, on 3 hosts) runs in a child process pinned to core 0; this process, pinned to
core 1, replays datagrams to it paced in 1 ms slots. Every record is distinct: random
traffic between the model's 200 VMs (random pairs in a network, random client ports,
services, sizes), fresh sequence numbers - nothing repeats but what such traffic gives
(pairs of VMs), so the attribution table sees its real hit rate, not a cache's best case.
The pools (6.6 M NetFlow records, 1.6 M sFlow samples) are renewed in place when used up,
between trials: new random services, directions, client ports and sizes between the same
VM pairs, clocks and sequences moved on, so no record repeats one sent before; the bench
prints how many of the records it sent were distinct (by a 64-bit hash of their content).

* NetFlow v5: 30 records a datagram, exported by the source VM's host with its ofport.
* sFlow v5: 8 flow samples a datagram, each a 128-byte raw header of VXLAN-encapsulated
  traffic (decapsulated and attributed by VNI, inner MACs and IPs), the OVS tunnel record
  and VNI record; sampling 1:400.

Per protocol the zero-loss rate is searched (x1.5 until a trial loses anything, then
bisected): a trial passes when every datagram sent was received and decoded, the kernel
dropped nothing, and the collector drained its backlog within `--lag` s of the last send.
The best rate is then replayed `--runs` times: lost records and CPU seconds (utime+stime of
the child) per million records, median. One trial passing at the edge of the core's capacity
can be luck: when a confirmation loses records, the rate is lowered 15 % and confirmed again
(at most 5 times, each printed); X and Y are the rates whose confirmations all lost nothing. nfcapd / sfcapd (Debian nfdump, installed here when
missing: a benchmark-only dependency) get the same datagrams at the same rate on the same
core (sfcapd without the VNI record, which it rejects), CPU per million records, median.

IPFIX (Open vSwitch's tunnel template with its variable-length tunnel key, 16 distinct
records a datagram, bench/templstream.py) goes at one rate (`--ipfix-rate`) to weft's
collector and to nfcapd, the same datagrams: CPU per million records each, median, and
the ratio (printed before the last line, as `ipfix_cpu_vs_nfcapd=R`).

Last line: `collectors nf5_rps=X nf5_cpu_vs_nfcapd=R1 sflow_sps=Y sflow_cpu_vs_sfcapd=R2 lost=L`
(X, Y: zero-loss records/s on the one core; R: weft's CPU per record / the peer's, each per
record it handled - a run that dropped datagrams spent no CPU on them; L: records lost in the
confirmation runs at X and Y - never received or counted, after waiting for any backlog).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from topology.model import Binding, Host, Model, Network, Port, Tenant  # noqa: E402
from templstream import big_endian as _be  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SFLOW_PER_DGRAM = 8
NF5_PER_DGRAM = 30
HOSTS = ("hv1", "hv2", "hv3")
MGMT = {f"127.0.0.{10 + i}": h for i, h in enumerate(HOSTS)}  # exporter address -> host
EXPORTER_OF = {h: a for a, h in MGMT.items()}
SERVICES = np.array([22, 53, 80, 443, 3306, 5432, 6379, 8080, 9092, 11211], dtype=np.int64)


# ------------------------------------------------------------------ model and traffic


def synthetic_model(tenants=("red", "blue"), nets=5, ports_per_net=20) -> Model:
    """200 VMs: tenants with identical CIDRs and MACs; ports spread over the hosts."""
    m = Model()
    vni = 5000
    for t in tenants:
        m.tenants[t] = Tenant(f"t-{t}", t)
        for n in range(nets):
            vni += 1
            uuid = f"n-{t}-{n}"
            m.networks[uuid] = Network(uuid, t, f"net{n}", f"10.{n}.0.0/24", vni)
            for p in range(ports_per_net):
                pu = f"p-{t}-{n}-{p}"
                m.ports[pu] = Port(pu, t, f"net{n}", f"vm{p}", f"52:54:00:00:{n:02x}:{p:02x}",
                                   (f"10.{n}.0.{10 + p}",))
                host = HOSTS[p % len(HOSTS)]
                m.bindings[pu] = Binding(pu, host, 10 + (len(m.bindings) % 200))
    for i, h in enumerate(HOSTS):
        m.hosts[h] = Host(h, f"172.16.0.{1 + i}", "unix:/dev/null")
    return m


def _vm_table(model: Model) -> dict:
    """Arrays over the VMs: network index, VNI, IPv4, MAC, host index, ofport."""
    nets = {(n.tenant, n.name): n for n in model.networks.values()}
    net_ids = {k: i for i, k in enumerate(sorted(nets))}
    ports = sorted(model.ports.values(), key=lambda p: p.uuid)
    b = model.bindings
    return {
        "net": np.array([net_ids[(p.tenant, p.network)] for p in ports]),
        "vni": np.array([nets[(p.tenant, p.network)].vni for p in ports], dtype=np.int64),
        "ip": np.array([int.from_bytes(socket.inet_aton(p.ips[0]), "big") for p in ports],
                       dtype=np.int64),
        "mac": np.array([int(p.mac.replace(":", ""), 16) for p in ports], dtype=np.int64),
        "host": np.array([HOSTS.index(b[p.uuid].host) for p in ports]),
        "ofport": np.array([b[p.uuid].ofport for p in ports], dtype=np.int64),
    }


def _pairs(vms: dict, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n random (src, dst) VM pairs in one network (src != dst)."""
    src = rng.integers(0, len(vms["net"]), n)
    by_net: dict = {}
    for i, k in enumerate(vms["net"].tolist()):
        by_net.setdefault(k, []).append(i)
    members = np.array([by_net[k] for k in sorted(by_net)])          # (nets, ports per net)
    pos = {i: j for row in members.tolist() for j, i in enumerate(row)}
    srcpos = np.array([pos[i] for i in range(len(vms["net"]))])
    width = members.shape[1]
    off = rng.integers(1, width, n)
    dst = members[vms["net"][src], (srcpos[src] + off) % width]
    return src, dst


NF5_DTYPE = np.dtype([
    ("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
    ("packets", ">u4"), ("octets", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("sport", ">u2"), ("dport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("proto", "u1"),
    ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"),
    ("dst_mask", "u1"), ("pad2", ">u2")])


def netflow5_stream(model: Model, datagrams: int, seed: int = 5) -> list[tuple[str, bytes]]:
    """[(exporter address, datagram)]: distinct random records, 30 a datagram, exported by
    the source VM's host; per-exporter flow sequences."""
    rng = np.random.default_rng(seed)
    vms = _vm_table(model)
    n = datagrams * NF5_PER_DGRAM
    src, dst = _pairs(vms, n, rng)
    rec = np.zeros(n, dtype=NF5_DTYPE)
    rec["src"], rec["dst"] = vms["ip"][src], vms["ip"][dst]
    rec["input"], rec["output"] = vms["ofport"][src], vms["ofport"][dst]
    rec["packets"] = rng.integers(1, 2000, n)
    rec["octets"] = rec["packets"] * rng.integers(64, 1500, n)
    rec["first"], rec["last"] = 1000, 2000
    client = rng.random(n) < 0.5   # half the records are requests, half replies
    svc = SERVICES[rng.integers(0, len(SERVICES), n)]
    eph = rng.integers(32768, 61000, n)
    rec["sport"] = np.where(client, eph, svc)
    rec["dport"] = np.where(client, svc, eph)
    rec["proto"] = np.where(rng.random(n) < 0.8, 6, 17)
    rec["tcp_flags"] = 0x1B
    # each datagram holds records of one exporter: order the records by source host
    host = vms["host"][src]
    order = np.argsort(host, kind="stable")
    rec, host = rec[order], host[order]
    out: list = []
    seqs = {h: 0 for h in range(len(HOSTS))}
    raw = rec.tobytes()
    bounds = np.flatnonzero(np.diff(host)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    per_host = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        h = int(host[a])
        dgs = []
        for i in range(a, b - NF5_PER_DGRAM + 1, NF5_PER_DGRAM):
            head = np.array([(5, NF5_PER_DGRAM, 5000, 1_700_000_000, 0, seqs[h], 0, 0, 0)],
                            dtype=[("v", ">u2"), ("c", ">u2"), ("up", ">u4"), ("s", ">u4"),
                                   ("ns", ">u4"), ("seq", ">u4"), ("et", "u1"), ("ei", "u1"),
                                   ("sm", ">u2")]).tobytes()
            seqs[h] += NF5_PER_DGRAM
            dgs.append((EXPORTER_OF[HOSTS[h]], head + raw[i * 48:(i + NF5_PER_DGRAM) * 48]))
        per_host.append(dgs)
    for i in range(max(len(d) for d in per_host)):   # interleave the exporters
        for dgs in per_host:
            if i < len(dgs):
                out.append(dgs[i])
    return out


# sFlow sample layout (compact flow sample; offsets in the sample):
# 0 format, 4 length, 8 body: seq, source, rate, pool, drops, input, output, nrec;
# 40 raw header record: 40 fmt, 44 len, 48 proto, 52 frame length, 56 stripped, 60 hlen,
# 64 header (128 bytes): outer eth/IPv4/UDP:4789/VXLAN, inner eth/IPv4/TCP or UDP;
# 192 tunnel record (1023, 32 bytes), 232 VNI record (1029, 4 bytes) when asked.
_HDR = 64


def _sample_template(vni_record: bool) -> bytes:
    import struct
    frame = bytearray(128)
    frame[0:12] = bytes.fromhex("020000000002020000000001")
    frame[12:14] = b"\x08\x00"
    frame[14:34] = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1450, 0, 0x4000, 64, 17, 0,
                               socket.inet_aton("172.16.0.1"), socket.inet_aton("172.16.0.2"))
    frame[34:42] = struct.pack("!HHHH", 49152, 4789, 1430, 0)
    frame[42:50] = struct.pack("!B3xI", 0x08, 0)
    frame[62:64] = b"\x08\x00"
    frame[64:84] = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1400, 0, 0x4000, 64, 6, 0,
                               bytes(4), bytes(4))
    frame[84:104] = struct.pack("!HHIIHHHH", 0, 0, 1, 0, 0x5018, 65535, 0, 0)
    recs = struct.pack("!IIIIII", 1, 16 + 128, 1, 1518, 4, 128) + bytes(frame)
    recs += struct.pack("!II", 1023, 32) + struct.pack("!II4s4sIIII", 0, 17,
                                                      socket.inet_aton("172.16.0.1"),
                                                      socket.inet_aton("172.16.0.2"),
                                                      49152, 4789, 0, 0)
    nrec = 2
    if vni_record:
        recs += struct.pack("!III", 1029, 4, 0)
        nrec = 3
    body = struct.pack("!IIIIIIII", 0, 3, 400, 0, 0, 0, 60000, nrec) + recs
    return struct.pack("!II", 1, len(body)) + body


def sflow_stream(model: Model, datagrams: int, vni_record: bool = True,
                 seed: int = 7) -> list[tuple[str, bytes]]:
    """[(exporter address, datagram)]: distinct random VXLAN samples, 8 a datagram, exported
    by the source VM's host (agent = exporter address), per-agent sequences."""
    rng = np.random.default_rng(seed)
    vms = _vm_table(model)
    tpl = np.frombuffer(_sample_template(vni_record), dtype=np.uint8)
    n = datagrams * SFLOW_PER_DGRAM
    src, dst = _pairs(vms, n, rng)
    order = np.argsort(vms["host"][src], kind="stable")
    src, dst = src[order], dst[order]
    host = vms["host"][src]
    s = np.tile(tpl, (n, 1))
    k = np.arange(n, dtype=np.int64)
    s[:, 8:12] = _be(k, 4)                                  # sample sequence (per agent below)
    s[:, 20:24] = _be(k * 400, 4)                           # sample pool
    s[:, 28:32] = _be(vms["ofport"][src], 4)                # input
    s[:, 52:56] = _be(rng.integers(64, 1518, n), 4)         # frame length
    h = _HDR
    s[:, h + 34:h + 36] = _be(rng.integers(49152, 65535, n), 2)   # outer UDP source port
    s[:, h + 46:h + 49] = _be(vms["vni"][src], 3)
    s[:, h + 50:h + 56] = _be(vms["mac"][dst], 6)
    s[:, h + 56:h + 62] = _be(vms["mac"][src], 6)
    s[:, h + 68:h + 70] = _be(k & 0xFFFF, 2)                # IP id
    s[:, h + 76:h + 80] = _be(vms["ip"][src], 4)
    s[:, h + 80:h + 84] = _be(vms["ip"][dst], 4)
    proto = np.where(rng.random(n) < 0.8, 6, 17)
    s[:, h + 73] = proto
    client = rng.random(n) < 0.5
    svc = SERVICES[rng.integers(0, len(SERVICES), n)]
    eph = rng.integers(32768, 61000, n)
    s[:, h + 84:h + 86] = _be(np.where(client, eph, svc), 2)
    s[:, h + 86:h + 88] = _be(np.where(client, svc, eph), 2)
    out = []
    per_host = []
    bounds = np.flatnonzero(np.diff(host)) + 1
    for a, b in zip(np.concatenate(([0], bounds)).tolist(),
                    np.concatenate((bounds, [n])).tolist()):
        hi = int(host[a])
        agent = EXPORTER_OF[HOSTS[hi]]
        cnt = (b - a) // SFLOW_PER_DGRAM * SFLOW_PER_DGRAM
        seg = s[a:a + cnt]
        seg[:, 8:12] = _be(np.arange(cnt), 4)               # consecutive per agent
        seg[:, 20:24] = _be(np.arange(cnt) * 400, 4)
        blob = seg.tobytes()
        size = len(tpl) * SFLOW_PER_DGRAM
        dgs = []
        for d in range(cnt // SFLOW_PER_DGRAM):
            head = (np.array([5, 1], dtype=">u4").tobytes() + socket.inet_aton(agent)
                    + np.array([0, d, 1000, SFLOW_PER_DGRAM], dtype=">u4").tobytes())
            dgs.append((agent, head + blob[d * size:(d + 1) * size]))
        per_host.append(dgs)
    for i in range(max(len(d) for d in per_host)):
        for dgs in per_host:
            if i < len(dgs):
                out.append(dgs[i])
    return out


# ------------------------------------------------------------------ collector child


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        try:
            os.sched_setaffinity(0, {core})
        except OSError:
            pass


def _collector_child(conn) -> None:
    from collectors.service import CollectorService
    from collectors.workers import collector_gc
    _pin(0)
    collector_gc()   # as weft collect does
    model = synthetic_model()
    svc = CollectorService(model, sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                           ipfix=("127.0.0.1", 0),
                           exporter_hosts=MGMT, workers=1, flush_interval=1.0).start()
    conn.send(svc.addresses)
    while True:
        cmd = conn.recv()
        if cmd == "status":
            st = svc.status()
            conn.send({"protocols": st["protocols"], "sockets": st["sockets"],
                       "errors": st["errors"], "cpu": cpu_seconds(os.getpid()),
                       "aggregate": st["aggregate"]})
        elif cmd == "matrix":
            svc.flush()
            conn.send(svc.top(5, by="tenant"))
        elif cmd == "stop":
            svc.stop()
            conn.send("stopped")
            return


class Collector:
    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_collector_child, args=(child,), daemon=True)
        self.proc.start()
        self.addresses = self.conn.recv()

    def status(self) -> dict:
        self.conn.send("status")
        return self.conn.recv()

    def call(self, cmd: str):
        self.conn.send(cmd)
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.call("stop")
        finally:
            self.proc.join(5)


# ------------------------------------------------------------------ sender


def senders() -> dict[str, socket.socket]:
    """One UDP socket per exporter address (127.0.0.10-12), so exporters are distinct."""
    out = {}
    for addr in MGMT:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind((addr, 0))
        out[addr] = s
    return out


_NF5_HEAD = np.dtype([("v", ">u2"), ("c", ">u2"), ("up", ">u4"), ("s", ">u4"), ("ns", ">u4"),
                      ("seq", ">u4"), ("et", "u1"), ("ei", "u1"), ("sm", ">u2")])
_NF5_DGRAM = np.dtype([("h", _NF5_HEAD), ("r", NF5_DTYPE, (NF5_PER_DGRAM,))])
_M = np.uint64(0x9E3779B97F4A7C15)


def _hash_words(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of an (n, k) array of integer words (the record content)."""
    h = np.zeros(len(words), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h ^= words[:, j].astype(np.uint64)
            h *= _M
            h ^= h >> np.uint64(29)
    return h


def _per_exporter(addrs: list) -> np.ndarray:
    """For each datagram, how many datagrams of its exporter the pool holds."""
    counts: dict = {}
    for a in addrs:
        counts[a] = counts.get(a, 0) + 1
    return np.array([counts[a] for a in addrs], dtype=np.int64)


def _renew_netflow5(grid: np.ndarray, per: np.ndarray, npass: int, rng) -> np.ndarray:
    """Pass `npass` of a NetFlow v5 pool, in place: the same VM pairs (a datagram keeps its
    exporter), fresh random services, directions, client ports, sizes; first/last and the
    header's clock moved on by the pass (so no record equals one of an earlier pass), flow
    sequences continued. Returns each record's content hash (the 48 bytes)."""
    d = grid.view(_NF5_DGRAM).reshape(-1)
    rec, head = d["r"], d["h"]
    shape = rec.shape
    pk = rng.integers(1, 2000, shape)
    rec["packets"] = pk
    rec["octets"] = pk * rng.integers(64, 1500, shape)
    client = rng.random(shape) < 0.5
    svc = SERVICES[rng.integers(0, len(SERVICES), shape)]
    eph = rng.integers(32768, 61000, shape)
    rec["sport"] = np.where(client, eph, svc)
    rec["dport"] = np.where(client, svc, eph)
    rec["proto"] = np.where(rng.random(shape) < 0.8, 6, 17)
    rec["first"] = 1000 + 10_000 * npass
    rec["last"] = 2000 + 10_000 * npass
    head["up"] = 5000 + 10_000 * npass
    head["s"] = 1_700_000_000 + 10 * npass
    head["seq"] += (per * NF5_PER_DGRAM).astype(np.uint32)
    return _netflow5_content(grid)


def _netflow5_content(grid: np.ndarray) -> np.ndarray:
    words = np.ascontiguousarray(grid[:, 24:]).view(np.uint64).reshape(-1, 6)
    return _hash_words(words)


def _sflow_layout(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(datagram header words (n, 7) >u4, samples (n, 8, sample length) bytes): views."""
    size = (grid.shape[1] - 28) // SFLOW_PER_DGRAM
    dt = np.dtype([("h", ">u4", (7,)), ("s", np.uint8, (SFLOW_PER_DGRAM, size))])
    d = grid.view(dt).reshape(-1)
    return d["h"], d["s"]


def _sflow_content(grid: np.ndarray) -> np.ndarray:
    """Each sample's content: frame length and the 128-byte raw header (not the counters)."""
    _h, smp = _sflow_layout(grid)
    flat = smp.reshape(-1, smp.shape[2])
    words = np.ascontiguousarray(np.concatenate(
        [flat[:, 52:56], flat[:, _HDR:_HDR + 128]], axis=1)).view(np.uint32)
    return _hash_words(words)


def _renew_sflow(grid: np.ndarray, per: np.ndarray, npass: int, rng) -> np.ndarray:
    """Pass `npass` of an sFlow pool, in place: the same VM pairs, fresh random frame
    lengths, outer source ports, IP ids, protocols, services, directions, client ports; the
    pass number in the inner header's bytes 28-31 (TCP's ack number, UDP payload: so no
    sample equals one of an earlier pass); datagram and sample sequences and sample pools
    continued. Returns each sample's content hash."""
    head, smp = _sflow_layout(grid)
    n = len(grid)
    m = n * SFLOW_PER_DGRAM
    head[:, 4] += per.astype(np.uint32)                   # datagram sequence
    head[:, 5] = 1000 + 10_000 * npass                     # uptime

    def put(at: int, values: np.ndarray, size: int) -> None:   # into every sample
        smp[:, :, at:at + size] = _be(values, size).reshape(n, SFLOW_PER_DGRAM, size)
    more = np.repeat(per * SFLOW_PER_DGRAM, SFLOW_PER_DGRAM)
    seq = np.ascontiguousarray(smp[:, :, 8:12]).view(">u4").ravel().astype(np.int64) + more
    put(8, seq, 4)
    put(20, seq * 400, 4)
    h = _HDR
    put(52, rng.integers(64, 1518, m), 4)
    put(h + 34, rng.integers(49152, 65535, m), 2)
    put(h + 68, rng.integers(0, 65536, m), 2)
    put(h + 73, np.where(rng.random(m) < 0.8, 6, 17), 1)
    client = rng.random(m) < 0.5
    svc = SERVICES[rng.integers(0, len(SERVICES), m)]
    eph = rng.integers(32768, 61000, m)
    put(h + 84, np.where(client, eph, svc), 2)
    put(h + 86, np.where(client, svc, eph), 2)
    put(h + 92, np.full(m, npass), 4)
    return _sflow_content(grid)


class Stream:
    """Datagrams handed out in order from a pool; when it is used up, the pool is renewed in
    place with numpy (`renew`: fresh random traffic between the same VM pairs, clocks and
    sequences moved on - between trials, never while sending), so no record repeats one
    handed out before. Counts the records handed out and how many repeated an earlier
    one of their pass (same content hash: only what random traffic gives)."""

    def __init__(self, items: list, per_dgram: int, renew, content, seed: int = 11) -> None:
        size = len(items[0][1])
        if any(len(d) != size for _a, d in items):
            raise ValueError("a Stream's datagrams must share one length")
        self.addrs = [a for a, _d in items]
        self.per_exporter = _per_exporter(self.addrs)
        self.grid = np.frombuffer(b"".join(d for _a, d in items),
                                  dtype=np.uint8).reshape(len(items), size).copy()
        self.per = per_dgram
        self.renew_fn = renew
        self.rng = np.random.default_rng(seed)
        self.pos = 0
        self.wrapped = 0
        self.records = 0
        self.repeats = 0
        self._flat = memoryview(self.grid.reshape(-1))     # (sendto takes a memoryview)
        self._repeats_upto = self._count_repeats(content(self.grid))

    def _count_repeats(self, hashes: np.ndarray) -> np.ndarray:
        """Per datagram position, records up to it that repeat an earlier one of the pass."""
        srt = np.sort(hashes)
        twice = np.unique(srt[1:][srt[1:] == srt[:-1]])     # (rare: only those are looked at)
        rep = np.zeros(len(hashes), dtype=np.int64)
        seen: set = set()
        for i in np.flatnonzero(np.isin(hashes, twice)).tolist():
            h = int(hashes[i])
            rep[i] = h in seen
            seen.add(h)
        per_dgram = rep.reshape(-1, self.per).sum(axis=1)
        return np.concatenate(([0], np.cumsum(per_dgram)))

    def take(self, n: int) -> list:
        out = []
        while len(out) < n:
            k = min(n - len(out), len(self.addrs) - self.pos)
            a, b = self.pos, self.pos + k
            flat, addrs, size = self._flat, self.addrs, self.grid.shape[1]
            out += [(addrs[i], flat[i * size:(i + 1) * size]) for i in range(a, b)]
            self.records += k * self.per
            self.repeats += int(self._repeats_upto[b] - self._repeats_upto[a])
            self.pos = b
            if self.pos == len(self.addrs):
                out = [(ad, bytes(d)) for ad, d in out]   # (they keep this pass's bytes)
                self.wrapped += 1
                self._repeats_upto = self._count_repeats(
                    self.renew_fn(self.grid, self.per_exporter, self.wrapped, self.rng))
                self.pos = 0
        return out

    def distinct(self) -> str:
        return (f"{self.records - self.repeats:,} distinct of {self.records:,} records sent "
                f"(pool of {len(self.addrs) * self.per:,}, renewed {self.wrapped}x)")


def replay(socks: dict, items: list, dest, rate_dgrams: float) -> tuple[int, float]:
    """Send `items` at `rate_dgrams`/s in 1 ms slots; (sent, elapsed)."""
    total = len(items)
    per_slot = rate_dgrams / 1000.0
    sent = 0
    sendto = {a: s.sendto for a, s in socks.items()}
    t0 = time.perf_counter()
    slot = 0
    credit = 0.0
    while sent < total:
        slot += 1
        credit += per_slot
        k = min(int(credit), total - sent)
        credit -= k
        for addr, d in items[sent:sent + k]:
            sendto[addr](d, dest)
        sent += k
        delay = t0 + slot / 1000.0 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return sent, time.perf_counter() - t0


def _counts(st: dict, kind: str, protos: tuple[str, ...]) -> tuple[int, int, int, int]:
    sock = st["sockets"][kind]
    recs = sum(st["protocols"][p]["flows"] for p in protos)
    bad = sum(st["protocols"][p]["malformed"] for p in protos) + st["errors"]
    return sock["datagrams"], recs, bad, sock["kernel_drops"] or 0


def trial(col: Collector, socks, stream: Stream, kind: str, protos, per_dgram: int,
          rate_records: float, seconds: float, lag: float) -> dict:
    dest = col.addresses[kind]
    items = stream.take(max(1, int(rate_records / per_dgram * seconds)))
    before = col.status()
    dg0, rec0, bad0, drop0 = _counts(before, kind, protos)
    sent, elapsed = replay(socks, items, dest, rate_records / per_dgram)
    t_end = time.perf_counter()
    drained_at = None
    while True:
        st = col.status()
        dg, recs, bad, drops = _counts(st, kind, protos)
        if dg - dg0 >= sent and drained_at is None:
            drained_at = time.perf_counter() - t_end
        if drained_at is not None or time.perf_counter() - t_end > max(2.0, 2 * lag):
            break
        time.sleep(0.02)
    got = dg - dg0
    ok = (got == sent and recs - rec0 == sent * per_dgram and bad == bad0 and drops == drop0
          and drained_at is not None and drained_at <= lag)
    cpu = st["cpu"] - before["cpu"]
    handled = recs - rec0         # the records that CPU time went to
    deadline = time.perf_counter() + 15.0
    while dg - dg0 < sent and time.perf_counter() < deadline:   # a backlog is late, not lost:
        time.sleep(0.1)                                           # wait for it before counting
        st = col.status()
        dg, recs, bad, drops = _counts(st, kind, protos)
    return {"rate": rate_records, "sent": sent, "received": got, "records": recs - rec0,
            "lost": sent * per_dgram - (recs - rec0), "drops": drops - drop0,
            "malformed": bad - bad0, "elapsed": elapsed, "lag": drained_at, "ok": ok,
            "cpu": cpu, "handled": handled, "achieved": sent * per_dgram / elapsed}


def fixed_trial(col: Collector, socks, items: list, kind: str, proto: str, per_dgram: int,
                rate_records: float) -> dict:
    """Send `items` at one rate; the collector's CPU seconds and the records it handled
    (after waiting up to 15 s for any backlog)."""
    before = col.status()
    dg0, rec0, bad0, _d0 = _counts(before, kind, (proto,))
    sent, elapsed = replay(socks, items, col.addresses[kind], rate_records / per_dgram)
    deadline = time.perf_counter() + 15.0
    while True:
        st = col.status()
        dg, recs, bad, _d = _counts(st, kind, (proto,))
        if dg - dg0 >= sent or time.perf_counter() > deadline:
            break
        time.sleep(0.05)
    return {"cpu": st["cpu"] - before["cpu"], "handled": recs - rec0, "malformed": bad - bad0,
            "received": dg - dg0, "sent": sent}


def ipfix_vs_nfcapd(col, socks, model, args, peer_error) -> float | None:
    """IPFIX (Open vSwitch's tunnel template, bench/templstream.py) at one rate to weft's
    collector (columnar path) and to nfcapd, the same datagrams, CPU per million records,
    median of --runs; prints the figures, returns weft's CPU / nfcapd's (None if no peer)."""
    from templstream import PER_DGRAM, template_stream
    rate = args.ipfix_rate
    per_run = max(1, int(rate / PER_DGRAM * args.trial))
    stream = template_stream(_vm_table(model), _pairs, [EXPORTER_OF[h] for h in HOSTS],
                             per_run * args.runs + 64)
    # (each exporter's template leads the stream: the first run's slice carries them)
    size = len(stream[-1][1])
    runs = [stream[i * per_run:(i + 1) * per_run] for i in range(args.runs)]
    ours, theirs, notes = [], [], []
    for items in runs:
        data = sum(len(d) == size for _a, d in items) * PER_DGRAM
        t = fixed_trial(col, socks, items, "ipfix", "ipfix", PER_DGRAM, rate)
        ours.append(t["cpu"] / max(t["handled"], 1) * 1e6)
        notes.append(f"{t['handled']:,}/{data:,} handled")
    print()
    print(f"IPFIX at {rate:,.0f} records/s, {PER_DGRAM} a datagram (OVS tunnel template, "
          f"distinct records; the same datagrams to both), cpu s / 1M records, median of "
          f"{args.runs} ({load()})")
    ref = statistics.median(ours)
    print(f"{'weft (columnar)':<22} {ref:>11.3f}  ({'; '.join(notes)})")
    if args.no_nfdump or peer_error:
        print(f"nfcapd: {'skipped' if args.no_nfdump else peer_error}")
        return None
    stored = []
    for items in runs:
        r = peer_run("nfcapd", socks, items, PER_DGRAM, rate)
        if "error" in r:
            print(f"nfcapd: {r['error']}")
            return None
        theirs.append(r["cpu"] / (r["stored"] or r["sent_records"]) * 1e6)
        stored.append(f"{r['stored']:,} stored" if r["stored"] is not None else "-")
    peer = statistics.median(theirs)
    ratio = ref / peer if peer > 0 else None
    print(f"{'nfcapd':<22} {peer:>11.3f}  weft/nfcapd "
          f"{'n/a' if ratio is None else f'{ratio:.2f}x'}  ({'; '.join(stored)}; {load()})")
    return ratio


BACKOFFS = 5     # confirmations that lose records: the rate is lowered 15 % at most this often


def search(col, socks, stream, kind, protos, per_dgram, start, seconds, lag, steps, log):
    """Raise the rate x1.5 until a trial fails, then bisect `steps` times."""
    best, lo, hi = None, None, None
    rate = start
    for _ in range(30):
        t = trial(col, socks, stream, kind, protos, per_dgram, rate, seconds, lag)
        log(t)
        if not t["ok"]:
            hi = rate
            break
        best, lo = t, rate
        rate *= 1.5
        time.sleep(0.3)
    if lo is None:
        rate = start
        while lo is None and rate > 2000:
            rate /= 2
            t = trial(col, socks, stream, kind, protos, per_dgram, rate, seconds, lag)
            log(t)
            if t["ok"]:
                best, lo = t, rate
            else:
                hi = rate
    for _ in range(steps if lo is not None and hi is not None else 0):
        mid = (lo + hi) / 2
        time.sleep(0.3)
        t = trial(col, socks, stream, kind, protos, per_dgram, mid, seconds, lag)
        log(t)
        if t["ok"]:
            best, lo = t, mid
        else:
            hi = mid
    return best


# ------------------------------------------------------------------ nfcapd / sfcapd


def ensure_nfdump() -> str | None:
    """nfcapd/sfcapd from Debian's nfdump (a benchmark-only dependency); None if present,
    else what went wrong installing them."""
    if shutil.which("nfcapd") and shutil.which("sfcapd"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    pkgs = ["nfdump"] + (["nfdump-sflow"] if subprocess.run(
        ["apt-cache", "show", "nfdump-sflow"], capture_output=True).returncode == 0 else [])
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                            *pkgs], capture_output=True, text=True, env=env)
    if shutil.which("nfcapd") and shutil.which("sfcapd"):
        return None
    return (r.stderr.strip().splitlines() or ["nfcapd/sfcapd not found"])[-1]


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peer_run(tool: str, socks, items: list, per_dgram: int, rate_records: float) -> dict:
    """Replay `items` to nfcapd/sfcapd on core 0: its CPU seconds and flows stored."""
    path = shutil.which(tool)
    port = _free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = None
        for flag in ("-w", "-l"):  # nfdump >= 1.7 uses -w, older -l
            cmd = [path, "-b", "127.0.0.1", "-p", str(port), flag, d, "-t", "3600",
                   "-B", str(32 << 20)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    preexec_fn=lambda: _pin(0))
            time.sleep(0.7)
            if proc.poll() is None:
                break
            proc = None
        if proc is None:
            return {"error": f"{tool} did not start"}
        try:
            c0 = cpu_seconds(proc.pid)
            sent, elapsed = replay(socks, items, ("127.0.0.1", port), rate_records / per_dgram)
            time.sleep(0.5)
            cpu = cpu_seconds(proc.pid) - c0
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stored = _stored_flows(d)
    return {"sent_records": sent * per_dgram, "cpu": cpu, "elapsed": elapsed, "stored": stored}


def _stored_flows(directory: str) -> int | None:
    nfdump = shutil.which("nfdump")
    if nfdump is None:
        return None
    total, found = 0, False
    for f in Path(directory).rglob("nfcapd.*"):
        found = True
        out = subprocess.run([nfdump, "-r", str(f), "-I"], capture_output=True, text=True,
                             timeout=60).stdout
        for line in out.splitlines():
            if line.startswith("Flows:"):
                total += int(line.split(":", 1)[1].strip())
                break
    return total if found else None


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", type=float, default=2.0, help="seconds per trial (default 2)")
    ap.add_argument("--runs", type=int, default=3,
                    help="confirmation runs at the best rate, for medians (default 3)")
    ap.add_argument("--lag", type=float, default=0.25,
                    help="max seconds to drain the backlog after the last send (default 0.25)")
    ap.add_argument("--steps", type=int, default=3, help="bisection steps (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 s trials, 1 bisection step, 1 run")
    ap.add_argument("--no-nfdump", action="store_true", help="skip nfcapd/sfcapd")
    ap.add_argument("--ipfix-rate", type=float, default=200_000,
                    help="IPFIX records/s sent to weft and nfcapd alike (default 200000)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every trial")
    args = ap.parse_args()
    if args.quick:
        args.trial, args.steps, args.runs = 1.0, 1, 1

    peer_error = None if args.no_nfdump else ensure_nfdump()
    # the collector is forked before the record pools exist: a child holding millions of
    # the parent's objects pays for them in every full garbage collection
    col = Collector()
    model = synthetic_model()
    t0 = time.perf_counter()
    nf = Stream(netflow5_stream(model, 220_000), NF5_PER_DGRAM, _renew_netflow5,
                _netflow5_content)                           # 6.6 M records a pass
    sf = Stream(sflow_stream(model, 200_000), SFLOW_PER_DGRAM, _renew_sflow,
                _sflow_content)                              # 1.6 M samples a pass
    sf_peer = Stream(sflow_stream(model, 40_000, vni_record=False, seed=8), SFLOW_PER_DGRAM,
                     _renew_sflow, _sflow_content, seed=12)
    print(f"generated {len(nf.addrs) * NF5_PER_DGRAM:,} NetFlow v5 records and "
          f"{len(sf.addrs) * SFLOW_PER_DGRAM:,} sFlow samples in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    socks = senders()
    _pin(1)

    def log(t):
        if args.verbose:
            lag = "-" if t["lag"] is None else f"{t['lag']:.3f}s"
            print(f"  trial {t['rate']:>11,.0f}/s sent {t['sent']:>7} recv {t['received']:>7} "
                  f"drops {t['drops']} lag {lag} cpu {t['cpu']:.2f}s "
                  f"{'ok' if t['ok'] else 'LOSS/LAG'}", flush=True)

    res = {}
    try:
        print(f"python {sys.version.split()[0]}, collector pinned to core 0 (one worker), "
              f"sender to core 1; trial {args.trial:g}s, max drain lag {args.lag:g}s; {load()}",
              flush=True)
        for key, stream, kind, protos, per, start in (
                ("nf5", nf, "netflow", ("netflow5",), NF5_PER_DGRAM, 200_000),
                ("sflow", sf, "sflow", ("sflow",), SFLOW_PER_DGRAM, 50_000)):
            if args.verbose:
                print(key, flush=True)
            best = search(col, socks, stream, kind, protos, per, start, args.trial, args.lag,
                          args.steps, log)
            runs = []
            for backoff in range(BACKOFFS + 1 if best is not None else 0):
                runs = []
                for _ in range(args.runs):
                    time.sleep(0.3)
                    t = trial(col, socks, stream, kind, protos, per, best["rate"], args.trial,
                              args.lag)
                    log(t)
                    runs.append(t)
                if all(t["ok"] for t in runs) or backoff == BACKOFFS:
                    break
                # one trial passing at the edge is luck, not a zero-loss rate: a rate counts
                # when every confirmation at it loses nothing; else 15 % lower, confirmed again
                lost_here = sum(max(0, t["lost"]) for t in runs)
                print(f"{key}: {len(runs) - sum(t['ok'] for t in runs)} of {len(runs)} "
                      f"confirmations at {best['rate']:,.0f}/s not clean ({lost_here} records "
                      f"lost, kernel drops or a backlog past --lag); confirming "
                      f"{best['rate'] * 0.85:,.0f}/s", flush=True)
                best = dict(best, rate=best["rate"] * 0.85)
            if runs:            # what the sender achieved at the rate reported
                best = dict(best, achieved=statistics.median(t["achieved"] for t in runs))
            res[key] = (best, runs, per)
        sample = col.call("matrix")
        ipfix_ratio = ipfix_vs_nfcapd(col, socks, model, args, peer_error)
    finally:
        col.close()

    print()
    print(f"{'weft (one core)':<22} {'zero-loss rate':>16} {'cpu s / 1M':>11} {'lost':>6}  "
          f"({load()})")
    figures = {}
    for key, (best, runs, per) in res.items():
        if best is None:
            print(f"{key:<22} {'none':>16}")
            figures[key] = (0.0, None, 0)
            continue
        # CPU per record handled (a run that lost records did not spend CPU on them)
        cpu_m = statistics.median(t["cpu"] / (t["handled"] or t["sent"] * per) * 1e6
                                  for t in runs)
        lost = sum(max(0, t["lost"]) for t in runs)
        figures[key] = (best["rate"], cpu_m, lost)
        print(f"{key:<22} {best['rate']:>14,.0f}/s {cpu_m:>11.3f} {lost:>6}  (confirmations "
              f"{sum(t['ok'] for t in runs)}/{len(runs)} clean; sender achieved "
              f"{best['achieved']:,.0f}/s)")
    print("CPU-bound capacity of one core (1e6 / cpu s per 1M; the zero-loss rate above also "
          "depends on the core's share under the machine's load): " + ", ".join(
              f"{k} {1e6 / v[1] / 1e6:,.2f} M/s" for k, v in figures.items() if v[1]))
    print("top tenant pairs seen:", ", ".join(f"{r['src']}->{r['dst']}" for r in sample))

    ratios = {"nf5": None, "sflow": None}
    if args.no_nfdump or peer_error:
        print(f"nfcapd/sfcapd: {'skipped' if args.no_nfdump else peer_error}")
    else:
        print()
        print(f"{'peer (same core)':<22} {'rate':>16} {'cpu s / 1M':>11} {'weft/peer':>10}  stored")
        for key, tool, stream in (("nf5", "nfcapd", nf), ("sflow", "sfcapd", sf_peer)):
            rate, ours, _lost = figures[key]
            if not rate:
                continue
            per = res[key][2]
            cpus = []
            stored = None
            for _ in range(args.runs):
                items = stream.take(max(1, int(rate / per * args.trial)))
                r = peer_run(tool, socks, items, per, rate)
                if "error" in r:
                    print(f"{tool:<22} {r['error']}")
                    break
                # per record the peer stored (it spent no CPU on the datagrams it dropped)
                cpus.append(r["cpu"] / (r["stored"] or r["sent_records"]) * 1e6)
                stored = f"{r['stored']:,}/{r['sent_records']:,}" if r["stored"] is not None \
                    else "-"
            if not cpus:
                continue
            ref = statistics.median(cpus)
            ratios[key] = ours / ref if ref > 0 else None
            ratio = f"{ratios[key]:.2f}x" if ratios[key] is not None else "n/a"
            print(f"{tool:<22} {rate:>14,.0f}/s {ref:>11.3f} {ratio:>10}  {stored}")
        print("(sfcapd gets the same datagrams without the VNI record 1029, which it rejects; "
              "nfcapd/sfcapd store flows: they neither decapsulate VXLAN nor attribute)")

    print(f"records sent: NetFlow v5 (weft and nfcapd) {nf.distinct()}; sFlow (weft) "
          f"{sf.distinct()}; sFlow (sfcapd) {sf_peer.distinct()}")
    print("ipfix_cpu_vs_nfcapd=" + ("n/a" if ipfix_ratio is None else f"{ipfix_ratio:.2f}"))

    def fmt(r):
        return "n/a" if r is None else f"{r:.2f}"
    print(f"collectors nf5_rps={figures['nf5'][0]:.0f} nf5_cpu_vs_nfcapd={fmt(ratios['nf5'])} "
          f"sflow_sps={figures['sflow'][0]:.0f} sflow_cpu_vs_sfcapd={fmt(ratios['sflow'])} "
          f"lost={figures['nf5'][2] + figures['sflow'][2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
