"""Tenant tokens and the decision endpoints: sg suggestions for their own tenant only, placement for admins."""
import pytest

from controller.access import ADMIN, Forbidden, Principal, authorize

RED = Principal("red-ci", "red")


def test_a_tenant_token_asks_for_its_own_suggestion_only():
    q = authorize(RED, "GET", "/v1/suggestions/security-groups", {}, {})
    assert q == {"tenant": ["red"]}
    with pytest.raises(Forbidden, match="cannot read tenant 'blue'"):
        authorize(RED, "GET", "/v1/suggestions/security-groups", {"tenant": ["blue"]}, {})
    authorize(RED, "POST", "/v1/suggestions/security-groups/apply", {}, {"tenant": "red", "prefix": "p"})
    with pytest.raises(Forbidden, match="cannot create in tenant 'blue'"):
        authorize(RED, "POST", "/v1/suggestions/security-groups/apply", {}, {"tenant": "blue", "prefix": "p"})


def test_placement_needs_an_admin():
    for method, path in (("GET", "/v1/suggestions/placement"), ("POST", "/v1/suggestions/placement/apply")):
        with pytest.raises(Forbidden, match="needs an admin token"):
            authorize(RED, method, path, {}, {"max_moves": 1})
        assert authorize(ADMIN, method, path, {}, {}) == {}
