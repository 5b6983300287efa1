"""Compiled flows proven with the tracer across all hosts: delivery, flooding, isolation, spoofing.

Tenants red and blue each have a network on the same CIDR; blue reuses a red MAC and red IPs.
Packets go through the compiled tables of every host, with the tunnel simulated (tracer.Fabric).
"""
from collections import Counter
from dataclasses import replace

import pytest

from flows import cookies, pipeline
from flows.compiler import STRUCTURAL, compile_all, compile_host
from flows.flow import BROADCAST, IN_PORT, MULTICAST_BIT
from flows.index import CompilerIndex
from flows.pipeline import REG_FLAGS, REG_NET, TUNNEL_OFPORT
from flows.tracer import Fabric, arp_reply, arp_request, ethernet, ipv4, ipv6, udp
from topology.model import Binding, Host, Model, Network, Port, Tenant

RED_VNI, BLUE_VNI = 1001, 1002
HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3", "hv4": "192.0.2.4"}
SHARED_MAC = "fa:16:3e:00:00:02"      # red/r2 and blue/b1, both on hv1
# name: (tenant, mac, ips, host, ofport, port_security)
PORTS = {
    "r1": ("red", "fa:16:3e:00:00:01", ("10.0.0.11",), "hv1", 1, True),
    "r2": ("red", SHARED_MAC, ("10.0.0.12",), "hv1", 2, True),
    "r3": ("red", "fa:16:3e:00:00:03", ("10.0.0.13", "10.0.0.23"), "hv2", 1, True),
    "r4": ("red", "fa:16:3e:00:00:04", ("10.0.0.14",), "hv3", 1, False),
    "r5": ("red", "fa:16:3e:00:00:05", ("10.0.0.15",), None, None, True),
    "b1": ("blue", SHARED_MAC, ("10.0.0.13",), "hv1", 3, True),     # r3's IP
    "b2": ("blue", "fa:16:3e:00:00:b2", ("10.0.0.11",), "hv2", 2, True),     # r1's IP
    "b3": ("blue", "fa:16:3e:00:00:b3", ("10.0.0.21",), "hv3", 2, True),
}
RED = {n for n, p in PORTS.items() if p[0] == "red" and p[3]}
BLUE = {n for n, p in PORTS.items() if p[0] == "blue" and p[3]}


def build_model(ports=PORTS) -> Model:
    return Model(
        tenants={t: Tenant(f"t-{t}", t) for t in ("red", "blue")},
        networks={"n-red": Network("n-red", "red", "net", "10.0.0.0/24", RED_VNI),
                  "n-blue": Network("n-blue", "blue", "net", "10.0.0.0/24", BLUE_VNI)},
        ports={name: Port(name, tenant, "net", name, mac, ips, port_security=ps)
               for name, (tenant, mac, ips, _, _, ps) in ports.items()},
        hosts={name: Host(name, ip, f"unix:/run/{name}.sock") for name, ip in HOSTS.items()},
        bindings={name: Binding(name, host, ofport)
                  for name, (_, _, _, host, ofport, _) in ports.items() if host})


class Net:
    """The model, its compiled flows on every host, and the fabric joining them."""

    def __init__(self, model: Model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, {h.name: h.tunnel_ip for h in model.hosts.values()})
        self.at = {(b.host, b.ofport): uuid for uuid, b in model.bindings.items()}

    def port(self, name):
        return self.model.ports[name]

    def send(self, name, packet) -> list[str]:
        """Names of the ports receiving what VM `name` sends (sorted, repeats kept)."""
        b = self.model.bindings[name]
        return self.names(self.fabric.send(b.host, packet, b.ofport))

    def names(self, deliveries) -> list[str]:
        return sorted(self.at[(d.host, d.port)] for d in deliveries)

    def unicast(self, src, dst_mac, dst_ip, **kw):
        p = self.port(src)
        return self.send(src, ipv4(p.mac, dst_mac, p.ips[0], dst_ip, **kw))

    def arp(self, src, target_ip):
        b, p = self.model.bindings[src], self.port(src)
        return self.fabric.send(b.host, arp_request(p.mac, p.ips[0], target_ip), b.ofport)


