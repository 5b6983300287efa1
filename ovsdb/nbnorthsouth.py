"""The store's north-south writes: external networks, router gateways, floating IPs, edge MACs.

A mixin of `NorthboundStore` (it uses the store's transaction, rows and write index): each
write validates inside its transaction's build, so bad input changes nothing and says why in
one line. External networks are visible to every tenant (as Neutron's `router:external`):
`weft router gateway set blue/r admin/ext` uses the `admin` tenant's external network.
"""
from __future__ import annotations

import netaddr

from topology import validate
from topology.errors import Conflict, NotFound, WeftError

PROVIDER_RE_HINT = "use 1-63 letters, digits, '_', '.', '-'"
DEFAULT_PROVIDER = "phys"


def _opt(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def ext_ref(ref: str) -> tuple[str, str]:
    """TENANT/NET of an external network as (tenant, name), with a one-line error otherwise."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 2 or not all(parts):
        raise WeftError(f"invalid external network {ref!r}: expected TENANT/NET")
    return parts[0], parts[1]


def providers(value) -> dict[str, str]:
    """Host providers as {name: bridge} from {name: bridge} or ["name:bridge", ...]."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        out = {}
        for item in value:
            if not isinstance(item, str) or item.count(":") != 1:
                raise WeftError(f"invalid provider {item!r}: expected NAME:BRIDGE, e.g. phys:br-ex")
            name, bridge = item.split(":")
            out[name] = bridge
        value = out
    if not isinstance(value, dict):
        raise WeftError(f"invalid providers {value!r}: expected {{NAME: BRIDGE}}")
    for name, bridge in value.items():
        validate.name("provider", name)
        validate.name("provider bridge", bridge)
    if len(value) > 16:
        raise WeftError("a host has at most 16 providers")
    return dict(value)


class NorthSouthWrites:
    """External networks, router gateways and floating IPs (mixed into NorthboundStore)."""

    # ---- external networks (create_network calls this inside its build) -------------------
    def _check_external(self, tenant: str, name: str, net: netaddr.IPNetwork, provider: str) -> None:
        for uuid in sorted(self._ix.externals):
            other = self._rec("Network", uuid)
            theirs = validate.cidr(other.cidr)
            if net.first <= theirs.last and theirs.first <= net.last:
                raise Conflict(f"external network {tenant}/{name} ({net.cidr}) overlaps external "
                               f"network {other.tenant}/{other.name} ({theirs.cidr}): external "
                               f"networks share the edge, their addresses must be unique")
            if other.provider == provider:
                raise Conflict(f"provider {provider!r} already carries external network "
                               f"{other.tenant}/{other.name}: one external network per provider")

    def _external(self, ref: str):
        """The Network record of external network TENANT/NET (one-line errors otherwise)."""
        tenant, name = ext_ref(ref)
        uuid = self._ix.net.get((tenant, name))
        if uuid is None:
            raise NotFound(f"no network {tenant}/{name}")
        net = self._rec("Network", uuid)
        if not net.external:
            raise WeftError(f"network {tenant}/{name} is not external: a router gateway or a floating "
                            f"IP needs a network created with --external")
        return net

    def _check_external_unused(self, tenant: str, name: str) -> None:
        ref = f"{tenant}/{name}"
        routers = sorted(f"{r.tenant}/{r.name}" for r in
                         (self._rec("Router", u) for u in self._ix.gateways_on.get(ref, ())))
        if routers:
            raise Conflict(f"external network {ref} is the gateway of router(s) {', '.join(routers)}; "
                           f"unset them first (`weft router gateway unset`)")
        fips = sorted(self._rec("Floating_IP", u).ip for u in self._ix.fips_of_net.get(ref, ()))
        if fips:
            raise Conflict(f"external network {ref} still has floating IP(s) {', '.join(fips)}; "
                           f"delete them first")

    def _ext_address(self, net, ip: str | None, what: str) -> str:
        """`ip` checked as a free address of external network `net`, or the lowest free one."""
        cidr = validate.cidr(net.cidr)
        taken = self._ix.ext_ips.get(net.ref, {})
        if ip is None:
            found, _floor = validate.allocate_ip_from(cidr, net.gateway, taken)
            return found
        addr = validate.address(ip, what)
        validate.usable(addr, cidr, what)
        text = str(addr)
        if text == net.gateway:
            raise Conflict(f"{what} {text} is the gateway (edge router) of {net.ref}")
        if text in taken:
            raise Conflict(f"{what} {text} is already in use on {net.ref} ({self._ext_user(net.ref, text)})")
        return text

    def _ext_user(self, ref: str, ip: str) -> str:
        fip = self._ix.fip_by_ip.get(ip)
        if fip is not None:
            return "a floating IP"
        for u in self._ix.gateways_on.get(ref, ()):
            r = self._rec("Router", u)
            if r.gw_ip == ip:
                return f"the gateway of router {r.tenant}/{r.name}"
        return "in use"

    def set_gateway_mac(self, network_id: str, mac: str) -> bool:
        """Record the edge router's MAC of an external network (weftd's resolver); False: unchanged."""
        mac = validate.mac(mac)

        def build(txn):
            net = self._rec("Network", network_id)
            if net is None or not net.external:
                raise NotFound(f"no external network {network_id}")
            if net.gateway_mac == mac:
                return {"changed": False}
            self._row("Network", network_id).gateway_mac = [mac]
            return {"changed": True}
        return self._transact(build)["changed"]

    # ---- router gateways ---------------------------------------------------------------------
    def _gateway_host(self, provider: str, exclude=()) -> str:
        """The host with `provider` doing the fewest SNATs (ties: by name)."""
        candidates = []
        for host_uuid in self._ix.host.values():
            host = self._rec("Host", host_uuid)
            if host.name in exclude or provider not in dict(host.providers):
                continue
            candidates.append((len(self._ix.gateways_of_host.get(host.name, ())), host.name))
        if not candidates:
            raise Conflict(f"no host has provider {provider!r}: declare it with "
                           f"`weft host update HOST --provider {provider}:BRIDGE`")
        return min(candidates)[1]

    def set_gateway(self, tenant: str, router: str, external: str, ip: str | None = None,
                    host: str | None = None) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            net = self._external(external)
            current = _opt(rrow.gw_network)
            if current:
                raise Conflict(f"router {tenant}/{router} already has a gateway on {current} "
                               f"({_opt(rrow.gw_ip)}); unset it first")
            ext = validate.cidr(net.cidr)
            for inner in self._router_networks(tenant, router):
                mine = validate.cidr(inner.cidr)
                if mine.first <= ext.last and ext.first <= mine.last:
                    raise Conflict(f"network {inner.tenant}/{inner.name} ({mine.cidr}) of router "
                                   f"{tenant}/{router} overlaps external network {net.ref} ({ext.cidr})")
            address = self._ext_address(net, ip, "gateway IP")
            if host is not None:
                hid = self._ix.host.get(host)
                if hid is None:
                    raise NotFound(f"no host named {host!r}")
                if net.provider not in dict(self._rec("Host", hid).providers):
                    raise Conflict(f"host {host} has no provider {net.provider!r}")
                where = host
            else:
                where = self._gateway_host(net.provider)
            mac = self._alloc_mac()
            vni = self._alloc_vni(self._ix.vnis, "vnis")
            rrow.gw_network, rrow.gw_ip, rrow.gw_mac = [net.ref], [address], [mac]
            rrow.gw_vni, rrow.gw_host = [vni], [where]
            return {"router": f"{tenant}/{router}", "network": net.ref, "ip": address, "mac": mac,
                    "host": where}
        return self._transact(build)

    def unset_gateway(self, tenant: str, router: str) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            current = _opt(rrow.gw_network)
            if not current:
                raise Conflict(f"router {tenant}/{router} has no gateway")
            nets = {(n.tenant, n.name) for n in self._router_networks(tenant, router)}
            users = sorted(f"{f.ip} ({self._rec('Port', f.port).ref})" for f in
                           (self._rec("Floating_IP", u) for u in self._ix.fips_of_net.get(current, ()))
                           if f.port and self._rec("Port", f.port) is not None
                           and (self._rec("Port", f.port).tenant, self._rec("Port", f.port).network) in nets)
            if users:
                raise Conflict(f"router {tenant}/{router}'s gateway carries floating IP(s) "
                               f"{', '.join(users)}; disassociate them first")
            for col in ("gw_network", "gw_ip", "gw_mac", "gw_vni", "gw_host"):
                setattr(rrow, col, [])
            return {"router": f"{tenant}/{router}", "gateway": None}
        return self._transact(build)

    def move_gateways(self, away_from: str, exclude=()) -> list[dict]:
        """Failover: every gateway host `away_from` holds goes to another host with the provider
        (not in `exclude`); gateways no other host can take stay. Returns what moved."""
        def build(txn):
            moved = []
            for uuid in sorted(self._ix.gateways_of_host.get(away_from, ())):
                rec = self._rec("Router", uuid)
                net_id = self._ix.net.get(ext_ref(rec.gw_network))
                if net_id is None:
                    continue
                try:
                    where = self._gateway_host(self._rec("Network", net_id).provider,
                                               exclude={away_from, *exclude})
                except Conflict:
                    continue
                self._row("Router", uuid).gw_host = [where]
                moved.append({"router": f"{rec.tenant}/{rec.name}", "from": away_from, "to": where})
            return {"moved": moved}
        return self._transact(build)["moved"]

    # ---- floating IPs ------------------------------------------------------------------------
    def _fip(self, ident: str):
        """The Floating_IP record named by its address or its id."""
        if not isinstance(ident, str) or not ident:
            raise WeftError(f"invalid floating IP {ident!r}: give its address or id")
        uuid = self._ix.fip_by_ip.get(ident)
        if uuid is None and ident in self._ix.rec["Floating_IP"]:
            uuid = ident
        if uuid is None:
            raise NotFound(f"no floating IP {ident}")
        return self._rec("Floating_IP", uuid)

    @staticmethod
    def fip_view(fip, port=None) -> dict:
        return {"id": fip.uuid, "tenant": fip.tenant, "network": fip.network, "ip": fip.ip,
                "mac": fip.mac, "port": port.ref if port is not None else None,
                "fixed_ip": port.ipv4s[0] if port is not None and port.ipv4s else None}

    def create_fip(self, tenant: str, external: str, ip: str | None = None) -> dict:
        def build(txn):
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r}")
            net = self._external(external)
            address = self._ext_address(net, ip, "floating IP")
            mac = self._alloc_mac()
            row = txn.insert(self.idl.tables["Floating_IP"])
            row.tenant, row.network, row.ip, row.mac, row.port = tenant, net.ref, address, mac, []
            return {"tenant": tenant, "network": net.ref, "ip": address, "mac": mac, "port": None,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def associate_fip(self, ident: str, port_ref: str) -> dict:
        tenant, network, name = validate.split_ref(port_ref, 3, "port")

        def build(txn):
            fip = self._fip(ident)
            port_id = self._ix.port.get((tenant, network, name))
            if port_id is None:
                raise NotFound(f"no port {port_ref}")
            port = self._rec("Port", port_id)
            if fip.tenant != tenant:
                raise WeftError(f"floating IP {fip.ip} belongs to tenant {fip.tenant}, port {port_ref} "
                                f"to {tenant}")
            if fip.port == port_id:
                raise Conflict(f"floating IP {fip.ip} is already associated with {port_ref}")
            if fip.port:
                other = self._rec("Port", fip.port)
                raise Conflict(f"floating IP {fip.ip} is already in use by port "
                               f"{other.ref if other else fip.port}; disassociate it first")
            has = self._ix.fip_of_port.get(port_id)
            if has is not None:
                raise Conflict(f"port {port_ref} already has floating IP "
                               f"{self._rec('Floating_IP', has).ip}; disassociate it first")
            if not port.ipv4s:
                raise WeftError(f"port {port_ref} has no IPv4 address to translate to")
            net = self._rec("Network", self._ix.net[(tenant, network)])
            router = self._rec("Router", self._ix.router.get((tenant, net.router), "")) if net.router else None
            if router is None or router.gw_network != fip.network:
                raise Conflict(f"network {tenant}/{network} is not attached to a router with a gateway "
                               f"on {fip.network}: `weft router attach` and `weft router gateway set` first")
            self._row("Floating_IP", fip.uuid).port = [port_id]
            return self.fip_view(fip, port)
        return self._transact(build)

    def disassociate_fip(self, ident: str) -> dict:
        def build(txn):
            fip = self._fip(ident)
            if not fip.port:
                raise Conflict(f"floating IP {fip.ip} is not associated with any port")
            self._row("Floating_IP", fip.uuid).port = []
            return {"ip": fip.ip, "id": fip.uuid, "port": None}
        return self._transact(build)

    def delete_fip(self, ident: str) -> dict:
        def build(txn):
            fip = self._fip(ident)
            self._row("Floating_IP", fip.uuid).delete()
            return {"ip": fip.ip, "id": fip.uuid, "deleted": True}
        return self._transact(build)

    def _check_no_fips(self, tenant: str, network: str, doing: str) -> None:
        """Refuse `doing` while ports of TENANT/NETWORK have floating IPs (they need its router)."""
        users = sorted(f"{self._rec('Floating_IP', self._ix.fip_of_port[u]).ip} "
                       f"({self._rec('Port', u).ref})"
                       for u in self._ix.ports_of_net.get((tenant, network), ()) if u in self._ix.fip_of_port)
        if users:
            raise Conflict(f"cannot {doing}: floating IP(s) {', '.join(users)} of {tenant}/{network} "
                           f"need its router; disassociate them first")

    def _release_fip(self, port_id: str) -> None:
        """A port being deleted gives its floating IP back (kept, unassociated)."""
        fip = self._ix.fip_of_port.get(port_id)
        if fip is not None:
            self._row("Floating_IP", fip).port = []
