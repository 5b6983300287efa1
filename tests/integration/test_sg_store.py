"""Security groups in the northbound store on a real ovsdb-server, and the API over it."""
import json
import os
import signal
import subprocess

import pytest

from controller.api import Api
from flows import cookies
from ovsdb.nbserver import SCHEMA, ensure_local_server
from ovsdb.nbstore import NorthboundStore
from topology.errors import Conflict, NotFound, WeftError

pytestmark = pytest.mark.integration


def _kill(directory):
    with open(os.path.join(directory, "nb.pid")) as f:
        os.kill(int(f.read()), signal.SIGTERM)


@pytest.fixture
def red(store):
    store.create_tenant("red")
    store.create_network("red", "net", "10.0.0.0/24")
    return store


def groups(store, tenant=None):
    return {g.ref: g for g in store.model.security_groups.values() if not tenant or g.tenant == tenant}


def port(store, ref):
    return next(p for p in store.model.ports.values() if p.ref == ref)


def shape(rule):
    return (rule.direction, rule.proto, rule.port_min, rule.port_max, rule.icmp_type,
            rule.remote_cidr, rule.remote_sg, rule.ethertype)


def test_a_tenant_comes_with_its_default_group_which_new_ports_get(red):
    created = red.create_tenant("blue")
    sgs = groups(red)
    assert set(sgs) == {"red/default", "blue/default"}
    default = sgs["blue/default"]
    assert default.uuid == created["default_group"]
    assert [shape(r) for r in default.rules] == [
        ("egress", "any", None, None, None, "0.0.0.0/0", None, "ipv4"),
        ("egress", "any", None, None, None, "::/0", None, "ipv6"),
        ("ingress", "any", None, None, None, None, "default", "ipv4"),
        ("ingress", "any", None, None, None, None, "default", "ipv6")]
    keys = [r.key for g in sgs.values() for r in g.rules]
    assert sorted(keys) == list(range(1, 9))                    # unique across tenants, from 1
    a = red.create_port("red", "net", "a")
    assert a["security_groups"] == ["default"] and a["port_security"] is True
    assert red.model.ports[a["id"]].security_groups == ("default",)
    off = red.create_port("red", "net", "off", port_security=False)
    assert red.model.ports[off["id"]].security_groups == () and not red.model.ports[off["id"]].port_security


def test_groups_and_rules_round_trip(red):
    web = red.create_sg("red", "web")
    assert groups(red)["red/web"].rules == ()                # a new group admits nothing
    ssh = red.add_rule("red", "web", "ingress", "tcp", 22)
    http = red.add_rule("red", "web", "ingress", proto="tcp", port_min=8000, port_max=8080,
                        remote_cidr="192.168.0.0/16")
    ping = red.add_rule("red", "web", "ingress", proto="icmp", icmp_type=8, remote_sg="red/default")
    own = red.add_rule("red", "web", "ingress", proto="udp", port_min=53, remote_sg="web")
    assert ssh["key"] < http["key"] < ping["key"] < own["key"]
    g = groups(red)["red/web"]
    assert g.uuid == web["id"] and g.tenant == "red" and g.name == "web"
    by_id = {r.uuid: r for r in g.rules}
    assert [r.key for r in g.rules] == sorted(r.key for r in g.rules)
    assert shape(by_id[ssh["id"]]) == ("ingress", "tcp", 22, 22, None, "0.0.0.0/0", None, "ipv4")
    assert shape(by_id[http["id"]]) == ("ingress", "tcp", 8000, 8080, None, "192.168.0.0/16", None, "ipv4")
    assert shape(by_id[ping["id"]]) == ("ingress", "icmp", None, None, 8, None, "default", "ipv4")
    assert shape(by_id[own["id"]]) == ("ingress", "udp", 53, 53, None, None, "web", "ipv4")
    assert by_id[ssh["id"]].key == ssh["key"]
    assert red.delete_rule("red", "web", ssh["id"])["deleted"]
    assert ssh["id"] not in {r.uuid for r in groups(red)["red/web"].rules}
    again = red.add_rule("red", "web", "ingress", "tcp", 22)
    assert again["key"] > own["key"]                          # keys are not handed out twice


