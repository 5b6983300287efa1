"""A packet-in read from its bytes (controller/ofpacketin.py) says what os-ken's parser says; a drop
sample read that way on the OpenFlow loop reaches the drop log (DropService.raw_packet_in), or, when
it is the datapath's stale answer for a NIC just brought up, goes back as a packet-out
(controller/replay.py)."""
import struct

import pytest
from os_ken.ofproto import ofproto_parser, ofproto_v1_4, ofproto_v1_4_parser

from collectors.drops import DropLog
from controller import ofpacketin
from controller.drop_service import DropService
from flows import pipeline as P
from tests.unit.test_drop_samples import Engine, cookie, frame
from tests.unit.test_flows_acl import PORTS, build

DATA = frame(PORTS["web1"][1], PORTS["db1"][1], PORTS["web1"][2], PORTS["db1"][2], dport=5432)


def packet_in(match_fields: dict, ck: int, table: int = P.EGRESS_ACL, data: bytes = DATA,
              version: int = ofproto_v1_4.OFP_VERSION, total_len: int | None = None) -> bytes:
    """A whole OpenFlow 1.4 packet-in as Open vSwitch sends it (match from os-ken's own serializer)."""
    buf = bytearray()
    length = ofproto_v1_4_parser.OFPMatch(**match_fields).serialize(buf, 0)
    total = len(data) if total_len is None else total_len
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, total, 1, table, ck) + bytes(buf[:length])
    body += b"\0" * (-length % 8) + b"\0\0" + data
    return struct.pack("!BBHI", version, ofpacketin.OFPT_PACKET_IN, 8 + len(body), 7) + body


class Dp:
    id = 1
    address = ("192.0.2.1", 6653)
    ofproto, ofproto_parser = ofproto_v1_4, ofproto_v1_4_parser

    def __init__(self):
        self.sent = []

    def send_msg(self, msg):
        msg.set_xid(1)
        msg.serialize()                 # what os-ken's Datapath.send_msg does before sending
        self.sent.append(msg)


def os_ken_view(msg: bytes):
    parsed = ofproto_parser.msg(Dp(), msg[0], msg[1], len(msg), 7, msg)
    return parsed.cookie, parsed.table_id, parsed.reason, dict(parsed.match.items()), bytes(parsed.data)


@pytest.mark.parametrize("fields", [
    {"in_port": 3, "reg6": 1000, "reg4": 7},
    {"in_port": 60000, "tunnel_id": 1000, "reg6": 1000, "eth_type": 0x800, "metadata": 5},
    {"in_port": 1},
])
def test_the_fields_weft_reads_match_os_kens_parse(fields):
    msg = packet_in(fields, cookie("security-group"))
    ck, table, reason, total, match, data = ofpacketin.parse(msg)
    ok_ck, ok_table, ok_reason, ok_match, ok_data = os_ken_view(msg)
    assert total == len(data) == len(DATA)
    assert (ck, table, reason, data) == (ok_ck, ok_table, ok_reason, ok_data)
    wanted = {k: v for k, v in ok_match.items() if k in ofpacketin.NAMES.values()}
    assert match == wanted and match, (match, ok_match)


def test_masked_and_unknown_fields_are_skipped_not_misread():
    msg = packet_in({"in_port": 2, "reg5": (0x10, 0xF0), "eth_dst": "02:00:00:00:00:01", "reg6": 9},
                    cookie("port-security"))
    assert ofpacketin.parse(msg).match == {"in_port": 2, "reg6": 9}


def test_truncated_messages_are_malformed():
    msg = packet_in({"in_port": 2, "reg6": 9}, cookie("port-security"))
    for cut in (10, 27, 40):
        with pytest.raises(ofpacketin.Malformed):
            ofpacketin.parse(msg[:cut])


class AdmittingEngine(Engine):
    def __init__(self, model, admitted=True):
        super().__init__(model)
        self.ok = admitted

    def admitted(self, datapath):
        return self.ok


def test_a_drop_sample_read_off_the_wire_is_logged_like_os_kens():
    model = build()
    log = DropLog()
    got = []
    log.subscribe(got.append)
    svc = DropService(AdmittingEngine(model), log)
    msg = packet_in({"in_port": 1, "reg6": 1000}, cookie("security-group"))
    assert svc.raw_packet_in(Dp(), msg) is True
    ck, table, _reason, match, data = os_ken_view(msg)
    expected = svc.sample(model, "hv1", ck, table, match, data, got[0].time)
    assert got == [expected] and expected.reason == "security-group" and expected.group, got
    assert svc.counters["packet_ins"] == 1


