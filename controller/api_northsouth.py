"""The API's north-south routes: router gateways and floating IPs (registered by controller/api.py)."""
from __future__ import annotations

from topology.errors import NotFound, WeftError

SEG = r"([A-Za-z0-9_.-]+)"


def routes(api) -> list:
    ns = NorthSouthApi(api)
    return [
        ("POST", rf"/v1/routers/{SEG}/{SEG}/gateway", ns.set_gateway),
        ("DELETE", rf"/v1/routers/{SEG}/{SEG}/gateway", ns.unset_gateway),
        ("GET", r"/v1/floating-ips", ns.list_fips),
        ("POST", r"/v1/floating-ips", ns.create_fip),
        ("GET", rf"/v1/floating-ips/{SEG}", ns.show_fip),
        ("DELETE", rf"/v1/floating-ips/{SEG}", ns.delete_fip),
        ("POST", rf"/v1/floating-ips/{SEG}/associate", ns.associate),
        ("POST", rf"/v1/floating-ips/{SEG}/disassociate", ns.disassociate),
    ]


def gateway_view(router) -> dict | None:
    """A router's gateway as the API shows it (None: it has none)."""
    if not router.gw_network:
        return None
    return {"network": router.gw_network, "ip": router.gw_ip, "mac": router.gw_mac,
            "host": router.gw_host}


class NorthSouthApi:
    def __init__(self, api):
        self.api = api

    @property
    def store(self):
        return self.api.store

    @staticmethod
    def _only(body: dict, allowed: set, what: str) -> None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise WeftError(f"unknown field(s) {', '.join(unknown)} ({what} takes "
                            f"{', '.join(sorted(allowed))})")

    def set_gateway(self, tenant, name, query, body):
        self._only(body, {"network", "ip", "host"}, "a router gateway")
        if not body.get("network"):
            raise WeftError("missing field: network (the external network, TENANT/NET)")
        return self.store.set_gateway(tenant, name, body["network"], ip=body.get("ip"),
                                      host=body.get("host"))

    def unset_gateway(self, tenant, name, query, body):
        return self.store.unset_gateway(tenant, name)

    def _view(self, fip, model):
        port = model.ports.get(fip.port) if fip.port else None
        binding = self.api._bindings().get(fip.port) if fip.port else None
        return {**self.store.fip_view(fip, port), "host": binding.host if binding else None}

    def list_fips(self, query, body):
        tenant = query.get("tenant", [None])[0]
        model = self.api.model
        if tenant and tenant not in model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        fips = [f for f in model.floating_ips.values() if not tenant or f.tenant == tenant]
        return [self._view(f, model) for f in sorted(fips, key=lambda f: tuple(map(int, f.ip.split("."))))]

    def _find(self, ident):
        model = self.api.model
        for fip in model.floating_ips.values():
            if ident in (fip.ip, fip.uuid):
                return fip, model
        raise NotFound(f"no floating IP {ident}")

    def show_fip(self, ident, query, body):
        return self._view(*self._find(ident))

    def create_fip(self, query, body):
        self._only(body, {"tenant", "network", "ip"}, "a floating IP")
        for key in ("tenant", "network"):
            if not body.get(key):
                raise WeftError(f"missing field: {key}")
        return self.store.create_fip(body["tenant"], body["network"], ip=body.get("ip"))

    def delete_fip(self, ident, query, body):
        return self.store.delete_fip(ident)

    def associate(self, ident, query, body):
        self._only(body, {"port"}, "an association")
        if not body.get("port"):
            raise WeftError("missing field: port (TENANT/NET/PORT)")
        return self.store.associate_fip(ident, body["port"])

    def disassociate(self, ident, query, body):
        return self.store.disassociate_fip(ident)