def test_refusals_change_nothing(red):
    red.create_tenant("blue")
    red.create_sg("blue", "web")
    red.create_sg("red", "web")
    rule = red.add_rule("red", "web", "ingress", "tcp", 22)
    red.create_port("red", "net", "a", security_groups=["web"])
    before = red.model
    for call, exc, message in [
        (lambda: red.create_sg("red", "web"), Conflict, "already exists"),
        (lambda: red.create_sg("red", "default"), Conflict, "already exists"),
        (lambda: red.create_sg("nobody", "web"), NotFound, "no tenant named 'nobody'"),
        (lambda: red.create_sg("red", "bad name"), WeftError, "invalid security group name"),
        (lambda: red.delete_sg("red", "nope"), NotFound, "no security group red/nope"),
        (lambda: red.delete_sg("red", "default"), Conflict, "deleted only with the tenant"),
        (lambda: red.delete_sg("red", "web"), Conflict, "used by port\\(s\\) red/net/a"),
        (lambda: red.add_rule("red", "web", "ingress", "tcp", 22), Conflict, "already has this rule"),
        (lambda: red.add_rule("red", "web", "ingress", "tcp", "22", 22, remote_cidr="0.0.0.0/0"),
         Conflict, "already has this rule"),
        (lambda: red.add_rule("red", "nope", "ingress"), NotFound, "no security group red/nope"),
        (lambda: red.add_rule("nobody", "web", "ingress"), NotFound, "no tenant named 'nobody'"),
        (lambda: red.add_rule("red", "web", "sideways"), WeftError, "invalid direction"),
        (lambda: red.add_rule("red", "web", "ingress", "icmp", 22), WeftError, "not to icmp"),
        (lambda: red.add_rule("red", "web", "ingress", "tcp", icmp_type=3), WeftError, "not to tcp"),
        (lambda: red.add_rule("red", "web", "ingress", "tcp", 90, 80), WeftError, "above the last"),
        (lambda: red.add_rule("red", "web", "ingress", remote_cidr="10.0.0.1/8"), WeftError, "host bits"),
        (lambda: red.add_rule("red", "web", "ingress", remote_cidr="10.0.0.0/8", remote_sg="web"),
         WeftError, "mutually exclusive"),
        (lambda: red.add_rule("red", "web", "ingress", remote_sg="nope"), NotFound,
         "no security group red/nope"),
        (lambda: red.add_rule("red", "web", "ingress", remote_sg="blue/web"), WeftError,
         "cannot use security group blue/web"),
        (lambda: red.add_rule("red", "web", "ingress", ethertype="ipx"), WeftError, "expected ipv4 or ipv6"),
        (lambda: red.delete_rule("red", "web", "nope"), NotFound, "has no rule nope"),
        (lambda: red.delete_rule("red", "default", rule["id"]), NotFound, "has no rule"),
        (lambda: red.create_port("red", "net", "b", security_groups=["nope"]), NotFound,
         "no security group red/nope"),
        (lambda: red.create_port("red", "net", "b", security_groups=["blue/web"]), WeftError,
         "cannot use security group blue/web"),
        (lambda: red.create_port("red", "net", "b", security_groups=["web"], port_security=False),
         WeftError, "security groups need port security"),
        (lambda: red.create_port("red", "net", "b", security_groups=["default"], port_security=False),
         WeftError, "security groups need port security"),
        (lambda: red.update_port("red", "net", "a", security_groups=["nope"]), NotFound, "red/nope"),
        (lambda: red.update_port("red", "net", "a", security_groups=["blue/web"]), WeftError,
         "cannot use security group blue/web"),
        (lambda: red.update_port("red", "net", "a", port_security=False), WeftError,
         "still has security groups \\(web\\)"),
        (lambda: red.update_port("red", "net", "a", security_groups=["web"], port_security=False),
         WeftError, "need port security"),
        (lambda: red.update_port("red", "net", "a", port_security="no"), WeftError, "expected true or false"),
        (lambda: red.update_port("red", "net", "zz", security_groups=[]), NotFound, "no port red/net/zz"),
    ]:
        with pytest.raises(exc, match=message) as info:
            call()
        assert "\n" not in str(info.value)
        assert red.model == before, message


