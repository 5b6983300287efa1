"""Validation and allocation for model objects: names, references, CIDRs, addresses, MACs, VNIs,
security-group rules and their keys."""
from __future__ import annotations

import random
import re
import socket

import netaddr

from topology.errors import WeftError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAC_PREFIX = (0x02, 0x77, 0x65)     # locally administered, "we"
VNI_FIRST = 1000
VNI_MAX = 0xFFFFFF
RULE_KEY_FIRST = 1                  # 0 is "no rule" (the conntrack mark of nothing admitted)
RULE_KEY_MAX = 0xFFFFFFFF
DIRECTIONS = ("ingress", "egress")
PROTOS = ("tcp", "udp", "icmp", "any")
ETHERTYPES = ("ipv4", "ipv6")
ANY_CIDR = "0.0.0.0/0"
ANY_CIDR6 = "::/0"
ANY = {"ipv4": ANY_CIDR, "ipv6": ANY_CIDR6}
DEFAULT_SG = "default"
# the fields that make a rule what it is (two rules of a group may not share all of them)
RULE_FIELDS = ("direction", "proto", "port_min", "port_max", "icmp_type", "remote_cidr", "remote_sg",
               "ethertype")


def name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):      # `$` would let "x\n" in
        raise WeftError(f"invalid {kind} name {value!r}: use 1-63 letters, digits, '_', '.', '-', "
                        f"starting with a letter or digit")
    return value


_SECOND = {"router": ("router", "ROUTER"), "security group": ("security group", "SG")}


def split_ref(ref: str, parts: int, what: str) -> list[str]:
    """Split `TENANT/NET/PORT`-style references, with an error naming the expected shape.

    Two-part references of routers and security groups read `TENANT/ROUTER`, `TENANT/SG`."""
    kinds = ["tenant", "network", "port"]
    shapes = {1: "TENANT", 2: "TENANT/NET", 3: "TENANT/NET/PORT"}
    if parts == 2 and what in _SECOND:
        kinds[1] = _SECOND[what][0]
        shapes[2] = f"TENANT/{_SECOND[what][1]}"
    pieces = ref.split("/") if isinstance(ref, str) else []
    if len(pieces) != parts or not all(pieces):
        raise WeftError(f"invalid {what} reference {ref!r}: expected {shapes.get(parts, what)}")
    for kind, piece in zip(kinds, pieces):
        name(kind, piece)
    return pieces


def prefix(value: str, what: str, example: str = "10.0.0.0/24", versions=(4,)) -> netaddr.IPNetwork:
    """Any IPv4 (or, if `versions` allows, IPv6) prefix with its host bits clear (0.0.0.0/0
    included); errors name `what`."""
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid {what} {value!r}: expected e.g. {example}") from None
    if net.version not in versions:
        raise WeftError(f"invalid {what} {value!r}: IPv4 only")
    if net.ip != net.network:
        raise WeftError(f"invalid {what} {value!r}: host bits are set (did you mean {net.cidr}?)")
    return net


def cidr(value: str) -> netaddr.IPNetwork:
    """A network's CIDR: an IPv4 prefix from /8 to /29."""
    net = prefix(value, "CIDR")
    if net.prefixlen > 29 or net.prefixlen < 8:
        raise WeftError(f"invalid CIDR {value!r}: the prefix length must be between /8 and /29")
    return net


CIDR6_PREFIXLEN = (48, 124)
_NOT_A_PREFIX6 = ((netaddr.IPNetwork("fe80::/10"), "link-local (weft derives every port's link-local "
                   "address from its MAC)"),
                  (netaddr.IPNetwork("ff00::/8"), "multicast"),
                  (netaddr.IPNetwork("::/8"), "reserved (unspecified, loopback, IPv4-mapped)"))


