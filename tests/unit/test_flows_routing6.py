"""IPv6 routing proven with the tracer: a tenant's router joins the IPv6 prefixes of its networks.

Tenants red and blue each have n0 (10.0.0.0/24, fd00:0::/64) and n1 (10.0.1.0/24, fd00:1::/64)
on a router of their own, with the same addresses; red also has n2 (IPv4 only) on its router.
Ports are spread over three hosts.
"""
import dataclasses

import pytest

from flows import pipeline
from flows.compiler import CompilerIndex, affected_hosts, compile_all
from flows.flow import CONTROLLER
from flows.tracer import Fabric, icmpv6, ipv4, neighbour_solicitation, tcp
from tests.unit.test_flows_compiler import check_isolation_invariants
from topology.addresses import link_local
from topology.model import Binding, Host, Model, Network, Port, Router, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
R_MAC, B_MAC = "02:77:65:00:00:aa", "02:77:65:00:00:bb"
# name: (tenant, net, mac, ips, host, ofport)
PORTS = {
    "ra": ("red", "n0", "fa:16:3e:00:00:01", ("10.0.0.10", "fd00::10"), "hv1", 1),
    "rb": ("red", "n1", "fa:16:3e:00:00:02", ("10.0.1.10", "fd00:1::10"), "hv2", 1),
    "rc": ("red", "n1", "fa:16:3e:00:00:03", ("10.0.1.20", "fd00:1::20"), "hv3", 1),
    "rd": ("red", "n0", "fa:16:3e:00:00:04", ("10.0.0.20", "fd00::20"), "hv3", 2),
    "rgw": ("red", "n1", "fa:16:3e:00:00:05", ("10.0.1.254", "fd00:1::fe"), "hv2", 2),  # a VM router
    "r4": ("red", "n2", "fa:16:3e:00:00:06", ("10.0.2.10",), "hv2", 4),                  # IPv4 only
    "ba": ("blue", "n0", "fa:16:3e:00:00:11", ("10.0.0.10", "fd00::10"), "hv1", 3),
    "bb": ("blue", "n1", "fa:16:3e:00:00:12", ("10.0.1.10", "fd00:1::10"), "hv2", 3),
}
VNI = {("red", "n0"): 1000, ("red", "n1"): 1001, ("red", "n2"): 1004,
       ("blue", "n0"): 1002, ("blue", "n1"): 1003}
ROUTES = (("192.168.5.0/24", "10.0.1.254"), ("fd00:9::/64", "fd00:1::fe"))


def build_routed6(routes=ROUTES, attached=("n0", "n1", "n2"), ports=PORTS) -> Model:
    nets = {}
    for (tenant, name), vni in VNI.items():
        i = int(name[1])
        nets[f"{tenant}-{name}"] = Network(
            f"{tenant}-{name}", tenant, name, f"10.0.{i}.0/24", vni, f"10.0.{i}.1",
            router="r" if (tenant == "blue" or name in attached) else None,
            cidr6=f"fd00:{i:x}::/64" if name != "n2" else None)
    return Model(
        tenants={t: Tenant(t, t) for t in ("red", "blue")},
        networks=nets,
        ports={n: Port(n, t, net, n, mac, ips) for n, (t, net, mac, ips, _, _) in ports.items()},
        hosts={h: Host(h, ip, "x") for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_, _, _, _, h, o) in ports.items()},
        routers={"R": Router("R", "red", "r", R_MAC, 7, tuple(routes)),
                 "B": Router("B", "blue", "r", B_MAC, 8)})


class Net:
    def __init__(self, model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, HOSTS)
        self.at = {(b.host, b.ofport): n for n, b in model.bindings.items()}

    def send(self, src, dst_ip, router_mac=None, packet=None, **kw):
        """[(receiver name or port, packet)] for what port `src` sends to `dst_ip` via its router."""
        t, _n, mac, ips, host, ofport = PORTS[src]
        router_mac = router_mac or (R_MAC if t == "red" else B_MAC)
        kw.setdefault("ip_ttl", 64)
        pkt = packet or icmpv6(mac, router_mac, ips[1], dst_ip, **kw)
        return [("controller" if d.port == CONTROLLER else self.at.get((d.host, d.port), d.port), d.packet)
                for d in self.fabric.send(host, pkt, ofport)]

    def names(self, *args, **kw):
        return [n for n, _ in self.send(*args, **kw)]


