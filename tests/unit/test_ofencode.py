"""The fast flow-mod encoder gives os-ken's bytes for every flow the compiler makes."""
import random
from dataclasses import replace

from controller import ofencode, ofmsg
from flows import cookies
from flows.compiler import compile_all
from flows.index import CompilerIndex
from tests.fakeswitch import FakeDatapath, FakeSwitch
from tests.unit import (test_flows_acl, test_flows_acl_ipv6, test_flows_compiler, test_flows_ipv6,
                        test_flows_routing, test_flows_routing6)


class _NoEngine:
    pass


DP = FakeDatapath(FakeSwitch(_NoEngine(), 1))


def oskens(msg) -> bytes:
    msg.xid = 0
    msg.serialize()
    return bytes(msg.buf)


def compiled_flows():
    flows = set()
    for mod in (test_flows_compiler, test_flows_routing, test_flows_acl, test_flows_ipv6,
                test_flows_acl_ipv6, test_flows_routing6):
        for name in dir(mod):
            builder = getattr(mod, name)
            if callable(builder) and name.startswith(("build", "model", "world")):
                try:
                    model = builder()
                    for host_flows in compile_all(CompilerIndex(model)).values():
                        flows.update(host_flows)
                except TypeError:
                    continue
    return flows


def test_every_compiled_flow_encodes_to_oskens_bytes():
    flows = compiled_flows()
    kinds = {a[0] for f in flows for a in f.actions}
    assert len(flows) > 200 and {"ct", "conjunction", "sample", "move", "meter", "goto"} <= kinds
    fields = {k for f in flows for k, _v in f.match}
    assert {"ipv6_src", "ipv6_nd_target", "ipv6_nd_tll", "icmpv6_type"} <= fields
    # IPv6 routing: masked destinations, hop limit, the echo reply's 128-bit address move
    routed6 = [f for f in flows if f.table == 31 and ("eth_type", 0x86DD) in f.match]
    assert any(isinstance(dict(f.match).get("ipv6_dst"), tuple) and ("dec_ttl",) in f.actions
               for f in routed6)
    assert any(("move", "ipv6_src", "ipv6_dst", 128) in f.actions for f in routed6)
    for flow in flows:
        assert ofencode.flow_add(flow) == oskens(ofmsg.flow_add(DP, flow)), flow


def test_the_same_flow_with_other_ports_and_a_delete():
    rng = random.Random(3)
    flows = sorted(compiled_flows(), key=repr)
    for flow in rng.sample(flows, 50):
        # another ofport everywhere it appears: cached pieces must not leak between values
        n = rng.randrange(1, 60000)
        match = tuple((k, n if k in ("in_port", "reg4") else v) for k, v in flow.match)
        moved = cookies.make("l2", "x", flow.table, flow.priority, match, flow.actions)
        assert ofencode.flow_add(moved, xid=7) == _with_xid(oskens(ofmsg.flow_add(DP, moved)), 7)
    for table, cookie in ((0, 1), (40, 0x0500000012345678), (255, cookies.FULL_MASK)):
        assert ofencode.flow_delete(table, cookie) == oskens(ofmsg.flow_delete(DP, table, cookie))


def _with_xid(data: bytes, xid: int) -> bytes:
    return data[:4] + xid.to_bytes(4, "big") + data[8:]
