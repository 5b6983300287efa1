"""The OpenFlow pipeline of br-int as data: tables, registers, the tunnel port, and a validator.

Packets walk the tables in order:

    0  CLASSIFY       in_port (a VM NIC) or the tunnel key -> network (reg6 = VNI); the tunnel
                      also sets reg7 = 1 and skips straight to L2_LOOKUP; a provider patch port
                      (ARP -> 20, IPv4 -> 25) -> the external network's VNI; a router's gateway
                      VNI from the tunnel -> reg5 = that router, to SNAT (33); anything else drops
    1  QOS_EGRESS     a port with QoS (flows/qos.py): its second egress meter (packets per
                      second when it has a rate too) and DSCP marking, on to PORT_SECURITY
    10 PORT_SECURITY  a VM may send only from its own MAC and IPs and ARP only for its own IP;
                      IPv6 from its link-local or configured addresses (`::` only for DAD),
                      neighbour advertisements only for its own addresses with its own MAC,
                      never router advertisements or redirects; ND skips conntrack (to 20)
    11 EGRESS_CT      IP from a port with security groups: conntrack (zone = its ofport)
    12 EGRESS_ACL     stateful egress rules (flows/acl.py); allowed traffic on to 20
    20 ARP_RESPONDER  ARP requests for known IPs (and router gateways) are answered locally;
                      other requests drop; neighbour solicitations for a known IPv6 address
                      (link-locals included) go to the controller, which answers (flows cannot
                      build an advertisement: see controller/nd_service.py); others drop
    25 EXT_IN         IPv4 from a provider bridge (north-south, flows/northsouth.py) to a router
                      gateway or a floating IP: reg5 = its router, conntrack NAT (zone of the router)
    26 EXT_IN_NAT     after NAT: on into the router (31); still to the gateway address (no
                      connection of ours) or invalid: drop
    30 L3_INPUT       IPv4 (and IPv6, on networks with a prefix) to the router MAC of a network
                      attached to a router: reg5 = router key, on to ROUTE; anything else to
                      L2_LOOKUP
    31 ROUTE          the router's table: echo to its addresses answered; longest prefix match
                      (connected networks, static routes) -> TTL/hop limit-1, router MAC as
                      source, reg6 = destination network; no route drops, and so do IPv6
                      link-local sources and destinations (never routed)
    32 RESOLVE        destination IP (IPv4 or IPv6) -> its port's MAC (every IP is known: no ARP
                      or neighbour discovery needed)
    33 SNAT           a router's default route leads here: a port's floating IP (its own host) or
                      the router's gateway address (the gateway host; other hosts tunnel there)
    34 EXT_OUT        translated packets out of the provider bridge to the edge router's MAC
    40 L2_LOOKUP      destination MAC -> local port or tunnel to the host holding it; broadcast
                      and multicast flooded (a local port with security groups: reg4 = its
                      ofport, on to 45); unicast to a MAC the network does not have: on to 41
    41 L2_UNKNOWN     such unicast from a local VM: IPv4 or IPv6 to an IP a port holds now goes
                      to that port, its MAC rewritten (a peer's stale ARP or neighbour entry
                      never strands it);
                      anything else only to local ports without port security (they may carry
                      MACs weft does not know) -- unknown unicast never crosses to another host
    45 INGRESS_CT     IP to such a port: conntrack in its zone; ARP and neighbour
                      advertisements straight out
    46 INGRESS_ACL    stateful ingress rules; allowed traffic out of the port
    47 QOS_INGRESS    unicast to a local port with an ingress limit (reg4 = its ofport): its first
                      meter, then out (or on to 48)
    48 QOS_INGRESS2   its second ingress meter (packets per second), then out

DHCP requests from a port are metered and sent to the controller from PORT_SECURITY.

Isolation rests on one rule: every match after table 0 includes reg6 (or depends on a flow
that does), and reg6 is written only by table 0, from the in_port or the tunnel key.
"""
from __future__ import annotations

from dataclasses import dataclass

from flows import cookies
from flows.flow import ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, IP_PROTO_ICMPV6, ND_NA, ND_NS, Flow

TUNNEL_OFPORT = 60000           # ofport_request of weft's one flow-based tunnel port `weft-tun`
TUNNEL_PORT_NAME = "weft-tun"
TUNNEL_OVERHEAD = {"vxlan": 50, "geneve": 100}  # outer Ethernet+IPv4+UDP+header (Geneve: room for options)
UNDERLAY_MTU = 1500                              # the default underlay MTU
UNDERLAY_MTU_RANGE = (1280, 9216)
TUNNEL_MTU = {t: UNDERLAY_MTU - o for t, o in TUNNEL_OVERHEAD.items()}   # a VM's MTU on a 1500 underlay


