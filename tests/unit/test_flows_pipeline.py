"""The declared pipeline and its validator."""
import pytest

from flows import cookies, pipeline
from flows.flow import Flow, make_match
from flows.pipeline import (ARP_RESPONDER, CLASSIFY, L2_LOOKUP, L3, PORT_SECURITY, TABLES,
                            TUNNEL_OFPORT, validate)


def flow(table, priority=100, actions=(), **match):
    return Flow(table, priority, make_match(**match), tuple(actions))


def test_constants_and_tables():
    assert (TUNNEL_OFPORT, pipeline.REG_NET, pipeline.REG_FLAGS) == (60000, "reg6", "reg7")
    assert (CLASSIFY, PORT_SECURITY, ARP_RESPONDER, L3, L2_LOOKUP) == (0, 10, 20, 30, 40)
    assert (pipeline.ROUTE, pipeline.RESOLVE, pipeline.REG_ROUTER) == (31, 32, "reg5")
    assert list(TABLES) == sorted(TABLES) == [0, 1, 10, 11, 12, 20, 25, 26, 30, 31, 32, 33, 34, 40, 41, 45, 46, 47, 48]
    for table_id, table in TABLES.items():
        assert table.id == table_id and table.name and table.purpose
        assert table.miss is None or table.miss > table_id
    assert TABLES[ARP_RESPONDER].miss_text == "goto 30" and TABLES[L2_LOOKUP].miss_text == "drop"
    assert TABLES[L3].miss_text == "goto 40" and TABLES[pipeline.ROUTE].miss_text == "drop"
    assert not any(t.reserved for t in TABLES.values())


def test_miss_flows_are_valid_and_skip_reserved_tables():
    misses = pipeline.miss_flows()
    validate(misses)
    assert {f.table for f in misses} == {0, 1, 10, 11, 12, 20, 25, 26, 30, 31, 32, 33, 34, 40, 41, 45, 46, 47, 48}
    assert all(f.priority == 0 and f.match == () for f in misses)
    assert {f.table: f.actions for f in misses}[ARP_RESPONDER] == (("goto", L3),)
    assert {f.table: f.actions for f in misses}[L3] == (("goto", L2_LOOKUP),)
    # a miss that continues is structural; a miss that drops names its table's reason
    for f in misses:
        dropping = pipeline.TABLES[f.table].miss is None
        assert cookies.decode(f.cookie) == ((f"drop:{pipeline.TABLES[f.table].drop}", 0) if dropping
                                            else ("pipeline", 0))
        assert (f.actions == pipeline.DROP_ACTIONS) == dropping
    reasons = {cookies.drop_reason(f.cookie) for f in misses}
    assert {"unclassified", "port-security", "security-group", "no-route"} <= reasons


def test_valid_flows_pass():
    validate([
        flow(CLASSIFY, in_port=1, actions=[("set_field", "reg6", 5), ("goto", PORT_SECURITY)]),
        flow(PORT_SECURITY, 90, in_port=1, eth_src="fa:16:3e:00:00:01", eth_type=0x0806,
             arp_sha="fa:16:3e:00:00:01", arp_spa="10.0.0.1", actions=[("goto", ARP_RESPONDER)]),
        flow(ARP_RESPONDER, reg6=5, eth_type=0x0806, arp_op=1, arp_tpa="10.0.0.1",
             actions=[("move", "arp_spa", "arp_tpa", 32), ("set_field", "arp_op", 2),
                      ("output", 0xFFFFFFF8)]),
        flow(L2_LOOKUP, 10, reg6=5, reg7=1, eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"),
             actions=[("output", 3), ("set_field", "tun_ipv4_dst", "192.0.2.1")]),
    ])


@pytest.mark.parametrize("bad, why", [
    (flow(5, actions=[("goto", 10)]), "not declared"),
    (flow(pipeline.ROUTE, reg6=1), "does not allow"),
    (flow(PORT_SECURITY, in_port=1, actions=[("output", 1), ("meter", 1)]), "meter must be the first"),
    (flow(CLASSIFY, eth_src="fa:16:3e:00:00:01"), "does not allow"),
    (flow(L2_LOOKUP, in_port=1), "does not allow"),
    (flow(CLASSIFY, in_port=1, actions=[("goto", CLASSIFY)]), "forward"),
    (flow(ARP_RESPONDER, actions=[("goto", PORT_SECURITY)]), "forward"),
    (flow(CLASSIFY, in_port=1, actions=[("goto", 15)]), "declared"),
    (flow(CLASSIFY, in_port=1, actions=[("goto", 35)]), "declared"),
    (flow(CLASSIFY, in_port=1, actions=[("goto", 10), ("output", 1)]), "last"),
    (flow(CLASSIFY, in_port=1, actions=[("flood",)]), "unknown action"),
    (flow(CLASSIFY, in_port=1, actions=[("output",)]), "arguments"),
    (flow(PORT_SECURITY, in_port=1, arp_spa="10.0.0.1"), "eth_type=0x0806"),
    (flow(PORT_SECURITY, in_port=1, eth_type=0x0806, ipv4_src="10.0.0.1"), "eth_type=0x0800"),
    (flow(ARP_RESPONDER, reg6=1, actions=[("set_field", "arp_op", 2)]), "set_field of arp_op"),
    (flow(ARP_RESPONDER, reg6=1, actions=[("move", "arp_sha", "arp_tha", 48)]), "move of arp_sha"),
    (Flow(CLASSIFY, 70000, (), ()), "priority"),
])
def test_invalid_flows_raise(bad, why):
    with pytest.raises(ValueError, match=why):
        validate([flow(CLASSIFY, in_port=2, actions=[("goto", 10)]), bad])
