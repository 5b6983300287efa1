"""A simulated OpenFlow switch for engine unit tests: parses the bytes weft sends and keeps a flow table.

It understands what the engine sends (bundle open/add/commit with flow-mod adds and
cookie-masked deletes, flow-stats requests, meter-mods, port-desc requests) and answers through
the engine's input methods, as os-ken's app would. It can refuse a bundle (an error naming the
xid of the flow-mod it rejects, then no commit, as Open vSwitch does), or hold its replies to
simulate a switch that disconnects with a bundle in flight. The integration tests run the real
thing; this only stands in for a switch where a unit test needs one.
"""
from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_4, ofproto_v1_4_parser

HEADER = struct.Struct("!BBHI")
FLOW_MOD = struct.Struct("!QQBBHHHIIIHH")     # cookie, mask, table, command, idle, hard, priority, ...
OFPT_FLOW_MOD, OFPT_MULTIPART_REQUEST, OFPT_METER_MOD = 14, 18, 29
OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD = 33, 34
OFPT_ROLE_REQUEST, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE = 24, 2, 3
OFPMP_FLOW, OFPMP_METER_CONFIG, OFPMP_PORT_DESC = 1, 10, 13
OFPMC_ADD, OFPMC_MODIFY, OFPMC_DELETE = 0, 1, 2
OFPMF_PKTPS = 2
OFPFC_ADD, OFPFC_DELETE = 0, 3
OFPBCT_OPEN_REQUEST, OFPBCT_COMMIT_REQUEST, OFPBCT_COMMIT_REPLY = 0, 4, 5
OFPET_BAD_INSTRUCTION, OFPET_BUNDLE_FAILED, OFPBFC_MSG_FAILED = 3, 17, 13


class FakeSwitch:
    """One switch (its flow table survives reconnections: connect() makes a new datapath)."""

    def __init__(self, engine, dpid: int):
        self.engine, self.dpid = engine, dpid
        self.table: set[tuple[int, int, int]] = set()      # (table, priority, cookie)
        self.reject_cookie: int | None = None              # refuse the bundle holding this cookie
        self.hold = False                                  # keep commit replies in `held`
        self.held: list = []
        self.commits = 0
        self.flow_mods = 0
        self.errors_sent = 0
        self.roles: list[tuple[int, int]] = []             # role requests: (role, generation id)
        self.master_election_id: int | None = None         # as Open vSwitch's connmgr keeps it
        self.stale_refusals = 0
        self.slave_writes = 0                              # bundles/meters sent by a slave
        self.meter_mods = 0
        self.meters: dict = {}                             # id -> flows/qos.Meter (QoS meters only)
        self.meters_answer = True                          # False: refuse meter-config requests
        self.qos_meter_mods = 0                            # meter-mods of QoS meters (flows/qos.py ids)
        self.datapath: FakeDatapath | None = None

    def connect(self, names: tuple[str, ...] | None = None) -> "FakeDatapath":
        """A new connection claiming this switch's dpid (`names`: what its certificate names)."""
        self.datapath = FakeDatapath(self)
        self.engine.switch_connected(self.datapath, names)
        return self.datapath

    def disconnect(self) -> None:
        dp, self.datapath = self.datapath, None
        dp.closed = True
        self.engine.switch_disconnected(dp)

    def release(self) -> None:
        """Send the held replies (of the current connection only)."""
        held, self.held = self.held, []
        for dp, fn in held:
            if dp is self.datapath:
                fn()


