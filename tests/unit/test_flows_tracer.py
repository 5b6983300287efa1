"""The simulated switch: lookup, masked matching, actions, loop guard and the tunnel fabric."""
import pytest

from flows.flow import CONTROLLER, IN_PORT, MULTICAST_BIT, Flow, make_match
from flows.tracer import (Fabric, Switch, arp_request, ipv4, ipv6, to_int, to_text, trace, udp)

A, B = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"


def flow(table, priority, actions=(), **match):
    return Flow(table, priority, make_match(**match), tuple(actions))


def ports(outputs):
    return [o.port for o in outputs]


def test_highest_priority_matching_flow_wins():
    flows = [flow(0, 10, [("output", 1)]), flow(0, 20, [("output", 2)], eth_dst=B),
             flow(0, 30, [("output", 3)], eth_dst=A)]
    assert ports(trace(flows, ipv4(A, B, "10.0.0.1", "10.0.0.2"), in_port=9)) == [2]
    assert ports(trace(flows, ipv4(B, A, "10.0.0.2", "10.0.0.1"), in_port=9)) == [3]
    assert ports(trace(flows, ipv4(B, "fa:16:3e:00:00:0c", "10.0.0.2", "10.0.0.1"), 9)) == [1]


def test_no_match_drops_and_missing_field_does_not_match():
    flows = [flow(0, 10, [("output", 1)], tcp_dst=80)]
    assert trace(flows, ipv4(A, B, "10.0.0.1", "10.0.0.2"), in_port=9) == []
    assert trace([], ipv4(A, B, "10.0.0.1", "10.0.0.2"), in_port=9) == []


def test_masked_match_and_string_values_compare_as_integers():
    flows = [flow(0, 10, [("output", 1)], eth_dst=MULTICAST_BIT),
             flow(0, 20, [("output", 2)], ipv4_dst=("10.1.0.0", "255.255.0.0"))]
    assert ports(trace(flows, ipv4(A, "FF:FF:FF:FF:FF:FF", "10.0.0.1", "10.0.0.2"), 9)) == [1]
    assert ports(trace(flows, ipv4(A, "01:00:5e:00:00:01", "10.0.0.1", "10.0.0.2"), 9)) == [1]
    assert ports(trace(flows, ipv4(A, B, "10.0.0.1", "10.0.0.2"), 9)) == []
    assert ports(trace(flows, ipv4(A, B, "10.0.0.1", "10.1.7.9"), 9)) == [2]
    assert to_int("eth_src", A) == 0xFA163E00000A and to_text("eth_src", 0xFA163E00000A) == A
    assert to_text("arp_spa", to_int("arp_spa", "192.0.2.255")) == "192.0.2.255"


def test_bad_values_raise():
    for field, value in (("eth_src", "10.0.0.1"), ("ipv4_src", "fa:16:3e:00:00:01"),
                         ("ipv4_src", "10.0.0.256"), ("eth_type", "0x800"), ("reg6", True)):
        with pytest.raises(ValueError):
            to_int(field, value)


def test_registers_start_at_zero_and_goto_continues():
    flows = [flow(0, 1, [("set_field", "reg6", 7), ("goto", 5)], in_port=3),
             flow(5, 1, [("output", 8)], reg6=7, reg7=0)]
    assert ports(trace(flows, {**ipv4(A, B, "1.1.1.1", "2.2.2.2"), "reg6": 99}, in_port=3)) == [8]
    assert trace(flows, ipv4(A, B, "1.1.1.1", "2.2.2.2"), in_port=4) == []


def test_set_field_and_move_change_the_packet():
    flows = [flow(0, 1, [("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", B),
                         ("move", "ipv4_src", "reg0", 8), ("output", 2)])]
    (out,) = trace(flows, ipv4(A, "ff:ff:ff:ff:ff:ff", "10.0.0.77", "10.0.0.2"), in_port=1)
    assert out.packet["eth_dst"] == A and out.packet["eth_src"] == B
    assert out.packet["reg0"] == 77 and out.packet["in_port"] == 1


def test_move_copies_only_the_low_bits():
    flows = [flow(0, 1, [("set_field", "reg1", 0xAB00), ("move", "reg0", "reg1", 8),
                         ("output", 2)])]
    (out,) = trace(flows, {"reg0": 0, "eth_type": 1}, in_port=1)
    assert out.packet["reg1"] == 0xAB00
    flows = [flow(0, 1, [("set_field", "reg0", 0x1234), ("set_field", "reg1", 0xAB00),
                         ("move", "reg0", "reg1", 8), ("output", 2)])]
    (out,) = trace(flows, {"eth_type": 1}, in_port=1)
    assert out.packet["reg1"] == 0xAB34


def test_move_from_missing_field_raises():
    with pytest.raises(ValueError):
        trace([flow(0, 1, [("move", "arp_sha", "arp_tha", 48)])], {"eth_type": 1}, in_port=1)


