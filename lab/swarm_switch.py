"""An emulated OpenFlow 1.4 switch: message handling and a flow table keyed like Open vSwitch's; no I/O.

`EmulatedSwitch.handle(type, xid, raw)` takes one message from the controller and sends its
answers through `send(bytes)`: hello, echo, features (its dpid), port-desc and flow-stats
multiparts, barrier, meter-mods (METER_EXISTS for a meter it has, as OVS answers), flow-mods
(add / modify / delete, strict or by cookie mask) and bundles (open, add, commit, discard,
close with their replies). A bundle is applied atomically at commit: a flow-mod the switch
refuses (a goto to the same or an earlier table, a meter it does not have, a table out of
range, a message it cannot parse) leaves the table as it was, and the switch answers, as OVS
does, an error naming that flow-mod's xid and then BUNDLE_FAILED/MSG_FAILED for the commit.
Ports come and go with `add_port` / `remove_port` (port-status to the controller).

Flows are keyed by (table, priority, match bytes) — an ADD with the same key replaces, as in
OVS — and each keeps its cookie and the flow-mod's match + instructions bytes. The table's
digest is the XOR of `flow_digest` over its flows, kept as flows change, so a checker compares
a host's table with its compiled flows in O(1) (`flows_as_checked` gives the entries).
Non-strict delete and modify with a non-empty match select flows whose match bytes are equal
(OVS selects every flow the match covers; weftd deletes by cookie with an empty match).
"""
from __future__ import annotations

import hashlib
import logging
import struct
import time

from os_ken.ofproto import ofproto_v1_4 as OFP

from lab import swarm_ofwire as W

LOG = logging.getLogger(__name__)
LOCAL_MAC = "02:00:00:00:00:fe"


def flow_digest(table: int, priority: int, cookie: int, body: bytes) -> int:
    """64-bit digest of one flow: (table, priority, cookie) and its match + instructions bytes."""
    h = hashlib.blake2b(struct.pack("!BHQ", table, priority, cookie) + body, digest_size=8)
    return int.from_bytes(h.digest(), "big")


def match_length(body: bytes) -> int:
    """Bytes of the (padded) ofp_match at the start of a flow-mod body."""
    length = struct.unpack_from("!H", body, 2)[0]
    return (length + 7) // 8 * 8


class Refused(Exception):
    def __init__(self, err_type: int, code: int):
        super().__init__(f"error type {err_type} code {code}")
        self.err_type, self.code = err_type, code


class FlowEntry:
    __slots__ = ("cookie", "body", "digest", "added", "idle", "hard", "flags", "importance")

    def __init__(self, table, priority, cookie, body, idle=0, hard=0, flags=0, importance=0):
        self.cookie, self.body = cookie, body
        self.digest = flow_digest(table, priority, cookie, body)
        self.added = time.monotonic()
        self.idle, self.hard, self.flags, self.importance = idle, hard, flags, importance


class _Table:
    """The flows and meters, copied whole for a bundle's atomic apply."""
    __slots__ = ("flows", "meters", "digest")

    def __init__(self, flows=None, meters=None, digest=0):
        self.flows: dict[tuple, FlowEntry] = flows if flows is not None else {}
        self.meters: dict[int, bytes] = meters if meters is not None else {}   # id -> its config entry
        self.digest = digest

    def copy(self) -> "_Table":
        return _Table(dict(self.flows), dict(self.meters), self.digest)


# what a flow-mod body's instructions allow, checked once per distinct body (many repeat)
_checked: dict[bytes, tuple] = {}


def _instructions(raw: bytes, xid: int) -> tuple:
    """(goto tables, meter ids) of a flow-mod, from os-ken's parse; Refused if it cannot parse."""
    body = raw[W.FLOW_MOD_BODY:]
    hit = _checked.get(body)
    if hit is None:
        try:
            msg = W.parse(OFP.OFPT_FLOW_MOD, xid, raw)
        except Exception:
            raise Refused(OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_LEN) from None
        gotos, meters = [], []
        for inst in msg.instructions:
            if inst.type == OFP.OFPIT_GOTO_TABLE:
                gotos.append(inst.table_id)
            elif inst.type == OFP.OFPIT_METER:
                meters.append(inst.meter_id)
        hit = (tuple(gotos), tuple(meters))
        if len(_checked) > 100_000:
            _checked.clear()
        _checked[body] = hit
    return hit


