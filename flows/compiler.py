"""Per-host flow compilation, a pure function of the model (read through its CompilerIndex).

A port is local to host H when its binding names H; a network is present on H when it has a
local port there, and only present networks give H flows. A binding whose ofport is still
PENDING (0: the NIC is in the host's database but Open vSwitch has not numbered it yet)
already counts: every flow that does not need the NIC's ofport is installed ahead, so when
the ofport arrives only a handful of flows remain to send. What a network gives a host is
assembled from per-network fragments (ARP answers, per-port unicast flows, the hosts holding
its ports) that are host independent and cached in the index, so compiling every host costs
O(total output), and a change recompiles only `affected_hosts`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter

from flows import acl as A
from flows import migration as M
from flows import northsouth as NS
from flows import qos as Q
from flows import pipeline as P
from flows.cookies import make
from flows.drops import drop
from flows.flow import (ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, IN_PORT, IP_PROTO_ICMPV6,
                        IPV6_UNSPECIFIED, MULTICAST_BIT, ND_NA, ND_NS, ND_RA, ND_REDIRECT,
                        UNICAST, Flow, make_match)
from flows.index import CompilerIndex, NetKey, bound_somewhere, diff_models, touched_keys
from topology.addresses import LINK_LOCAL_PREFIX, link_local, router_ip6
from topology.model import Model, Network, Port, Router

PRIO_HIGH = 100
PRIO_DHCP = 95
PRIO_ND_FORBIDDEN = 93          # router advertisements, redirects, foreign advertisements
PRIO_ND = 92                    # neighbour discovery from the port: straight to the responder
PRIO_UNCHECKED6 = 96            # IPv6 of a port without port security (above the ND checks)
PRIO_SPOOF_CHECKED = 90
PRIO_UNCHECKED = 80
PRIO_ARP_DROP = 50
PRIO_FLOOD = 10
ARP_REQUEST, ARP_REPLY = 1, 2
MAX_OFPORT = 0xFFFFFF00         # OFPP_MAX: above are reserved ports
PENDING = 0                     # a binding whose ofport is not known yet

_ICMPV6 = {"eth_type": ETH_TYPE_IPV6, "ip_proto": IP_PROTO_ICMPV6}
STRUCTURAL: tuple[Flow, ...] = (
    *P.miss_flows(),
    # from any VM: no router advertisements or redirects (weft's routers are the routers), no
    # neighbour advertisement its port security does not allow (ports without port security
    # get a flow of their own above these)
    *(drop("port-security", None, P.PORT_SECURITY, PRIO_ND_FORBIDDEN, make_match(**_ICMPV6, icmpv6_type=t))
      for t in (ND_RA, ND_NA, ND_REDIRECT)),
    drop("unknown-neighbour", None, P.ARP_RESPONDER, PRIO_ARP_DROP,
         make_match(eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST)),
    # neighbour solicitations like ARP requests: only known targets are answered, never flooded;
    # duplicate address detection (source ::) is never answered (it would fail the VM's address)
    drop("unknown-neighbour", None, P.ARP_RESPONDER, PRIO_ARP_DROP,
         make_match(**_ICMPV6, icmpv6_type=ND_NS)),
    drop("dad", None, P.ARP_RESPONDER, PRIO_HIGH + 1,
         make_match(**_ICMPV6, icmpv6_type=ND_NS, ipv6_src=IPV6_UNSPECIFIED)),
)
_by_table = attrgetter("table")


@dataclass
class _Fragment:
    """What one network contributes to the hosts it is present on (or routed to from)."""
    net: Network
    tunnel_classify: Flow
    arp: tuple[Flow, ...]
    l2: tuple[tuple[str | None, Flow, Flow | None], ...]   # (bound host, local flow, remote flow)
    unknown: tuple[tuple[str | None, tuple[Flow, ...], tuple[Flow, ...]], ...]  # same, by IP (41)
    peers: tuple[tuple[str, tuple], ...]    # (host, actions tunnelling to it) holding its ports
    local_ports: dict[str, list[tuple[int, Port]]]          # host -> [(ofport, port)] by ofport
    standby: dict[str, tuple[Flow, ...]] = field(default_factory=dict)   # host -> standby NIC flows
    router: Router | None = None            # the router it is attached to
    l3_input: tuple[Flow, ...] = ()         # router gateway ARP and L3 entry (where present)
    resolve: tuple[Flow, ...] = ()          # IP -> MAC of its ports (where its router is present)
    chunks: dict[str, tuple[Flow, ...]] = field(default_factory=dict)   # host -> its flows
    routed_chunks: dict[str, tuple[Flow, ...]] = field(default_factory=dict)


def compile_host(index: CompilerIndex, host: str) -> list[Flow]:
    """Every flow host `host` should have, ordered by table (deterministic)."""
    local = index.local.get(host, {})
    standby = index.standby.get(host, {})
    _check_ofports(host, {**local, **{("standby", u): e for u, e in standby.items()}})
    flows = list(STRUCTURAL)
    # a migrating port's destination has its network ahead (flows/migration.py)
    present = sorted({(port.tenant, port.network) for port, _ in chain(local.values(), standby.values())})
    routed, routers = set(), set()
    for key in present:
        frag = _fragment(index, key)
        if frag is None:
            continue            # the port's network does not exist: nothing to classify it into
        chunk = frag.chunks.get(host)
        if chunk is None:
            chunk = frag.chunks[host] = _chunk(frag, host, _ipfix_sampling(index.model))
        flows.extend(chunk)
        if frag.router is not None:
            routers.add((frag.router.tenant, frag.router.name))
            routed |= index.router_group(key)
    # the routers whose SNAT this host does route back to every network of theirs
    for router in NS.gateway_routers(index, host):
        routers.add((router.tenant, router.name))
        routed |= index.nets_by_router.get((router.tenant, router.name), set())
    # networks this host routes to without having a port of them: resolution and delivery
    for key in sorted(routed.difference(present)):
        frag = _fragment(index, key)
        if frag is None:
            continue
        chunk = frag.routed_chunks.get(host)
        if chunk is None:
            chunk = frag.routed_chunks[host] = _routed_chunk(frag, host)
        flows.extend(chunk)
    for tenant, name in sorted(routers):
        flows.extend(_router_flows(index, tenant, name))
    flows.extend(NS.host_flows(index, host, routers, local))
    flows.extend(_acl_flows(index, local))
    flows.sort(key=_by_table)
    return flows


def _acl_flows(index: CompilerIndex, local: dict) -> list[Flow]:
    """Security-group flows of the host's ports that have groups (flows/acl.py)."""
    guarded = sorted(((b.ofport, p) for p, b in local.values()
                      if A.has_acl(p) and b.ofport != PENDING and (p.tenant, p.network) in index.net_by_key),
                     key=lambda e: e[0])
    if not guarded:
        return []
    flows, members = list(A.STRUCTURAL), {}
    for ofport, port in guarded:
        key = ("acl", port.tenant)
        acl = index.fragments.get(key)
        if acl is None:
            acl = index.fragments[key] = A.tenant_acl(index.model, port.tenant)
        flows.extend(A.port_flows(acl, port, ofport, members))
    flows.extend(A.member_flows(members))
    return flows