def vm_mtu(tunnel: str, underlay_mtu: int = UNDERLAY_MTU) -> int:
    """The MTU a VM gets (DHCP option 26, the lab): the underlay's less the encapsulation."""
    return underlay_mtu - TUNNEL_OVERHEAD[tunnel]


def check_underlay_mtu(value) -> int:
    """`value` as an underlay MTU, or ValueError saying what is wrong with it."""
    low, high = UNDERLAY_MTU_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"underlay MTU must be an integer from {low} to {high} (bytes of the "
                         f"hypervisors' tunnel network), not {value!r}")
    return value

REG_OUT = "reg4"                # ingress ACL: the local ofport a packet is headed to
REG_ROUTER = "reg5"             # router key while a packet is being routed
REG_NET = "reg6"                # network key: the network's VNI
REG_FLAGS = "reg7"              # 1 = the packet arrived from the tunnel
FROM_TUNNEL = 1
REG_REPLAYED = "reg9"           # 1 = weftd sent this packet back through the pipeline (controller/replay.py);
                                # no flow matches or writes it
PROVIDER_OFPORT = 60001         # + the provider's index among its host's providers (sorted by name)
MAX_PROVIDERS = 16

CLASSIFY = 0
QOS_EGRESS = 1
PORT_SECURITY = 10
EGRESS_CT = 11
EGRESS_ACL = 12
ARP_RESPONDER = 20
EXT_IN = 25
EXT_IN_NAT = 26
L3 = L3_INPUT = 30
ROUTE = 31
RESOLVE = 32
SNAT = 33
EXT_OUT = 34
L2_LOOKUP = 40
L2_UNKNOWN = 41
INGRESS_CT = 45
INGRESS_ACL = 46
QOS_INGRESS = 47
QOS_INGRESS2 = 48
DHCP_METER = 1                  # OpenFlow meter limiting DHCP packet-ins per host
DROP_METER = 2                  # OpenFlow meter limiting drop samples (packet-ins) per host
DROP_SAMPLE_BYTES = 128         # of a dropped packet sent to weftd: its headers
# what a drop flow does: the packet goes nowhere; a sample of it, rate-limited per host by the
# drop meter, reaches weftd as a packet-in whose cookie names the reason (flows/drops.py)
DROP_ACTIONS = (("meter", DROP_METER), ("controller", DROP_SAMPLE_BYTES))
DHCP_SERVER_MAC = "02:77:65:ff:ff:fe"   # DHCP answers on networks without a router come from it

MISS_PRIORITY = 0


@dataclass(frozen=True)
class Table:
    """One table of the pipeline: what it is for, what it may match on and what a miss does."""
    id: int
    name: str
    purpose: str
    match_fields: frozenset[str]
    miss: int | None = None     # the table a miss continues to; None: a miss drops
    reserved: bool = False      # declared for a later feature; nothing is installed in it yet
    drop: str = "unknown-destination"   # the drop reason of a miss (when a miss drops)

    @property
    def miss_text(self) -> str:
        return "drop" if self.miss is None else f"goto {self.miss}"


