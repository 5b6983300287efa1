"""CollectorService end to end over 127.0.0.1: sFlow (VXLAN), NetFlow v5, IPFIX, malformed input."""
from __future__ import annotations

import random
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import netflow_v5, normalise, sflow  # noqa: E402
from collectors.attribution import Attributor  # noqa: E402
from collectors.packet import parse_ethernet  # noqa: E402
from collectors.services import classify, label as service_label  # noqa: E402
from collectors.service import (CollectorService, _Receiver, kernel_drops,  # noqa: E402
                                parse_addr, vxlan_key)
from topology.model import Binding, Host, Model, Network, Port, Tenant  # noqa: E402

HV1, HV2 = "127.0.0.11", "127.0.0.12"  # exporters' (management) addresses on loopback
EXPORTERS = {HV1: "hv1", HV2: "hv2"}
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"  # as in fx.ovs_data_record
OFPORT = {("red", "a"): 7, ("red", "b"): 9, ("blue", "a"): 17, ("blue", "b"): 19}
# sFlow reports kernel ifindexes, not ofports: the collector is told which is which
IFINDEX = {("hv1", 107): "red-a", ("hv1", 117): "blue-a"}


def model() -> Model:
    """red (VNI 5001) and blue (VNI 6001): same CIDR, MACs and IPs; a on hv1, b on hv2."""
    m = Model()
    for t, vni in (("red", 5001), ("blue", 6001)):
        m.tenants[t] = Tenant(t, t)
        m.networks[t] = Network(t, t, "net", "10.0.0.0/24", vni)
        for name, mac, ip, host in (("a", MAC1, "10.0.0.1", "hv1"), ("b", MAC2, "10.0.0.2", "hv2")):
            m.ports[f"{t}-{name}"] = Port(f"{t}-{name}", t, "net", name, mac, (ip,))
            m.bindings[f"{t}-{name}"] = Binding(f"{t}-{name}", host, OFPORT[(t, name)])
    m.hosts["hv1"] = Host("hv1", "172.16.0.1", "unix:/x")
    m.hosts["hv2"] = Host("hv2", "172.16.0.2", "unix:/x")
    return m


OUTER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="172.16.0.1",
                                                                     dst="172.16.0.2")
INNER = Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=33000,
                                                                           dport=443)


def vxlan(vni: int) -> bytes:
    return bytes(OUTER / UDP(sport=49999, dport=4789) / VXLAN(vni=vni) / INNER)


def sflow_dgram(agent: str, frames, seq: int = 1, rate: int = 100, inp: int = 60000,
                extra=(), sample_seq: int | None = None) -> bytes:
    first = seq * 10 if sample_seq is None else sample_seq
    samples = [fx.sflow_flow_sample([fx.rec_raw_header(f, frame_length=1000), *extra],
                                    seq=first + i, rate=rate, inp=(0, inp), out=(0, 1))
               for i, f in enumerate(frames)]
    return fx.sflow_datagram(samples, agent=agent, seq=seq)


