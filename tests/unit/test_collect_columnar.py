"""The columnar path (collectors.columnar) agrees with the per-record path on every datagram.

Both paths run on the same datagrams - generated, captured from the lab's Open vSwitch
(tests/data/collectors), and mutated by the fuzzer's mutations (FUZZ_ITERATIONS per
protocol: 20,000 in the suite; WEFT_FUZZ_ITERATIONS=100000 for the full run, about a
minute) - and must give the same flows per
(src, dst, service), the same counters and stats, and never raise.
"""
from __future__ import annotations

import os
import random
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402
import test_collect_fuzz as fz  # noqa: E402
import test_collect_service as ts  # noqa: E402

from collectors.aggregate import Aggregator  # noqa: E402
from collectors.attribution import Attribution  # noqa: E402
from collectors.attrtable import AttributionTable  # noqa: E402
from collectors.service import CollectorService, _Receiver  # noqa: E402
from collectors.services import classify  # noqa: E402
from collectors.vecservice import codes, service_of  # noqa: E402
from topology.model import Binding, Host, Model, Network, Port, Tenant  # noqa: E402

FUZZ_ITERATIONS = int(os.environ.get("WEFT_FUZZ_ITERATIONS", "20000"))
DATA = Path(__file__).resolve().parent.parent / "data" / "collectors"
NOW = time.time()


def both_paths(datagrams, m, exporters, ifindexes=None, batch=512):
    """{columnar: (flows, snapshots, taken, records vectorised)} for datagrams [(kind,
    source, data)]. (The aggregator keeps every key: folding the smallest into other->other
    breaks ties by arrival order, which the two paths need not share.)"""
    out = {}
    for columnar in (False, True):
        svc = CollectorService(m, sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                               ipfix=("127.0.0.1", 0),
                               exporter_hosts=exporters, sflow_ifindexes=ifindexes,
                               columnar=columnar,
                               aggregator=Aggregator(max_keys=10 ** 7, max_pairs=10 ** 6))
        svc.refresh_model()
        rs = {k: _Receiver(svc, k, ("127.0.0.1", 0)) for k in ("sflow", "netflow", "ipfix")}
        per_record = {"n": 0}
        for r in rs.values():
            one = r.handle_one

            def counted(data, src, now, one=one):
                per_record["n"] += 1
                one(data, src, now)
            r.handle_one = counted
        try:
            for kind, r in rs.items():
                mine = [(d, e) for k, e, d in datagrams if k == kind]
                for i in range(0, len(mine), batch):
                    r.handle_batch(mine[i:i + batch], NOW)
                r.flush()
            snaps = {}
            for k, r in rs.items():
                s = r.snapshot()
                del s["kernel_drops"], s["address"]
                snaps[k] = s
        finally:
            for r in rs.values():
                r.sock.close()
        flows = sorted((tuple(sorted((k, v) for k, v in row.items() if k != "rate_bps"))
                        for row in svc.aggregator.flows()), key=repr)
        # NetFlow v9 / IPFIX datagrams never go per record whole: count their records that
        # went the numpy way (collectors.templcolumns)
        vectorised = sum(getattr(getattr(r.columns, "v9", r.columns), "vectorised", 0)
                         for r in rs.values())
        out[columnar] = (flows, snaps, len(datagrams) - per_record["n"], vectorised)
    return out


def assert_agree(datagrams, m, exporters, ifindexes=None, min_taken=1):
    res = both_paths(datagrams, m, exporters, ifindexes)
    assert res[False][2] == 0  # (the per-record run takes nothing columnar)
    assert res[True][0] == res[False][0]
    assert res[True][1] == res[False][1]
    assert res[True][2] >= min_taken, "the columnar path took too few datagrams"
    return res


def generated():
    m = ts.model()
    frames = [ts.vxlan(5001), ts.vxlan(6001)] + ts._frames()
    rng = random.Random(7)
    datagrams = []
    for seq in range(200):
        agent = rng.choice((ts.HV1, ts.HV2, "127.0.0.99"))
        picks = [rng.choice(frames) for _ in range(rng.randrange(1, 9))]
        extra = [fx.rec_vni(False, rng.choice((5001, 6001)))] if rng.random() < 0.3 else []
        datagrams.append(("sflow", agent, ts.sflow_dgram(
            agent, picks, seq=seq, rate=rng.choice((0, 1, 100, 400)),
            inp=rng.choice((7, 107, 117, 9, 60000)), extra=extra)))
        recs = [fx.v5_record(rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.9")),
                             rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.50")),
                             inp=rng.choice((7, 17, 9, 19, 60000)),
                             out=rng.choice((7, 9, 17, 19, 60000)),
                             octets=rng.randrange(1, 10_000), packets=rng.randrange(1, 50),
                             sport=rng.choice((22, 80, 1000, 5000, 40000, 60000)),
                             dport=rng.choice((22, 80, 1000, 5000, 40000, 60000)),
                             proto=rng.choice((1, 6, 17, 47, 132)))
                for _ in range(rng.randrange(0, 30))]
        datagrams.append(("netflow", rng.choice((ts.HV1, ts.HV2, "::1")),
                          fx.v5_packet(recs, seq=seq * 30,
                                       sampling=rng.choice((0, 0x4000 | 10)))))
    return m, datagrams


