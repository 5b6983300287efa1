"""North-south flows: router gateways (SNAT on one gateway host) and distributed floating IPs.

An external network lives on a provider bridge of each host (`Host.providers`, patched to br-int
at ofport PROVIDER_OFPORT + the provider's index); its traffic is IPv4 to and from the edge
router (the network's gateway, whose MAC weftd resolves: `Network.gateway_mac`).

Leaving (a VM's packet routed by its router on its own host, table 31, finds no tenant
route): the router's default route goes to table 33.
    33 a port with a floating IP, on its own host: ct(commit, zone=Zr, nat(src=FIP)) -> 34
       anything else: on the router's gateway host ct(commit, zone=Zr, nat(src=gateway IP)) -> 34;
       on any other host, tunnelled to the gateway host with the router's gateway VNI (table 0
       there sets reg5 and goes to 33)
    34 source = FIP or gateway IP: its own MAC as source, the edge router's MAC as destination,
       out of the provider port
Entering (from the provider port: table 0 sets reg6 = the external network's VNI):
    20 ARP requests for a gateway IP are answered on the gateway host, for a floating IP on its
       port's host only (so the edge sends each address's traffic to the one host holding its
       translation); ARP replies (to weftd's resolver probes) go to the controller
    25 to a floating IP: reg5 = router, ct(commit, zone=Zr, nat(dst=fixed IP)) -> 26
       to a gateway IP: reg5 = router, ct(zone=Zr, nat) -> 26 (replies only are translated)
    26 still to the gateway IP (no connection of ours) or invalid: drop; else on to 31, where
       the router routes it like any packet (security groups then apply at the port, 45/46)
Conntrack zone Zr is the router's own (0x8000 | its key's low 15 bits; ports' security-group
zones are their ofports, below 0x8000), so tenants reusing addresses never share NAT state.
"""
from __future__ import annotations

from flows import pipeline as P
from flows.cookies import make
from flows.flow import ETH_TYPE_ARP, ETH_TYPE_IP, IN_PORT, make_match

PRIO_HIGH = 100
PRIO_FIP = 110
PRIO_UNTRANSLATED = 200
PRIO_INVALID = 300
ARP_REQUEST, ARP_REPLY = 1, 2
CT_TRK, CT_INV = 0x20, 0x10
RESOLVER_MAC = "02:77:65:ff:ff:fd"   # source of weftd's ARP probes for the edge router's MAC


def router_zone(router) -> int:
    """The conntrack zone of a router's NAT (distinct from ports' zones, their ofports)."""
    return 0x8000 | (router.key & 0x7FFF)


def provider_ofport(host, provider: str | None) -> int | None:
    """br-int's ofport of the patch to `provider` on `host`, or None when the host lacks it."""
    if host is None or provider is None:
        return None
    names = [name for name, _bridge in host.providers]
    if provider not in names:
        return None
    return P.PROVIDER_OFPORT + names.index(provider)


def external_of(index, ref: str | None):
    """The external Network record that `ref` ("TENANT/NET") names, or None."""
    if not ref or "/" not in ref:
        return None
    net = index.net_by_key.get(tuple(ref.split("/", 1)))
    return net if net is not None and net.external else None


def gateway_route(router, prio_route_base: int) -> tuple:
    """Table 31 of a router with a gateway: what no tenant route takes leaves through it (a
    priority below any static route, 0.0.0.0/0 included)."""
    if not router.gw_network:
        return ()
    return (make("l3", router.uuid, P.ROUTE, prio_route_base - 1,
                 make_match(**{P.REG_ROUTER: router.key}, eth_type=ETH_TYPE_IP),
                 (("dec_ttl",), ("set_field", "eth_src", router.mac), ("goto", P.SNAT))),)


def gateway_routers(index, host: str) -> list:
    """Routers whose SNAT `host` does (cached per index)."""
    cache = index.__dict__.get("_gw_by_host")
    if cache is None:
        cache = {}
        for router in index.router_by_name.values():
            if router.gw_network and router.gw_host:
                cache.setdefault(router.gw_host, []).append(router)
        index.__dict__["_gw_by_host"] = cache
    return cache.get(host, [])