@pytest.fixture(scope="module")
def net():
    return Net(build_model())


# -- unicast and flooding -----------------------------------------------------------------------

@pytest.mark.parametrize("src, dst", [(s, d) for group in (RED, BLUE) for s in sorted(group)
                                      for d in sorted(group) if s != d])
def test_unicast_reaches_exactly_the_destination(net, src, dst):
    p, q = net.port(src), net.port(dst)
    sent = udp(p.mac, q.mac, p.ips[0], q.ips[0], 40000, 53)
    b = net.model.bindings[src]
    deliveries = net.fabric.send(b.host, sent, b.ofport)
    assert net.names(deliveries) == [dst]
    (d,) = deliveries
    assert (d.host, d.port) == (net.model.bindings[dst].host, net.model.bindings[dst].ofport)
    assert d.packet == sent            # nothing rewritten, no pipeline state leaks to the VM


def test_unicast_same_host_and_across_hosts(net):
    assert net.unicast("r1", SHARED_MAC, "10.0.0.12") == ["r2"]                 # hv1 -> hv1
    assert net.unicast("r1", "fa:16:3e:00:00:03", "10.0.0.23") == ["r3"]        # hv1 -> hv2
    assert net.unicast("r3", "fa:16:3e:00:00:01", "10.0.0.11") == ["r1"]        # hv2 -> hv1
    assert net.unicast("b3", SHARED_MAC, "10.0.0.13") == ["b1"]                 # hv3 -> hv1


@pytest.mark.parametrize("src", sorted(RED | BLUE))
def test_broadcast_reaches_every_other_port_of_the_network_once(net, src):
    p = net.port(src)
    got = net.send(src, udp(p.mac, BROADCAST, p.ips[0], "10.0.0.255", 5000, 5001))
    group = RED if src in RED else BLUE
    assert Counter(got) == Counter(group - {src})


def test_multicast_is_flooded_like_broadcast(net):
    p = net.port("r3")
    got = net.send("r3", udp(p.mac, "01:00:5e:00:00:fb", p.ips[0], "224.0.0.251", 5353, 5353))
    assert got == sorted(RED - {"r3"})


@pytest.mark.parametrize("src", sorted(RED | BLUE))
def test_unknown_unicast_never_leaves_the_senders_host(net, src):
    # no port holds the MAC or the IP: nothing is delivered (r4, without port security, may
    # carry MACs weft does not know, but it is on another host than every sender of red)
    assert net.unicast(src, "fa:16:3e:99:99:99", "10.0.0.99") == []
    p = net.port(src)
    frame = ethernet(p.mac, "fa:16:3e:99:99:99", 0x88B5)       # not IP: no address to go by
    assert net.send(src, frame) == []


def test_unknown_unicast_reaches_local_ports_without_port_security_only():
    ports = {**PORTS, "r6": ("red", "fa:16:3e:00:00:06", ("10.0.0.16",), "hv3", 3, True)}
    local = Net(build_model(ports))
    assert local.unicast("r6", "fa:16:3e:99:99:99", "10.0.0.99") == ["r4"]
    assert local.unicast("r1", "fa:16:3e:99:99:99", "10.0.0.99") == []      # not from hv1


@pytest.mark.parametrize("src, ip, owner", [
    ("r1", "10.0.0.23", "r3"),       # across hosts, the owner's second IP
    ("r3", "10.0.0.12", "r2"),       # to hv1, where blue's b1 has the same MAC
    ("r1", "10.0.0.12", "r2"),       # same host
    ("b3", "10.0.0.11", "b2"),       # blue's 10.0.0.11, never red's r1
    ("b2", "10.0.0.13", "b1"),       # blue's 10.0.0.13, never red's r3
    ("r2", "10.0.0.14", "r4"),       # to a port without port security
])
def test_a_stale_mac_reaches_the_port_that_holds_the_ip_now(net, src, ip, owner):
    p, q = net.port(src), net.port(owner)
    b = net.model.bindings[src]
    (d,) = net.fabric.send(b.host, ipv4(p.mac, "fa:16:3e:0d:0d:0d", p.ips[0], ip), b.ofport)
    assert net.names([d]) == [owner]
    assert d.packet["eth_dst"] == q.mac           # rewritten: the port's own MAC, it accepts it


