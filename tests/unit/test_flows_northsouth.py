"""North-south proven with the tracer: SNAT on the gateway host, distributed floating IPs.

red and blue both use 10.0.0.0/24 behind their router `r`, each with a gateway on the shared
external network admin/ext (203.0.113.0/24, edge router 203.0.113.1). red's SNAT runs on hv1,
blue's on hv2; red's port rb on hv3 has floating IP 203.0.113.50.
"""
import dataclasses

import pytest

from flows import pipeline as P
from flows.compiler import CompilerIndex, affected_hosts, compile_all, compile_host
from flows.northsouth import RESOLVER_MAC, router_zone
from flows.tracer import Fabric, arp_reply, arp_request, icmp_echo, tcp
from topology.model import (Binding, FloatingIP, Host, Model, Network, Port, Router, Rule,
                            SecurityGroup, Tenant)

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
EDGE, EDGE_MAC = "203.0.113.1", "02:00:00:00:0e:01"
PROV = P.PROVIDER_OFPORT
R_MAC, B_MAC = "02:77:65:00:00:aa", "02:77:65:00:00:bb"
GW = {"red": ("203.0.113.2", "02:77:65:00:01:aa", 2001, "hv1"),
      "blue": ("203.0.113.3", "02:77:65:00:01:bb", 2002, "hv2")}
FIP, FIP_MAC = "203.0.113.50", "02:77:65:00:02:50"
# name: (tenant, mac, ip, host, ofport)
PORTS = {"ra": ("red", "fa:16:3e:00:00:01", "10.0.0.10", "hv2", 1),
         "rb": ("red", "fa:16:3e:00:00:02", "10.0.0.20", "hv3", 1),
         "ba": ("blue", "fa:16:3e:00:00:11", "10.0.0.10", "hv3", 2)}


def build(edge_mac=EDGE_MAC, fip_port="rb", groups=()) -> Model:
    nets = {"ext": Network("ext", "admin", "ext", "203.0.113.0/24", 900, EDGE, dhcp=False,
                           external=True, provider="phys", gateway_mac=edge_mac),
            "red-n": Network("red-n", "red", "n", "10.0.0.0/24", 1000, "10.0.0.1", router="r"),
            "blue-n": Network("blue-n", "blue", "n", "10.0.0.0/24", 1001, "10.0.0.1", router="r")}
    routers = {t: Router(t, t, "r", mac, key, (), "admin/ext", GW[t][0], GW[t][1], GW[t][2], GW[t][3])
               for t, mac, key in (("red", R_MAC, 7), ("blue", B_MAC, 8))}
    sgs = {"web": SecurityGroup("web", "red", "web", (
        Rule("r1", 11, "ingress", "tcp", 22, 22, remote_cidr="0.0.0.0/0"),
        Rule("r2", 12, "egress", remote_cidr="0.0.0.0/0")))}
    return Model(
        tenants={t: Tenant(t, t) for t in ("admin", "red", "blue")},
        networks=nets,
        ports={n: Port(n, t, "n", n, mac, (ip,), security_groups=groups if n == "rb" else ())
               for n, (t, mac, ip, _, _) in PORTS.items()},
        hosts={h: Host(h, ip, "x", providers=(("phys", "br-ex"),)) for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_, _, _, h, o) in PORTS.items()},
        routers=routers, security_groups=sgs,
        floating_ips={"f1": FloatingIP("f1", "red", "admin/ext", FIP, FIP_MAC, fip_port)})