def test_a_group_named_as_remote_by_other_groups_cannot_go(red):
    red.create_sg("red", "db")
    red.create_sg("red", "app")
    red.create_sg("red", "ops")
    red.add_rule("red", "db", "ingress", "tcp", 5432, remote_sg="app")
    red.add_rule("red", "ops", "ingress", "tcp", 22, remote_sg="app")
    red.add_rule("red", "app", "ingress", "tcp", 80, remote_sg="app")     # itself: no obstacle
    with pytest.raises(Conflict, match="red/app is the remote group of rules of red/db, red/ops"):
        red.delete_sg("red", "app")
    red.delete_sg("red", "ops")
    red.delete_sg("red", "db")
    gone = red.delete_sg("red", "app")
    assert gone["deleted"] and set(groups(red)) == {"red/default"}
    assert all(r.remote_sg in (None, "default") for g in groups(red).values() for r in g.rules)


def test_update_port_replaces_groups_and_switches_port_security(red):
    red.create_sg("red", "web")
    red.create_sg("red", "db")
    a = red.create_port("red", "net", "a", security_groups=["red/web", "db", "web"])
    assert port(red, "red/net/a").security_groups == ("db", "web")
    assert a["security_groups"] == ["db", "web"]
    out = red.update_port("red", "net", "a", security_groups=["web"])
    assert out["security_groups"] == ["web"] and port(red, "red/net/a").security_groups == ("web",)
    red.update_port("red", "net", "a", security_groups=[])
    assert port(red, "red/net/a").security_groups == () and port(red, "red/net/a").port_security
    red.update_port("red", "net", "a", port_security=False)
    assert not port(red, "red/net/a").port_security
    # on again with no group given: the default group, as for a new port
    red.update_port("red", "net", "a", port_security=True)
    p = port(red, "red/net/a")
    assert p.port_security and p.security_groups == ("default",)
    red.update_port("red", "net", "a", security_groups=[], port_security=False)
    red.update_port("red", "net", "a", security_groups=["db"], port_security=True)
    assert port(red, "red/net/a").security_groups == ("db",)
    before = red.model
    red.update_port("red", "net", "a", security_groups=["red/db"])     # no change, no harm
    assert red.model == before
    with pytest.raises(Conflict, match="used by port"):
        red.delete_sg("red", "db")


def test_tenant_deletion_takes_its_groups_and_rules(red):
    red.create_tenant("empty")
    red.delete_tenant("empty")                       # only its default group: no cascade needed
    assert set(groups(red)) == {"red/default"}
    red.create_sg("red", "web")
    red.add_rule("red", "web", "ingress", "tcp", 22)
    red.create_port("red", "net", "a", security_groups=["web"])
    with pytest.raises(Conflict, match="still has 1 network"):
        red.delete_tenant("red")
    red.delete_tenant("red", cascade=True)
    assert not red.model.security_groups and not red.model.tenants
    raw = [r for r in red.idl.tables["SG_Rule"].rows.values()]
    assert raw == []
    red.create_tenant("red")                         # the same name again: a fresh default group
    assert [len(g.rules) for g in groups(red).values()] == [4]     # IPv4 and IPv6