class EmulatedSwitch:
    """One bridge's OpenFlow side. `send` is set by the connection (None while disconnected)."""

    def __init__(self, dpid: int, on_change=None):
        self.dpid = dpid
        self.ports: dict[int, tuple[str, str]] = {OFP.OFPP_LOCAL: ("br-int", LOCAL_MAC)}
        self.t = _Table()
        self.bundles: dict[int, list] = {}
        self.send = None
        self.on_change = on_change          # callback(switch) after the table changed
        self.changed_at = 0.0               # time.monotonic() of the last change
        self.commits = self.flow_mods = self.errors = 0

    # -- the table, for checkers
    @property
    def digest(self) -> int:
        return self.t.digest

    def flows_as_checked(self) -> list[tuple[int, int, int, int]]:
        """[(table, priority, cookie, digest)] of every flow."""
        return sorted((k[0], k[1], e.cookie, e.digest) for k, e in self.t.flows.items())

    # -- the connection
    def connected(self, send) -> None:
        self.send = send
        self.bundles.clear()
        send(W.hello())

    def disconnected(self) -> None:
        self.send = None
        self.bundles.clear()           # OVS drops a connection's open bundles with it

    def _out(self, data: bytes) -> None:
        if self.send is not None:
            self.send(data)

    # -- ports
    def add_port(self, port_no: int, name: str, mac: str) -> None:
        self.ports[port_no] = (name, mac)
        self._out(W.port_status(OFP.OFPPR_ADD, W.port(port_no, name, mac)))

    def remove_port(self, port_no: int) -> None:
        gone = self.ports.pop(port_no, None)
        if gone is not None:
            self._out(W.port_status(OFP.OFPPR_DELETE, W.port(port_no, *gone)))

    # -- messages
    def handle(self, msg_type: int, xid: int, raw: bytes) -> None:
        try:
            self._handle(msg_type, xid, raw)
        except Refused as exc:
            self.errors += 1
            self._out(W.error(xid, exc.err_type, exc.code, raw))

    def _handle(self, msg_type: int, xid: int, raw: bytes) -> None:
        T = OFP
        if msg_type in (T.OFPT_HELLO, T.OFPT_ECHO_REPLY, T.OFPT_SET_CONFIG, T.OFPT_PACKET_OUT):
            return
        if msg_type == T.OFPT_ERROR:
            LOG.warning("switch %016x: error from the controller (xid %d)", self.dpid, xid)
            return
        if msg_type == T.OFPT_ECHO_REQUEST:
            self._out(W.echo_reply(xid, raw[W.HEADER.size:]))
        elif msg_type == T.OFPT_FEATURES_REQUEST:
            self._out(W.features_reply(xid, self.dpid))
        elif msg_type == T.OFPT_BARRIER_REQUEST:
            self._out(W.barrier_reply(xid))
        elif msg_type == T.OFPT_MULTIPART_REQUEST:
            self._multipart(xid, raw)
        elif msg_type == T.OFPT_METER_MOD:
            self._meter_mod(xid, raw, self.t)
        elif msg_type == T.OFPT_FLOW_MOD:
            self._flow_mod(xid, raw, self.t)
            self._changed()
        elif msg_type == T.OFPT_BUNDLE_CONTROL:
            self._bundle_ctrl(xid, raw)
        elif msg_type == T.OFPT_BUNDLE_ADD_MESSAGE:
            self._bundle_add(xid, raw)
        else:
            raise Refused(T.OFPET_BAD_REQUEST, T.OFPBRC_BAD_TYPE)

    def _changed(self) -> None:
        self.changed_at = time.monotonic()
        if self.on_change is not None:
            self.on_change(self)

    def _multipart(self, xid: int, raw: bytes) -> None:
        mp_type, _flags = W.MULTIPART.unpack_from(raw, W.HEADER.size)
        if mp_type == OFP.OFPMP_PORT_DESC:
            entries = [W.port(no, name, mac) for no, (name, mac) in sorted(self.ports.items())]
        elif mp_type == OFP.OFPMP_FLOW:
            table, _out_port, _out_group, cookie, mask = W.FLOW_STATS_REQUEST.unpack_from(
                raw, W.HEADER.size + W.MULTIPART.size)
            now = time.monotonic()
            entries = [W.flow_stats(k[0], k[1], e.cookie, e.body, now - e.added, e.idle, e.hard,
                                    e.flags, e.importance)
                       for k, e in self.t.flows.items()
                       if (table == OFP.OFPTT_ALL or k[0] == table) and (e.cookie & mask) == (cookie & mask)]
        elif mp_type == OFP.OFPMP_METER_CONFIG:
            entries = [cfg for _id, cfg in sorted(self.t.meters.items())]
        else:
            raise Refused(OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_MULTIPART)
        for reply in W.multipart_replies(xid, mp_type, entries):
            self._out(reply)

    def _meter_mod(self, xid: int, raw: bytes, t: _Table) -> None:
        try:
            msg = W.parse(OFP.OFPT_METER_MOD, xid, raw)
        except Exception:
            raise Refused(OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_LEN) from None
        if msg.command == OFP.OFPMC_ADD:
            if msg.meter_id in t.meters:
                raise Refused(OFP.OFPET_METER_MOD_FAILED, OFP.OFPMMFC_METER_EXISTS)
            t.meters[msg.meter_id] = _meter_config(msg)
        elif msg.command == OFP.OFPMC_DELETE:
            t.meters.pop(msg.meter_id, None)
        elif msg.meter_id not in t.meters:
            raise Refused(OFP.OFPET_METER_MOD_FAILED, OFP.OFPMMFC_UNKNOWN_METER)
        else:
            t.meters[msg.meter_id] = _meter_config(msg)

    def _flow_mod(self, xid: int, raw: bytes, t: _Table) -> None:
        (cookie, mask, table, command, idle, hard, priority, _buffer, _out_port, _out_group,
         flags, importance) = W.FLOW_MOD.unpack_from(raw, W.HEADER.size)
        self.flow_mods += 1
        body = raw[W.FLOW_MOD_BODY:]
        if len(body) < 4:
            raise Refused(OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_LEN)
        match = body[:match_length(body)]
        if command == OFP.OFPFC_ADD:
            if table >= OFP.OFPTT_MAX:
                raise Refused(OFP.OFPET_FLOW_MOD_FAILED, OFP.OFPFMFC_BAD_TABLE_ID)
            gotos, meters = _instructions(raw, xid)
            if any(g <= table or g >= OFP.OFPTT_MAX for g in gotos):
                raise Refused(OFP.OFPET_BAD_INSTRUCTION, OFP.OFPBIC_BAD_TABLE_ID)
            if any(m not in t.meters for m in meters):
                raise Refused(OFP.OFPET_METER_MOD_FAILED, OFP.OFPMMFC_UNKNOWN_METER)
            key = (table, priority, match)
            old = t.flows.get(key)
            if old is not None:
                t.digest ^= old.digest
            entry = FlowEntry(table, priority, cookie, body, idle, hard, flags, importance)
            t.flows[key] = entry
            t.digest ^= entry.digest
            return
        strict = command in (OFP.OFPFC_DELETE_STRICT, OFP.OFPFC_MODIFY_STRICT)
        empty = len(match) == 8 and struct.unpack_from("!H", match, 2)[0] == 4
        chosen = [k for k, e in t.flows.items()
                  if (table == OFP.OFPTT_ALL or k[0] == table) and (e.cookie & mask) == (cookie & mask)
                  and (k == (table, priority, match) if strict else empty or k[2] == match)]
        if command in (OFP.OFPFC_DELETE, OFP.OFPFC_DELETE_STRICT):
            for k in chosen:
                t.digest ^= t.flows.pop(k).digest
            return
        if command in (OFP.OFPFC_MODIFY, OFP.OFPFC_MODIFY_STRICT):
            gotos, meters = _instructions(raw, xid)
            if any(m not in t.meters for m in meters):
                raise Refused(OFP.OFPET_METER_MOD_FAILED, OFP.OFPMMFC_UNKNOWN_METER)
            for k in chosen:
                old = t.flows[k]
                if any(g <= k[0] for g in gotos):
                    raise Refused(OFP.OFPET_BAD_INSTRUCTION, OFP.OFPBIC_BAD_TABLE_ID)
                entry = FlowEntry(k[0], k[1], old.cookie, k[2] + body[len(match):], old.idle, old.hard,
                                  old.flags, old.importance)
                t.digest ^= old.digest ^ entry.digest
                t.flows[k] = entry
            return
        raise Refused(OFP.OFPET_FLOW_MOD_FAILED, OFP.OFPFMFC_BAD_COMMAND)

    # -- bundles
    def _bundle_ctrl(self, xid: int, raw: bytes) -> None:
        try:
            msg = W.parse(OFP.OFPT_BUNDLE_CONTROL, xid, raw)
        except Exception:
            raise Refused(OFP.OFPET_BAD_REQUEST, OFP.OFPBRC_BAD_LEN) from None
        bid, kind, flags = msg.bundle_id, msg.type, msg.flags
        if kind == OFP.OFPBCT_OPEN_REQUEST:
            if bid in self.bundles:
                raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_BAD_ID)
            self.bundles[bid] = []
            self._out(W.bundle_ctrl(xid, bid, OFP.OFPBCT_OPEN_REPLY, flags))
        elif kind == OFP.OFPBCT_CLOSE_REQUEST:
            if bid not in self.bundles:
                raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_BAD_ID)
            self._out(W.bundle_ctrl(xid, bid, OFP.OFPBCT_CLOSE_REPLY, flags))
        elif kind == OFP.OFPBCT_DISCARD_REQUEST:
            if self.bundles.pop(bid, None) is None:
                raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_BAD_ID)
            self._out(W.bundle_ctrl(xid, bid, OFP.OFPBCT_DISCARD_REPLY, flags))
        elif kind == OFP.OFPBCT_COMMIT_REQUEST:
            items = self.bundles.pop(bid, None)
            if items is None:
                raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_BAD_ID)
            self._commit(xid, bid, flags, items)
        else:
            raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_BAD_TYPE)

    def _bundle_add(self, xid: int, raw: bytes) -> None:
        bid, _flags = W.BUNDLE_ADD.unpack_from(raw, W.HEADER.size)
        inner = raw[W.HEADER.size + W.BUNDLE_ADD.size:]
        if len(inner) < W.HEADER.size:
            raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_MSG_BAD_LEN)
        _v, inner_type, length, inner_xid = W.HEADER.unpack_from(inner)
        if length != len(inner):
            raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_MSG_BAD_LEN)
        if inner_type not in (OFP.OFPT_FLOW_MOD, OFP.OFPT_METER_MOD):
            raise Refused(OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_MSG_UNSUP)
        self.bundles.setdefault(bid, []).append((inner_type, inner_xid, inner))

    def _commit(self, xid: int, bid: int, flags: int, items: list) -> None:
        work = self.t.copy()
        for inner_type, inner_xid, inner in items:
            try:
                if inner_type == OFP.OFPT_FLOW_MOD:
                    self._flow_mod(inner_xid, inner, work)
                else:
                    self._meter_mod(inner_xid, inner, work)
            except Refused as exc:
                self.errors += 1
                self._out(W.error(inner_xid, exc.err_type, exc.code, inner))
                self._out(W.error(xid, OFP.OFPET_BUNDLE_FAILED, OFP.OFPBFC_MSG_FAILED))
                return
        self.t = work
        self.commits += 1
        self.changed_at = time.monotonic()
        self._out(W.bundle_ctrl(xid, bid, OFP.OFPBCT_COMMIT_REPLY, flags))
        if self.on_change is not None:
            self.on_change(self)


def _meter_config(msg) -> bytes:
    """The meter-config stats entry (ofp_meter_config with its drop bands) of a meter-mod."""
    bands = b"".join(struct.pack("!HHII4x", OFP.OFPMBT_DROP, 16, b.rate, b.burst_size)
                     for b in msg.bands if b.type == OFP.OFPMBT_DROP)
    return struct.pack("!HHI", 8 + len(bands), msg.flags, msg.meter_id) + bands
