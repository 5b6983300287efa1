"""The what-if API operation: its input checks (one-line errors, nothing changed) and its answer,
over a model snapshot and a collector's rows (the replay itself: test_flows_whatif.py)."""
import pytest

from controller.api import Api
from test_flows_whatif import OBSERVED, build, row, three_tier
from topology.errors import WeftError


class Store:
    def __init__(self, model):
        self.model = model


class Service:
    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def flows(self, since, tenant):
        self.asked.append((since, tenant))
        return [dict(r) for r in self.rows if tenant in (r["src"].split("/")[0], r["dst"].split("/")[0])]


class Traffic:
    def __init__(self, rows):
        self.sflow = Service(rows)

    def service(self, source):
        if source != "sflow":
            raise WeftError(f"unknown traffic source {source!r}: use sflow, netflow or ipfix")
        return self.sflow


@pytest.fixture
def api():
    return Api(Store(build(three_tier())), engine=None, traffic=Traffic(OBSERVED))


def ask(api, body, ref="red/app"):
    return api.dispatch("POST", f"/v1/security-groups/{ref}/what-if", {}, body)


def test_a_deletion_lists_the_connections_it_blocks_and_changes_nothing(api):
    model = api.model
    res = ask(api, {"delete_rules": ["rule-5"], "since": "30m"})
    assert [(e["client"], e["server"], e["port"]) for e in res["blocked"]] == [
        ("red/net/web1", "red/net/app1", 8080), ("red/net/web2", "red/net/app1", 8080)]
    assert res["allowed"] == [] and res["security_group"] == "red/app" and res["since"] == "30m"
    assert api.model is model and len(model.security_group("red", "app").rules) == 3
    since, tenant = api.traffic.sflow.asked[-1]
    assert tenant == "red" and abs(since - (res["evaluated_at"] - 1800)) < 5


def test_an_added_rule_is_checked_like_sg_rule_add(api):
    api.traffic.sflow.rows = OBSERVED + [row("open", "app1", "tcp", 8080, True, 77)]
    res = ask(api, {"add_rules": [{"direction": "ingress", "proto": "tcp", "port_min": 8080,
                                   "remote_cidr": "10.0.0.40/29"}]})
    assert [(e["client"], e["server"]) for e in res["allowed"]] == [("red/net/open", "red/net/app1")]
    assert res["add_rules"][0]["port_max"] == 8080 and res["add_rules"][0]["id"] == "new-1"


@pytest.mark.parametrize("ref, body, status, text", [
    ("red/app", {}, 400, "nothing to try"),
    ("red/app", {"delete_rules": ["rule-1"]}, 404, "has no rule rule-1"),        # web's rule
    ("red/app", {"delete_rules": "rule-5"}, 400, "list of rule ids"),
    ("red/app", {"delete_rules": ["rule-5"], "dry": True}, 400, "unknown field(s): dry"),
    ("red/nope", {"delete_rules": ["rule-5"]}, 404, "no security group red/nope"),
    ("red/app", {"add_rules": [{"proto": "tcp"}]}, 400, "no direction"),
    ("red/app", {"add_rules": [{"direction": "ingress", "proto": "tcp", "port_min": 70000}]}, 400,
     "invalid port"),
    ("red/app", {"add_rules": [{"direction": "ingress", "remote_sg": "gone"}]}, 404,
     "no security group red/gone"),
    ("red/app", {"add_rules": [{"direction": "ingress", "remote_sg": "blue/web"}]}, 400,
     "only groups of its own tenant"),
    ("red/app", {"add_rules": [{"direction": "ingress", "proto": "tcp", "port_min": 8080,
                                "remote_sg": "web"}]}, 409, "already has this rule"),
    ("red/app", {"delete_rules": ["rule-5"], "since": "soon"}, 400, "invalid --since"),
    ("red/app", {"delete_rules": ["rule-5"], "source": "pcap"}, 400, "unknown traffic source"),
])
def test_bad_input_is_one_clear_error(api, ref, body, status, text):
    with pytest.raises(WeftError) as exc:
        ask(api, body, ref)
    assert exc.value.status == status and text in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)


def test_without_collectors_it_says_so(api):
    api.traffic = None
    with pytest.raises(WeftError) as exc:
        ask(api, {"delete_rules": ["rule-5"]})
    assert exc.value.status == 503
