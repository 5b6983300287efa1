"""weft's northbound store: the model in an OVSDB database, read and written through the `ovs` IDL.

One lock guards the IDL: the IDL thread runs it, writers take the lock and commit with
`commit_block`, retrying on TRY_AGAIN. Every change to the database produces a new immutable
`Model` snapshot with a version (+1 per snapshot), built from the IDL's tracked changes: only
the changed records are rebuilt, every other record object is shared with the previous
snapshot (`flows.index.diff_models` relies on that identity), and the model's lookup index is
carried over the same way (`topology.model.ModelIndex.updated`). A full rebuild happens on the
first load and whenever the IDL reloads the database (reconnect).

Subscribers get `callback(model, version)` for every snapshot, in version order, while the
store lock is held, from whichever thread refreshed (the IDL thread or a writer): a callback
must only queue the snapshot; it must not block, and must not write to the store.
`committed_version()` tells a writer which version holds its last transaction's effect.

Validation reads `nbtrack.WriteIndex` (names, addresses, MACs, VNIs, rule keys), kept from the
same tracked changes, so a write costs O(the objects it touches), whatever the store's size.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid as uuidlib
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from ovsdb import pollfix  # noqa: F401  (poll(2) for the IDL: no fd limit of 1,023)
from ovsdb.nblink import NbLink
from ovsdb.nbserver import SCHEMA
from ovsdb.nbnorthsouth import NorthSouthWrites
from ovsdb.nbnorthsouth import providers as _providers
from ovsdb.nbtokens import TokenStoreMixin
from ovsdb.nbtrack import TABLES, TrackedIdl, WriteIndex, opt, record
from topology import qos as port_qos
from topology import addresses, validate
from topology.changes import record_changes
from topology.errors import Conflict, NotFound, WeftError
from topology.model import Model, ModelIndex, SecurityGroup, TrafficConfig, share_index
from topology.shardmap import ShardMap
from topology.shardmap import Writer as ShardWriter
from topology.shardmap import writer_of as shard_writer

LOG = logging.getLogger(__name__)
TXN = ovs.db.idl.Transaction
RECONNECT_MIN_MS, RECONNECT_MAX_MS = 100, 250
_opt = opt
# model field of each table whose records the model holds directly, and what keys them
_DIRECT = {"Tenant": ("tenants", "name"), "Network": ("networks", None), "Port": ("ports", None),
           "Host": ("hosts", "name"), "Binding": ("bindings", "port"), "Router": ("routers", None),
           "Floating_IP": ("floating_ips", None)}
_PAIRS = {"Network": "networks", "Port": "ports", "Router": "routers"}
# the model's largest maps (one entry per port) are ShardMaps: a write copies 1/64 of them
_SHARDED = frozenset({"ports", "bindings"})


class _Taken:
    """Values in use: the index's plus those the transaction being built already took."""

    def __init__(self, *parts):
        self.parts = parts

    def __contains__(self, value) -> bool:
        return any(value in part for part in self.parts)


