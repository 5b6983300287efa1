"""Tenant tokens and north-south: external networks and floating IPs are the operator's."""
import pytest

from controller.access import ADMIN, Forbidden, Principal, authorize

RED = Principal("t1", "red")


def test_a_tenant_token_cannot_make_an_external_network_but_an_admin_can():
    body = {"tenant": "red", "name": "ext", "cidr": "203.0.113.0/24", "external": True}
    with pytest.raises(Forbidden, match="external networks"):
        authorize(RED, "POST", "/v1/networks", {}, body)
    assert authorize(ADMIN, "POST", "/v1/networks", {}, body) == {}
    assert authorize(RED, "POST", "/v1/networks", {}, {**body, "external": False}) == {}


def test_floating_ips_need_an_admin_and_a_tenant_sets_only_its_own_routers_gateway():
    for method, path in (("GET", "/v1/floating-ips"), ("POST", "/v1/floating-ips"),
                         ("POST", "/v1/floating-ips/203.0.113.5/associate")):
        with pytest.raises(Forbidden):
            authorize(RED, method, path, {}, {"tenant": "red"})
    assert authorize(RED, "POST", "/v1/routers/red/r/gateway", {}, {"network": "admin/ext"}) == {}
    with pytest.raises(Forbidden):
        authorize(RED, "POST", "/v1/routers/blue/r/gateway", {}, {"network": "admin/ext"})