def test_output_to_the_packets_own_in_port_is_dropped_unless_in_port():
    flows = [flow(0, 1, [("output", 1), ("output", 2), ("output", IN_PORT)])]
    assert ports(trace(flows, {"eth_type": 1}, in_port=1)) == [2, 1]


def test_outputs_snapshot_the_packet_at_output_time():
    flows = [flow(0, 1, [("output", 2), ("set_field", "eth_dst", B), ("output", 3)])]
    first, second = trace(flows, ipv4(A, A, "1.1.1.1", "2.2.2.2"), in_port=1)
    assert first.packet["eth_dst"] == A and second.packet["eth_dst"] == B


def test_dec_ttl_and_controller():
    flows = [flow(0, 1, [("dec_ttl",), ("controller", 128), ("output", 2)])]
    outs = trace(flows, ipv4(A, B, "1.1.1.1", "2.2.2.2", ip_ttl=5), in_port=1)
    assert ports(outs) == [CONTROLLER, 2] and outs[1].packet["ip_ttl"] == 4
    assert trace(flows, ipv4(A, B, "1.1.1.1", "2.2.2.2", ip_ttl=1), in_port=1) == []
    with pytest.raises(ValueError):
        trace(flows, {"eth_type": 1}, in_port=1)


def test_goto_loop_is_caught():
    with pytest.raises(ValueError, match="loop"):
        trace([flow(0, 1, [("goto", 0)])], {"eth_type": 1}, in_port=1)


def test_two_top_priority_flows_taking_one_packet_is_an_error():
    flows = [flow(0, 5, [("output", 1)], eth_dst=B), flow(0, 5, [("output", 2)], eth_src=A)]
    with pytest.raises(ValueError, match="two flows"):
        trace(flows, ipv4(A, B, "1.1.1.1", "2.2.2.2"), in_port=1)
    assert ports(trace(flows, ipv4(B, B, "1.1.1.1", "2.2.2.2"), in_port=9)) == [1]


def test_packet_helpers():
    req = arp_request(A, "10.0.0.1", "10.0.0.2")
    assert req["eth_dst"] == "ff:ff:ff:ff:ff:ff" and req["arp_op"] == 1 and req["arp_sha"] == A
    assert udp(A, B, "1.1.1.1", "2.2.2.2", 1000, 53)["ip_proto"] == 17
    assert ipv6(A, B)["eth_type"] == 0x86DD


def test_fabric_carries_tunnel_packets_to_the_host_with_that_tunnel_ip():
    hv1 = [flow(0, 1, [("set_field", "tun_ipv4_dst", "192.0.2.2"), ("set_field", "tunnel_id", 5),
                       ("output", 60000), ("output", 7)], in_port=1)]
    hv2 = [flow(0, 1, [("output", 3)], in_port=60000, tunnel_id=5, tun_ipv4_src="192.0.2.1")]
    fabric = Fabric({"hv1": hv1, "hv2": hv2}, {"hv1": "192.0.2.1", "hv2": "192.0.2.2"})
    got = fabric.send("hv1", ipv4(A, B, "1.1.1.1", "2.2.2.2"), in_port=1)
    assert [(d.host, d.port) for d in got] == [("hv1", 7), ("hv2", 3)]
    assert "reg6" not in got[1].packet and "tunnel_id" not in got[1].packet
    assert got[1].packet["eth_src"] == A


def test_fabric_reports_tunnel_output_to_unknown_address_and_refuses_reflection():
    lost = [flow(0, 1, [("set_field", "tun_ipv4_dst", "192.0.2.9"), ("set_field", "tunnel_id", 5),
                        ("output", 60000)], in_port=1)]
    fabric = Fabric({"hv1": lost}, {"hv1": "192.0.2.1"})
    (d,) = fabric.send("hv1", {"eth_type": 1}, in_port=1)
    assert d.port == 60000 and d.packet["tun_ipv4_dst"] == "192.0.2.9"
    # a flow sending a tunnel packet back where it came from (IN_PORT escapes the in_port rule)
    reflect = [flow(0, 1, [("set_field", "tun_ipv4_dst", "192.0.2.2"), ("output", IN_PORT)],
                    in_port=60000)]
    fabric = Fabric({"hv1": reflect, "hv2": reflect}, {"hv1": "192.0.2.1", "hv2": "192.0.2.2"})
    with pytest.raises(ValueError, match="tunnel loop"):
        fabric.from_tunnel("hv1", {"eth_type": 1}, tunnel_id=5)
    relaxed = Fabric({"hv1": reflect, "hv2": []}, {"hv1": "192.0.2.1", "hv2": "192.0.2.2"},
                     max_hops=2)
    assert relaxed.from_tunnel("hv1", {"eth_type": 1}, tunnel_id=5) == []


def test_switch_reuses_compiled_tables():
    sw = Switch([flow(0, 1, [("output", 2)])])
    assert ports(sw.trace({"eth_type": 1}, 1)) == [2] and ports(sw.trace({"eth_type": 1}, 3)) == [2]
