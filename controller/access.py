"""Who may call what: admins everything; a tenant token only its own tenant's objects and traffic.

The unix socket (its file mode and group guard it) and the TCP API's admin token
(`--api-token-file`) are admins. A tenant token (`weft token create --tenant red`) may:
- list tenants, networks, ports, routers, security groups, traffic matrix/flows/top: the
  query is narrowed to its tenant (asking for another tenant is 403), and so is
  `GET /v1/suggestions/security-groups`;
- create networks, ports, routers and security groups in its tenant (the body's tenant), and
  ask for and apply least-privilege group suggestions for it (placement stays an admin's);
- read, change and delete objects under /v1/{networks,ports,routers,security-groups}/ITS_TENANT/,
  except a port's QoS (`qos` in a port's create or update body): its limits are the operator's.
Everything else (hosts, flows, status, cluster, metrics, traffic config, tokens, creating or
deleting tenants, migrating ports, and any route added later) needs an admin: new routes are
closed to tenants until listed here.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from topology.errors import WeftError

OBJECTS = r"(?:networks|ports|routers|security-groups)"
TENANT_LISTS = re.compile(rf"/v1/(?:tenants|{OBJECTS}|traffic/(?:matrix|flows|top)|suggestions/security-groups)")
TENANT_CREATES = re.compile(rf"/v1/(?:{OBJECTS}|suggestions/security-groups/apply)")
TENANT_OBJECT = re.compile(rf"/v1/{OBJECTS}/([^/]+)(?:/.*)?")
READABLE_BY_ALL = frozenset({"/openapi.yaml"})
ADMIN_ONLY_SUFFIXES = ("/migrate",)      # moving a VM between hypervisors is the operator's


class Principal(NamedTuple):
    name: str
    tenant: str | None        # None: admin

    @property
    def admin(self) -> bool:
        return self.tenant is None


ADMIN = Principal("admin", None)


class Forbidden(WeftError):
    def __init__(self, message: str):
        super().__init__(message, status=403)


def authorize(who: Principal, method: str, path: str, query: dict, body: dict) -> dict:
    """The query to run the request with (narrowed to the tenant for tenant tokens), or
    Forbidden (403) naming what the token may not do."""
    if who.admin or (method == "GET" and path in READABLE_BY_ALL):
        return query
    tenant = who.tenant
    if method == "GET" and TENANT_LISTS.fullmatch(path):
        asked = query.get("tenant", [None])[0]
        if asked not in (None, "", tenant):
            raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: it cannot read tenant {asked!r}")
        return {**query, "tenant": [tenant]}
    if _sets_qos(method, path, body):
        raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: a port's QoS (rate limits, "
                        f"DSCP) is set by an admin")
    if method == "POST" and TENANT_CREATES.fullmatch(path):
        if body.get("external"):
            raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: external networks "
                            f"(the hosts' provider bridges) need an admin token")
        asked = body.get("tenant")
        if asked is not None and asked != tenant:
            raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: it cannot create in "
                            f"tenant {asked!r}")
        return query
    found = TENANT_OBJECT.fullmatch(path)
    if found and not path.endswith(ADMIN_ONLY_SUFFIXES):
        if found.group(1) != tenant:
            raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: {path} belongs to "
                            f"tenant {found.group(1)!r}")
        return query
    raise Forbidden(f"token {who.name!r} is for tenant {tenant!r}: {method} {path} needs an admin token")


def _sets_qos(method: str, path: str, body) -> bool:
    """A port create with a qos, or a port update naming qos at all (null removes the limits)."""
    if not isinstance(body, dict) or method not in ("POST", "PATCH") or not path.startswith("/v1/ports"):
        return False
    if path == "/v1/ports":
        return body.get("qos") is not None
    return "qos" in body
