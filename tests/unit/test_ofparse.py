"""Flows read back from a switch's dump (controller/ofparse.py) equal the compiled ones, action by action."""
import types

from os_ken.ofproto import ofproto_v1_4 as OFP

from controller import ofencode, ofparse
from flows.compiler import CompilerIndex, compile_all
from lab.swarm_ofwire import parse
from tests.unit.test_flows_acl import build


def _normal(match):
    """Match values as the tracer reads them (MAC/IP text, masks as pairs)."""
    from flows.tracer import to_int
    out = []
    for field, value in match:
        if isinstance(value, tuple):
            out.append((field, to_int(field, value[0]) & to_int(field, value[1]), to_int(field, value[1])))
        else:
            out.append((field, to_int(field, value)))
    return sorted(out)


def test_every_compiled_flow_reads_back_as_itself():
    flows = [f for fl in compile_all(CompilerIndex(build())).values() for f in fl]
    kinds = set()
    for flow in flows:
        mod = parse(OFP.OFPT_FLOW_MOD, 1, ofencode.flow_add(flow, 1))
        stats = types.SimpleNamespace(table_id=mod.table_id, priority=mod.priority, cookie=mod.cookie,
                                      match=mod.match, instructions=mod.instructions)
        back = ofparse.flow_of(stats)
        assert back.key == flow.key
        assert back.actions == flow.actions, flow
        assert _normal(back.match) == _normal(flow.match), flow
        kinds |= {a[0] for a in flow.actions}
    assert {"meter", "controller", "ct", "conjunction", "sample", "set_field", "move", "goto",
            "output"} <= kinds


def test_an_unknown_action_is_named():
    act = type("OFPActionPushVlan", (), {})()
    try:
        ofparse.action_of(act)
    except ValueError as exc:
        assert "OFPActionPushVlan" in str(exc)
    else:
        raise AssertionError("no error")
