"""Validation and allocation for model objects: names, references, CIDRs, addresses, MACs, VNIs."""
from __future__ import annotations

import random
import re

import netaddr

from topology.errors import WeftError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAC_PREFIX = (0x02, 0x77, 0x65)     # locally administered, "we"
VNI_FIRST = 1000
VNI_MAX = 0xFFFFFF


def name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise WeftError(f"invalid {kind} name {value!r}: use 1-63 letters, digits, '_', '.', '-', "
                        f"starting with a letter or digit")
    return value


def split_ref(ref: str, parts: int, what: str) -> list[str]:
    """Split `TENANT/NET/PORT`-style references, with an error naming the expected shape."""
    shapes = {1: "TENANT", 2: "TENANT/NET", 3: "TENANT/NET/PORT"}
    pieces = ref.split("/") if isinstance(ref, str) else []
    if len(pieces) != parts or not all(pieces):
        raise WeftError(f"invalid {what} reference {ref!r}: expected {shapes.get(parts, what)}")
    kinds = ["tenant", "network", "port"]
    for kind, piece in zip(kinds, pieces):
        name(kind, piece)
    return pieces


def cidr(value: str) -> netaddr.IPNetwork:
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid CIDR {value!r}: expected e.g. 10.0.0.0/24") from None
    if net.version != 4:
        raise WeftError(f"invalid CIDR {value!r}: weft networks are IPv4")
    if net.ip != net.network:
        raise WeftError(f"invalid CIDR {value!r}: host bits are set (did you mean {net.cidr}?)")
    if net.prefixlen > 29 or net.prefixlen < 8:
        raise WeftError(f"invalid CIDR {value!r}: the prefix length must be between /8 and /29")
    return net


def route_cidr(value: str) -> netaddr.IPNetwork:
    """A static route's destination: any IPv4 prefix, 0.0.0.0/0 included, host bits clear."""
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid route destination {value!r}: expected e.g. 192.168.5.0/24") from None
    if net.version != 4:
        raise WeftError(f"invalid route destination {value!r}: IPv4 only")
    if net.ip != net.network:
        raise WeftError(f"invalid route destination {value!r}: host bits are set (did you mean {net.cidr}?)")
    return net


def gateway(value: str | None, net: netaddr.IPNetwork) -> str:
    """The network's gateway: the given address (inside the CIDR) or the first host address."""
    if value is None:
        return str(net.network + 1)
    ip = address(value, "gateway")
    usable(ip, net, "gateway")
    return str(ip)


def address(value: str, what: str = "IP address") -> netaddr.IPAddress:
    try:
        ip = netaddr.IPAddress(value, 4)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid {what} {value!r}: expected an IPv4 address like 10.0.0.5") from None
    return ip


def usable(ip: netaddr.IPAddress, net: netaddr.IPNetwork, what: str) -> None:
    if ip not in net:
        raise WeftError(f"{what} {ip} is not inside the network's CIDR {net.cidr}")
    if ip in (net.network, net.broadcast):
        raise WeftError(f"{what} {ip} is the {'network' if ip == net.network else 'broadcast'} "
                        f"address of {net.cidr}")


def port_ip(value: str, net: netaddr.IPNetwork, gw: str | None, taken: set[str]) -> str:
    ip = address(value.split("/")[0] if isinstance(value, str) else value)
    usable(ip, net, "IP")
    if gw and str(ip) == gw:
        raise WeftError(f"IP {ip} is the network's gateway address")
    if str(ip) in taken:
        raise WeftError(f"IP {ip} is already used by another port of this network")
    return str(ip)


def allocate_ip(net: netaddr.IPNetwork, gw: str | None, taken: set[str]) -> str:
    reserved = taken | ({gw} if gw else set())
    for ip in net.iter_hosts():
        if str(ip) not in reserved:
            return str(ip)
    raise WeftError(f"no free IP address left in {net.cidr}", status=409)


def mac(value: str) -> str:
    try:
        eui = netaddr.EUI(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid MAC address {value!r}: expected e.g. 02:77:65:00:00:01") from None
    if eui.version != 48:
        raise WeftError(f"invalid MAC address {value!r}: expected 48 bits")
    if eui.words[0] & 1:
        raise WeftError(f"invalid MAC address {value!r}: it is a multicast address")
    if int(eui) == 0:
        raise WeftError(f"invalid MAC address {value!r}: all zeros")
    eui.dialect = netaddr.mac_unix_expanded
    return str(eui)


def allocate_mac(taken: set[str], rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    for _ in range(1000):
        tail = rng.getrandbits(24)
        candidate = ":".join(f"{b:02x}" for b in (*MAC_PREFIX, tail >> 16, (tail >> 8) & 255, tail & 255))
        if candidate not in taken:
            return candidate
    raise WeftError("could not allocate a unique MAC address", status=500)


def allocate_vni(taken: set[int]) -> int:
    vni = max([VNI_FIRST - 1, *taken]) + 1
    if vni <= VNI_MAX:
        return vni
    for vni in range(VNI_FIRST, VNI_MAX + 1):
        if vni not in taken:
            return vni
    raise WeftError("no free VNI left", status=409)


def dns_servers(values) -> tuple[str, ...]:
    return tuple(str(address(v, "DNS server")) for v in (values or ()))
