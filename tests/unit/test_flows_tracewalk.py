"""weft trace's walk and verdicts on compiled flows of a three-tier tenant (flows/tracewalk.py)."""
import dataclasses

import pytest

from flows import pipeline
from flows.compiler import CompilerIndex, compile_all
from flows.tracewalk import Walker, trace
from tests.unit.test_flows_acl import HOSTS, build

SPARE = {"bonly": ("blue", "fa:16:3e:00:00:12", "10.0.0.99", "hv2", 4, ())}


@pytest.fixture
def model():
    m = build()
    from topology.model import Binding, Port
    ports = dict(m.ports)
    bindings = dict(m.bindings)
    for n, (t, mac, ip, h, o, g) in SPARE.items():
        ports[n] = Port(n, t, "net", n, mac, (ip,), security_groups=g)
        bindings[n] = Binding(n, h, o)
    return dataclasses.replace(m, ports=ports, bindings=bindings)


def run(model, src, dst, flows=None, **kw):
    flows = flows or compile_all(CompilerIndex(model))
    walker = Walker(lambda h: flows[h], HOSTS)
    b = model.bindings[src]
    return trace(model, walker, model.ports[src], b.host, b.ofport, dst, **kw)


def test_an_allowed_connection_across_hosts_is_delivered(model):
    t = run(model, "web1", "10.0.0.21", proto="tcp", dport=8080)
    assert t.verdict == "delivered" and t.deliveries == [("hv2", 2)]
    assert t.tunnels == [("hv1", "hv2", 1000)]
    assert [s.phase for s in t.steps][0] == "arp"             # the VM resolves the address first
    assert {s.host for s in t.steps} == {"hv1", "hv2"}
    assert any(s.table == pipeline.INGRESS_ACL and s.host == "hv2" for s in t.steps)


def test_a_connection_no_rule_admits_names_the_group_and_direction(model):
    t = run(model, "web1", "10.0.0.31", proto="tcp", dport=5432)   # web may not reach db
    assert (t.verdict, t.reason, t.groups, t.drop_host) == ("dropped", "security-group", ["red/web"], "hv1")
    assert "egress" in t.detail and "tcp to 10.0.0.31 port 5432" in t.detail
    t = run(model, "open", "10.0.0.12", proto="tcp", dport=81)    # web2 admits 80 only
    assert (t.reason, t.groups, t.drop_host, t.drop_table) == ("security-group", ["red/web"], "hv2",
                                                                pipeline.INGRESS_ACL)
    assert "ingress" in t.detail and "red/net/web2" in t.detail


def test_a_spoofed_source_is_port_security(model):
    t = run(model, "web1", "10.0.0.21", proto="tcp", dport=8080, src_ip="10.0.0.99")
    assert (t.verdict, t.reason, t.drop_table) == ("dropped", "port-security", pipeline.PORT_SECURITY)
    assert "10.0.0.99" in t.detail
    t = run(model, "web1", "10.0.0.21", proto="tcp", dport=8080, src_mac="fa:16:3e:00:00:99")
    assert t.reason == "port-security" and "fa:16:3e:00:00:99" in t.detail


def test_another_tenants_port_is_isolation(model):
    t = run(model, "open", "blue/net/bonly", proto="tcp", dport=80)
    assert (t.verdict, t.reason) == ("dropped", "isolation") and "blue/net/bonly" in t.detail
    t = run(model, "web1", "blue/net/bonly", proto="tcp", dport=80)  # web's egress stops it first
    assert t.reason == "security-group"
    t = run(model, "open", "10.0.0.99")                             # an address only blue has
    assert (t.reason, t.steps[-1].phase) == ("isolation", "arp")


def test_unknown_addresses_and_missing_flows(model):
    t = run(model, "web1", "10.0.0.200")
    assert (t.verdict, t.reason) == ("dropped", "unknown-neighbour")
    flows = compile_all(CompilerIndex(model))
    flows["hv2"] = [f for f in flows["hv2"] if f.table != pipeline.L2_LOOKUP]   # removed by hand
    t = run(model, "web1", "10.0.0.21", flows, proto="tcp", dport=8080)
    assert (t.verdict, t.reason, t.drop_host, t.drop_table) == ("dropped", "no-flow", "hv2",
                                                                pipeline.L2_LOOKUP)


def test_bad_requests_say_what_is_wrong(model):
    with pytest.raises(ValueError, match="--dport is needed"):
        run(model, "web1", "10.0.0.21", proto="tcp")
    with pytest.raises(ValueError, match="invalid --dst"):
        run(model, "web1", "nowhere")
    with pytest.raises(LookupError, match="no port"):
        run(model, "web1", "red/net/ghost")


def test_routed_traces_ttl_and_routes():
    from tests.unit import test_flows_routing as R
    model = R.build()
    flows = compile_all(CompilerIndex(model))
    walker = lambda: Walker(lambda h: flows[h], R.HOSTS)      # noqa: E731

    def go(src, dst, **kw):
        b = model.bindings[src]
        return trace(model, walker(), model.ports[src], b.host, b.ofport, dst, **kw)

    t = go("ra", "10.0.1.20")                                  # routed on hv1, tunnelled to hv3
    assert (t.verdict, t.deliveries, t.tunnels) == ("delivered", [("hv3", 1)], [("hv1", "hv3", 1001)])
    assert any(s.table == pipeline.ROUTE for s in t.steps)
    t = go("ra", "10.0.1.20", ttl=1)
    assert (t.verdict, t.reason, t.drop_table) == ("dropped", "ttl-expired", pipeline.ROUTE)
    t = go("ra", "172.16.0.1")                                  # no route to it
    assert (t.verdict, t.reason) == ("dropped", "no-route")
    t = go("ra", "10.0.0.1", proto="tcp", dport=22)            # the router's own address
    assert t.reason == "router-address"
    t = go("ba", "10.0.1.20")                                   # blue has no such port (red has)
    assert t.verdict == "dropped" and t.reason == "isolation"