def compile_meters(index: CompilerIndex, host: str) -> dict[int, Q.Meter]:
    """{meter id: Meter} of the QoS of `host`'s numbered ports (those its flows name)."""
    local = index.local.get(host, {})
    return Q.host_meters((b.ofport, p) for p, b in local.values()
                         if p.qos is not None and b.ofport != PENDING
                         and (p.tenant, p.network) in index.net_by_key)


def compile_all(index: CompilerIndex) -> dict[str, list[Flow]]:
    """compile_host for every host of the model (declared or holding a bound port)."""
    return {host: compile_host(index, host) for host in index.host_names()}


def affected_hosts(old_model: Model, new_model: Model, old_index: CompilerIndex | None = None,
                   new_index: CompilerIndex | None = None) -> set[str]:
    """Hosts whose flows may differ between the two models (a superset, cheap to compute).

    Pass the indexes you already have; with `new_index = old_index.updated(new_model)` the
    diff is computed once. Without indexes they are built, which costs O(model).
    """
    if old_index is None:
        old_index = CompilerIndex(old_model)
    elif old_index.model is not old_model:
        raise ValueError("old_index was built for another model")
    if new_index is None:
        new_index = old_index.updated(new_model)
    elif new_index.model is not new_model:
        raise ValueError("new_index was built for another model")
    if new_index.parent is old_model:
        diff, touched = new_index.diff, new_index.touched
    else:
        diff = diff_models(old_model, new_model)
        touched = touched_keys(diff, old_index, new_index)
    renumbered = _renumbered_hosts(diff, old_model, new_model)
    if renumbered is not None:
        return renumbered
    hosts = set(diff.hosts)
    for key in touched:
        if key not in old_index.net_by_key and key not in new_index.net_by_key:
            continue            # no such network before or after: its ports make no flows
        hosts |= old_index.hosts_on(key)
        hosts |= new_index.hosts_on(key)
    hosts |= NS.gateway_hosts(touched, old_index, new_index)
    return hosts


