"""Distinct IPFIX / NetFlow v9 datagrams for the collector benchmarks: Open vSwitch's layout, numpy-built.

`template_stream(vms, exporters, datagrams)` gives [(exporter address, datagram)]: random
traffic between the VMs of a `bench_collectors._vm_table` (pairs in one network, client
ports, services, sizes), 16 records a datagram, each datagram one exporter's (the source
VM's host), with per-exporter sequences, and each exporter's template message first and
again every `TEMPLATE_EVERY` datagrams (as exporters refresh them). IPFIX records follow
the layout of Open vSwitch's tunnel template (inner MACs and IPv4, ports, the VMware tunnel
fields with the variable-length tunnel key - 3 bytes, VXLAN's VNI - counters, ingress and
egress port); NetFlow v9 has no variable lengths, so its tunnel key is a fixed 4 bytes.
"""
from __future__ import annotations

import struct

import numpy as np

PER_DGRAM = 16
TEMPLATE_EVERY = 256
TEMPLATE_ID = 300
VMWARE = 6876
SERVICES = np.array([22, 53, 80, 443, 3306, 5432, 6379, 8080, 9092, 11211], dtype=np.int64)
_KEY = (892, 0xFFFF, VMWARE)
FIELDS = [(56, 6), (80, 6), (256, 2), (4, 1), (8, 4), (12, 4), (7, 2), (11, 2),
          (893, 4, VMWARE), (894, 4, VMWARE), (891, 1, VMWARE), _KEY,
          (158, 4), (159, 4), (2, 8), (352, 8), (1, 8), (136, 1), (10, 4), (14, 4)]


def _record_dtype(v9: bool) -> np.dtype:
    key = [("key", ">u4")] if v9 else [("klen", "u1"), ("key", "u1", (3,))]
    return np.dtype([("smac", "u1", (6,)), ("dmac", "u1", (6,)), ("eth", ">u2"),
                     ("proto", "u1"), ("sip", ">u4"), ("dip", ">u4"), ("sport", ">u2"),
                     ("dport", ">u2"), ("tsrc", ">u4"), ("tdst", ">u4"), ("ttype", "u1")]
                    + key + [("sd", ">u4"), ("ed", ">u4"), ("packets", ">u8"),
                             ("l2octets", ">u8"), ("octets", ">u8"), ("reason", "u1"),
                             ("in_if", ">u4"), ("out_if", ">u4")])


def template_message(v9: bool, seq: int) -> bytes:
    """The template (set / flowset) of the stream, alone in a message."""
    if v9:
        fields = [(f[0], 4 if f is _KEY else f[1]) for f in FIELDS]
        body = struct.pack("!HH", TEMPLATE_ID, len(fields)) + b"".join(
            struct.pack("!HH", i, ln) for i, ln in fields)
        fs = struct.pack("!HH", 0, 4 + len(body)) + body
        return struct.pack("!HHIIII", 9, 1, 100_000, 1_700_000_000, seq, 1) + fs
    body = struct.pack("!HH", TEMPLATE_ID, len(FIELDS)) + b"".join(
        struct.pack("!HHI", f[0] | 0x8000, f[1], f[2]) if len(f) == 3 else struct.pack("!HH", *f)
        for f in FIELDS)
    sets = struct.pack("!HH", 2, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_000, seq, 1) + sets


def big_endian(a: np.ndarray, size: int) -> np.ndarray:
    """(n, size) big-endian bytes of integers (bench_collectors builds its datagrams with it too)."""
    out = np.empty((len(a), size), dtype=np.uint8)
    v = a.astype(np.uint64)
    for i in range(size):
        out[:, size - 1 - i] = (v >> np.uint64(8 * i)) & np.uint64(0xFF)
    return out


def template_stream(vms: dict, pairs, exporters: list, datagrams: int, v9: bool = False,
                    seed: int = 9) -> list[tuple[str, bytes]]:
    """[(exporter address, datagram)] (see the module docstring); `pairs(vms, n, rng)` draws
    (src, dst) VM index arrays; `exporters[h]`: the address host index h exports from."""
    rng = np.random.default_rng(seed)
    n = datagrams * PER_DGRAM
    src, dst = pairs(vms, n, rng)
    rec = np.zeros(n, dtype=_record_dtype(v9))
    rec["smac"], rec["dmac"] = big_endian(vms["mac"][src], 6), big_endian(vms["mac"][dst], 6)
    rec["eth"] = 0x0800
    rec["proto"] = np.where(rng.random(n) < 0.8, 6, 17)
    rec["sip"], rec["dip"] = vms["ip"][src], vms["ip"][dst]
    client = rng.random(n) < 0.5
    svc = SERVICES[rng.integers(0, len(SERVICES), n)]
    eph = rng.integers(32768, 61000, n)
    rec["sport"], rec["dport"] = np.where(client, eph, svc), np.where(client, svc, eph)
    host = vms["host"][src]
    rec["tsrc"], rec["tdst"] = 0xAC100001 + host, 0xAC100001 + vms["host"][dst]
    rec["ttype"] = 1
    if v9:
        rec["key"] = vms["vni"][src]
    else:
        rec["klen"] = 3
        rec["key"] = big_endian(vms["vni"][src], 3)
    rec["sd"], rec["ed"] = 2_000_000, 500_000
    rec["packets"] = rng.integers(1, 2000, n)
    rec["l2octets"] = rec["packets"] * rng.integers(64, 1500, n)
    rec["octets"] = rec["l2octets"] - 14 * rec["packets"]
    rec["reason"] = 2
    rec["in_if"] = vms["ofport"][src]
    rec["out_if"] = np.where(vms["host"][dst] == host, vms["ofport"][dst], 1)   # 1: the tunnel
    order = np.argsort(host, kind="stable")     # a datagram holds one exporter's records
    rec, host = rec[order], host[order]
    size = rec.dtype.itemsize
    raw = rec.tobytes()
    bounds = np.flatnonzero(np.diff(host)) + 1
    per_host = []
    for a, b in zip(np.concatenate(([0], bounds)).tolist(), np.concatenate((bounds, [n])).tolist()):
        h = int(host[a])
        addr = exporters[h]
        dgs, seq = [], 0        # (v9 counts packets, IPFIX data records)
        for k, i in enumerate(range(a, b - PER_DGRAM + 1, PER_DGRAM)):
            if k % TEMPLATE_EVERY == 0:
                dgs.append((addr, template_message(v9, len(dgs) if v9 else seq)))
            body = raw[i * size:(i + PER_DGRAM) * size]
            if v9:
                head = struct.pack("!HHIIII", 9, PER_DGRAM, 100_000, 1_700_000_000, len(dgs), 1)
                dgs.append((addr, head + struct.pack("!HH", TEMPLATE_ID, 4 + len(body)) + body))
            else:
                head = struct.pack("!HHIII", 10, 20 + len(body), 1_700_000_000, seq, 1)
                dgs.append((addr, head + struct.pack("!HH", TEMPLATE_ID, 4 + len(body)) + body))
            seq += PER_DGRAM
        per_host.append(dgs)
    out = []
    for i in range(max(len(d) for d in per_host)):   # interleave the exporters
        for dgs in per_host:
            if i < len(dgs):
                out.append(dgs[i])
    return out
