"""Fuzzing the decoders: mutated valid datagrams only ever decode or raise MalformedDatagram.

Per protocol, FUZZ_ITERATIONS (default 100,000; env WEFT_FUZZ_ITERATIONS) datagrams derived
from valid seeds by bit flips, truncation, random/boundary length and count fields, splicing
with other seeds, insertions and deletions - driven by a seeded random.Random, so a failure
is reproducible from the printed iteration. Successful decodes are also normalised and fed
to the stats, which must never raise. A smaller hypothesis test covers the same property.
"""
from __future__ import annotations

import os
import random
import struct
import sys
import time
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import netflow_v5, normalise, sflow  # noqa: E402
from collectors.errors import MalformedDatagram  # noqa: E402
from collectors.ipfix import IpfixDecoder  # noqa: E402
from collectors.netflow_v9 import NetflowV9Decoder  # noqa: E402
from collectors.stats import CollectorStats  # noqa: E402
from collectors.templates import TemplateCache  # noqa: E402

FUZZ_ITERATIONS = int(os.environ.get("WEFT_FUZZ_ITERATIONS", "100000"))
MAX_DECODE_SECONDS = 0.5  # any single datagram taking longer than this is a hang
HYPOTHESIS = settings(max_examples=400, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))

# ------------------------------------------------------------------ seeds


def _eth(src="02:00:00:00:00:01", dst="02:00:00:00:00:02"):
    return Ether(src=src, dst=dst)


INNER = (_eth("52:54:00:00:00:01", "52:54:00:00:00:02") / Dot1Q(vlan=5)
         / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2))
VXLAN_FRAME = bytes(_eth() / IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=3, dport=4789)
                    / VXLAN(vni=99) / INNER)
GENEVE_FRAME = bytes(_eth() / IPv6(src="fd00::1", dst="fd00::2") / UDP(dport=6081)
                     / GENEVE(vni=7, proto=0x6558, optionlen=1, options=b"\0\1\2\3") / INNER)
IPV6_PACKET = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=6))

SFLOW_SEEDS = [
    fx.load_hex("sflow_vxlan_flow_sample.hex"),
    fx.sflow_datagram([
        fx.sflow_flow_sample([fx.rec_raw_header(VXLAN_FRAME[:128]), fx.rec_tunnel4(True),
                              fx.rec_vni(True, 5)], expanded=True, seq=3),
        fx.sflow_counter_sample([fx.rec_if_counters(), fx.rec_eth_counters()], expanded=True),
        fx.sflow_flow_sample([fx.rec_raw_header(GENEVE_FRAME), fx.rec_switch(),
                              fx.rec_router("2001:db8::1")]),
    ], agent="2001:db8::99", sub_agent=2, seq=10),
    fx.sflow_datagram([
        fx.sflow_flow_sample([fx.rec_raw_header(IPV6_PACKET, protocol=12), fx.rec_ipv6(),
                              fx.rec_tunnel4(False), fx.rec_vni(False, 1), fx.rec_router(None)]),
        fx.sflow_flow_sample([fx.rec_ethernet(64, "00:00:00:00:00:01", "00:00:00:00:00:02", 0x800),
                              fx.rec_ipv4(), fx.sflow_tagged(77, b"vendor!", enterprise=9)]),
        fx.sflow_counter_sample([fx.rec_if_counters(), fx.sflow_tagged(1005, b"\0" * 8)]),
        fx.sflow_tagged(9, b"\1" * 12),
    ], agent=None),
]

V5_SEEDS = [
    fx.v5_packet([fx.v5_record()]),
    fx.v5_packet([fx.v5_record(src=f"10.0.0.{i}") for i in range(30)], seq=99),
    fx.v5_packet([]),
]

_T256 = [(1, 4), (2, 4), (4, 1), (7, 2), (8, 4), (11, 2), (12, 4), (21, 4), (22, 4), (56, 6)]
_R256 = struct.pack("!IIBH4sH4sII6s", 1, 2, 6, 3, b"\1\2\3\4", 4, b"\5\6\7\x08", 9, 10, b"\xaa" * 6)
V9_SEEDS = [
    fx.v9_packet([fx.v9_template_flowset([(256, _T256)]), fx.v9_flowset(256, _R256 * 3)]),
    fx.v9_packet([fx.v9_flowset(256, _R256 * 2), fx.v9_flowset(258, b"\0" * 12)], seq=2),
    fx.v9_packet([fx.v9_options_template_flowset(258, [(1, 4)], [(34, 4), (35, 1)]),
                  fx.v9_flowset(258, struct.pack("!IIB", 1, 100, 2) * 2),
                  fx.v9_template_flowset([(257, [(27, 16), (28, 16), (10, 2)]), (256, _T256)])], seq=3),
    fx.v9_packet([fx.v9_flowset(257, b"\x20" * 34 * 2)], seq=4, source_id=1),
]