def _renumbered_hosts(diff, old: Model, new: Model) -> set[str] | None:
    """The hosts of a change that only renumbered ports where they are bound (a NIC's ofport
    arriving: PENDING -> N, or a new one after a re-plug), or None for any other change.

    An ofport means something on its own host only: its local delivery, classification, port
    security, conntrack zone and conjunction ids. Peers reach the port by its host's tunnel,
    answer ARP and count it a group member whether or not it is numbered (bound_somewhere),
    so a port-up's batch syncs its own host alone, not every host of its network again."""
    if (diff.ports or diff.networks or diff.hosts or diff.routers or diff.security_groups
            or diff.floating_ips or not diff.bindings or old.traffic != new.traffic):
        return None
    hosts = set()
    for uuid in diff.bindings:
        a, b = old.bindings.get(uuid), new.bindings.get(uuid)
        if a is None or b is None or a.host != b.host or old.standby.get(uuid) != new.standby.get(uuid):
            return None
        hosts.add(b.host)
    return hosts


def _check_ofports(host: str, local: dict) -> None:
    seen: dict[int, str] = {}
    for port, binding in local.values():
        ofport = binding.ofport
        if ofport == PENDING:
            continue
        if not isinstance(ofport, int) or not 0 < ofport < MAX_OFPORT or ofport == P.TUNNEL_OFPORT:
            raise ValueError(f"host {host}: port {port.ref} has an unusable ofport {ofport!r}")
        if ofport in seen:
            raise ValueError(f"host {host}: ofport {ofport} is bound to both {seen[ofport]} "
                             f"and {port.ref}")
        seen[ofport] = port.ref


def _fragment(index: CompilerIndex, key: NetKey) -> _Fragment | None:
    frag = index.fragments.get(key)
    if frag is None:
        net = index.net_by_key.get(key)
        if net is None:
            return None
        frag = index.fragments[key] = _build_fragment(index, net, key)
    return frag


def _build_fragment(index: CompilerIndex, net: Network, key: NetKey) -> _Fragment:
    model = index.model
    vni = net.vni
    ports = sorted(index.ports_by_key.get(key, {}).values(), key=attrgetter("uuid"))
    tunnel_classify = make(
        "classify", net.uuid, P.CLASSIFY, PRIO_HIGH,
        make_match(in_port=P.TUNNEL_OFPORT, tunnel_id=vni),
        (("set_field", P.REG_NET, vni), ("set_field", P.REG_FLAGS, P.FROM_TUNNEL),
         ("goto", P.L2_LOOKUP)))
    arp, l2, unknown, local_ports, peers = [], [], [], {}, {}
    for port in ports:
        binding = model.bindings.get(port.uuid)
        where = model.hosts.get(binding.host) if binding is not None else None
        piece = (_port_piece(port, vni, binding, where.tunnel_ip if where is not None else None)
                 if bound_somewhere(model, port.uuid) else _NOWHERE)
        arp.extend(piece[0])
        if binding is None:
            continue
        ports_here = local_ports.setdefault(binding.host, [])
        if binding.ofport != PENDING:
            ports_here.append((binding.ofport, port))
        if piece[1] is not None:
            peers[binding.host] = piece[1]
        l2.append(piece[2])
        unknown.append(piece[3])
    for entries in local_ports.values():
        entries.sort(key=lambda e: e[0])
    frag = _Fragment(net, tunnel_classify, tuple(arp), tuple(l2), tuple(unknown),
                     tuple(sorted(peers.items())), local_ports)
    if model.standby:
        for port in ports:
            standby = model.standby.get(port.uuid)
            if standby is not None and standby.ofport != PENDING:
                frag.standby[standby.host] = frag.standby.get(standby.host, ()) + M.standby_flows(
                    port, standby.ofport)
    router = index.router_by_name.get((net.tenant, net.router)) if net.router else None
    if router is not None:
        frag.router = router
        frag.l3_input = _l3_input(net, router)
        frag.resolve = tuple(
            make("l3", port.uuid, P.RESOLVE, PRIO_HIGH,
                 make_match(**{P.REG_NET: vni}, **_dst_of(ip)),
                 (("set_field", "eth_dst", port.mac), ("goto", P.L2_LOOKUP)))
            for port in ports if bound_somewhere(model, port.uuid) for ip in _routable(port, net))
    elif net.dhcp and net.gateway:
        # no router: the gateway address is where the DHCP server answers from; answer its ARP
        # so that a client's unicast renewal reaches the controller instead of timing out
        frag.l3_input = (make(
            "dhcp", net.uuid, P.ARP_RESPONDER, PRIO_HIGH,
            make_match(**{P.REG_NET: vni}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=net.gateway),
            _arp_reply(P.DHCP_SERVER_MAC, net.gateway)),)
    return frag


