"""Fast, never-raising decode of sampled headers: Ethernet/802.1Q/IPv4/IPv6/TCP/UDP/VXLAN/Geneve.

Sampled headers are cut short by design (128 bytes by default), so every parser here stops
quietly where the bytes end, marks the result `truncated`, and returns what it could decode.
VXLAN (UDP 4789) and Geneve (UDP 6081) payloads are decoded one level deep into `inner`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import AF_INET6, inet_ntoa, inet_ntop

VXLAN_PORT = 4789
GENEVE_PORT = 6081

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_TEB = 0x6558  # transparent Ethernet bridging (Geneve payload type)
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_MAX_VLAN_TAGS = 4
_MAX_IPV6_EXT = 8
# hop-by-hop, routing, destination options: length in 8-octet units
_IPV6_EXT = frozenset((0, 43, 60))
_IPV6_FRAG = 44

_ETH = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_TCP_FLAGS = struct.Struct("!H")
_VXLAN = struct.Struct("!B3xI")
_GENEVE = struct.Struct("!BBHI")
_FRAG6 = struct.Struct("!BxH")


@dataclass(slots=True)
class PacketInfo:
    src_mac: str | None = None
    dst_mac: str | None = None
    vlan: int | None = None  # outermost 802.1Q VLAN id
    ether_type: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    ip_protocol: int | None = None
    tos: int | None = None  # IPv4 TOS / IPv6 traffic class
    src_port: int | None = None
    dst_port: int | None = None
    tcp_flags: int | None = None
    truncated: bool = False  # a header wanted here (or in `inner`) was cut short
    tunnel_type: str | None = None  # 'vxlan' | 'geneve' when this packet encapsulates `inner`
    vni: int | None = None
    inner: PacketInfo | None = None


def parse_ethernet(buf: bytes, off: int = 0, end: int | None = None, depth: int = 0) -> PacketInfo:
    """Decode an Ethernet frame starting at buf[off]; never raises."""
    info = PacketInfo()
    if end is None or end > len(buf):
        end = len(buf)
    if end - off < 14:
        if end - off >= 12:
            info.dst_mac = buf[off:off + 6].hex(":")
            info.src_mac = buf[off + 6:off + 12].hex(":")
        info.truncated = True
        return info
    dst, src, etype = _ETH.unpack_from(buf, off)
    info.dst_mac = dst.hex(":")
    info.src_mac = src.hex(":")
    off += 14
    tags = 0
    while etype in _VLAN_TPIDS:
        if tags == _MAX_VLAN_TAGS or end - off < 4:
            info.truncated = end - off < 4
            info.ether_type = etype
            return info
        tci, etype = _TAG.unpack_from(buf, off)
        if tags == 0:
            info.vlan = tci & 0x0FFF
        tags += 1
        off += 4
    info.ether_type = etype
    if etype == ETH_IPV4:
        _ipv4(buf, off, end, info, depth)
    elif etype == ETH_IPV6:
        _ipv6(buf, off, end, info, depth)
    return info


def parse_ip(buf: bytes, off: int = 0, end: int | None = None, depth: int = 0) -> PacketInfo:
    """Decode a bare IPv4 or IPv6 packet (sFlow header protocols 11/12); never raises."""
    info = PacketInfo()
    if end is None or end > len(buf):
        end = len(buf)
    if end <= off:
        info.truncated = True
        return info
    version = buf[off] >> 4
    if version == 4:
        info.ether_type = ETH_IPV4
        _ipv4(buf, off, end, info, depth)
    elif version == 6:
        info.ether_type = ETH_IPV6
        _ipv6(buf, off, end, info, depth)
    return info


def _ipv4(buf: bytes, off: int, end: int, info: PacketInfo, depth: int) -> None:
    if end - off < 20:
        info.truncated = True
        return
    vihl, tos, _tlen, _ident, frag, _ttl, proto, _csum, src, dst = _IP4.unpack_from(buf, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20:
        return
    info.src_ip = inet_ntoa(src)
    info.dst_ip = inet_ntoa(dst)
    info.ip_protocol = proto
    info.tos = tos
    if frag & 0x1FFF:  # non-first fragment: no transport header here
        return
    _l4(buf, off + ihl, end, proto, info, depth)


def _ipv6(buf: bytes, off: int, end: int, info: PacketInfo, depth: int) -> None:
    if end - off < 40:
        info.truncated = True
        return
    vtcfl, _plen, nxt, _hlim, src, dst = _IP6.unpack_from(buf, off)
    if vtcfl >> 28 != 6:
        return
    info.src_ip = inet_ntop(AF_INET6, src)
    info.dst_ip = inet_ntop(AF_INET6, dst)
    info.tos = (vtcfl >> 20) & 0xFF
    off += 40
    for _ in range(_MAX_IPV6_EXT):
        if nxt in _IPV6_EXT:
            if end - off < 2:
                info.ip_protocol = nxt
                info.truncated = True
                return
            nxt, hlen = buf[off], (buf[off + 1] + 1) << 3
            off += hlen
        elif nxt == _IPV6_FRAG:
            if end - off < 8:
                info.ip_protocol = nxt
                info.truncated = True
                return
            nxt2, fragoff = _FRAG6.unpack_from(buf, off)
            off += 8
            nxt = nxt2
            if fragoff & 0xFFF8:  # non-first fragment
                info.ip_protocol = nxt
                return
        else:
            break
    info.ip_protocol = nxt
    _l4(buf, off, end, nxt, info, depth)


def _l4(buf: bytes, off: int, end: int, proto: int, info: PacketInfo, depth: int) -> None:
    if proto == 17:
        if end - off < 8:
            info.truncated = True
            if end - off >= 4:
                info.src_port, info.dst_port = _PORTS.unpack_from(buf, off)
            return
        sport, dport = _PORTS.unpack_from(buf, off)
        info.src_port = sport
        info.dst_port = dport
        if depth == 0:
            if dport == VXLAN_PORT:
                _vxlan(buf, off + 8, end, info)
            elif dport == GENEVE_PORT:
                _geneve(buf, off + 8, end, info)
    elif proto == 6:
        if end - off < 14:
            info.truncated = True
            if end - off >= 4:
                info.src_port, info.dst_port = _PORTS.unpack_from(buf, off)
            return
        info.src_port, info.dst_port = _PORTS.unpack_from(buf, off)
        info.tcp_flags = _TCP_FLAGS.unpack_from(buf, off + 12)[0] & 0x01FF
    elif proto == 132:  # SCTP
        if end - off < 4:
            info.truncated = True
            return
        info.src_port, info.dst_port = _PORTS.unpack_from(buf, off)


def _vxlan(buf: bytes, off: int, end: int, info: PacketInfo) -> None:
    info.tunnel_type = "vxlan"
    if end - off < 8:
        info.truncated = True
        return
    flags, word = _VXLAN.unpack_from(buf, off)
    if flags & 0x08:  # I flag: VNI valid
        info.vni = word >> 8
    inner = info.inner = parse_ethernet(buf, off + 8, end, 1)
    if inner.truncated:
        info.truncated = True


def _geneve(buf: bytes, off: int, end: int, info: PacketInfo) -> None:
    info.tunnel_type = "geneve"
    if end - off < 8:
        info.truncated = True
        return
    verlen, _flags, ptype, word = _GENEVE.unpack_from(buf, off)
    if verlen >> 6 != 0:  # unknown Geneve version: do not guess at the payload
        return
    info.vni = word >> 8
    inner_off = off + 8 + ((verlen & 0x3F) << 2)
    if inner_off > end:
        info.truncated = True
        return
    if ptype == ETH_TEB:
        inner = parse_ethernet(buf, inner_off, end, 1)
    elif ptype == ETH_IPV4 or ptype == ETH_IPV6:
        inner = parse_ip(buf, inner_off, end, 1)
    else:
        return
    info.inner = inner
    if inner.truncated:
        info.truncated = True
