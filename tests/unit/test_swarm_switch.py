"""The emulated switch: what weftd's bytes do to its table, and its answers as os-ken parses them."""
from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from os_ken.ofproto import ofproto_parser
    from os_ken.ofproto import ofproto_v1_4 as OFP

from controller import ofencode
from controller.wire import WireCache
from flows.flow import Flow
from lab import swarm_check
from lab import swarm_ofwire as W
from lab.swarm_switch import EmulatedSwitch

DPID = 0x7765000000000101


class Dp:
    ofproto = OFP


def flow(table=0, priority=100, in_port=1, goto=None, cookie=0x0100000001000001, meter=None):
    actions = ((("goto", goto),) if goto is not None else ()) + ((("meter", meter),) if meter else ())
    return Flow(table, priority, (("in_port", in_port),), actions, cookie)


def parse_all(data: list[bytes]):
    """Every message the switch sent, through os-ken's parsers."""
    out = []
    for raw in data:
        for _v, msg_type, xid, buf in W.Framer().feed(raw):
            out.append(ofproto_parser.msg(W.DP, OFP.OFP_VERSION, msg_type, len(buf), xid, buf))
    return out


@pytest.fixture
def sw():
    s = EmulatedSwitch(DPID)
    s.sent = []
    s.connected(s.sent.append)
    s.sent.clear()
    return s


def bundle(sw, bid, deletes=(), adds=(), first_xid=100):
    """The exact bytes weftd's driver writes for one bundle."""
    wire, items = WireCache(), [("delete", t, c) for t, c in deletes] + list(adds)
    buf = wire.bundle_ctrl(Dp, bid, OFP.OFPBCT_OPEN_REQUEST, first_xid)
    for i, item in enumerate(items):
        buf += wire.bundle_add(Dp, bid, item, first_xid + 1 + i)
    buf += wire.bundle_ctrl(Dp, bid, OFP.OFPBCT_COMMIT_REQUEST, first_xid + 1 + len(items))
    for _v, msg_type, xid, raw in W.Framer().feed(buf):
        sw.handle(msg_type, xid, raw)


def test_features_and_port_desc_parse_with_os_ken(sw):
    sw.add_port(3, "tap3", "fa:16:3e:00:00:03")
    sw.sent.clear()
    sw.handle(OFP.OFPT_FEATURES_REQUEST, 7, W.message(OFP.OFPT_FEATURES_REQUEST, 7, b""))
    req = W.MULTIPART.pack(OFP.OFPMP_PORT_DESC, 0)
    sw.handle(OFP.OFPT_MULTIPART_REQUEST, 8, W.message(OFP.OFPT_MULTIPART_REQUEST, 8, req))
    features, desc = parse_all(sw.sent)
    assert (features.xid, features.datapath_id) == (7, DPID)
    ports = {p.port_no: (p.name.decode(), p.hw_addr) for p in desc.body}
    assert ports == {3: ("tap3", "fa:16:3e:00:00:03"), OFP.OFPP_LOCAL: ("br-int", "02:00:00:00:00:fe")}


def test_port_status_on_plug_and_unplug(sw):
    sw.add_port(4, "tap4", "fa:16:3e:00:00:04")
    sw.remove_port(4)
    added, removed = parse_all(sw.sent)
    assert (added.reason, added.desc.port_no, added.desc.name) == (OFP.OFPPR_ADD, 4, b"tap4")
    assert (removed.reason, removed.desc.port_no) == (OFP.OFPPR_DELETE, 4)


def test_bundle_commits_atomically_and_digest_matches_checker(sw):
    flows = [flow(0, 100, 1, goto=10), flow(10, 50, 2, cookie=0x0100000002000002)]
    bundle(sw, 1, adds=flows)
    replies = parse_all(sw.sent)
    assert [(r.type, r.bundle_id) for r in replies] == [(OFP.OFPBCT_OPEN_REPLY, 1), (OFP.OFPBCT_COMMIT_REPLY, 1)]
    assert sw.flows_as_checked() == sorted(swarm_check.flow_entry(f) for f in flows)
    want = 0
    for f in flows:
        want ^= swarm_check.flow_entry(f)[3]
    assert sw.digest == want


def test_delete_by_cookie_and_add_replaces_same_key(sw):
    a, b = flow(0, 100, 1, cookie=0x11), flow(0, 100, 2, cookie=0x22)
    bundle(sw, 1, adds=[a, b])
    a2 = flow(0, 100, 1, goto=20, cookie=0x33)          # same table, priority, match: replaces a
    bundle(sw, 2, deletes=[(0, 0x22)], adds=[a2])
    assert sw.flows_as_checked() == [swarm_check.flow_entry(a2)]