# What one port gives its network's fragment depends only on the port, its binding, the VNI
# and its host's tunnel address, so it is kept while the port and binding stay the same
# objects: a new port in a network rebuilds the fragment from these pieces, not flow by flow.
_PIECES: dict = {}


_NOWHERE = ((), None, None, None)       # the piece of a port bound nowhere (bound_somewhere)


def _port_piece(port: Port, vni: int, binding, tunnel_ip: str | None) -> tuple:
    """(ARP/ND answers, tunnel actions to its host, (host, local, remote) L2 flows,
    (host, local, remote) by-IP flows) of `port`, bound or standing by somewhere, in its
    network's fragment."""
    key = (port.uuid, vni, tunnel_ip)
    hit = _PIECES.get(key)
    if hit is not None and hit[0] is port and (hit[1] is binding or hit[1] == binding):
        return hit[2]
    arp = _nd_responder(port, vni)
    for ip in port.ipv4s:
        arp.append(make(
            "arp-responder", port.uuid, P.ARP_RESPONDER, PRIO_HIGH,
            make_match(**{P.REG_NET: vni}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=ip),
            (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", port.mac),
             ("set_field", "arp_op", ARP_REPLY), ("move", "arp_sha", "arp_tha", 48),
             ("move", "arp_spa", "arp_tpa", 32), ("set_field", "arp_sha", port.mac),
             ("set_field", "arp_spa", ip), ("output", IN_PORT))))
    tunnel, l2, unknown = None, None, None
    if binding is not None:
        local, deliver = None, None
        if binding.ofport != PENDING:
            deliver = ((("set_field", P.REG_OUT, binding.ofport), ("goto", P.INGRESS_CT))
                       if A.has_acl(port) else Q.deliver(port, binding.ofport))
            local = make("l2", port.uuid, P.L2_LOOKUP, PRIO_HIGH,
                         make_match(**{P.REG_NET: vni}, eth_dst=port.mac), deliver)
        remote = None
        if tunnel_ip is not None:
            tunnel = _to_tunnel(tunnel_ip, vni)
            remote = make("l2", port.uuid, P.L2_LOOKUP, PRIO_HIGH,
                          make_match(**{P.REG_NET: vni, P.REG_FLAGS: 0}, eth_dst=port.mac), tunnel)
        l2 = (binding.host, local, remote)
        unknown = (binding.host, _by_ip(port, vni, deliver), _by_ip(port, vni, tunnel))
    piece = (tuple(arp), tunnel, l2, unknown)
    if len(_PIECES) >= _LOCAL_MAX:
        _PIECES.clear()
    _PIECES[key] = (port, binding, piece)
    return piece


def _nd_responder(port: Port, vni: int) -> list[Flow]:
    """Table 20: a neighbour solicitation for one of `port`'s IPv6 addresses (its link-local
    included) goes to the controller, which answers it on the host where it entered
    (controller/nd_service.py: OpenFlow cannot turn a solicitation into an advertisement)."""
    return [make("nd", port.uuid, P.ARP_RESPONDER, PRIO_HIGH,
                 make_match(**{P.REG_NET: vni}, **_ICMPV6, icmpv6_type=ND_NS, ipv6_nd_target=ip),
                 (("meter", P.DHCP_METER), ("controller", 0xFFFF)))
            for ip in (port.link_local, *port.ipv6s)]


def _dst_of(ip: str) -> dict:
    """Match fields for packets to address `ip` (IPv4 or IPv6)."""
    if ":" in ip:
        return {"eth_type": ETH_TYPE_IPV6, "ipv6_dst": ip}
    return {"eth_type": ETH_TYPE_IP, "ipv4_dst": ip}


def _routable(port: Port, net: Network) -> tuple[str, ...]:
    """The port's addresses a router delivers to: its IPv4 and, when its network has an IPv6
    prefix, its configured IPv6 addresses (never its link-local)."""
    return port.ipv4s + (port.ipv6s if net.cidr6 else ())


def _by_ip(port: Port, vni: int, deliver: tuple | None) -> tuple[Flow, ...]:
    """Table 41: unicast to a MAC the network lacks but to one of `port`'s IPs goes to `port`.

    A peer whose ARP or neighbour entry still holds the MAC of a port deleted since (the IP now
    belongs to a new port, with a new MAC) reaches the new port at once instead of waiting for
    its entry to expire; the MAC is rewritten so that the port accepts the packet. IPv6: its
    configured addresses (a link-local follows from the MAC, so no new port holds an old one)."""
    if deliver is None:
        return ()
    return tuple(make("l2", port.uuid, P.L2_UNKNOWN, PRIO_HIGH,
                      make_match(**{P.REG_NET: vni}, **_dst_of(ip)),
                      (("set_field", "eth_dst", port.mac),) + deliver)
                 for ip in port.ipv4s + port.ipv6s)