@pytest.fixture(scope="module")
def net():
    return Net(build_routed6())


@pytest.mark.parametrize("src, dst", [("ra", "rb"), ("ra", "rc"), ("rd", "rb"), ("rb", "ra"),
                                      ("rc", "rd"), ("ba", "bb"), ("bb", "ba")])
def test_ipv6_routed_across_prefixes_and_hosts_hop_limit_once_macs_rewritten(net, src, dst):
    router_mac = R_MAC if src.startswith("r") else B_MAC
    got = net.send(src, PORTS[dst][3][1])
    assert [name for name, _ in got] == [dst]
    pkt = got[0][1]
    assert pkt["ip_ttl"] == 63                      # the hop limit, decremented once
    assert (pkt["eth_src"], pkt["eth_dst"]) == (router_mac, PORTS[dst][2])
    assert (pkt["ipv6_src"], pkt["ipv6_dst"]) == (PORTS[src][3][1], PORTS[dst][3][1])


def test_ipv6_is_routed_on_the_sending_host_and_tunnelled_with_the_destination_vni(net):
    from flows.tracer import trace
    t, _n, mac, ips, _h, ofport = PORTS["ra"]
    outs = trace(net.flows["hv1"], icmpv6(mac, R_MAC, ips[1], "fd00:1::20", ip_ttl=64), ofport)
    assert [(o.port, o.packet["tun_ipv4_dst"], o.packet["tunnel_id"]) for o in outs] == \
        [(pipeline.TUNNEL_OFPORT, HOSTS["hv3"], VNI[("red", "n1")])]


def test_hop_limit_expiry_unknown_destinations_and_no_route_are_dropped(net):
    assert net.send("ra", "fd00:1::10", ip_ttl=1) == []
    assert net.names("ra", "fd00:1::10", ip_ttl=2) == ["rb"]
    assert net.send("ra", "fd00:1::99") == []          # in a connected prefix, but no such port
    assert net.send("ra", "fd00:7::1") == []           # no route
    assert net.send("ra", "fd00:2::1") == []           # n2 has no IPv6 prefix: nothing to route to


def test_link_local_and_multicast_are_never_routed_even_with_a_default_route():
    routed = Net(build_routed6(routes=ROUTES + (("::/0", "fd00:1::fe"),)))
    assert routed.names("ra", "fd00:7::1") == ["rgw"]                  # the default route works
    rb = routed.model.ports["rb"]
    assert routed.send("ra", rb.link_local) == []
    assert routed.send("ra", "ff05::2") == []
    t, _n, mac, ips, _h, _o = PORTS["ra"]
    from_ll = icmpv6(mac, R_MAC, link_local(mac), "fd00:1::10", ip_ttl=64)
    assert routed.send("ra", None, packet=from_ll) == []


def test_static_ipv6_route_goes_to_the_next_hop_port(net):
    got = net.send("ra", "fd00:9::7")
    assert [n for n, _ in got] == ["rgw"]
    assert got[0][1]["eth_dst"] == PORTS["rgw"][2] and got[0][1]["ip_ttl"] == 63
    # the IPv4 static route beside it still takes IPv4 only
    t, _n, mac, ips, _h, _o = PORTS["ra"]
    assert net.names("ra", None, packet=ipv4(mac, R_MAC, ips[0], "192.168.5.7")) == ["rgw"]
    assert net.send("ra", "fd00:5::7") == []


def test_the_router_answers_echo_on_its_addresses_and_drops_the_rest(net):
    t, _n, mac, ips, host, ofport = PORTS["ra"]
    for gw in ("fd00::1", "fd00:1::1", link_local(R_MAC)):
        got = net.send("ra", gw, icmpv6_type=128)
        assert [n for n, _ in got] == ["ra"], gw
        reply = got[0][1]
        assert (reply["icmpv6_type"], reply["ipv6_src"], reply["ipv6_dst"]) == (129, gw, ips[1])
        assert (reply["eth_src"], reply["eth_dst"]) == (R_MAC, mac)
        assert net.send("ra", gw, packet=dict(icmpv6(mac, R_MAC, ips[1], gw, ip_ttl=64),
                                              icmpv6_type=129)) == []
    assert net.send("ra", "fd00:1::1", packet=dict(
        tcp(mac, R_MAC, "10.0.0.10", "10.0.1.1", 1000, 22), eth_type=0x86DD,
        ipv6_src=ips[1], ipv6_dst="fd00:1::1")) == []