def test_stale_mac_flows_follow_the_ports_binding(net):
    pending = build_model({**PORTS, "r3": PORTS["r3"][:4] + (0, True)})      # NIC not numbered
    moved = build_model({**PORTS, "r3": PORTS["r3"][:3] + ("hv3", 4, True)})
    for model, expect in ((pending, []), (moved, ["r3"])):
        n = Net(model)
        (r1,) = [n.port("r1")]
        got = n.fabric.send("hv1", ipv4(r1.mac, "fa:16:3e:0d:0d:0d", r1.ips[0], "10.0.0.13"), 1)
        assert [n.at.get((d.host, d.port)) for d in got] == expect


# -- isolation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("src", sorted(RED))
@pytest.mark.parametrize("dst", sorted(BLUE))
def test_red_never_reaches_blue_by_unicast(net, src, dst):
    q = net.port(dst)
    got = net.unicast(src, q.mac, q.ips[0])
    assert not set(got) & BLUE
    if q.mac == SHARED_MAC:
        assert got == ["r2"] or src == "r2"        # the red owner of the MAC gets it


def test_red_broadcast_and_arp_never_reach_blue(net):
    for src in RED:
        p = net.port(src)
        assert not set(net.send(src, udp(p.mac, BROADCAST, p.ips[0], "10.0.0.255", 1, 2))) & BLUE
        for ip in ("10.0.0.13", "10.0.0.11", "10.0.0.21"):
            answers = net.arp(src, ip)
            assert all(net.at.get((d.host, d.port)) == src for d in answers)
            assert all(d.packet["eth_src"] != "fa:16:3e:00:00:b2" for d in answers)


def test_same_ip_in_blue_does_not_capture_red_traffic(net):
    # b1 holds 10.0.0.13 (r3's IP) on r1's own host, and r2's MAC as well
    assert net.unicast("r1", "fa:16:3e:00:00:03", "10.0.0.13") == ["r3"]
    (answer,) = net.arp("r1", "10.0.0.13")
    assert answer.packet["eth_src"] == answer.packet["arp_sha"] == "fa:16:3e:00:00:03"
    (answer,) = net.arp("b2", "10.0.0.13")
    assert answer.packet["arp_sha"] == SHARED_MAC and net.at[(answer.host, answer.port)] == "b2"


def test_packet_from_the_tunnel_reaches_only_its_own_network(net):
    bcast = udp("fa:16:3e:77:77:77", BROADCAST, "10.0.0.77", "10.0.0.255", 1, 2)
    assert net.names(net.fabric.from_tunnel("hv1", bcast, BLUE_VNI)) == ["b1"]
    assert net.names(net.fabric.from_tunnel("hv1", bcast, RED_VNI)) == ["r1", "r2"]
    to_shared = ipv4("fa:16:3e:77:77:77", SHARED_MAC, "10.0.0.77", "10.0.0.12")
    assert net.names(net.fabric.from_tunnel("hv1", to_shared, BLUE_VNI)) == ["b1"]
    assert net.names(net.fabric.from_tunnel("hv1", to_shared, RED_VNI)) == ["r2"]
    to_red = ipv4("fa:16:3e:77:77:77", "fa:16:3e:00:00:01", "10.0.0.77", "10.0.0.11")
    assert net.fabric.from_tunnel("hv1", to_red, BLUE_VNI) == []
    assert net.fabric.from_tunnel("hv1", bcast, 4242) == []            # unknown key
    assert net.fabric.from_tunnel("hv4", bcast, BLUE_VNI) == []        # not present there