def test_other_packet_ins_and_old_versions_are_left_to_os_ken():
    svc = DropService(AdmittingEngine(build()), DropLog())
    dhcp = packet_in({"in_port": 1}, 0x0500000000000001)          # not a drop flow's cookie
    assert svc.raw_packet_in(Dp(), dhcp) is False
    old = packet_in({"in_port": 1, "reg6": 1000}, cookie("security-group"), version=1)
    assert svc.raw_packet_in(Dp(), old) is False
    assert svc.counters["packet_ins"] == 0


def test_samples_from_a_connection_not_admitted_are_taken_and_ignored():
    svc = DropService(AdmittingEngine(build(), admitted=False), DropLog())
    assert svc.raw_packet_in(Dp(), packet_in({"in_port": 1, "reg6": 1000}, cookie("security-group"))) is True
    assert svc.counters["packet_ins"] == 0


def test_an_unreadable_drop_sample_is_counted_not_raised():
    svc = DropService(AdmittingEngine(build()), DropLog())
    msg = packet_in({"in_port": 1, "reg6": 1000}, cookie("security-group"))
    assert svc.raw_packet_in(Dp(), msg[:30]) is True
    assert svc.counters == {"packet_ins": 0, "unreadable": 1, "replayed": 0}


class FreshEngine(AdmittingEngine):
    """An engine that says hv1 committed the port-up of db1 (VNI 1000) just now."""

    def __init__(self, model):
        super().__init__(model)
        from controller.replay import Fresh
        self.fresh = {("hv1", bytes.fromhex(PORTS["db1"][1].replace(":", ""))): Fresh("db1", 1000, 0.0)}

    def fresh_port(self, host, mac):
        return self.fresh.get((host, mac))


def unknown_destination(**kw):
    return packet_in({"in_port": 60000, "tunnel_id": 1000, "reg6": 1000, "reg7": 1}, cookie("unknown-destination"),
                     table=P.L2_LOOKUP, **kw)


def test_a_stale_drop_for_a_nic_just_up_goes_back_as_a_packet_out_from_its_table():
    got = []
    log = DropLog()
    log.subscribe(got.append)
    svc = DropService(FreshEngine(build()), log)
    dp = Dp()
    msg = unknown_destination()
    table = ofpacketin.parse(msg).table_id
    assert svc.raw_packet_in(dp, msg) is True
    assert svc.counters["replayed"] == 1 and got == []           # delivered late, not a drop
    (out,) = dp.sent
    assert (out.in_port, out.data) == (60000, DATA)
    sets = {a.key: a.value for a in out.actions if isinstance(a, ofproto_v1_4_parser.OFPActionSetField)}
    assert sets == {"reg6": 1000, "reg7": 1, "tunnel_id": 1000, P.REG_REPLAYED: 1}
    resubmit = out.actions[-1]
    assert (type(resubmit).__name__, resubmit.in_port, resubmit.table_id) == ("NXActionResubmitTable", 0xFFF8, table)


@pytest.mark.parametrize("why, msg", [
    ("another reason", packet_in({"in_port": 60000, "reg6": 1000}, cookie("security-group"))),
    ("another network", packet_in({"in_port": 60000, "reg6": 2000}, cookie("unknown-destination"))),
    ("a truncated sample", unknown_destination(total_len=len(DATA) + 1400)),
    ("a packet sent back once already", packet_in({"in_port": 60000, "reg6": 1000, P.REG_REPLAYED: 1},
                                                  cookie("unknown-destination"), table=P.L2_LOOKUP)),
    ("another MAC", packet_in({"in_port": 60000, "reg6": 1000}, cookie("unknown-destination"),
                              data=frame(PORTS["web1"][1], PORTS["web2"][1], PORTS["web1"][2], PORTS["web2"][2]))),
])
def test_other_drops_are_samples_as_before(why, msg):
    svc = DropService(FreshEngine(build()), DropLog())
    dp = Dp()
    assert svc.raw_packet_in(dp, msg) is True
    assert (dp.sent, svc.counters["replayed"], svc.counters["packet_ins"]) == ([], 0, 1), why


