"""The flow record: one OpenFlow flow as plain, hashable data (no os-ken objects, no I/O).

Match fields and set_field targets use os-ken's OXM names (`in_port`, `eth_src`, `eth_dst`,
`eth_type`, `arp_op`, `arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha`, `ip_proto`, `ipv4_src`,
`ipv4_dst`, `tcp_src`, `tcp_dst`, `udp_src`, `udp_dst`, `icmpv4_type`, `icmpv4_code`,
`ipv6_src`, `ipv6_dst`, `icmpv6_type`, `ipv6_nd_target`, `ipv6_nd_sll`, `ipv6_nd_tll`,
`tunnel_id`, `tun_ipv4_src`, `tun_ipv4_dst`, `reg0`..`reg7`, `ct_state`, `ct_zone`, `ct_mark`,
`metadata`). A value is an int or a string (MAC "aa:bb:cc:dd:ee:ff", IPv4 "10.0.0.1", IPv6
"fd00::1"), or a
`(value, mask)` pair for a masked match.

Actions are tuples, applied in order (OpenFlow apply-actions), `goto` last:
    ("output", port)                  port may be IN_PORT / CONTROLLER
    ("set_field", field, value)
    ("move", src_field, dst_field, n_bits)
    ("dec_ttl",)
    ("controller", max_len)
    ("goto", table)
A flow with no actions drops.
"""
from __future__ import annotations

import marshal
import zlib
from dataclasses import dataclass

IN_PORT = 0xFFFFFFF8
CONTROLLER = 0xFFFFFFFD
LOCAL = 0xFFFFFFFE

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
IP_PROTO_ICMPV6 = 58
ND_RS, ND_RA, ND_NS, ND_NA, ND_REDIRECT = 133, 134, 135, 136, 137   # ICMPv6 types
IPV6_UNSPECIFIED = "::"
BROADCAST = "ff:ff:ff:ff:ff:ff"
MULTICAST_BIT = ("01:00:00:00:00:00", "01:00:00:00:00:00")
UNICAST = ("00:00:00:00:00:00", "01:00:00:00:00:00")


@dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: tuple      # sorted ((field, value), ...)
    actions: tuple    # ((kind, ...), ...)
    cookie: int = 0

    def __post_init__(self):
        # what identifies an installed flow when reconciling: (table, priority, cookie); kept
        # as an attribute (not a field) because planning reads it for every flow of a host
        object.__setattr__(self, "key", (self.table, self.priority, self.cookie))
        # hashed once: a flow is a dict key in the encoder's cache and in plans, looked up
        # several times per bundle (the generated __hash__ walked the nested tuples each time)
        object.__setattr__(self, "_hash", hash((self.table, self.priority, self.match,
                                                self.actions, self.cookie)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):               # rebuilt, so another process hashes it its own way
        return Flow, (self.table, self.priority, self.match, self.actions, self.cookie)

    def match_dict(self) -> dict:
        return dict(self.match)


def make_match(**fields) -> tuple:
    """A canonical (sorted) match tuple from keyword fields; None values are left out."""
    if None in fields.values():
        return tuple(sorted((k, v) for k, v in fields.items() if v is not None))
    return tuple(sorted(fields.items()))        # keys are unique: values are never compared


def content_hash(table: int, priority: int, match: tuple, actions: tuple) -> int:
    """A stable 24-bit digest of what a flow does (part of its cookie).

    Stable across processes (a restarted weftd finds its flows by cookie): marshal's format 0
    writes values only (formats 3 and up mark interned strings and shared objects, which vary
    between processes), and CRC-32 digests it. 0.9 us a flow against 3.3 us for a BLAKE2 of
    its repr, on the path of every new flow (a port's plug builds ~100)."""
    return zlib.crc32(marshal.dumps((table, priority, match, actions), 0)) & 0xFFFFFF
