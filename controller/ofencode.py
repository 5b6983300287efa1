"""Flow records to OpenFlow 1.4 flow-mod bytes, fast: os-ken's own encodings, cached per match field and action.

Why by hand: building and serializing os-ken message objects costs about 30 us per flow-mod,
and a NIC plugged with a new ofport needs a few dozen new ones at once, on the port-up path;
at seed scale a reconnect sends tens of thousands. The bytes are the same as os-ken's (the
unit test compares them for every flow the compiler makes): each OXM field and each action is
encoded once by os-ken and kept, and a flow-mod is its fixed header, the cached pieces in
os-ken's order, and the instruction headers.
"""
from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_4 as OFP
from os_ken.ofproto import ofproto_v1_4_parser as PARSER

from controller import ofmsg
from flows import cookies

HEADER = struct.Struct("!BBHI")
FLOW_MOD = struct.Struct("!QQBBHHHIIIHH")
OFPT_FLOW_MOD = 14
OFPIT_GOTO_TABLE, OFPIT_APPLY_ACTIONS, OFPIT_METER = 1, 4, 6
GOTO = struct.Struct("!HHB3x")
METER = struct.Struct("!HHI")
APPLY = struct.Struct("!HH4x")
_CACHE_MAX = 200_000

_fields: dict = {}        # (field, value) -> (os-ken sort key, TLV bytes)
_actions: dict = {}       # action tuple -> its bytes
# whole matches and instruction lists recur across flows (a seed-scale site's 100,000 distinct
# flows have under half as many distinct matches and a fifth as many action lists): the
# bytes of each are made once, which halves the encoding of a cold start's flows
_matches: dict = {}       # match tuple -> its bytes (padded)
_insts: dict = {}         # actions tuple -> the instructions' bytes


def _field(name: str, value) -> tuple:
    hit = _fields.get((name, value))
    if hit is None:
        # the exact path OFPMatch takes: normalize, to OXM, to user form, serialize
        k, v = OFP.oxm_normalize_user(name, value)
        n, val, mask = OFP.oxm_from_user(k, v)
        k2, uv = OFP.oxm_to_user(n, val, mask)
        n2, val2, mask2 = OFP.oxm_from_user(k2, uv)
        buf = bytearray()
        length = OFP.oxm_serialize(n2, val2, mask2, buf, 0)
        hit = (n[0] if isinstance(n, tuple) else n, bytes(buf[:length]))
        if len(_fields) >= _CACHE_MAX:
            _fields.clear()
        _fields[(name, value)] = hit
    return hit


def _action(act: tuple) -> bytes:
    hit = _actions.get(act)
    if hit is None:
        obj = ofmsg.action_object(PARSER, OFP, act)
        buf = bytearray()
        obj.serialize(buf, 0)
        hit = bytes(buf)
        if len(_actions) >= _CACHE_MAX:
            _actions.clear()
        _actions[act] = hit
    return hit


def match_bytes(match: tuple) -> bytes:
    hit = _matches.get(match)
    if hit is None:
        tlvs = sorted((_field(name, value) for name, value in match), key=lambda kv: kv[0])
        body = b"".join(t for _k, t in tlvs)
        length = 4 + len(body)
        hit = struct.pack("!HH", OFP.OFPMT_OXM, length) + body + b"\0" * (-length % 8)
        if len(_matches) >= _CACHE_MAX:
            _matches.clear()
        _matches[match] = hit
    return hit


def _instructions(flow) -> bytes:
    inst = _insts.get(flow.actions)
    if inst is None:
        acts, goto, meter = ofmsg.split(flow)
        inst = b""
        if meter is not None:
            inst += METER.pack(OFPIT_METER, 8, meter)
        if acts:
            body = b"".join(_action(a) for a in acts)
            inst += APPLY.pack(OFPIT_APPLY_ACTIONS, 8 + len(body)) + body
        if goto is not None:
            inst += GOTO.pack(OFPIT_GOTO_TABLE, 8, goto)
        if len(_insts) >= _CACHE_MAX:
            _insts.clear()
        _insts[flow.actions] = inst
    return inst


def flow_add(flow, xid: int = 0) -> bytes:
    """OFPFC_ADD of `flow` (instructions: meter, apply-actions, goto, as ofmsg.flow_add)."""
    inst = _instructions(flow)
    fixed = FLOW_MOD.pack(flow.cookie, 0, flow.table, OFP.OFPFC_ADD, 0, 0, flow.priority,
                          OFP.OFP_NO_BUFFER, 0, 0, 0, 0)
    body = fixed + match_bytes(flow.match) + inst
    return HEADER.pack(OFP.OFP_VERSION, OFPT_FLOW_MOD, 8 + len(body), xid) + body


def flow_delete(table: int, cookie: int, xid: int = 0) -> bytes:
    """Delete every flow of `table` carrying exactly `cookie` (as ofmsg.flow_delete)."""
    fixed = FLOW_MOD.pack(cookie, cookies.FULL_MASK, table, OFP.OFPFC_DELETE, 0, 0,
                          OFP.OFP_DEFAULT_PRIORITY, OFP.OFP_NO_BUFFER, OFP.OFPP_ANY, OFP.OFPG_ANY, 0, 0)
    body = fixed + match_bytes(())
    return HEADER.pack(OFP.OFP_VERSION, OFPT_FLOW_MOD, 8 + len(body), xid) + body