def sender(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    return s


def wait_for(svc, datagrams: int, timeout: float = 20.0) -> dict:
    """Status once `datagrams` were read and handled (the sockets' counts: a receiver counts
    a burst in the same step as it handles it; the stats count a datagram rejected after
    its header twice)."""
    deadline = time.monotonic() + timeout
    while True:
        st = svc.status()
        read = sum(s["datagrams"] for s in st["sockets"].values())
        if read >= datagrams or time.monotonic() > deadline:
            svc.flush()
            return svc.status()
        time.sleep(0.01)


@pytest.fixture
def svc():
    s = CollectorService(model, sflow=("127.0.0.1", 0), netflow="127.0.0.1:0",
                         ipfix=("127.0.0.1", 0), exporter_hosts=EXPORTERS,
                         sflow_ifindexes=IFINDEX, flush_interval=0.05).start()
    try:
        yield s
    finally:
        s.stop()


def test_end_to_end_three_protocols_attributed_and_deduplicated(svc):
    a = svc.addresses
    hv1, hv2 = sender(HV1), sender(HV2)
    # sFlow: hv1 samples red a->b at a's port (no tunnel), and blue a->b already
    # encapsulated (VNI 6001); hv2 samples both again from the tunnel (dedup: not counted)
    hv1.sendto(sflow_dgram(HV1, [bytes(INNER)], seq=1, inp=107), a["sflow"])
    hv1.sendto(sflow_dgram(HV1, [vxlan(6001)] * 3, seq=2, inp=117), a["sflow"])
    hv2.sendto(sflow_dgram(HV2, [vxlan(5001), vxlan(6001)], seq=1), a["sflow"])
    # NetFlow v5: hv1 at the VM ports (ofport picks the tenant); hv2 from the tunnel
    hv1.sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7, out=60000,
                                          octets=1500, packets=10),
                             fx.v5_record("10.0.0.1", "10.0.0.2", inp=17, out=60000,
                                          octets=3000, packets=20)], seq=0), a["netflow"])
    hv2.sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=60000, out=9,
                                          octets=1500, packets=10)], seq=0), a["netflow"])
    # IPFIX (OVS template with tunnel key): hv1 blue, hv2 red from the tunnel (dedup)
    tpl = fx.ipfix_set(2, fx.ipfix_template(256, fx.OVS_TEMPLATE_FIELDS))
    hv1.sendto(fx.ipfix_message([tpl, fx.ipfix_set(256, fx.ovs_data_record(vni=6001))], seq=0),
               a["ipfix"])
    hv2.sendto(fx.ipfix_message([tpl, fx.ipfix_set(256, fx.ovs_data_record(vni=5001))], seq=0),
               a["ipfix"])
    st = wait_for(svc, 7)

    p = st["protocols"]
    assert (p["sflow"]["datagrams"], p["sflow"]["flows"], p["sflow"]["counted"],
            p["sflow"]["deduplicated"]) == (3, 6, 4, 2)
    assert (p["netflow5"]["flows"], p["netflow5"]["counted"], p["netflow5"]["deduplicated"]) \
        == (3, 2, 1)
    # one template per exporter
    assert (p["ipfix"]["flows"], p["ipfix"]["counted"], p["ipfix"]["templates"]) == (2, 1, 2)
    assert st["totals"]["malformed"] == 0 and st["errors"] == 0
    hosts = {(e["protocol"], e["exporter"]): e["host"] for e in st["exporters"]}
    assert hosts[("sflow", HV1)] == "hv1" and hosts[("ipfix", HV2)] == "hv2"

    rows = {(r["src"], r["dst"]): r for r in svc.matrix()}
    assert set(rows) == {("red/net/a", "red/net/b"), ("blue/net/a", "blue/net/b")}
    red, blue = rows[("red/net/a", "red/net/b")], rows[("blue/net/a", "blue/net/b")]
    assert (red["bytes"], red["packets"]) == (1000 * 100 + 1500, 100 + 10)
    assert (blue["bytes"], blue["packets"]) == (3 * 1000 * 100 + 3000 + 4096 * 1000,
                                                3 * 100 + 20 + 4096)
    assert [(r["src"], r["dst"]) for r in svc.top(1, by="tenant")] == [("blue", "blue")]
    hosts = {h["host"]: h for h in svc.host_totals()}
    assert hosts["hv1"]["tx_bytes"] == red["bytes"] + blue["bytes"] == hosts["hv2"]["rx_bytes"]


def test_sequence_gaps_counted_per_exporter(svc):
    hv1 = sender(HV1)
    for seq in (1, 2, 5):  # datagrams 3 and 4 (with flow samples 3 and 4) lost
        hv1.sendto(sflow_dgram(HV1, [bytes(INNER)], seq=seq, inp=107, sample_seq=seq),
                   svc.addresses["sflow"])
    st = wait_for(svc, 3)
    (e,) = [e for e in st["exporters"] if e["protocol"] == "sflow"]
    assert (e["datagrams"], e["sequence_gaps"], e["lost_datagrams"], e["lost_records"]) == (
        3, 2, 2, 2)
    assert st["protocols"]["sflow"]["sequence_gaps"] == 2


