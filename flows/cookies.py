"""Flow cookies: 8 bits of feature, 32 bits of owner object, 24 bits of content digest.

The owner lets `weft flows HOST` say which object a flow belongs to; the digest makes the
cookie change whenever the flow does, so reconciliation compares (table, priority, cookie)
and removes a stale flow with one cookie-masked delete, without parsing matches back.
"""
from __future__ import annotations

import zlib

from flows.flow import Flow, content_hash

FEATURES = {
    "pipeline": 1,        # table-miss and structural flows, owned by nothing
    "classify": 2,        # table 0: port / tunnel key -> network
    "port-security": 3,   # anti-spoofing per port
    "arp-responder": 4,   # ARP answered locally
    "l2": 5,              # unicast delivery per port
    "flood": 6,           # broadcast / unknown per network
    "l3": 7,              # routing
    "dhcp": 8,            # DHCP to the controller
    "acl": 9,             # security groups
    "migrate": 10,        # a migrating port's destination NIC before activation
    "nd": 11,             # IPv6 neighbour discovery: solicitations to the controller
}
FEATURE_NAMES = {v: k for k, v in FEATURES.items()}
FULL_MASK = 0xFFFFFFFFFFFFFFFF


def object_id(uuid: str | None) -> int:
    return zlib.crc32(uuid.encode()) if uuid else 0


_MADE: dict = {}
_MADE_MAX = 500_000      # about 150 MB at most; the compiler asks for the same flows again and again


def make(feature: str, owner: str | None, table: int, priority: int, match: tuple,
         actions: tuple) -> Flow:
    """A Flow whose cookie names its feature and owner and digests its content.

    Memoised (a pure function of its arguments): recompiling a host mostly rebuilds flows it
    had, and the digest is most of a flow's cost."""
    key = (feature, owner, table, priority, match, actions)
    flow = _MADE.get(key)
    if flow is None:
        cookie = (FEATURES[feature] << 56) | (object_id(owner) << 24) | content_hash(
            table, priority, match, actions)
        flow = Flow(table, priority, match, actions, cookie)
        if len(_MADE) >= _MADE_MAX:
            _MADE.clear()
        _MADE[key] = flow
    return flow


def decode(cookie: int) -> tuple[str, int]:
    """(feature name, owner object id) of a cookie."""
    feature = FEATURE_NAMES.get(cookie >> 56, f"unknown-{cookie >> 56}")
    return feature, (cookie >> 24) & 0xFFFFFFFF
