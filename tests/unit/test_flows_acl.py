"""Security-group flows proven with the tracer (with its small conntrack): a three-tier tenant."""

import pytest

from flows import pipeline
from flows.compiler import CompilerIndex, compile_all
from flows.tracer import Fabric, icmp_echo, tcp, udp
from topology.model import Binding, Host, Model, Network, Port, Rule, SecurityGroup, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
# name: (tenant, mac, ip, host, ofport, groups)
PORTS = {
    "web1": ("red", "fa:16:3e:00:00:01", "10.0.0.11", "hv1", 1, ("web",)),
    "web2": ("red", "fa:16:3e:00:00:02", "10.0.0.12", "hv2", 1, ("web",)),
    "app1": ("red", "fa:16:3e:00:00:03", "10.0.0.21", "hv2", 2, ("app",)),
    "db1": ("red", "fa:16:3e:00:00:04", "10.0.0.31", "hv3", 1, ("db",)),
    "open": ("red", "fa:16:3e:00:00:05", "10.0.0.41", "hv1", 2, ()),
    "bweb": ("blue", "fa:16:3e:00:00:11", "10.0.0.21", "hv1", 3, ("web",)),
}
_keys = iter(range(1, 1000))


def rule(direction, proto="any", lo=None, hi=None, cidr=None, sg=None, icmp=None):
    key = next(_keys)
    return Rule(f"rule-{key}", key, direction, proto, lo, hi, icmp, cidr, sg)


def groups_for(tenant):
    return {
        "web": (rule("ingress", "tcp", 80, 80, cidr="0.0.0.0/0"), rule("egress", "tcp", 8080, 8080, sg="app"),
                rule("ingress", "icmp", icmp=8, sg="web"), rule("egress", "icmp", sg="web")),
        "app": (rule("ingress", "tcp", 8080, 8080, sg="web"), rule("egress", "tcp", 5432, 5432, sg="db"),
                rule("egress", "udp", 5000, 5010, sg="db")),
        "db": (rule("ingress", "tcp", 5432, 5432, sg="app"), rule("ingress", "udp", 5000, 5010, sg="app")),
    }


def build(groups=None) -> Model:
    sgs = {}
    for tenant in ("red", "blue"):
        for name, rules in (groups or {}).get(tenant, groups_for(tenant)).items():
            sgs[f"{tenant}-{name}"] = SecurityGroup(f"{tenant}-{name}", tenant, name, tuple(rules))
    return Model(
        tenants={t: Tenant(t, t) for t in ("red", "blue")},
        networks={"n-red": Network("n-red", "red", "net", "10.0.0.0/24", 1000),
                  "n-blue": Network("n-blue", "blue", "net", "10.0.0.0/24", 1001)},
        ports={n: Port(n, t, "net", n, mac, (ip,), security_groups=g)
               for n, (t, mac, ip, _h, _o, g) in PORTS.items()},
        hosts={h: Host(h, ip, "x") for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_t, _m, _i, h, o, _g) in PORTS.items()},
        security_groups=sgs)


class Net:
    def __init__(self, model, previous=None):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, HOSTS)
        if previous is not None:     # the switches keep their connection state across a change
            for host, switch in self.fabric.switches.items():
                switch.conntrack = previous.fabric.switches[host].conntrack
        self.at = {(b.host, b.ofport): n for n, b in model.bindings.items()}

    def send(self, src, dst, make, **kw):
        _t, mac, ip, host, ofport, _g = PORTS[src]
        _t2, dmac, dip, *_ = PORTS[dst]
        pkt = make(mac, dmac, ip, dip, **kw)
        return sorted(self.at[(d.host, d.port)] for d in self.fabric.send(host, pkt, ofport))


def syn(src, dst, port):
    return lambda m, dm, i, di: tcp(m, dm, i, di, 40000, port)


@pytest.fixture
def net():
    return Net(build())


def test_allowed_new_connections_and_their_replies_pass(net):
    assert net.send("web1", "app1", tcp, tcp_src=40000, tcp_dst=8080) == ["app1"]
    assert net.send("app1", "web1", tcp, tcp_src=8080, tcp_dst=40000) == ["web1"]      # the reply
    assert net.send("app1", "db1", tcp, tcp_src=41000, tcp_dst=5432) == ["db1"]
    assert net.send("db1", "app1", tcp, tcp_src=5432, tcp_dst=41000) == ["app1"]
    assert net.send("app1", "db1", udp, udp_src=41000, udp_dst=5007) == ["db1"]        # in 5000-5010


def test_everything_else_is_dropped_in_both_directions(net):
    assert net.send("web1", "db1", tcp, tcp_src=40000, tcp_dst=5432) == []     # web may not reach db
    assert net.send("app1", "web1", tcp, tcp_src=40000, tcp_dst=8080) == []     # wrong direction
    assert net.send("app1", "db1", tcp, tcp_src=41000, tcp_dst=5433) == []     # wrong port
    assert net.send("app1", "db1", udp, udp_src=41000, udp_dst=5011) == []     # out of range
    assert net.send("db1", "app1", tcp, tcp_src=5432, tcp_dst=41001) == []     # a "reply" never opened


