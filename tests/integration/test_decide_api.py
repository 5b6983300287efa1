"""The decision endpoints over a real northbound store: sg suggest/apply in one transaction, placement, bad input.

The flow rows come from a stand-in for the collectors' query API (the lab tests,
test_decide_lab.py, drive the real collectors); everything written goes to a real ovsdb-server.
"""
import pytest

from controller.api import Api
from topology.errors import Conflict, NotFound, WeftError
from topology.model import Binding

pytestmark = pytest.mark.integration
TIERS = {"client": "hv1", "web1": "hv1", "web2": "hv2", "app1": "hv2", "db1": "hv3", "idle": "hv3"}


class _Collectors:
    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def service(self, source):
        if source not in ("sflow", "netflow", "ipfix"):
            raise WeftError(f"unknown traffic source {source!r}: use sflow, netflow or ipfix")
        return self

    def flows(self, since=None, tenant=None, until=None):
        self.asked.append((since, tenant))
        return [dict(r) for r in self.rows if tenant is None or tenant in (r["src_tenant"], r["dst_tenant"])]


class _Engine:
    def __init__(self, store):
        self.store, self.migrations = store, []

    def effective_model(self):
        return self.store.model

    def bindings(self):
        return {p.uuid: Binding(p.uuid, TIERS[p.name], 1) for p in self.store.model.ports.values()
                if p.name in TIERS}

    def migrate(self, port, host, timeout=5.0):
        self.migrations.append((self.store.model.ports[port].ref, host))
        return {"state": "requested", "to": host}


def row(c, s, port, nbytes=1000, to_server=True):
    src, dst = (c, s) if to_server else (s, c)
    return {"src": f"red/net/{src}", "dst": f"red/net/{dst}", "src_tenant": "red", "dst_tenant": "red",
            "proto": "tcp", "port": port, "to_server": to_server, "bytes": nbytes, "packets": 1}


ROWS = [row("client", "web1", 80), row("client", "web2", 80), row("web1", "app1", 8080, 50_000),
        row("web2", "app1", 8080, 70_000), row("app1", "db1", 5432, 90_000),
        row("app1", "db1", 5432, 900_000, to_server=False)]


@pytest.fixture
def api(store):
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/24")
    for name in TIERS:
        store.create_port("red", "net", name)
    store.create_tenant("blue")
    a = Api(store, _Engine(store), traffic=_Collectors(ROWS))
    a.call = lambda method, path, body=None, **q: a.dispatch(method, path, {k: [v] for k, v in q.items()},
                                                             body or {})
    return a


def groups_of(store):
    return {p.name: p.security_groups for p in store.model.ports.values()}


