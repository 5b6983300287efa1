"""Address families of the model: which of a port's addresses are IPv4 or IPv6, and EUI-64 link-locals."""
from __future__ import annotations

import functools
import ipaddress


def is_ipv6(ip: str) -> bool:
    """True for an IPv6 address in text form (weft stores IPv4 dotted, IPv6 RFC 5952)."""
    return ":" in ip


def ipv4s(ips) -> tuple[str, ...]:
    return tuple(ip for ip in ips if ":" not in ip)


def ipv6s(ips) -> tuple[str, ...]:
    return tuple(ip for ip in ips if ":" in ip)


def ordered(ips) -> tuple[str, ...]:
    """A port's addresses as the model keeps them: IPv4 first, each family in stored order
    (an OVSDB set has no order of its own)."""
    return ipv4s(ips) + ipv6s(ips)


@functools.lru_cache(maxsize=1 << 16)     # asked for each compile of its port's flows
def link_local(mac: str) -> str:
    """The fe80::/64 address a NIC derives from its MAC (modified EUI-64, RFC 4291 appendix A)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes((b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]))
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def solicited_node(ip: str) -> str:
    """The solicited-node multicast group of an IPv6 address (ff02::1:ffXX:XXXX)."""
    low = ipaddress.IPv6Address(ip).packed[-3:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff02" + "00" * 8 + "0001ff") + low))


def multicast_mac(ip: str) -> str:
    """The Ethernet group address of an IPv6 multicast address (33:33 + its low 32 bits)."""
    low = ipaddress.IPv6Address(ip).packed[-4:]
    return ":".join(f"{x:02x}" for x in b"\x33\x33" + low)


def router_ip6(cidr6: str) -> str:
    """A router's address on an IPv6 prefix: its `::1` (the allocator never hands it out)."""
    return str(ipaddress.IPv6Network(cidr6)[1])


LINK_LOCAL_PREFIX = "fe80::/10"
