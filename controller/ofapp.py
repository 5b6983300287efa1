"""The os-ken application: OpenFlow events in, queued to the engine; it decides nothing and sends nothing.

weftd injects what the app talks to (`weft=OpenFlowSinks(...)` passed through os-ken's
`instantiate_apps`), so there is no module state: the engine for the flow tables (and the
announcements of migrating VMs, told apart by the packet-in's cookie), the driver for replies to
its own flow dumps, the neighbour discovery service for IPv6 packet-ins and the DHCP service for
the other packet-ins.

Who a switch is, is the engine's decision (`controller.identity`): the app hands it what the
connection's verified TLS certificate names along with the datapath id, and answers packet-ins
only from connections the engine admitted (an impostor gets no DHCP lease or ND answer either).
"""
from __future__ import annotations

import dataclasses
import logging

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_4

from controller.identity import cert_names
from controller.ofmsg import meter_of_config
from flows.cookies import DROP_FLAG
from flows.migration import is_announcement

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class OpenFlowSinks:
    engine: object
    driver: object
    dhcp: object = None
    nd: object = None           # IPv6 neighbour solicitations (controller/nd_service.py)
    edge: object = None         # ARP replies from provider ports (controller/edge_service.py)


def peer_names(datapath) -> tuple[str, ...] | None:
    """What the connection's verified TLS certificate names; None for a plain-TCP connection."""
    getpeercert = getattr(datapath.socket, "getpeercert", None)
    if getpeercert is None:
        return None
    return cert_names(getpeercert())


def _name(desc) -> str:
    return desc.name.decode(errors="replace") if isinstance(desc.name, bytes) else desc.name


# Events whose handlers only queue to the engine (or hand a reply to a waiting API caller): they
# run on the OpenFlow loop's thread as the message is parsed, not through os-ken's queue to this
# app's thread. A port-up's port-status and its bundle's commit reply each skipped a thread hand-off
# (0.2-0.8 ms measured between the loop's read and this app's handler). They keep the order they
# had on the wire among themselves; against the events still queued (features, disconnects,
# packet-ins) nothing is lost: every reply answers what the engine sent after it took the
# connection in, and a port-status read before that is in the port list the engine asks for then.
INLINE_EVENTS = (ofp_event.EventOFPPortStatus, ofp_event.EventOFPBundleCtrlMsg,
                 ofp_event.EventOFPErrorMsg, ofp_event.EventOFPFlowStatsReply,
                 ofp_event.EventOFPMeterConfigStatsReply, ofp_event.EventOFPPortDescStatsReply,
                 ofp_event.EventOFPRoleReply, ofp_event.EventOFPRoleStatus)


class WeftOFApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_4.OFP_VERSION]

    def _send_event(self, ev, state):
        """os-ken hands this app an event (on the thread that parsed it): the INLINE_EVENTS are
        handled at once, the others queued to the app's own thread as os-ken does."""
        if isinstance(ev, INLINE_EVENTS):
            for handler in self.get_handlers(ev, state):
                try:
                    handler(ev)
                except Exception:            # never into the OpenFlow loop: it would drop the switch
                    LOG.exception("OpenFlow %s handler failed", ev.__class__.__name__)
            return
        super()._send_event(ev, state)

    def __init__(self, *args, weft: OpenFlowSinks | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if weft is None:
            raise RuntimeError("WeftOFApp needs weft=OpenFlowSinks(engine, driver, dhcp)")
        self.engine, self.driver, self.dhcp, self.nd = weft.engine, weft.driver, weft.dhcp, weft.nd
        self.edge = weft.edge

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        # os-ken's OFPHandler sets the id from this same message, but in its own event thread,
        # which may run after this one: the engine then met a connection without an id, failed
        # on it, and the switch stayed connected but never admitted (seen on a 100-host lab)
        dp.id = ev.msg.datapath_id
        LOG.debug("switch %016x handshake from %s", dp.id, dp.address)   # the engine says if admitted
        self.engine.switch_connected(dp, peer_names(dp))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def state_change(self, ev):
        if ev.datapath is not None and ev.datapath.id is not None:
            LOG.log(logging.INFO if self.engine.admitted(ev.datapath) else logging.DEBUG,
                    "switch %016x disconnected", ev.datapath.id)
            self.engine.switch_disconnected(ev.datapath)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats_reply(self, ev):
        msg = ev.msg
        more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
        if self.driver.claim_flow_stats(msg.xid, msg.body, more):
            return
        self.engine.flow_stats(msg.datapath, msg.xid,
                               [(s.table_id, s.priority, s.cookie) for s in msg.body], more)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    def meter_config_reply(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        self.engine.meter_stats(msg.datapath, msg.xid, [meter_of_config(ofp, m) for m in msg.body],
                                bool(msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPBundleCtrlMsg, MAIN_DISPATCHER)
    def bundle_ctrl(self, ev):
        msg = ev.msg
        self.engine.bundle_reply(msg.datapath, msg.bundle_id, msg.type)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        if not self.engine.admitted(msg.datapath):
            return                            # a refused or not yet admitted connection
        if msg.cookie >> 56 & DROP_FLAG:       # a drop flow's sample: the OpenFlow loop reads those
            return                            # (DropService.raw_packet_in), none comes this way
        if is_announcement(msg.cookie):       # a migrating port's destination NIC spoke
            self.engine.announce(msg.datapath, msg.match["in_port"], bytes(msg.data))
            return
        data = bytes(msg.data)
        if data[12:14] == b"\x86\xdd":         # IPv6: a neighbour solicitation (table 20)
            if self.nd is not None:
                try:
                    self.nd.packet_in(msg.datapath, msg.match["in_port"], data)
                except Exception:
                    LOG.exception("neighbour discovery packet-in failed")
            return
        if data[12:14] == b"\x08\x06":         # ARP: a reply from the edge (north-south)
            if self.edge is not None:
                self.edge.packet_in(msg.datapath, msg.match["in_port"], data)
            return
        if self.dhcp is not None:
            try:
                self.dhcp.packet_in(msg.datapath, msg.match["in_port"], bytes(msg.data))
            except Exception:
                LOG.exception("DHCP packet-in failed")

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev):
        msg = ev.msg
        gone = msg.reason == msg.datapath.ofproto.OFPPR_DELETE
        self.engine.port_status(msg.datapath, _name(msg.desc), None if gone else msg.desc.port_no)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc(self, ev):
        self.engine.port_desc(ev.msg.datapath, [(_name(d), d.port_no) for d in ev.msg.body
                                                if d.port_no < 0xFFFFFF00])

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def role_reply(self, ev):
        self.engine.role_reply(ev.msg.datapath, ev.msg.role)

    @set_ev_cls(ofp_event.EventOFPRoleStatus, MAIN_DISPATCHER)
    def role_status(self, ev):
        """The switch changed our role (another replica became master): HA."""
        self.engine.role_reply(ev.msg.datapath, ev.msg.role)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev):
        msg = ev.msg
        self.engine.switch_error(msg.datapath, msg.xid, msg.type, msg.code,
                                 bytes(msg.data) if msg.data else b"")
