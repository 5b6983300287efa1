"""IPv6 through the compiled flows of every host (tracer): port security, neighbour discovery, isolation.

Tenants red and blue have a network each on the same prefixes and reuse each other's IPv6
addresses; packets go through every host's tables with the tunnel simulated.
"""
import pytest

from flows.compiler import compile_all
from flows.flow import CONTROLLER
from flows.index import CompilerIndex
from flows.tracer import Fabric, icmpv6, ipv6, neighbour_advertisement, neighbour_solicitation, udp
from topology.addresses import link_local
from topology.model import Binding, Host, Model, Network, Port, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
# name: (tenant, mac, ips, host, ofport, port_security)
PORTS6 = {
    "r1": ("red", "fa:16:3e:00:00:01", ("10.0.0.11", "fd00:1::11"), "hv1", 1, True),
    "r2": ("red", "fa:16:3e:00:00:02", ("10.0.0.12", "fd00:1::12"), "hv2", 1, True),
    "r3": ("red", "fa:16:3e:00:00:03", ("10.0.0.13", "fd00:1::13"), "hv1", 2, True),
    "r4": ("red", "fa:16:3e:00:00:04", ("10.0.0.14", "fd00:1::14"), "hv3", 1, False),
    "b1": ("blue", "fa:16:3e:00:00:b1", ("10.0.0.12", "fd00:1::12"), "hv1", 3, True),   # r2's IPs
    "b2": ("blue", "fa:16:3e:00:00:b2", ("10.0.0.11", "fd00:1::11"), "hv2", 2, True),   # r1's IPs
}
MC_ALL = ("ff02::1", "33:33:00:00:00:01")


def build_model6(ports=PORTS6) -> Model:
    return Model(
        tenants={t: Tenant(f"t-{t}", t) for t in ("red", "blue")},
        networks={f"n-{t}": Network(f"n-{t}", t, "net", "10.0.0.0/24", vni, cidr6="fd00:1::/64")
                  for t, vni in (("red", 1001), ("blue", 1002))},
        ports={name: Port(name, tenant, "net", name, mac, ips, port_security=ps)
               for name, (tenant, mac, ips, _, _, ps) in ports.items()},
        hosts={name: Host(name, ip, f"unix:/run/{name}.sock") for name, ip in HOSTS.items()},
        bindings={name: Binding(name, host, ofport)
                  for name, (_, _, _, host, ofport, _) in ports.items() if host})


class Net6:
    def __init__(self, model: Model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, HOSTS)
        self.at = {(b.host, b.ofport): uuid for uuid, b in model.bindings.items()}

    def send(self, name, packet) -> list[str]:
        """Names of the ports receiving what VM `name` sends ("controller" for packet-ins)."""
        b = self.model.bindings[name]
        return sorted("controller" if d.port == CONTROLLER else self.at[(d.host, d.port)]
                      for d in self.fabric.send(b.host, packet, b.ofport))

    def ping6(self, src, dst, src_ip=None, dst_ip=None):
        s, d = self.model.ports[src], self.model.ports[dst]
        return self.send(src, icmpv6(s.mac, d.mac, src_ip or s.ipv6s[0], dst_ip or d.ipv6s[0]))


@pytest.fixture(scope="module")
def net():
    return Net6(build_model6())


def test_ipv6_unicast_within_a_network_from_global_and_link_local_addresses(net):
    r1, r2, r3 = (net.model.ports[n] for n in ("r1", "r2", "r3"))
    assert net.ping6("r1", "r2") == ["r2"]                       # across hosts
    assert net.ping6("r1", "r3") == ["r3"]                       # same host
    assert net.ping6("r1", "r2", r1.link_local, r2.link_local) == ["r2"]
    assert net.ping6("r2", "r1", r2.link_local, "fd00:1::11") == ["r1"]
    assert net.send("r1", udp(r1.mac, r3.mac, "10.0.0.11", "10.0.0.13", 5, 6)) == ["r3"]   # IPv4 as before


def test_a_spoofed_ipv6_source_is_dropped(net):
    r1, r2 = net.model.ports["r1"], net.model.ports["r2"]
    for src in ("fd00:1::12", "fd00:1::99", link_local(r2.mac), "fe80::1", "::", "fd00:2::11"):
        assert net.ping6("r1", "r2", src_ip=src) == [], src
    assert net.send("r1", icmpv6("fa:16:3e:00:00:99", r2.mac, "fd00:1::11", "fd00:1::12")) == []  # MAC
    assert net.send("r1", ipv6(r1.mac, r2.mac)) == []           # IPv6 without a source address
    r4 = net.model.ports["r4"]                                   # port security off: anything goes
    assert net.send("r4", icmpv6(r4.mac, r1.mac, "fd00:1::99", "fd00:1::11")) == ["r1"]


