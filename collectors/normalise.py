"""Turn each protocol's decoded output into `FlowRecord`s, undoing sampling exactly once.

* sFlow: one record per flow sample; bytes = frame length x sampling rate, packets = rate.
  The raw sampled header is decoded here; when it is VXLAN or Geneve the record describes
  the inner packet, with the VNI in `tunnel_key` and the outer endpoints in `tunnel_*`.
  OVS tunnel records (1023/1024, 1029/1030) fill the tunnel fields when the header does not.
* NetFlow v5: counts as exported (Open vSwitch does not sample NetFlow); a non-zero
  header sampling interval from another exporter is applied.
* NetFlow v9 / IPFIX: counts taken as exported (Open vSwitch already scales IPFIX counts by
  its sampling probability). Options records are not flows and are skipped.
"""
from __future__ import annotations

from .ie import OVS_TUNNEL_TYPES
from .netflow_v5 import NetflowV5Packet
from .packet import GENEVE_PORT, VXLAN_PORT, PacketInfo, parse_ethernet, parse_ip
from .records import FlowRecord
from .sflow import (HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6, EthernetFrameData,
                    ExtendedIPv4Tunnel, ExtendedSwitch, ExtendedVni, FlowSample, IPv4Data,
                    IPv6Data, RawPacketHeader, SflowDatagram)

_IP_DATA = (IPv4Data, IPv6Data)


# ------------------------------------------------------------------ sFlow


def from_sflow(dgram: SflowDatagram, exporter=None,
               received: float | None = None) -> list[FlowRecord]:
    """One FlowRecord per flow sample; `received` (unix time) stamps start/end."""
    exp = exporter if exporter is not None else dgram.agent
    return [sflow_sample_record(s, exp, received)
            for s in dgram.samples if type(s) is FlowSample]


def _apply_packet(rec: FlowRecord, p: PacketInfo) -> None:
    rec.src_mac = p.src_mac
    rec.dst_mac = p.dst_mac
    rec.vlan = p.vlan
    rec.ether_type = p.ether_type
    rec.src_ip = p.src_ip
    rec.dst_ip = p.dst_ip
    rec.ip_protocol = p.ip_protocol
    rec.tos = p.tos
    rec.src_port = p.src_port
    rec.dst_port = p.dst_port
    rec.tcp_flags = p.tcp_flags


def _tunnel_name(proto: int, dport: int) -> str | None:
    if proto == 17:
        return "vxlan" if dport == VXLAN_PORT else "geneve" if dport == GENEVE_PORT else None
    return "gre" if proto == 47 else None