def _hostile_datagrams(rng: random.Random) -> list[tuple[str, bytes]]:
    good = {"sflow": sflow_dgram(HV1, [vxlan(5001)]),
            "netflow": fx.v5_packet([fx.v5_record()] * 3),
            "ipfix": fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(256,
                                                                         fx.OVS_TEMPLATE_FIELDS)),
                                       fx.ipfix_set(256, fx.ovs_data_record())])}
    out = [("sflow", b""), ("sflow", b"\x00\x00\x00\x05"), ("netflow", b"\x00\x05"),
           ("netflow", b"\x00\x07" + bytes(40)), ("ipfix", b"\x00\x0a\xff\xff" + bytes(12)),
           ("sflow", fx.sflow_datagram([], nsamples=0xFFFFFFFF)),
           ("netflow", fx.v5_packet([fx.v5_record()], count=1000)),
           ("netflow", fx.v9_packet([fx.v9_flowset(0, struct.pack("!HH", 300, 0))]))]
    for kind, data in good.items():
        out.append((kind, data[:len(data) // 2]))
        out.append((kind, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))))
    return out


def test_malformed_datagrams_counted_and_not_fatal(svc):
    rng = random.Random(7)
    hostile = _hostile_datagrams(rng)
    s = sender(HV1)
    for kind, data in hostile:
        s.sendto(data, svc.addresses[kind])
    s.sendto(sflow_dgram(HV1, [bytes(INNER)], seq=1, inp=107), svc.addresses["sflow"])
    s.sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7)]), svc.addresses["netflow"])
    st = wait_for(svc, len(hostile) + 2)
    assert st["totals"]["datagrams"] == len(hostile) + 2
    assert st["totals"]["malformed"] == len(hostile)
    assert st["errors"] == 0  # every bad input was a MalformedDatagram, nothing unexpected
    assert st["protocols"]["sflow"]["counted"] == 1 and st["protocols"]["netflow5"]["counted"] == 1
    assert {r["src"] for r in svc.matrix()} == {"red/net/a"}


@pytest.mark.parametrize("columnar", [False, True])
def test_unexpected_exception_is_counted_and_the_thread_survives(svc, monkeypatch, columnar):
    """Per record: the datagram is malformed; columnar: the burst goes per record instead."""
    svc.columnar = columnar
    svc.small_burst = 1           # a burst of one datagram takes the columnar path too
    for r in svc._receivers.values():
        if not columnar:
            r.columns = None
    calls = []
    real = svc.attributor.attribute

    def flaky(rec):
        calls.append(rec)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(rec)

    monkeypatch.setattr(svc.attributor, "attribute", flaky)
    s = sender(HV1)
    for seq in (1, 2):
        s.sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7)], seq=seq),
                 svc.addresses["netflow"])
        time.sleep(0.05)
    st = wait_for(svc, 2)
    assert st["errors"] == 1 and "boom" in st["sockets"]["netflow"]["last_error"]
    assert st["protocols"]["netflow5"]["malformed"] == (0 if columnar else 1)
    assert st["protocols"]["netflow5"]["counted"] == (2 if columnar else 1)


def test_model_provider_refresh_rebuilds_attribution():
    current = {"m": None}
    s = CollectorService(lambda: current["m"], sflow=("127.0.0.1", 0), exporter_hosts=EXPORTERS,
                         model_refresh=0.05, flush_interval=0.05).start()
    try:
        snd = sender(HV1)
        snd.sendto(sflow_dgram(HV1, [vxlan(5001)], seq=1), s.addresses["sflow"])
        wait_for(s, 1)
        assert [r["src"] for r in s.matrix()] == ["unknown:10.0.0.1"]
        current["m"] = model()
        deadline = time.monotonic() + 5
        while s.attributor.model is None and time.monotonic() < deadline:
            time.sleep(0.01)
        snd.sendto(sflow_dgram(HV1, [vxlan(5001)], seq=2), s.addresses["sflow"])
        wait_for(s, 2)
        assert {r["src"] for r in s.matrix()} == {"unknown:10.0.0.1", "red/net/a"}
    finally:
        s.stop()


def test_service_needs_a_socket_and_parses_addresses():
    with pytest.raises(ValueError):
        CollectorService(None, sflow=None)
    assert parse_addr("127.0.0.1:6343") == ("127.0.0.1", 6343)
    assert parse_addr(":2055") == ("127.0.0.1", 2055)
    assert parse_addr("[::1]:4739") == ("::1", 4739)
    assert parse_addr(("0.0.0.0", 0)) == ("0.0.0.0", 0)
    for bad in ("6343", "host:port", "1.2.3.4:70000", "[::1]4739", ("a",)):
        with pytest.raises(ValueError):
            parse_addr(bad)


