"""NetFlow v9 decoder: templates, options templates, data before template, refresh, expiry."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors.errors import MalformedDatagram  # noqa: E402
from collectors.netflow_v9 import NetflowV9Decoder  # noqa: E402
from collectors.templates import TemplateCache  # noqa: E402

EXP = "192.0.2.50"
# v9 field types: IN_BYTES 1 (reduced to 4 bytes), IN_PKTS 2, PROTOCOL 4, SRC_TOS 5,
# TCP_FLAGS 6 (1 byte in v9), L4_SRC_PORT 7, IPV4_SRC_ADDR 8, INPUT_SNMP 10 (2 bytes),
# L4_DST_PORT 11, IPV4_DST_ADDR 12, OUTPUT_SNMP 14, LAST_SWITCHED 21, FIRST_SWITCHED 22,
# IN_SRC_MAC 56, IN_DST_MAC 80, SRC_VLAN 58, DIRECTION 61.
T256 = [(1, 4), (2, 4), (4, 1), (5, 1), (6, 1), (7, 2), (8, 4), (10, 2), (11, 2), (12, 4),
        (14, 2), (21, 4), (22, 4), (56, 6), (80, 6), (58, 2), (61, 1)]


def rec256(octets=1500, packets=3, proto=6, sport=1024, dport=80, src="10.0.0.1",
           dst="10.0.0.2", first=90_000, last=99_000) -> bytes:
    return struct.pack("!IIBBBH4sHH4sHII6s6sHB", octets, packets, proto, 0x10, 0x1B, sport,
                       fx.ip4(src), 5, dport, fx.ip4(dst), 6, last, first,
                       fx.mac("aa:bb:cc:00:00:01"), fx.mac("aa:bb:cc:00:00:02"), 100, 1)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def decoder(**cache_kw):
    clock = Clock()
    return NetflowV9Decoder(TemplateCache(**cache_kw), clock=clock), clock


def test_template_and_data_in_one_packet():
    dec, _ = decoder()
    data = fx.v9_packet([fx.v9_template_flowset([(256, T256)]),
                         fx.v9_flowset(256, rec256() + rec256(octets=9, sport=5))],
                        seq=10, source_id=3, uptime=100_000, secs=1_700_000_000)
    p = dec.decode(data, EXP)
    assert (p.version, p.count, p.sys_uptime, p.unix_secs, p.sequence, p.source_id) == (
        9, 2, 100_000, 1_700_000_000, 10, 3)
    assert p.templates == [256] and p.pending_sets == 0
    (ds,) = p.data_sets
    assert (ds.template_id, ds.domain, ds.options, ds.late) == (256, 3, False, False)
    assert (ds.export_time, ds.sys_uptime) == (1_700_000_000, 100_000)
    r = ds.records[0]
    assert r == {
        "octetDeltaCount": 1500, "packetDeltaCount": 3, "protocolIdentifier": 6,
        "ipClassOfService": 0x10, "tcpControlBits": 0x1B, "sourceTransportPort": 1024,
        "sourceIPv4Address": "10.0.0.1", "ingressInterface": 5, "destinationTransportPort": 80,
        "destinationIPv4Address": "10.0.0.2", "egressInterface": 6, "flowEndSysUpTime": 99_000,
        "flowStartSysUpTime": 90_000, "sourceMacAddress": "aa:bb:cc:00:00:01",
        "destinationMacAddress": "aa:bb:cc:00:00:02", "vlanId": 100, "flowDirection": 1,
    }
    assert ds.records[1]["octetDeltaCount"] == 9 and ds.records[1]["sourceTransportPort"] == 5
    assert p.data_records == 2


def test_data_before_template_is_held_then_decoded_with_its_own_header():
    dec, clock = decoder()
    early = fx.v9_packet([fx.v9_flowset(256, rec256(octets=777))], seq=1, uptime=50_000,
                         secs=1_600_000_000)
    p1 = dec.decode(early, EXP)
    assert p1.pending_sets == 1 and p1.data_sets == []
    clock.t += 5
    p2 = dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, T256)])], seq=2), EXP)
    (ds,) = p2.data_sets
    assert ds.late and ds.records[0]["octetDeltaCount"] == 777
    assert (ds.export_time, ds.sys_uptime) == (1_600_000_000, 50_000)
    assert p2.data_records == 0  # late records belong to the earlier packet
    # nothing left held: a second template copy does not replay again
    assert dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, T256)])]), EXP).data_sets == []


def test_data_before_template_within_the_same_packet():
    dec, _ = decoder()
    p = dec.decode(fx.v9_packet([fx.v9_flowset(256, rec256()),
                                 fx.v9_template_flowset([(256, T256)])]), EXP)
    assert p.pending_sets == 1 and len(p.data_sets) == 1 and p.data_sets[0].late


def test_held_data_is_bounded_and_ages_out():
    dec, clock = decoder(pending_max_sets=3, pending_max_age=60.0)
    for i in range(5):
        dec.decode(fx.v9_packet([fx.v9_flowset(256, rec256(octets=i))]), EXP)
    assert dec.cache.pending_sets == 3 and dec.cache.pending_dropped == 2
    p = dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, T256)])]), EXP)
    assert [ds.records[0]["octetDeltaCount"] for ds in p.data_sets] == [2, 3, 4]
    # held for longer than the max age: dropped, not decoded
    dec.decode(fx.v9_packet([fx.v9_flowset(300, b"\x01\x02")]), EXP)
    clock.t += 61
    p = dec.decode(fx.v9_packet([fx.v9_template_flowset([(300, [(4, 1), (5, 1)])])]), EXP)
    assert p.data_sets == [] and dec.cache.pending_sets == 0


def test_options_template_and_options_data():
    dec, _ = decoder()
    otpl = fx.v9_options_template_flowset(260, scopes=[(1, 4), (2, 2)],
                                          options=[(34, 4), (35, 1), (48, 1)])
    data = fx.v9_flowset(260, struct.pack("!IHIBB", 0x0A000001, 7, 512, 2, 9))
    p = dec.decode(fx.v9_packet([otpl, data]), EXP)
    assert p.options_templates == [260]
    (ds,) = p.data_sets
    assert ds.options
    assert ds.records == [{"scope_system": 0x0A000001, "scope_interface": 7,
                           "samplingInterval": 512, "samplingAlgorithm": 2, "ie_48": b"\x09"}]


def test_template_refresh_replaces_definition():
    dec, _ = decoder()
    dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(2, 4)])])]), EXP)
    p = dec.decode(fx.v9_packet([fx.v9_flowset(256, struct.pack("!I", 5))]), EXP)
    assert p.data_sets[0].records == [{"packetDeltaCount": 5}]
    dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(1, 2), (2, 2)])])]), EXP)
    p = dec.decode(fx.v9_packet([fx.v9_flowset(256, struct.pack("!HH", 7, 8))]), EXP)
    assert p.data_sets[0].records == [{"octetDeltaCount": 7, "packetDeltaCount": 8}]


def test_template_expiry_and_refresh_timer():
    dec, clock = decoder(timeout=100.0)
    tpl = fx.v9_packet([fx.v9_template_flowset([(256, [(2, 4)])])])
    data = fx.v9_packet([fx.v9_flowset(256, struct.pack("!I", 1))])
    dec.decode(tpl, EXP)
    clock.t += 90
    dec.decode(tpl, EXP)  # refresh
    clock.t += 90
    assert len(dec.decode(data, EXP).data_sets) == 1  # 90 s since refresh: still valid
    clock.t += 11
    p = dec.decode(data, EXP)  # 101 s since refresh: expired, data held instead
    assert p.data_sets == [] and p.pending_sets == 1 and dec.cache.expired == 1
    assert dec.cache.count(EXP) == 0


def test_templates_keyed_by_exporter_and_source_id():
    dec, _ = decoder()
    dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(2, 4)])])], source_id=1), EXP)
    dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(4, 1)])])], source_id=2), EXP)
    dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(7, 2)])])], source_id=1), "198.51.100.1")
    body = b"\x00\x00\x00\x2a"
    assert dec.decode(fx.v9_packet([fx.v9_flowset(256, body)], source_id=1), EXP).data_sets[0].records == [
        {"packetDeltaCount": 42}]
    assert dec.decode(fx.v9_packet([fx.v9_flowset(256, body)], source_id=2), EXP).data_sets[0].records[0] == {
        "protocolIdentifier": 0}
    assert dec.decode(fx.v9_packet([fx.v9_flowset(256, body)], source_id=1), "198.51.100.1").data_sets[0].records == [
        {"sourceTransportPort": 0}, {"sourceTransportPort": 42}]
    assert dec.decode(fx.v9_packet([fx.v9_flowset(256, body)], source_id=9), EXP).pending_sets == 1
    assert dec.cache.count(EXP) == 2 and dec.cache.count("198.51.100.1") == 1


def test_padding_in_data_and_template_flowsets():
    dec, _ = decoder()
    tpl = fx.v9_template_flowset([(256, [(4, 1), (7, 2), (11, 2), (5, 1), (6, 1)])])  # 7-byte records
    tpl = tpl[:2] + struct.pack("!H", len(tpl) + 4) + tpl[4:] + b"\0" * 4  # 4 extra pad bytes
    rec = struct.pack("!BHHBB", 17, 53, 5353, 0, 0)
    data = fx.v9_flowset(256, rec * 3)  # 21 bytes + 3 padding
    p = dec.decode(fx.v9_packet([tpl, data]), EXP)
    assert len(p.data_sets[0].records) == 3
    assert p.data_sets[0].records[2]["destinationTransportPort"] == 5353


def test_unknown_and_vendor_field_types_and_repeated_fields():
    dec, _ = decoder()
    tpl = fx.v9_template_flowset([(256, [(40000, 3), (58, 2), (58, 2), (999, 2), (4, 0)])])
    data = fx.v9_flowset(256, b"\x01\x02\x03" + struct.pack("!HH", 10, 20) + b"\xbe\xef")
    (r,) = dec.decode(fx.v9_packet([tpl, data]), EXP).data_sets[0].records
    assert r == {"ie_40000": b"\x01\x02\x03", "vlanId": 10, "vlanId_2": 20, "ie_999": b"\xbe\xef",
                 "protocolIdentifier": 0}


def test_reduced_and_odd_size_integers():
    dec, _ = decoder()
    tpl = fx.v9_template_flowset([(256, [(1, 3), (2, 8), (10, 1), (8, 2)])])
    data = fx.v9_flowset(256, b"\x01\x00\x00" + struct.pack("!QB", 2**40, 3) + b"\x0a\x0b")
    (r,) = dec.decode(fx.v9_packet([tpl, data]), EXP).data_sets[0].records
    assert r == {"octetDeltaCount": 65536, "packetDeltaCount": 2**40, "ingressInterface": 3,
                 "sourceIPv4Address": b"\x0a\x0b"}  # an address of the wrong size stays raw


def test_reserved_flowset_ids_are_skipped():
    dec, _ = decoder()
    p = dec.decode(fx.v9_packet([fx.v9_flowset(2, b"\x01" * 8), fx.v9_flowset(255, b""),
                                 fx.v9_template_flowset([(256, [(2, 4)])])]), EXP)
    assert p.unknown_sets == 2 and p.templates == [256]


@pytest.mark.parametrize("flowsets,reason", [
    ([struct.pack("!HH", 256, 2)], "flowset length"),
    ([struct.pack("!HH", 256, 40) + b"\0" * 8], "exceeds datagram"),
    ([fx.v9_flowset(0, struct.pack("!HH", 100, 1) + b"\0\1\0\4")], "template id"),
    ([fx.v9_flowset(0, struct.pack("!HH", 256, 50) + b"\0\1\0\4")], "exceed"),
    ([fx.v9_flowset(0, struct.pack("!HH", 256, 0))], "no fields"),
    ([fx.v9_flowset(0, struct.pack("!HHHH", 256, 1, 2, 0))], "zero-length"),
    ([fx.v9_flowset(1, struct.pack("!HHH", 256, 3, 4) + b"\0" * 8)], "multiples of 4"),
    ([fx.v9_flowset(1, struct.pack("!HHH", 256, 4, 40) + b"\0" * 8)], "exceeds flowset"),
    ([fx.v9_flowset(1, struct.pack("!HHH", 256, 0, 0))], "no fields"),
])
def test_malformed_flowsets(flowsets, reason):
    dec, _ = decoder()
    with pytest.raises(MalformedDatagram, match=reason):
        dec.decode(fx.v9_packet(flowsets), EXP)


def test_header_problems():
    dec, _ = decoder()
    with pytest.raises(MalformedDatagram):
        dec.decode(b"\x00\x09" + b"\0" * 10, EXP)
    with pytest.raises(MalformedDatagram, match="v9"):
        dec.decode(struct.pack("!H", 5) + fx.v9_packet([])[2:], EXP)
    assert dec.decode(fx.v9_packet([]) + b"\0\0\0", EXP).data_sets == []  # < 4 trailing bytes


def test_held_set_shorter_than_a_record_decodes_to_nothing():
    dec, _ = decoder()
    dec.decode(fx.v9_packet([fx.v9_flowset(256, b"\x05\x06\x07", pad=False)]), EXP)
    p = dec.decode(fx.v9_packet([fx.v9_template_flowset([(256, [(2, 4)])])]), EXP)
    assert p.data_sets[0].late and p.data_sets[0].records == []  # 3 bytes < 4: padding