def test_neighbour_solicitations_for_known_addresses_go_to_the_controller_on_the_senders_host(net):
    r1, r2 = net.model.ports["r1"], net.model.ports["r2"]
    for target in ("fd00:1::12", r2.link_local, "fd00:1::13", r1.link_local):
        out = net.fabric.send("hv1", neighbour_solicitation(r1.mac, "fd00:1::11", target), 1)
        assert [(d.host, d.port) for d in out] == [("hv1", CONTROLLER)], target
    # from the link-local too, and unicast (neighbour unreachability detection)
    assert net.send("r1", neighbour_solicitation(r1.mac, r1.link_local, "fd00:1::12", eth_dst=r2.mac,
                                                 ipv6_dst="fd00:1::12")) == ["controller"]


def test_unknown_targets_and_duplicate_address_detection_are_never_answered_nor_flooded(net):
    r1, r4 = net.model.ports["r1"], net.model.ports["r4"]
    for target in ("fd00:1::99", "fd00:1::1", "fe80::1", link_local("fa:16:3e:00:00:b1")):   # b1: blue
        assert net.send("r1", neighbour_solicitation(r1.mac, "fd00:1::11", target)) == [], target
    assert net.send("r1", neighbour_solicitation(r1.mac, "::", "fd00:1::11")) == []
    assert net.send("r4", neighbour_solicitation(r4.mac, "::", "fd00:1::11")) == []   # unchecked port too
    assert net.send("r4", neighbour_solicitation(r4.mac, "fd00:1::14", "fd00:1::99")) == []


def test_neighbour_advertisements_only_for_own_addresses_with_own_mac(net):
    r1 = net.model.ports["r1"]
    red = ["r2", "r3", "r4"]
    assert net.send("r1", neighbour_advertisement(r1.mac, MC_ALL[1], "fd00:1::11", MC_ALL[0], "fd00:1::11",
                                                  r1.mac)) == red
    assert net.send("r1", neighbour_advertisement(r1.mac, MC_ALL[1], r1.link_local, MC_ALL[0],
                                                  r1.link_local)) == red        # no target option
    for src, target, tll in (("fd00:1::11", "fd00:1::12", r1.mac),            # another port's address
                             ("fd00:1::11", "fd00:1::11", "fa:16:3e:00:00:02"),  # another MAC
                             ("fd00:1::12", "fd00:1::12", r1.mac),
                             ("fd00:1::11", r1.link_local, r1.mac)):
        assert net.send("r1", neighbour_advertisement(r1.mac, MC_ALL[1], src, MC_ALL[0], target, tll)) == []


def test_router_advertisements_and_redirects_from_vms_are_dropped(net):
    r1, r4 = net.model.ports["r1"], net.model.ports["r4"]
    for kind in (134, 137):
        assert net.send("r1", icmpv6(r1.mac, MC_ALL[1], r1.link_local, MC_ALL[0], kind)) == []
        assert net.send("r4", icmpv6(r4.mac, MC_ALL[1], r4.link_local, MC_ALL[0], kind)) == ["r1", "r2", "r3"]
    assert net.send("r1", icmpv6(r1.mac, "33:33:00:00:00:02", r1.link_local, "ff02::2", 133)) == \
        ["r2", "r3", "r4"]                                       # router solicitations stay in the network


def test_ipv6_multicast_reaches_only_the_senders_network_and_tenants_never_meet(net):
    r1, b1, b2 = (net.model.ports[n] for n in ("r1", "b1", "b2"))
    assert net.send("r1", icmpv6(r1.mac, MC_ALL[1], "fd00:1::11", MC_ALL[0])) == ["r2", "r3", "r4"]
    assert net.send("b1", icmpv6(b1.mac, MC_ALL[1], b1.link_local, MC_ALL[0])) == ["b2"]
    # blue's b1 holds red r2's address: addressed to r2's MAC or to its own peer, never red
    assert net.send("b1", icmpv6(b1.mac, net.model.ports["r2"].mac, "fd00:1::12", "fd00:1::12")) == []
    assert net.ping6("b1", "b2") == ["b2"]
    assert net.send("b2", icmpv6(b2.mac, r1.mac, "fd00:1::11", "fd00:1::11")) == []
    blue_ns = net.fabric.send("hv2", neighbour_solicitation(b2.mac, "fd00:1::11", "fd00:1::13"), 2)
    assert blue_ns == []                                         # red's r3 is no neighbour of blue's
