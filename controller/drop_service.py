"""Drop samples from the switches (packet-ins of drop flows) attributed to ports, groups and tenants.

Runs on the OpenFlow loop's thread: `raw_packet_in` reads a drop flow's packet-in off the wire
there (controller/ofpacketin.py, not os-ken's parser) before os-ken sees it. It reads only what
the engine publishes (`effective_model`, `host_of_dpid`, `admitted`) and writes only to the drop
aggregate (collectors/drops.py, which has its own lock), so no engine state is touched off the
engine's loop. The drop flow's cookie gives the reason (flows/drops.py); the packet-in's
pipeline fields give where: in_port (the sender's port, or the tunnel), reg6 (the network's
VNI) and reg4 (the port an ingress-ACL drop was headed to). A security-group drop names the
groups of the port whose rules had no allowing rule (the sender's at egress, the receiver's at
ingress); an unknown destination or neighbour that only another tenant has is `isolation`.
"""
from __future__ import annotations

import logging
import socket
import time

from collectors.drops import DropLog, DropSample
from collectors.packet import parse_ethernet
from controller import ofpacketin, replay
from flows import cookies
from flows import pipeline as P

LOG = logging.getLogger(__name__)
PROTOS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
ETHERTYPES = {0x0806: "arp", 0x0800: "ipv4", 0x86DD: "ipv6"}
EGRESS_TABLES = (P.PORT_SECURITY, P.EGRESS_CT, P.EGRESS_ACL)
INGRESS_TABLES = (P.INGRESS_CT, P.INGRESS_ACL)


class _Lookup:
    """Per model snapshot: networks by VNI, ports by (VNI, MAC or IP) and anywhere."""

    def __init__(self, model):
        self.model = model
        self.net_by_vni = {n.vni: n for n in model.networks.values()}
        self.in_net: dict = {}
        self.anywhere: dict = {}
        for p in model.ports.values():
            net = model.network_of(p)
            for key in (p.mac, *p.ips):
                if net is not None:
                    self.in_net[(net.vni, key)] = p
                self.anywhere.setdefault(key, p)


class DropService:
    def __init__(self, engine, log: DropLog):
        self.engine, self.log = engine, log
        self._lookup: _Lookup | None = None
        self.counters = {"packet_ins": 0, "unreadable": 0, "replayed": 0}

    def _index(self, model) -> _Lookup:
        if self._lookup is None or self._lookup.model is not model:
            self._lookup = _Lookup(model)
        return self._lookup

    def raw_packet_in(self, datapath, msg: bytes) -> bool:
        """One packet-in as read off the wire (the OpenFlow loop's raw handler): a drop flow's
        sample is taken here (True); any other packet-in is left to os-ken (False)."""
        if msg[0] < 4:                          # before OpenFlow 1.3 a packet-in has another layout
            return False
        try:
            if not ofpacketin.cookie_of(msg) >> 56 & cookies.DROP_FLAG:
                return False
            if not self.engine.admitted(datapath):
                return True                     # a refused or not yet admitted connection
            pin = ofpacketin.parse(msg)
        except ofpacketin.Malformed as exc:
            self.counters["unreadable"] += 1
            LOG.warning("unreadable drop sample from %s: %s", getattr(datapath, "address", "?"), exc)
            return True
        try:
            host = self.engine.host_of_dpid(datapath.id)
            if self._replay(datapath, host, pin):
                return True
            hold = getattr(self.engine, "hold", None)
            if hold is not None:
                model = self.engine.effective_model()
                vni = replay.parked_vni(model, self._index(model).in_net, host, pin.cookie, pin.match,
                                        pin.data, pin.total_len)
                # held for a NIC parked on this host, to go back when it is (replay.py); unless
                # its bundle went meanwhile: then it goes back now
                if vni is not None and not hold(host, bytes(pin.data[:6]), vni, pin.data,
                                                replay.encode(datapath, pin.table_id, pin.match, pin.data)) \
                        and self._replay(datapath, host, pin):
                    return True
            self.packet_in(datapath, pin.cookie, pin.table_id, pin.match, pin.data)
        except Exception:                       # never into the OpenFlow loop: it would drop the switch
            LOG.exception("drop sample packet-in failed")
        return True

    def _replay(self, datapath, host, pin) -> bool:
        """The host's datapath answered from its cache: the NIC's flows are in (replay.py)."""
        if not replay.wanted(self.engine, host, pin.cookie, pin.match, pin.data, pin.total_len):
            return False
        datapath.send_msg(replay.packet_out(datapath, pin.table_id, pin.match, pin.data))
        self.counters["replayed"] += 1
        return True

    def packet_in(self, datapath, cookie: int, table: int, match: dict, data: bytes) -> None:
        self.counters["packet_ins"] += 1
        host = self.engine.host_of_dpid(datapath.id) or f"dpid:{datapath.id:016x}"
        sample = self.sample(self.engine.effective_model(), host, cookie, table, match, data,
                             time.time())
        self.log.add(sample)

    def sample(self, model, host: str, cookie: int, table: int, match: dict, data: bytes,
               now: float) -> DropSample:
        """Pure: one packet-in as a DropSample."""
        ix = self._index(model)
        reason = cookies.drop_reason(cookie) or "unknown"
        _feature, obj = cookies.decode(cookie)
        owner = model.owner(obj) if obj else None
        info = parse_ethernet(data)
        in_port, vni = match.get("in_port"), match.get(P.REG_NET) or match.get("tunnel_id")
        src_port = None
        if in_port is not None and in_port != P.TUNNEL_OFPORT:
            src_port = model.port_at(host, in_port)
        elif vni is not None:
            src_port = ix.in_net.get((vni, info.src_ip)) or ix.in_net.get((vni, info.src_mac))
        dst_text = info.dst_ip or info.dst_mac
        if info.ether_type == 0x0806 and len(data) >= 42:         # ARP: the address asked for
            dst_text = socket.inet_ntoa(data[38:42])
        dst_port = None
        if match.get(P.REG_OUT):
            dst_port = model.port_at(host, match[P.REG_OUT])
        if dst_port is None and vni is not None:
            dst_port = ix.in_net.get((vni, dst_text)) or ix.in_net.get((vni, info.dst_mac))
        elsewhere = None
        if dst_port is None:
            elsewhere = ix.anywhere.get(dst_text) or ix.anywhere.get(info.dst_mac)
        group = None
        if reason == "security-group":
            who = src_port if table in EGRESS_TABLES else dst_port
            if who is not None:
                group = ",".join(f"{who.tenant}/{g}" for g in who.security_groups) or None
        src_tenant = src_port.tenant if src_port else None
        if reason in ("unknown-destination", "unknown-neighbour") and elsewhere is not None \
                and src_tenant is not None and elsewhere.tenant != src_tenant:
            reason = "isolation"
        proto = PROTOS.get(info.ip_protocol) if info.ip_protocol is not None else None
        proto = proto or ETHERTYPES.get(info.ether_type, f"0x{info.ether_type or 0:04x}")
        shown_dst = dst_port or elsewhere
        return DropSample(
            time=now, host=host, reason=reason, table=table,
            src=src_port.ref if src_port else (info.src_ip or info.src_mac or "?"),
            dst=shown_dst.ref if shown_dst else (dst_text or "?"),
            proto=proto, dport=info.dst_port if proto in ("tcp", "udp") else None, group=group,
            owner=owner, src_tenant=src_tenant,
            dst_tenant=shown_dst.tenant if shown_dst else None)