class Net:
    def __init__(self, model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        for flows in self.flows.values():
            P.validate(flows)
        self.fabric = Fabric(self.flows, HOSTS)
        self.at = {(b.host, b.ofport): n for n, b in model.bindings.items()}

    def from_vm(self, src, dst_ip, packet=None):
        t, mac, ip, host, ofport = PORTS[src]
        router_mac = R_MAC if t == "red" else B_MAC
        pkt = packet or icmp_echo(mac, router_mac, ip, dst_ip)
        return self._named(self.fabric.send(host, pkt, ofport))

    def from_outside(self, host, pkt):
        return self._named(self.fabric.send(host, pkt, PROV))

    def _named(self, deliveries):
        return [(d.host, self.at.get((d.host, d.port), d.port), d.packet) for d in deliveries]


@pytest.fixture
def net():
    return Net(build())


def test_snat_on_the_gateway_host_and_replies_come_back(net):
    out = net.from_vm("ra", EDGE, tcp(PORTS["ra"][1], R_MAC, "10.0.0.10", EDGE, 40000, 80))
    assert [(h, p) for h, p, _ in out] == [("hv1", PROV)]          # tunnelled to hv1, out there
    pkt = out[0][2]
    assert (pkt["ipv4_src"], pkt["eth_src"], pkt["eth_dst"]) == (GW["red"][0], GW["red"][1], EDGE_MAC)
    assert pkt["ip_ttl"] == 63
    back = net.from_outside("hv1", tcp(EDGE_MAC, GW["red"][1], EDGE, GW["red"][0], 80, 40000))
    assert [(h, p) for h, p, _ in back] == [("hv2", "ra")]
    assert back[0][2]["ipv4_dst"] == "10.0.0.10" and back[0][2]["eth_dst"] == PORTS["ra"][1]


def test_overlapping_tenants_leave_with_their_own_gateway_and_stay_apart(net):
    red = net.from_vm("ra", EDGE, tcp(PORTS["ra"][1], R_MAC, "10.0.0.10", EDGE, 40000, 80))
    blue = net.from_vm("ba", EDGE, tcp(PORTS["ba"][1], B_MAC, "10.0.0.10", EDGE, 40000, 80))
    assert [(h, p) for h, p, _ in blue] == [("hv2", PROV)]
    assert red[0][2]["ipv4_src"] == GW["red"][0] and blue[0][2]["ipv4_src"] == GW["blue"][0]
    back = net.from_outside("hv2", tcp(EDGE_MAC, GW["blue"][1], EDGE, GW["blue"][0], 80, 40000))
    assert [(h, p) for h, p, _ in back] == [("hv3", "ba")]
    assert router_zone(net.model.routers["red"]) != router_zone(net.model.routers["blue"])


def test_outside_cannot_open_connections_to_a_gateway_address(net):
    assert net.from_outside("hv1", tcp(EDGE_MAC, GW["red"][1], EDGE, GW["red"][0], 80, 22)) == []
    assert net.from_outside("hv1", icmp_echo(EDGE_MAC, GW["red"][1], EDGE, GW["red"][0])) == []


def test_floating_ip_both_ways_on_the_ports_own_host(net):
    inbound = net.from_outside("hv3", tcp(EDGE_MAC, FIP_MAC, EDGE, FIP, 50000, 22))
    assert [(h, p) for h, p, _ in inbound] == [("hv3", "rb")]
    assert inbound[0][2]["ipv4_dst"] == "10.0.0.20" and inbound[0][2]["ipv4_src"] == EDGE
    reply = net.from_vm("rb", EDGE, tcp(PORTS["rb"][1], R_MAC, "10.0.0.20", EDGE, 22, 50000))
    assert [(h, p) for h, p, _ in reply] == [("hv3", PROV)]
    assert (reply[0][2]["ipv4_src"], reply[0][2]["eth_src"]) == (FIP, FIP_MAC)
    # its own new connections leave from the floating IP too, not through the gateway host
    own = net.from_vm("rb", EDGE, tcp(PORTS["rb"][1], R_MAC, "10.0.0.20", EDGE, 41000, 443))
    assert [(h, p, d["ipv4_src"]) for h, p, d in own] == [("hv3", PROV, FIP)]


def test_arp_for_addresses_answered_only_where_they_are_translated(net):
    for host in HOSTS:
        for ip, mac, where in ((FIP, FIP_MAC, "hv3"), (GW["red"][0], GW["red"][1], "hv1")):
            got = net.from_outside(host, arp_request(EDGE_MAC, EDGE, ip))
            if host == where:
                assert [(p, d["arp_sha"]) for _h, p, d in got] == [(PROV, mac)]
            else:
                assert got == []
    # an ARP reply (to weftd's resolver probe) goes to the controller
    got = net.from_outside("hv1", arp_reply(EDGE_MAC, RESOLVER_MAC, EDGE, "0.0.0.0"))
    assert [p for _h, p, _d in got] == [0xFFFFFFFD]


def test_security_groups_apply_to_floating_ip_traffic():
    net = Net(build(groups=("web",)))
    assert net.from_outside("hv3", icmp_echo(EDGE_MAC, FIP_MAC, EDGE, FIP)) == []
    assert net.from_outside("hv3", tcp(EDGE_MAC, FIP_MAC, EDGE, FIP, 50000, 80)) == []
    ok = net.from_outside("hv3", tcp(EDGE_MAC, FIP_MAC, EDGE, FIP, 50000, 22))
    assert [(h, p) for h, p, _ in ok] == [("hv3", "rb")]


def test_disassociated_floating_ip_is_gone_and_only_its_host_changes():
    old, new = build(), build(fip_port=None)
    net = Net(new)
    assert net.from_outside("hv3", tcp(EDGE_MAC, FIP_MAC, EDGE, FIP, 50000, 22)) == []
    assert net.from_outside("hv3", arp_request(EDGE_MAC, EDGE, FIP)) == []
    out = net.from_vm("rb", EDGE, tcp(PORTS["rb"][1], R_MAC, "10.0.0.20", EDGE, 41000, 443))
    assert [(h, d["ipv4_src"]) for h, _p, d in out] == [("hv1", GW["red"][0])]   # SNAT now
    assert "hv3" in affected_hosts(old, new)


def test_nothing_leaves_before_the_edge_mac_is_known():
    net = Net(build(edge_mac=None))
    assert net.from_vm("ra", EDGE) == []


def test_gateway_host_change_recompiles_old_and_new_gateway_hosts():
    old = build()
    routers = dict(old.routers)
    routers["red"] = dataclasses.replace(routers["red"], gw_host="hv3")
    new = dataclasses.replace(old, routers=routers)
    hosts = affected_hosts(old, new)
    assert {"hv1", "hv3", "hv2"} <= hosts
    out = Net(new).from_vm("ra", EDGE)
    assert [(h, d["ipv4_src"]) for h, _p, d in out] == [("hv3", GW["red"][0])]
    # the edge MAC resolved later reaches the gateway hosts too
    ext = dataclasses.replace(old.networks["ext"], gateway_mac="02:00:00:00:0e:02")
    moved = dataclasses.replace(old, networks={**old.networks, "ext": ext})
    assert {"hv1", "hv2", "hv3"} <= affected_hosts(old, moved)


def _changes(base: Model):
    """North-south changes, each as the new model."""
    def routers(**fields):
        return {k: dataclasses.replace(r, **fields) if k == "red" else r for k, r in base.routers.items()}
    ext = base.networks["ext"]
    hosts = dict(base.hosts)
    hosts["hv3"] = dataclasses.replace(hosts["hv3"], providers=())
    moved = dict(base.bindings)
    moved["rb"] = Binding("rb", "hv2", 7)
    yield "fip disassociated", dataclasses.replace(base, floating_ips={
        "f1": dataclasses.replace(base.floating_ips["f1"], port=None)})
    yield "fip deleted", dataclasses.replace(base, floating_ips={})
    yield "gateway moved", dataclasses.replace(base, routers=routers(gw_host="hv3"))
    yield "gateway unset", dataclasses.replace(base, routers=routers(
        gw_network=None, gw_ip=None, gw_mac=None, gw_vni=None, gw_host=None), floating_ips={})
    yield "edge mac changed", dataclasses.replace(base, networks={
        **base.networks, "ext": dataclasses.replace(ext, gateway_mac="02:00:00:00:0e:09")})
    yield "provider gone from hv3", dataclasses.replace(base, hosts=hosts)
    yield "fip port moved", dataclasses.replace(base, bindings=moved)


@pytest.mark.parametrize("name", [n for n, _ in _changes(build())])
def test_incremental_compile_equals_full_and_unaffected_hosts_keep_their_flows(name):
    old = build()
    new = dict(_changes(old))[name]
    old_index = CompilerIndex(old)
    before = compile_all(old_index)                     # fills the fragment cache
    new_index = old_index.updated(new)
    full = compile_all(CompilerIndex(new))
    assert {h: compile_host(new_index, h) for h in full} == full, name
    affected = affected_hosts(old, new, old_index, new_index)
    for host in full:
        if host not in affected:
            assert full[host] == before[host], (name, host)
