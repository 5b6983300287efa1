"""Tracked changes of the northbound IDL: which rows changed, their records, and the store's write indexes.

`TrackedIdl` records the uuids the server changed per table (the IDL's `notify` hook) and
whether the IDL reloaded everything (first load, reconnect: it then clears its tables
without per-row notices), so the store rebuilds only the changed records. `WriteIndex`
keeps the lookups the store's validation needs (names, addresses, MACs, VNIs, rule keys),
maintained from the same changes, so no write scans a table.
"""
from __future__ import annotations

import socket
import warnings
from collections import Counter

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl

from topology import addresses, qos
from topology.model import Binding, FloatingIP, Host, Network, Port, Router, Rule, Tenant, TrafficConfig

TABLES = ("Tenant", "Network", "Port", "Host", "Binding", "Router", "Security_Group", "SG_Rule",
          "Traffic_Config", "Floating_IP")


def opt(value):
    """An optional OVSDB column value (a 0/1-element list) as a value or None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class TrackedIdl(ovs.db.idl.Idl):
    """An IDL that remembers the rows the server changed since the last `take()`."""

    def __init__(self, *args, **kwargs):
        self.changed: dict[str, set] = {}
        self.resync = True          # everything must be rebuilt (first load, reconnect)
        super().__init__(*args, **kwargs)

    side_changed: set = frozenset()   # tables outside the model (API tokens) changed

    def notify(self, event, row, updates=None):
        name = row._table.name
        if name in TABLES:
            self.changed.setdefault(name, set()).add(row.uuid)
        else:
            self.side_changed = self.side_changed | {name}

    def _Idl__clear(self):          # the monitor reply replaces every row without notices
        self.resync = True
        super()._Idl__clear()

    def restart_fsm(self):          # reconnected: the server may resend everything
        self.resync = True
        super().restart_fsm()

    def take(self) -> tuple[dict[str, set], bool]:
        """(uuids changed per table, whether a full rebuild is needed) since the last take."""
        changed, resync = self.changed, self.resync
        self.changed, self.resync = {}, False
        return changed, resync

    def take_side(self) -> set:
        """The tables outside the model that changed since the last call."""
        side, self.side_changed = self.side_changed, frozenset()
        return side


# ---- records from rows ---------------------------------------------------------------------------
def record(table: str, row):
    """The model record of an IDL row (SG_Rule: (tenant, group, Rule); Security_Group: (tenant, name))."""
    return _BUILDERS[table](row)


def _group(r):
    return (r.tenant, r.name)


def _rule(r):
    return (r.tenant, r.group, Rule(str(r.uuid), r.key, r.direction, r.proto, opt(r.port_min),
                                    opt(r.port_max), opt(r.icmp_type), opt(r.remote_cidr),
                                    opt(r.remote_sg), r.ethertype))


_BUILDERS = {
    "Tenant": lambda r: Tenant(str(r.uuid), r.name),
    "Network": lambda r: Network(str(r.uuid), r.tenant, r.name, r.cidr, r.vni, opt(r.gateway), r.dhcp,
                                 tuple(sorted(r.dns)), opt(r.router), opt(r.cidr6), bool(r.external),
                                 opt(r.provider), opt(r.gateway_mac)),
    "Port": lambda r: Port(str(r.uuid), r.tenant, r.network, r.name, r.mac, addresses.ordered(r.ips),
                           r.port_security, tuple(sorted(r.security_groups)),
                           qos.from_map(getattr(r, "qos", None))),
    "Host": lambda r: Host(r.name, r.tunnel_ip, r.ovsdb, opt(r.mgmt_ip), tuple(sorted(r.providers.items()))),
    "Binding": lambda r: Binding(r.port, r.host, r.ofport),
    "Router": lambda r: Router(str(r.uuid), r.tenant, r.name, r.mac, r.key, tuple(sorted(r.routes.items())),
                               opt(r.gw_network), opt(r.gw_ip), opt(r.gw_mac), opt(r.gw_vni), opt(r.gw_host)),
    "Floating_IP": lambda r: FloatingIP(str(r.uuid), r.tenant, r.network, r.ip, r.mac, opt(r.port)),
    "Security_Group": _group,
    "SG_Rule": _rule,
    "Traffic_Config": lambda r: TrafficConfig(r.sflow, r.sflow_sampling, r.sflow_polling, r.netflow,
                                              r.netflow_active_timeout, r.ipfix, r.ipfix_sampling,
                                              opt(r.drop_sample_pps) or TrafficConfig.drop_sample_pps,
                                              opt(r.drop_sample_burst) or TrafficConfig.drop_sample_burst,
                                              opt(r.retention) or "7d"),
}


# ---- write indexes -------------------------------------------------------------------------------
class HighSet:
    """A multiset of integers that knows its highest member (recomputed only when it leaves)."""

    def __init__(self):
        self.count: Counter = Counter()
        self._high = None           # None: unknown

    def add(self, value: int) -> None:
        self.count[value] += 1
        if self._high is not None and value > self._high:
            self._high = value

    def discard(self, value: int) -> None:
        left = self.count[value] - 1
        if left > 0:
            self.count[value] = left
            return
        self.count.pop(value, None)
        if value == self._high:
            self._high = None

    def highest(self, default: int) -> int:
        if self._high is None:
            self._high = max(self.count, default=None)
        return default if self._high is None else max(self._high, default)

    def __contains__(self, value) -> bool:
        return value in self.count

    def values(self) -> set:
        return set(self.count)


def ip_int(ip: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_aton(ip), "big")
    except (OSError, TypeError):
        return None


class WriteIndex:
    """Lookups over the store's rows for validation and allocation, kept from tracked changes.

    Keys are names as the rows hold them; values are row uuids (strings) unless said otherwise.
    Rows inserted by the transaction being built are not here (the store accounts for them)."""

    def __init__(self):
        self.rec: dict[str, dict[str, object]] = {t: {} for t in TABLES}   # table -> uuid -> record
        self.tenant: dict[str, str] = {}                   # name -> uuid
        self.net: dict[tuple, str] = {}                    # (tenant, name)
        self.nets_of_tenant: dict[str, set] = {}
        self.nets_of_router: dict[tuple, set] = {}         # (tenant, router)
        self.vnis = HighSet()
        self.port: dict[tuple, str] = {}                   # (tenant, network, name)
        self.ports_of_net: dict[tuple, set] = {}           # (tenant, network)
        self.ports_of_tenant: dict[str, set] = {}
        self.ports_of_group: dict[tuple, set] = {}         # (tenant, group)
        self.ips: dict[tuple, Counter] = {}                # (tenant, network) -> IPs in use
        self.ip_floor: dict[tuple, int] = {}               # (tenant, network) -> no free IP below
        self.macs: Counter = Counter()                     # ports' and routers' MACs
        self.router: dict[tuple, str] = {}                 # (tenant, name)
        self.routers_of_tenant: dict[str, set] = {}
        self.router_keys = HighSet()
        self.group: dict[tuple, str] = {}                  # (tenant, name)
        self.groups_of_tenant: dict[str, dict] = {}        # tenant -> {name: uuid}
        self.rules_of_group: dict[tuple, dict] = {}        # (tenant, group) -> {uuid: Rule}
        self.rules_of_tenant: dict[str, set] = {}
        self.rules_by_remote: dict[tuple, set] = {}        # (tenant, remote group) -> rule uuids
        self.rule_keys = HighSet()
        self.host: dict[str, str] = {}                     # name -> uuid
        self.host_by_ip: dict[str, str] = {}               # tunnel ip -> uuid
        self.binding: dict[str, str] = {}                  # port uuid -> binding row uuid
        self.bindings_of_host: dict[str, set] = {}
        self.externals: set = set()                        # external network uuids
        self.ext_ips: dict[str, Counter] = {}              # external "T/NET" -> IPs of gateways, FIPs
        self.gateways_on: dict[str, set] = {}              # external "T/NET" -> router uuids
        self.gateways_of_host: dict[str, set] = {}         # host -> routers it does SNAT for
        self.fips_of_net: dict[str, set] = {}              # external "T/NET" -> floating IP uuids
        self.fips_of_tenant: dict[str, set] = {}
        self.fip_by_ip: dict[str, str] = {}
        self.fip_of_port: dict[str, str] = {}              # port uuid -> floating IP uuid

    def set(self, table: str, uuid: str, new) -> object:
        """Replace the record of row `uuid` (None: deleted); returns the old record."""
        recs = self.rec[table]
        old = recs.pop(uuid, None)
        if old is not None:
            getattr(self, f"_{table.lower()}")(uuid, old, False)
        if new is not None:
            recs[uuid] = new
            getattr(self, f"_{table.lower()}")(uuid, new, True)
        if table == "Port" and old is not None:
            self._released(old)
        return old

    # each keeps its table's lookups: add=True indexes `rec`, add=False removes it
    def _tenant(self, uuid, rec, add):
        _one(self.tenant, rec.name, uuid, add)

    def _network(self, uuid, rec, add):
        key = (rec.tenant, rec.name)
        _one(self.net, key, uuid, add)
        _many(self.nets_of_tenant, rec.tenant, uuid, add)
        if rec.router:
            _many(self.nets_of_router, (rec.tenant, rec.router), uuid, add)
        (self.vnis.add if add else self.vnis.discard)(rec.vni)
        self.ip_floor.pop(key, None)
        if rec.external:
            (self.externals.add if add else self.externals.discard)(uuid)

    def _port(self, uuid, rec, add):
        key = (rec.tenant, rec.network)
        _one(self.port, (*key, rec.name), uuid, add)
        _many(self.ports_of_net, key, uuid, add)
        _many(self.ports_of_tenant, rec.tenant, uuid, add)
        for group in rec.security_groups:
            _many(self.ports_of_group, (rec.tenant, group), uuid, add)
        ips = self.ips.setdefault(key, Counter())
        for ip in rec.ips:
            _count(ips, ip, add)
        if not ips:
            del self.ips[key]
        _count(self.macs, rec.mac, add)

    def _released(self, old: Port) -> None:
        """Lower the network's free-IP floor to the addresses `old` gave back."""
        key = (old.tenant, old.network)
        floor = self.ip_floor.get(key)
        if floor is None:
            return
        taken = self.ips.get(key, ())
        for ip in old.ips:
            value = ip_int(ip)
            if ip not in taken and value is not None and value < floor:
                floor = value
        self.ip_floor[key] = floor

    def _host(self, uuid, rec, add):
        _one(self.host, rec.name, uuid, add)
        _one(self.host_by_ip, rec.tunnel_ip, uuid, add)

    def _binding(self, uuid, rec, add):
        _one(self.binding, rec.port, uuid, add)
        _many(self.bindings_of_host, rec.host, uuid, add)

    def _router(self, uuid, rec, add):
        _one(self.router, (rec.tenant, rec.name), uuid, add)
        _many(self.routers_of_tenant, rec.tenant, uuid, add)
        (self.router_keys.add if add else self.router_keys.discard)(rec.key)
        _count(self.macs, rec.mac, add)
        if rec.gw_network:
            _many(self.gateways_on, rec.gw_network, uuid, add)
            _count(self.ext_ips.setdefault(rec.gw_network, Counter()), rec.gw_ip, add)
            _count(self.macs, rec.gw_mac, add)
            (self.vnis.add if add else self.vnis.discard)(rec.gw_vni)
            if rec.gw_host:
                _many(self.gateways_of_host, rec.gw_host, uuid, add)

    def _floating_ip(self, uuid, rec, add):
        _many(self.fips_of_net, rec.network, uuid, add)
        _many(self.fips_of_tenant, rec.tenant, uuid, add)
        _one(self.fip_by_ip, rec.ip, uuid, add)
        _count(self.ext_ips.setdefault(rec.network, Counter()), rec.ip, add)
        _count(self.macs, rec.mac, add)
        if rec.port:
            _one(self.fip_of_port, rec.port, uuid, add)

    def _security_group(self, uuid, rec, add):
        tenant, name = rec
        _one(self.group, rec, uuid, add)
        names = self.groups_of_tenant.setdefault(tenant, {})
        if add:
            names[name] = uuid
        elif names.get(name) == uuid:
            del names[name]
        if not names:
            del self.groups_of_tenant[tenant]

    def _sg_rule(self, uuid, rec, add):
        tenant, group, rule = rec
        rules = self.rules_of_group.setdefault((tenant, group), {})
        if add:
            rules[uuid] = rule
        else:
            rules.pop(uuid, None)
        if not rules:
            del self.rules_of_group[(tenant, group)]
        _many(self.rules_of_tenant, tenant, uuid, add)
        if rule.remote_sg is not None:
            _many(self.rules_by_remote, (tenant, rule.remote_sg), uuid, add)
        (self.rule_keys.add if add else self.rule_keys.discard)(rule.key)

    def _traffic_config(self, uuid, rec, add):
        pass


def _one(index: dict, key, uuid: str, add: bool) -> None:
    if add:
        index[key] = uuid
    elif index.get(key) == uuid:
        del index[key]


def _many(index: dict, key, uuid: str, add: bool) -> None:
    if add:
        index.setdefault(key, set()).add(uuid)
        return
    members = index.get(key)
    if members is not None:
        members.discard(uuid)
        if not members:
            del index[key]


def _count(counter: Counter, key, add: bool) -> None:
    if add:
        counter[key] += 1
    elif counter.get(key, 0) > 1:
        counter[key] -= 1
    else:
        counter.pop(key, None)