def test_a_database_from_before_security_groups_is_upgraded(tmp_path):
    """An 1.1 database (no group tables): converted, and its tenants and ports get `default`."""
    with open(SCHEMA) as f:
        old = json.load(f)
    old["version"] = "1.1.0"
    del old["tables"]["Security_Group"], old["tables"]["SG_Rule"]
    directory = tmp_path / "nb"
    directory.mkdir()
    (tmp_path / "old.ovsschema").write_text(json.dumps(old))
    db = str(directory / "weft_nb.db")
    subprocess.run(["ovsdb-tool", "create", db, str(tmp_path / "old.ovsschema")], check=True)
    ops = ["Weft_Northbound",
           {"op": "insert", "table": "Tenant", "row": {"name": "red"}},
           {"op": "insert", "table": "Port", "row": {
               "tenant": "red", "network": "net", "name": "on", "mac": "02:00:00:00:00:01",
               "port_security": True}},
           {"op": "insert", "table": "Port", "row": {
               "tenant": "red", "network": "net", "name": "off", "mac": "02:00:00:00:00:02",
               "port_security": False}}]
    subprocess.run(["ovsdb-tool", "transact", db, json.dumps(ops)], check=True, capture_output=True)
    s = NorthboundStore(ensure_local_server(str(directory)))
    try:
        s.start()
        assert set(groups(s)) == {"red/default"} and len(groups(s)["red/default"].rules) == 4
        assert port(s, "red/net/on").security_groups == ("default",)
        assert port(s, "red/net/off").security_groups == ()
        s.update_port("red", "net", "on", security_groups=[])
        before = s.model
        s._upgrade()                                 # an upgraded database is left alone
        assert s.model == before
    finally:
        s.stop()
        _kill(directory)


class _Engine:
    def __init__(self, store):
        self.store = store

    def effective_model(self):
        return self.store.model


def test_the_api_over_the_store(red):
    api = Api(red, _Engine(red))
    call = lambda method, path, body=None, **q: api.dispatch(method, path, {k: [v] for k, v in q.items()},
                                                             body or {})
    made = call("POST", "/v1/security-groups", {"tenant": "red", "name": "web"})
    assert made["ref"] == "red/web"
    rule = call("POST", "/v1/security-groups/red/web/rules",
                {"direction": "ingress", "proto": "tcp", "port_min": 22, "remote_sg": "red/default"})
    assert rule["key"] > 0 and rule["remote_sg"] == "default" and rule["port_max"] == 22
    call("POST", "/v1/ports", {"tenant": "red", "network": "net", "name": "a",
                               "security_groups": ["red/web"]})
    view = call("GET", "/v1/security-groups/red/web")
    assert set(view) == {"id", "tenant", "name", "ref", "rules", "ports"}
    assert view["ports"] == ["red/net/a"] and view["id"] == made["id"]
    assert set(view["rules"][0]) == {"id", "key", "direction", "proto", "port_min", "port_max",
                                     "icmp_type", "remote_cidr", "remote_sg", "ethertype"}
    assert rule["id"] in [r["id"] for r in view["rules"]]
    assert [g["ref"] for g in call("GET", "/v1/security-groups", tenant="red")] == ["red/default", "red/web"]
    with pytest.raises(WeftError, match="cannot use security group blue/x"):
        call("POST", "/v1/security-groups/red/web/rules", {"direction": "ingress", "remote_sg": "blue/x"})
    with pytest.raises(WeftError, match="unknown field\\(s\\): port"):
        call("POST", "/v1/security-groups/red/web/rules", {"direction": "ingress", "port": 22})
    with pytest.raises(WeftError, match="cannot use security group blue/web"):
        call("POST", "/v1/ports", {"tenant": "red", "network": "net", "name": "b",
                                   "security_groups": ["blue/web"]})
    patched = call("PATCH", "/v1/ports/red/net/a", {"security_groups": [], "port_security": False})
    assert patched["security_groups"] == [] and patched["port_security"] is False
    again = call("POST", "/v1/ports/red/net/a/update", {"security_groups": ["web"], "port_security": True})
    assert again["security_groups"] == ["web"]
    with pytest.raises(WeftError, match="nothing to update"):
        call("PATCH", "/v1/ports/red/net/a", {})
    owners = api._owner_names(red.model)
    sg = red.model.security_groups[made["id"]]
    assert owners[cookies.object_id(sg.uuid)] == "sg red/web"
    assert owners[cookies.object_id(rule["id"])] == f"rule {rule['id']} of red/web"
    call("PATCH", "/v1/ports/red/net/a", {"security_groups": ["default"]})
    assert call("DELETE", f"/v1/security-groups/red/web/rules/{rule['id']}")["deleted"]
    assert call("DELETE", "/v1/security-groups/red/web")["deleted"]
    with pytest.raises(NotFound, match="no security group red/web"):
        call("GET", "/v1/security-groups/red/web")
