"""Normalisation into FlowRecord: inner-packet decode, tunnel fields, sampling applied once."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import netflow_v5, normalise, sflow  # noqa: E402
from collectors.ipfix import IpfixDecoder  # noqa: E402
from collectors.netflow_v9 import NetflowV9Decoder  # noqa: E402
from collectors.records import FlowRecord  # noqa: E402

OUTER = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
         / IP(src="172.16.0.1", dst="172.16.0.2"))
INNER = (Ether(src="52:54:00:aa:00:01", dst="52:54:00:aa:00:02") / Dot1Q(vlan=33)
         / IP(src="10.0.0.1", dst="10.0.0.2", tos=0x10) / TCP(sport=33000, dport=443, flags="PA"))


def sflow_records(*records, rate=400, expanded=False, inp=(0, 3), out=(0, 4), agent="192.0.2.1",
                  exporter=None, received=None):
    dg = sflow.decode(fx.sflow_datagram(
        [fx.sflow_flow_sample(list(records), rate=rate, expanded=expanded, inp=inp, out=out),
         fx.sflow_counter_sample([fx.rec_if_counters()])], agent=agent))
    return normalise.from_sflow(dg, exporter=exporter, received=received)


def test_sflow_vxlan_raw_header_gives_inner_flow_and_outer_endpoints():
    frame = bytes(OUTER / UDP(sport=49999, dport=4789) / VXLAN(vni=5001) / INNER)
    (r,) = sflow_records(fx.rec_raw_header(frame, frame_length=1554), rate=400, received=1234.5)
    assert r == FlowRecord(
        exporter="192.0.2.1", protocol="sflow", bytes=1554 * 400, packets=400,
        src_mac="52:54:00:aa:00:01", dst_mac="52:54:00:aa:00:02", vlan=33, ether_type=0x0800,
        src_ip="10.0.0.1", dst_ip="10.0.0.2", ip_protocol=6, tos=0x10, src_port=33000,
        dst_port=443, tcp_flags=0x18, in_interface=3, out_interface=4, start=1234.5, end=1234.5,
        sampling_scale=400, tunnel_key=5001, tunnel_type="vxlan", tunnel_src="172.16.0.1",
        tunnel_dst="172.16.0.2", tunnel_src_port=49999, tunnel_dst_port=4789)


def test_sflow_geneve_raw_header():
    frame = bytes(OUTER / UDP(sport=1, dport=6081) / GENEVE(vni=0x123456, proto=0x6558) / INNER)
    (r,) = sflow_records(fx.rec_raw_header(frame), rate=1)
    assert (r.tunnel_type, r.tunnel_key, r.src_ip, r.dst_port, r.packets) == (
        "geneve", 0x123456, "10.0.0.1", 443, 1)
    assert r.bytes == len(frame) + 4  # frame length includes the 4 stripped FCS bytes


def test_sflow_plain_raw_header_and_ipv6_header_protocol():
    (r,) = sflow_records(fx.rec_raw_header(bytes(INNER), frame_length=100), rate=10)
    assert (r.src_ip, r.vlan, r.tunnel_key, r.tunnel_type, r.bytes) == ("10.0.0.1", 33, None, None, 1000)
    ip6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=6))
    (r,) = sflow_records(fx.rec_raw_header(ip6, protocol=12))
    assert (r.ether_type, r.src_ip, r.dst_port, r.src_mac) == (0x86DD, "2001:db8::1", 6, None)


def test_sflow_ovs_tunnel_records_fill_tunnel_fields():
    # OVS samples the decapsulated packet and describes the tunnel in 1024/1030 records.
    (r,) = sflow_records(fx.rec_raw_header(bytes(INNER)),
                         fx.rec_tunnel4(False, "172.16.0.9", "172.16.0.1", 17, 50000, 4789),
                         fx.rec_vni(False, 777))
    assert (r.src_ip, r.tunnel_key, r.tunnel_type) == ("10.0.0.1", 777, "vxlan")
    assert (r.tunnel_src, r.tunnel_dst, r.tunnel_src_port, r.tunnel_dst_port) == (
        "172.16.0.9", "172.16.0.1", 50000, 4789)
    (r,) = sflow_records(fx.rec_raw_header(bytes(INNER)), fx.rec_tunnel4(True, proto=47, dport=0),
                         fx.rec_vni(True, 9))
    assert (r.tunnel_type, r.tunnel_key) == ("gre", 9)


def test_sflow_header_vni_wins_over_vni_record():
    frame = bytes(OUTER / UDP(dport=4789) / VXLAN(vni=5) / INNER)
    (r,) = sflow_records(fx.rec_raw_header(frame), fx.rec_vni(False, 6))
    assert r.tunnel_key == 5


@pytest.mark.parametrize("cut,expect", [
    (66, dict(src_mac="52:54:00:aa:00:01", vlan=None, src_ip=None)),  # inner Ethernet only
    (70, dict(src_mac="52:54:00:aa:00:01", vlan=33, src_ip=None)),  # + VLAN tag
    (90, dict(src_ip="10.0.0.1", src_port=None)),  # + inner IPv4
    (94, dict(src_ip="10.0.0.1", src_port=33000, tcp_flags=None)),  # + ports
])
def test_sflow_truncated_inner_header_yields_what_could_be_decoded(cut, expect):
    frame = bytes(OUTER / UDP(dport=4789) / VXLAN(vni=42) / INNER)
    (r,) = sflow_records(fx.rec_raw_header(frame[:cut], frame_length=1500))
    assert r.tunnel_key == 42 and r.tunnel_src == "172.16.0.1" and r.bytes == 1500 * 400
    for name, value in expect.items():
        assert getattr(r, name) == value, name


def test_sflow_header_cut_before_inner_frame_keeps_tunnel_only():
    frame = bytes(OUTER / UDP(dport=4789) / VXLAN(vni=42) / INNER)
    (r,) = sflow_records(fx.rec_raw_header(frame[:46]),
                         fx.rec_ipv4(src="172.16.0.1", dst="172.16.0.2", proto=17))
    assert (r.tunnel_type, r.tunnel_src, r.src_ip, r.src_mac) == ("vxlan", "172.16.0.1", None, None)


def test_sflow_without_raw_header_uses_ethernet_and_ip_records():
    (r,) = sflow_records(fx.rec_ethernet(1518, "00:00:00:00:00:aa", "00:00:00:00:00:bb", 0x0800),
                         fx.rec_ipv4(1500, 17, "10.5.5.5", "10.6.6.6", 53, 5353, 0, 0),
                         fx.rec_switch(src_vlan=12), rate=2)
    assert (r.src_mac, r.src_ip, r.dst_port, r.vlan, r.bytes, r.packets) == (
        "00:00:00:00:00:aa", "10.5.5.5", 5353, 12, 1518 * 2, 2)
    (r,) = sflow_records(fx.rec_ipv6(length=200), rate=3)
    assert (r.src_ip, r.bytes) == ("2001:db8::1", 600)


def test_sflow_sampling_rate_zero_counts_as_one_and_interfaces():
    (r,) = sflow_records(fx.rec_vni(True, 1), rate=0, expanded=True, inp=(0, 0xFFFFFFFF),
                         out=(0, 77), exporter="198.51.100.7")
    assert (r.packets, r.sampling_scale, r.in_interface, r.out_interface) == (1, 1, None, 77)
    assert r.exporter == "198.51.100.7" and r.tunnel_key == 1


def test_sflow_hand_written_fixture_normalised():
    (r,) = normalise.from_sflow(sflow.decode(fx.load_hex("sflow_vxlan_flow_sample.hex")))
    assert (r.src_ip, r.dst_ip, r.src_port, r.dst_port, r.tcp_flags) == ("10.0.0.1", "10.0.0.2", 33000, 80, 0x18)
    assert (r.tunnel_key, r.tunnel_src, r.tunnel_dst, r.bytes, r.packets) == (5001, "172.16.0.1", "172.16.0.2", 76800, 512)


def test_netflow5_records_times_and_sampling():
    recs = [fx.v5_record(packets=10, octets=1500, first=4000, last=4900),
            fx.v5_record(packets=1, octets=40, first=0xFFFFF000, last=0xFFFFFF00)]  # before uptime wrap
    p = netflow_v5.decode(fx.v5_packet(recs, uptime=5000, secs=1_700_000_000, nsecs=500_000_000))
    r0, r1 = normalise.from_netflow5(p, "192.0.2.5")
    assert (r0.protocol, r0.bytes, r0.packets, r0.sampling_scale) == ("netflow5", 1500, 10, 1)
    assert (r0.src_ip, r0.dst_ip, r0.src_port, r0.dst_port, r0.ip_protocol) == ("10.1.0.1", "10.2.0.2", 40000, 443, 6)
    assert r0.start == pytest.approx(1_700_000_000.5 - 1.0)
    assert r0.end == pytest.approx(1_700_000_000.5 - 0.1)
    assert r1.start == pytest.approx(1_700_000_000.5 - (5000 + 0x1000) / 1000)
    sampled = netflow_v5.decode(fx.v5_packet(recs[:1], sampling=(1 << 14) | 100))
    (r,) = normalise.from_netflow5(sampled, "x")
    assert (r.bytes, r.packets, r.sampling_scale) == (150_000, 1000, 100)


def test_netflow9_sysuptime_times_and_options_skipped():
    dec = NetflowV9Decoder()
    tpl = fx.v9_template_flowset([(256, [(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4)])])
    otpl = fx.v9_options_template_flowset(257, [(1, 4)], [(34, 4)])
    data = fx.v9_flowset(256, fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2") + struct.pack("!IIII", 900, 3, 98_000, 99_500))
    odata = fx.v9_flowset(257, struct.pack("!II", 1, 100))
    p = dec.decode(fx.v9_packet([tpl, otpl, data, odata], uptime=100_000, secs=1_700_000_000), "e")
    (r,) = normalise.from_netflow9(p, "e")
    assert (r.protocol, r.bytes, r.packets, r.sampling_scale) == ("netflow9", 900, 3, 1)  # not scaled
    assert (r.start, r.end) == (1_700_000_000 - 2.0, 1_700_000_000 - 0.5)


def test_ipfix_ovs_record_normalised_as_exported():
    dec = IpfixDecoder()
    msg = fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(300, fx.OVS_TEMPLATE_FIELDS)),
                            fx.ipfix_set(300, fx.ovs_data_record(vni=5001))], export_time=1_700_000_000)
    (r,) = normalise.from_ipfix(dec.decode(msg, "192.0.2.77"), "192.0.2.77")
    assert r == FlowRecord(
        exporter="192.0.2.77", protocol="ipfix", bytes=4096 * 1000, packets=4096,
        src_mac="52:54:00:00:00:01", dst_mac="52:54:00:00:00:02", vlan=0, ether_type=0x0800,
        src_ip="10.0.0.1", dst_ip="10.0.0.2", ip_protocol=6, src_port=33000, dst_port=80,
        in_interface=7, out_interface=9, start=1_700_000_000 - 2.0, end=1_700_000_000 - 0.5,
        sampling_scale=1, tunnel_key=5001, tunnel_type="vxlan", tunnel_src="172.16.0.1",
        tunnel_dst="172.16.0.2", tunnel_src_port=49152, tunnel_dst_port=4789)


def test_ipfix_millisecond_times_and_l3_octets_fallback():
    dec = IpfixDecoder()
    tpl = fx.ipfix_template(256, [(27, 16), (1, 8), (2, 8), (152, 8), (153, 8)])
    data = fx.ip6("2001:db8::5") + struct.pack("!QQQQ", 5000, 5, 1_700_000_000_250, 1_700_000_001_750)
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, data)]), "e")
    (r,) = normalise.from_ipfix(m, "e")
    assert (r.src_ip, r.bytes, r.packets) == ("2001:db8::5", 5000, 5)
    assert (r.start, r.end) == (1_700_000_000.25, 1_700_000_001.75)


def test_ipfix_counters_and_times_past_64_bits_are_not_believed():
    """A hostile exporter's 9-byte counter or 200-byte time is no count / time (a sum or a
    rate made of it would overflow float: `weft traffic flows` failed on one)."""
    tpl = fx.ipfix_template(256, [(8, 4), (12, 4), (1, 9), (2, 8), (152, 200)])
    rec = (fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2") + b"\xff" * 9
           + struct.pack("!Q", (1 << 64) - 1) + b"\xff" * 200)
    msg = IpfixDecoder().decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, rec)]),
                                "192.0.2.1")
    (r,) = normalise.from_ipfix(msg, "192.0.2.1")
    assert (r.bytes, r.packets, r.start) == (0, (1 << 64) - 1, None)
    assert r.src_ip == "10.0.0.1"
