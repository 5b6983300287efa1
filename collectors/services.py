"""Which side of a flow record is the service: (IP protocol, service port, towards the server).

Flow records are directional: a TCP connection from a client to web:80 shows up as records
client -> web with destination port 80 and as replies web -> client with source port 80.
Traffic analysis (least-privilege groups, what-if) needs the service port, not the
ephemeral one, and which way the bytes went. `classify` answers from the two ports alone:

- a port below 1024 against one at or above it: the low one is the service;
- otherwise a port below 32768 (Linux's default ephemeral range starts there) against one
  at or above it: the low one is the service;
- otherwise the lower port (equal ports: the destination's).

The result is a `Service(proto, port, to_server)` or None when the record has no IP
protocol. Protocols without ports (ICMP, ...) give `Service(proto, None, True)`.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

PORTED = (6, 17, 132)  # TCP, UDP, SCTP
EPHEMERAL_START = 32768


class Service(NamedTuple):
    proto: int
    port: int | None
    to_server: bool   # True: the record's destination is the server (its dst port is `port`)


_CACHE: dict = {}


def classify(proto, sport, dport) -> Service | None:
    """The service of a record with IP protocol `proto` and transport ports `sport`/`dport`."""
    if type(proto) is not int:
        return None
    if proto not in PORTED or type(sport) is not int or type(dport) is not int:
        return _CACHE.setdefault((proto, None, None), Service(proto, None, True))
    if dport < 1024 <= sport or (dport < EPHEMERAL_START <= sport):
        port, to_server = dport, True
    elif sport < 1024 <= dport or (sport < EPHEMERAL_START <= dport):
        port, to_server = sport, False
    elif dport <= sport:
        port, to_server = dport, True
    else:
        port, to_server = sport, False
    key = (proto, port, to_server)
    s = _CACHE.get(key)
    if s is None:
        if len(_CACHE) > 300_000:
            _CACHE.clear()
        s = _CACHE[key] = Service(proto, port, to_server)
    return s


_PORTS = struct.Struct("!HH")


def classify_ipv4(h: bytes, off: int) -> Service | None:
    """The service of the IPv4 packet whose header starts at `h[off]` (None if truncated)."""
    if len(h) < off + 20 or h[off] >> 4 != 4:
        return None
    proto = h[off + 9]
    if proto not in PORTED:
        return classify(proto, None, None)
    if (h[off + 6] & 0x1F) or h[off + 7]:  # a later fragment: no transport header
        return classify(proto, None, None)
    l4 = off + (h[off] & 0x0F) * 4
    if len(h) < l4 + 4:
        return classify(proto, None, None)
    sport, dport = _PORTS.unpack_from(h, l4)
    return classify(proto, sport, dport)


def label(svc: Service | None) -> tuple[str | None, int | None]:
    """(protocol name, port) for output: tcp/udp/icmp/sctp/icmpv6 or the number as text."""
    if svc is None:
        return None, None
    return PROTO_NAMES.get(svc.proto, str(svc.proto)), svc.port


PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
