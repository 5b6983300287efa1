"""weftd's per-port DHCPv4 server: parse a VM's DHCP packet-in and build the reply frame (pure functions, no I/O)."""
from __future__ import annotations

import ipaddress
import re
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM",
    "Lease", "DhcpRequest", "parse_request", "answer", "classless_routes", "RateLimiter",
]

# DHCP message types (RFC 2132 option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
_CLIENT_TYPES = frozenset((DISCOVER, REQUEST, DECLINE, RELEASE, INFORM))

_ETH_IPV4, _ETH_VLAN = 0x0800, 0x8100
_SERVER_PORT, _CLIENT_PORT = 67, 68
_MAGIC = b"\x63\x82\x53\x63"
_BOOTP_FIXED = 236                  # op .. file, before the magic cookie
_OPTS_START = _BOOTP_FIXED + 4
_MIN_BOOTP = 300                    # RFC 1542 / BOOTP minimum message size
_BROADCAST_FLAG = 0x8000
_ZERO4 = b"\0\0\0\0"
_BCAST4 = b"\xff\xff\xff\xff"
_BCAST_MAC = b"\xff" * 6
_INFINITE = 0xFFFFFFFF
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

_ETH = struct.Struct("!6s6sH")
_VLAN = struct.Struct("!HH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


# --------------------------------------------------------------------------- model

def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"{what}: not an IPv4 address: {value!r}") from None


def _mac(value: str, what: str) -> str:
    mac = value.lower() if isinstance(value, str) else ""
    if not _MAC_RE.match(mac):
        raise ValueError(f"{what}: not a MAC address: {value!r}")
    return mac


@dataclass(frozen=True)
class Lease:
    """What the model says a port gets; values are validated and normalised on construction."""

    mac: str
    ip: str
    prefixlen: int
    server_ip: str
    server_mac: str
    router: str | None
    dns: tuple[str, ...] = ()
    mtu: int = 1450
    lease_time: int = 86400
    domain: str | None = None
    routes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        put = object.__setattr__
        put(self, "mac", _mac(self.mac, "mac"))
        put(self, "server_mac", _mac(self.server_mac, "server_mac"))
        put(self, "ip", _ipv4(self.ip, "ip"))
        put(self, "server_ip", _ipv4(self.server_ip, "server_ip"))
        if not isinstance(self.prefixlen, int) or isinstance(self.prefixlen, bool) or not 0 <= self.prefixlen <= 32:
            raise ValueError(f"prefixlen: must be 0..32, not {self.prefixlen!r}")
        if self.router is not None:
            put(self, "router", _ipv4(self.router, "router"))
        put(self, "dns", tuple(_ipv4(d, "dns") for d in self.dns))
        if not isinstance(self.mtu, int) or not 68 <= self.mtu <= 0xFFFF:
            raise ValueError(f"mtu: must be 68..65535 (RFC 2132 9.1), not {self.mtu!r}")
        if not isinstance(self.lease_time, int) or not 1 <= self.lease_time <= _INFINITE:
            raise ValueError(f"lease_time: must be 1..{_INFINITE} seconds, not {self.lease_time!r}")
        if self.domain is not None and not (isinstance(self.domain, str) and self.domain.isascii()
                                            and 0 < len(self.domain) <= 255):
            raise ValueError(f"domain: must be a non-empty ASCII name (IDNA-encode it) of at most 255 bytes, "
                             f"not {self.domain!r}")
        routes = []
        for route in self.routes:
            try:
                cidr, via = route
                net = ipaddress.IPv4Network(cidr, strict=False)
            except (TypeError, ValueError):
                raise ValueError(f"routes: expected (cidr, via), not {route!r}") from None
            routes.append((str(net), _ipv4(via, "routes via")))
        put(self, "routes", tuple(routes))