def cidr6(value: str) -> netaddr.IPNetwork:
    """A network's IPv6 prefix: global or unique-local, from /48 to /124 (/64 is usual)."""
    net = prefix(value, "IPv6 CIDR", "fd00:1::/64", versions=(6,))
    lo, hi = CIDR6_PREFIXLEN
    if not lo <= net.prefixlen <= hi:
        raise WeftError(f"invalid IPv6 CIDR {value!r}: the prefix length must be between /{lo} and /{hi}")
    for bad, why in _NOT_A_PREFIX6:
        if net in bad:
            raise WeftError(f"invalid IPv6 CIDR {value!r}: {bad} is {why}")
    return net


def network_cidrs(values) -> tuple[netaddr.IPNetwork, netaddr.IPNetwork | None]:
    """A network's prefixes (`--cidr` repeated): exactly one IPv4 and at most one IPv6."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
        raise WeftError(f"invalid cidrs {values!r}: expected a list like [\"10.0.0.0/24\", \"fd00:1::/64\"]")
    v4, v6 = [], []
    for value in values:
        (v6 if ":" in value else v4).append(value)
    if len(v4) > 1 or len(v6) > 1:
        raise WeftError(f"a network has at most one IPv4 and one IPv6 CIDR, not {', '.join(values)}")
    if not v4:
        raise WeftError(f"a network needs an IPv4 CIDR besides {v6[0]} (IPv6-only networks are not "
                        f"supported yet): add e.g. --cidr 10.0.0.0/24")
    return cidr(v4[0]), (cidr6(v6[0]) if v6 else None)


def address6(value: str, what: str = "IPv6 address") -> netaddr.IPAddress:
    if not isinstance(value, str) or not value.isascii():
        raise WeftError(f"invalid {what} {value!r}: expected an IPv6 address like fd00:1::5")
    try:
        return netaddr.IPAddress(value, 6)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid {what} {value!r}: expected an IPv6 address like fd00:1::5") from None


def text6(ip: netaddr.IPAddress) -> str:
    """The RFC 5952 form weft stores (lower case, longest zero run compressed)."""
    import ipaddress
    return str(ipaddress.IPv6Address(int(ip)))


MAX_IPV6_PER_PORT = 8


def port_ips(values, v4net: netaddr.IPNetwork, gw: str | None, v6net: netaddr.IPNetwork | None,
             taken) -> tuple[list[str], list[str]]:
    """The addresses given for a new port (`--ip` repeated: at most one IPv4, IPv6 only from
    the network's IPv6 prefix), checked and normalised: (IPv4 list, IPv6 list)."""
    if values is None:
        return [], []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise WeftError(f"invalid ips {values!r}: expected a list of addresses")
    v4, v6 = [], []
    for value in values:
        if ":" in value:
            v6.append(port_ip6(value, v6net, taken))
        else:
            v4.append(port_ip(value, v4net, gw, taken))
    if len(v4) > 1:
        raise WeftError(f"a port has one IPv4 address, not {', '.join(v4)}")
    if len(v6) > MAX_IPV6_PER_PORT:
        raise WeftError(f"a port has at most {MAX_IPV6_PER_PORT} IPv6 addresses, not {len(v6)}")
    if len(set(v6)) != len(v6):
        raise WeftError(f"IPv6 address given twice: {', '.join(sorted(a for a in v6 if v6.count(a) > 1))}")
    return v4, v6


def port_ip6(value: str, net: netaddr.IPNetwork | None, taken) -> str:
    _same_prefix(value, net)
    ip = address6(value.split("/")[0])
    if net is None:
        raise WeftError(f"IP {text6(ip)} is IPv6 but the network has no IPv6 CIDR (create it with "
                        f"--cidr twice, e.g. --cidr 10.0.0.0/24 --cidr fd00:1::/64)")
    if ip not in net:
        raise WeftError(f"IP {text6(ip)} is not inside the network's IPv6 CIDR {net.cidr}")
    if ip == net.network:
        raise WeftError(f"IP {text6(ip)} is the subnet-router anycast address of {net.cidr}")
    if int(ip) == net.first + 1:
        raise WeftError(f"IP {text6(ip)} is reserved for the network's router")
    if text6(ip) in taken:
        raise WeftError(f"IP {text6(ip)} is already used by another port of this network")
    return text6(ip)


def allocate_ip6(net: netaddr.IPNetwork, taken) -> str:
    """The lowest free address of an IPv6 prefix from ::2 up (::0 is the subnet-router anycast
    address, ::1 is kept for a router); O(addresses in use)."""
    value = net.first + 2
    while value <= net.last:
        ip = text6(netaddr.IPAddress(value, 6))
        if ip not in taken:
            return ip
        value += 1
    raise WeftError(f"no free IP address left in {net.cidr}", status=409)


def route_cidr(value: str) -> netaddr.IPNetwork:
    """A static route's destination: any IPv4 or IPv6 prefix, 0.0.0.0/0 and ::/0 included
    (not link-local or multicast IPv6, which routers never forward)."""
    net = prefix(value, "route destination", "192.168.5.0/24 or fd00:9::/64", versions=(4, 6))
    if net.version == 6:
        for bad, why in _NOT_A_PREFIX6[:2]:
            if net.prefixlen >= bad.prefixlen and net in bad:
                raise WeftError(f"invalid route destination {value!r}: {bad} is {why.split(' (')[0]}, "
                                f"never routed")
    return net


def route_text(net: netaddr.IPNetwork) -> str:
    """A route destination as weft stores it (IPv6 in RFC 5952 form)."""
    return f"{text6(net.ip)}/{net.prefixlen}" if net.version == 6 else str(net.cidr)


def next_hop(value: str) -> netaddr.IPAddress:
    """A static route's next hop: an IPv4 or IPv6 address."""
    try:
        return netaddr.IPAddress(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise WeftError(f"invalid next hop {value!r}: expected an address like 10.0.0.5 or "
                        f"fd00:1::5") from None


def in_network(ip: netaddr.IPAddress, cidr: str, cidr6: str | None) -> bool:
    """Whether `ip` is inside a network's IPv4 CIDR or its IPv6 prefix."""
    return ip in netaddr.IPNetwork(cidr6 if ip.version == 6 else cidr) if (
        ip.version == 4 or cidr6) else False


def gateway(value: str | None, net: netaddr.IPNetwork) -> str:
    """The network's gateway: the given address (inside the CIDR) or the first host address."""
    if value is None:
        return str(net.network + 1)
    ip = address(value, "gateway")
    usable(ip, net, "gateway")
    return str(ip)


def address(value: str, what: str = "IP address") -> netaddr.IPAddress:
    if not isinstance(value, str) or not value.isascii():   # no integers, no non-ASCII digits
        raise WeftError(f"invalid {what} {value!r}: expected an IPv4 address like 10.0.0.5")
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
    _same_prefix(value, net)
    ip = address(value.split("/")[0] if isinstance(value, str) else value)
    usable(ip, net, "IP")
    if gw and str(ip) == gw:
        raise WeftError(f"IP {ip} is the network's gateway address")
    if str(ip) in taken:
        raise WeftError(f"IP {ip} is already used by another port of this network")
    return str(ip)


def _same_prefix(value, net) -> None:
    """`--ip ADDR/LEN` is accepted only when LEN is the network's own prefix length (it used to
    be dropped silently: 10.1.0.77/8 on a /24 became 10.1.0.77)."""
    if isinstance(value, str) and "/" in value and net is not None:
        plen = value.split("/", 1)[1]
        if not (plen.isascii() and plen.isdigit()) or int(plen) != net.prefixlen:
            raise WeftError(f"IP {value!r}: its prefix /{plen} is not the network's "
                            f"/{net.prefixlen} ({net.cidr}); give the address alone")


def allocate_ip(net: netaddr.IPNetwork, gw: str | None, taken: set[str]) -> str:
    reserved = taken | ({gw} if gw else set())
    for ip in net.iter_hosts():
        if str(ip) not in reserved:
            return str(ip)
    raise WeftError(f"no free IP address left in {net.cidr}", status=409)


def allocate_ip_from(net: netaddr.IPNetwork, gw: str | None, taken, start: int = 0) -> tuple[str, int]:
    """The lowest free host address of `net` at or above the integer `start`, and its integer:
    allocate_ip's answer when no address below `start` is free, in O(addresses skipped)."""
    gw_int = int(netaddr.IPAddress(gw)) if gw else None
    value, last = max(net.first + 1, start), net.last - 1
    while value <= last:
        if value != gw_int:
            ip = socket.inet_ntoa(value.to_bytes(4, "big"))
            if ip not in taken:
                return ip, value
        value += 1
    raise WeftError(f"no free IP address left in {net.cidr}", status=409)


def mac(value: str) -> str:
    if not isinstance(value, str):           # netaddr would read an integer as a MAC
        raise WeftError(f"invalid MAC address {value!r}: expected a string like 02:77:65:00:00:01")
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


# ---- security groups ---------------------------------------------------------------------------
def allocate_rule_key(taken: set[int]) -> int:
    """A rule key (the conntrack mark of what the rule admits): one more than the highest in use,
    so a deleted rule's key is not handed out again while keys remain above it."""
    key = max([RULE_KEY_FIRST - 1, *taken]) + 1
    if key <= RULE_KEY_MAX:
        return key
    expected = RULE_KEY_FIRST
    for used in sorted(k for k in taken if k >= RULE_KEY_FIRST):
        if used > expected:
            return expected
        expected = used + 1
    if expected <= RULE_KEY_MAX:
        return expected
    raise WeftError("no free security-group rule key left", status=409)


def group_name(value: str, tenant: str, user: str) -> str:
    """A security group named as `SG` or `TENANT/SG` by `user` (a port or a group) of `tenant`:
    its name, which must be of that same tenant."""
    if not isinstance(value, str):
        raise WeftError(f"invalid security group {value!r}: expected SG or TENANT/SG")
    if "/" in value:
        owner, sg = split_ref(value, 2, "security group")
        if owner != tenant:
            raise WeftError(f"{user} cannot use security group {value}: only groups of its own "
                            f"tenant ({tenant}) can be used")
        return sg
    return name("security group", value)


def group_names(values, tenant: str, user: str) -> list[str]:
    """A list of security groups (each `SG` or `TENANT/SG` of `tenant`) as sorted unique names."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise WeftError(f"invalid security_groups {values!r}: expected a list of group names")
    return sorted({group_name(v, tenant, user) for v in values})


def _int(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WeftError(f"invalid {what} {value!r}: expected an integer from {lo} to {hi}")
    return value


def port_range(value: str) -> tuple[int, int]:
    """`N` or `N-M` (1 <= N <= M <= 65535) as (N, M)."""
    found = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value) if isinstance(value, str) else None
    if not found:
        raise WeftError(f"invalid port range {value!r}: expected N or N-M, e.g. 22 or 8000-8080")
    first = _int(int(found[1]), "port", 1, 65535)
    last = _int(int(found[2]), "port", 1, 65535) if found[2] else first
    if first > last:
        raise WeftError(f"invalid port range {value!r}: the first port is above the last")
    return first, last


def rule_cidr(value: str, ethertype: str = "ipv4") -> str:
    """The peer prefix of a rule of `ethertype` (0.0.0.0/0, ::/0 is anyone)."""
    net = prefix(value, "remote CIDR", "10.0.0.0/24 or fd00::/64", versions=(4, 6))
    if f"ipv{net.version}" != ethertype:
        raise WeftError(f"remote CIDR {value} is IPv{net.version} but the rule's ethertype is "
                        f"{ethertype} (give --ethertype ipv{net.version})")
    return str(net.cidr)


def _choice(value, what: str, choices: tuple[str, ...]) -> str:
    low = value.lower() if isinstance(value, str) else value
    if low not in choices:
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise WeftError(f"invalid {what} {value!r}: expected {listed}")
    return low


def sg_rule(direction, proto="any", port_min=None, port_max=None, icmp_type=None, remote_cidr=None,
            remote_sg=None, ethertype="ipv4") -> dict:
    """A security-group rule's fields, checked and normalised (the keys of RULE_FIELDS).

    Either remote_cidr or remote_sg (a group name of the rule's tenant; whether it exists is
    the store's business) says who the peer is; with neither, the peer is anyone (0.0.0.0/0)."""
    direction = _choice(direction, "direction", DIRECTIONS)
    proto = _choice("any" if proto is None else proto, "protocol", PROTOS)
    ethertype = "ipv4" if ethertype is None else ethertype
    if (ethertype.lower() if isinstance(ethertype, str) else ethertype) not in ETHERTYPES:
        raise WeftError(f"invalid ethertype {ethertype!r}: expected ipv4 or ipv6")
    ethertype = ethertype.lower()
    if port_min is None and port_max is not None:
        raise WeftError("a port range needs its first port (port_min), not only port_max")
    if port_min is not None:
        if proto not in ("tcp", "udp"):
            raise WeftError(f"a port range only applies to tcp and udp rules, not to {proto}")
        port_min = _int(port_min, "port", 1, 65535)
        port_max = port_min if port_max is None else _int(port_max, "port", 1, 65535)
        if port_min > port_max:
            raise WeftError(f"invalid port range {port_min}-{port_max}: the first port is above the last")
    if icmp_type is not None:
        if proto != "icmp":
            raise WeftError(f"an ICMP type only applies to icmp rules, not to {proto}")
        icmp_type = _int(icmp_type, "ICMP type", 0, 255)
    if remote_cidr is not None and remote_sg is not None:
        raise WeftError("remote_cidr and remote_sg are mutually exclusive: a rule admits either "
                        "addresses or the members of a group")
    if remote_sg is not None:
        remote_sg = name("security group", remote_sg)
    else:
        remote_cidr = ANY[ethertype] if remote_cidr is None else rule_cidr(remote_cidr, ethertype)
    return {"direction": direction, "proto": proto, "port_min": port_min, "port_max": port_max,
            "icmp_type": icmp_type, "remote_cidr": remote_cidr, "remote_sg": remote_sg,
            "ethertype": ethertype}


def rule_identity(rule) -> tuple:
    """What makes two rules of a group the same rule (a dict of RULE_FIELDS or a Rule)."""
    get = rule.get if isinstance(rule, dict) else (lambda k: getattr(rule, k))
    return tuple(get(k) for k in RULE_FIELDS)


def default_sg_rules() -> list[dict]:
    """The rules of every tenant's `default` group, for IPv4 and IPv6 as OpenStack's: anything
    out; in from the group's members."""
    return [sg_rule("egress", "any", remote_cidr=ANY[family], ethertype=family) for family in ETHERTYPES] + \
        [sg_rule("ingress", "any", remote_sg=DEFAULT_SG, ethertype=family) for family in ETHERTYPES]


def traffic_config(cfg) -> None:
    """Exporter settings: sampling 1 in N, intervals in seconds."""
    limits = {"sflow_sampling": (1, 1_000_000), "sflow_polling": (1, 3600),
              "netflow_active_timeout": (1, 3600), "ipfix_sampling": (1, 65535),
              "drop_sample_pps": (1, 100_000), "drop_sample_burst": (1, 100_000)}
    for field, (lo, hi) in limits.items():
        value = getattr(cfg, field)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise WeftError(f"{field.replace('_', '-')} must be a whole number from {lo} to {hi} "
                            f"(got {value!r})")
    for field in ("sflow", "netflow", "ipfix"):
        if not isinstance(getattr(cfg, field), bool):
            raise WeftError(f"{field} must be on or off")
    from topology.duration import retention_seconds
    try:
        retention_seconds(cfg.retention)
    except ValueError as exc:
        raise WeftError(str(exc)) from None