def test_generated_datagrams_agree_with_the_per_record_path():
    m, datagrams = generated()
    res = assert_agree(datagrams, m, ts.EXPORTERS, ts.IFINDEX, min_taken=220)
    services = {dict(f)["proto"] for f in res[True][0]}
    assert {"tcp", "udp"} <= services
    assert any(dict(f)["src"] == "blue/net/a" for f in res[True][0])


def _v5_burst(rng, sizes, tail=b"", count_less=None):
    out = []
    for seq, n in enumerate(sizes):
        less = count_less[seq] if count_less else 0
        recs = [fx.v5_record(rng.choice(("10.0.0.1", "10.0.0.2")), rng.choice(("10.0.0.1", "10.0.0.2")),
                             inp=rng.choice((7, 17)), out=rng.choice((9, 19)),
                             octets=rng.randrange(1, 10_000), packets=rng.randrange(1, 50),
                             sport=rng.choice((80, 40000)), dport=rng.choice((443, 50000)))
                for _ in range(n)]
        out.append(("netflow", rng.choice((ts.HV1, ts.HV2)),
                    fx.v5_packet(recs, seq=seq * 30, count=n - less) + tail))
    return out


@pytest.mark.parametrize("shape", ["one-length", "one-length-fewer-counted", "any-length",
                                   "unaligned", "short-and-long"])
def test_netflow5_burst_layouts_agree(shape):
    """columnar._nf5_split's ways of reading a burst (one length: a 2-D view; lengths that
    are 8-byte multiples: a word gather; others: per datagram) give the per-record path's
    flows and stats."""
    rng = random.Random(shape)
    sizes = {"one-length": [30] * 40, "one-length-fewer-counted": [30] * 40,
             "any-length": [rng.randrange(0, 31) for _ in range(40)],
             "unaligned": [rng.randrange(1, 31) for _ in range(40)],
             "short-and-long": [rng.randrange(0, 31) for _ in range(40)]}[shape]
    datagrams = _v5_burst(rng, sizes, tail=b"\1\2\3" if shape == "unaligned" else b"",
                          count_less=[rng.choice((0, 2)) for _ in sizes]
                          if shape == "one-length-fewer-counted" else None)
    if shape == "short-and-long":       # datagrams shorter than a header among them
        datagrams[5:5] = [("netflow", ts.HV1, b"\0\5"), ("netflow", ts.HV2, b"")]
    assert_agree(datagrams, ts.model(), ts.EXPORTERS, min_taken=40)


def test_a_burst_mixing_layouts_keeps_arrival_order_for_the_stats():
    """Counter samples and other headers go per record between columnar datagrams; the
    sequence stats (gaps, out of order) come out as one by one."""
    m = ts.model()
    agent = ts.HV1
    vx = ts.vxlan(5001)
    datagrams = []
    seq = 0
    for i in range(60):
        if i % 7 == 3:
            s = [fx.sflow_counter_sample([fx.rec_if_counters()])]
            datagrams.append(("sflow", agent, fx.sflow_datagram(s, agent=agent, seq=i)))
            continue
        if i % 11 == 5:
            seq += 5  # a gap
        n = 1 + i % 4
        datagrams.append(("sflow", agent, ts.sflow_dgram(agent, [vx] * n, seq=i,
                                                         sample_seq=seq)))
        seq += n
    datagrams[20], datagrams[21] = datagrams[21], datagrams[20]   # one out of order
    res = assert_agree(datagrams, m, ts.EXPORTERS, ts.IFINDEX, min_taken=40)
    st = res[True][1]["sflow"]["stats"]["sflow"][agent]
    assert st["sequence_gaps"] > 0 and st["out_of_order"] > 0


def _captured(proto):
    blob = (DATA / f"ovs-{proto}.bin").read_bytes()
    out, i = [], 0
    while i < len(blob):
        (n,) = struct.unpack_from("!I", blob, i)
        out.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    return out