def test_unknown_unicast_from_the_tunnel_is_dropped_not_reflected(net):
    to_r3 = ipv4("fa:16:3e:77:77:77", "fa:16:3e:00:00:03", "10.0.0.77", "10.0.0.13")
    assert net.fabric.from_tunnel("hv1", to_r3, RED_VNI) == []         # r3 lives on hv2
    unknown = ipv4("fa:16:3e:77:77:77", "fa:16:3e:99:99:99", "10.0.0.77", "10.0.0.13")
    assert net.fabric.from_tunnel("hv1", unknown, RED_VNI) == []
    assert net.names(net.fabric.from_tunnel("hv2", to_r3, RED_VNI)) == ["r3"]


# -- anti-spoofing ------------------------------------------------------------------------------

def test_forged_sources_are_dropped(net):
    r1 = net.port("r1")
    dst = "fa:16:3e:00:00:03"
    assert net.send("r1", ipv4("fa:16:3e:00:00:66", dst, "10.0.0.11", "10.0.0.13")) == []
    assert net.send("r1", ipv4(SHARED_MAC, dst, "10.0.0.11", "10.0.0.13")) == []   # r2's MAC
    assert net.send("r1", ipv4(r1.mac, dst, "10.0.0.12", "10.0.0.13")) == []       # r2's IP
    assert net.send("r1", ipv4(r1.mac, BROADCAST, "10.0.0.66", "10.0.0.255")) == []
    assert net.send("r1", ipv6(r1.mac, dst)) == []
    assert net.send("r1", ethernet(r1.mac, BROADCAST, 0x88CC)) == []               # LLDP
    assert net.send("r1", ipv4(r1.mac, dst, "10.0.0.11", "10.0.0.13")) == ["r3"]   # control


def test_arp_spoofing_is_dropped(net):
    r1 = net.port("r1")
    b = net.model.bindings["r1"]
    spoofs = [
        arp_request(r1.mac, "10.0.0.12", "10.0.0.13"),                           # r2's IP
        arp_request(r1.mac, "10.0.0.11", "10.0.0.13", arp_sha="fa:16:3e:00:00:66"),
        arp_request("fa:16:3e:00:00:66", "10.0.0.11", "10.0.0.13", arp_sha=r1.mac),
        arp_reply(r1.mac, "fa:16:3e:00:00:03", "10.0.0.12", "10.0.0.13"),       # poisoning
    ]
    for packet in spoofs:
        assert net.fabric.send(b.host, packet, b.ofport) == []
    honest = arp_reply(r1.mac, "fa:16:3e:00:00:03", "10.0.0.11", "10.0.0.13")
    assert net.names(net.fabric.send(b.host, honest, b.ofport)) == ["r3"]


def test_traffic_from_unknown_ports_is_dropped(net):
    r1 = net.port("r1")
    assert net.fabric.send("hv1", ipv4(r1.mac, BROADCAST, "10.0.0.11", "10.0.0.255"), 99) == []
    assert net.fabric.send("hv1", arp_request(r1.mac, "10.0.0.11", "10.0.0.12"), 99) == []
    assert net.fabric.send("hv4", ipv4(r1.mac, BROADCAST, "10.0.0.11", "10.0.0.255"), 1) == []


def test_port_security_off_lets_any_source_through_within_its_network(net):
    forged = udp("fa:16:3e:00:00:66", BROADCAST, "192.168.9.9", "255.255.255.255", 1, 2)
    assert net.send("r4", forged) == sorted(RED - {"r4"})
    assert net.send("r4", ipv6("fa:16:3e:00:00:66", "fa:16:3e:00:00:03")) == ["r3"]
    # b3 shares r4's host, but r4's traffic stays red: b3's MAC is unknown in red
    assert net.send("r4", ipv4("fa:16:3e:00:00:66", "fa:16:3e:00:00:b3", "1.2.3.4", "10.0.0.21")) == []
    assert net.send("r4", ipv4("fa:16:3e:00:00:66", SHARED_MAC, "1.2.3.4", "10.0.0.13")) == ["r2"]
    b = net.model.bindings["r4"]
    spoof = arp_request("fa:16:3e:00:00:66", "10.0.0.12", "10.0.0.13", arp_sha="fa:16:3e:00:00:66")
    (answer,) = net.fabric.send(b.host, spoof, b.ofport)
    assert answer.packet["arp_sha"] == "fa:16:3e:00:00:03" and answer.port == b.ofport