def sflow_sample_record(s: FlowSample, exporter, received: float | None = None) -> FlowRecord:
    rate = s.sampling_rate or 1
    rec = FlowRecord(exporter, "sflow", 0, rate, start=received, end=received,
                     sampling_scale=rate, in_interface=s.input_ifindex,
                     out_interface=s.output_ifindex)
    raw = eth = ipd = sw = tun_in = tun_out = vni_in = vni_out = None
    for r in s.records:
        t = type(r)
        if t is RawPacketHeader:
            raw = r
        elif t is EthernetFrameData:
            eth = r
        elif t in _IP_DATA:
            ipd = r
        elif t is ExtendedSwitch:
            sw = r
        elif t is ExtendedIPv4Tunnel:
            if r.egress:
                tun_out = r
            else:
                tun_in = r
        elif t is ExtendedVni:
            if r.egress:
                vni_out = r
            else:
                vni_in = r
    length = None
    if raw is not None:
        length = raw.frame_length
        proto = raw.protocol
        if proto == HEADER_ETHERNET:
            pkt = parse_ethernet(raw.header)
        elif proto == HEADER_IPV4 or proto == HEADER_IPV6:
            pkt = parse_ip(raw.header)
        else:
            pkt = None
        if pkt is not None:
            inner = pkt.inner
            if inner is not None:
                _apply_packet(rec, inner)
                rec.tunnel_type = pkt.tunnel_type
                rec.tunnel_key = pkt.vni
                rec.tunnel_src = pkt.src_ip
                rec.tunnel_dst = pkt.dst_ip
                rec.tunnel_src_port = pkt.src_port
                rec.tunnel_dst_port = pkt.dst_port
            elif pkt.tunnel_type is not None:  # tunnel header cut before the inner frame
                rec.tunnel_type = pkt.tunnel_type
                rec.tunnel_key = pkt.vni
                rec.tunnel_src = pkt.src_ip
                rec.tunnel_dst = pkt.dst_ip
                rec.tunnel_src_port = pkt.src_port
                rec.tunnel_dst_port = pkt.dst_port
            else:
                _apply_packet(rec, pkt)
    if eth is not None:
        if rec.src_mac is None and rec.tunnel_type is None:
            rec.src_mac = eth.src_mac
            rec.dst_mac = eth.dst_mac
            rec.ether_type = eth.eth_type
        if length is None:
            length = eth.length
    if ipd is not None:
        if rec.src_ip is None and rec.tunnel_type is None:
            rec.src_ip = ipd.src_ip
            rec.dst_ip = ipd.dst_ip
            rec.ip_protocol = ipd.protocol
            rec.src_port = ipd.src_port
            rec.dst_port = ipd.dst_port
            rec.tcp_flags = ipd.tcp_flags
        if length is None:
            length = ipd.length
    if sw is not None and rec.vlan is None:
        rec.vlan = sw.src_vlan
    tun = tun_in if tun_in is not None else tun_out
    if tun is not None and rec.tunnel_src is None:
        rec.tunnel_src = tun.src_ip
        rec.tunnel_dst = tun.dst_ip
        rec.tunnel_src_port = tun.src_port
        rec.tunnel_dst_port = tun.dst_port
        if rec.tunnel_type is None:
            rec.tunnel_type = _tunnel_name(tun.protocol, tun.dst_port)
    vni = vni_in if vni_in is not None else vni_out
    if vni is not None and rec.tunnel_key is None:
        rec.tunnel_key = vni.vni
    rec.bytes = (length or 0) * rate
    return rec


# ------------------------------------------------------------------ NetFlow v5


def _uptime_delta_ms(uptime: int, stamp: int) -> int:
    """uptime - stamp in ms, modulo 2**32, as a signed value (stamps slightly ahead stay small)."""
    d = (uptime - stamp) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


def from_netflow5(pkt: NetflowV5Packet, exporter) -> list[FlowRecord]:
    scale = pkt.sampling_interval if pkt.sampling_interval > 1 else 1
    now = pkt.unix_secs + pkt.unix_nsecs / 1e9
    up = pkt.sys_uptime
    out = []
    append = out.append
    for r in pkt.records:
        append(FlowRecord(
            exporter, "netflow5", r.octets * scale, r.packets * scale,
            src_ip=r.src_addr, dst_ip=r.dst_addr, ip_protocol=r.protocol, tos=r.tos,
            src_port=r.src_port, dst_port=r.dst_port, tcp_flags=r.tcp_flags,
            in_interface=r.input, out_interface=r.output,
            start=now - _uptime_delta_ms(up, r.first) / 1000.0,
            end=now - _uptime_delta_ms(up, r.last) / 1000.0,
            sampling_scale=scale, ether_type=0x0800))
    return out


# ------------------------------------------------------------------ NetFlow v9 / IPFIX


def from_netflow9(pkt, exporter) -> list[FlowRecord]:
    """FlowRecords for the data (not options) records of a decoded NetflowV9Packet."""
    return data_sets_records(pkt.data_sets, exporter, "netflow9")


def from_ipfix(msg, exporter) -> list[FlowRecord]:
    """FlowRecords for the data (not options) records of a decoded IpfixMessage."""
    return data_sets_records(msg.data_sets, exporter, "ipfix")


def data_sets_records(data_sets, exporter, protocol: str) -> list[FlowRecord]:
    out = []
    for ds in data_sets:
        if ds.options:
            continue
        for d in ds.records:
            out.append(template_record(d, ds, exporter, protocol))
    return out


def _str(v) -> str | None:
    return v if type(v) is str else None


