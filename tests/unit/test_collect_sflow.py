"""sFlow v5 decoder: datagram header, every sample and record type, skipping, malformed input."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import sflow  # noqa: E402
from collectors.errors import MalformedDatagram  # noqa: E402


def one_flow_sample(*records, **kw) -> sflow.FlowSample:
    dg = sflow.decode(fx.sflow_datagram([fx.sflow_flow_sample(list(records), **kw)]))
    assert len(dg.samples) == 1
    return dg.samples[0]


# ------------------------------------------------------------------ hand-written hex fixture


def test_hand_written_fixture_decodes_field_by_field():
    dg = sflow.decode(fx.load_hex("sflow_vxlan_flow_sample.hex"))
    assert (dg.version, dg.agent, dg.sub_agent_id, dg.sequence, dg.uptime_ms) == (
        5, "192.0.2.1", 0, 42, 120000)
    assert len(dg.samples) == 2
    fs, unknown = dg.samples
    assert isinstance(fs, sflow.FlowSample) and not fs.expanded
    assert (fs.sequence, fs.source_id_type, fs.source_id_index) == (7, 0, 5)
    assert (fs.sampling_rate, fs.sample_pool, fs.drops) == (512, 5120, 0)
    assert fs.input_ifindex == 5
    assert fs.output_format == 0 and fs.output_value == 0x3FFFFFFF
    assert fs.output_ifindex is None  # internal to the agent
    raw, vni, unk = fs.records
    assert isinstance(raw, sflow.RawPacketHeader)
    assert (raw.protocol, raw.frame_length, raw.stripped, len(raw.header)) == (1, 150, 4, 104)
    assert raw.header[:6] == bytes.fromhex("020000000002")
    assert raw.header[-4:] == b"\0\0\0\0"
    assert vni == sflow.ExtendedVni(egress=False, vni=5001)
    assert unk == sflow.UnknownRecord(4300, 7, bytes.fromhex("deadbeefcafebabe"))
    assert unknown == sflow.UnknownSample(4413, 1, b"\x01\x02\x03\x04")


def test_every_truncation_of_fixture_is_malformed():
    data = fx.load_hex("sflow_vxlan_flow_sample.hex")
    for cut in range(len(data)):
        with pytest.raises(MalformedDatagram):
            sflow.decode(data[:cut])


def test_accepts_bytearray_and_memoryview():
    data = fx.load_hex("sflow_vxlan_flow_sample.hex")
    assert sflow.decode(bytearray(data)) == sflow.decode(data)
    assert sflow.decode(memoryview(data)) == sflow.decode(data)


# ------------------------------------------------------------------ datagram header


def test_ipv6_agent_and_sub_agent():
    data = fx.sflow_datagram([], agent="2001:db8::10", sub_agent=3, seq=99, uptime=5)
    dg = sflow.decode(data)
    assert dg.agent == "2001:db8::10"
    assert (dg.sub_agent_id, dg.sequence, dg.uptime_ms, dg.samples) == (3, 99, 5, [])


def test_unknown_agent_address_type_zero():
    dg = sflow.decode(fx.sflow_datagram([], agent=None, seq=7))
    assert dg.agent is None and dg.sequence == 7


@pytest.mark.parametrize("atype", [3, 0xFFFFFFFF])
def test_bad_agent_address_type(atype):
    data = struct.pack("!II", 5, atype) + b"\0" * 40
    with pytest.raises(MalformedDatagram, match="address type"):
        sflow.decode(data)


@pytest.mark.parametrize("version", [2, 4, 6, 0x05000000])
def test_other_versions_rejected(version):
    data = struct.pack("!I", version) + fx.sflow_datagram([])[4:]
    with pytest.raises(MalformedDatagram, match="version"):
        sflow.decode(data)


def test_sample_count_larger_than_datagram_can_hold():
    data = fx.sflow_datagram([fx.sflow_counter_sample([])], nsamples=0x7FFFFFFF)
    with pytest.raises(MalformedDatagram, match="sample count"):
        sflow.decode(data)


def test_sample_length_beyond_datagram():
    sample = fx.sflow_counter_sample([])
    bad = sample[:4] + struct.pack("!I", 4000) + sample[8:]
    with pytest.raises(MalformedDatagram, match="sample length"):
        sflow.decode(fx.sflow_datagram([bad]))


def test_not_bytes_is_malformed():
    with pytest.raises(MalformedDatagram):
        sflow.decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(MalformedDatagram):
        sflow.decode(12345)  # type: ignore[arg-type]


# ------------------------------------------------------------------ flow samples


def test_compact_flow_sample_interface_encodings():
    s = one_flow_sample(fx.rec_ipv4(), source=(1, 0xABCDEF), inp=(1, 258), out=(2, 3))
    assert (s.source_id_type, s.source_id_index) == (1, 0xABCDEF)
    assert (s.input_format, s.input_value, s.input_ifindex) == (1, 258, None)  # discarded
    assert (s.output_format, s.output_value, s.output_ifindex) == (2, 3, None)  # multiple
    s = one_flow_sample(fx.rec_ipv4(), inp=(0, 0x3FFFFFFE), out=(0, 0x3FFFFFFF))
    assert s.input_ifindex == 0x3FFFFFFE and s.output_ifindex is None


def test_expanded_flow_sample():
    s = one_flow_sample(fx.rec_switch(), expanded=True, seq=77, source=(2, 0x12345678),
                        rate=1000, pool=99_000, drops=5, inp=(0, 0x40000001),
                        out=(0, 0xFFFFFFFF))
    assert s.expanded
    assert (s.sequence, s.source_id_type, s.source_id_index) == (77, 2, 0x12345678)
    assert (s.sampling_rate, s.sample_pool, s.drops) == (1000, 99_000, 5)
    assert s.input_ifindex == 0x40000001  # > 30 bits: only expressible expanded
    assert s.output_ifindex is None  # 0xFFFFFFFF = internal in the expanded form
    assert s.records == [sflow.ExtendedSwitch(10, 0, 20, 3)]
    # 0x3FFFFFFF is an ordinary ifIndex in the expanded form
    s = one_flow_sample(expanded=True, inp=(0, 0x3FFFFFFF), out=(1, 7))
    assert s.input_ifindex == 0x3FFFFFFF and s.output_ifindex is None


def test_raw_header_with_unaligned_length_then_next_record():
    header = bytes(range(61))  # 61 bytes: 3 bytes of XDR padding follow
    s = one_flow_sample(fx.rec_raw_header(header, frame_length=1514, protocol=1, stripped=4),
                        fx.rec_vni(True, 42))
    raw, vni = s.records
    assert raw == sflow.RawPacketHeader(1, 1514, 4, header)
    assert vni == sflow.ExtendedVni(True, 42)


def test_ethernet_ipv4_ipv6_records():
    s = one_flow_sample(fx.rec_ethernet(1518, "00:11:22:33:44:55", "66:77:88:99:aa:bb", 0x86DD),
                        fx.rec_ipv4(84, 6, "10.9.8.7", "10.1.2.3", 2222, 22, 0x02, 0x10),
                        fx.rec_ipv6(104, 17, "2001:db8::a", "2001:db8::b", 5000, 53, 0, 5))
    assert s.records == [
        sflow.EthernetFrameData(1518, "00:11:22:33:44:55", "66:77:88:99:aa:bb", 0x86DD),
        sflow.IPv4Data(84, 6, "10.9.8.7", "10.1.2.3", 2222, 22, 0x02, 0x10),
        sflow.IPv6Data(104, 17, "2001:db8::a", "2001:db8::b", 5000, 53, 0, 5),
    ]


def test_extended_switch_and_router_records():
    s = one_flow_sample(fx.rec_switch(100, 1, 200, 2), fx.rec_router("192.0.2.254", 24, 16),
                        fx.rec_router("2001:db8::1", 64, 48), fx.rec_router(None, 0, 0))
    assert s.records == [
        sflow.ExtendedSwitch(100, 1, 200, 2),
        sflow.ExtendedRouter("192.0.2.254", 24, 16),
        sflow.ExtendedRouter("2001:db8::1", 64, 48),
        sflow.ExtendedRouter(None, 0, 0),
    ]


def test_ovs_tunnel_records():
    s = one_flow_sample(fx.rec_tunnel4(True, "172.16.0.1", "172.16.0.9", 17, 50000, 4789),
                        fx.rec_tunnel4(False, "172.16.0.9", "172.16.0.1", 47, 0, 0),
                        fx.rec_vni(True, 0xFFFFFF), fx.rec_vni(False, 7))
    egress, ingress, vni_out, vni_in = s.records
    assert egress == sflow.ExtendedIPv4Tunnel(True, 0, 17, "172.16.0.1", "172.16.0.9",
                                              50000, 4789, 0, 0)
    assert ingress.egress is False and ingress.protocol == 47 and ingress.src_ip == "172.16.0.9"
    assert vni_out == sflow.ExtendedVni(True, 0xFFFFFF)
    assert vni_in == sflow.ExtendedVni(False, 7)


def test_unknown_records_skipped_by_length():
    odd = fx.sflow_tagged(1999, b"\x01\x02\x03\x04\x05")  # unknown standard format, padded
    vendor = fx.sflow_tagged(3, b"\xff" * 12, enterprise=8800)  # vendor's format 3 != IPv4 data
    s = one_flow_sample(odd, fx.rec_vni(False, 9), vendor, fx.rec_switch())
    assert s.records == [
        sflow.UnknownRecord(0, 1999, b"\x01\x02\x03\x04\x05"),
        sflow.ExtendedVni(False, 9),
        sflow.UnknownRecord(8800, 3, b"\xff" * 12),
        sflow.ExtendedSwitch(10, 0, 20, 3),
    ]


def test_unknown_sample_types_skipped_by_length():
    samples = [fx.sflow_tagged(5, b"\0" * 20), fx.sflow_flow_sample([fx.rec_vni(True, 1)]),
               fx.sflow_tagged(1, b"xyz", enterprise=4413),
               fx.sflow_counter_sample([fx.rec_eth_counters()])]
    dg = sflow.decode(fx.sflow_datagram(samples))
    kinds = [type(s) for s in dg.samples]
    assert kinds == [sflow.UnknownSample, sflow.FlowSample, sflow.UnknownSample,
                     sflow.CounterSample]
    assert dg.samples[2] == sflow.UnknownSample(4413, 1, b"xyz")


def test_record_count_larger_than_sample_can_hold():
    sample = fx.sflow_flow_sample([fx.rec_vni(True, 1)])
    body = bytearray(sample)
    struct.pack_into("!I", body, 8 + 28, 1_000_000)  # record count field of the sample
    with pytest.raises(MalformedDatagram, match="record count"):
        sflow.decode(fx.sflow_datagram([bytes(body)]))


def test_record_length_beyond_sample():
    rec = bytearray(fx.rec_vni(True, 1))
    struct.pack_into("!I", rec, 4, 64)
    with pytest.raises(MalformedDatagram, match="record length"):
        sflow.decode(fx.sflow_datagram([fx.sflow_flow_sample([bytes(rec)])]))


def test_raw_header_length_beyond_record():
    rec = bytearray(fx.rec_raw_header(b"\xaa" * 16))
    struct.pack_into("!I", rec, 8 + 12, 17)  # header length 17 > 16 bytes present
    with pytest.raises(MalformedDatagram, match="raw header length"):
        sflow.decode(fx.sflow_datagram([fx.sflow_flow_sample([bytes(rec)])]))


@pytest.mark.parametrize("fmt,size", [(1, 16), (2, 24), (3, 32), (4, 56), (1001, 16), (1002, 12),
                                      (1023, 32), (1024, 32), (1029, 4), (1030, 4)])
def test_records_shorter_than_their_structure(fmt, size):
    rec = fx.sflow_tagged(fmt, b"\x00\x00\x00\x01" * ((size - 4) // 4))
    with pytest.raises(MalformedDatagram):
        sflow.decode(fx.sflow_datagram([fx.sflow_flow_sample([rec])]))


def test_longer_known_record_is_accepted():
    rec = fx.sflow_tagged(1029, struct.pack("!II", 5, 0xEEEEEEEE))  # vendor-extended VNI
    assert one_flow_sample(rec).records == [sflow.ExtendedVni(True, 5)]


# ------------------------------------------------------------------ counter samples


def test_counter_samples_compact_and_expanded():
    unknown = fx.sflow_tagged(1005, b"\x01" * 8)
    dg = sflow.decode(fx.sflow_datagram([
        fx.sflow_counter_sample([fx.rec_if_counters(), fx.rec_eth_counters(), unknown],
                                seq=11, source=(0, 7)),
        fx.sflow_counter_sample([fx.rec_if_counters()], seq=12, source=(0, 0x7FFFFFFF),
                                expanded=True),
    ]))
    c1, c2 = dg.samples
    assert isinstance(c1, sflow.CounterSample) and not c1.expanded
    assert (c1.sequence, c1.source_id_type, c1.source_id_index) == (11, 0, 7)
    ifc, ethc, unk = c1.records
    assert ifc == sflow.GenericInterfaceCounters(*fx.IF_COUNTER_VALUES)
    assert ifc.if_speed == 10_000_000_000 and ifc.out_octets == 987654321098
    assert ethc == sflow.EthernetCounters(*fx.ETH_COUNTER_VALUES)
    assert ethc.symbol_errors == 13
    assert unk == sflow.UnknownRecord(0, 1005, b"\x01" * 8)
    assert c2.expanded and c2.source_id_index == 0x7FFFFFFF and c2.sequence == 12


def test_many_samples_in_one_datagram():
    samples = [fx.sflow_flow_sample([fx.rec_vni(True, i)], seq=i) for i in range(40)]
    dg = sflow.decode(fx.sflow_datagram(samples))
    assert [s.sequence for s in dg.samples] == list(range(40))
    assert [s.records[0].vni for s in dg.samples] == list(range(40))
