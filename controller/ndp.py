"""IPv6 neighbour discovery frames (RFC 4861): parse a solicitation, build the advertisement that answers it."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_TYPE_IPV6 = 0x86DD
ICMPV6 = 58
NS, NA = 135, 136
OPT_SLL, OPT_TLL = 1, 2
FLAG_ROUTER, FLAG_SOLICITED, FLAG_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
HOP_LIMIT = 255                 # ND is valid only from the link itself (RFC 4861 7.1.1)
_ETH = struct.Struct("!6s6sH")
_IP6 = struct.Struct("!IHBB16s16s")


@dataclass(frozen=True)
class Solicitation:
    eth_src: str
    ip_src: str                 # "::" for duplicate address detection
    ip_dst: str
    target: str
    sll: str | None             # the source link-layer address option, if any


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_solicitation(data: bytes) -> Solicitation | None:
    """The neighbour solicitation in an untagged Ethernet frame, or None if it is not a valid
    one (no extension headers, hop limit 255, code 0, a unicast target)."""
    if len(data) < 14 + 40 + 24:
        return None
    dst, src, eth_type = _ETH.unpack_from(data, 0)
    if eth_type != ETH_TYPE_IPV6:
        return None
    first, length, nxt, hops, ip_src, ip_dst = _IP6.unpack_from(data, 14)
    if first >> 28 != 6 or nxt != ICMPV6 or hops != HOP_LIMIT or 54 + length > len(data) or length < 24:
        return None
    icmp = data[54:54 + length]
    if icmp[0] != NS or icmp[1] != 0:
        return None
    target = ipaddress.IPv6Address(icmp[8:24])
    if target.is_multicast:
        return None
    sll, off = None, 24
    while off + 2 <= len(icmp):
        kind, units = icmp[off], icmp[off + 1]
        if units == 0 or off + 8 * units > len(icmp):
            return None                     # a zero-length or truncated option: invalid (7.1.1)
        if kind == OPT_SLL and units == 1:
            sll = _mac(icmp[off + 2:off + 8])
        off += 8 * units
    return Solicitation(_mac(src), str(ipaddress.IPv6Address(ip_src)),
                        str(ipaddress.IPv6Address(ip_dst)), str(target), sll)


def checksum(src: bytes, dst: bytes, payload: bytes) -> int:
    """The ICMPv6 checksum over the IPv6 pseudo-header and `payload` (checksum field zero)."""
    data = src + dst + struct.pack("!I3xB", len(payload), ICMPV6) + payload
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def advertisement(sol: Solicitation, mac: str, router: bool = False) -> bytes | None:
    """The solicited advertisement for `sol`'s target at `mac`, sent to the solicitor (None for
    duplicate address detection, which must not be answered on a VM's behalf)."""
    if sol.ip_src == "::":
        return None
    src = ipaddress.IPv6Address(sol.target).packed
    dst = ipaddress.IPv6Address(sol.ip_src).packed
    hw = bytes.fromhex(mac.replace(":", ""))
    flags = FLAG_SOLICITED | FLAG_OVERRIDE | (FLAG_ROUTER if router else 0)
    body = struct.pack("!I16sBB6s", flags, src, OPT_TLL, 1, hw)
    csum = checksum(src, dst, struct.pack("!BBH", NA, 0, 0) + body)
    icmp = struct.pack("!BBH", NA, 0, csum) + body
    ip6 = _IP6.pack(6 << 28, len(icmp), ICMPV6, HOP_LIMIT, src, dst)
    to = bytes.fromhex((sol.sll or sol.eth_src).replace(":", ""))
    return _ETH.pack(to, hw, ETH_TYPE_IPV6) + ip6 + icmp