TABLES: dict[int, Table] = {t.id: t for t in (
    Table(CLASSIFY, "classify", "in_port or tunnel key -> network (reg6), tunnel flag (reg7)",
          frozenset({"in_port", "tunnel_id", "eth_type"}), drop="unclassified"),
    Table(QOS_EGRESS, "qos-egress", "a QoS port's second egress meter and DSCP marking",
          frozenset({"in_port", "eth_type"})),
    Table(PORT_SECURITY, "port-security", "anti-spoofing: only the port's own MAC and IPs; DHCP",
          frozenset({"in_port", "eth_src", "eth_type", "ipv4_src", "arp_sha", "arp_spa",
                     "ip_proto", "udp_src", "udp_dst", "ipv6_src", "icmpv6_type", "ipv6_nd_target",
                     "ipv6_nd_tll"}), drop="port-security"),
    Table(EGRESS_CT, "egress-ct", "IP from a port with security groups: conntrack in its zone",
          frozenset({"in_port", "eth_type"}), drop="security-group"),
    Table(EGRESS_ACL, "egress-acl", "established by a live rule, or new and allowed: commit",
          frozenset({"in_port", "ct_state", "ct_mark", "conj_id", "eth_type", "ip_proto",
                     "ipv4_dst", "tcp_dst", "udp_dst", "icmpv4_type", "ipv6_dst", "icmpv6_type"}),
          drop="security-group"),
    Table(ARP_RESPONDER, "arp-responder", "answer ARP requests and neighbour solicitations for "
          "known IPs, never flood them",
          frozenset({REG_NET, "eth_type", "arp_op", "arp_tpa", "ip_proto", "icmpv6_type", "ipv6_src",
                     "ipv6_nd_target"}), miss=L3_INPUT),
    Table(EXT_IN, "ext-in", "from a provider: to a gateway or floating IP -> router, conntrack NAT",
          frozenset({REG_NET, "eth_type", "ipv4_dst"})),
    Table(EXT_IN_NAT, "ext-in-nat", "translated: into the router; untranslated gateway traffic drops",
          frozenset({REG_ROUTER, "ct_state", "eth_type", "ipv4_dst"})),
    Table(L3_INPUT, "l3-input", "IPv4 or IPv6 to a router MAC enters its router (reg5)",
          frozenset({REG_NET, "eth_type", "eth_dst"}), miss=L2_LOOKUP),
    Table(ROUTE, "route", "router echo; longest prefix match; TTL-1, MAC rewrite",
          frozenset({REG_ROUTER, "eth_type", "ipv4_dst", "ip_proto", "icmpv4_type", "ipv6_src",
                     "ipv6_dst", "icmpv6_type"}), drop="no-route"),
    Table(RESOLVE, "resolve", "destination IP -> the port's MAC",
          frozenset({REG_NET, "eth_type", "ipv4_dst", "ipv6_dst"}), drop="unknown-destination"),
    Table(SNAT, "snat", "leaving for an external network: floating IP or gateway SNAT (or tunnel "
          "to the gateway host)", frozenset({REG_ROUTER, "eth_type", "ipv4_src"}), drop="no-route"),
    Table(EXT_OUT, "ext-out", "translated packets out to the edge router",
          frozenset({REG_ROUTER, "eth_type", "ipv4_src"}), drop="no-route"),
    Table(L2_LOOKUP, "l2-lookup", "destination MAC -> local port or tunnel; flooding",
          frozenset({REG_NET, REG_FLAGS, "eth_dst", "eth_type"}), drop="unknown-destination"),
    Table(L2_UNKNOWN, "l2-unknown", "unknown unicast: by destination IP to the port holding it now",
          frozenset({REG_NET, "eth_type", "ipv4_dst", "ipv6_dst"}), drop="unknown-destination"),
    Table(INGRESS_CT, "ingress-ct", "IP to a port with security groups: conntrack in its zone",
          frozenset({REG_OUT, "eth_type", "ip_proto", "icmpv6_type"}), drop="security-group"),
    Table(INGRESS_ACL, "ingress-acl", "established by a live rule, or new and allowed: commit",
          frozenset({REG_OUT, "ct_state", "ct_mark", "conj_id", "eth_type", "ip_proto",
                     "ipv4_src", "tcp_dst", "udp_dst", "icmpv4_type", "ipv6_src", "icmpv6_type"}),
          drop="security-group"),
    Table(QOS_INGRESS, "qos-ingress", "to a port with an ingress limit: its first meter",
          frozenset({REG_OUT})),
    Table(QOS_INGRESS2, "qos-ingress2", "to a port with two ingress limits: the second meter",
          frozenset({REG_OUT})),
)}

# OpenFlow prerequisites: a field may be matched, set or moved only when the match pins these
# (each a field and the values it may have).
_ARP = (("eth_type", (ETH_TYPE_ARP,)),)
_IP = (("eth_type", (ETH_TYPE_IP,)),)
_IPV6 = (("eth_type", (ETH_TYPE_IPV6,)),)
_ANY_IP = (("eth_type", (ETH_TYPE_IP, ETH_TYPE_IPV6)),)
_ICMPV6 = _IPV6 + (("ip_proto", (IP_PROTO_ICMPV6,)),)
PREREQUISITES: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    **{f: _ARP for f in ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")},
    **{f: _IP for f in ("ipv4_src", "ipv4_dst")},
    **{f: _ANY_IP for f in ("ip_proto", "ip_dscp", "ip_ecn")},
    **{f: _IPV6 for f in ("ipv6_src", "ipv6_dst", "ipv6_flabel")},
    **{f: _ANY_IP + (("ip_proto", (6,)),) for f in ("tcp_src", "tcp_dst")},
    **{f: _ANY_IP + (("ip_proto", (17,)),) for f in ("udp_src", "udp_dst")},
    **{f: _IP + (("ip_proto", (1,)),) for f in ("icmpv4_type", "icmpv4_code")},
    **{f: _ICMPV6 for f in ("icmpv6_type", "icmpv6_code")},
    "ipv6_nd_target": _ICMPV6 + (("icmpv6_type", (ND_NS, ND_NA)),),
    "ipv6_nd_sll": _ICMPV6 + (("icmpv6_type", (ND_NS,)),),
    "ipv6_nd_tll": _ICMPV6 + (("icmpv6_type", (ND_NA,)),),
}
_ARITY = {"output": 2, "set_field": 3, "move": 4, "dec_ttl": 1, "controller": 2, "goto": 2,
          "meter": 2, "ct": 5, "conjunction": 4, "sample": 5, "ct_nat": 5}


