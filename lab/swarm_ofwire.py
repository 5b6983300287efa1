"""OpenFlow 1.4 bytes a switch sends (features, port description, port status, flow stats) and framing.

os-ken parses every switch-to-controller message but serializes only the controller's side,
so the replies an emulated switch sends are packed here with os-ken's own layout strings
(`ofproto_v1_4.*_PACK_STR`) and os-ken's serializers for the pieces it has (match,
instructions, errors, echo, bundle control); the unit tests parse every one of them back
with os-ken's parsers. Requests from the controller are parsed with os-ken where it has a
parser (flow-mod, meter-mod, bundle control, echo) and by their os-ken layout string where it
has none (multipart requests, bundle-add headers).
"""
from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_4 as OFP
from os_ken.ofproto import ofproto_v1_4_parser as PARSER

HEADER = struct.Struct(OFP.OFP_HEADER_PACK_STR)
FEATURES = struct.Struct(OFP.OFP_SWITCH_FEATURES_PACK_STR)
PORT = struct.Struct(OFP.OFP_PORT_PACK_STR)
PORT_ETHERNET = struct.Struct(OFP.OFP_PORT_DESC_PROP_ETHERNET_PACK_STR)
MULTIPART = struct.Struct(OFP.OFP_MULTIPART_REPLY_PACK_STR)
FLOW_STATS = struct.Struct(OFP.OFP_FLOW_STATS_0_PACK_STR)
FLOW_STATS_REQUEST = struct.Struct(OFP.OFP_FLOW_STATS_REQUEST_0_PACK_STR)
FLOW_MOD = struct.Struct(OFP.OFP_FLOW_MOD_PACK_STR0)
BUNDLE_ADD = struct.Struct(OFP.OFP_BUNDLE_ADD_MSG_0_PACK_STR)
PORT_STATUS_REASON = struct.Struct("!B7x")
FLOW_MOD_BODY = HEADER.size + FLOW_MOD.size      # where a flow-mod's match starts
MAX_BODY = 0xFFFF - HEADER.size - MULTIPART.size
SPEED_KBPS = 10_000_000


class Dp:
    """What os-ken's message classes need of a datapath to serialize or parse."""
    ofproto = OFP
    ofproto_parser = PARSER
    id = 0


DP = Dp()


def message(msg_type: int, xid: int, body: bytes) -> bytes:
    return HEADER.pack(OFP.OFP_VERSION, msg_type, HEADER.size + len(body), xid) + body


def serialize(msg, xid: int) -> bytes:
    """An os-ken message object -> bytes with `xid`."""
    msg.xid = xid
    msg.serialize()
    return bytes(msg.buf)


def hello() -> bytes:
    return serialize(PARSER.OFPHello(DP), 0)


def features_reply(xid: int, dpid: int, n_tables: int = 254) -> bytes:
    caps = OFP.OFPC_FLOW_STATS | OFP.OFPC_TABLE_STATS | OFP.OFPC_PORT_STATS | OFP.OFPC_GROUP_STATS
    return message(OFP.OFPT_FEATURES_REPLY, xid, FEATURES.pack(dpid, 0, n_tables, 0, caps, 0))


def port(port_no: int, name: str, mac: str) -> bytes:
    """An ofp_port with its Ethernet property (what port-desc and port-status carry)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    prop = PORT_ETHERNET.pack(OFP.OFPPDPT_ETHERNET, PORT_ETHERNET.size, OFP.OFPPF_10GB_FD | OFP.OFPPF_COPPER,
                              0, 0, 0, SPEED_KBPS, SPEED_KBPS)
    return PORT.pack(port_no, PORT.size + len(prop), hw, name.encode()[:15], 0, OFP.OFPPS_LIVE) + prop


def multipart_replies(xid: int, mp_type: int, entries: list[bytes]) -> list[bytes]:
    """A multipart reply split into messages of at most 64 KiB, all but the last flagged MORE."""
    chunks, cur, size = [], [], 0
    for e in entries:
        if cur and size + len(e) > MAX_BODY:
            chunks.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += len(e)
    chunks.append(cur)
    out = []
    for i, chunk in enumerate(chunks):
        flags = OFP.OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0
        out.append(message(OFP.OFPT_MULTIPART_REPLY, xid, MULTIPART.pack(mp_type, flags) + b"".join(chunk)))
    return out


def port_status(reason: int, port_bytes: bytes) -> bytes:
    return message(OFP.OFPT_PORT_STATUS, 0, PORT_STATUS_REASON.pack(reason) + port_bytes)


def flow_stats(table: int, priority: int, cookie: int, body: bytes, age_s: float,
               idle: int = 0, hard: int = 0, flags: int = 0, importance: int = 0) -> bytes:
    """One ofp_flow_stats entry; `body` is the flow-mod's match + instructions, as received."""
    sec = int(age_s)
    return FLOW_STATS.pack(FLOW_STATS.size + len(body), table, sec, int((age_s - sec) * 1e9),
                           priority, idle, hard, flags, importance, cookie, 0, 0) + body


def error(xid: int, err_type: int, code: int, data: bytes = b"") -> bytes:
    return serialize(PARSER.OFPErrorMsg(DP, type_=err_type, code=code, data=data[:64]), xid)


def echo_reply(xid: int, data: bytes) -> bytes:
    return serialize(PARSER.OFPEchoReply(DP, data=data), xid)


def barrier_reply(xid: int) -> bytes:
    return serialize(PARSER.OFPBarrierReply(DP), xid)


def bundle_ctrl(xid: int, bundle_id: int, ctrl_type: int, flags: int) -> bytes:
    return serialize(PARSER.OFPBundleCtrlMsg(DP, bundle_id, ctrl_type, flags, []), xid)


def parse(msg_type: int, xid: int, buf: bytes):
    """os-ken's parse of a message it has a parser for (flow-mod, meter-mod, bundle control...)."""
    from os_ken.ofproto import ofproto_parser
    return ofproto_parser.msg(DP, OFP.OFP_VERSION, msg_type, len(buf), xid, buf)


class Framer:
    """Splits a TCP byte stream into OpenFlow messages (version, type, xid, whole message)."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            version, msg_type, length, xid = HEADER.unpack_from(self._buf)
            if length < HEADER.size:
                raise ValueError(f"bad OpenFlow length {length}")
            if len(self._buf) < length:
                break
            out.append((version, msg_type, xid, bytes(self._buf[:length])))
            del self._buf[:length]
        return out
