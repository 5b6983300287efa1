"""Per-port QoS: input checks, the meters and flows compiled for it (proven with the tracer), meter planning."""
import pytest

from flows import compiler
from flows import pipeline as P
from flows import qos as Q
from flows.index import CompilerIndex
from flows.tracer import Fabric, arp_request, udp
from topology.errors import WeftError
from topology.model import Binding, Host, Model, Network, Port, SecurityGroup, Tenant
from topology.qos import QoS, parse, rate

A_MAC, B_MAC, C_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
HOSTS = {"hv1": "198.18.0.11", "hv2": "198.18.0.12"}


# ---- input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kbit", [("100mbit", 100_000), ("1.5gbit", 1_500_000), ("800kbit", 800),
                                        ("50000000", 50_000), (1000, 1), ("2Gbit", 2_000_000),
                                        ("1000bit", 1)])
def test_rates_take_units_and_bare_bits_per_second(text, kbit):
    assert rate(text, "egress rate") == kbit


@pytest.mark.parametrize("bad", ["0", 0, "0mbit", "fast", "5G", "-1mbit", "1500", "1.0001kbit", "", None,
                                 True, 1.5, "100 mbit", "5000000gbit", "１００mbit"])
def test_bad_rates_say_what_is_wrong(bad):
    with pytest.raises(WeftError) as err:
        rate(bad, "egress rate")
    assert "egress rate" in str(err.value) and "\n" not in str(err.value)


def test_parse_builds_qos_and_refuses_bad_fields():
    q = parse({"egress_rate": "100mbit", "ingress_rate": "50mbit", "ingress_burst": "1mbit",
               "pps": "2000", "dscp": 46})
    assert q == QoS(egress_rate=100_000, ingress_rate=50_000, ingress_burst=1000, pps=2000, dscp=46)
    assert q.view()["egress_rate_text"] == "100mbit"
    assert parse(None) is None and parse({}) is None and parse({"dscp": None}) is None
    for bad, words in [({"dscp": 64}, "dscp"), ({"dscp": -1}, "dscp"), ({"dscp": "ef"}, "dscp"),
                       ({"pps": 0}, "pps"), ({"pps": "fast"}, "pps"), ({"pps": True}, "pps"),
                       ({"egress_burst": "1mbit"}, "egress burst needs an egress rate"),
                       ({"speed": "1mbit"}, "unknown qos field"), ("50mbit", "invalid qos"),
                       ({"ingress_rate": "0"}, "ingress rate")]:
        with pytest.raises(WeftError, match=words):
            parse(bad)


# ---- flows and meters ----------------------------------------------------------------------------
def model(qos_a=None, sg=False) -> Model:
    ports = {"pa": Port("pa", "red", "net", "a", A_MAC, ("10.0.0.11",), qos=qos_a,
                        security_groups=("web",) if sg else ()),
             "pb": Port("pb", "red", "net", "b", B_MAC, ("10.0.0.12",)),
             "pc": Port("pc", "red", "net", "c", C_MAC, ("10.0.0.13",))}
    groups = {}
    if sg:
        from topology.model import Rule
        groups = {"sg": SecurityGroup("sg", "red", "web", (
            Rule("r1", 7, "ingress", "udp", 5000, 5000, remote_cidr="0.0.0.0/0"),
            Rule("r2", 8, "egress", "any", remote_cidr="0.0.0.0/0")))}
    return Model(tenants={"red": Tenant("t", "red")},
                 networks={"n": Network("n", "red", "net", "10.0.0.0/24", 1000, "10.0.0.1")},
                 ports=ports, security_groups=groups,
                 hosts={h: Host(h, ip, f"unix:/x/{h}") for h, ip in HOSTS.items()},
                 bindings={"pa": Binding("pa", "hv1", 3), "pb": Binding("pb", "hv2", 4),
                           "pc": Binding("pc", "hv1", 5)})


def fabric(m: Model) -> Fabric:
    index = CompilerIndex(m)
    flows = {h: compiler.compile_host(index, h) for h in HOSTS}
    for f in flows.values():
        P.validate(f)
    return Fabric(flows, HOSTS)


LIMITS = QoS(egress_rate=50_000, ingress_rate=20_000, ingress_burst=1000, pps=3000, dscp=46)


def test_what_a_port_sends_goes_through_its_meters_and_leaves_with_its_dscp():
    fab = fabric(model(LIMITS))
    ids = {name: Q.meter_id(3, kind) for name, kind in
           (("egress", Q.EGRESS_RATE), ("egress_pps", Q.EGRESS_PPS))}
    for dst_mac, dst_ip, host, port in ((B_MAC, "10.0.0.12", "hv2", 4), (C_MAC, "10.0.0.13", "hv1", 5)):
        [out] = fab.send("hv1", udp(A_MAC, dst_mac, "10.0.0.11", dst_ip, 1, 2, ip_dscp=0), 3)
        assert (out.host, out.port, out.packet["ip_dscp"]) == (host, port, 46)
        assert out.meters == (("hv1", ids["egress"]), ("hv1", ids["egress_pps"]))
    # not IP: metered, no DSCP to set
    outs = fab.send("hv1", arp_request(A_MAC, "10.0.0.11", "10.0.0.12"), 3)
    assert outs and all(o.meters[:2] == (("hv1", ids["egress"]), ("hv1", ids["egress_pps"])) for o in outs)
    # another port's traffic is neither metered nor marked
    [out] = fab.send("hv2", udp(B_MAC, C_MAC, "10.0.0.12", "10.0.0.13", 1, 2, ip_dscp=10), 4)
    assert (out.port, out.packet["ip_dscp"], out.meters) == (5, 10, ())