class FakeDatapath:
    ofproto = ofproto_v1_4
    ofproto_parser = ofproto_v1_4_parser

    def __init__(self, switch: FakeSwitch):
        self.switch, self.id = switch, switch.dpid
        self.xid = 0
        self.address = ("fake", 0)
        self.closed = False
        self.role: int | None = None
        self.hung_up = False
        self.received: list[int] = []            # OpenFlow message types, as sent
        self._bundles: dict[int, list] = {}

    def close(self) -> None:            # the controller hung up (a refused connection)
        self.closed = True
        self.hung_up = True

    def send(self, buf: bytes) -> bool:
        if self.closed:
            return False
        off = 0
        while off < len(buf):
            _v, mtype, length, xid = HEADER.unpack_from(buf, off)
            self.received.append(mtype)
            self._message(mtype, xid, bytes(buf[off:off + length]))
            off += length
        return True

    def send_msg(self, msg) -> bool:         # DHCP packet-outs and the like
        msg.serialize()
        return self.send(bytes(msg.buf))

    def _message(self, mtype: int, xid: int, msg: bytes) -> None:
        sw, engine = self.switch, self.switch.engine
        if mtype in (OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD, OFPT_METER_MOD) and self.role == OFPCR_ROLE_SLAVE:
            sw.slave_writes += 1            # Open vSwitch refuses these (is_slave); weft must not send them
        if mtype == OFPT_METER_MOD:
            sw.meter_mods += 1
            self._meter_mod(msg)
        if mtype == OFPT_ROLE_REQUEST:
            role, generation = struct.unpack_from("!I4xQ", msg, 8)
            sw.roles.append((role, generation))
            if role in (OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE):
                # Open vSwitch (connmgr.c): an id older than the last accepted one is stale
                if sw.master_election_id is not None and \
                        (generation - sw.master_election_id) & (1 << 63):
                    sw.stale_refusals += 1
                    self._reply(lambda: engine.switch_error(self, xid, 11, 0, b""))
                    return
                sw.master_election_id = generation
            self.role = role
            self._reply(lambda: engine.role_reply(self, role))
        elif mtype == OFPT_BUNDLE_CONTROL:
            bundle_id, ctrl, _flags = struct.unpack_from("!IHH", msg, 8)
            if ctrl == OFPBCT_OPEN_REQUEST:
                self._bundles[bundle_id] = []
            elif ctrl == OFPBCT_COMMIT_REQUEST:
                self._commit(bundle_id, xid)
        elif mtype == OFPT_BUNDLE_ADD:
            bundle_id = struct.unpack_from("!I", msg, 8)[0]
            inner = msg[16:]
            cookie, mask, table, command, _i, _h, priority = FLOW_MOD.unpack_from(inner, 8)[:7]
            self._bundles.setdefault(bundle_id, []).append(
                (HEADER.unpack_from(inner)[3], command, table, priority, cookie))
        elif mtype == OFPT_MULTIPART_REQUEST:
            kind = struct.unpack_from("!H", msg, 8)[0]
            if kind == OFPMP_FLOW:
                entries = sorted(sw.table)
                self._reply(lambda: engine.flow_stats(self, xid, entries, False))
            elif kind == OFPMP_METER_CONFIG:
                if not sw.meters_answer:
                    self._reply(lambda: engine.switch_error(self, xid, 1, 2, b""))   # bad multipart
                else:
                    meters = sorted(sw.meters.values(), key=lambda m: m.id)
                    self._reply(lambda: engine.meter_stats(self, xid, meters, False))
            elif kind == OFPMP_PORT_DESC:
                self._reply(lambda: engine.port_desc(self, []))
        # meter-mods and anything else: accepted silently

    def _meter_mod(self, msg: bytes) -> None:
        from flows.qos import METER_BASE, Meter
        command, flags, meter_id = struct.unpack_from("!HHI", msg, 8)
        if meter_id < METER_BASE:
            return                           # the DHCP and drop meters: not QoS meters
        self.switch.qos_meter_mods += 1
        if command == OFPMC_DELETE:
            self.switch.meters.pop(meter_id, None)
            return
        _type, _len, rate, burst = struct.unpack_from("!HHII", msg, 16)
        self.switch.meters[meter_id] = Meter(meter_id, bool(flags & OFPMF_PKTPS), rate, burst)

    def _commit(self, bundle_id: int, commit_xid: int) -> None:
        sw, engine = self.switch, self.switch.engine
        ops = self._bundles.pop(bundle_id, [])
        bad = next((op for op in ops if op[1] == OFPFC_ADD and op[4] == sw.reject_cookie), None)
        if bad is not None:                  # the whole bundle is refused: nothing applied
            sw.errors_sent += 1
            self._reply(lambda: engine.switch_error(self, bad[0], OFPET_BAD_INSTRUCTION, 0, b""))
            self._reply(lambda: engine.switch_error(self, commit_xid, OFPET_BUNDLE_FAILED,
                                                    OFPBFC_MSG_FAILED, b""))
            return
        table = set(sw.table)
        for _xid, command, tid, priority, cookie in ops:
            if command == OFPFC_DELETE:
                table = {k for k in table if not (k[0] == tid and k[2] == cookie)}
            else:
                table.add((tid, priority, cookie))
        sw.table = table
        sw.commits += 1
        sw.flow_mods += len(ops)
        self._reply(lambda: engine.bundle_reply(self, bundle_id, OFPBCT_COMMIT_REPLY))

    def _reply(self, fn) -> None:
        if self.switch.hold:
            self.switch.held.append((self, fn))
        else:
            fn()
