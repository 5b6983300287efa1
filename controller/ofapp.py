"""The os-ken application: OpenFlow connections in, flow-mods out; every decision is the engine's."""
from __future__ import annotations

import logging

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_4

LOG = logging.getLogger(__name__)
ENGINE = None          # set by weftd before the app is instantiated
DHCP = None            # controller.dhcp_service.DhcpService
LISTENERS = []         # callables(datapath, msg) for other replies (flow dumps for `weft flows`)


class WeftOFApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_4.OFP_VERSION]

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        LOG.info("switch %016x connected", dp.id)
        ENGINE.switch_connected(dp)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def state_change(self, ev):
        if ev.datapath is not None and ev.datapath.id is not None:
            LOG.info("switch %016x disconnected", ev.datapath.id)
            ENGINE.switch_disconnected(ev.datapath)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats_reply(self, ev):
        msg = ev.msg
        more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
        for listener in list(LISTENERS):
            if listener(msg.datapath, msg, more):
                return
        ENGINE.flow_stats(msg.datapath, [(s.table_id, s.priority, s.cookie) for s in msg.body], more)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        if DHCP is not None:
            try:
                DHCP.packet_in(msg.datapath, msg.match["in_port"], bytes(msg.data))
            except Exception:
                LOG.exception("DHCP packet-in failed")

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        name = msg.desc.name.decode(errors="replace") if isinstance(msg.desc.name, bytes) else msg.desc.name
        gone = msg.reason == ofp.OFPPR_DELETE
        ENGINE.set_port(msg.datapath, name, None if gone else msg.desc.port_no)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc(self, ev):
        for desc in ev.msg.body:
            name = desc.name.decode(errors="replace") if isinstance(desc.name, bytes) else desc.name
            if desc.port_no < 0xFFFFFF00:
                ENGINE.set_port(ev.msg.datapath, name, desc.port_no)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        if msg.type == ofp.OFPET_METER_MOD_FAILED and msg.code == ofp.OFPMMFC_METER_EXISTS:
            return          # weft re-adds its meter on every connection
        LOG.error("switch %016x error type=%s code=%s data=%s", msg.datapath.id, msg.type,
                  msg.code, bytes(msg.data[:64]).hex() if msg.data else "")