def test_neighbour_solicitations_for_the_gateway_go_to_the_controller(net):
    t, _n, mac, ips, host, ofport = PORTS["ra"]
    for target in ("fd00::1", link_local(R_MAC)):
        got = net.send("ra", None, packet=neighbour_solicitation(mac, ips[1], target))
        assert [n for n, _ in got] == ["controller"], target
    # the router's address on another network is not on this link; blue's router is not red's
    assert net.send("ra", None, packet=neighbour_solicitation(mac, ips[1], "fd00:1::1")) == []
    assert net.send("ra", None, packet=neighbour_solicitation(mac, ips[1], link_local(B_MAC))) == []
    # a network without a router has no gateway to resolve
    detached = Net(build_routed6(routes=(), attached=("n1",)))
    assert detached.send("ra", None, packet=neighbour_solicitation(mac, ips[1], "fd00::1")) == []


def test_red_routing_toward_blue_addresses_reaches_only_red(net):
    # fd00:1::10 is rb (red) and bb (blue): red's router knows only red's networks
    assert net.names("ra", "fd00:1::10") == ["rb"]
    assert net.names("ba", "fd00:1::10") == ["bb"]
    assert net.send("ra", "fd00:1::10", router_mac=B_MAC) == []      # blue's router MAC from red
    for flows in net.flows.values():
        for f in flows:
            if f.table == pipeline.ROUTE and ("reg5", 7) in f.match:
                assert {a[2] for a in f.actions if a[:2] == ("set_field", "reg6")} <= {1000, 1001, 1004}


def test_isolation_invariants_hold_with_ipv6_routing(net):
    for flows in net.flows.values():
        pipeline.validate(flows)
        assert len({f.key for f in flows}) == len(flows)
    check_isolation_invariants(net.flows)


def test_detaching_cuts_ipv6_between_prefixes():
    detached = Net(build_routed6(routes=(), attached=("n0",)))
    assert detached.send("ra", "fd00:1::10") == []
    assert detached.names("ra", "fd00::20", router_mac=PORTS["rd"][2]) == ["rd"]   # same prefix


def test_a_stale_mac_reaches_the_port_that_holds_the_ipv6_address_now(net):
    t, _n, mac, ips, host, ofport = PORTS["ra"]
    got = net.send("ra", None, packet=icmpv6(mac, "fa:16:3e:00:00:77", ips[1], "fd00::20", ip_ttl=64))
    assert [n for n, _ in got] == ["rd"] and got[0][1]["eth_dst"] == PORTS["rd"][2]
    # a link-local follows from the MAC: an old one is nobody's now
    gone = icmpv6(mac, "fa:16:3e:00:00:77", ips[1], link_local("fa:16:3e:00:00:77"), ip_ttl=64)
    assert net.send("ra", None, packet=gone) == []


@pytest.mark.parametrize("change", ["route", "detach", "new-port", "no-prefix"])
def test_affected_hosts_cover_ipv6_routing_changes(change):
    old = build_routed6()
    if change == "route":
        new = build_routed6(routes=ROUTES[:1])
    elif change == "detach":
        new = build_routed6(attached=("n0", "n2"))
    elif change == "new-port":
        new = build_routed6(ports={**PORTS, "new": ("red", "n1", "fa:16:3e:00:00:99",
                                                    ("10.0.1.99", "fd00:1::99"), "hv2", 9)})
    else:
        new = dataclasses.replace(old, networks={**old.networks, "red-n1": dataclasses.replace(
            old.networks["red-n1"], cidr6=None)})
    before, after = compile_all(CompilerIndex(old)), compile_all(CompilerIndex(new))
    changed = {h for h in set(before) | set(after) if set(before.get(h, ())) != set(after.get(h, ()))}
    assert changed and changed <= affected_hosts(old, new)
    old_index = CompilerIndex(old)
    compile_all(old_index)
    assert compile_all(old_index.updated(new)) == after