def table(table_id: int) -> Table:
    try:
        return TABLES[table_id]
    except KeyError:
        raise ValueError(f"table {table_id} is not declared in the pipeline") from None


def miss_flows() -> list[Flow]:
    """The priority-0 table-miss flow of every table in use (reserved tables get nothing)."""
    flows = []
    for t in TABLES.values():
        if t.reserved:
            continue
        if t.miss is None:
            flows.append(cookies.make(f"drop:{t.drop}", None, t.id, MISS_PRIORITY, (), DROP_ACTIONS))
        else:
            flows.append(cookies.make("pipeline", None, t.id, MISS_PRIORITY, (), (("goto", t.miss),)))
    return flows


def validate(flows) -> None:
    """Raise ValueError naming the first flow that does not fit the declared pipeline."""
    for flow in flows:
        problem = _problem(flow)
        if problem:
            raise ValueError(f"flow table={flow.table} priority={flow.priority} "
                             f"match={flow.match!r}: {problem}")


def _problem(flow: Flow) -> str | None:
    if flow.table not in TABLES:
        return f"table {flow.table} is not declared in the pipeline"
    declared = TABLES[flow.table]
    if declared.reserved:
        return f"table {flow.table} ({declared.name}) is reserved and must stay empty"
    if not isinstance(flow.priority, int) or not 0 <= flow.priority <= 0xFFFF:
        return f"priority {flow.priority!r} is not a 16-bit integer"
    match = {}
    for item in flow.match:
        if not (isinstance(item, tuple) and len(item) == 2):
            return f"match item {item!r} is not a (field, value) pair"
        field, value = item
        if field not in declared.match_fields:
            return f"table {declared.name} does not allow matching on {field}"
        if field in match:
            return f"field {field} is matched twice"
        if isinstance(value, tuple) and len(value) != 2:
            return f"masked value of {field} is not a (value, mask) pair"
        match[field] = value
    for field in match:
        missing = _unmet(field, match)
        if missing:
            return f"matching on {field} needs {missing} in the match"
    for i, action in enumerate(flow.actions):
        if not isinstance(action, tuple) or not action or action[0] not in _ARITY:
            return f"unknown action {action!r}"
        kind = action[0]
        if len(action) != _ARITY[kind]:
            return f"action {action!r} has the wrong number of arguments"
        if kind == "meter" and i != 0:
            return "meter must be the first action"
        if kind == "goto":
            if i != len(flow.actions) - 1:
                return "goto must be the last action"
            target = action[1]
            if target not in TABLES or TABLES[target].reserved:
                return f"goto {target}: not a declared table in use"
            if target <= flow.table:
                return f"goto {target} does not go forward from table {flow.table}"
        elif kind in ("output", "controller", "meter"):
            if not isinstance(action[1], int) or action[1] < 0:
                return f"action {action!r} needs a non-negative integer"
        elif kind == "ct" and match.get("eth_type") not in (ETH_TYPE_IP, ETH_TYPE_IPV6):
            return "ct needs eth_type=0x0800 or 0x86dd in the match"
        elif kind == "ct_nat":
            if match.get("eth_type") != ETH_TYPE_IP:
                return "ct_nat needs eth_type=0x0800 in the match"
            if action[4] is not None and action[4][0] not in ("src", "dst"):
                return f"ct_nat translates src or dst, not {action[4][0]!r}"
        elif kind in ("set_field", "move"):
            for field in action[1:-1] if kind == "move" else action[1:2]:
                missing = _unmet(field, match)
                if missing:
                    return f"{kind} of {field} needs {missing} in the match"
    return None


def _unmet(field: str, match: dict) -> str | None:
    for need, values in PREREQUISITES.get(field, ()):
        if match.get(need) not in values:
            shown = [f"{v:#06x}" if need == "eth_type" else str(v) for v in values]
            return f"{need}={' or '.join(shown)}"
    return None