def test_kernel_drops_reads_proc_net_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        assert kernel_drops(s) == 0
    finally:
        s.close()


# ------------------------------------------------------------------ fast paths == slow path


def _frames() -> list[bytes]:
    ipv6_inner = (Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                  / UDP(sport=1, dport=2))
    return [
        vxlan(5001), vxlan(6001), vxlan(7777),
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001)
              / (Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2"))),
        bytes(OUTER / UDP(dport=6081) / GENEVE(vni=6001, proto=0x6558) / INNER),
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=6001, flags=0) / INNER),  # VNI not valid
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001) / ipv6_inner),
        bytes(INNER), bytes(Ether(src=MAC2, dst=MAC1) / IP(src="10.0.0.2", dst="10.0.0.1")),
        vxlan(5001)[:70],  # cut inside the inner frame
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001)   # the reply of INNER: from the service
              / (Ether(src=MAC2, dst=MAC1) / IP(src="10.0.0.2", dst="10.0.0.1")
                 / TCP(sport=443, dport=33000))),
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001)
              / (Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=40000, dport=5201)))[:108],   # cut inside the UDP ports
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001)
              / (Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", frag=10)
                 / UDP(sport=40000, dport=5201))),          # a later fragment: no ports
        bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5001)
              / (Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.99", ihl=6,
                                                 options=b"\x01\x01\x01\x01"))),
    ]


def _reference(datagrams, m, services: bool = False) -> dict:
    """normalise + attribute with a fresh Attributor, summed per (src, dst) when counted
    (per (src, dst, proto, port, to_server) with `services`)."""
    att = Attributor(m, EXPORTERS, ifindexes=IFINDEX)
    out: dict = {}
    for kind, exporter, data in datagrams:
        if kind == "sflow":
            recs = normalise.from_sflow(sflow.decode(data), None, 0.0)
        else:
            recs = normalise.from_netflow5(netflow_v5.decode(data), exporter)
        for r in recs:
            a = att.attribute(r)
            if a.counted:
                k = (a.src.label(), a.dst.label(), a.src.tenant, a.dst.tenant)
                if services:
                    proto, port = service_label(classify(r.ip_protocol, r.src_port, r.dst_port))
                    svc = classify(r.ip_protocol, r.src_port, r.dst_port)
                    k += (proto, port, None if svc is None else svc.to_server)
                v = out.setdefault(k, [0, 0])
                v[0] += r.bytes
                v[1] += r.packets
    return out


def test_fast_paths_equal_normalise_then_attribute():
    m = model()
    frames = _frames()
    rng = random.Random(3)
    datagrams = []
    for seq in range(60):
        agent = rng.choice((HV1, HV2, "127.0.0.99"))
        picks = [rng.choice(frames) for _ in range(rng.randrange(1, 6))]
        extra = [fx.rec_vni(False, rng.choice((5001, 6001)))] if rng.random() < 0.3 else []
        datagrams.append(("sflow", agent, sflow_dgram(
            agent, picks, seq=seq, rate=rng.choice((1, 100, 400)),
            inp=rng.choice((7, 107, 117, 9, 60000)), extra=extra)))
        recs = [fx.v5_record(rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.9")),
                             rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.50")),
                             inp=rng.choice((7, 17, 9, 19, 60000)),
                             out=rng.choice((7, 9, 17, 19, 60000)),
                             octets=rng.randrange(1, 10_000), packets=rng.randrange(1, 50))
                for _ in range(rng.randrange(1, 30))]
        datagrams.append(("netflow", rng.choice((HV1, HV2)),
                          fx.v5_packet(recs, sampling=rng.choice((0, 0x4000 | 10)))))
    svc = CollectorService(m, sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                           exporter_hosts=EXPORTERS, sflow_ifindexes=IFINDEX)
    svc.refresh_model()
    receivers = {k: _Receiver(svc, k, ("127.0.0.1", 0)) for k in ("sflow", "netflow")}
    now = time.time()  # (an old timestamp would fall out of the aggregator's retention)
    try:
        for _ in range(2):  # the second pass runs from the memo
            for kind, exporter, data in datagrams:
                receivers[kind].handle(data, exporter, now)
        for r in receivers.values():
            r.flush()
    finally:
        for r in receivers.values():
            r.sock.close()
    ref = _reference(datagrams, m)
    got = {(r["src"], r["dst"], r["src_tenant"], r["dst_tenant"]): [r["bytes"], r["packets"]]
           for r in svc.matrix()}
    assert got == {k: [2 * v[0], 2 * v[1]] for k, v in ref.items()}
    ref_flows = _reference(datagrams, m, services=True)
    got_flows = {(r["src"], r["dst"], r["src_tenant"], r["dst_tenant"], r["proto"], r["port"],
                  r["to_server"]): [r["bytes"], r["packets"]] for r in svc.flows()}
    assert got_flows == {k: [2 * v[0], 2 * v[1]] for k, v in ref_flows.items()}
    assert ("red/net/a", "red/net/b", "red", "red", "tcp", 443, True) in got_flows
    assert ("red/net/b", "red/net/a", "red", "red", "tcp", 443, False) in got_flows
    assert len(svc.attributor.memo()) > 0
    assert {k[0] for k in got} >= {"red/net/a", "blue/net/a"}


