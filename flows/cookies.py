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
    "qos": 16,            # a port's meters and DSCP marking (flows/qos.py)
}
# A flow that drops a packet says why: its feature byte is DROP_FLAG | the reason's code
# (flows/drops.py), so a sampled drop's packet-in (which carries the cookie) names its reason.
DROP_FLAG = 0x80
DROP_REASONS = {
    "unclassified": 1,        # table 0: from no known VM port, or a tunnel key of no network
    "port-security": 2,       # a source MAC/IP, ARP or neighbour advertisement the port may not send
    "security-group": 3,      # no rule of the port's security groups admits the new connection
    "conntrack-invalid": 4,   # conntrack says the packet belongs to no valid connection
    "unknown-neighbour": 5,   # ARP request / neighbour solicitation for an address nobody has
    "no-route": 6,            # the router has no route to the destination
    "router-address": 7,      # to the router itself, not something it answers (only echo is)
    "not-routed": 8,          # IPv6 link-local or multicast sent to a router
    "unknown-destination": 9,  # unicast to a MAC/IP the network does not have
    "dad": 10,                # IPv6 duplicate address detection, stopped at the port by design
}
FEATURES.update({f"drop:{reason}": DROP_FLAG | code for reason, code in DROP_REASONS.items()})
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


def drop_reason(cookie: int) -> str | None:
    """The reason a drop flow's cookie names, or None for a flow that does not drop."""
    feature = cookie >> 56
    if not feature & DROP_FLAG:
        return None
    name = FEATURE_NAMES.get(feature)
    return name[5:] if name else f"unknown-{feature & 0x7F}"


def decode(cookie: int) -> tuple[str, int]:
    """(feature name, owner object id) of a cookie."""
    feature = FEATURE_NAMES.get(cookie >> 56, f"unknown-{cookie >> 56}")
    return feature, (cookie >> 24) & 0xFFFFFFFF