def test_fresh_nics_lapse_and_a_hosts_expired_entries_are_dropped(monkeypatch):
    from controller import replay
    fresh = replay.FreshNics()
    fresh.mark("hv1", "fa:16:3e:00:00:01", "a", 7)
    mac = bytes.fromhex("fa163e000001")
    assert fresh.get("hv1", mac) == replay.Fresh("a", 7, fresh.get("hv1", mac).since)
    assert fresh.get("hv2", mac) is None
    monkeypatch.setattr(replay, "FRESH_S", 0.0)
    assert fresh.get("hv1", mac) is None
    for i in range(replay.FreshNics.PRUNE_AT + 1):
        fresh.mark("hv1", f"fa:16:3e:00:01:{i:02x}", f"p{i}", 7)
    assert len(fresh._by_host["hv1"]) <= replay.FreshNics.PRUNE_AT, "expired entries dropped"
    fresh.mark("hv1", "fa:16:3e:00:00:02", "b", 7)
    fresh.unmark("hv1", "b")
    fresh.unmark("hv2", "b")
    assert fresh.get("hv1", bytes.fromhex("fa163e000002")) is None, "its NIC left the host"
    fresh.forget("hv1")
    assert "hv1" not in fresh._by_host


class ParkingEngine(AdmittingEngine):
    """db1's NIC parked on hv1 (its port bound there, not numbered), with the real FreshNics."""

    def __init__(self, parked_on="hv1", ofport=None):
        import dataclasses

        from controller.replay import FreshNics
        from flows.compiler import PENDING
        from topology.model import Binding
        model = build()
        bindings = dict(model.bindings)
        bindings["db1"] = Binding("db1", parked_on, PENDING if ofport is None else ofport)
        super().__init__(dataclasses.replace(model, bindings=bindings))
        self.fresh = FreshNics()

    def fresh_port(self, host, mac):
        return self.fresh.get(host, mac)

    def hold(self, host, mac, vni, data, wire):
        return self.fresh.hold(host, mac, vni, data, wire)


def test_what_a_parked_nics_host_drops_for_it_is_held_and_handed_over_when_its_bundle_goes():
    from controller import replay
    engine = ParkingEngine()
    got = []
    log = DropLog()
    log.subscribe(got.append)
    svc = DropService(engine, log)
    dp = Dp()
    msg = unknown_destination()
    assert svc.raw_packet_in(dp, msg) is True
    assert dp.sent == [] and len(got) == 1, "held, and still a drop sample: the switch dropped it"
    assert engine.fresh.counters == {"held": 1, "released": 0}
    (held,) = engine.fresh.mark("hv1", PORTS["db1"][1], "db1", 1000)
    pin = ofpacketin.parse(msg)
    assert held.vni == 1000
    assert held.wire == replay.encode(dp, pin.table_id, pin.match, DATA), "its packet-out, encoded"
    assert engine.fresh.counters == {"held": 1, "released": 1}
    assert engine.fresh.mark("hv1", PORTS["db1"][1], "db1", 1000) == [], "handed over once"
    assert svc.raw_packet_in(dp, msg) is True and len(dp.sent) == 1, "fresh now: sent back at once"
    assert svc.counters["replayed"] == 1


@pytest.mark.parametrize("why, engine, msg", [
    ("parked on another host", lambda: ParkingEngine("hv2"), unknown_destination()),
    ("its NIC is numbered (the drop is its flows' answer)", lambda: ParkingEngine(ofport=3), unknown_destination()),
    ("another reason", ParkingEngine,
     packet_in({"in_port": 60000, "reg6": 1000}, cookie("security-group"), table=P.L2_LOOKUP)),
    ("a truncated sample", ParkingEngine, unknown_destination(total_len=len(DATA) + 1400)),
    ("sent back once already", ParkingEngine,
     packet_in({"in_port": 60000, "reg6": 1000, P.REG_REPLAYED: 1}, cookie("unknown-destination"), table=P.L2_LOOKUP)),
])
def test_other_drops_are_not_held(why, engine, msg):
    eng = engine()
    svc = DropService(eng, DropLog())
    assert svc.raw_packet_in(Dp(), msg) is True
    assert eng.fresh.counters["held"] == 0, why