# -- the ARP responder --------------------------------------------------------------------------

def test_a_port_bound_nowhere_is_not_answered_for_until_it_is_bound(net):
    """As OVN answers only for ports that are up: an unbound port's address gets no ARP reply
    (nothing could receive what the asker sends), and creating such a port changes no host's
    flows; once bound, every host of the network answers for it."""
    assert net.arp("r1", "10.0.0.15") == []
    assert net.arp("r3", "10.0.0.15") == []
    ports = dict(PORTS, r5=PORTS["r5"][:3] + ("hv4", 1, True))
    bound = Net(build_model(ports))
    for asker in ("r1", "r3"):
        (answer,) = bound.arp(asker, "10.0.0.15")
        assert answer.packet["arp_sha"] == "fa:16:3e:00:00:05"
    # the unbound port changes nothing anywhere: the flows equal those of a model without it
    without = Net(build_model({n: p for n, p in PORTS.items() if n != "r5"}))
    assert net.flows == without.flows


@pytest.mark.parametrize("target, mac", [
    ("10.0.0.12", SHARED_MAC),                  # local port, same host
    ("10.0.0.13", "fa:16:3e:00:00:03"),         # remote port
    ("10.0.0.23", "fa:16:3e:00:00:03"),         # its second IP
    ("10.0.0.14", "fa:16:3e:00:00:04"),         # remote, port security off
])
def test_arp_request_for_a_known_ip_is_answered_on_the_in_port(net, target, mac):
    r1 = net.port("r1")
    (answer,) = net.arp("r1", target)
    assert (answer.host, answer.port) == ("hv1", 1)
    assert answer.packet == {**arp_request(r1.mac, r1.ips[0], target),
                             "eth_src": mac, "eth_dst": r1.mac, "arp_op": 2,
                             "arp_sha": mac, "arp_spa": target,
                             "arp_tha": r1.mac, "arp_tpa": r1.ips[0]}


def test_arp_request_for_an_unknown_ip_is_dropped(net):
    assert net.arp("r1", "10.0.0.99") == []
    assert net.arp("r1", "10.0.0.21") == []         # blue's, not red's
    assert net.arp("b3", "10.0.0.12") == []         # red's, not blue's


# -- model changes ------------------------------------------------------------------------------

def test_deleted_port_is_unreachable():
    ports = {k: v for k, v in PORTS.items() if k != "r3"}
    gone = Net(build_model(ports))
    r3_mac = PORTS["r3"][1]
    got = gone.unicast("r1", r3_mac, "10.0.0.13")
    assert "r3" not in got and ("hv2", 1) not in {(h, p) for h, p in gone.at}
    delivered_at = [(d.host, d.port) for d in gone.fabric.send(
        "hv1", ipv4(PORTS["r1"][1], r3_mac, "10.0.0.11", "10.0.0.13"), 1)]
    assert ("hv2", 1) not in delivered_at
    assert gone.arp("r1", "10.0.0.13") == [] and gone.arp("r1", "10.0.0.23") == []
    assert gone.fabric.send("hv2", ipv4(r3_mac, BROADCAST, "10.0.0.13", "10.0.0.255"), 1) == []
    for flows in gone.flows.values():
        for f in flows:
            text = repr((f.match, f.actions))
            assert r3_mac not in text and "'10.0.0.23'" not in text
            if "'10.0.0.13'" in text:                   # b1 holds it in blue
                assert cookies.decode(f.cookie)[1] == cookies.object_id("b1")