def _l3_input(net: Network, router: Router) -> tuple[Flow, ...]:
    """On hosts where `net` is present: its gateway answers ARP; IPv4 to the router MAC is routed.

    With an IPv6 prefix, IPv6 to the router MAC is routed too, and neighbour solicitations for
    the router's `::1` on the prefix and for its link-local go to the controller like a port's
    (controller/nd_service.py answers them with the router MAC)."""
    vni, gw = net.vni, net.gateway
    entry = (("set_field", P.REG_ROUTER, router.key), ("goto", P.ROUTE))
    flows = [
        make("l3", router.uuid, P.L3_INPUT, PRIO_HIGH,
             make_match(**{P.REG_NET: vni}, eth_dst=router.mac, eth_type=ETH_TYPE_IP), entry),
        drop("router-address", router.uuid, P.L3_INPUT, PRIO_SPOOF_CHECKED,
             make_match(**{P.REG_NET: vni}, eth_dst=router.mac)),
    ]
    if net.cidr6:
        flows.append(make("l3", router.uuid, P.L3_INPUT, PRIO_HIGH,
                          make_match(**{P.REG_NET: vni}, eth_dst=router.mac, eth_type=ETH_TYPE_IPV6),
                          entry))
        flows.extend(make("nd", router.uuid, P.ARP_RESPONDER, PRIO_HIGH,
                          make_match(**{P.REG_NET: vni}, **_ICMPV6, icmpv6_type=ND_NS,
                                     ipv6_nd_target=ip),
                          (("meter", P.DHCP_METER), ("controller", 0xFFFF)))
                     for ip in (router_ip6(net.cidr6), link_local(router.mac)))
    if gw:
        flows.append(make(
            "arp-responder", router.uuid, P.ARP_RESPONDER, PRIO_HIGH,
            make_match(**{P.REG_NET: vni}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=gw),
            _arp_reply(router.mac, gw)))
    return tuple(flows)


def _arp_reply(mac: str, ip: str) -> tuple:
    return (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", mac),
            ("set_field", "arp_op", ARP_REPLY), ("move", "arp_sha", "arp_tha", 48),
            ("move", "arp_spa", "arp_tpa", 32), ("set_field", "arp_sha", mac),
            ("set_field", "arp_spa", ip), ("output", IN_PORT))


PRIO_ROUTER_ECHO = 300
PRIO_ROUTER_ADDR = 290
PRIO_ROUTE_BASE = 200           # + 2 x prefix length (+1 for a connected network): up to 457
PRIO_ROUTER6_ECHO = 500         # IPv6 routes reach 457: the router's own IPv6 flows go above
PRIO_ROUTER6_ADDR = 490
PRIO_NOT_ROUTED6 = 480          # link-local and multicast IPv6 is never routed
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129


def _router_flows(index: CompilerIndex, tenant: str, name: str) -> tuple[Flow, ...]:
    """The router's own table (host independent, cached): echo, connected and static routes."""
    cache_key = ("router", tenant, name)
    cached = index.fragments.get(cache_key)
    if cached is not None:
        return cached
    router = index.router_by_name[(tenant, name)]
    rk, mac = router.key, router.mac
    nets = sorted((index.net_by_key[k] for k in index.nets_by_router.get((tenant, name), ())),
                  key=attrgetter("name"))
    flows = []
    for net in nets:
        if net.gateway:
            flows.append(make(   # ping the router: the echo request becomes its reply, in place
                "l3", router.uuid, P.ROUTE, PRIO_ROUTER_ECHO,
                make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP, ip_proto=1, icmpv4_type=8,
                           ipv4_dst=net.gateway),
                (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", mac),
                 ("move", "ipv4_src", "ipv4_dst", 32), ("set_field", "ipv4_src", net.gateway),
                 ("set_field", "icmpv4_type", 0), ("output", IN_PORT))))
            flows.append(drop("router-address", router.uuid, P.ROUTE, PRIO_ROUTER_ADDR,
                              make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP,
                                         ipv4_dst=net.gateway)))
        prefixlen = int(net.cidr.split("/")[1])
        flows.append(make(
            "l3", router.uuid, P.ROUTE, PRIO_ROUTE_BASE + 2 * prefixlen + 1,
            make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP, ipv4_dst=_masked(net.cidr)),
            (("dec_ttl",), ("set_field", "eth_src", mac), ("set_field", P.REG_NET, net.vni),
             ("goto", P.RESOLVE))))
    flows.extend(_router6_flows(router, [n for n in nets if n.cidr6]))
    flows.extend(NS.gateway_route(router, PRIO_ROUTE_BASE))
    for cidr, via in router.routes:
        hop = _next_hop(index, nets, via)
        if hop is None:
            continue            # the next hop is no known port (yet): nothing to send to
        net, port = hop
        prefixlen = int(cidr.split("/")[1])
        flows.append(make(
            "l3", router.uuid, P.ROUTE, PRIO_ROUTE_BASE + 2 * prefixlen,
            make_match(**{P.REG_ROUTER: rk}, **_dst_prefix(cidr)),
            (("dec_ttl",), ("set_field", "eth_src", mac), ("set_field", P.REG_NET, net.vni),
             ("set_field", "eth_dst", port.mac), ("goto", P.L2_LOOKUP))))
    result = index.fragments[cache_key] = tuple(flows)
    return result