def capture_model():
    """The captures' lab: VMs 10.0.0.10 (hv1) and 10.0.0.20 (hv2), one network, VNI 1000."""
    m = Model()
    m.tenants["t"] = Tenant("t", "t")
    m.networks["n"] = Network("n", "t", "net", "10.0.0.0/24", 1000)
    for name, ip, host in (("vm1", "10.0.0.10", "hv1"), ("vm2", "10.0.0.20", "hv2")):
        m.ports[name] = Port(name, "t", "net", name, None, (ip,))
        m.bindings[name] = Binding(name, host, 2)
    m.hosts["hv1"] = Host("hv1", "198.19.0.11", "unix:/x")
    m.hosts["hv2"] = Host("hv2", "198.19.0.12", "unix:/x")
    return m


def test_every_captured_datagram_agrees():
    datagrams = [("sflow", "198.19.0.11", d) for d in _captured("sflow")]
    datagrams += [("sflow", "198.19.0.11", fx.load_hex("sflow_vxlan_flow_sample.hex"))]
    datagrams += [("netflow", a, d) for d in _captured("netflow")
                  for a in ("198.19.0.11", "198.19.0.12")]
    # IPFIX from the lab's OVS (its templates carry variable-length fields), and the OVS
    # tunnel template written by hand; NetFlow v9 has no capture: the fuzz seeds stand in
    datagrams += [("ipfix", a, d) for d in _captured("ipfix")
                  for a in ("198.19.0.11", "198.19.0.12")]
    datagrams += [("ipfix", "198.19.0.11", fx.load_hex("ipfix_ovs_tunnel.hex"))]
    datagrams += [("netflow", "198.19.0.11", d) for d in fz.V9_SEEDS]
    res = assert_agree(datagrams, capture_model(), {}, min_taken=len(_captured("netflow")))
    assert any(dict(f)["src"] == "t/net/vm1" for f in res[True][0])
    assert res[True][1]["ipfix"]["flows"]["ipfix"][0] > 0
    assert res[True][3] >= res[True][1]["ipfix"]["flows"]["ipfix"][0] // 2, res[True][3]


def _vx_seed(rng, agent, n):
    m = ts.model()
    del m
    frames = [ts.vxlan(5001), ts.vxlan(6001), ts._vxlan_header()]
    return ts.sflow_dgram(agent, [rng.choice(frames) for _ in range(n)], seq=rng.randrange(99),
                          rate=rng.choice((1, 400)), inp=rng.choice((107, 7)))


def _ipfix_seeds():
    ovs = fx.ipfix_set(2, fx.ipfix_template(300, fx.OVS_TEMPLATE_FIELDS))
    data = fx.ipfix_set(300, b"".join(fx.ovs_data_record(vni=v, in_if=i)
                                      for v, i in ((5001, 7), (6001, 17), (5001, 9))))
    fixed = fx.ipfix_set(2, fx.ipfix_template(301, fz._T256))
    return fz.IPFIX_SEEDS + [fx.ipfix_message([ovs, data], seq=3),
                             fx.ipfix_message([data, fx.ipfix_set(301, fz._R256 * 4)], seq=6),
                             fx.ipfix_message([fixed, fx.ipfix_set(301, fz._R256 * 3, pad=3)]),
                             # one data set a message: the decoder's walk is skipped
                             fx.ipfix_message([data], seq=9),
                             fx.ipfix_message([fx.ipfix_set(301, fz._R256 * 4)], seq=12)]


@pytest.mark.parametrize("kind", ["sflow", "netflow5", "netflow9", "ipfix"])
def test_fuzzed_datagrams_agree(kind):
    """FUZZ_ITERATIONS mutants of valid datagrams (mostly columnar layouts) per protocol."""
    rng = random.Random({"sflow": 0xC01, "netflow5": 0xC05, "netflow9": 0xC09}.get(kind, 0xC0A))
    if kind == "sflow":
        seeds = [_vx_seed(rng, ts.HV1, n) for n in (1, 2, 8)] + fz.SFLOW_SEEDS
        sock, word = "sflow", 4
    elif kind == "netflow5":
        seeds = fz.V5_SEEDS + [fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7)] * 30)]
        sock, word = "netflow", 2
    elif kind == "netflow9":
        seeds = fz.V9_SEEDS
        sock, word = "netflow", 2
    else:
        seeds = _ipfix_seeds()
        sock, word = "ipfix", 2
    m = ts.model()
    done = taken = 0
    chunk = 20_000
    while done < FUZZ_ITERATIONS:
        n = min(chunk, FUZZ_ITERATIONS - done)
        datagrams = [(sock, rng.choice((ts.HV1, ts.HV2)),
                      fz.mutate(rng, rng.choice(seeds), seeds, word)) for _ in range(n)]
        res = assert_agree(datagrams, m, ts.EXPORTERS, ts.IFINDEX, min_taken=0)
        # (v9 / IPFIX: records that went the numpy way)
        taken += res[True][3] if kind in ("netflow9", "ipfix") else res[True][2]
        done += n
    assert taken > FUZZ_ITERATIONS // 20, taken   # the mutants did exercise the columnar path