@pytest.mark.parametrize("sg", [False, True])
def test_what_a_port_receives_goes_through_its_ingress_meters_from_anywhere(sg):
    fab = fabric(model(LIMITS, sg=sg))
    ingress = (Q.meter_id(3, Q.INGRESS_RATE), Q.meter_id(3, Q.INGRESS_PPS))
    for host, src_mac, src_ip, port in (("hv2", B_MAC, "10.0.0.12", 4), ("hv1", C_MAC, "10.0.0.13", 5)):
        [out] = fab.send(host, udp(src_mac, A_MAC, src_ip, "10.0.0.11", 9, 5000), port)
        assert (out.host, out.port) == ("hv1", 3)
        assert out.meters == tuple(("hv1", m) for m in ingress)
        # the ingress limit does not open the port's security groups
        blocked = fab.send(host, udp(src_mac, A_MAC, src_ip, "10.0.0.11", 9, 6000), port)
        assert blocked == ([] if sg else blocked)


def test_meters_per_port_follow_its_ofport_and_limits():
    index = CompilerIndex(model(LIMITS))
    meters = compiler.compile_meters(index, "hv1")
    assert meters == {
        Q.meter_id(3, Q.EGRESS_RATE): Q.Meter(Q.meter_id(3, Q.EGRESS_RATE), False, 50_000, 40_000),
        Q.meter_id(3, Q.INGRESS_RATE): Q.Meter(Q.meter_id(3, Q.INGRESS_RATE), False, 20_000, 1000),
        Q.meter_id(3, Q.EGRESS_PPS): Q.Meter(Q.meter_id(3, Q.EGRESS_PPS), True, 3000, 300),
        Q.meter_id(3, Q.INGRESS_PPS): Q.Meter(Q.meter_id(3, Q.INGRESS_PPS), True, 3000, 300)}
    assert min(meters) > P.DHCP_METER and min(meters) >= Q.METER_BASE
    assert compiler.compile_meters(index, "hv2") == {}
    # a port whose NIC has no ofport yet has no flows naming meters, and no meters
    pending = model(LIMITS)
    pending = Model(**{**pending.__dict__, "bindings": {**pending.bindings, "pa": Binding("pa", "hv1", 0)}})
    assert compiler.compile_meters(CompilerIndex(pending), "hv1") == {}


def test_only_dscp_needs_no_meter_and_no_qos_changes_nothing():
    plain = fabric(model(None))
    [out] = plain.send("hv1", udp(A_MAC, B_MAC, "10.0.0.11", "10.0.0.12", 1, 2, ip_dscp=0), 3)
    assert (out.meters, out.packet["ip_dscp"]) == ((), 0)
    marked = fabric(model(QoS(dscp=10)))
    [out] = marked.send("hv1", udp(A_MAC, B_MAC, "10.0.0.11", "10.0.0.12", 1, 2, ip_dscp=0), 3)
    assert (out.meters, out.packet["ip_dscp"]) == ((), 10)
    assert compiler.compile_meters(CompilerIndex(model(QoS(dscp=10))), "hv1") == {}
    # without QoS no flow of the QoS tables but their table-miss
    flows = compiler.compile_host(CompilerIndex(model(None)), "hv1")
    assert {f.priority for f in flows if f.table in (P.QOS_EGRESS, P.QOS_INGRESS, P.QOS_INGRESS2)} == {0}


def test_meter_plan_adds_and_changes_before_and_deletes_after():
    m1, m2, m3 = Q.Meter(300, False, 1000, 800), Q.Meter(301, True, 10, 10), Q.Meter(302, False, 5, 4)
    before, after = Q.plan_meters({300: m1, 302: m3}, {300: Q.Meter(300, False, 2000, 800), 301: m2})
    assert before == [("modify", Q.Meter(300, False, 2000, 800)), ("add", m2)]
    assert after == [("delete", m3)]
    assert Q.plan_meters({300: m1}, {300: m1}) == ([], [])


# ---- who may set it --------------------------------------------------------------------------------
def test_a_tenant_token_cannot_set_or_lift_its_ports_qos():
    from controller.access import ADMIN, Forbidden, Principal, authorize
    red = Principal("red-token", "red")
    assert authorize(red, "POST", "/v1/ports", {}, {"tenant": "red", "network": "n", "name": "a",
                                                     "qos": None}) == {}
    assert authorize(red, "PATCH", "/v1/ports/red/n/a", {}, {"security_groups": []}) == {}
    for method, path, body in (("POST", "/v1/ports", {"tenant": "red", "qos": {"dscp": 46}}),
                               ("PATCH", "/v1/ports/red/n/a", {"qos": None}),
                               ("POST", "/v1/ports/red/n/a/update", {"qos": {"egress_rate": "1gbit"}})):
        with pytest.raises(Forbidden, match="QoS"):
            authorize(red, method, path, {}, body)
        assert authorize(ADMIN, method, path, {}, body) == {}