def _router6_flows(router: Router, nets) -> list[Flow]:
    """The router's IPv6 part of table 31, given its networks that have an IPv6 prefix: echo
    requests to its addresses (each prefix's ::1, its link-local) answered in place, anything
    else to them dropped; link-local and multicast never routed; a route per connected prefix
    (hop limit decremented, router MAC as source, the destination network's reg6)."""
    if not nets:
        return []
    rk, mac = router.key, router.mac
    v6 = {P.REG_ROUTER: rk, "eth_type": ETH_TYPE_IPV6}
    flows = []
    for ip in (*(router_ip6(n.cidr6) for n in nets), link_local(mac)):
        flows.append(make(   # ping the router: the echo request becomes its reply, in place
            "l3", router.uuid, P.ROUTE, PRIO_ROUTER6_ECHO,
            make_match(**v6, ip_proto=IP_PROTO_ICMPV6, icmpv6_type=ICMPV6_ECHO_REQUEST, ipv6_dst=ip),
            (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", mac),
             ("move", "ipv6_src", "ipv6_dst", 128), ("set_field", "ipv6_src", ip),
             ("set_field", "icmpv6_type", ICMPV6_ECHO_REPLY), ("output", IN_PORT))))
        flows.append(drop("router-address", router.uuid, P.ROUTE, PRIO_ROUTER6_ADDR,
                          make_match(**v6, ipv6_dst=ip)))
    for field in ("ipv6_src", "ipv6_dst"):
        flows.append(drop("not-routed", router.uuid, P.ROUTE, PRIO_NOT_ROUTED6,
                          make_match(**v6, **{field: _masked(LINK_LOCAL_PREFIX)})))
    flows.append(drop("not-routed", router.uuid, P.ROUTE, PRIO_NOT_ROUTED6,
                      make_match(**v6, ipv6_dst=_masked("ff00::/8"))))
    for net in nets:
        prefixlen = int(net.cidr6.split("/")[1])
        flows.append(make(
            "l3", router.uuid, P.ROUTE, PRIO_ROUTE_BASE + 2 * prefixlen + 1,
            make_match(**v6, ipv6_dst=_masked(net.cidr6)),
            (("dec_ttl",), ("set_field", "eth_src", mac), ("set_field", P.REG_NET, net.vni),
             ("goto", P.RESOLVE))))
    return flows


def _dst_prefix(cidr: str) -> dict:
    """Match fields for packets to prefix `cidr` (IPv4 or IPv6)."""
    if ":" in cidr:
        return {"eth_type": ETH_TYPE_IPV6, "ipv6_dst": _masked(cidr)}
    return {"eth_type": ETH_TYPE_IP, "ipv4_dst": _masked(cidr)}


def _masked(cidr: str):
    """A prefix as a match value: the address alone for a host prefix, else (network, mask)."""
    if ":" in cidr:
        import ipaddress
        net = ipaddress.IPv6Network(cidr)
        if net.prefixlen == 128:
            return str(net.network_address)
        return (str(net.network_address), str(net.netmask))
    addr, plen = cidr.split("/")
    plen = int(plen)
    if plen == 32:
        return addr
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return (addr, ".".join(str((mask >> s) & 255) for s in (24, 16, 8, 0)))


def _next_hop(index: CompilerIndex, nets, via: str):
    import ipaddress
    hop = ipaddress.ip_address(via)
    for net in nets:
        if any(hop in ipaddress.ip_network(c) for c in net.cidrs):
            for port in index.ports_by_key.get((net.tenant, net.name), {}).values():
                if via in port.ips and bound_somewhere(index.model, port.uuid):
                    return net, port
    return None


IPFIX_COLLECTOR_SET = 1         # the Flow_Sample_Collector_Set weft configures on br-int