_VAR_TPL = fx.ipfix_template(257, [(4, 1), (999, 0xFFFF), (892, 0xFFFF, fx.VMWARE), (7, 2)])
_VAR_DATA = (b"\6" + fx.varlen(b"abc") + fx.varlen(b"\0\0\1") + b"\0\1"
             + b"\x11" + fx.varlen(b"x" * 300) + fx.varlen(b"\1\2\3", True) + b"\0\2")
IPFIX_SEEDS = [
    fx.load_hex("ipfix_ovs_tunnel.hex"),
    fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(300, fx.OVS_TEMPLATE_FIELDS)),
                      fx.ipfix_set(300, fx.ovs_data_record() + fx.ovs_data_record(vni=7))], seq=5),
    fx.ipfix_message([fx.ipfix_set(2, _VAR_TPL), fx.ipfix_set(257, _VAR_DATA, pad=2)], seq=7),
    fx.ipfix_message([fx.ipfix_set(3, fx.ipfix_options_template(400, 1, [(149, 4), (305, 4), (306, 4)])),
                      fx.ipfix_set(400, struct.pack("!III", 1, 1, 99))], domain=1),
    fx.ipfix_message([fx.ipfix_set(300, fx.ovs_data_record()), fx.ipfix_set(257, _VAR_DATA)], seq=9),
    fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_withdrawal(256) + fx.ipfix_withdrawal(2)),
                      fx.ipfix_set(3, fx.ipfix_withdrawal(3))]),
]

# ------------------------------------------------------------------ mutation

_BOUNDARY = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
             0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def mutate(rng: random.Random, data: bytes, seeds: list[bytes], word: int) -> bytes:
    """1-3 random mutations of data; `word` is the protocol's field alignment (2 or 4)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        n = len(buf)
        op = rng.randrange(8)
        if op <= 1 and n:  # bit flips
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 2 and n:  # truncation
            del buf[rng.randrange(n):]
        elif op <= 4 and n >= word:  # a length/count-sized field gets a random or boundary value
            pos = rng.randrange(n // word) * word if rng.random() < 0.8 else rng.randrange(n - word + 1)
            size = word if rng.random() < 0.7 else (2 if word == 4 else 4)
            size = min(size, n - pos)
            value = rng.choice(_BOUNDARY) if rng.random() < 0.5 else rng.getrandbits(8 * size)
            if rng.random() < 0.2:
                value = n - pos + rng.randint(-8, 8)
            buf[pos:pos + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
        elif op == 5:  # splice a chunk of another seed in (overwrite or insert)
            other = rng.choice(seeds)
            if other:
                a = rng.randrange(len(other))
                chunk = other[a:a + rng.randint(1, 64)]
                pos = rng.randrange(n + 1)
                if rng.random() < 0.5:
                    buf[pos:pos + len(chunk)] = chunk
                else:
                    buf[pos:pos] = chunk
        elif op == 6 and n:  # delete or duplicate a range
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 16))
            if rng.random() < 0.5:
                del buf[a:b]
            else:
                buf[a:a] = buf[a:b]
        else:  # random bytes appended or inserted
            junk = rng.randbytes(rng.randint(1, 24))
            pos = n if rng.random() < 0.5 else rng.randrange(n + 1)
            buf[pos:pos] = junk
    return bytes(buf)


# ------------------------------------------------------------------ per-protocol harness


class Harness:
    """Decode + normalise + stats for one protocol; only MalformedDatagram may escape decode."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.stats = CollectorStats()
        self.reset()

    def reset(self) -> None:
        cache = TemplateCache(pending_max_bytes=1 << 20, max_templates=2000)
        self.v9 = NetflowV9Decoder(cache)
        self.ipfix = IpfixDecoder(TemplateCache(pending_max_bytes=1 << 20, max_templates=2000))

    def run(self, data: bytes) -> bool:
        """True if decoded, False if MalformedDatagram; anything else propagates."""
        p = self.protocol
        try:
            if p == "sflow":
                out = sflow.decode(data)
            elif p == "netflow5":
                out = netflow_v5.decode(data)
            elif p == "netflow9":
                out = self.v9.decode(data, "fuzz")
            else:
                out = self.ipfix.decode(data, "fuzz")
        except MalformedDatagram:
            self.stats.malformed("fuzz")
            return False
        if p == "sflow":
            normalise.from_sflow(out, received=0.0)
            self.stats.observe_sflow(out, "fuzz")
        elif p == "netflow5":
            normalise.from_netflow5(out, "fuzz")
            self.stats.observe_netflow5(out, "fuzz")
        elif p == "netflow9":
            normalise.from_netflow9(out, "fuzz")
            self.stats.observe_netflow9(out, "fuzz", self.v9.cache)
        else:
            normalise.from_ipfix(out, "fuzz")
            self.stats.observe_ipfix(out, "fuzz", self.ipfix.cache)
        return True


