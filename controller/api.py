"""weftd's northbound API operations (see controller/openapi.yaml); served over HTTP by controller/apihttp.py."""
from __future__ import annotations

import json
import logging
import os
import re
import time

from controller import ofmsg
from flows import cookies
from topology.addresses import router_ip6
from topology.errors import NotFound, WeftError

LOG = logging.getLogger(__name__)
OPENAPI = os.path.join(os.path.dirname(__file__), "openapi.yaml")
SEG = r"([A-Za-z0-9_.-]+)"
from controller.api_northsouth import gateway_view as _gateway_view  # noqa: E402


class EncodedView(dict):
    """A read-only view that keeps its own JSON: a list of 10,000 cached views is answered by
    joining their bytes instead of encoding every field again (json.dumps was most of it)."""
    __slots__ = ("encoded",)

    def __init__(self, data: dict):
        super().__init__(data)
        self.encoded = json.dumps(data).encode()


LIST_OPEN, LIST_SEP, LIST_CLOSE = b"[\n  ", b",\n  ", b"\n]"


def encode_result(result) -> bytes:
    """The JSON body of an answer; lists of EncodedViews are joined, not re-encoded, one object
    a line: the layout `weft ... -o json` prints (controller/output.py), so the CLI passes such
    a body through as it is (`Client.get_listing`) instead of decoding and encoding it again."""
    if isinstance(result, list) and result and all(type(v) is EncodedView for v in result):
        return LIST_OPEN + LIST_SEP.join(v.encoded for v in result) + LIST_CLOSE
    return json.dumps(result).encode()


