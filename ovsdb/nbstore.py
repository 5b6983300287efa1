"""weft's northbound store: the model in an OVSDB database, read and written through the `ovs` IDL.

One thread owns the IDL and runs it; writers take the same lock and commit with
`commit_block`, retrying on TRY_AGAIN. Every change to the database produces a new
immutable `Model` snapshot handed to the subscribers (the flow engine).
"""
from __future__ import annotations

import logging
import threading
import time
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from ovsdb.nbserver import SCHEMA
from topology import validate
from topology.errors import Conflict, NotFound, WeftError
from topology.model import (Binding, Host, Model, Network, Port, Router, Rule, SecurityGroup, Tenant,
                            TrafficConfig)

LOG = logging.getLogger(__name__)
TXN = ovs.db.idl.Transaction


def _opt(value):
    """An optional OVSDB column value (a 0/1-element list) as a value or None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class NorthboundStore:
    def __init__(self, remote: str):
        helper = ovs.db.idl.SchemaHelper(location=SCHEMA)
        helper.register_all()
        self.remote = remote
        self.idl = ovs.db.idl.Idl(remote, helper)
        self.lock = threading.RLock()
        self.model = Model()
        self._seqno = None
        self._subscribers = []
        self._stop = False
        self._thread = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                self.idl.run()
                if self.idl.has_ever_connected():
                    self._refresh()
                    break
            if time.monotonic() > deadline:
                raise WeftError(f"cannot connect to the northbound database at {self.remote}", 503)
            self._block(0.05)
        self._upgrade()
        self._thread = threading.Thread(target=self._loop, name="nb-idl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True

    def subscribe(self, callback) -> None:
        """callback(old_model, new_model) after every change, from the IDL thread."""
        self._subscribers.append(callback)

    def _block(self, seconds: float) -> None:
        poller = ovs.poller.Poller()
        self.idl.wait(poller)
        poller.timer_wait(int(seconds * 1000))
        poller.block()

    def _loop(self) -> None:
        while not self._stop:
            changes = None
            with self.lock:
                self.idl.run()
                changes = self._refresh()
            if changes:
                self._notify(*changes)
            self._block(1.0)

    def _refresh(self):
        if self.idl.change_seqno == self._seqno:
            return None
        self._seqno = self.idl.change_seqno
        old, self.model = self.model, self._build_model()
        return old, self.model

    def _notify(self, old: Model, new: Model) -> None:
        for callback in self._subscribers:
            try:
                callback(old, new)
            except Exception:  # a subscriber's bug must not stop the store
                LOG.exception("model subscriber failed")

    def _rows(self, table: str):
        return self.idl.tables[table].rows.values()

    def _build_model(self) -> Model:
        tenants = {r.name: Tenant(str(r.uuid), r.name) for r in self._rows("Tenant")}
        networks = {str(r.uuid): Network(str(r.uuid), r.tenant, r.name, r.cidr, r.vni,
                                         _opt(r.gateway), r.dhcp, tuple(sorted(r.dns)), _opt(r.router))
                    for r in self._rows("Network")}
        routers = {str(r.uuid): Router(str(r.uuid), r.tenant, r.name, r.mac, r.key,
                                       tuple(sorted(r.routes.items())))
                   for r in self._rows("Router")}
        ports = {str(r.uuid): Port(str(r.uuid), r.tenant, r.network, r.name, r.mac,
                                   tuple(r.ips), r.port_security, tuple(sorted(r.security_groups)))
                 for r in self._rows("Port")}
        hosts = {r.name: Host(r.name, r.tunnel_ip, r.ovsdb, _opt(r.mgmt_ip)) for r in self._rows("Host")}
        bindings = {r.port: Binding(r.port, r.host, r.ofport) for r in self._rows("Binding")}
        rules = {}
        for r in self._rows("SG_Rule"):
            rules.setdefault((r.tenant, r.group), []).append(
                Rule(str(r.uuid), r.key, r.direction, r.proto, _opt(r.port_min), _opt(r.port_max),
                     _opt(r.icmp_type), _opt(r.remote_cidr), _opt(r.remote_sg), r.ethertype))
        groups = {str(r.uuid): SecurityGroup(str(r.uuid), r.tenant, r.name,
                                             tuple(sorted(rules.get((r.tenant, r.name), ()),
                                                          key=lambda rule: rule.key)))
                  for r in self._rows("Security_Group")}
        traffic = TrafficConfig()
        for r in self._rows("Traffic_Config"):
            traffic = TrafficConfig(r.sflow, r.sflow_sampling, r.sflow_polling, r.netflow,
                                    r.netflow_active_timeout, r.ipfix, r.ipfix_sampling)
        return Model(tenants, networks, ports, hosts, bindings, routers, groups, traffic)

    # ---- writing ---------------------------------------------------------------------------
    def _transact(self, build) -> dict:
        """Run build(txn) -> result in a transaction; retry on TRY_AGAIN; raise on failure."""
        for _attempt in range(10):
            with self.lock:
                self.idl.run()
                txn = TXN(self.idl)
                try:
                    result = build(txn)
                except BaseException:
                    txn.abort()
                    raise
                status = txn.commit_block()
                if status in (TXN.SUCCESS, TXN.UNCHANGED):
                    inserted = {k: str(txn.get_insert_uuid(v)) for k, v in result.pop("_inserted", {}).items()}
                    result.update(inserted)
                    changes = self._refresh()
            if status in (TXN.SUCCESS, TXN.UNCHANGED):
                if changes:
                    self._notify(*changes)
                return result
            if status != TXN.TRY_AGAIN:
                error = txn.get_error() or TXN.status_to_string(status)
                if "constraint violation" in str(error):
                    raise Conflict(f"conflicting change: {error}")
                raise WeftError(f"northbound database error: {error}", 503)
            time.sleep(0.01)
        raise WeftError("northbound database busy, try again", 503)

    def _find(self, table: str, **cols):
        for row in self._rows(table):
            if all(getattr(row, k) == v for k, v in cols.items()):
                return row
        return None

    # tenants
    def create_tenant(self, name: str) -> dict:
        validate.name("tenant", name)

        def build(txn):
            if self._find("Tenant", name=name):
                raise Conflict(f"tenant {name!r} already exists")
            row = txn.insert(self.idl.tables["Tenant"])
            row.name = name
            group = self._insert_default_group(txn, name)
            return {"name": name, "_inserted": {"id": row.uuid, "default_group": group.uuid}}
        return self._transact(build)

    def delete_tenant(self, name: str, cascade: bool = False) -> dict:
        def build(txn):
            row = self._find("Tenant", name=name)
            if row is None:
                raise NotFound(f"no tenant named {name!r}")
            nets = [n for n in self._rows("Network") if n.tenant == name]
            if nets and not cascade:
                raise Conflict(f"tenant {name!r} still has {len(nets)} network(s) "
                               f"({', '.join(sorted(n.name for n in nets))}); delete them first "
                               f"or use --cascade")
            for port in [p for p in self._rows("Port") if p.tenant == name]:
                self._delete_port_rows(port)
            for net in nets:
                net.delete()
            for router in [r for r in self._rows("Router") if r.tenant == name]:
                router.delete()
            for rule in [r for r in self._rows("SG_Rule") if r.tenant == name]:
                rule.delete()
            for group in [g for g in self._rows("Security_Group") if g.tenant == name]:
                group.delete()
            row.delete()
            return {"name": name, "deleted": True}
        return self._transact(build)

    # networks
    def create_network(self, tenant: str, name: str, cidr: str, gateway: str | None = None,
                       dhcp: bool = True, dns=()) -> dict:
        validate.name("network", name)
        net = validate.cidr(cidr)
        gw = validate.gateway(gateway, net)
        dns = validate.dns_servers(dns)

        def build(txn):
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if self._find("Network", tenant=tenant, name=name):
                raise Conflict(f"network {tenant}/{name} already exists")
            vni = validate.allocate_vni({r.vni for r in self._rows("Network")})
            row = txn.insert(self.idl.tables["Network"])
            row.tenant, row.name, row.cidr, row.vni = tenant, name, str(net.cidr), vni
            row.gateway = [gw]
            row.dhcp = bool(dhcp)
            row.dns = list(dns)
            return {"tenant": tenant, "name": name, "cidr": str(net.cidr), "gateway": gw,
                    "vni": vni, "dhcp": bool(dhcp), "dns": list(dns), "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_network(self, tenant: str, name: str, cascade: bool = False) -> dict:
        def build(txn):
            row = self._find("Network", tenant=tenant, name=name)
            if row is None:
                raise NotFound(f"no network {tenant}/{name}")
            ports = [p for p in self._rows("Port") if p.tenant == tenant and p.network == name]
            if ports and not cascade:
                raise Conflict(f"network {tenant}/{name} still has {len(ports)} port(s); delete "
                               f"them first or use --cascade")
            for port in ports:
                self._delete_port_rows(port)
            row.delete()
            return {"network": f"{tenant}/{name}", "deleted": True}
        return self._transact(build)

    # ports
    def create_port(self, tenant: str, network: str, name: str, ip: str | None = None,
                    mac: str | None = None, port_security: bool = True, security_groups=()) -> dict:
        """security_groups: names (or TENANT/NAME) of groups of the port's tenant; none given
        with port security on means the tenant's `default` group; port security off, no groups."""
        validate.name("port", name)
        mac = validate.mac(mac) if mac else None
        port_security = self._bool(port_security, "port_security")
        ref = f"{tenant}/{network}/{name}"
        groups = validate.group_names(security_groups, tenant, f"port {ref}")
        if not port_security and groups:
            raise WeftError(f"port {ref} cannot have security groups ({', '.join(groups)}) with port "
                            f"security off: security groups need port security")
        if port_security and not groups:
            groups = [validate.DEFAULT_SG]

        def build(txn):
            net_row = self._find("Network", tenant=tenant, name=network)
            if net_row is None:
                if not self._find("Tenant", name=tenant):
                    raise NotFound(f"no tenant named {tenant!r}")
                raise NotFound(f"no network {tenant}/{network}")
            if self._find("Port", tenant=tenant, network=network, name=name):
                raise Conflict(f"port {tenant}/{network}/{name} already exists")
            self._check_groups(tenant, groups)
            cidr = validate.cidr(net_row.cidr)
            gw = _opt(net_row.gateway)
            taken_ips = {ip_ for p in self._rows("Port") if p.tenant == tenant and p.network == network
                         for ip_ in p.ips}
            the_ip = (validate.port_ip(ip, cidr, gw, taken_ips) if ip
                      else validate.allocate_ip(cidr, gw, taken_ips))
            macs = self._macs()
            if mac and mac in macs:
                raise Conflict(f"MAC {mac} is already used by another port")
            the_mac = mac or validate.allocate_mac(macs)
            row = txn.insert(self.idl.tables["Port"])
            row.tenant, row.network, row.name = tenant, network, name
            row.mac, row.ips = the_mac, [the_ip]
            row.port_security = port_security
            row.security_groups = groups
            return {"tenant": tenant, "network": network, "name": name, "mac": the_mac,
                    "ip": the_ip, "prefixlen": cidr.prefixlen, "gateway": gw,
                    "port_security": port_security, "security_groups": groups,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_port(self, tenant: str, network: str, name: str) -> dict:
        def build(txn):
            row = self._find("Port", tenant=tenant, network=network, name=name)
            if row is None:
                raise NotFound(f"no port {tenant}/{network}/{name}")
            port_id = str(row.uuid)
            self._delete_port_rows(row)
            return {"port": f"{tenant}/{network}/{name}", "id": port_id, "deleted": True}
        return self._transact(build)

    def update_port(self, tenant: str, network: str, name: str, security_groups=None,
                    port_security: bool | None = None) -> dict:
        """Replace the port's security groups (None keeps them, [] removes them all) and/or turn
        its port security on or off. Port security off needs no groups; turning it on with no
        groups given and none on the port gives it the tenant's `default` group."""
        ref = f"{tenant}/{network}/{name}"
        if port_security is not None:
            port_security = self._bool(port_security, "port_security")
        groups = (None if security_groups is None
                  else validate.group_names(security_groups, tenant, f"port {ref}"))

        def build(txn):
            row = self._find("Port", tenant=tenant, network=network, name=name)
            if row is None:
                raise NotFound(f"no port {ref}")
            was_on = row.port_security
            on = was_on if port_security is None else port_security
            new = sorted(row.security_groups) if groups is None else groups
            if on and not was_on and groups is None and not new:
                new = [validate.DEFAULT_SG]
            if not on and new:
                if groups is None:
                    raise WeftError(f"port {ref} still has security groups ({', '.join(new)}): remove "
                                    f"them (no groups) to turn port security off")
                raise WeftError(f"port {ref} cannot have security groups ({', '.join(new)}) with port "
                                f"security off: security groups need port security")
            self._check_groups(tenant, new)
            if on != was_on:
                row.port_security = on
            if new != sorted(row.security_groups):
                row.security_groups = new
            return {"port": ref, "id": str(row.uuid), "port_security": on, "security_groups": new}
        return self._transact(build)

    @staticmethod
    def _bool(value, what: str) -> bool:
        if not isinstance(value, bool):
            raise WeftError(f"invalid {what} {value!r}: expected true or false")
        return value

    def _macs(self) -> set[str]:
        return {p.mac for p in self._rows("Port")} | {r.mac for r in self._rows("Router")}

    def _delete_port_rows(self, port_row) -> None:
        for b in [b for b in self._rows("Binding") if b.port == str(port_row.uuid)]:
            b.delete()
        port_row.delete()

    # routers
    def _router(self, tenant: str, name: str):
        row = self._find("Router", tenant=tenant, name=name)
        if row is None:
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no router {tenant}/{name}")
        return row

    def _router_networks(self, tenant: str, name: str) -> list:
        return [n for n in self._rows("Network") if n.tenant == tenant and _opt(n.router) == name]

    def create_router(self, tenant: str, name: str) -> dict:
        validate.name("router", name)

        def build(txn):
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if self._find("Router", tenant=tenant, name=name):
                raise Conflict(f"router {tenant}/{name} already exists")
            mac = validate.allocate_mac(self._macs())
            key = validate.allocate_vni({r.key for r in self._rows("Router")})
            row = txn.insert(self.idl.tables["Router"])
            row.tenant, row.name, row.mac, row.key, row.routes = tenant, name, mac, key, {}
            return {"tenant": tenant, "name": name, "mac": mac, "key": key,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_router(self, tenant: str, name: str, cascade: bool = False) -> dict:
        def build(txn):
            row = self._router(tenant, name)
            nets = self._router_networks(tenant, name)
            if nets and not cascade:
                raise Conflict(f"router {tenant}/{name} is still attached to "
                               f"{', '.join(sorted(n.name for n in nets))}; detach them first "
                               f"or use --cascade")
            for net in nets:
                net.router = []
            row.delete()
            return {"router": f"{tenant}/{name}", "deleted": True}
        return self._transact(build)

    def attach(self, tenant: str, router: str, network: str) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            net = self._find("Network", tenant=tenant, name=network)
            if net is None:
                raise NotFound(f"no network {tenant}/{network}")
            current = _opt(net.router)
            if current == router:
                raise Conflict(f"network {tenant}/{network} is already attached to {tenant}/{router}")
            if current:
                raise Conflict(f"network {tenant}/{network} is attached to router {tenant}/{current}; "
                               f"a network attaches to one router (detach it first)")
            cidr = validate.cidr(net.cidr)
            for other in self._router_networks(tenant, router):
                theirs = validate.cidr(other.cidr)
                if cidr.first <= theirs.last and theirs.first <= cidr.last:
                    raise Conflict(f"network {tenant}/{network} ({net.cidr}) overlaps {tenant}/{other.name} "
                                   f"({other.cidr}) on router {tenant}/{router}")
            net.router = [router]
            return {"router": f"{tenant}/{router}", "network": f"{tenant}/{network}",
                    "gateway": _opt(net.gateway), "mac": rrow.mac}
        return self._transact(build)

    def detach(self, tenant: str, router: str, network: str) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            net = self._find("Network", tenant=tenant, name=network)
            if net is None:
                raise NotFound(f"no network {tenant}/{network}")
            if _opt(net.router) != router:
                raise Conflict(f"network {tenant}/{network} is not attached to {tenant}/{router}")
            gone = [c for c, via in rrow.routes.items()
                    if validate.address(via) in validate.cidr(net.cidr)]
            if gone:
                raise Conflict(f"static route(s) {', '.join(sorted(gone))} of {tenant}/{router} go via "
                               f"{tenant}/{network}; delete them first")
            net.router = []
            return {"router": f"{tenant}/{router}", "network": f"{tenant}/{network}", "detached": True}
        return self._transact(build)

    def add_route(self, tenant: str, router: str, cidr: str, via: str) -> dict:
        prefix = validate.route_cidr(cidr)
        nexthop = validate.address(via, "next hop")

        def build(txn):
            rrow = self._router(tenant, router)
            if str(prefix) in rrow.routes:
                raise Conflict(f"router {tenant}/{router} already has a route to {prefix} "
                               f"(via {rrow.routes[str(prefix)]}); delete it first")
            nets = self._router_networks(tenant, router)
            if not any(nexthop in validate.cidr(n.cidr) for n in nets):
                raise WeftError(f"next hop {nexthop} is not inside any network attached to "
                                f"{tenant}/{router}")
            rrow.setkey("routes", str(prefix), str(nexthop))
            return {"router": f"{tenant}/{router}", "cidr": str(prefix), "via": str(nexthop)}
        return self._transact(build)

    def delete_route(self, tenant: str, router: str, cidr: str) -> dict:
        prefix = validate.route_cidr(cidr)

        def build(txn):
            rrow = self._router(tenant, router)
            if str(prefix) not in rrow.routes:
                raise NotFound(f"router {tenant}/{router} has no route to {prefix}")
            rrow.delkey("routes", str(prefix))
            return {"router": f"{tenant}/{router}", "cidr": str(prefix), "deleted": True}
        return self._transact(build)

    # security groups
    def _group(self, tenant: str, name: str):
        row = self._find("Security_Group", tenant=tenant, name=name)
        if row is None:
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no security group {tenant}/{name}")
        return row

    def _check_groups(self, tenant: str, names) -> None:
        """Every name is a security group of `tenant` (call inside a transaction's build)."""
        have = {g.name for g in self._rows("Security_Group") if g.tenant == tenant}
        missing = [n for n in names if n not in have]
        if missing:
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no security group {', '.join(f'{tenant}/{n}' for n in missing)} "
                           f"(groups of {tenant}: {', '.join(sorted(have)) or 'none'})")

    def _insert_rule(self, txn, tenant: str, group: str, fields: dict, key: int):
        row = txn.insert(self.idl.tables["SG_Rule"])
        row.tenant, row.group, row.key = tenant, group, key
        row.direction, row.proto, row.ethertype = fields["direction"], fields["proto"], fields["ethertype"]
        for col in ("port_min", "port_max", "icmp_type", "remote_cidr", "remote_sg"):
            setattr(row, col, [] if fields[col] is None else [fields[col]])
        return row

    def _insert_default_group(self, txn, tenant: str):
        """The tenant's `default` group and its rules (read the keys in use before inserting)."""
        taken = {r.key for r in self._rows("SG_Rule")}
        keys = []
        for _rule in validate.default_sg_rules():
            keys.append(validate.allocate_rule_key(taken | set(keys)))
        group = txn.insert(self.idl.tables["Security_Group"])
        group.tenant, group.name = tenant, validate.DEFAULT_SG
        for fields, key in zip(validate.default_sg_rules(), keys):
            self._insert_rule(txn, tenant, validate.DEFAULT_SG, fields, key)
        return group

    def _upgrade(self) -> None:
        """A database from before security groups: give every tenant its `default` group and
        every port of such a tenant with port security on and no groups that group, as weft does
        for new tenants and ports (nothing to do, no transaction)."""
        def legacy():
            have = {g.tenant for g in self._rows("Security_Group") if g.name == validate.DEFAULT_SG}
            return sorted(t.name for t in self._rows("Tenant") if t.name not in have)

        with self.lock:
            if not legacy():
                return

        def build(txn):
            tenants = legacy()
            ports = [p for p in self._rows("Port")
                     if p.tenant in tenants and p.port_security and not p.security_groups]
            for tenant in tenants:
                self._insert_default_group(txn, tenant)
            for port in ports:
                port.security_groups = [validate.DEFAULT_SG]
            return {"tenants": tenants}
        done = self._transact(build)
        LOG.info("gave tenant(s) %s their default security group", ", ".join(done["tenants"]))

    def create_sg(self, tenant: str, name: str) -> dict:
        """A new group of the tenant, with no rule (add them with add_rule): a port whose only
        group it is sends and receives nothing until rules admit it."""
        validate.name("security group", name)

        def build(txn):
            if not self._find("Tenant", name=tenant):
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if self._find("Security_Group", tenant=tenant, name=name):
                raise Conflict(f"security group {tenant}/{name} already exists")
            row = txn.insert(self.idl.tables["Security_Group"])
            row.tenant, row.name = tenant, name
            return {"tenant": tenant, "name": name, "ref": f"{tenant}/{name}",
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_sg(self, tenant: str, name: str) -> dict:
        def build(txn):
            row = self._group(tenant, name)
            if name == validate.DEFAULT_SG:
                raise Conflict(f"security group {tenant}/{name} is the tenant's default group: it is "
                               f"deleted only with the tenant")
            users = sorted(f"{p.tenant}/{p.network}/{p.name}" for p in self._rows("Port")
                           if p.tenant == tenant and name in p.security_groups)
            if users:
                raise Conflict(f"security group {tenant}/{name} is used by port(s) {', '.join(users)}; "
                               f"take it off them first (`weft port update`)")
            referrers = sorted({f"{r.tenant}/{r.group}" for r in self._rows("SG_Rule")
                                if r.tenant == tenant and _opt(r.remote_sg) == name and r.group != name})
            if referrers:
                raise Conflict(f"security group {tenant}/{name} is the remote group of rules of "
                               f"{', '.join(referrers)}; delete those rules first")
            group_id = str(row.uuid)
            for rule in [r for r in self._rows("SG_Rule") if r.tenant == tenant and r.group == name]:
                rule.delete()
            row.delete()
            return {"security_group": f"{tenant}/{name}", "id": group_id, "deleted": True}
        return self._transact(build)

    def add_rule(self, tenant: str, sg: str, direction: str, proto: str = "any", port_min=None,
                 port_max=None, icmp_type=None, remote_cidr=None, remote_sg=None,
                 ethertype: str = "ipv4") -> dict:
        """Add a rule to TENANT/SG; remote_sg names a group of the same tenant (or TENANT/SG).
        Returns the rule with its "id" (the rule row's uuid) and its allocated "key"."""
        if remote_sg is not None:
            remote_sg = validate.group_name(remote_sg, tenant, f"a rule of {tenant}/{sg}")
        fields = validate.sg_rule(direction, proto, port_min, port_max, icmp_type, remote_cidr,
                                  remote_sg, ethertype)

        def build(txn):
            self._group(tenant, sg)
            if fields["remote_sg"] is not None and fields["remote_sg"] != sg:
                self._check_groups(tenant, [fields["remote_sg"]])
            rules = list(self._rows("SG_Rule"))
            same = validate.rule_identity(fields)
            for r in rules:
                if r.tenant == tenant and r.group == sg and self._rule_fields(r) == same:
                    raise Conflict(f"security group {tenant}/{sg} already has this rule ({r.uuid})")
            key = validate.allocate_rule_key({r.key for r in rules})
            row = self._insert_rule(txn, tenant, sg, fields, key)
            return {"tenant": tenant, "security_group": sg, "key": key, **fields,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    @staticmethod
    def _rule_fields(row) -> tuple:
        return validate.rule_identity({"direction": row.direction, "proto": row.proto,
                                       "port_min": _opt(row.port_min), "port_max": _opt(row.port_max),
                                       "icmp_type": _opt(row.icmp_type),
                                       "remote_cidr": _opt(row.remote_cidr),
                                       "remote_sg": _opt(row.remote_sg), "ethertype": row.ethertype})

    def delete_rule(self, tenant: str, sg: str, rule_id: str) -> dict:
        def build(txn):
            self._group(tenant, sg)
            row = next((r for r in self._rows("SG_Rule") if str(r.uuid) == rule_id
                        and r.tenant == tenant and r.group == sg), None)
            if row is None:
                raise NotFound(f"security group {tenant}/{sg} has no rule {rule_id}")
            key = row.key
            row.delete()
            return {"security_group": f"{tenant}/{sg}", "id": rule_id, "key": key, "deleted": True}
        return self._transact(build)

    # hosts
    def add_host(self, name: str, tunnel_ip: str, ovsdb_remote: str, mgmt_ip: str | None = None) -> dict:
        validate.name("host", name)
        ip = str(validate.address(tunnel_ip, "tunnel IP"))
        mgmt = str(validate.address(mgmt_ip, "management IP")) if mgmt_ip else None
        if not ovsdb_remote or not ovsdb_remote.startswith(("unix:", "tcp:", "ssl:")):
            raise WeftError(f"invalid OVSDB remote {ovsdb_remote!r}: expected unix:PATH, "
                            f"tcp:IP:PORT or ssl:IP:PORT")

        def build(txn):
            row = self._find("Host", name=name)
            other = self._find("Host", tunnel_ip=ip)
            if other is not None and other is not row:
                raise Conflict(f"tunnel IP {ip} is already used by host {other.name}")
            if row is None:
                row = txn.insert(self.idl.tables["Host"])
                row.name = name
            row.tunnel_ip, row.ovsdb = ip, ovsdb_remote
            row.mgmt_ip = [mgmt] if mgmt else []
            return {"name": name, "tunnel_ip": ip, "ovsdb": ovsdb_remote, "mgmt_ip": mgmt}
        return self._transact(build)

    # traffic exporters
    def set_traffic_config(self, **changes) -> dict:
        """Change what the hosts export (validated as a whole; unknown settings refused)."""
        import dataclasses
        current = self.model.traffic
        known = {f.name for f in dataclasses.fields(TrafficConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise WeftError(f"unknown traffic setting(s): {', '.join(unknown)}")
        new = dataclasses.replace(current, **{k: v for k, v in changes.items() if v is not None})
        validate.traffic_config(new)

        def build(txn):
            rows = list(self._rows("Traffic_Config"))
            row = rows[0] if rows else txn.insert(self.idl.tables["Traffic_Config"])
            for field in known:
                setattr(row, field, getattr(new, field))
            return dataclasses.asdict(new)
        return self._transact(build)

    def delete_host(self, name: str) -> dict:
        def build(txn):
            row = self._find("Host", name=name)
            if row is None:
                raise NotFound(f"no host named {name!r}")
            for b in [b for b in self._rows("Binding") if b.host == name]:
                b.delete()
            row.delete()
            return {"name": name, "deleted": True}
        return self._transact(build)

    # bindings (written by the southbound watcher)
    def sync_bindings(self, host: str, bindings: dict[str, int]) -> None:
        """Make the Binding rows of `host` equal `bindings` (port uuid -> ofport)."""
        def build(txn):
            ports = {str(p.uuid) for p in self._rows("Port")}
            want = {p: o for p, o in bindings.items() if p in ports}
            have = {b.port: b for b in self._rows("Binding")}
            for port, brow in have.items():
                if brow.host == host and port not in want:
                    brow.delete()
            for port, ofport in want.items():
                brow = have.get(port)
                if brow is None:
                    brow = txn.insert(self.idl.tables["Binding"])
                    brow.port, brow.host, brow.ofport = port, host, ofport
                elif brow.host != host or brow.ofport != ofport:
                    brow.host, brow.ofport = host, ofport
            return {}
        self._transact(build)
