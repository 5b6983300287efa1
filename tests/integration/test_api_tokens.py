"""Per-tenant API tokens on the real store and HTTP server: a tenant token sees and changes only its
tenant (403 otherwise, nothing changed), unknown or deleted tokens are 401, admins keep everything."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.client import Client
from tests.labtools import API_TOKEN
from topology.errors import WeftError

pytestmark = pytest.mark.integration
WEFT = str(Path(sys.executable).parent / "weft")


def tcp_client(served, token: str, monkeypatch) -> Client:
    monkeypatch.setenv("WEFT_TOKEN", token)
    return Client(f"http://127.0.0.1:{served['tcp'][1]}")


def status_of(call) -> int:
    try:
        call()
    except WeftError as exc:
        return exc.status
    return 200


@pytest.fixture
def two_tenants(served):
    admin = Client("unix:" + served["unix"])
    for tenant in ("red", "blue"):
        admin.post("/v1/tenants", {"name": tenant})
        admin.post("/v1/networks", {"tenant": tenant, "name": "net", "cidr": "10.0.0.0/24"})
        admin.post("/v1/ports", {"tenant": tenant, "network": "net", "name": "web"})
    red = admin.post("/v1/tokens", {"name": "red-ci", "tenant": "red"})
    return admin, red["token"]


def test_a_tenant_token_sees_only_its_tenant(served, two_tenants, monkeypatch):
    admin, secret = two_tenants
    red = tcp_client(served, secret, monkeypatch)
    assert [t["name"] for t in red.get("/v1/tenants")] == ["red"]
    assert [n["ref"] for n in red.get("/v1/networks")] == ["red/net"]
    assert [p["ref"] for p in red.get("/v1/ports")] == ["red/net/web"]
    assert {g["ref"] for g in red.get("/v1/security-groups")} == {"red/default"}
    assert red.get("/v1/ports/red/net/web")["ref"] == "red/net/web"
    for path in ("/v1/networks/blue/net", "/v1/ports/blue/net/web", "/v1/security-groups/blue/default"):
        assert status_of(lambda: red.get(path)) == 403, path
    for path, query in (("/v1/networks", {"tenant": "blue"}), ("/v1/ports", {"tenant": "blue"}),
                        ("/v1/traffic/matrix", {"tenant": "blue"})):
        assert status_of(lambda: red.get(path, **query)) == 403, path
    for path in ("/v1/hosts", "/v1/status", "/v1/cluster", "/v1/tokens", "/metrics", "/v1/traffic/config"):
        assert status_of(lambda: red.get(path)) == 403, path


def test_a_tenant_token_changes_only_its_tenant_and_a_refusal_changes_nothing(served, two_tenants,
                                                                              monkeypatch):
    admin, secret = two_tenants
    red = tcp_client(served, secret, monkeypatch)
    before = [Client("unix:" + served["unix"]).get(p) for p in ("/v1/tenants", "/v1/networks", "/v1/ports")]
    refused = [
        lambda: red.post("/v1/networks", {"tenant": "blue", "name": "evil", "cidr": "10.9.0.0/24"}),
        lambda: red.post("/v1/ports", {"tenant": "blue", "network": "net", "name": "evil"}),
        lambda: red.delete("/v1/ports/blue/net/web"),
        lambda: red.post("/v1/tenants", {"name": "green"}),
        lambda: red.delete("/v1/tenants/red", cascade=1),
        lambda: red.post("/v1/tokens", {"name": "more", "tenant": "red"}),
        lambda: red.post("/v1/hosts", {"name": "hvx", "tunnel_ip": "192.0.2.1",
                                       "ovsdb": "ssl:192.0.2.1:6640"}),
        lambda: red.post("/v1/ports/red/net/web/migrate", {"to": "hv1"}),
    ]
    for call in refused:
        assert status_of(call) == 403
    # a group of another tenant cannot be borrowed: refused by validation (400), nothing changed
    assert status_of(lambda: red.post("/v1/ports/red/net/web/update",
                                      {"security_groups": ["blue/default"]})) == 400
    assert [admin.get(p) for p in ("/v1/tenants", "/v1/networks", "/v1/ports")] == before
    # its own tenant: create, change, delete
    red.post("/v1/networks", {"tenant": "red", "name": "db", "cidr": "10.1.0.0/24"})
    red.post("/v1/ports", {"tenant": "red", "network": "db", "name": "pg"})
    red.post("/v1/security-groups", {"tenant": "red", "name": "pg"})
    red.post("/v1/ports/red/db/pg/update", {"security_groups": ["pg"]})
    assert admin.get("/v1/ports/red/db/pg")["security_groups"] == ["pg"]
    red.delete("/v1/ports/red/db/pg")
    assert status_of(lambda: admin.get("/v1/ports/red/db/pg")) == 404


def test_unknown_deleted_and_orphaned_tokens_are_refused(served, two_tenants, monkeypatch):
    admin, secret = two_tenants
    assert status_of(lambda: tcp_client(served, "x" * 43, monkeypatch).get("/v1/tenants")) == 401
    assert status_of(lambda: tcp_client(served, API_TOKEN, monkeypatch).get("/v1/hosts")) == 200
    # bad input: one line, nothing changed
    for body, status in (({"name": "red-ci", "tenant": "red"}, 409), ({"name": "x", "tenant": "green"}, 404),
                         ({"name": "bad name", "tenant": "red"}, 400), ({"name": "t"}, 400)):
        assert status_of(lambda: admin.post("/v1/tokens", body)) == status, body
    assert admin.get("/v1/tokens") == [{"name": "red-ci", "tenant": "red"}]
    admin.delete("/v1/tokens/red-ci")
    assert status_of(lambda: tcp_client(served, secret, monkeypatch).get("/v1/tenants")) == 401
    # a tenant's tokens go with it: the same name created again inherits none
    again = admin.post("/v1/tokens", {"name": "red-2", "tenant": "red"})["token"]
    admin.delete("/v1/tenants/red", cascade=1)
    assert admin.get("/v1/tokens") == []
    admin.post("/v1/tenants", {"name": "red"})
    assert status_of(lambda: tcp_client(served, again, monkeypatch).get("/v1/tenants")) == 401


def test_token_cli(served, two_tenants):
    env = {**os.environ, "WEFT_API": "unix:" + served["unix"]}
    out = subprocess.run([WEFT, "token", "create", "--tenant", "blue"], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith("token blue-") and len(out[1]) >= 40
    listed = subprocess.run([WEFT, "token", "list"], env=env, capture_output=True, text=True,
                            check=True).stdout
    assert "blue-" in listed and "red-ci" in listed and out[1] not in listed
    bad = subprocess.run([WEFT, "token", "create", "--tenant", "green"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "no tenant named 'green'" in bad.stderr