def test_moved_port_is_reached_at_its_new_place():
    ports = {**PORTS, "r3": PORTS["r3"][:3] + ("hv3", 7, True)}
    moved = Net(build_model(ports))
    assert moved.unicast("r1", "fa:16:3e:00:00:03", "10.0.0.13") == ["r3"]
    b = moved.model.bindings["r1"]
    deliveries = moved.fabric.send(b.host, ipv4(PORTS["r1"][1], "fa:16:3e:00:00:03", "10.0.0.11",
                                                "10.0.0.13"), b.ofport)
    assert [(d.host, d.port) for d in deliveries] == [("hv3", 7)]
    assert not any(f for f in moved.flows["hv2"] if f.match_dict().get(REG_NET) == RED_VNI)


# -- structure of the compiled flows ------------------------------------------------------------

def test_every_compiled_flow_fits_the_pipeline(net):
    for flows in net.flows.values():
        pipeline.validate(flows)
        assert len(set(flows)) == len(flows)
        assert len({f.key for f in flows}) == len(flows)


def test_isolation_invariants_hold_flow_by_flow(net):
    check_isolation_invariants(net.flows)


def check_isolation_invariants(flows_by_host) -> None:
    """reg6 is written only at table 0 or by a router moving a packet it owns, and every flow
    after table 0 that acts on a packet depends on reg6 (used by other models' tests too)."""
    from flows.drops import is_drop
    for host, flows in flows_by_host.items():
        for f in flows:
            if is_drop(f):      # drops the packet (its sample to weftd acts on nothing)
                assert f.actions == pipeline.DROP_ACTIONS, (host, f)
                continue
            match = f.match_dict()
            writes = {a[1] for a in f.actions if a[0] == "set_field"}
            writes |= {a[2] for a in f.actions if a[0] == "move"}
            if REG_FLAGS in writes:
                assert f.table == pipeline.CLASSIFY
            if REG_NET in writes:      # table 0, or a router moving a packet it owns
                assert f.table == pipeline.CLASSIFY or (
                    f.table == pipeline.ROUTE and pipeline.REG_ROUTER in match), (host, f)
            if pipeline.REG_ROUTER in writes:
                assert f.table == pipeline.L3_INPUT and REG_NET in match, (host, f)
            plain_goto = len(f.actions) == 1 and f.actions[0][0] == "goto"
            if f.table in (pipeline.ARP_RESPONDER, pipeline.L3_INPUT, pipeline.RESOLVE,
                           pipeline.L2_LOOKUP, pipeline.L2_UNKNOWN) and f.actions and not plain_goto:
                assert REG_NET in match, (host, f)
            if ("goto", pipeline.L2_UNKNOWN) in f.actions:     # only what a local VM sent
                assert f.table == pipeline.L2_LOOKUP and match[REG_FLAGS] == 0, (host, f)
            if f.table == pipeline.ROUTE and f.actions:
                assert pipeline.REG_ROUTER in match, (host, f)
            if f.table == pipeline.PORT_SECURITY and f.actions:
                assert "in_port" in match
            if ("output", TUNNEL_OFPORT) in f.actions:     # never back into the tunnel
                assert (f.table == pipeline.L2_LOOKUP and match[REG_FLAGS] == 0
                        or f.table == pipeline.L2_UNKNOWN and REG_NET in match), (host, f)