def fuzz(protocol: str, seeds: list[bytes], word: int, rng_seed: int) -> None:
    h = Harness(protocol)
    for s in seeds:
        assert h.run(s) or protocol in ("netflow9", "ipfix"), "seed must decode"
    rng = random.Random(rng_seed)
    ok = bad = 0
    slowest = 0.0
    perf = time.perf_counter
    for i in range(FUZZ_ITERATIONS):
        if i % 5000 == 0:
            h.reset()
        if i % 50 == 0:  # keep the templates of valid seeds around for the mutants' data sets
            for s in seeds:
                h.run(s)
        data = mutate(rng, rng.choice(seeds), seeds, word)
        t0 = perf()
        try:
            decoded = h.run(data)
        except Exception as exc:  # pragma: no cover - this is the failure being hunted
            raise AssertionError(f"{protocol} iteration {i} (rng seed {rng_seed}): {exc!r} "
                                 f"on {data.hex()}") from exc
        slowest = max(slowest, perf() - t0)
        if decoded:
            ok += 1
        else:
            bad += 1
    assert slowest < MAX_DECODE_SECONDS, f"{protocol}: one datagram took {slowest:.3f}s"
    # the mutations must exercise both outcomes, or the fuzzer is not testing much
    assert ok > FUZZ_ITERATIONS // 50 and bad > FUZZ_ITERATIONS // 4, (ok, bad)


def test_fuzz_sflow():
    fuzz("sflow", SFLOW_SEEDS, 4, rng_seed=0x5F10)


def test_fuzz_netflow5():
    fuzz("netflow5", V5_SEEDS, 2, rng_seed=0x0505)


def test_fuzz_netflow9():
    fuzz("netflow9", V9_SEEDS, 2, rng_seed=0x0909)


def test_fuzz_ipfix():
    fuzz("ipfix", IPFIX_SEEDS, 2, rng_seed=0x1F1C)


# ------------------------------------------------------------------ hypothesis


@HYPOTHESIS
@given(st.sampled_from(["sflow", "netflow5", "netflow9", "ipfix"]), st.binary(max_size=400))
def test_hypothesis_random_bytes(protocol, data):
    Harness(protocol).run(data)


_ALL_SEEDS = [("sflow", s) for s in SFLOW_SEEDS] + [("netflow5", s) for s in V5_SEEDS] + \
    [("netflow9", s) for s in V9_SEEDS] + [("ipfix", s) for s in IPFIX_SEEDS]


@HYPOTHESIS
@given(st.sampled_from(_ALL_SEEDS),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
       st.integers(0, 2000))
def test_hypothesis_mutated_seeds(seed, edits, cut):
    protocol, data = seed
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    h = Harness(protocol)
    if protocol in ("netflow9", "ipfix"):  # let the data sets meet their templates
        for p, s in _ALL_SEEDS:
            if p == protocol:
                h.run(s)
    h.run(bytes(buf[:cut]) if cut < len(buf) else bytes(buf))


# ------------------------------------------------------------------ hostile sizes


def test_hostile_counts_do_not_allocate():
    """Huge count/length fields are rejected before anything proportional is allocated."""
    hostile = [
        ("sflow", fx.sflow_datagram([], nsamples=0xFFFFFFFF) + b"\0" * 64),
        ("sflow", fx.sflow_datagram([fx.sflow_tagged(1, struct.pack("!7II", *[0] * 7, 0xFFFFFFFF))])),
        ("netflow5", fx.v5_packet([], count=0xFFFF)),
        ("netflow9", fx.v9_packet([fx.v9_template_flowset([(256, [(1, 0xFFFF)] * 8)]),
                                   fx.v9_flowset(256, b"\1" * 64)])),
        ("ipfix", fx.ipfix_message([fx.ipfix_set(2, struct.pack("!HH", 256, 0xFFFF) + b"\0\1\0\4" * 4)])),
    ]
    for protocol, data in hostile:
        h = Harness(protocol)
        tracemalloc.start()
        try:
            h.run(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 * 1024, (protocol, peak)


def test_non_buffer_inputs_are_malformed_and_buffers_accepted():
    import array

    decoders = [sflow.decode, netflow_v5.decode, lambda d: NetflowV9Decoder().decode(d, "e"),
                lambda d: IpfixDecoder().decode(d, "e")]
    for decode in decoders:
        for junk in (10**12, "text", None, [5, 0], 3.5):
            try:
                decode(junk)
            except MalformedDatagram:
                continue
            raise AssertionError(f"{junk!r} accepted")
    assert netflow_v5.decode(memoryview(bytearray(V5_SEEDS[0]))).count == 1
    words = array.array("I", b"\0" * 24)  # a non-byte memoryview format is still a buffer
    try:
        sflow.decode(memoryview(words))
    except MalformedDatagram:
        pass
