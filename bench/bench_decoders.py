"""Micro-benchmark of weft's flow decoders: prints records/s (median of 5 runs) per path.

    python bench/bench_decoders.py [--seconds 0.5]

sFlow: datagrams of 8 flow samples, each a 128-byte VXLAN-encapsulated raw header plus the
OVS tunnel/VNI records; measured decode-only and decode + FlowRecord normalisation (which
includes the inner-packet decode). NetFlow v5: datagrams of 30 records. IPFIX: OVS-like
template with VMware tunnel fields, 20 records per message. Then IPFIX and NetFlow v9
through a collector's receiver, the per-record path against the columnar one (numpy
layouts of the templates, collectors.templcolumns), with the machine's load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors import netflow_v5, normalise, sflow  # noqa: E402
from collectors.ipfix import IpfixDecoder  # noqa: E402


def _xdr(fmt: int, body: bytes) -> bytes:
    return struct.pack("!II", fmt, len(body)) + body + b"\0" * (-len(body) % 4)


def vxlan_frame(i: int) -> bytes:
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1400, i & 0xFFFF, 0x4000, 64, 6, 0,
                           bytes([10, 0, i >> 8 & 255, i & 255]), bytes([10, 1, 0, 1]))
    tcp = struct.pack("!HHIIHHHH", 30000 + i % 1000, 443, 1, 0, 0x5018, 65535, 0, 0)
    inner = bytes.fromhex("525400000002525400000001") + b"\x08\x00" + inner_ip + tcp
    vx = struct.pack("!B3xI", 0x08, (5000 + i % 16) << 8)
    udp = struct.pack("!HHHH", 49152 + i % 1024, 4789, 8 + len(vx) + len(inner) + 1400, 0)
    outer_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1450, 0, 0x4000, 64, 17, 0,
                           bytes([172, 16, 0, 1]), bytes([172, 16, 0, 2]))
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + outer_ip + udp + vx + inner
    return (frame + b"\xab" * 128)[:128]


def sflow_datagram(seq: int, samples: int = 8) -> bytes:
    out = []
    for k in range(samples):
        i = seq * samples + k
        header = vxlan_frame(i)
        recs = [
            _xdr(1, struct.pack("!IIII", 1, 1518, 4, len(header)) + header),
            _xdr(1023, struct.pack("!II4s4sIIII", 0, 17, bytes([172, 16, 0, 1]),
                                   bytes([172, 16, 0, 2]), 49152, 4789, 0, 0)),
            _xdr(1029, struct.pack("!I", 5000 + i % 16)),
        ]
        body = struct.pack("!IIIIIIII", i, 3, 400, i * 400, 0, 3, 4, len(recs)) + b"".join(recs)
        out.append(_xdr(1, body))
    return (struct.pack("!II4sIIII", 5, 1, bytes([192, 0, 2, 1]), 0, seq, 1000, samples)
            + b"".join(out))


def netflow5_datagram(seq: int) -> bytes:
    recs = b"".join(
        struct.pack("!4s4s4sHHIIIIHHxBBBHHBBxx", bytes([10, 0, 0, i]), bytes([10, 0, 1, i]),
                    bytes(4), 1, 2, 10 + i, 1500 * (10 + i), 1000, 2000, 40000 + i, 443,
                    0x1B, 6, 0, 0, 0, 24, 24)
        for i in range(30))
    return struct.pack("!HHIIIIBBH", 5, 30, 5000, 1_700_000_000, 0, seq * 30, 0, 0, 0) + recs


IPFIX_FIELDS = [(56, 6), (80, 6), (256, 2), (4, 1), (8, 4), (12, 4), (7, 2), (11, 2),
                (893, 4, 6876), (894, 4, 6876), (891, 1, 6876), (892, 0xFFFF, 6876),
                (158, 4), (159, 4), (2, 8), (352, 8), (1, 8), (136, 1)]
IPFIX_FIXED = [(56, 6), (80, 6), (256, 2), (4, 1), (8, 4), (12, 4), (7, 2), (11, 2),
               (893, 4, 6876), (894, 4, 6876), (891, 1, 6876), (892, 4, 6876),
               (158, 4), (159, 4), (2, 8), (352, 8), (1, 8), (136, 1)]


def ipfix_message(seq: int, fields, variable: bool, n: int = 20) -> bytes:
    def spec(f):
        if len(f) == 3:
            return struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        return struct.pack("!HH", *f)
    tpl = struct.pack("!HH", 256, len(fields)) + b"".join(spec(f) for f in fields)
    key = b"\x03\x00\x13\x89" if variable else b"\x00\x00\x13\x89"
    rec = (bytes(6) + bytes(6) + b"\x08\x00" + b"\x06" + bytes([10, 0, 0, 1, 10, 0, 0, 2])
           + struct.pack("!HH", 33000, 80) + bytes([172, 16, 0, 1, 172, 16, 0, 2]) + b"\x01"
           + key + struct.pack("!IIQQQB", 2_000_000, 500_000, 4096, 4_096_000, 4_000_000, 2))
    sets = struct.pack("!HH", 2, 4 + len(tpl)) + tpl
    sets += struct.pack("!HH", 256, 4 + n * len(rec)) + rec * n
    return struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_000, seq * n, 1) + sets


def rate(fn, datagrams, per_datagram: int, seconds: float) -> float:
    """Median over 5 runs of records/s, each run looping over the datagrams for ~seconds."""
    runs = []
    for _ in range(5):
        count = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            for d in datagrams:
                fn(d)
            count += len(datagrams) * per_datagram
            now = time.perf_counter()
            if now >= deadline:
                break
        runs.append(count / (now - t0))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="duration of each of the 5 runs")
    args = ap.parse_args()
    sf = [sflow_datagram(s) for s in range(64)]
    nf5 = [netflow5_datagram(s) for s in range(64)]
    ipfix_var = [ipfix_message(s, IPFIX_FIELDS, True) for s in range(16)]
    ipfix_fixed = [ipfix_message(s, IPFIX_FIXED, False) for s in range(16)]
    dec_var, dec_fixed = IpfixDecoder(), IpfixDecoder()

    def sflow_full(d):
        normalise.from_sflow(sflow.decode(d))

    def nf5_full(d):
        normalise.from_netflow5(netflow_v5.decode(d), "192.0.2.1")

    rows = [
        ("sFlow flow samples (VXLAN raw header), decode",
         rate(sflow.decode, sf, 8, args.seconds), 100_000),
        ("sFlow flow samples, decode + normalise (inner)",
         rate(sflow_full, sf, 8, args.seconds), 100_000),
        ("NetFlow v5 records, decode", rate(netflow_v5.decode, nf5, 30, args.seconds), 500_000),
        ("NetFlow v5 records, decode + normalise", rate(nf5_full, nf5, 30, args.seconds), None),
        ("IPFIX OVS records (fixed-length template), decode",
         rate(lambda d: dec_fixed.decode(d, "e"), ipfix_fixed, 20, args.seconds), None),
        ("IPFIX OVS records (variable tunnelKey), decode",
         rate(lambda d: dec_var.decode(d, "e"), ipfix_var, 20, args.seconds), None),
    ]
    print(f"python {sys.version.split()[0]}, median of 5 runs x {args.seconds}s, one core")
    for name, value, goal in rows:
        mark = ""
        if goal is not None:
            mark = f"  (goal {goal:,}: {'ok' if value >= goal else 'BELOW'})"
        print(f"{name:<52} {value:>12,.0f} records/s{mark}")
    receiver_paths(args.seconds)


def _load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def receiver_paths(seconds: float, bursts: int = 6) -> None:
    """IPFIX / NetFlow v9 through a receiver (decode, normalise, attribute, aggregate):
    the per-record path against the columnar one (collectors.templcolumns), in records per
    CPU second of this process, median of 5 runs; the ratio is of the same run."""
    from bench_collectors import EXPORTER_OF, HOSTS, MGMT, _pairs, _vm_table, synthetic_model
    from collectors.service import CollectorService, _Receiver
    from templstream import PER_DGRAM, template_stream
    model = synthetic_model()
    vms = _vm_table(model)
    exporters = [EXPORTER_OF[h] for h in HOSTS]
    print(f"\nreceiver path (decode + normalise + attribute + aggregate), {PER_DGRAM} records "
          f"a datagram, bursts of 512, 200 VMs; records per CPU second, median of 5")
    for proto, kind, v9, what in (
            ("ipfix", "ipfix", False, "IPFIX, OVS tunnel template (variable tunnel key)"),
            ("netflow9", "netflow", True, "NetFlow v9, OVS-like fixed template")):
        items = [(d, a) for a, d in template_stream(vms, _pairs, exporters, 512 * bursts, v9=v9)]
        got = {}
        for columnar in (False, True):
            svc = CollectorService(model, sflow=None, netflow=("127.0.0.1", 0),
                                   ipfix=("127.0.0.1", 0), exporter_hosts=MGMT,
                                   columnar=columnar)
            svc.refresh_model()
            rcv = _Receiver(svc, kind, ("127.0.0.1", 0))
            try:
                runs = []
                for _ in range(5):
                    n0 = rcv.flows[proto][0]
                    t0 = time.process_time()
                    deadline = time.perf_counter() + seconds
                    while True:
                        for i in range(0, len(items), 512):
                            rcv.handle_batch(items[i:i + 512], time.time())
                        rcv.flush()
                        if time.perf_counter() >= deadline:
                            break
                    runs.append((rcv.flows[proto][0] - n0) / (time.process_time() - t0))
                got[columnar] = statistics.median(runs)
                st = rcv.stats[proto].snapshot()
                if rcv.errors or sum(e["malformed"] for e in st.values()):
                    raise SystemExit(f"{proto}: errors in the receiver: {rcv.last_error}")
            finally:
                rcv.sock.close()
        print(f"{what:<52} per-record {got[False]:>10,.0f}/s  columnar {got[True]:>10,.0f}/s  "
              f"x{got[True] / got[False]:.1f}  ({_load()})", flush=True)


if __name__ == "__main__":
    main()