def _fips_by_port(index) -> dict:
    cache = index.__dict__.get("_fip_by_port")
    if cache is None:
        cache = {f.port: f for f in index.model.floating_ips.values() if f.port}
        index.__dict__["_fip_by_port"] = cache
    return cache


def _arp_answer(owner: str, vni: int, ip: str, mac: str):
    return make("arp-responder", owner, P.ARP_RESPONDER, PRIO_HIGH,
                make_match(**{P.REG_NET: vni}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=ip),
                (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", mac),
                 ("set_field", "arp_op", ARP_REPLY), ("move", "arp_sha", "arp_tha", 48),
                 ("move", "arp_spa", "arp_tpa", 32), ("set_field", "arp_sha", mac),
                 ("set_field", "arp_spa", ip), ("output", IN_PORT)))


def _to_edge(owner: str, router, ext, ofport: int, src_ip: str, mac: str) -> list:
    if not ext.gateway_mac:
        return []               # not resolved yet: weftd's resolver is asking (nothing leaves)
    return [make("l3", owner, P.EXT_OUT, PRIO_HIGH,
                 make_match(**{P.REG_ROUTER: router.key}, eth_type=ETH_TYPE_IP, ipv4_src=src_ip),
                 (("set_field", "eth_src", mac), ("set_field", "eth_dst", ext.gateway_mac),
                  ("output", ofport)))]


def host_flows(index, host: str, routers: set, local: dict) -> list:
    """The north-south flows of `host`, given the (tenant, name) of the routers present on it
    (gateway routers included) and its local ports {uuid: (Port, Binding)}."""
    model = index.model
    here = model.hosts.get(host)
    flows: list = []
    providers_done: set = set()
    entered: dict = {}          # router key -> router, for table 26

    def provider_in(ext) -> int | None:
        ofport = provider_ofport(here, ext.provider)
        if ofport is None or ext.provider in providers_done:
            return ofport
        providers_done.add(ext.provider)
        for eth_type, table in ((ETH_TYPE_ARP, P.ARP_RESPONDER), (ETH_TYPE_IP, P.EXT_IN)):
            flows.append(make("classify", ext.uuid, P.CLASSIFY, PRIO_HIGH,
                              make_match(in_port=ofport, eth_type=eth_type),
                              (("set_field", P.REG_NET, ext.vni), ("goto", table))))
        flows.append(make("arp-responder", ext.uuid, P.ARP_RESPONDER, PRIO_HIGH,
                          make_match(**{P.REG_NET: ext.vni}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REPLY),
                          (("meter", P.DHCP_METER), ("controller", 0xFFFF))))
        return ofport

    for tenant, name in sorted(routers):
        router = index.router_by_name.get((tenant, name))
        if router is None or not router.gw_network:
            continue
        ext = external_of(index, router.gw_network)
        if ext is None:
            continue
        rk, zone = router.key, router_zone(router)
        if router.gw_host == host:
            ofport = provider_in(ext)
            if ofport is None:
                continue        # the gateway host lacks the provider: nothing leaves
            flows.append(make("l3", router.uuid, P.CLASSIFY, PRIO_HIGH,
                              make_match(in_port=P.TUNNEL_OFPORT, tunnel_id=router.gw_vni),
                              (("set_field", P.REG_ROUTER, rk), ("goto", P.SNAT))))
            flows.append(make("l3", router.uuid, P.SNAT, PRIO_HIGH,
                              make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP),
                              (("ct_nat", True, zone, P.EXT_OUT, ("src", router.gw_ip)),)))
            flows.extend(_to_edge(router.uuid, router, ext, ofport, router.gw_ip, router.gw_mac))
            flows.append(_arp_answer(router.uuid, ext.vni, router.gw_ip, router.gw_mac))
            flows.append(make("l3", router.uuid, P.EXT_IN, PRIO_HIGH,
                              make_match(**{P.REG_NET: ext.vni}, eth_type=ETH_TYPE_IP,
                                         ipv4_dst=router.gw_ip),
                              (("set_field", P.REG_ROUTER, rk),
                               ("ct_nat", False, zone, P.EXT_IN_NAT, None))))
            flows.append(make("l3", router.uuid, P.EXT_IN_NAT, PRIO_UNTRANSLATED,
                              make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP,
                                         ipv4_dst=router.gw_ip), ()))
            entered[rk] = router
        else:
            gw = model.hosts.get(router.gw_host)
            if gw is None:
                continue
            flows.append(make("l3", router.uuid, P.SNAT, PRIO_HIGH,
                              make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP),
                              (("set_field", "tun_ipv4_dst", gw.tunnel_ip),
                               ("set_field", "tunnel_id", router.gw_vni),
                               ("output", P.TUNNEL_OFPORT))))

    fips = _fips_by_port(index)
    for uuid in sorted(local):
        fip = fips.get(uuid)
        if fip is None:
            continue
        port, _binding = local[uuid]
        net = index.net_by_key.get((port.tenant, port.network))
        router = index.router_by_name.get((net.tenant, net.router)) if net and net.router else None
        if router is None or router.gw_network != fip.network or not port.ipv4s:
            continue
        ext = external_of(index, fip.network)
        ofport = provider_in(ext) if ext is not None else None
        if ofport is None:
            continue            # this host lacks the provider: the address is not reachable
        rk, zone, fixed = router.key, router_zone(router), port.ipv4s[0]
        flows.append(_arp_answer(fip.uuid, ext.vni, fip.ip, fip.mac))
        flows.append(make("l3", fip.uuid, P.EXT_IN, PRIO_HIGH,
                          make_match(**{P.REG_NET: ext.vni}, eth_type=ETH_TYPE_IP, ipv4_dst=fip.ip),
                          (("set_field", P.REG_ROUTER, rk),
                           ("ct_nat", True, zone, P.EXT_IN_NAT, ("dst", fixed)))))
        flows.append(make("l3", fip.uuid, P.SNAT, PRIO_FIP,
                          make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP, ipv4_src=fixed),
                          (("ct_nat", True, zone, P.EXT_OUT, ("src", fip.ip)),)))
        flows.extend(_to_edge(fip.uuid, router, ext, ofport, fip.ip, fip.mac))
        entered[rk] = router

    for rk, router in sorted(entered.items()):
        flows.append(make("l3", router.uuid, P.EXT_IN_NAT, PRIO_HIGH,
                          make_match(**{P.REG_ROUTER: rk}, eth_type=ETH_TYPE_IP), (("goto", P.ROUTE),)))
    if entered:
        flows.append(make("pipeline", None, P.EXT_IN_NAT, PRIO_INVALID,
                          make_match(ct_state=(CT_INV | CT_TRK, CT_INV | CT_TRK)), ()))
    return flows


