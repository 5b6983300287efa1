"""IPFIX decoder: enterprise and variable-length fields, options templates, withdrawal, expiry."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors.errors import MalformedDatagram  # noqa: E402
from collectors.ipfix import IpfixDecoder  # noqa: E402
from collectors.templates import TemplateCache  # noqa: E402

EXP = "192.0.2.60"
VM = fx.VMWARE


class Clock:
    def __init__(self, t: float = 500.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def decoder(**cache_kw):
    clock = Clock()
    return IpfixDecoder(TemplateCache(**cache_kw), clock=clock), clock


def test_hand_written_fixture():
    dec, _ = decoder()
    m = dec.decode(fx.load_hex("ipfix_ovs_tunnel.hex"), EXP)
    assert (m.version, m.length, m.export_time, m.sequence, m.domain) == (10, 104, 1_700_000_000, 0, 1)
    assert m.templates == [256]
    assert m.data_sets[0].records == [{
        "sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "10.0.0.2",
        "protocolIdentifier": 6, "tunnel_type": 1, "tunnel_key": 5001,
        "tunnel_source_ipv4_address": "172.16.0.1", "packetDeltaCount": 4096,
        "flowStartDeltaMicroseconds": 2_000_000}]
    assert m.data_records == 1


def test_every_truncation_of_fixture_is_malformed():
    data = fx.load_hex("ipfix_ovs_tunnel.hex")
    for cut in range(len(data)):
        dec, _ = decoder()
        with pytest.raises(MalformedDatagram):
            dec.decode(data[:cut], EXP)


def test_ovs_like_template_with_all_vmware_fields():
    dec, _ = decoder()
    msg = fx.ipfix_message([
        fx.ipfix_set(2, fx.ipfix_template(300, fx.OVS_TEMPLATE_FIELDS)),
        fx.ipfix_set(300, fx.ovs_data_record(vni=0xABCDEF) + fx.ovs_data_record(vni=1)),
    ], seq=7, domain=9)
    m = dec.decode(msg, EXP)
    r0, r1 = m.data_sets[0].records
    assert r0 == {
        "sourceMacAddress": "52:54:00:00:00:01", "destinationMacAddress": "52:54:00:00:00:02",
        "ethernetType": 0x0800, "vlanId": 0, "protocolIdentifier": 6,
        "sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "10.0.0.2",
        "sourceTransportPort": 33000, "destinationTransportPort": 80,
        "tunnel_source_ipv4_address": "172.16.0.1", "tunnel_destination_ipv4_address": "172.16.0.2",
        "tunnel_protocol_identifier": 17, "tunnel_source_transport_port": 49152,
        "tunnel_destination_transport_port": 4789, "tunnel_type": 1, "tunnel_key": 0xABCDEF,
        "flowStartDeltaMicroseconds": 2_000_000, "flowEndDeltaMicroseconds": 500_000,
        "packetDeltaCount": 4096, "layer2OctetDeltaCount": 4_096_000,
        "octetDeltaCount": 4096 * 986, "flowEndReason": 2, "ingressInterface": 7,
        "egressInterface": 9,
    }
    assert r1["tunnel_key"] == 1 and m.data_sets[0].domain == 9


def test_variable_length_one_and_three_byte_prefixes_and_padding():
    dec, _ = decoder()
    tpl = fx.ipfix_template(256, [(4, 1), (999, 0xFFFF), (892, 0xFFFF, VM), (7, 2)])
    long_value = bytes(range(256)) * 2  # 512 bytes: needs the 3-byte form
    recs = (struct.pack("!B", 6) + fx.varlen(b"abc") + fx.varlen(b"\x00\x00\x00\x00\x00\x00\x00\x2a") + struct.pack("!H", 1)
            + struct.pack("!B", 17) + fx.varlen(long_value) + fx.varlen(b"\x01\x02\x03", long_form=True) + struct.pack("!H", 2)
            + struct.pack("!B", 1) + fx.varlen(b"") + fx.varlen(b"") + struct.pack("!H", 3))
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, recs, pad=3)]), EXP)
    r = m.data_sets[0].records
    assert r[0] == {"protocolIdentifier": 6, "ie_999": b"abc", "tunnel_key": 42, "sourceTransportPort": 1}
    assert r[1] == {"protocolIdentifier": 17, "ie_999": long_value, "tunnel_key": 0x010203,
                    "sourceTransportPort": 2}
    assert r[2] == {"protocolIdentifier": 1, "ie_999": b"", "tunnel_key": 0, "sourceTransportPort": 3}
    assert len(r) == 3  # the 3 zero bytes of padding are not a record


def test_variable_length_overrunning_the_set_is_malformed():
    dec, _ = decoder()
    tpl = fx.ipfix_template(256, [(999, 0xFFFF)])
    with pytest.raises(MalformedDatagram, match="overruns"):
        dec.decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, b"\x09abc")]), EXP)
    with pytest.raises(MalformedDatagram, match="overruns"):
        dec.decode(fx.ipfix_message([fx.ipfix_set(256, b"\xff\x00")]), EXP)


def test_unknown_enterprise_and_standard_elements_stay_raw():
    dec, _ = decoder()
    tpl = fx.ipfix_template(256, [(1, 4, 9), (891, 2, 6876), (891, 2, 1234), (33000 & 0x7FFF, 2)])
    data = b"\x01\x02\x03\x04" + b"\x00\x07" + b"\x00\x08" + b"\xaa\xbb"
    (r,) = dec.decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, data)]), EXP).data_sets[0].records
    assert r == {"ent9_1": b"\x01\x02\x03\x04", "tunnel_type": 7, "ent1234_891": b"\x00\x08",
                 f"ie_{33000 & 0x7FFF}": b"\xaa\xbb"}


def test_ipv6_and_float_and_padding_octets():
    dec, _ = decoder()
    tpl = fx.ipfix_template(256, [(27, 16), (28, 16), (210, 3), (311, 8), (62, 4)])
    data = fx.ip6("2001:db8::1") + fx.ip6("fe80::2") + b"\0\0\0" + struct.pack("!d", 0.25) + b"\1\2\3\4"
    (r,) = dec.decode(fx.ipfix_message([fx.ipfix_set(2, tpl), fx.ipfix_set(256, data)]), EXP).data_sets[0].records
    assert r == {"sourceIPv6Address": "2001:db8::1", "destinationIPv6Address": "fe80::2",
                 "samplingProbability": 0.25, "ipNextHopIPv6Address": b"\1\2\3\4"}


def test_options_template_sampling_and_exporter_stats():
    dec, _ = decoder()
    otpl = fx.ipfix_options_template(400, 1, [(149, 4), (305, 4), (306, 4), (304, 2), (41, 8)])
    data = struct.pack("!IIIHQ", 9, 1, 99, 1, 123)
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(3, otpl), fx.ipfix_set(400, data)], domain=9), EXP)
    assert m.options_templates == [400]
    (ds,) = m.data_sets
    assert ds.options
    assert ds.records == [{"observationDomainId": 9, "samplingPacketInterval": 1,
                           "samplingPacketSpace": 99, "selectorAlgorithm": 1,
                           "exportedMessageTotalCount": 123}]
    assert dec.cache.get((EXP, 9, 400), 500.0).scope_count == 1


def test_template_arriving_after_data():
    dec, clock = decoder()
    tpl = fx.ipfix_set(2, fx.ipfix_template(256, [(8, 4), (2, 8)]))
    data = fx.ipfix_set(256, fx.ip4("10.1.1.1") + struct.pack("!Q", 77))
    m1 = dec.decode(fx.ipfix_message([data], export_time=111), EXP)
    assert m1.pending_sets == 1 and m1.data_sets == []
    clock.t += 30
    m2 = dec.decode(fx.ipfix_message([tpl], export_time=222), EXP)
    (ds,) = m2.data_sets
    assert ds.late and ds.export_time == 111
    assert ds.records == [{"sourceIPv4Address": "10.1.1.1", "packetDeltaCount": 77}]
    # in one message: data set first, template set after it
    dec2, _ = decoder()
    m = dec2.decode(fx.ipfix_message([data, tpl]), EXP)
    assert m.pending_sets == 1 and m.data_sets[0].late and m.data_sets[0].records[0]["packetDeltaCount"] == 77


def test_held_set_not_fitting_its_template_is_counted_not_raised():
    dec, _ = decoder()
    dec.decode(fx.ipfix_message([fx.ipfix_set(256, b"\x09abc")]), EXP)
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(256, [(999, 0xFFFF)]))]), EXP)
    assert m.late_malformed == 1 and m.data_sets == []


def test_withdrawal_of_one_template():
    dec, _ = decoder()
    tpl = fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]) + fx.ipfix_template(257, [(1, 8)]))
    dec.decode(fx.ipfix_message([tpl]), EXP)
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_withdrawal(256))]), EXP)
    assert m.withdrawn == [256] and dec.cache.count(EXP) == 1
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(256, b"\0" * 8), fx.ipfix_set(257, b"\0" * 8)]), EXP)
    assert m.pending_sets == 1 and [ds.template_id for ds in m.data_sets] == [257]


def test_withdraw_all_data_templates_keeps_options_templates_and_other_domains():
    dec, _ = decoder()
    tpls = fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]) + fx.ipfix_template(257, [(1, 8)]))
    otpl = fx.ipfix_set(3, fx.ipfix_options_template(258, 1, [(149, 4), (34, 4)]))
    dec.decode(fx.ipfix_message([tpls, otpl], domain=1), EXP)
    dec.decode(fx.ipfix_message([tpls], domain=2), EXP)
    assert dec.cache.count(EXP) == 5
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_withdrawal(2))], domain=1), EXP)
    assert m.withdrawn == [2] and dec.cache.count(EXP) == 3
    assert dec.cache.get((EXP, 1, 258), 500.0) is not None
    assert dec.cache.get((EXP, 2, 256), 500.0) is not None
    dec.decode(fx.ipfix_message([fx.ipfix_set(3, fx.ipfix_withdrawal(3))], domain=1), EXP)
    assert dec.cache.get((EXP, 1, 258), 500.0) is None and dec.cache.count(EXP) == 2


def test_options_template_withdrawal_of_one():
    dec, _ = decoder()
    dec.decode(fx.ipfix_message([fx.ipfix_set(3, fx.ipfix_options_template(258, 1, [(149, 4)]))]), EXP)
    dec.decode(fx.ipfix_message([fx.ipfix_set(3, fx.ipfix_withdrawal(258) + b"\0\0")]), EXP)
    assert dec.cache.count(EXP) == 0


def test_template_expiry_via_sweep_and_refresh():
    dec, clock = decoder(timeout=60.0)
    tpl = fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]) + fx.ipfix_template(257, [(1, 8)]))])
    dec.decode(tpl, EXP)
    clock.t += 50
    dec.decode(fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(257, [(1, 8)]))]), EXP)  # refresh 257
    clock.t += 20
    assert dec.cache.expire(clock.t) == 1  # 256 is 70 s old, 257 is 20 s old
    assert dec.cache.count(EXP) == 1
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(256, b"\0" * 8), fx.ipfix_set(257, b"\0" * 8)]), EXP)
    assert m.pending_sets == 1 and len(m.data_sets) == 1


def test_trailing_bytes_after_message_length_are_ignored():
    dec, _ = decoder()
    data = fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]))])
    assert dec.decode(data + b"\xde\xad", EXP).templates == [256]


@pytest.mark.parametrize("sets,reason", [
    ([struct.pack("!HH", 256, 3)], "set length"),
    ([struct.pack("!HH", 256, 44) + b"\0" * 4], "exceeds message"),
    ([b"\0\2"], "truncated set header"),
    ([fx.ipfix_set(2, struct.pack("!HH", 255, 1) + b"\0\1\0\4")], "template id"),
    ([fx.ipfix_set(2, struct.pack("!HH", 256, 3) + b"\0\1\0\4")], "exceed"),
    ([fx.ipfix_set(2, struct.pack("!HHHH", 256, 1, 0x8001, 4) + b"\0\0")], "enterprise"),
    ([fx.ipfix_set(2, struct.pack("!HH", 256, 2) + b"\0\1\0\0\0\2\0\0")], "zero-length"),
    ([fx.ipfix_set(3, fx.ipfix_options_template(256, 0, [(1, 4)]))], "scope"),
    ([fx.ipfix_set(3, fx.ipfix_options_template(256, 2, [(1, 4)]))], "scope"),
    ([fx.ipfix_set(3, struct.pack("!HH", 256, 1))], "options template header"),
    ([fx.ipfix_set(2, struct.pack("!HH", 7, 0))], "withdrawal"),
])
def test_malformed_sets(sets, reason):
    dec, _ = decoder()
    with pytest.raises(MalformedDatagram, match=reason):
        dec.decode(fx.ipfix_message(sets), EXP)


def test_header_problems():
    dec, _ = decoder()
    good = fx.ipfix_message([])
    with pytest.raises(MalformedDatagram, match="version"):
        dec.decode(b"\x00\x09" + good[2:], EXP)
    with pytest.raises(MalformedDatagram, match="< header"):
        dec.decode(good[:2] + b"\x00\x0f" + good[4:], EXP)
    with pytest.raises(MalformedDatagram, match="exceeds datagram"):
        dec.decode(good[:2] + b"\x00\x20" + good[4:], EXP)
    assert dec.decode(good, EXP).data_sets == []


def test_zero_padding_inside_template_set_is_ignored():
    dec, _ = decoder()
    m = dec.decode(fx.ipfix_message([fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]), pad=6)]), EXP)
    assert m.templates == [256] and m.withdrawn == []