def _int(v) -> int | None:
    return v if type(v) is int else None


def _first_int(d: dict, *names: str) -> int | None:
    for name in names:
        v = d.get(name)
        if type(v) is int:
            return v
    return None


def _first_str(d: dict, *names: str) -> str | None:
    for name in names:
        v = d.get(name)
        if type(v) is str:
            return v
    return None


_COUNTER_MAX = (1 << 64) - 1


def _counter(v: int | None) -> int | None:
    """A delta counter as exported, or None past 64 bits: no IPFIX / v9 counter is longer
    than 8 bytes, and a hostile 200-byte one would overflow every float made of the sums
    (rates, Prometheus)."""
    return v if v is None or v <= _COUNTER_MAX else None


def _times(d: dict, ds) -> tuple[float | None, float | None]:
    def g(name):     # times past 64 bits (hostile) are no times: float() would overflow
        return _counter(d.get(name) if type(d.get(name)) is int else None)
    for s_name, e_name, div in (("flowStartMilliseconds", "flowEndMilliseconds", 1000.0),
                                ("flowStartSeconds", "flowEndSeconds", 1.0)):
        s, e = _int(g(s_name)), _int(g(e_name))
        if s is not None or e is not None:
            return (None if s is None else s / div), (None if e is None else e / div)
    s, e = _int(g("flowStartDeltaMicroseconds")), _int(g("flowEndDeltaMicroseconds"))
    if s is not None or e is not None:
        t = ds.export_time
        return (None if s is None else t - s / 1e6), (None if e is None else t - e / 1e6)
    s, e = _int(g("flowStartSysUpTime")), _int(g("flowEndSysUpTime"))
    if s is not None or e is not None:
        init = _int(g("systemInitTimeMilliseconds"))
        if init is not None:
            return ((None if s is None else (init + s) / 1000.0),
                    (None if e is None else (init + e) / 1000.0))
        if ds.sys_uptime is not None:
            t, up = ds.export_time, ds.sys_uptime
            return ((None if s is None else t - _uptime_delta_ms(up, s) / 1000.0),
                    (None if e is None else t - _uptime_delta_ms(up, e) / 1000.0))
    return None, None


def template_record(d: dict, ds, exporter, protocol: str) -> FlowRecord:
    """One FlowRecord from a decoded template data record (dict of named fields)."""
    start, end = _times(d, ds)
    octets = _counter(_first_int(d, "layer2OctetDeltaCount", "octetDeltaCount"))
    packets = _counter(_first_int(d, "packetDeltaCount"))
    ttype = _int(d.get("tunnel_type"))
    return FlowRecord(
        exporter, protocol, octets or 0, packets or 0,
        src_mac=_first_str(d, "sourceMacAddress"),
        dst_mac=_first_str(d, "destinationMacAddress"),
        vlan=_first_int(d, "vlanId", "dot1qVlanId"),
        ether_type=_int(d.get("ethernetType")),
        src_ip=_first_str(d, "sourceIPv4Address", "sourceIPv6Address"),
        dst_ip=_first_str(d, "destinationIPv4Address", "destinationIPv6Address"),
        ip_protocol=_int(d.get("protocolIdentifier")),
        tos=_int(d.get("ipClassOfService")),
        src_port=_int(d.get("sourceTransportPort")),
        dst_port=_int(d.get("destinationTransportPort")),
        tcp_flags=_int(d.get("tcpControlBits")),
        in_interface=_int(d.get("ingressInterface")),
        out_interface=_int(d.get("egressInterface")),
        start=start, end=end, sampling_scale=1,
        tunnel_key=_int(d.get("tunnel_key")),
        tunnel_type=None if ttype is None else OVS_TUNNEL_TYPES.get(ttype, f"type{ttype}"),
        tunnel_src=_str(d.get("tunnel_source_ipv4_address")),
        tunnel_dst=_str(d.get("tunnel_destination_ipv4_address")),
        tunnel_src_port=_int(d.get("tunnel_source_transport_port")),
        tunnel_dst_port=_int(d.get("tunnel_destination_transport_port")),
    )