class NorthboundStore(TokenStoreMixin, NorthSouthWrites):
    def __init__(self, remote: str):
        helper = ovs.db.idl.SchemaHelper(location=SCHEMA)
        helper.register_all()
        self.remote = remote
        self.idl = TrackedIdl(remote, helper)
        # a lost leader is replaced within about a second: look for the new one every 0.1 s
        # (a unix connect and a _Server read per try), not after the IDL's 1 to 8 s backoff
        # (`set_backoff` refuses less than 1 s, hence the attributes)
        reconnect = self.idl._session.reconnect
        reconnect.min_backoff, reconnect.max_backoff = RECONNECT_MIN_MS, RECONNECT_MAX_MS
        self.lock = threading.RLock()
        self._link = NbLink(remote)
        self._snapshot = (Model(), 0)
        self._ix = WriteIndex()
        self._pending: dict[str, set] = {}
        self._local = threading.local()
        self._subscribers = []
        self._stop = False
        self._thread = None

    # ---- snapshots -------------------------------------------------------------------------
    @property
    def model(self) -> Model:
        """The latest snapshot."""
        return self._snapshot[0]

    @property
    def version(self) -> int:
        """The latest snapshot's version (0 before the first load)."""
        return self._snapshot[1]

    def snapshot(self) -> tuple[Model, int]:
        """(model, version), read together."""
        return self._snapshot

    def committed_version(self) -> int | None:
        """The version of the first snapshot holding the effect of this thread's last
        successful write (None if this thread has written nothing)."""
        return getattr(self._local, "version", None)

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
        """callback(model, version) for every new snapshot, in version order, called with the
        store lock held: it must only queue (no blocking, no store writes)."""
        self._subscribers.append(callback)

    def _block(self, seconds: float) -> None:
        poller = ovs.poller.Poller()
        self.idl.wait(poller)
        poller.timer_wait(int(seconds * 1000))
        poller.block()

    def _loop(self) -> None:
        while not self._stop:
            with self.lock:
                self.idl.run()
                self._refresh()
                self._link.observe(self.connected(), self.idl.session_name())
            self._block(1.0)

    def connected(self) -> bool:
        """Whether the IDL is connected to a server that takes writes (the leader, clustered)."""
        return self.idl._session.is_connected() and self.idl.state == self.idl.IDL_S_MONITORING

    def _refresh(self) -> bool:
        """Turn the IDL's tracked changes into a new snapshot and deliver it (lock held)."""
        changed, resync = self.idl.take()
        side = self.idl.take_side()
        if resync or "Api_Token" in side:
            self._refresh_tokens()
        if resync:
            new = self._full_model()
        elif changed:
            new = self._incremental_model(changed)
        else:
            return False
        if new is None:
            return False
        version = self._snapshot[1] + 1
        self._snapshot = (new, version)
        for callback in self._subscribers:
            try:
                callback(new, version)
            except Exception:  # a subscriber's bug must not stop the store
                LOG.exception("model subscriber failed")
        return True

    def _rows(self, table: str):
        return self.idl.tables[table].rows.values()

    def _row(self, table: str, uuid: str):
        """The IDL row of `table` with this uuid (a string), or None."""
        return self.idl.tables[table].rows.get(uuidlib.UUID(uuid))

    def _rec(self, table: str, uuid: str):
        return self._ix.rec[table].get(uuid)

    # ---- building snapshots ----------------------------------------------------------------
    def _full_model(self) -> Model | None:
        """Rebuild every record from the IDL's rows (records equal to the previous snapshot's
        are kept as the same objects); None when nothing differs, except on the first load
        (an empty database still makes snapshot 1)."""
        old = self.model
        ix = self._scan(reuse=self._ix)
        self._ix = ix
        new = self._model_from(ix, old)
        if new == old and self.version > 0:
            return None
        share_index(new, ModelIndex.build(new.networks, new.ports, new.routers, new.security_groups))
        return new

    def _scan(self, reuse: WriteIndex | None = None) -> WriteIndex:
        ix = WriteIndex()
        for table in TABLES:
            previous = reuse.rec[table] if reuse is not None else {}
            for row in self._rows(table):
                key = str(row.uuid)
                rec = record(table, row)
                prev = previous.get(key)
                ix.set(table, key, prev if prev == rec else rec)
        return ix

    @staticmethod
    def _model_from(ix: WriteIndex, old: Model) -> Model:
        fields = {}
        for table, (name, by) in _DIRECT.items():
            recs = ix.rec[table]
            fields[name] = dict(recs) if by is None else {getattr(r, by): r for r in recs.values()}
            if name in _SHARDED:
                fields[name] = ShardMap(fields[name])
        groups = {}
        for uuid, key in ix.rec["Security_Group"].items():
            built = NorthboundStore._group_record(ix, uuid, key)
            prev = old.security_groups.get(uuid)
            groups[uuid] = prev if prev == built else built
        traffic = next(iter(ix.rec["Traffic_Config"].values()), TrafficConfig())
        return Model(**fields, security_groups=groups,
                     traffic=old.traffic if traffic == old.traffic else traffic)

    @staticmethod
    def _group_record(ix: WriteIndex, uuid: str, key: tuple) -> SecurityGroup:
        rules = ix.rules_of_group.get(key, {}).values()
        return SecurityGroup(uuid, key[0], key[1], tuple(sorted(rules, key=lambda r: r.key)))

    def _incremental_model(self, changed: dict) -> Model | None:
        """Rebuild only the changed rows' records (and the security groups whose rules
        changed); every other record and dict is shared with the previous snapshot."""
        old, ix = self.model, self._ix
        out: dict[str, dict] = {}
        pairs = {"networks": [], "ports": [], "routers": [], "security_groups": []}
        group_keys, group_uuids, traffic = set(), set(), False
        touched: dict[str, set] = {}        # collection -> keys changed (topology.changes)

        def writable(name: str) -> dict:
            if name not in out:
                current = getattr(old, name)
                if name in _SHARDED:
                    out[name] = shard_writer(current)
                else:
                    out[name] = dict(current)
            return out[name]

        for table, uuids in changed.items():
            rows = self.idl.tables[table].rows
            recs = ix.rec[table]
            for u in uuids:
                key = str(u)
                row = rows.get(u)
                new = record(table, row) if row is not None else None
                prev = recs.get(key)
                if new == prev:
                    continue
                ix.set(table, key, new)
                if table in _DIRECT:
                    name, by = _DIRECT[table]
                    target = writable(name)
                    keys = touched.setdefault(name, set())
                    keys.update(key if by is None else getattr(r, by) for r in (prev, new) if r is not None)
                    if by is None:
                        if new is None:
                            target.pop(key, None)
                        else:
                            target[key] = new
                        if table in _PAIRS:
                            pairs[_PAIRS[table]].append((prev, new))
                    else:
                        if prev is not None and target.get(getattr(prev, by)) is prev:
                            del target[getattr(prev, by)]
                        if new is not None:
                            target[getattr(new, by)] = new
                elif table == "Security_Group":
                    group_uuids.add(key)
                    group_keys.update(r for r in (prev, new) if r is not None)
                elif table == "SG_Rule":
                    group_keys.update(r[:2] for r in (prev, new) if r is not None)
                elif table == "Traffic_Config":
                    traffic = True
        if group_uuids or group_keys:
            self._update_groups(ix, old.security_groups, lambda: writable("security_groups"),
                                group_uuids, group_keys, pairs["security_groups"])
        new_traffic = old.traffic
        if traffic:
            latest = next(iter(ix.rec["Traffic_Config"].values()), TrafficConfig())
            new_traffic = old.traffic if latest == old.traffic else latest
        if not out and new_traffic is old.traffic:
            return None
        fields = {name: out.get(name, getattr(old, name))
                  for name in ("tenants", "networks", "ports", "hosts", "bindings", "routers",
                               "security_groups", "floating_ips")}
        for name in _SHARDED:
            if isinstance(fields[name], ShardWriter):
                fields[name] = fields[name].done()
        new_model = Model(**fields, traffic=new_traffic)
        share_index(new_model, old.index.updated(**pairs))
        touched["security_groups"] = {(p[1] or p[0]).uuid for p in pairs["security_groups"]}
        record_changes(new_model, touched)
        return new_model

    def _update_groups(self, ix, current: dict, writable, uuids: set, keys: set, pairs: list) -> None:
        """Rebuild the groups whose row or rules changed (a rule lives inside its group)."""
        for uuid in uuids:
            if uuid not in ix.rec["Security_Group"] and uuid in current:
                pairs.append((writable().pop(uuid), None))
        for key in keys:
            uuid = ix.group.get(key)
            if uuid is None:
                continue
            built = self._group_record(ix, uuid, key)
            prev = current.get(uuid)
            if prev != built:
                writable()[uuid] = built
                pairs.append((prev, built))

    def rebuilt(self) -> tuple[Model, WriteIndex]:
        """A full rebuild from the IDL's rows, without installing it (to check the incremental
        snapshots against; call with the lock held)."""
        ix = self._scan()
        return self._model_from(ix, Model()), ix

    # ---- writing ---------------------------------------------------------------------------
    def _transact(self, build) -> dict:
        """Run build(txn) -> result in a transaction; retry on TRY_AGAIN; raise on failure.

        On success this thread's committed_version() is the snapshot holding the effect."""
        for _attempt in range(10):
            with self.lock:
                self.idl.run()
                self._refresh()
                self._pending = {"rule_keys": set(), "vnis": set(), "router_keys": set(), "macs": set()}
                txn = TXN(self.idl)
                try:
                    result = build(txn)
                except BaseException:
                    txn.abort()
                    raise
                status = txn.commit_block()
                self._refresh()
                if status in (TXN.SUCCESS, TXN.UNCHANGED):
                    inserted = {k: str(txn.get_insert_uuid(v)) for k, v in result.pop("_inserted", {}).items()}
                    result.update(inserted)
                    self._local.version = self.version
                    return result
            if status == TXN.TRY_AGAIN and not self.connected():
                # no leader reachable (an election, a lost member): nothing was applied by this
                # attempt that the caller would not see on a retry; say so at once
                raise WeftError("northbound database unavailable (no cluster leader reachable; "
                                "reconnecting): retry the request", 503)
            if status != TXN.TRY_AGAIN:
                error = txn.get_error() or TXN.status_to_string(status)
                if "constraint violation" in str(error):
                    raise Conflict(f"conflicting change: {error}")
                raise WeftError(f"northbound database error: {error}", 503)
            time.sleep(0.01)
        raise WeftError("northbound database busy, try again", 503)

    # allocation (inside a build): the index plus what this transaction already took
    def _alloc_rule_key(self) -> int:
        taken = self._pending["rule_keys"]
        high = max(self._ix.rule_keys.highest(validate.RULE_KEY_FIRST - 1), max(taken, default=0))
        key = (high + 1 if high < validate.RULE_KEY_MAX
               else validate.allocate_rule_key(self._ix.rule_keys.values() | taken))
        taken.add(key)
        return key

    def _alloc_vni(self, used, pending: str) -> int:
        taken = self._pending[pending]
        high = max(used.highest(validate.VNI_FIRST - 1), max(taken, default=0))
        vni = high + 1 if high < validate.VNI_MAX else validate.allocate_vni(used.values() | taken)
        taken.add(vni)
        return vni

    def _alloc_mac(self) -> str:
        mac = validate.allocate_mac(_Taken(self._ix.macs, self._pending["macs"]))
        self._pending["macs"].add(mac)
        return mac

    # tenants
    def create_tenant(self, name: str) -> dict:
        validate.name("tenant", name)

        def build(txn):
            if name in self._ix.tenant:
                raise Conflict(f"tenant {name!r} already exists")
            row = txn.insert(self.idl.tables["Tenant"])
            row.name = name
            group = self._insert_default_group(txn, name)
            return {"name": name, "_inserted": {"id": row.uuid, "default_group": group.uuid}}
        return self._transact(build)

    def delete_tenant(self, name: str, cascade: bool = False) -> dict:
        def build(txn):
            ix = self._ix
            tenant = ix.tenant.get(name)
            if tenant is None:
                raise NotFound(f"no tenant named {name!r}")
            nets = [self._rec("Network", u) for u in ix.nets_of_tenant.get(name, ())]
            for net in nets:
                if net.external:
                    self._check_external_unused(name, net.name)
            if nets and not cascade:
                raise Conflict(f"tenant {name!r} still has {len(nets)} network(s) "
                               f"({', '.join(sorted(n.name for n in nets))}); delete them first "
                               f"or use --cascade")
            for port in list(ix.ports_of_tenant.get(name, ())):
                self._delete_port_rows(port)
            for table, members in (("Network", ix.nets_of_tenant), ("Router", ix.routers_of_tenant),
                                   ("SG_Rule", ix.rules_of_tenant)):
                for u in list(members.get(name, ())):
                    self._row(table, u).delete()
            for u in list(ix.groups_of_tenant.get(name, {}).values()):
                self._row("Security_Group", u).delete()
            for u in list(ix.fips_of_tenant.get(name, ())):
                self._row("Floating_IP", u).delete()
            self._row("Tenant", tenant).delete()
            self._delete_tokens_of(name)
            return {"name": name, "deleted": True}
        return self._transact(build)

    # networks
    def create_network(self, tenant: str, name: str, cidr, gateway: str | None = None,
                       dhcp: bool = True, dns=(), external: bool = False,
                       provider: str | None = None) -> dict:
        """`cidr`: the IPv4 prefix, or a list of prefixes (one IPv4, at most one IPv6).
        external: a network on the hosts' provider bridges (ovsdb/nbnorthsouth.py)."""
        validate.name("network", name)
        net, net6 = validate.network_cidrs(cidr)
        dhcp = self._bool(dhcp, "dhcp")                 # "no" is not false: it is refused
        gw = validate.gateway(gateway, net)
        dns = validate.dns_servers(dns)
        external = self._bool(external, "external")
        if provider is not None and not external:
            raise WeftError("--provider applies to external networks only (add --external)")
        if external:
            provider = validate.name("provider", provider or "phys")
            if net6 is not None:
                raise WeftError("an external network is IPv4 only (no IPv6 prefix)")
            dhcp = False

        def build(txn):
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if (tenant, name) in self._ix.net:
                raise Conflict(f"network {tenant}/{name} already exists")
            if external:
                self._check_external(tenant, name, net, provider)
            vni = self._alloc_vni(self._ix.vnis, "vnis")
            row = txn.insert(self.idl.tables["Network"])
            row.tenant, row.name, row.cidr, row.vni = tenant, name, str(net.cidr), vni
            row.cidr6 = [str(net6.cidr)] if net6 is not None else []
            row.gateway = [gw]
            row.dhcp = dhcp
            row.dns = list(dns)
            row.external, row.provider = external, [provider] if external else []
            cidrs = [str(net.cidr)] + ([str(net6.cidr)] if net6 is not None else [])
            return {"tenant": tenant, "name": name, "cidr": str(net.cidr),
                    "cidr6": str(net6.cidr) if net6 is not None else None, "cidrs": cidrs,
                    "gateway": gw, "vni": vni, "dhcp": bool(dhcp), "dns": list(dns),
                    "external": external, "provider": provider if external else None,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_network(self, tenant: str, name: str, cascade: bool = False) -> dict:
        def build(txn):
            net = self._ix.net.get((tenant, name))
            if net is None:
                raise NotFound(f"no network {tenant}/{name}")
            self._check_external_unused(tenant, name)
            ports = list(self._ix.ports_of_net.get((tenant, name), ()))
            if ports and not cascade:
                raise Conflict(f"network {tenant}/{name} still has {len(ports)} port(s); delete "
                               f"them first or use --cascade")
            for port in ports:
                self._delete_port_rows(port)
            self._row("Network", net).delete()
            return {"network": f"{tenant}/{name}", "deleted": True}
        return self._transact(build)

    # ports
    def create_port(self, tenant: str, network: str, name: str, ip=None,
                    mac: str | None = None, port_security: bool = True, security_groups=(),
                    qos=None) -> dict:
        """`ip`: an address or a list of them (at most one IPv4, IPv6 from the network's IPv6
        prefix); a family with none given gets one allocated from its prefix.
        security_groups: names (or TENANT/NAME) of groups of the port's tenant; none given
        with port security on means the tenant's `default` group; port security off, no groups.
        qos: the API's qos object (topology/qos.py) or None."""
        validate.name("port", name)
        limits = port_qos.parse(qos)
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
            ix = self._ix
            key = (tenant, network)
            net_id = ix.net.get(key)
            if net_id is None:
                if tenant not in ix.tenant:
                    raise NotFound(f"no tenant named {tenant!r}")
                raise NotFound(f"no network {tenant}/{network}")
            if (tenant, network, name) in ix.port:
                raise Conflict(f"port {tenant}/{network}/{name} already exists")
            self._check_groups(tenant, groups)
            net = self._rec("Network", net_id)
            if net.external:
                raise WeftError(f"network {tenant}/{network} is external: VMs do not plug into it "
                                f"(use a floating IP: `weft fip create`)")
            cidr = validate.cidr(net.cidr)
            cidr6 = validate.cidr6(net.cidr6) if net.cidr6 else None
            gw = net.gateway
            taken = ix.ips.get(key, {})
            given4, given6 = validate.port_ips(ip or None, cidr, gw, cidr6, taken)
            if given4:
                the_ip = given4[0]
            else:
                the_ip, floor = validate.allocate_ip_from(cidr, gw, taken, ix.ip_floor.get(key, 0))
                ix.ip_floor[key] = floor        # every address below it is taken
            ips6 = given6 or ([validate.allocate_ip6(cidr6, taken)] if cidr6 is not None else [])
            if mac and (mac in ix.macs or mac in self._pending["macs"]):
                raise Conflict(f"MAC {mac} is already used by another port")
            the_mac = mac or self._alloc_mac()
            row = txn.insert(self.idl.tables["Port"])
            row.tenant, row.network, row.name = tenant, network, name
            row.mac, row.ips = the_mac, [the_ip, *ips6]
            row.port_security = port_security
            row.security_groups = groups
            if limits is not None:
                row.qos = limits.as_map()
            return {"tenant": tenant, "network": network, "name": name, "mac": the_mac,
                    "ip": the_ip, "prefixlen": cidr.prefixlen, "gateway": gw,
                    "ips": [the_ip, *ips6], "ip6": ips6[0] if ips6 else None,
                    "prefixlen6": cidr6.prefixlen if cidr6 is not None else None,
                    "link_local": addresses.link_local(the_mac),
                    "port_security": port_security, "security_groups": groups,
                    "qos": limits.view() if limits else None,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_port(self, tenant: str, network: str, name: str) -> dict:
        def build(txn):
            port_id = self._ix.port.get((tenant, network, name))
            if port_id is None:
                raise NotFound(f"no port {tenant}/{network}/{name}")
            self._delete_port_rows(port_id)
            return {"port": f"{tenant}/{network}/{name}", "id": port_id, "deleted": True}
        return self._transact(build)

    def update_port(self, tenant: str, network: str, name: str, security_groups=None,
                    port_security: bool | None = None, qos=port_qos.KEEP) -> dict:
        """`qos`: the port's new QoS as a whole (the API's object; None removes it; KEEP leaves it).
        Replace the port's security groups (None keeps them, [] removes them all) and/or turn
        its port security on or off. Port security off needs no groups; turning it on with no
        groups given and none on the port gives it the tenant's `default` group."""
        ref = f"{tenant}/{network}/{name}"
        if port_security is not None:
            port_security = self._bool(port_security, "port_security")
        groups = (None if security_groups is None
                  else validate.group_names(security_groups, tenant, f"port {ref}"))
        limits = qos if qos is port_qos.KEEP else port_qos.parse(qos)

        def build(txn):
            port_id = self._ix.port.get((tenant, network, name))
            if port_id is None:
                raise NotFound(f"no port {ref}")
            row = self._row("Port", port_id)
            if limits is not port_qos.KEEP:
                new_qos = limits.as_map() if limits is not None else {}
                if new_qos != dict(row.qos):
                    row.qos = new_qos
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
            return {"port": ref, "id": port_id, "port_security": on, "security_groups": new}
        return self._transact(build)

    @staticmethod
    def _bool(value, what: str) -> bool:
        if not isinstance(value, bool):
            raise WeftError(f"invalid {what} {value!r}: expected true or false")
        return value

    def _delete_port_rows(self, port_id: str) -> None:
        self._release_fip(port_id)
        binding = self._ix.binding.get(port_id)
        if binding is not None:
            self._row("Binding", binding).delete()
        self._row("Port", port_id).delete()

    # routers
    def _router(self, tenant: str, name: str):
        """The IDL row of router TENANT/NAME (NotFound naming what is missing)."""
        router = self._ix.router.get((tenant, name))
        if router is None:
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no router {tenant}/{name}")
        return self._row("Router", router)

    def _router_networks(self, tenant: str, name: str) -> list:
        """The Network records attached to router TENANT/NAME."""
        return [self._rec("Network", u) for u in self._ix.nets_of_router.get((tenant, name), ())]

    def _network_row(self, tenant: str, name: str):
        net = self._ix.net.get((tenant, name))
        if net is None:
            raise NotFound(f"no network {tenant}/{name}")
        return self._row("Network", net)

    def create_router(self, tenant: str, name: str) -> dict:
        validate.name("router", name)

        def build(txn):
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if (tenant, name) in self._ix.router:
                raise Conflict(f"router {tenant}/{name} already exists")
            mac = self._alloc_mac()
            key = self._alloc_vni(self._ix.router_keys, "router_keys")
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
                self._check_no_fips(tenant, net.name, f"delete router {tenant}/{name}")
                self._row("Network", net.uuid).router = []
            row.delete()
            return {"router": f"{tenant}/{name}", "deleted": True}
        return self._transact(build)

    def attach(self, tenant: str, router: str, network: str) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            net = self._network_row(tenant, network)
            if net.external:
                raise WeftError(f"network {tenant}/{network} is external: give it to the router as "
                                f"its gateway (`weft router gateway set {tenant}/{router} {tenant}/{network}`)")
            current = _opt(net.router)
            if current == router:
                raise Conflict(f"network {tenant}/{network} is already attached to {tenant}/{router}")
            if current:
                raise Conflict(f"network {tenant}/{network} is attached to router {tenant}/{current}; "
                               f"a network attaches to one router (detach it first)")
            mine = [validate.cidr(net.cidr)] + [validate.cidr6(c) for c in net.cidr6]
            for other in sorted(self._router_networks(tenant, router), key=lambda n: n.name):
                theirs = [validate.cidr(other.cidr)] + ([validate.cidr6(other.cidr6)] if other.cidr6 else [])
                for cidr in mine:
                    for their in theirs:
                        if cidr.version == their.version and cidr.first <= their.last and \
                                their.first <= cidr.last:
                            raise Conflict(f"network {tenant}/{network} ({cidr.cidr}) overlaps "
                                           f"{tenant}/{other.name} ({their.cidr}) on router "
                                           f"{tenant}/{router}")
            net.router = [router]
            return {"router": f"{tenant}/{router}", "network": f"{tenant}/{network}",
                    "gateway": _opt(net.gateway), "mac": rrow.mac}
        return self._transact(build)

    def detach(self, tenant: str, router: str, network: str) -> dict:
        def build(txn):
            rrow = self._router(tenant, router)
            net = self._network_row(tenant, network)
            if _opt(net.router) != router:
                raise Conflict(f"network {tenant}/{network} is not attached to {tenant}/{router}")
            self._check_no_fips(tenant, network, f"detach {tenant}/{network}")
            gone = [c for c, via in rrow.routes.items()
                    if validate.in_network(validate.next_hop(via), net.cidr, _opt(net.cidr6))]
            if gone:
                raise Conflict(f"static route(s) {', '.join(sorted(gone))} of {tenant}/{router} go via "
                               f"{tenant}/{network}; delete them first")
            net.router = []
            return {"router": f"{tenant}/{router}", "network": f"{tenant}/{network}", "detached": True}
        return self._transact(build)

    def add_route(self, tenant: str, router: str, cidr: str, via: str) -> dict:
        prefix = validate.route_cidr(cidr)
        nexthop = validate.next_hop(via)
        if nexthop.version != prefix.version:
            raise WeftError(f"next hop {via} is IPv{nexthop.version} but the route to {cidr} is "
                            f"IPv{prefix.version}")
        dest = validate.route_text(prefix)
        hop = validate.text6(nexthop) if nexthop.version == 6 else str(nexthop)

        def build(txn):
            rrow = self._router(tenant, router)
            if dest in rrow.routes:
                raise Conflict(f"router {tenant}/{router} already has a route to {dest} "
                               f"(via {rrow.routes[dest]}); delete it first")
            nets = self._router_networks(tenant, router)
            if not any(validate.in_network(nexthop, n.cidr, n.cidr6) for n in nets):
                where = "IPv6 prefix of the networks" if nexthop.version == 6 else "network"
                raise WeftError(f"next hop {hop} is not inside any {where} attached to "
                                f"{tenant}/{router}")
            rrow.setkey("routes", dest, hop)
            return {"router": f"{tenant}/{router}", "cidr": dest, "via": hop}
        return self._transact(build)

    def delete_route(self, tenant: str, router: str, cidr: str) -> dict:
        dest = validate.route_text(validate.route_cidr(cidr))

        def build(txn):
            rrow = self._router(tenant, router)
            if dest not in rrow.routes:
                raise NotFound(f"router {tenant}/{router} has no route to {dest}")
            rrow.delkey("routes", dest)
            return {"router": f"{tenant}/{router}", "cidr": dest, "deleted": True}
        return self._transact(build)

    # security groups
    def _group(self, tenant: str, name: str):
        """The IDL row of group TENANT/NAME (NotFound naming what is missing)."""
        group = self._ix.group.get((tenant, name))
        if group is None:
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r}")
            raise NotFound(f"no security group {tenant}/{name}")
        return self._row("Security_Group", group)

    def _check_groups(self, tenant: str, names) -> None:
        """Every name is a security group of `tenant` (call inside a transaction's build)."""
        have = self._ix.groups_of_tenant.get(tenant, {})
        missing = [n for n in names if n not in have]
        if missing:
            if tenant not in self._ix.tenant:
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
        """The tenant's `default` group and its rules, with fresh keys."""
        group = txn.insert(self.idl.tables["Security_Group"])
        group.tenant, group.name = tenant, validate.DEFAULT_SG
        for fields in validate.default_sg_rules():
            self._insert_rule(txn, tenant, validate.DEFAULT_SG, fields, self._alloc_rule_key())
        return group

    def _upgrade(self) -> None:
        """A database from before security groups: give every tenant its `default` group and
        every port of such a tenant with port security on and no groups that group, as weft does
        for new tenants and ports (nothing to do, no transaction)."""
        def legacy():
            return sorted(t for t in self._ix.tenant if (t, validate.DEFAULT_SG) not in self._ix.group)

        with self.lock:
            if not legacy():
                return

        def build(txn):
            tenants = legacy()
            ports = [self._rec("Port", u) for t in tenants for u in self._ix.ports_of_tenant.get(t, ())]
            for tenant in tenants:
                self._insert_default_group(txn, tenant)
            for port in ports:
                if port.port_security and not port.security_groups:
                    self._row("Port", port.uuid).security_groups = [validate.DEFAULT_SG]
            return {"tenants": tenants}
        done = self._transact(build)
        LOG.info("gave tenant(s) %s their default security group", ", ".join(done["tenants"]))

    def create_sg(self, tenant: str, name: str) -> dict:
        """A new group of the tenant, with no rule (add them with add_rule): a port whose only
        group it is sends and receives nothing until rules admit it."""
        validate.name("security group", name)

        def build(txn):
            if tenant not in self._ix.tenant:
                raise NotFound(f"no tenant named {tenant!r} (create it with `weft tenant create {tenant}`)")
            if (tenant, name) in self._ix.group:
                raise Conflict(f"security group {tenant}/{name} already exists")
            row = txn.insert(self.idl.tables["Security_Group"])
            row.tenant, row.name = tenant, name
            return {"tenant": tenant, "name": name, "ref": f"{tenant}/{name}",
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def delete_sg(self, tenant: str, name: str) -> dict:
        def build(txn):
            ix = self._ix
            row = self._group(tenant, name)
            if name == validate.DEFAULT_SG:
                raise Conflict(f"security group {tenant}/{name} is the tenant's default group: it is "
                               f"deleted only with the tenant")
            users = sorted(self._rec("Port", u).ref for u in ix.ports_of_group.get((tenant, name), ()))
            if users:
                raise Conflict(f"security group {tenant}/{name} is used by port(s) {', '.join(users)}; "
                               f"take it off them first (`weft port update`)")
            referrers = sorted({f"{tenant}/{group}" for _t, group, _r in
                                (self._rec("SG_Rule", u) for u in ix.rules_by_remote.get((tenant, name), ()))
                                if group != name})
            if referrers:
                raise Conflict(f"security group {tenant}/{name} is the remote group of rules of "
                               f"{', '.join(referrers)}; delete those rules first")
            group_id = str(row.uuid)
            for u in list(ix.rules_of_group.get((tenant, name), {})):
                self._row("SG_Rule", u).delete()
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
            same = validate.rule_identity(fields)
            for rule in self._ix.rules_of_group.get((tenant, sg), {}).values():
                if validate.rule_identity(rule) == same:
                    raise Conflict(f"security group {tenant}/{sg} already has this rule ({rule.uuid})")
            key = self._alloc_rule_key()
            row = self._insert_rule(txn, tenant, sg, fields, key)
            return {"tenant": tenant, "security_group": sg, "key": key, **fields,
                    "_inserted": {"id": row.uuid}}
        return self._transact(build)

    def create_groups(self, tenant: str, groups: list[dict], members: dict | None = None) -> dict:
        """Bulk, in ONE transaction: new groups [{name, rules: [rule fields]}] of `tenant` (a rule's
        remote_sg may name a group created here) and, with `members` {port ref: [group names]},
        those ports' groups replaced. Everything is checked first: nothing is written unless all
        of it can be (`weft sg suggest --apply`)."""
        members = members or {}
        names, checked = [], []
        for g in groups:
            name = validate.name("security group", g.get("name"))
            if name in names:
                raise WeftError(f"security group {tenant}/{name} is given twice")
            names.append(name)
            rules, seen = [], set()
            for fields in g.get("rules", ()):
                rule = validate.sg_rule(**fields)
                if validate.rule_identity(rule) in seen:
                    raise WeftError(f"security group {tenant}/{name} is given the same rule twice")
                seen.add(validate.rule_identity(rule))
                rules.append(rule)
            checked.append((name, rules))
        ports = {}
        for ref, group_names in members.items():
            t, net, port = validate.split_ref(ref, 3, "port")
            if t != tenant:
                raise WeftError(f"port {ref} is not a port of tenant {tenant}")
            ports[ref] = (net, port, validate.group_names(group_names, tenant, f"port {ref}"))

        def build(txn):
            ix = self._ix
            if tenant not in ix.tenant:
                raise NotFound(f"no tenant named {tenant!r}")
            taken = sorted(n for n in names if (tenant, n) in ix.group)
            if taken:
                raise Conflict(f"security group(s) {', '.join(f'{tenant}/{n}' for n in taken)} "
                               f"already exist: choose another prefix")
            have = set(ix.groups_of_tenant.get(tenant, {})) | set(names)
            for name, rules in checked:
                missing = sorted({r["remote_sg"] for r in rules if r["remote_sg"]} - have)
                if missing:
                    raise NotFound(f"no security group {', '.join(f'{tenant}/{m}' for m in missing)} "
                                   f"(a remote group of {tenant}/{name})")
            rows = {}
            for ref, (net, port, group_names) in ports.items():
                port_id = ix.port.get((tenant, net, port))
                if port_id is None:
                    raise NotFound(f"no port {ref}")
                row = self._row("Port", port_id)
                if not row.port_security:
                    raise WeftError(f"port {ref} has port security off: it cannot have security groups")
                missing = sorted(set(group_names) - have)
                if missing:
                    raise NotFound(f"no security group {', '.join(f'{tenant}/{m}' for m in missing)} "
                                   f"(for port {ref})")
                rows[ref] = (row, sorted(group_names))
            created = []
            for name, rules in checked:
                grow = txn.insert(self.idl.tables["Security_Group"])
                grow.tenant, grow.name = tenant, name
                for fields in rules:
                    self._insert_rule(txn, tenant, name, fields, self._alloc_rule_key())
                created.append({"ref": f"{tenant}/{name}", "rules": len(rules)})
            assigned = []
            for ref, (row, group_names) in sorted(rows.items()):
                before = sorted(row.security_groups)
                row.security_groups = group_names
                assigned.append({"port": ref, "before": before, "after": group_names})
            return {"tenant": tenant, "created": created, "assigned": assigned}
        return self._transact(build)

    def delete_rule(self, tenant: str, sg: str, rule_id: str) -> dict:
        def build(txn):
            self._group(tenant, sg)
            found = self._rec("SG_Rule", rule_id)
            if found is None or found[:2] != (tenant, sg):
                raise NotFound(f"security group {tenant}/{sg} has no rule {rule_id}")
            self._row("SG_Rule", rule_id).delete()
            return {"security_group": f"{tenant}/{sg}", "id": rule_id, "key": found[2].key, "deleted": True}
        return self._transact(build)

    # hosts
    def add_host(self, name: str, tunnel_ip: str, ovsdb_remote: str, mgmt_ip: str | None = None,
                 providers=None) -> dict:
        validate.name("host", name)
        provs = _providers(providers)
        ip = str(validate.address(tunnel_ip, "tunnel IP"))
        mgmt = str(validate.address(mgmt_ip, "management IP")) if mgmt_ip else None
        if not ovsdb_remote or not ovsdb_remote.startswith(("unix:", "tcp:", "ssl:")):
            raise WeftError(f"invalid OVSDB remote {ovsdb_remote!r}: expected unix:PATH, "
                            f"tcp:IP:PORT or ssl:IP:PORT")

        def build(txn):
            host = self._ix.host.get(name)
            if host is not None:
                old = self._rec("Host", host)
                raise Conflict(f"host {name!r} already exists (tunnel IP {old.tunnel_ip}, OVSDB "
                               f"{old.ovsdb}): `weft host update` changes it")
            other = self._ix.host_by_ip.get(ip)
            if other is not None:
                raise Conflict(f"tunnel IP {ip} is already used by host {self._rec('Host', other).name}")
            row = txn.insert(self.idl.tables["Host"])
            row.name = name
            row.tunnel_ip, row.ovsdb = ip, ovsdb_remote
            row.mgmt_ip = [mgmt] if mgmt else []
            row.providers = provs
            return {"name": name, "tunnel_ip": ip, "ovsdb": ovsdb_remote, "mgmt_ip": mgmt,
                    "providers": provs}
        return self._transact(build)

    def update_host(self, name: str, tunnel_ip: str | None = None, ovsdb_remote: str | None = None,
                    mgmt_ip: str | None = None, clear_mgmt_ip: bool = False, providers=None) -> dict:
        """Change what is given of an existing host (what is not given stays as it is)."""
        validate.name("host", name)
        provs = None if providers is None else _providers(providers)
        ip = str(validate.address(tunnel_ip, "tunnel IP")) if tunnel_ip is not None else None
        mgmt = str(validate.address(mgmt_ip, "management IP")) if mgmt_ip is not None else None
        if ovsdb_remote is not None and not ovsdb_remote.startswith(("unix:", "tcp:", "ssl:")):
            raise WeftError(f"invalid OVSDB remote {ovsdb_remote!r}: expected unix:PATH, "
                            f"tcp:IP:PORT or ssl:IP:PORT")
        if mgmt is not None and clear_mgmt_ip:
            raise WeftError("give a management IP or clear it, not both")
        if ip is None and ovsdb_remote is None and mgmt is None and not clear_mgmt_ip and provs is None:
            raise WeftError("nothing to update: give tunnel_ip, ovsdb, mgmt_ip and/or providers")

        def build(txn):
            host = self._ix.host.get(name)
            if host is None:
                raise NotFound(f"no host named {name!r}")
            if ip is not None:
                other = self._ix.host_by_ip.get(ip)
                if other is not None and other != host:
                    raise Conflict(f"tunnel IP {ip} is already used by host {self._rec('Host', other).name}")
            row = self._row("Host", host)
            if ip is not None:
                row.tunnel_ip = ip
            if ovsdb_remote is not None:
                row.ovsdb = ovsdb_remote
            if mgmt is not None or clear_mgmt_ip:
                row.mgmt_ip = [mgmt] if mgmt else []
            if provs is not None:
                row.providers = provs
            old = self._rec("Host", host)
            return {"name": name, "tunnel_ip": ip or old.tunnel_ip, "ovsdb": ovsdb_remote or old.ovsdb,
                    "mgmt_ip": mgmt if (mgmt is not None or clear_mgmt_ip) else old.mgmt_ip}
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
                value = getattr(new, field)
                setattr(row, field, [value] if field == "retention" else value)  # optional column
            return dataclasses.asdict(new)
        return self._transact(build)

    def delete_host(self, name: str) -> dict:
        def build(txn):
            host = self._ix.host.get(name)
            if host is None:
                raise NotFound(f"no host named {name!r}")
            for u in list(self._ix.bindings_of_host.get(name, ())):
                self._row("Binding", u).delete()
            self._row("Host", host).delete()
            return {"name": name, "deleted": True}
        return self._transact(build)

    # bindings (written by the southbound watcher)
    def sync_bindings(self, host: str, bindings: dict[str, int]) -> None:
        """Make the Binding rows of `host` equal `bindings` (port uuid -> ofport), in
        O(bindings of the host + given)."""
        self.sync_bindings_of({host: bindings})

    def sync_bindings_of(self, hosts: dict[str, dict[str, int]]) -> None:
        """sync_bindings for several hosts in one transaction (a cold start reports thousands)."""
        def build(txn):
            ix = self._ix
            for host, bindings in hosts.items():
                want = {p: o for p, o in bindings.items() if p in ix.rec["Port"]}
                for u in list(ix.bindings_of_host.get(host, ())):
                    if self._rec("Binding", u).port not in want:
                        self._row("Binding", u).delete()
                for port, ofport in want.items():
                    existing = ix.binding.get(port)
                    if existing is None:
                        brow = txn.insert(self.idl.tables["Binding"])
                        brow.port, brow.host, brow.ofport = port, host, ofport
                        continue
                    rec = self._rec("Binding", existing)
                    if rec.host != host or rec.ofport != ofport:
                        brow = self._row("Binding", existing)
                        brow.host, brow.ofport = host, ofport
            return {}
        self._transact(build)