def _ipfix_sampling(model) -> int | None:
    """Sampling probability (out of 65535) for flow-based IPFIX, or None when off."""
    traffic = model.traffic
    if not traffic.ipfix:
        return None
    return max(1, 65535 // traffic.ipfix_sampling)


def _chunk(frag: _Fragment, host: str, sampling: int | None = None) -> tuple[Flow, ...]:
    """The flows network `frag.net` gives `host` (where it has at least one local port).

    With IPFIX on, each packet a VM sends is sampled once, at table 0 on its own host (before
    conntrack recirculates it, which bridge-level IPFIX would miss); the observation point
    is the VM's ofport, so the collector knows the port."""
    net, vni = frag.net, frag.net.vni
    local_ports = frag.local_ports.get(host, ())
    flows = [frag.tunnel_classify]
    for ofport, port in local_ports:
        flows.extend(_local_port_flows(port, ofport, vni, net.dhcp, sampling))
    flows.extend(frag.standby.get(host, ()))
    flows.extend(frag.arp)
    flows.extend(frag.l3_input)
    flows.extend(frag.resolve)
    for bound_host, local, remote in frag.l2:
        if bound_host == host:
            if local is not None:
                flows.append(local)
        elif remote is not None:
            flows.append(remote)
    for bound_host, local, remote in frag.unknown:
        flows.extend(local if bound_host == host else remote)
    m = _flood_matches(vni)
    to_local = tuple(("output", ofport) for ofport, _ in local_ports)
    to_peers = tuple(chain.from_iterable(acts for peer, acts in frag.peers if peer != host))
    flows.append(make("flood", net.uuid, P.L2_LOOKUP, PRIO_FLOOD, m["bum"], to_local + to_peers))
    flows.append(make("flood", net.uuid, P.L2_LOOKUP, PRIO_FLOOD, m["unicast"], (("goto", P.L2_UNKNOWN),)))
    unchecked = tuple(("output", o) for o, port in local_ports if not port.port_security)
    if unchecked:
        flows.append(make("flood", net.uuid, P.L2_UNKNOWN, PRIO_FLOOD, m["net"], unchecked))
    flows.append(make("flood", net.uuid, P.L2_LOOKUP, PRIO_FLOOD, m["bum_tunnel"], to_local))
    if any(A.has_acl(port) for _o, port in local_ports):
        # IP broadcast/multicast (IPv4 and IPv6) never bypasses a port's security groups: not
        # delivered to it
        open_ports = tuple(("output", o) for o, port in local_ports if not A.has_acl(port))
        for eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6):
            flows.append(make("flood", net.uuid, P.L2_LOOKUP, PRIO_FLOOD + 1, m[("bum", eth_type)],
                              open_ports + to_peers))
            flows.append(make("flood", net.uuid, P.L2_LOOKUP, PRIO_FLOOD + 1,
                              m[("bum_tunnel", eth_type)], open_ports))
    return tuple(flows)


@functools.lru_cache(maxsize=1 << 14)
def _flood_matches(vni: int) -> dict:
    """The matches of a network's flood and unknown-unicast flows (the same on every host)."""
    net, local, tunnel = {P.REG_NET: vni}, {P.REG_NET: vni, P.REG_FLAGS: 0}, \
        {P.REG_NET: vni, P.REG_FLAGS: P.FROM_TUNNEL}
    m = {"bum": make_match(**local, eth_dst=MULTICAST_BIT),
         "unicast": make_match(**local, eth_dst=UNICAST),
         "net": make_match(**net),
         "bum_tunnel": make_match(**tunnel, eth_dst=MULTICAST_BIT)}
    for eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6):
        m[("bum", eth_type)] = make_match(**local, eth_dst=MULTICAST_BIT, eth_type=eth_type)
        m[("bum_tunnel", eth_type)] = make_match(**tunnel, eth_dst=MULTICAST_BIT, eth_type=eth_type)
    return m


# A local port's own flows (classification, port security, QoS) depend only on the port, its
# ofport and three settings of its network, so they are kept while the port stays the same
# object: a change elsewhere in its network (a new port, a new member) rebuilds none of them.
_LOCAL: dict = {}
_LOCAL_MAX = 100_000


def _local_port_flows(port: Port, ofport: int, vni: int, dhcp: bool, sampling: int | None) -> tuple:
    key = (port.uuid, ofport, vni, dhcp, sampling)
    hit = _LOCAL.get(key)
    if hit is not None and hit[0] is port:
        return hit[1]
    sample = (("sample", sampling, IPFIX_COLLECTOR_SET, 1, ofport),) if sampling else ()
    flows = [make("classify", port.uuid, P.CLASSIFY, PRIO_HIGH, make_match(in_port=ofport),
                  Q.classify_actions(port, ofport, sample, vni))]
    flows.extend(_port_security(port, ofport, dhcp=dhcp))
    if port.qos is not None:
        flows.extend(Q.egress_flows(port, ofport))
        flows.extend(Q.ingress_flows(port, ofport))
    if len(_LOCAL) >= _LOCAL_MAX:
        _LOCAL.clear()
    _LOCAL[key] = (port, tuple(flows))
    return _LOCAL[key][1]