def _vxlan_header() -> bytes:
    return vxlan(0x123456)[:128]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), max_size=4),
       st.integers(0, 128))
def test_vxlan_key_agrees_with_the_packet_parser(mutations, cut):
    h = bytearray(_vxlan_header())
    for pos, val in mutations:
        h[pos % len(h)] = val
    h = bytes(h[:cut])
    key = vxlan_key(h)
    if key is None:
        return
    p = parse_ethernet(h)
    inner = p.inner
    assert p.tunnel_type == "vxlan" and inner is not None
    assert p.vni == int.from_bytes(key[0:3], "big")
    assert inner.dst_mac == key[3:9].hex(":") and inner.src_mac == key[9:15].hex(":")
    assert inner.src_ip == socket.inet_ntoa(key[15:19])
    assert inner.dst_ip == socket.inet_ntoa(key[19:23])


def test_vxlan_key_only_for_the_plain_layout():
    assert vxlan_key(vxlan(5001)) is not None
    for f in _frames()[3:]:
        if f[:14] == vxlan(5001)[:14] and f[23] == 17 and f[36:38] == b"\x12\xb5" \
                and f[42] & 8 and len(f) >= 84 and f[62:64] == b"\x08\x00" and f[64] == 0x45:
            continue
        assert vxlan_key(f) is None


def test_only_known_hosts_exporters_are_read_when_asked():
    """weftd's collectors: a datagram from an address that is no host is counted and dropped."""
    s = CollectorService(model, netflow="127.0.0.1:0", sflow=None, exporter_hosts=EXPORTERS,
                         flush_interval=0.05, known_exporters_only=True).start()
    try:
        fake, real = sender("127.0.0.99"), sender(HV1)
        dgram = fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7, out=60000,
                                           octets=10_000_000_000 // 8, packets=1000)], seq=0)
        for _ in range(3):
            fake.sendto(dgram, s.addresses["netflow"])
        real.sendto(dgram, s.addresses["netflow"])
        st = wait_for(s, 4)
        assert st["rejected"] == [{"socket": "netflow", "source": "127.0.0.99", "datagrams": 3}]
        assert st["totals"]["rejected"] == 3
        assert [e["exporter"] for e in st["exporters"]] == [HV1]     # the stranger was never read
        (row,) = s.matrix()
        assert (row["src"], row["dst"], row["packets"]) == ("red/net/a", "red/net/b", 1000)
    finally:
        s.stop()


def test_every_exporter_is_read_by_default():
    """`weft collect` alone (no hosts to check against) reads whatever it is sent."""
    s = CollectorService(None, netflow="127.0.0.1:0", sflow=None, flush_interval=0.05).start()
    try:
        sender("127.0.0.99").sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2")], seq=0),
                                    s.addresses["netflow"])
        st = wait_for(s, 1)
        assert st["rejected"] == [] and [e["exporter"] for e in st["exporters"]] == ["127.0.0.99"]
    finally:
        s.stop()