def test_cidr_rules_and_ports_without_groups(net):
    assert net.send("open", "web2", tcp, tcp_src=50000, tcp_dst=80) == ["web2"]   # 0.0.0.0/0 -> 80
    assert net.send("open", "web2", tcp, tcp_src=50000, tcp_dst=81) == []
    assert net.send("web1", "web2", icmp_echo) == ["web2"]                        # icmp from web


def test_removing_a_rule_cuts_what_it_admitted_and_adding_it_back_admits_new(net):
    assert net.send("web1", "app1", tcp, tcp_src=40000, tcp_dst=8080) == ["app1"]
    groups = groups_for("red")
    groups["app"] = groups["app"][1:]                      # drop app's ingress 8080 from web
    cut = Net(build({"red": groups}), previous=net)
    assert cut.send("web1", "app1", tcp, tcp_src=40000, tcp_dst=8080) == []       # established, cut
    assert cut.send("app1", "web1", tcp, tcp_src=8080, tcp_dst=40000) == []
    groups["app"] = (rule("ingress", "tcp", 8080, 8080, sg="web"),) + groups["app"]
    back = Net(build({"red": groups}), previous=cut)
    assert back.send("web1", "app1", tcp, tcp_src=40001, tcp_dst=8080) == ["app1"]  # new connection


def test_identical_groups_of_another_tenant_admit_nothing(net):
    # blue's web group has the same rules and blue's bweb holds app1's address
    assert net.send("bweb", "web1", tcp, tcp_src=40000, tcp_dst=80) == []
    # (to bweb's MAC, unknown in red: flooded in red only, never to blue)
    assert "bweb" not in net.send("web1", "bweb", tcp, tcp_src=40000, tcp_dst=8080)


def test_every_flow_fits_the_pipeline_and_conjunctions_are_consistent(net):
    for host, flows in net.flows.items():
        pipeline.validate(flows)
        assert len({f.key for f in flows}) == len(flows), host
        keys = {(f.table, f.priority, f.match) for f in flows}
        assert len(keys) == len(flows), f"{host}: two flows share a match"
        conj_flows = {dict(f.match)["conj_id"] for f in flows if "conj_id" in dict(f.match)}
        clauses = {}
        for f in flows:
            for a in f.actions:
                if a[0] == "conjunction":
                    clauses.setdefault(a[1], set()).add(a[2])
        assert set(clauses) == conj_flows, host
        assert all(0 in v and v <= {0, 1} for v in clauses.values()), host


def count_flows(n_ports=50, n_groups=10, seed=1):
    """Flows on one host with 50 ports in 10 groups that reference each other, and the naive count."""
    import random
    rng = random.Random(seed)
    names = [f"g{i}" for i in range(n_groups)]
    groups = {n: (rule("ingress", "tcp", 80, 80, sg=names[(i + 1) % n_groups]),
                  rule("ingress", "tcp", 443, 443, sg=names[(i + 2) % n_groups]),
                  rule("egress", sg=names[(i + 3) % n_groups]),
                  rule("ingress", "icmp", sg=n))
              for i, n in enumerate(names)}
    ports = {f"p{i}": Port(f"p{i}", "red", "net", f"p{i}", f"fa:16:3e:00:01:{i:02x}", (f"10.0.0.{i + 10}",),
                           security_groups=(names[i % n_groups], names[rng.randrange(n_groups)]))
             for i in range(n_ports)}
    model = Model(tenants={"red": Tenant("red", "red")},
                  networks={"n": Network("n", "red", "net", "10.0.0.0/24", 1000)},
                  ports=ports, hosts={"hv1": Host("hv1", "192.0.2.1", "x")},
                  bindings={n: Binding(n, "hv1", i + 1) for i, n in enumerate(ports)},
                  security_groups={n: SecurityGroup(n, "red", n, r) for n, r in groups.items()})
    flows = compile_all(CompilerIndex(model))["hv1"]
    acl_flows = [f for f in flows if f.table in (pipeline.EGRESS_ACL, pipeline.INGRESS_ACL)]
    members = {g: sum(1 for p in ports.values() if g in p.security_groups) for g in names}
    naive = sum(members[r.remote_sg] for p in ports.values() for g in set(p.security_groups)
                for r in groups[g] if r.remote_sg)
    return len(acl_flows), naive


def test_remote_group_rules_grow_additively_not_as_a_product():
    flows, naive = count_flows()
    assert flows < naive / 2, (flows, naive)
    bigger, naive_bigger = count_flows(n_ports=100)
    # twice the ports: naive grows ~4x (ports x members), conjunctions ~2x
    assert bigger < 2.6 * flows and naive_bigger > 3.5 * naive