class Api:
    """The operations behind the routes; independent of HTTP so it can be tested directly."""

    def __init__(self, store, engine, flow_dumper=None, traffic=None):
        self.store, self.engine, self.flow_dumper, self.traffic = store, engine, flow_dumper, traffic
        self.dhcp_counters = None       # callable giving the DHCP service's counters, once it runs
        self.host_config = None         # callable giving the southbound state per host
        self.cluster = None             # callable(only_self) giving the replicas and NB members
        self.drops = None               # collectors.drops.DropLog: samples of dropped packets
        self.drop_history = None        # collectors.drop_history.DropHistory: the same on disk
        self.drop_counters = None       # the drop service's packet-in counters
        self.routes = [
            ("GET", r"/v1/tenants", self.list_tenants),
            ("POST", r"/v1/tenants", self.create_tenant),
            ("DELETE", rf"/v1/tenants/{SEG}", self.delete_tenant),
            ("GET", r"/v1/networks", self.list_networks),
            ("POST", r"/v1/networks", self.create_network),
            ("GET", rf"/v1/networks/{SEG}/{SEG}", self.show_network),
            ("DELETE", rf"/v1/networks/{SEG}/{SEG}", self.delete_network),
            ("GET", r"/v1/ports", self.list_ports),
            ("POST", r"/v1/ports", self.create_port),
            ("GET", rf"/v1/ports/{SEG}/{SEG}/{SEG}", self.show_port),
            ("DELETE", rf"/v1/ports/{SEG}/{SEG}/{SEG}", self.delete_port),
            ("PATCH", rf"/v1/ports/{SEG}/{SEG}/{SEG}", self.update_port),
            ("POST", rf"/v1/ports/{SEG}/{SEG}/{SEG}/update", self.update_port),
            ("POST", rf"/v1/ports/{SEG}/{SEG}/{SEG}/migrate", self.migrate_port),
            ("GET", r"/v1/security-groups", self.list_sgs),
            ("POST", r"/v1/security-groups", self.create_sg),
            ("GET", rf"/v1/security-groups/{SEG}/{SEG}", self.show_sg),
            ("DELETE", rf"/v1/security-groups/{SEG}/{SEG}", self.delete_sg),
            ("POST", rf"/v1/security-groups/{SEG}/{SEG}/rules", self.add_rule),
            ("DELETE", rf"/v1/security-groups/{SEG}/{SEG}/rules/{SEG}", self.delete_rule),
            ("POST", rf"/v1/security-groups/{SEG}/{SEG}/what-if", self.sg_what_if),
            ("GET", r"/v1/routers", self.list_routers),
            ("POST", r"/v1/routers", self.create_router),
            ("GET", rf"/v1/routers/{SEG}/{SEG}", self.show_router),
            ("DELETE", rf"/v1/routers/{SEG}/{SEG}", self.delete_router),
            ("POST", rf"/v1/routers/{SEG}/{SEG}/attach", self.attach),
            ("POST", rf"/v1/routers/{SEG}/{SEG}/detach", self.detach),
            ("POST", rf"/v1/routers/{SEG}/{SEG}/routes", self.add_route),
            ("DELETE", rf"/v1/routers/{SEG}/{SEG}/routes", self.delete_route),
            ("GET", r"/v1/hosts", self.list_hosts),
            ("POST", r"/v1/hosts", self.add_host),
            ("DELETE", rf"/v1/hosts/{SEG}", self.delete_host),
            ("PATCH", rf"/v1/hosts/{SEG}", self.update_host),
            ("GET", rf"/v1/hosts/{SEG}/flows", self.host_flows),
            ("GET", r"/v1/status", self.status),
            ("GET", r"/v1/cluster", self.cluster_status),
            ("GET", r"/v1/traffic/config", self.traffic_config),
            ("POST", r"/v1/traffic/config", self.set_traffic_config),
            ("GET", r"/v1/traffic/matrix", self.traffic_matrix),
            ("GET", r"/v1/traffic/flows", self.traffic_flows),
            ("GET", r"/v1/traffic/top", self.traffic_top),
            ("GET", r"/v1/traffic/status", self.traffic_status),
            ("GET", r"/v1/tokens", self.list_tokens),
            ("POST", r"/v1/tokens", self.create_token),
            ("DELETE", rf"/v1/tokens/{SEG}", self.delete_token),
            ("GET", r"/v1/trace", self.trace_packet),
            ("GET", r"/v1/traffic/drops", self.traffic_drops),
            ("GET", r"/v1/traffic/drops/status", self.traffic_drops_status),
        ]
        from controller.decisions import Decisions       # sg suggest, placement (issue 17)
        self.routes += Decisions(self).routes()
        from controller import api_northsouth
        self.routes += api_northsouth.routes(self)

    def dispatch(self, method: str, path: str, query: dict, body: dict):
        for m, pattern, handler in self.routes:
            if m != method:
                continue
            found = re.fullmatch(pattern, path)
            if found:
                return handler(*found.groups(), query=query, body=body)
        if any(re.fullmatch(p, path) for _m, p, _h in self.routes):
            raise WeftError(f"method {method} not allowed on {path}", 405)
        raise NotFound(f"no such API path: {path}")

    # -- helpers
    @property
    def model(self):
        """Northbound objects come from the store's latest committed snapshot: a write is
        visible to the next read even while the (asynchronous) engine lags behind it."""
        return self.store.model

    def _bindings(self) -> dict:
        """{port uuid: Binding} as the engine sees them now (read-only)."""
        get = getattr(self.engine, "bindings", None)
        return get() if get is not None else self.engine.effective_model().bindings

    def _port_views(self, ports, model=None, by_ref: bool = False) -> list[dict]:
        """Views of `ports` (sorted by ref if asked) in O(len(ports)). A view is kept per port
        between requests and rebuilt only when its port, network, binding or port-up latency
        changed, so a list of 10,000 ports costs a few lookups each; views are shared: read-only."""
        model = model or self.model
        bindings = self._bindings()
        latency = getattr(self.engine, "port_up_latency_ms", None)
        network = model.network_of
        cache = self.__dict__.setdefault("_views", {})    # port uuid -> (port, net, binding, up, view)
        views = []
        for p in ports:
            net, binding = network(p), bindings.get(p.uuid)
            up = latency(p.uuid) if latency is not None else None
            hit = cache.get(p.uuid)
            if hit is None or hit[0] is not p or hit[1] is not net or hit[2] is not binding or hit[3] != up:
                hit = cache[p.uuid] = (p, net, binding, up, EncodedView(self._port_view(p, net, binding, up)))
            views.append(hit[4])
        if len(cache) > 2 * len(model.ports) + 1000:      # deleted ports: forget their views
            self._views = {u: e for u, e in cache.items() if u in model.ports}
        if by_ref:
            views.sort(key=lambda v: v["ref"])
        return views

    @staticmethod
    def _port_view(port, net, binding, up_latency_ms=None) -> dict:
        return {"id": port.uuid, "tenant": port.tenant, "network": port.network, "name": port.name,
                "ref": port.ref, "mac": port.mac, "ip": port.ipv4s[0] if port.ipv4s else None,
                "ips": list(port.ips), "prefixlen": int(net.cidr.split("/")[1]) if net else None,
                "ip6": port.ipv6s[0] if port.ipv6s else None,
                "prefixlen6": int(net.cidr6.split("/")[1]) if net and net.cidr6 else None,
                "link_local": port.link_local,
                "gateway": net.gateway if net else None, "port_security": port.port_security,
                "security_groups": list(port.security_groups),
                "qos": port.qos.view() if port.qos else None,
                "host": binding.host if binding else None, "ofport": binding.ofport if binding else None,
                "up_latency_ms": up_latency_ms}

    @staticmethod
    def _net_view(net, ports: int) -> dict:
        return {"id": net.uuid, "tenant": net.tenant, "name": net.name, "ref": net.ref,
                "cidr": net.cidr, "cidr6": net.cidr6, "cidrs": list(net.cidrs), "gateway": net.gateway, "vni": net.vni, "dhcp": net.dhcp,
                "dns": list(net.dns), "router": f"{net.tenant}/{net.router}" if net.router else None,
                "ports": ports, "external": net.external, "provider": net.provider,
                "gateway_mac": net.gateway_mac}

    @staticmethod
    def _ips(body: dict):
        """A new port's addresses: "ips" (a list) or "ip" (one address), or None."""
        if body.get("ips") is not None and body.get("ip"):
            raise WeftError("give either ips (a list) or ip, not both")
        if body.get("ips") is not None:
            return body["ips"]
        return body.get("ip") or None

    @staticmethod
    def _required(body: dict, *keys: str) -> None:
        missing = [k for k in keys if not body.get(k)]
        if missing:
            raise WeftError(f"missing field(s): {', '.join(missing)}")

    @staticmethod
    def _flag(query: dict, name: str) -> bool:
        return query.get(name, ["0"])[0].lower() in ("1", "true", "yes")

    # -- tenants
    def list_tenants(self, query, body):
        model = self.model
        only = query.get("tenant", [None])[0]
        return [{"id": t.uuid, "name": t.name, "networks": model.network_count(t.name),
                 "ports": model.port_count(t.name)}
                for t in sorted(model.tenants.values(), key=lambda t: t.name)
                if only is None or t.name == only]

    def create_tenant(self, query, body):
        self._required(body, "name")
        return self.store.create_tenant(body["name"])

    def delete_tenant(self, name, query, body):
        return self.store.delete_tenant(name, cascade=self._flag(query, "cascade"))

    # -- networks
    def list_networks(self, query, body):
        tenant = query.get("tenant", [None])[0]
        model = self.model
        if tenant and tenant not in model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        nets = model.networks_of_tenant(tenant).values() if tenant else model.networks.values()
        return [self._net_view(n, model.port_count(n.tenant, n.name))
                for n in sorted(nets, key=lambda n: (n.tenant, n.name))]

    def create_network(self, query, body):
        self._required(body, "tenant", "name")
        cidrs = body.get("cidrs")
        if cidrs is None:
            self._required(body, "cidr")
            cidrs = [body["cidr"]] + ([body["cidr6"]] if body.get("cidr6") else [])
        elif body.get("cidr") or body.get("cidr6"):
            raise WeftError("give either cidrs (a list) or cidr/cidr6, not both")
        return self.store.create_network(body["tenant"], body["name"], cidrs,
                                         gateway=body.get("gateway"), dhcp=body.get("dhcp", True),
                                         dns=body.get("dns") or (), external=body.get("external", False),
                                         provider=body.get("provider"))

    def show_network(self, tenant, name, query, body):
        model = self.model
        net = model.network(tenant, name)
        if net is None:
            raise NotFound(f"no network {tenant}/{name}")
        ports = self._port_views(sorted(model.ports_of_network(tenant, name).values(),
                                        key=lambda p: p.name), model)
        view = self._net_view(net, len(ports))
        view["port_list"] = ports
        return view

    def delete_network(self, tenant, name, query, body):
        return self.store.delete_network(tenant, name, cascade=self._flag(query, "cascade"))

    # -- ports
    def list_ports(self, query, body):
        tenant = query.get("tenant", [None])[0]
        network = query.get("network", [None])[0]
        model = self.model
        if tenant and tenant not in model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        if network and model.network(tenant, network) is None:
            raise NotFound(f"no network {tenant}/{network}")
        if network:
            ports = model.ports_of_network(tenant, network).values()
        elif tenant:
            ports = [p for n in model.networks_of_tenant(tenant)
                     for p in model.ports_of_network(tenant, n).values()]
        else:
            ports = model.ports.values()
        return self._port_views(ports, model, by_ref=True)

    def create_port(self, query, body):
        self._required(body, "tenant", "network", "name")
        ps = body.get("port_security")
        created = self.store.create_port(body["tenant"], body["network"], body["name"],
                                         ip=self._ips(body), mac=body.get("mac"),
                                         port_security=True if ps is None else ps,
                                         security_groups=body.get("security_groups") or (),
                                         qos=body.get("qos"))
        created["ref"] = f"{body['tenant']}/{body['network']}/{body['name']}"
        return created

    def update_port(self, tenant, network, name, query, body):
        """PATCH (or POST …/update) {security_groups: [SG or TENANT/SG…] | [], port_security: bool,
        qos: {egress_rate, egress_burst, ingress_rate, ingress_burst, pps, dscp} | null}."""
        from topology.qos import KEEP
        unknown = sorted(set(body) - {"security_groups", "port_security", "qos"})
        if unknown:
            raise WeftError(f"unknown field(s): {', '.join(unknown)} (a port update takes "
                            f"security_groups, port_security and qos)")
        if not body:
            raise WeftError("nothing to update: give security_groups, port_security and/or qos")
        self.store.update_port(tenant, network, name, security_groups=body.get("security_groups"),
                               port_security=body.get("port_security"),
                               qos=body["qos"] if "qos" in body else KEEP)
        return self.show_port(tenant, network, name, query, {})

    def show_port(self, tenant, network, name, query, body):
        model = self.model
        port = model.port_by_ref(tenant, network, name)
        if port is None:
            raise NotFound(f"no port {tenant}/{network}/{name}")
        view = dict(self._port_views([port], model)[0])      # the caller may add to it
        timeline = getattr(self.engine, "port_up_timeline", None)
        if timeline is not None:        # its last port-up, step by step (controller/engine.py PortUp)
            view["up_timeline"] = timeline(port.uuid)
        migration = getattr(self.engine, "migration_view", None)
        if migration is not None:
            view["migration"] = m = migration(port.uuid)
            view["last_migration_blackout_ms"] = None if m is None else m["blackout_ms"]
        return view

    def migrate_port(self, tenant, network, name, query, body):
        """POST {to: HOST}: bind the port to HOST too, as a live migration's destination; traffic
        moves there when the VM announces itself on it (flows/migration.py)."""
        unknown = sorted(set(body) - {"to"})
        if unknown:
            raise WeftError(f"unknown field(s): {', '.join(unknown)} (a migration takes `to`)")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise WeftError("missing `to`: the host the port migrates to (e.g. --to hv3)")
        port = self.model.port_by_ref(tenant, network, name)
        if port is None:
            raise NotFound(f"no port {tenant}/{network}/{name}")
        return {"ref": port.ref, "id": port.uuid, "migration": self.engine.migrate(port.uuid, to)}

    def delete_port(self, tenant, network, name, query, body):
        return self.store.delete_port(tenant, network, name)

    # -- routers
    def _router_view(self, r, model=None) -> dict:
        nets = sorted((model or self.model).networks_of_router(r.tenant, r.name).values(),
                      key=lambda n: n.name)
        return {"id": r.uuid, "tenant": r.tenant, "name": r.name, "ref": r.ref, "mac": r.mac,
                "networks": [{"network": n.ref, "cidr": n.cidr, "gateway": n.gateway, "cidr6": n.cidr6,
                              "gateway6": router_ip6(n.cidr6) if n.cidr6 else None} for n in nets],
                "routes": [{"cidr": c, "via": v} for c, v in r.routes],
                "gateway": _gateway_view(r)}

    def list_routers(self, query, body):
        tenant = query.get("tenant", [None])[0]
        model = self.model
        if tenant and tenant not in model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        routers = model.routers_of_tenant(tenant).values() if tenant else model.routers.values()
        return [self._router_view(r, model) for r in sorted(routers, key=lambda r: r.ref)]

    def create_router(self, query, body):
        self._required(body, "tenant", "name")
        return self.store.create_router(body["tenant"], body["name"])

    def show_router(self, tenant, name, query, body):
        r = self.model.router(tenant, name)
        if r is None:
            raise NotFound(f"no router {tenant}/{name}")
        return self._router_view(r)

    def delete_router(self, tenant, name, query, body):
        return self.store.delete_router(tenant, name, cascade=self._flag(query, "cascade"))

    def _network_of_router(self, tenant, body) -> str:
        self._required(body, "network")
        net_tenant, _, net = body["network"].rpartition("/")
        if net_tenant and net_tenant != tenant:
            raise WeftError(f"router {tenant}/… cannot use network {body['network']}: a router only "
                            f"joins networks of its own tenant ({tenant})")
        return net

    def attach(self, tenant, name, query, body):
        return self.store.attach(tenant, name, self._network_of_router(tenant, body))

    def detach(self, tenant, name, query, body):
        return self.store.detach(tenant, name, self._network_of_router(tenant, body))

    def add_route(self, tenant, name, query, body):
        self._required(body, "cidr", "via")
        return self.store.add_route(tenant, name, body["cidr"], body["via"])

    def delete_route(self, tenant, name, query, body):
        cidr = query.get("cidr", [None])[0]
        if not cidr:
            raise WeftError("missing query parameter: cidr")
        return self.store.delete_route(tenant, name, cidr)

    # -- security groups
    @staticmethod
    def _rule_view(rule) -> dict:
        return {"id": rule.uuid, "key": rule.key, "direction": rule.direction, "proto": rule.proto,
                "port_min": rule.port_min, "port_max": rule.port_max, "icmp_type": rule.icmp_type,
                "remote_cidr": rule.remote_cidr, "remote_sg": rule.remote_sg,
                "ethertype": rule.ethertype}

    def _sg_view(self, sg, model=None) -> dict:
        model = model or self.model
        ports = sorted(p.ref for p in model.members_of_group(sg.tenant, sg.name).values())
        return {"id": sg.uuid, "tenant": sg.tenant, "name": sg.name, "ref": sg.ref,
                "rules": [self._rule_view(r) for r in sg.rules], "ports": ports}

    def _sg(self, tenant, name):
        model = self.model
        sg = model.security_group(tenant, name)
        if sg is None:
            if tenant not in model.tenants:
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no security group {tenant}/{name}")
        return sg

    def list_sgs(self, query, body):
        tenant = query.get("tenant", [None])[0]
        model = self.model
        if tenant and tenant not in model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        groups = (model.security_groups_of_tenant(tenant).values() if tenant
                  else model.security_groups.values())
        return [self._sg_view(g, model) for g in sorted(groups, key=lambda g: g.ref)]

    def create_sg(self, query, body):
        self._required(body, "tenant", "name")
        return self.store.create_sg(body["tenant"], body["name"])

    def show_sg(self, tenant, name, query, body):
        return self._sg_view(self._sg(tenant, name))

    def delete_sg(self, tenant, name, query, body):
        return self.store.delete_sg(tenant, name)

    RULE_FIELDS = ("direction", "proto", "port_min", "port_max", "icmp_type", "remote_cidr",
                   "remote_sg", "ethertype")

    def add_rule(self, tenant, name, query, body):
        self._required(body, "direction")
        unknown = sorted(set(body) - set(self.RULE_FIELDS))
        if unknown:
            raise WeftError(f"unknown field(s): {', '.join(unknown)} (a rule takes "
                            f"{', '.join(self.RULE_FIELDS)})")
        fields = {k: body[k] for k in self.RULE_FIELDS if body.get(k) is not None}
        return self.store.add_rule(tenant, name, **fields)

    def delete_rule(self, tenant, name, rule_id, query, body):
        return self.store.delete_rule(tenant, name, rule_id)

    def sg_what_if(self, tenant, name, query, body):
        """Observed traffic replayed against the group as a change would leave it (controller/whatif.py)."""
        from controller.whatif import what_if
        return what_if(self, tenant, name, body)

    # -- hosts
    def _bound_per_host(self) -> dict[str, int]:
        """Ports bound per host, counted once per bindings snapshot of the engine."""
        bindings = self._bindings()
        cached = getattr(self, "_bound_cache", None)
        if cached is not None and cached[0] is bindings:
            return cached[1]
        bound: dict[str, int] = {}
        for b in bindings.values():
            bound[b.host] = bound.get(b.host, 0) + 1
        self._bound_cache = (bindings, bound)
        return bound

    def list_hosts(self, query, body):
        model = self.model
        status = self.engine.status()
        bound = self._bound_per_host()
        config = self.host_config() if self.host_config else {}
        return [{"name": h.name, "tunnel_ip": h.tunnel_ip, "ovsdb": h.ovsdb,
                 "connected": status.get(h.name, {}).get("connected", False),
                 "ports_bound": bound.get(h.name, 0),
                 "flows": status.get(h.name, {}).get("flows", 0),
                 "config": config.get(h.name, {}).get("state"),
                 "config_error": config.get(h.name, {}).get("error")}
                for h in sorted(model.hosts.values(), key=lambda h: h.name)]

    def add_host(self, query, body):
        from controller.tlsconfig import check_ovsdb_remote

        self._required(body, "name", "tunnel_ip", "ovsdb")
        check_ovsdb_remote(body["ovsdb"], body.get("insecure", False))   # ssl: only, unless told
        return self.store.add_host(body["name"], body["tunnel_ip"], body["ovsdb"], body.get("mgmt_ip"),
                                   providers=body.get("providers"))

    def update_host(self, name, query, body):
        """PATCH {tunnel_ip?, ovsdb?, mgmt_ip? (null: forget it), insecure?}: only what is given changes."""
        from controller.tlsconfig import check_ovsdb_remote

        unknown = sorted(set(body) - {"tunnel_ip", "ovsdb", "mgmt_ip", "insecure", "providers"})
        if unknown:
            raise WeftError(f"unknown field(s) {', '.join(unknown)} (a host update takes tunnel_ip, "
                            f"ovsdb, mgmt_ip, providers and insecure)")
        if "ovsdb" in body:
            check_ovsdb_remote(body["ovsdb"], body.get("insecure", False))
        return self.store.update_host(name, tunnel_ip=body.get("tunnel_ip"), ovsdb_remote=body.get("ovsdb"),
                                      mgmt_ip=body.get("mgmt_ip"),
                                      clear_mgmt_ip="mgmt_ip" in body and body["mgmt_ip"] is None,
                                      providers=body.get("providers"))

    def delete_host(self, name, query, body):
        return self.store.delete_host(name)

    def host_flows(self, name, query, body):
        model = self.model
        if name not in model.hosts:
            raise NotFound(f"no host named {name!r}")
        if self.flow_dumper is None:
            raise WeftError("flow dumps are not available", 503)
        installed = self.flow_dumper(name)
        desired = {f.cookie: f for f in self.engine.desired_flows(name)}
        owners = self._owner_names(model)
        rows = []
        for entry in installed:
            feature, obj = cookies.decode(entry["cookie"])
            flow = desired.get(entry["cookie"])
            rows.append({"table": entry["table"], "priority": entry["priority"],
                         "cookie": f"0x{entry['cookie']:016x}", "feature": feature,
                         "owner": owners.get(obj, "-" if obj == 0 else f"unknown:{obj:08x}"),
                         "match": ofmsg.render_match(flow) if flow else entry.get("match", ""),
                         "actions": ofmsg.render_actions(flow) if flow else entry.get("actions", ""),
                         "packets": entry.get("packets", 0), "bytes": entry.get("bytes", 0)})
        rows.sort(key=lambda r: (r["table"], -r["priority"], r["cookie"]))
        return rows

    def trace_packet(self, query, body):
        """`weft trace`: a packet walked through the pipeline (controller/trace_service.py)."""
        from controller import trace_service
        return trace_service.run(self, query)

    @staticmethod
    def _owner_names(model) -> "_Owners":
        """Cookie owner id -> "port red/net/a"…, looked up in O(1) per flow from the model's index."""
        return _Owners(model)

    # -- traffic
    def _collectors(self):
        if self.traffic is None:
            raise WeftError("weftd runs no collectors (start it with --collector-ip)", 503)
        return self.traffic

    def traffic_config(self, query, body):
        import dataclasses
        return dataclasses.asdict(self.model.traffic)

    def set_traffic_config(self, query, body):
        return self.store.set_traffic_config(**body)

    @staticmethod
    def _since(query) -> float | None:
        text = query.get("since", [None])[0]
        if not text:
            return None
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "s")
        try:
            seconds = float(number) * units[unit]
        except ValueError:
            raise WeftError(f"invalid --since {text!r}: expected e.g. 30s, 5m, 2h") from None
        if seconds <= 0:
            raise WeftError(f"invalid --since {text!r}: must be positive")
        return time.time() - seconds

    @staticmethod
    def _by(query) -> str:
        by = query.get("by", ["vm"])[0]
        if by not in ("vm", "network", "tenant"):
            raise WeftError(f"invalid --by {by!r}: use vm, network or tenant")
        return by

    def _source(self, query):
        return self._collectors().service(query.get("source", ["sflow"])[0])

    def traffic_matrix(self, query, body):
        tenant = query.get("tenant", [None])[0]
        if tenant and tenant not in self.model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        return self._active_rates(self._source(query).matrix(self._since(query), self._by(query), tenant))

    def traffic_flows(self, query, body):
        tenant = query.get("tenant", [None])[0]
        if tenant and tenant not in self.model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        return self._active_rates(self._source(query).flows(self._since(query), tenant))

    def traffic_top(self, query, body):
        try:
            n = int(query.get("n", ["10"])[0])
        except ValueError:
            raise WeftError("-n must be a whole number") from None
        if not 1 <= n <= 10000:
            raise WeftError("-n must be between 1 and 10000")
        tenant = query.get("tenant", [None])[0]
        if tenant and tenant not in self.model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        return self._active_rates(self._source(query).top(n, self._since(query), self._by(query),
                                                          tenant))

    @staticmethod
    def _active_rates(rows: list[dict]) -> list[dict]:
        """rate_bps while the pair was talking (first to last sample, at least 1 s), not
        averaged over the whole query window: what an operator reads as "the rate"."""
        for row in rows:
            span = max(1.0, (row["last_seen"] or 0) - (row["first_seen"] or 0))
            row["rate_bps"] = round(row["bytes"] * 8 / span, 3)
        return rows

    # -- API tokens (admins only: see controller/access.py)
    def list_tokens(self, query, body):
        return self.store.list_tokens()

    def create_token(self, query, body):
        self._required(body, "name", "tenant")
        return self.store.create_token(body["name"], body["tenant"])

    def delete_token(self, name, query, body):
        return self.store.delete_token(name)

    def _drop_log(self):
        if self.drops is None:
            raise WeftError("this weftd keeps no drop samples", 503)
        return self.drops

    def traffic_drops(self, query, body):
        """Dropped packets (sampled), aggregated: src, dst, proto, dport, reason, group, packets."""
        tenant = query.get("tenant", [None])[0]
        if tenant and tenant not in self.model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        since = self._since(query) if query.get("since") else time.time() - 600
        log = self._drop_log()
        return (self.drop_history or log).rows(since, tenant)

    def traffic_drops_status(self, query, body):
        """Drop samples received per host and reason, and the configured meter."""
        t = self.model.traffic
        return {**self._drop_log().status(), "packet_ins": dict(self.drop_counters or {}),
                "drop_sample_pps": t.drop_sample_pps, "drop_sample_burst": t.drop_sample_burst}

    def traffic_status(self, query, body):
        return self._collectors().status()

    def metrics(self) -> bytes:
        """Prometheus exposition: the engine (port-up, bundles, connections) and, when weftd
        collects, the default (sFlow) collector's health and tenant pairs."""
        engine_metrics = getattr(self.engine, "metrics", None)
        text = engine_metrics.render() if engine_metrics is not None else b""
        if self.traffic is not None:
            if getattr(self, "_metrics", None) is None:
                from collectors.metrics import MetricsRenderer
                self._metrics = MetricsRenderer(self._collectors().service("sflow"))
            text += self._metrics.render().encode()
        if self.drops is not None:
            text += self.drops.render_metrics()
        return text

    def status(self, query, body):
        hosts = self.engine.status()
        config = self.host_config() if self.host_config else {}
        for name, state in config.items():
            if name in hosts:
                hosts[name] = {**hosts[name], "config": state}
        return {"hosts": hosts, "dhcp": self.dhcp_counters() if self.dhcp_counters else None,
                "flow_mods": sum(h["flow_mods"] for h in hosts.values()),
                "bundles": sum(h["bundles"] for h in hosts.values()),
                "bundle_errors": sum(h.get("bundle_errors", 0) for h in hosts.values()),
                "switch_refusals": self.engine.refused(),
                "model_version": getattr(self.store, "version", None),
                "ha": self._ha_view(),
                "pid": os.getpid(), "time": time.time()}

    def cluster_status(self, query, body):
        """Every weftd replica and northbound member: name, kind, role, pid, address."""
        if self.cluster is None:
            raise NotFound("this weftd serves no cluster view")
        return self.cluster(self._flag(query, "self"))

    def _ha_view(self) -> dict | None:
        if not getattr(self.engine, "ha", False):
            return None
        link = getattr(self.store, "_link", None)
        return {"role": "active" if self.engine.active else "standby",
                "active_since": self.engine.active_since,
                "nb": link.view() if link is not None else None}

    WAIT_DEFAULT_S, WAIT_MAX_S = 10.0, 300.0

    def wait_timeout(self, query) -> float | None:
        """`?wait=hv[&timeout=S]` checked before the write (bad input changes nothing)."""
        mode = query.get("wait", [None])[0]
        if mode is None:
            return None
        if mode not in ("hv", "1", "true"):
            raise WeftError(f"invalid wait={mode!r}: use wait=hv")
        if not getattr(self.engine, "active", True):
            raise WeftError("this weftd replica is standby and applies nothing: send wait=hv "
                            "changes to the active replica (`weft cluster status`)", 503)
        try:
            timeout = float(query.get("timeout", [self.WAIT_DEFAULT_S])[0])
        except ValueError:
            raise WeftError("timeout must be a number of seconds") from None
        if not 0 < timeout <= self.WAIT_MAX_S:
            raise WeftError(f"timeout must be between 0 and {self.WAIT_MAX_S:.0f} seconds")
        return timeout

    def wait_for_hosts(self, timeout: float) -> dict:
        """After a write: block until every host the change affects has committed it (like
        `ovn-nbctl --wait=hv`). Returns what the wait saw."""
        version = self.store.committed_version()
        if version is None:
            return {"hosts_pending": [], "ms": 0.0}
        t0 = time.monotonic()
        pending = self.engine.wait_applied(version, timeout)
        return {"version": version, "hosts_pending": pending,
                "ms": round((time.monotonic() - t0) * 1000, 2)}


class _Owners:
    """The owner names of one snapshot as a read-only mapping (no table of them is built)."""

    def __init__(self, model):
        self.model = model

    def get(self, obj: int, default=None):
        name = self.model.owner(obj)
        return default if name is None else name

    def __getitem__(self, obj: int) -> str:
        name = self.model.owner(obj)
        if name is None:
            raise KeyError(obj)
        return name


def serve(api: Api, unix_path: str | None = None, tcp: tuple[str, int] | None = None,
          token: str | None = None, tls: tuple[str, str] | None = None, **kwargs) -> list:
    """Start the API (controller.apihttp: uvicorn + Starlette); returns the running servers."""
    from controller import apihttp
    return apihttp.serve(api, unix_path, tcp, token, tls, **kwargs)