@dataclass(frozen=True)
class DhcpRequest:
    """A DHCPv4 client message as decoded from a packet-in frame."""

    eth_src: str                        # Ethernet source MAC, lower-case "aa:bb:cc:dd:ee:ff"
    chaddr: str                         # BOOTP client hardware address (same format)
    xid: int
    msg_type: int                       # DISCOVER, REQUEST, DECLINE, RELEASE or INFORM
    requested_ip: str | None            # option 50
    server_id: str | None               # option 54
    ciaddr: str                         # "0.0.0.0" when unset
    flags: int                          # BOOTP flags (bit 15 = broadcast)
    giaddr: str
    param_request_list: tuple[int, ...] = ()  # option 55
    client_id: bytes | None = None      # option 61, echoed in replies (RFC 6842)
    hostname: str | None = None         # option 12
    vlan: int | None = None             # 802.1Q VID if the frame was tagged; the reply carries the same tag

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & _BROADCAST_FLAG)


# --------------------------------------------------------------------------- decoding

def _options(buf: bytes, start: int, end: int, into: dict[int, bytearray]) -> bool:
    """Walk an options area into `into` (repeated codes concatenated, RFC 3396); False if malformed."""
    i = start
    while i < end:
        code = buf[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return True
        if i + 1 >= end:
            return False
        stop = i + 2 + buf[i + 1]
        if stop > end:
            return False
        value = into.get(code)
        if value is None:
            into[code] = bytearray(buf[i + 2:stop])
        else:
            value += buf[i + 2:stop]
        i = stop
    return True                         # a missing end option is tolerated


def _ip_or_none(opts: dict[int, bytearray], code: int) -> str | None | bool:
    value = opts.get(code)
    if value is None:
        return None
    if len(value) != 4:
        return False
    return socket.inet_ntoa(value)


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse_request(frame: bytes) -> DhcpRequest | None:
    """The DHCPv4 client message in an Ethernet frame, or None if it is anything else or malformed."""
    try:
        return _parse(bytes(frame))
    except Exception:                   # noqa: BLE001 - hostile input must never take weftd down
        return None


def _parse(frame: bytes) -> DhcpRequest | None:
    n = len(frame)
    if n < 14:
        return None
    _dst, src, ethertype = _ETH.unpack_from(frame, 0)
    off, vlan = 14, None
    if ethertype == _ETH_VLAN:
        if n < 18:
            return None
        tci, ethertype = _VLAN.unpack_from(frame, 14)
        vlan, off = tci & 0x0FFF, 18
    if ethertype != _ETH_IPV4 or n < off + 20:
        return None

    ver_ihl, _tos, total, _ident, frag, _ttl, proto, _csum, _saddr, _daddr = _IP.unpack_from(frame, off)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or proto != 17 or frag & 0x3FFF:   # fragments (MF or offset) refused
        return None
    if total < ihl + 8 or off + total > n:
        return None
    if inet_checksum(frame[off:off + ihl]) != 0:
        return None
    udp = off + ihl
    sport, dport, ulen, _ucsum = _UDP.unpack_from(frame, udp)
    # The UDP checksum is not verified: with checksum offload a VM's frame can reach the controller
    # with a partial checksum, and the IP header checksum has already vouched for the addressing.
    if sport != _CLIENT_PORT or dport != _SERVER_PORT or ulen < 8 or udp + ulen > off + total:
        return None
    bootp = frame[udp + 8:udp + ulen]
    if len(bootp) < _OPTS_START or bootp[_BOOTP_FIXED:_OPTS_START] != _MAGIC:
        return None
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yiaddr, _siaddr, giaddr, chaddr, _sname, _file = \
        _BOOTP.unpack_from(bootp, 0)
    if op != 1 or htype != 1 or hlen != 6:
        return None

    opts: dict[int, bytearray] = {}
    if not _options(bootp, _OPTS_START, len(bootp), opts):
        return None
    overload = opts.pop(52, None)
    if overload is not None:            # RFC 2131 4.1: 'file' then 'sname' carry more options
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            return None
        if overload[0] & 1 and not _options(bootp, 108, 236, opts):
            return None
        if overload[0] & 2 and not _options(bootp, 44, 108, opts):
            return None

    mtype = opts.get(53)
    if mtype is None or len(mtype) != 1 or mtype[0] not in _CLIENT_TYPES:
        return None
    requested, server_id = _ip_or_none(opts, 50), _ip_or_none(opts, 54)
    if requested is False or server_id is False:
        return None
    client_id = opts.get(61)
    hostname = opts.get(12)
    if hostname is not None:
        hostname = hostname.rstrip(b"\0").decode("utf-8", "replace") or None
    return DhcpRequest(
        eth_src=src.hex(":"),
        chaddr=chaddr[:6].hex(":"),
        xid=xid,
        msg_type=mtype[0],
        requested_ip=requested,
        server_id=server_id,
        ciaddr=socket.inet_ntoa(ciaddr),
        flags=flags,
        giaddr=socket.inet_ntoa(giaddr),
        param_request_list=tuple(opts.get(55, b"")),
        client_id=bytes(client_id) if client_id is not None else None,
        hostname=hostname,
        vlan=vlan,
    )


# --------------------------------------------------------------------------- encoding

def _opt(code: int, data: bytes) -> bytes:
    """One option; values over 255 bytes are split into consecutive instances (RFC 3396)."""
    if not data:
        return bytes((code, 0))
    return b"".join(bytes((code, len(chunk))) + chunk
                    for chunk in (data[i:i + 255] for i in range(0, len(data), 255)))


def classless_routes(routes) -> bytes:
    """The RFC 3442 encoding of [(cidr, via), ...]: width, significant destination octets, router."""
    out = bytearray()
    for cidr, via in routes:
        net = ipaddress.IPv4Network(cidr, strict=False)
        width = net.prefixlen
        out.append(width)
        out += net.network_address.packed[:(width + 7) // 8]
        out += ipaddress.IPv4Address(via).packed
    return bytes(out)


@dataclass(frozen=True)
class _Wire:
    """A lease pre-encoded for replies."""

    mac: bytes
    ip: bytes
    server_ip: bytes
    server_mac: bytes
    server_id: bytes        # option 54
    times: bytes            # options 51, 58, 59
    config: bytes           # options 1, 28, 3, 6, 15, 26, 121


@lru_cache(maxsize=4096)
def _wire(lease: Lease) -> _Wire:
    net = ipaddress.IPv4Network(f"{lease.ip}/{lease.prefixlen}", strict=False)
    t = lease.lease_time
    t1, t2 = (t, t) if t == _INFINITE else (t // 2, t * 7 // 8)
    times = _opt(51, struct.pack("!I", t)) + _opt(58, struct.pack("!I", t1)) + _opt(59, struct.pack("!I", t2))
    config = _opt(1, net.netmask.packed)
    if lease.prefixlen <= 30:           # /31 (RFC 3021) and /32 have no broadcast address
        config += _opt(28, net.broadcast_address.packed)
    if lease.router:
        config += _opt(3, socket.inet_aton(lease.router))
    if lease.dns:
        config += _opt(6, b"".join(socket.inet_aton(d) for d in lease.dns))
    if lease.domain:
        config += _opt(15, lease.domain.encode("ascii"))
    config += _opt(26, struct.pack("!H", lease.mtu))
    if lease.routes:
        routes = list(lease.routes)
        # RFC 3442: a client that gets option 121 ignores option 3, so the default route rides in 121 too
        if lease.router and not any(c.endswith("/0") for c, _ in routes):
            routes.append(("0.0.0.0/0", lease.router))
        config += _opt(121, classless_routes(routes))
    server_ip = socket.inet_aton(lease.server_ip)
    return _Wire(mac=bytes.fromhex(lease.mac.replace(":", "")), ip=socket.inet_aton(lease.ip),
                 server_ip=server_ip, server_mac=bytes.fromhex(lease.server_mac.replace(":", "")),
                 server_id=_opt(54, server_ip), times=times, config=config)


def answer(request: DhcpRequest, lease: Lease | None) -> bytes | None:
    """The reply frame to send back out the request's port, or None when the server stays silent."""
    if lease is None or request.chaddr.lower() != lease.mac or request.eth_src.lower() != lease.mac:
        return None
    mtype = request.msg_type
    if mtype in (DECLINE, RELEASE):
        return None
    w = _wire(lease)
    ciaddr = socket.inet_aton(request.ciaddr)

    if mtype == DISCOVER:
        reply, yiaddr, ciaddr_out = OFFER, w.ip, _ZERO4
    elif mtype == REQUEST:
        if request.server_id is not None and request.server_id != lease.server_ip:
            return None                 # the client chose another server
        asked = request.requested_ip
        if asked is None and ciaddr != _ZERO4:
            asked = request.ciaddr      # RENEWING / REBINDING
        if asked is not None and asked != lease.ip:
            reply, yiaddr, ciaddr_out = NAK, _ZERO4, _ZERO4
        else:
            reply, yiaddr, ciaddr_out = ACK, w.ip, ciaddr
    elif mtype == INFORM:
        reply, yiaddr, ciaddr_out = ACK, _ZERO4, ciaddr
    else:
        return None

    # Options: 53, 54, times, configuration, client id (RFC 6842), end.
    opts = bytes((53, 1, reply)) + w.server_id
    if reply != NAK:
        if mtype != INFORM:
            opts += w.times
        opts += w.config
    if request.client_id is not None:
        opts += _opt(61, request.client_id)
    opts += b"\xff"

    # RFC 2131 4.1 delivery: NAK broadcast; a configured client (ciaddr) unicast; else the broadcast
    # bit decides between broadcast and unicast to the offered address.
    if reply == NAK:
        ip_dst = _BCAST4
    elif ciaddr != _ZERO4 and (mtype == INFORM or ciaddr == w.ip):
        ip_dst = ciaddr
    elif request.broadcast or yiaddr == _ZERO4:
        ip_dst = _BCAST4
    else:
        ip_dst = yiaddr
    eth_dst = _BCAST_MAC if ip_dst == _BCAST4 else w.mac
    siaddr = _ZERO4 if reply == NAK else w.server_ip

    bootp = _BOOTP.pack(2, 1, 6, 0, request.xid & 0xFFFFFFFF, 0, request.flags & 0xFFFF, ciaddr_out, yiaddr,
                        siaddr, socket.inet_aton(request.giaddr), w.mac + bytes(10), bytes(64), bytes(128)) \
        + _MAGIC + opts
    if len(bootp) < _MIN_BOOTP:
        bootp += bytes(_MIN_BOOTP - len(bootp))

    ulen = 8 + len(bootp)
    pseudo = w.server_ip + ip_dst + struct.pack("!BBH", 0, 17, ulen)
    ucsum = inet_checksum(pseudo + struct.pack("!HHHH", _SERVER_PORT, _CLIENT_PORT, ulen, 0) + bootp) or 0xFFFF
    udp = struct.pack("!HHHH", _SERVER_PORT, _CLIENT_PORT, ulen, ucsum)
    ip = _IP.pack(0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, w.server_ip, ip_dst)
    ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]

    if request.vlan is None:
        eth = _ETH.pack(eth_dst, w.server_mac, _ETH_IPV4)
    else:
        eth = eth_dst + w.server_mac + _VLAN.pack(_ETH_VLAN, request.vlan & 0x0FFF) + b"\x08\x00"
    return eth + ip + udp + bootp


# --------------------------------------------------------------------------- rate limiting

class RateLimiter:
    """A token bucket per key (e.g. per switch port): `rate` packets/s sustained, bursts of `burst`.

    `now` is supplied by the caller (use time.monotonic()). Idle buckets are forgotten when more
    than `max_keys` are tracked; if every tracked key is still active, new keys are refused.
    """

    def __init__(self, rate: float = 20.0, burst: int = 40, max_keys: int = 65536):
        if not rate > 0:
            raise ValueError(f"rate must be > 0, not {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, not {burst!r}")
        if not max_keys >= 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys!r}")
        self.rate, self.burst, self.max_keys = float(rate), float(burst), int(max_keys)
        self._buckets: dict[object, list[float]] = {}   # key -> [tokens, last refill time]

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key, now: float) -> bool:
        """Take one token from key's bucket at time `now`; False if it is empty (drop the packet)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_idle(now)
                if len(self._buckets) >= self.max_keys:
                    return False
            bucket = self._buckets[key] = [self.burst, now]
        else:
            elapsed = now - bucket[1]
            if elapsed > 0:             # a clock that steps back refills nothing
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        full = [k for k, (tokens, last) in self._buckets.items()
                if tokens + max(0.0, now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