def test_cookies_name_the_right_feature_and_owner(net):
    model = net.model
    oid = cookies.object_id
    by_vni = {n.vni: n for n in model.networks.values()}
    for host, flows in net.flows.items():
        at = {b.ofport: model.ports[u] for u, b in model.bindings.items() if b.host == host}
        for f in flows:
            feature, owner = cookies.decode(f.cookie)
            m = f.match_dict()
            if feature == "pipeline":
                assert owner == 0 and f.priority == 0
            elif feature.startswith("drop:"):    # structural drops (misses, ND, ARP) own nothing
                assert owner == 0 and f.priority in (0, 50, 93, 101), f
            elif feature == "classify" and m["in_port"] == TUNNEL_OFPORT:
                assert owner == oid(by_vni[m["tunnel_id"]].uuid)
            elif feature in ("classify", "port-security", "dhcp"):
                assert owner == oid(at[m["in_port"]].uuid)
            elif feature == "arp-responder":
                (port,) = [p for p in model.ports.values() if oid(p.uuid) == owner]
                assert m["arp_tpa"] in port.ips and by_vni[m[REG_NET]].name == port.network
                assert by_vni[m[REG_NET]].tenant == port.tenant
            elif feature == "l2" and f.table == pipeline.L2_UNKNOWN:
                (port,) = [p for p in model.ports.values() if oid(p.uuid) == owner]
                assert m["ipv4_dst"] in port.ips and ("set_field", "eth_dst", port.mac) in f.actions
                assert by_vni[m[REG_NET]].tenant == port.tenant
            elif feature == "l2":
                (port,) = [p for p in model.ports.values() if oid(p.uuid) == owner]
                assert m["eth_dst"] == port.mac and by_vni[m[REG_NET]].tenant == port.tenant
            elif feature == "flood":
                assert owner == oid(by_vni[m[REG_NET]].uuid)
            elif feature == "nd":
                (port,) = [p for p in model.ports.values() if oid(p.uuid) == owner]
                assert m["ipv6_nd_target"] in (port.link_local, *port.ipv6s)
                assert by_vni[m[REG_NET]].tenant == port.tenant and by_vni[m[REG_NET]].name == port.network
            else:
                pytest.fail(f"unexpected feature {feature} in {f}")
            assert f.table in {"classify": {0}, "port-security": {10}, "arp-responder": {20},
                               "l2": {40, 41}, "flood": {40, 41}, "dhcp": {10},
                               "nd": {20}}.get(feature, {f.table})


def test_only_present_networks_produce_flows(net):
    assert net.flows["hv4"] == sorted(STRUCTURAL, key=lambda f: f.table)
    idx = CompilerIndex(net.model)
    assert compile_host(idx, "no-such-host") == net.flows["hv4"]
    for host, vnis in {"hv1": {RED_VNI, BLUE_VNI}, "hv2": {RED_VNI, BLUE_VNI},
                       "hv3": {RED_VNI, BLUE_VNI}}.items():
        assert {f.match_dict().get(REG_NET) for f in net.flows[host]} - {None} == vnis
    only_red = build_model({k: v for k, v in PORTS.items() if k != "b1"})
    hv1 = compile_host(CompilerIndex(only_red), "hv1")
    assert all(BLUE_VNI not in (f.match_dict().get(REG_NET), f.match_dict().get("tunnel_id"))
               for f in hv1)


def test_flood_lists_local_ports_by_ofport_then_other_hosts_by_name(net):
    (flood,) = [f for f in net.flows["hv1"] if f.priority == 10
                and f.match_dict() == {REG_NET: RED_VNI, REG_FLAGS: 0, "eth_dst": MULTICAST_BIT}]
    assert flood.actions == (("output", 1), ("output", 2),
                             ("set_field", "tun_ipv4_dst", "192.0.2.2"),
                             ("set_field", "tunnel_id", RED_VNI), ("output", TUNNEL_OFPORT),
                             ("set_field", "tun_ipv4_dst", "192.0.2.3"),
                             ("set_field", "tunnel_id", RED_VNI), ("output", TUNNEL_OFPORT))


def test_compilation_is_deterministic(net):
    again = compile_all(CompilerIndex(build_model()))
    assert again == net.flows
    shuffled = build_model()
    shuffled = Model(shuffled.tenants, dict(reversed(shuffled.networks.items())),
                     dict(reversed(shuffled.ports.items())), dict(reversed(shuffled.hosts.items())),
                     dict(reversed(shuffled.bindings.items())))
    assert compile_all(CompilerIndex(shuffled)) == net.flows