def _routed_chunk(frag: _Fragment, host: str) -> tuple[Flow, ...]:
    """What a network gives a host that only routes to it: IP -> MAC and delivery to its ports."""
    flows = list(frag.resolve)
    for bound_host, _local, remote in frag.l2:
        if bound_host != host and remote is not None:
            flows.append(remote)
    return tuple(flows)


def _dhcp(port: Port, ofport: int) -> Flow:
    """DHCP from the port's own MAC goes to the controller, through the per-host meter."""
    return make("dhcp", port.uuid, P.PORT_SECURITY, PRIO_DHCP,
                make_match(in_port=ofport, eth_src=port.mac, eth_type=ETH_TYPE_IP, ip_proto=17,
                           udp_src=68, udp_dst=67),
                (("meter", P.DHCP_METER), ("controller", 0xFFFF)))


def _port_security(port: Port, ofport: int, dhcp: bool = False) -> list[Flow]:
    goto = (("goto", P.ARP_RESPONDER),)
    extra = [_dhcp(port, ofport)] if dhcp else []
    if not port.port_security:
        return extra + [make("port-security", port.uuid, P.PORT_SECURITY, PRIO_UNCHECKED,
                             make_match(in_port=ofport), goto),
                        make("port-security", port.uuid, P.PORT_SECURITY, PRIO_UNCHECKED6,
                             make_match(in_port=ofport, eth_type=ETH_TYPE_IPV6), goto)]
    flows = extra
    ip_next = (("goto", P.EGRESS_CT),) if A.has_acl(port) else goto
    flows.extend(_port_security6(port, ofport, ip_next))
    for ip in port.ipv4s:
        flows.append(make("port-security", port.uuid, P.PORT_SECURITY, PRIO_SPOOF_CHECKED,
                          make_match(in_port=ofport, eth_src=port.mac, eth_type=ETH_TYPE_IP,
                                     ipv4_src=ip), ip_next))
        flows.append(make("port-security", port.uuid, P.PORT_SECURITY, PRIO_SPOOF_CHECKED,
                          make_match(in_port=ofport, eth_src=port.mac, eth_type=ETH_TYPE_ARP,
                                     arp_sha=port.mac, arp_spa=ip), goto))
    return flows


def _port_security6(port: Port, ofport: int, ip_next: tuple) -> list[Flow]:
    """IPv6 from a port with port security: only from its link-local (from its MAC) and its
    configured addresses. Neighbour advertisements only for its own addresses, from that
    address (as Linux, BSD and Windows send them) with its own MAC (or none) as target
    link-layer address; router advertisements and redirects never (STRUCTURAL6). Duplicate
    address detection (source ::) stops here: weft keeps addresses unique, so no one needs to
    hear it and no one answers. Neighbour discovery of a port with security groups skips
    conntrack (which would mark it invalid), as ARP does."""
    own = (port.link_local, *port.ipv6s)
    mine = {"in_port": ofport, "eth_src": port.mac}
    goto = (("goto", P.ARP_RESPONDER),)
    flows = []
    for src in own:
        flows.append(make("port-security", port.uuid, P.PORT_SECURITY, PRIO_SPOOF_CHECKED,
                          make_match(**mine, eth_type=ETH_TYPE_IPV6, ipv6_src=src), ip_next))
        for tll in (port.mac, "00:00:00:00:00:00"):     # its MAC, or no such option
            flows.append(make("port-security", port.uuid, P.PORT_SECURITY, PRIO_ND_FORBIDDEN + 1,
                              make_match(**mine, **_ICMPV6, ipv6_src=src, icmpv6_type=ND_NA,
                                         ipv6_nd_target=src, ipv6_nd_tll=tll), goto))
        if ip_next != goto:
            flows.append(make("port-security", port.uuid, P.PORT_SECURITY, PRIO_ND,
                              make_match(**mine, **_ICMPV6, ipv6_src=src, icmpv6_type=ND_NS), goto))
    return flows


def _to_tunnel(tunnel_ip: str, vni: int) -> tuple:
    return (("set_field", "tun_ipv4_dst", tunnel_ip), ("set_field", "tunnel_id", vni),
            ("output", P.TUNNEL_OFPORT))