def test_refused_flow_mod_leaves_table_and_names_its_xid(sw):
    good = flow(0, 100, 1, cookie=0x11)
    bundle(sw, 1, adds=[good])
    sw.sent.clear()
    before = sw.digest
    # a goto to an earlier table is refused; the whole bundle goes
    bundle(sw, 2, adds=[flow(0, 90, 5, cookie=0x44), flow(10, 100, 1, goto=5, cookie=0x55)], first_xid=200)
    msgs = parse_all(sw.sent)
    errors = [m for m in msgs if isinstance(m, W.PARSER.OFPErrorMsg)]
    assert [(e.xid, e.type) for e in errors] == [(202, OFP.OFPET_BAD_INSTRUCTION), (203, OFP.OFPET_BUNDLE_FAILED)]
    assert errors[1].code == OFP.OFPBFC_MSG_FAILED
    assert sw.digest == before and len(sw.t.flows) == 1


def test_meter_needed_before_a_flow_that_uses_it(sw):
    bundle(sw, 1, adds=[flow(0, 100, 1, meter=1)])
    assert not sw.t.flows
    from controller import ofmsg
    mm = ofmsg.meter_add(W.DP, 1, pps=50, burst=10)
    raw = W.serialize(mm, 9)
    sw.handle(OFP.OFPT_METER_MOD, 9, raw)
    sw.sent.clear()
    sw.handle(OFP.OFPT_METER_MOD, 10, raw)              # again: METER_EXISTS, as OVS answers
    (err,) = parse_all(sw.sent)
    assert (err.type, err.code) == (OFP.OFPET_METER_MOD_FAILED, OFP.OFPMMFC_METER_EXISTS)
    bundle(sw, 2, adds=[flow(0, 100, 1, meter=1)])
    assert len(sw.t.flows) == 1


def test_flow_dump_gives_back_what_was_installed(sw):
    flows = [flow(0, 100, i, goto=10, cookie=0x100 + i) for i in range(1, 1200)]  # > 64 KiB: several parts
    bundle(sw, 1, adds=flows)
    sw.sent.clear()
    req = W.MULTIPART.pack(OFP.OFPMP_FLOW, 0) + W.FLOW_STATS_REQUEST.pack(OFP.OFPTT_ALL, OFP.OFPP_ANY,
                                                                          OFP.OFPG_ANY, 0, 0) + ofencode.match_bytes(())
    sw.handle(OFP.OFPT_MULTIPART_REQUEST, 5, W.message(OFP.OFPT_MULTIPART_REQUEST, 5, req))
    parts = parse_all(sw.sent)
    assert len(parts) > 1 and all(p.flags & OFP.OFPMPF_REPLY_MORE for p in parts[:-1])
    assert not parts[-1].flags & OFP.OFPMPF_REPLY_MORE
    got = {(s.table_id, s.priority, s.cookie, s.match["in_port"], s.instructions[0].table_id)
           for p in parts for s in p.body}
    assert got == {(0, 100, 0x100 + i, i, 10) for i in range(1, 1200)}


def test_echo_barrier_and_unknown_message(sw):
    sw.handle(OFP.OFPT_ECHO_REQUEST, 1, W.message(OFP.OFPT_ECHO_REQUEST, 1, b"ping"))
    sw.handle(OFP.OFPT_BARRIER_REQUEST, 2, W.message(OFP.OFPT_BARRIER_REQUEST, 2, b""))
    sw.handle(OFP.OFPT_GROUP_MOD, 3, W.message(OFP.OFPT_GROUP_MOD, 3, b"\0" * 8))
    echo, barrier, err = parse_all(sw.sent)
    assert (echo.xid, echo.data) == (1, b"ping")
    assert isinstance(barrier, W.PARSER.OFPBarrierReply) and barrier.xid == 2
    assert (err.xid, err.type, err.code) == (3, OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_TYPE)


def test_checker_names_missing_and_extra_flows():
    a, b, c = flow(0, 100, 1, cookie=1), flow(0, 100, 2, cookie=2), flow(0, 100, 3, cookie=3)
    diff = swarm_check.diff_host([swarm_check.flow_entry(f) for f in (a, b)],
                                 [swarm_check.flow_entry(f) for f in (b, c)])
    assert (diff["missing"], diff["extra"]) == ([(0, 100, 1)], [(0, 100, 3)])