def test_suggest_then_apply_with_assign_in_one_transaction(api):
    store = api.store
    s = api.call("GET", "/v1/suggestions/security-groups", tenant="red", since="2h")
    assert {g["name"]: [m.rsplit("/", 1)[1] for m in g["members"]] for g in s["groups"]} == {
        "suggested-client": ["client"], "suggested-web": ["web1", "web2"],
        "suggested-app": ["app1"], "suggested-db": ["db1"]}
    assert s["unobserved_ports"] == ["red/net/idle"]
    assert api.traffic.asked[-1][1] == "red" and api.traffic.asked[-1][0] is not None
    before, version = groups_of(store), store.version
    done = api.call("POST", "/v1/suggestions/security-groups/apply",
                    {"tenant": "red", "prefix": "lp", "assign": True})
    assert store.version == version + 1                       # one transaction, one snapshot
    assert sorted(g["ref"] for g in done["created"]) == ["red/lp-app", "red/lp-client", "red/lp-db", "red/lp-web"]
    after = groups_of(store)
    assert after == {**before, "client": ("lp-client",), "web1": ("lp-web",), "web2": ("lp-web",),
                     "app1": ("lp-app",), "db1": ("lp-db",)}
    app = store.model.security_group("red", "lp-app")
    assert {(r.direction, r.port_min, r.remote_sg) for r in app.rules} == {
        ("ingress", 8080, "lp-web"), ("egress", 5432, "lp-db")}
    # the same prefix again: refused, nothing changes
    with pytest.raises(Conflict, match="already exist: choose another prefix"):
        api.call("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "prefix": "lp"})
    assert store.version == version + 1 and groups_of(store) == after


def test_apply_without_assign_creates_groups_only(api):
    done = api.call("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "prefix": "x"})
    assert len(done["created"]) == 4 and done["assigned"] == []
    assert set(groups_of(api.store).values()) == {("default",)}


def test_bad_input_is_one_clear_error_and_changes_nothing(api):
    store = api.store
    version = store.version
    bad = [("GET", "/v1/suggestions/security-groups", None, {"tenant": "green"}, NotFound, "no tenant named 'green'"),
           ("GET", "/v1/suggestions/security-groups", None, {}, WeftError, "missing tenant"),
           ("GET", "/v1/suggestions/security-groups", None, {"tenant": "red", "since": "5x"}, WeftError, "invalid --since"),
           ("GET", "/v1/suggestions/security-groups", None, {"tenant": "red", "since": "-1h"}, WeftError, "must be positive"),
           ("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "prefix": "bad/name"}, {}, WeftError,
            "invalid group name prefix"),
           ("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "assign": True}, {}, WeftError,
            "missing prefix"),
           ("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "prefix": "p", "assign": "maybe"},
            {}, WeftError, "invalid assign"),
           ("POST", "/v1/suggestions/security-groups/apply", {"tenant": "blue", "prefix": "p"}, {}, WeftError,
            "no traffic of tenant blue"),
           ("POST", "/v1/suggestions/security-groups/apply", {"tenant": "red", "prefix": "p", "since": "1h",
                                                              "colour": 1}, {}, WeftError, "unknown field"),
           ("GET", "/v1/suggestions/placement", None, {"max_moves": "0"}, WeftError, "invalid --max-moves 0"),
           ("GET", "/v1/suggestions/placement", None, {"max_moves": "two"}, WeftError, "invalid --max-moves"),
           ("GET", "/v1/suggestions/placement", None, {"max_ports_per_host": "0"}, WeftError,
            "invalid --max-ports-per-host"),
           ("GET", "/v1/suggestions/placement", None, {"since": "1y"}, WeftError, "invalid --since"),
           ("GET", "/v1/suggestions/placement", None, {"tenant": "green"}, NotFound, "no tenant named 'green'"),
           ("GET", "/v1/suggestions/placement", None, {"source": "pcap"}, WeftError, "unknown traffic source"),
           ("POST", "/v1/suggestions/placement/apply", {}, {}, WeftError, "missing max_moves"),
           ("POST", "/v1/suggestions/placement/apply", {"max_moves": 0}, {}, WeftError, "invalid --max-moves 0"),
           ("POST", "/v1/suggestions/placement/apply", {"max_moves": True}, {}, WeftError, "invalid --max-moves")]
    for method, path, body, query, exc, message in bad:
        with pytest.raises(exc, match=message.replace("(", r"\(")):
            api.call(method, path, body, **query)
    assert store.version == version
    assert api.engine.migrations == []


def test_placement_ranks_moves_and_apply_requests_them(api):
    # hv1: client, web1   hv2: web2, app1   hv3: db1, idle; app1<->db1 is the heaviest pair
    plan = api.call("GET", "/v1/suggestions/placement", max_ports_per_host="3")
    assert plan["moves"][0]["port"] in ("red/net/app1", "red/net/db1")
    assert plan["moves"][0]["bytes_saved"] == 990_000
    # client-web1 (hv1) and web2-app1 (hv2) stay on their host
    assert plan["cross_host_bytes_before"] == sum(r["bytes"] for r in ROWS) - 1000 - 70_000
    assert all(h["load_after"] <= 3 for h in plan["hosts"])
    one = api.call("GET", "/v1/suggestions/placement", max_moves="1", max_ports_per_host="3")
    assert len(one["moves"]) == 1
    # the default capacity is the busiest host's load now (2 everywhere): nothing can move
    assert api.call("GET", "/v1/suggestions/placement")["moves"] == []
    # capacity 4: db1 joins app1 on hv2, then web1 follows (hv1 keeps the client)
    done = api.call("POST", "/v1/suggestions/placement/apply", {"max_moves": 2, "max_ports_per_host": 4})
    assert done["error"] is None
    assert api.engine.migrations == [(m["port"], m["to"]) for m in done["plan"]["moves"]]
    assert api.engine.migrations == [("red/net/db1", "hv2"), ("red/net/web1", "hv2")]