def test_holding_is_bounded_and_lapses(monkeypatch):
    from controller import replay
    fresh = replay.FreshNics()
    mac = bytes.fromhex(PORTS["db1"][1].replace(":", ""))
    def from_sender(n):             # web1 to db1, TCP to port 40000 + n
        return frame(PORTS["web1"][1], PORTS["db1"][1], PORTS["web1"][2], PORTS["db1"][2], dport=40000 + n)
    for i in range(replay.HOLD_PER_NIC + 5):
        assert fresh.hold("hv1", mac, 1000, from_sender(i), str(i).encode())
    fresh.hold("hv1", mac, 1000, from_sender(7), b"again")                      # a retry
    held = fresh.mark("hv1", PORTS["db1"][1], "db1", 1000)
    assert [h.wire for h in held] == [str(n).encode() for n in range(5, replay.HOLD_PER_NIC + 5) if n != 7] \
        + [b"again"], "each of the latest senders' latest packet"
    for i in range(replay.HOLD_NICS):
        assert fresh.hold("hv2", i.to_bytes(6, "big"), 1000, b"x", b"w")
    assert not fresh.hold("hv2", b"\xff" * 6, 1000, b"x", b"w"), "a host holds for so many NICs"
    fresh.hold("hv3", mac, 2000, b"x", b"w")
    assert fresh.mark("hv3", PORTS["db1"][1], "db1", 1000) == [], "held in another network"
    fresh.hold("hv3", mac, 1000, b"x", b"w")
    monkeypatch.setattr(replay, "HOLD_S", 0.0)
    assert fresh.mark("hv3", PORTS["db1"][1], "db1", 1000) == [], "too old"
    assert fresh.hold("hv2", b"\xff" * 6, 1000, b"x", b"w"), "expired NICs make room"
    fresh.forget("hv2")
    assert "hv2" not in fresh._held


def test_a_sender_is_its_address_and_ports_or_its_echo_id():
    from controller.replay import sender
    web1, db1 = PORTS["web1"], PORTS["db1"]
    tcp = lambda **kw: frame(web1[1], db1[1], web1[2], db1[2], **kw)    # noqa: E731
    assert sender(tcp(dport=1000)) == sender(tcp(dport=1000))
    assert sender(tcp(dport=1000)) != sender(tcp(dport=1001))
    assert sender(tcp(dport=1000)) != sender(frame(web1[1], db1[1], "10.0.0.99", db1[2], dport=1000))
    echo = lambda ident, seq: bytes.fromhex(db1[1].replace(":", "") + web1[1].replace(":", "")) + \
        b"\x08\x00" + bytes([0x45]) + bytes(8) + b"\x01" + bytes(2) + bytes([10, 0, 0, 11]) + \
        bytes([10, 0, 0, 31]) + b"\x08\x00\x00\x00" + ident + seq     # noqa: E731
    assert sender(echo(b"\x00\x07", b"\x00\x01")) == sender(echo(b"\x00\x07", b"\x00\x02")), "one pinger"
    assert sender(echo(b"\x00\x07", b"\x00\x01")) != sender(echo(b"\x00\x08", b"\x00\x01")), "two"
    arp = bytes(6) + bytes.fromhex(web1[1].replace(":", "")) + b"\x08\x06" + bytes(28)
    assert sender(arp) == bytes.fromhex(web1[1].replace(":", "")) + b"\x08\x06"


def test_all_hosts_together_hold_for_so_many_nics_the_longest_held_making_room(monkeypatch):
    from controller import replay
    monkeypatch.setattr(replay, "HOLD_TOTAL", 3)
    fresh = replay.FreshNics()
    mac = bytes.fromhex(PORTS["db1"][1].replace(":", ""))
    for host in ("hv1", "hv2", "hv3", "hv4"):
        assert fresh.hold(host, mac, 1000, b"x", b"w")
    assert sorted(fresh._held) == ["hv2", "hv3", "hv4"] and len(fresh._held_order) == 3
    assert fresh.mark("hv1", PORTS["db1"][1], "db1", 1000) == [], "made room"
    assert len(fresh.mark("hv4", PORTS["db1"][1], "db1", 1000)) == 1
    assert sorted(fresh._held) == ["hv2", "hv3"] and len(fresh._held_order) == 2
    monkeypatch.setattr(replay, "HOLD_TOTAL", 1)
    one = replay.FreshNics()
    assert one.hold("hv1", bytes(6), 1000, b"x", b"w")
    assert one.hold("hv1", mac, 1000, b"x", b"w")     # the host's only other NIC makes room
    assert len(one.mark("hv1", PORTS["db1"][1], "db1", 1000)) == 1