def test_port_on_a_missing_network_or_unknown_host():
    model = build_model()
    orphan = Port("o1", "red", "nowhere", "o1", "fa:16:3e:00:00:0e", ("10.9.0.1",))
    stray = replace(model.ports["r1"], uuid="r9", name="r9", mac="fa:16:3e:00:00:09",
                    ips=("10.0.0.19",))
    model = Model(model.tenants, model.networks, {**model.ports, "o1": orphan, "r9": stray},
                  model.hosts, {**model.bindings, "o1": Binding("o1", "hv1", 9),
                                "r9": Binding("r9", "hv9", 1)})
    n = Net(model)
    assert n.fabric.send("hv1", ipv4(orphan.mac, BROADCAST, "10.9.0.1", "10.9.0.255"), 9) == []
    assert "hv9" in n.flows                       # it has a bound port, so it gets flows
    assert not any(f.match_dict().get("eth_dst") == stray.mac for f in n.flows["hv1"])
    (answer,) = n.arp("r1", "10.0.0.19")          # still answered: the port exists
    assert answer.packet["arp_sha"] == stray.mac


def test_bad_models_raise():
    model = build_model()
    dup_ofport = Model(model.tenants, model.networks, model.ports, model.hosts,
                       {**model.bindings, "r2": Binding("r2", "hv1", 1)})
    with pytest.raises(ValueError, match="ofport 1"):
        compile_host(CompilerIndex(dup_ofport), "hv1")
    compile_host(CompilerIndex(dup_ofport), "hv2")          # other hosts are unaffected
    tunnel = Model(model.tenants, model.networks, model.ports, model.hosts,
                   {**model.bindings, "r2": Binding("r2", "hv1", TUNNEL_OFPORT)})
    with pytest.raises(ValueError, match="ofport"):
        compile_host(CompilerIndex(tunnel), "hv1")
    dup_vni = replace(model, networks={**model.networks, "n-blue": replace(
        model.networks["n-blue"], vni=RED_VNI)})
    with pytest.raises(ValueError, match="VNI"):
        CompilerIndex(dup_vni)
    dup_name = replace(model, networks={**model.networks, "n-red2": replace(
        model.networks["n-red"], uuid="n-red2", vni=3000)})
    with pytest.raises(ValueError, match="named"):
        CompilerIndex(dup_name)


def test_in_port_constant_is_the_openflow_one():
    assert IN_PORT == 0xFFFFFFF8


def test_pending_binding_installs_everything_but_the_nic_flows_ahead():
    """ofport 0: the NIC is in the host's database but not numbered yet."""
    import dataclasses
    from flows.compiler import CompilerIndex, compile_host
    from topology.model import Binding, Host, Model, Network, Port, Tenant

    net = Network("n", "t", "net", "10.0.0.0/24", 1000)
    a = Port("a", "t", "net", "a", "02:00:00:00:00:0a", ("10.0.0.10",))
    b = Port("b", "t", "net", "b", "02:00:00:00:00:0b", ("10.0.0.11",))
    base = Model({"t": Tenant("t", "t")}, {"n": net}, {"a": a, "b": b},
                 {"hv1": Host("hv1", "1.1.1.1", "x"), "hv2": Host("hv2", "1.1.1.2", "y")},
                 {"a": Binding("a", "hv1", 1)})
    pending = dataclasses.replace(base, bindings={**base.bindings, "b": Binding("b", "hv2", 0)})
    bound = dataclasses.replace(base, bindings={**base.bindings, "b": Binding("b", "hv2", 5)})
    hv1_pending = set(compile_host(CompilerIndex(pending), "hv1"))
    assert hv1_pending == set(compile_host(CompilerIndex(bound), "hv1"))   # hv1 is complete ahead
    hv2_pending = set(compile_host(CompilerIndex(pending), "hv2"))
    hv2_bound = set(compile_host(CompilerIndex(bound), "hv2"))
    from flows import cookies
    replaced = hv2_pending - hv2_bound       # only the flood flows change (they gain output:5)
    assert replaced and all(cookies.decode(f.cookie)[0] == "flood" for f in replaced)
    assert all(("in_port", 5) not in f.match and ("output", 5) not in f.actions for f in hv2_pending)
    missing = hv2_bound - hv2_pending
    # + DHCP to the controller, + 3 for IPv6 from its link-local (any, and its advertisements)
    assert {f.table for f in missing} <= {0, 10, 40, 41} and len(missing) <= 11
    assert len(hv2_pending & hv2_bound) >= 8     # tunnel classify, ARP answers, remote l2, misses
