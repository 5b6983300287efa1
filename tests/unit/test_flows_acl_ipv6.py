"""Security groups never bypassed by IPv6 (tracer with its small conntrack): rules of both families."""
import pytest

from flows.compiler import CompilerIndex, compile_all
from flows.flow import CONTROLLER
from flows.tracer import Fabric, icmpv6, ipv6, neighbour_advertisement, neighbour_solicitation
from topology import validate
from topology.model import Binding, Host, Model, Network, Port, Rule, SecurityGroup, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2"}
# name: (mac, ips, host, ofport, groups, port security)
PORTS = {
    "a": ("fa:16:3e:00:00:01", ("10.0.0.11", "fd00:1::11"), "hv1", 1, ("default",), True),
    "b": ("fa:16:3e:00:00:02", ("10.0.0.12", "fd00:1::12"), "hv2", 1, ("default",), True),
    "v4only": ("fa:16:3e:00:00:03", ("10.0.0.13", "fd00:1::13"), "hv2", 2, ("v4",), True),
    "web": ("fa:16:3e:00:00:04", ("10.0.0.14", "fd00:1::14"), "hv1", 2, ("web",), True),
    "open": ("fa:16:3e:00:00:05", ("10.0.0.15", "fd00:1::15"), "hv1", 3, (), False),
}


def _rules(*specs):
    return tuple(Rule(f"r{k}", k, **spec) for k, spec in specs)


GROUPS = {
    # the default group as weft creates it: both families
    "default": _rules(*((100 + i, dict(zip(validate.RULE_FIELDS, validate.rule_identity(r))))
                        for i, r in enumerate(validate.default_sg_rules()))),
    # IPv4 rules only: IPv6 must not pass
    "v4": _rules((200, dict(direction="ingress", remote_cidr="0.0.0.0/0")),
                 (201, dict(direction="egress", remote_cidr="0.0.0.0/0"))),
    "web": _rules((300, dict(direction="ingress", proto="tcp", port_min=80, port_max=80,
                             remote_cidr="fd00:1::/120", ethertype="ipv6")),
                  (301, dict(direction="ingress", proto="icmp", icmp_type=128, remote_cidr="::/0",
                             ethertype="ipv6"))),
}


def build_acl6() -> Model:
    return Model(
        tenants={"red": Tenant("red", "red")},
        networks={"n": Network("n", "red", "net", "10.0.0.0/24", 1000, cidr6="fd00:1::/64")},
        ports={n: Port(n, "red", "net", n, mac, ips, port_security=ps, security_groups=g)
               for n, (mac, ips, _h, _o, g, ps) in PORTS.items()},
        hosts={h: Host(h, ip, "x") for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_m, _i, h, o, _g, _p) in PORTS.items()},
        security_groups={g: SecurityGroup(g, "red", g, rules) for g, rules in GROUPS.items()})


class Net:
    def __init__(self, model):
        self.model = model
        self.fabric = Fabric(compile_all(CompilerIndex(model)), HOSTS)
        self.at = {(b.host, b.ofport): n for n, b in model.bindings.items()}

    def send(self, src, packet) -> list[str]:
        b = self.model.bindings[src]
        return sorted("controller" if d.port == CONTROLLER else self.at[(d.host, d.port)]
                      for d in self.fabric.send(b.host, packet, b.ofport))

    def ping(self, src, dst, src_ip=None, dst_ip=None, kind=128) -> list[str]:
        s, d = self.model.ports[src], self.model.ports[dst]
        return self.send(src, icmpv6(s.mac, d.mac, src_ip or s.ipv6s[0], dst_ip or d.ipv6s[0], kind))

    def tcp(self, src, dst, port) -> list[str]:
        s, d = self.model.ports[src], self.model.ports[dst]
        return self.send(src, ipv6(s.mac, d.mac, s.ipv6s[0], d.ipv6s[0], ip_proto=6, tcp_src=40000,
                                   tcp_dst=port))


@pytest.fixture
def net():
    return Net(build_acl6())


def test_default_group_members_talk_ipv6_statefully_global_and_link_local(net):
    a, b = net.model.ports["a"], net.model.ports["b"]
    assert net.ping("a", "b") == ["b"]
    assert net.ping("b", "a", kind=129) == ["a"]                # the reply: established
    assert net.ping("a", "b", a.link_local, b.link_local) == ["b"]
    assert net.ping("b", "a", b.link_local, a.link_local, kind=129) == ["a"]
    assert net.ping("open", "a") == []                          # not a member: no new connection in
    assert net.ping("a", "open") == ["open"]                    # egress anywhere


def test_a_group_with_ipv4_rules_only_lets_no_ipv6_through(net):
    assert net.ping("a", "v4only") == []
    assert net.ping("v4only", "a") == []
    assert net.ping("open", "v4only") == []
    assert net.tcp("open", "v4only", 80) == []


def test_ipv6_rules_with_protocols_ports_and_remote_prefixes(net):
    assert net.tcp("open", "web", 80) == ["web"]                # fd00:1::15 is inside fd00:1::/120
    assert net.tcp("open", "web", 81) == []
    assert net.ping("open", "web", kind=129) == []              # a reply to nothing: no rule admits it
    assert net.ping("open", "web") == ["web"]                   # echo request from anyone
    assert net.ping("web", "a") == []                           # web has no egress rule
    outside = net.model.ports["open"]
    assert net.send("open", ipv6(outside.mac, net.model.ports["web"].mac, "fd00:1::1:15",
                                 "fd00:1::14", ip_proto=6, tcp_src=1, tcp_dst=80)) == []   # outside /120


def test_neighbour_discovery_of_ports_with_groups_skips_conntrack(net):
    a, v4 = net.model.ports["a"], net.model.ports["v4only"]
    assert net.send("v4only", neighbour_solicitation(v4.mac, v4.link_local, "fd00:1::11")) == ["controller"]
    assert net.send("a", neighbour_solicitation(a.mac, "fd00:1::11", "fd00:1::13", eth_dst=v4.mac,
                                                ipv6_dst="fd00:1::13")) == ["controller"]
    # an advertisement addressed to a port with groups reaches it (no rule needed), multicast does not
    assert net.send("a", neighbour_advertisement(a.mac, v4.mac, "fd00:1::11", "fd00:1::13", "fd00:1::11",
                                                 a.mac)) == ["v4only"]
    assert net.send("a", icmpv6(a.mac, "33:33:00:00:00:01", "fd00:1::11", "ff02::1")) == ["open"]
