"""GET /v1/trace through the API object: rendering, bad input, and compiled-versus-installed differences."""
import dataclasses

import pytest

from controller.api import Api
from flows import pipeline
from flows.compiler import PENDING, CompilerIndex, compile_all
from tests.unit.test_flows_acl import build
from topology.errors import WeftError
from topology.model import Binding


class Engine:
    def __init__(self, model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))

    def effective_model(self):
        return self.model

    def desired_flows(self, host):
        return self.flows[host]


def api(model=None, installed=None):
    model = model or build()
    engine = Engine(model)
    held = installed or engine.flows
    dumper = lambda host: [{"table": f.table, "cookie": f.cookie, "flow": f} for f in held[host]]  # noqa: E731
    return Api(None, engine, flow_dumper=dumper), engine


def q(**kw):
    return {k: [str(v)] for k, v in kw.items()}


def test_a_trace_renders_steps_owners_and_the_verdict():
    a, _ = api()
    res = a.dispatch("GET", "/v1/trace", q(port="red/net/web1", dst="10.0.0.21", proto="tcp", dport=8080), {})
    assert res["verdict"] == "delivered" and res["delivered_to"] == [{"host": "hv2", "ofport": 2, "port": "red/net/app1"}]
    assert res["steps"][0]["phase"] == "arp" and res["steps"][-1]["host"] == "hv2"
    assert any(s["owner"].startswith("rule ") and "of red/app" in s["owner"] for s in res["steps"])
    assert "installed" not in res and res["flows"] == "compiled"


def test_installed_reports_what_a_switch_lacks():
    model = build()
    a, engine = api(model)
    res = a.dispatch("GET", "/v1/trace", q(port="red/net/web1", dst="10.0.0.21", proto="tcp", dport=8080,
                                           installed=1), {})
    assert res["differences_total"] == 0 and not res["verdicts_differ"]
    held = dict(engine.flows)
    held["hv2"] = [f for f in held["hv2"] if f.table != pipeline.INGRESS_ACL]
    a, _ = api(model, held)
    res = a.dispatch("GET", "/v1/trace", q(port="red/net/web1", dst="10.0.0.21", proto="tcp", dport=8080,
                                           installed=1), {})
    assert res["verdict"] == "delivered" and res["verdicts_differ"]
    assert (res["installed"]["reason"], res["installed"]["drop_table"]) == ("no-flow", pipeline.INGRESS_ACL)
    assert {(d["host"], d["kind"], d["table"]) for d in res["differences"]} == {("hv2", "missing", 46)}
    assert res["differences"][0]["on_path"] and res["hosts_compared"] == ["hv1", "hv2"]


@pytest.mark.parametrize("query, status, message", [
    (q(port="red/net/web1"), 400, "needs port"),
    (q(port="red/web1", dst="10.0.0.21"), 400, "TENANT/NET/PORT"),
    (q(port="red/net/web1", dst="10.0.0.21", color="blue"), 400, "unknown parameter"),
    (q(port="red/net/web1", dst="10.0.0.21", dport="80x"), 400, "whole number"),
    (q(port="red/net/web1", dst="10.0.0.21", proto="sctp"), 400, "invalid proto"),
    (q(port="red/net/nope", dst="10.0.0.21"), 404, "no port red/net/nope"),
    (q(port="red/net/web1", dst="red/net/nope"), 404, "no port red/net/nope"),
    (q(port="red/net/web1", dst="10.0.0.21", ttl=0), 400, "invalid ttl"),
])
def test_bad_requests_are_one_line_errors(query, status, message):
    a, _ = api()
    with pytest.raises(WeftError) as err:
        a.dispatch("GET", "/v1/trace", query, {})
    assert err.value.status == status and message in str(err.value)


def test_an_unplugged_port_is_a_conflict():
    model = build()
    model = dataclasses.replace(model, bindings={**model.bindings, "web1": Binding("web1", "hv1", PENDING)})
    a, _ = api(model)
    with pytest.raises(WeftError) as err:
        a.dispatch("GET", "/v1/trace", q(port="red/net/web1", dst="10.0.0.21"), {})
    assert err.value.status == 409 and "not plugged" in str(err.value)
