"""Distributed routing proven with the tracer: routed on the sender's host, tunnelled straight on.

Tenants red and blue each have 10.0.0.0/24 and 10.0.1.0/24 joined by their own router; red's
ports are spread over three hosts.
"""
import dataclasses

import pytest

from flows import pipeline
from flows.compiler import CompilerIndex, affected_hosts, compile_all, compile_host
from flows.tracer import Fabric, arp_request, ipv4, tcp
from topology.model import Binding, Host, Model, Network, Port, Router, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
R_MAC, B_MAC = "02:77:65:00:00:aa", "02:77:65:00:00:bb"
# name: (tenant, net, mac, ip, host, ofport)
PORTS = {
    "ra": ("red", "n0", "fa:16:3e:00:00:01", "10.0.0.10", "hv1", 1),
    "rb": ("red", "n1", "fa:16:3e:00:00:02", "10.0.1.10", "hv2", 1),
    "rc": ("red", "n1", "fa:16:3e:00:00:03", "10.0.1.20", "hv3", 1),
    "rd": ("red", "n0", "fa:16:3e:00:00:04", "10.0.0.20", "hv3", 2),
    "rgw": ("red", "n1", "fa:16:3e:00:00:05", "10.0.1.254", "hv2", 2),   # a VM acting as a router
    "ba": ("blue", "n0", "fa:16:3e:00:00:11", "10.0.0.10", "hv1", 3),
    "bb": ("blue", "n1", "fa:16:3e:00:00:12", "10.0.1.10", "hv2", 3),
}
VNI = {("red", "n0"): 1000, ("red", "n1"): 1001, ("blue", "n0"): 1002, ("blue", "n1"): 1003}


def build(routes=(("192.168.5.0/24", "10.0.1.254"),), attached=("n0", "n1")) -> Model:
    nets = {}
    for (tenant, name), vni in VNI.items():
        cidr = "10.0.0.0/24" if name == "n0" else "10.0.1.0/24"
        gw = "10.0.0.1" if name == "n0" else "10.0.1.1"
        router = "r" if (tenant == "blue" or name in attached) else None
        nets[f"{tenant}-{name}"] = Network(f"{tenant}-{name}", tenant, name, cidr, vni, gw,
                                           router=router)
    return Model(
        tenants={t: Tenant(t, t) for t in ("red", "blue")},
        networks=nets,
        ports={n: Port(n, t, net, n, mac, (ip,)) for n, (t, net, mac, ip, _, _) in PORTS.items()},
        hosts={h: Host(h, ip, "x") for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_, _, _, _, h, o) in PORTS.items()},
        routers={"R": Router("R", "red", "r", R_MAC, 7, tuple(routes)),
                 "B": Router("B", "blue", "r", B_MAC, 8)})


class Net:
    def __init__(self, model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, HOSTS)
        self.at = {(b.host, b.ofport): n for n, b in model.bindings.items()}

    def send(self, src, dst_ip, router_mac=R_MAC, **kw):
        t, _n, mac, ip, host, ofport = PORTS[src]
        pkt = kw.pop("packet", None) or ipv4(mac, router_mac, ip, dst_ip, **kw)
        return [(self.at.get((d.host, d.port), d.port), d.packet)
                for d in self.fabric.send(host, pkt, ofport)]


@pytest.fixture(scope="module")
def net():
    return Net(build())


@pytest.mark.parametrize("src, dst", [("ra", "rb"), ("ra", "rc"), ("rd", "rb"), ("rb", "ra"),
                                      ("rc", "rd"), ("ba", "bb"), ("bb", "ba")])
def test_routed_across_subnets_and_hosts_ttl_once_macs_rewritten(net, src, dst):
    router_mac = R_MAC if src.startswith("r") else B_MAC
    got = net.send(src, PORTS[dst][3], router_mac=router_mac)
    assert [name for name, _ in got] == [dst]
    pkt = got[0][1]
    assert pkt["ip_ttl"] == 63
    assert pkt["eth_src"] == router_mac and pkt["eth_dst"] == PORTS[dst][2]
    assert pkt["ipv4_src"] == PORTS[src][3]


def test_routing_happens_on_the_sending_host_and_uses_the_destination_vni(net):
    # ra on hv1 -> rc on hv3: the only tunnel crossing is hv1 -> hv3 with n1's VNI
    flows = net.flows["hv1"]
    trace = __import__("flows.tracer", fromlist=["trace"]).trace
    t, _n, mac, ip, _h, ofport = PORTS["ra"]
    outs = trace(flows, ipv4(mac, R_MAC, ip, "10.0.1.20"), ofport)
    assert [(o.port, o.packet["tun_ipv4_dst"], o.packet["tunnel_id"]) for o in outs] == \
        [(pipeline.TUNNEL_OFPORT, HOSTS["hv3"], VNI[("red", "n1")])]