def test_hostile_counts_stay_exact():
    """Sampling rates and lengths that would overflow int64 sums go per record, exactly."""
    m = ts.model()
    big = [fx.sflow_flow_sample([fx.rec_raw_header(ts.vxlan(5001), frame_length=0xFFFFFFFF)],
                                rate=0xFFFFFFFF, inp=(0, 107))]
    recs = [fx.v5_record("10.0.0.1", "10.0.0.2", inp=7, octets=0xFFFFFFFF,
                         packets=0xFFFFFFFF)] * 30
    datagrams = [("sflow", ts.HV1, fx.sflow_datagram(big, agent=ts.HV1, seq=i)) for i in range(3)]
    datagrams += [("netflow", ts.HV1, fx.v5_packet(recs, seq=i * 30, sampling=0x4000 | 16383))
                  for i in range(600)]
    res = assert_agree(datagrams, m, ts.EXPORTERS, ts.IFINDEX, min_taken=600)
    assert max(dict(f)["bytes"] for f in res[True][0]) > 1 << 63


def test_service_codes_agree_with_classify():
    ports = [0, 1, 22, 80, 443, 1023, 1024, 5000, 32767, 32768, 40000, 65535]
    protos = [0, 1, 6, 17, 47, 58, 132, 255]
    rows = [(p, s, d) for p in protos for s in ports for d in ports]
    arr = np.array(rows)
    got = codes(arr[:, 0], arr[:, 1], arr[:, 2])
    for (p, s, d), c in zip(rows, got.tolist()):
        assert service_of(c) == classify(p, s, d), (p, s, d)
    no_ports = codes(arr[:, 0], arr[:, 1], arr[:, 2], has_ports=np.zeros(len(rows), bool))
    for (p, _s, _d), c in zip(rows, no_ports.tolist()):
        assert service_of(c) == classify(p, None, None)
    # 16-bit port arrays (NetFlow's fields) and ports past 16 bits (the arithmetic way)
    small = codes(arr[:, 0].astype(np.uint8), arr[:, 1].astype(">u2"), arr[:, 2].astype(">u2"))
    assert small.tolist() == got.tolist()
    wide = [(6, s, d) for s in ports + [65536, 70000] for d in (80, 40000, 65536, 70000)]
    warr = np.array(wide)
    for (p, s, d), c in zip(wide, codes(warr[:, 0], warr[:, 1], warr[:, 2]).tolist()):
        if s < 65536 and d < 65536:
            assert service_of(c) == classify(p, s, d), (p, s, d)


def test_attribution_table_resolves_each_key_once_and_survives_collisions(monkeypatch):
    calls = []

    def resolve(row):
        calls.append(row)
        return Attribution(row, row, None, row[0] % 2 == 0)

    t = AttributionTable(2, max_keys=1000)
    keys = np.array([[i % 50, 7] for i in range(500)], dtype=np.uint64)
    idx, attrs, counted = t.lookup(keys, resolve)
    assert len(calls) == 50 and [attrs[i][0][0] for i in idx.tolist()] == [i % 50 for i in range(500)]
    assert counted[idx].tolist() == [(i % 50) % 2 == 0 for i in range(500)]
    idx2, _a, _c = t.lookup(keys, resolve)
    assert len(calls) == 50 and idx2.tolist() == idx.tolist()
    # every key hashing alike: still right, by the word-by-word check
    import collectors.attrtable as at
    monkeypatch.setattr(at, "hash_rows", lambda k: np.zeros(len(k), dtype=np.uint64))
    t2 = AttributionTable(2)
    idx, attrs, _c = t2.lookup(keys[:10], resolve)
    idx, attrs, _c = t2.lookup(keys[:10], resolve)
    assert [attrs[i][0][0] for i in idx.tolist()] == list(range(10))
    # full: emptied, answers stay right
    t3 = AttributionTable(2, max_keys=20)
    for _ in range(3):
        idx, attrs, _c = t3.lookup(keys[:50], resolve)
        assert [attrs[i][0][0] for i in idx.tolist()] == list(range(50))