def touched(diff, old, new) -> set:
    """NetKeys whose hosts' north-south flows may change with `diff` (beyond flows/index.py's):
    a floating IP's port's network; the networks of routers gatewayed on a changed external
    network or on a changed host."""
    keys: set = set()
    for idx in (old, new):
        model = idx.model
        for uuid in getattr(diff, "floating_ips", ()):
            fip = model.floating_ips.get(uuid)
            port = model.ports.get(fip.port) if fip is not None and fip.port else None
            if port is not None:
                keys.add((port.tenant, port.network))
        exts = {model.networks[u].ref for u in diff.networks
                if u in model.networks and model.networks[u].external}
        if exts or diff.hosts:
            for router in idx.router_by_name.values():
                if router.gw_network in exts or (router.gw_host and router.gw_host in diff.hosts):
                    keys |= idx.nets_by_router.get((router.tenant, router.name), set())
            if exts:
                for fip in model.floating_ips.values():
                    port = model.ports.get(fip.port) if fip.port else None
                    if fip.network in exts and port is not None:
                        keys.add((port.tenant, port.network))
    return keys


def gateway_hosts(keys, old, new) -> set:
    """The gateway hosts of the routers of networks `keys` (they route for them)."""
    hosts = set()
    for key in keys:
        for idx in (old, new):
            net = idx.net_by_key.get(key)
            if net is not None and net.router:
                router = idx.router_by_name.get((net.tenant, net.router))
                if router is not None and router.gw_host:
                    hosts.add(router.gw_host)
    return hosts