def test_gateway_arp_and_echo_are_answered_on_the_host(net):
    t, _n, mac, ip, host, ofport = PORTS["ra"]
    got = net.fabric.send(host, arp_request(mac, ip, "10.0.0.1"), ofport)
    assert [(d.port, d.packet["arp_op"], d.packet["arp_sha"]) for d in got] == [(ofport, 2, R_MAC)]
    got = net.send("ra", "10.0.0.1", icmpv4_type=8)
    assert len(got) == 1 and got[0][0] == "ra"
    reply = got[0][1]
    assert (reply["icmpv4_type"], reply["ipv4_src"], reply["ipv4_dst"]) == (0, "10.0.0.1", ip)
    assert (reply["eth_src"], reply["eth_dst"]) == (R_MAC, mac)
    # the router's other address answers too, and nothing else to its addresses passes
    assert [n for n, _ in net.send("ra", "10.0.1.1", icmpv4_type=8)] == ["ra"]
    assert net.send("ra", "10.0.1.1", packet=tcp(mac, R_MAC, ip, "10.0.1.1", 1000, 22)) == []


def test_ttl_expiry_and_unknown_destinations_are_dropped(net):
    assert net.send("ra", "10.0.1.10", ip_ttl=1) == []
    assert net.send("ra", "10.0.1.99") == []          # in a connected network, but no such port
    assert net.send("ra", "172.16.0.1") == []         # no route


def test_static_route_goes_to_the_next_hop_port(net):
    got = net.send("ra", "192.168.5.7")
    assert [n for n, _ in got] == ["rgw"]
    assert got[0][1]["eth_dst"] == PORTS["rgw"][2] and got[0][1]["ip_ttl"] == 63


def test_a_red_vm_routing_toward_blue_addresses_reaches_only_red(net):
    # 10.0.1.10 is rb (red) and bb (blue); red's router only knows red's networks
    assert [n for n, _ in net.send("ra", "10.0.1.10")] == ["rb"]
    # blue's router MAC is not red's router: from red it is unknown unicast, never routed
    assert net.send("ra", "10.0.1.10", router_mac=B_MAC) == []
    for host, flows in net.flows.items():
        for f in flows:
            if f.table == pipeline.ROUTE and ("reg5", 7) in f.match:
                nets = {a[2] for a in f.actions if a[:2] == ("set_field", "reg6")}
                assert nets <= {1000, 1001}, f


def test_detaching_cuts_cross_subnet_and_keeps_same_subnet():
    detached = Net(build(routes=(), attached=("n0",)))
    assert detached.send("ra", "10.0.1.10") == []
    # from the detached network the old router MAC is unknown unicast: flooded in n1 only
    assert {n for n, _ in detached.send("rb", "10.0.0.10")} <= {"rc", "rgw"}
    t, _n, mac, ip, host, ofport = PORTS["ra"]
    same = ipv4(mac, PORTS["rd"][2], ip, "10.0.0.20")
    assert [detached.at[(d.host, d.port)] for d in detached.fabric.send(host, same, ofport)] == ["rd"]


def test_hosts_without_a_routed_network_get_no_router_flows(net):
    model = dataclasses.replace(net.model, hosts={**net.model.hosts, "hv4": Host("hv4", "192.0.2.4", "x")})
    flows = compile_host(CompilerIndex(model), "hv4")
    assert not [f for f in flows if f.table in (pipeline.ROUTE, pipeline.RESOLVE) and f.priority]


@pytest.mark.parametrize("change", ["detach", "route", "router-mac", "port-in-other-net"])
def test_affected_hosts_cover_every_host_whose_flows_change(change):
    old = build()
    if change == "detach":
        new = build(attached=("n0",))
    elif change == "route":
        new = build(routes=())
    elif change == "router-mac":
        new = dataclasses.replace(old, routers={**old.routers, "R": dataclasses.replace(
            old.routers["R"], mac="02:77:65:00:00:cc")})
    else:   # a new port in red/n1 on hv2 changes what hv1 (only red/n0 there) resolves
        port = Port("new", "red", "n1", "new", "fa:16:3e:00:00:99", ("10.0.1.99",))
        new = dataclasses.replace(old, ports={**old.ports, "new": port},
                                  bindings={**old.bindings, "new": Binding("new", "hv2", 9)})
    before, after = compile_all(CompilerIndex(old)), compile_all(CompilerIndex(new))
    changed = {h for h in set(before) | set(after) if set(before.get(h, ())) != set(after.get(h, ()))}
    assert changed and changed <= affected_hosts(old, new)
    old_index = CompilerIndex(old)
    compile_all(old_index)                     # fill the fragment cache, then update it
    assert compile_all(old_index.updated(new)) == after


def test_without_a_router_the_gateway_arp_is_the_dhcp_servers():
    from flows.pipeline import DHCP_SERVER_MAC
    detached = Net(build(routes=(), attached=("n0",)))
    t, _n, mac, ip, host, ofport = PORTS["rb"]          # red/n1 has no router now
    got = detached.fabric.send(host, arp_request(mac, ip, "10.0.1.1"), ofport)
    assert [(d.port, d.packet["arp_op"], d.packet["arp_sha"]) for d in got] == [(ofport, 2, DHCP_SERVER_MAC)]
    # with its router, the same address is the router's
    routed = Net(build())
    got = routed.fabric.send(host, arp_request(mac, ip, "10.0.1.1"), ofport)
    assert [d.packet["arp_sha"] for d in got] == [R_MAC]
