"""The network model: plain, immutable records for tenants, networks, ports, hosts and bindings.

Everything that decides flows reads these records and nothing else, so the flow compiler
stays a pure function of the model. Objects are referenced by name from the outside
(`TENANT/NET/PORT`) and by uuid inside; every record is a frozen dataclass so a model
snapshot can be shared between threads without copying.

A `Model` answers lookups by name in O(1) through its `ModelIndex` (networks, routers, ports,
security groups, their members, owners of flow cookies), built lazily once per snapshot or
handed over already built by the northbound store, which carries it from one snapshot to the
next for only the records that changed (`ModelIndex.updated`). Snapshots that share the same
record dicts (the engine's `dataclasses.replace(model, bindings=...)`) share that index.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from topology import addresses
from topology.qos import QoS
from topology.shardmap import writer_of


@dataclass(frozen=True)
class Tenant:
    uuid: str
    name: str


@dataclass(frozen=True)
class Network:
    uuid: str
    tenant: str          # tenant name
    name: str
    cidr: str            # e.g. "10.0.0.0/24"
    vni: int             # 24-bit tunnel key, allocated by weft, unique across tenants
    gateway: str | None = None
    dhcp: bool = True
    dns: tuple[str, ...] = ()
    router: str | None = None      # name of the tenant's router this network is attached to
    cidr6: str | None = None       # the network's IPv6 prefix besides its IPv4 one, e.g. "fd00:1::/64"
    external: bool = False         # maps onto the hosts' provider bridges (north-south, flows/northsouth.py)
    provider: str | None = None    # external only: the provider (physical network) name
    gateway_mac: str | None = None   # external only: the edge router's MAC, as weftd resolved it

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"

    @property
    def cidrs(self) -> tuple[str, ...]:
        """Its prefixes: IPv4 first, then IPv6 if it has one."""
        return (self.cidr,) if self.cidr6 is None else (self.cidr, self.cidr6)


@dataclass(frozen=True)
class Router:
    """A tenant's distributed logical router: it exists on every host where its networks are."""
    uuid: str
    tenant: str          # tenant name
    name: str
    mac: str             # the router's MAC on every attached network
    key: int             # 32-bit id, unique across tenants (the router register value)
    routes: tuple[tuple[str, str], ...] = ()   # static routes: (cidr, next hop)
    # its gateway on an external network (None: none): SNAT to gw_ip on host gw_host
    gw_network: str | None = None  # the external network, "TENANT/NET"
    gw_ip: str | None = None
    gw_mac: str | None = None      # the gateway's MAC on the external network
    gw_vni: int | None = None      # tunnel key carrying its outbound traffic to gw_host
    gw_host: str | None = None     # the host that does its SNAT

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Port:
    uuid: str
    tenant: str          # tenant name
    network: str         # network name (within the tenant)
    name: str
    mac: str             # lower-case, colon separated
    ips: tuple[str, ...]  # IPv4 (dotted) and IPv6 (RFC 5952) addresses, IPv4 first
    port_security: bool = True
    security_groups: tuple[str, ...] = ()   # security group names of the same tenant
    qos: QoS | None = None                  # rate limits and DSCP marking (flows/qos.py)

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.network}/{self.name}"

    @property
    def ipv4s(self) -> tuple[str, ...]:
        return addresses.ipv4s(self.ips)

    @property
    def ipv6s(self) -> tuple[str, ...]:
        """Its configured IPv6 addresses (not the link-local, which follows from the MAC)."""
        return addresses.ipv6s(self.ips)

    @property
    def link_local(self) -> str:
        return addresses.link_local(self.mac)



@dataclass(frozen=True)
class Rule:
    """One security-group rule (AWS/OpenStack semantics): what may start a connection."""
    uuid: str
    key: int             # 32-bit id, unique across tenants: the conntrack mark of what it admits
    direction: str       # "ingress" | "egress"
    proto: str = "any"   # "tcp" | "udp" | "icmp" | "any"
    port_min: int | None = None     # tcp/udp destination port range
    port_max: int | None = None
    icmp_type: int | None = None    # icmp only
    remote_cidr: str | None = None  # the peer's addresses ...
    remote_sg: str | None = None    # ... or the members of this group of the same tenant
    ethertype: str = "ipv4"


@dataclass(frozen=True)
class SecurityGroup:
    uuid: str
    tenant: str
    name: str
    rules: tuple[Rule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Host:
    name: str
    tunnel_ip: str
    ovsdb: str           # how to reach the host's Open vSwitch database, e.g. unix:/path/db.sock
    mgmt_ip: str | None = None   # the address its flow exporters send from, if not tunnel_ip
    providers: tuple[tuple[str, str], ...] = ()   # (provider name, its bridge), sorted by name


@dataclass(frozen=True)
class FloatingIP:
    """An address of an external network, 1:1 NATed to a port's IPv4 on the port's own host."""
    uuid: str
    tenant: str          # the tenant that owns it
    network: str         # the external network, "TENANT/NET"
    ip: str
    mac: str             # its MAC on the external network
    port: str | None = None    # the associated port's uuid


@dataclass(frozen=True)
class TrafficConfig:
    """What every host's br-int exports to weft's collectors (sampling 1 in N packets).

    Sampling defaults to 1 in 400, ovn-kubernetes' default for its IPFIX export: each sampled
    packet is an upcall in the switch, so sampling costs throughput; NetFlow counts every packet
    at no such cost."""
    sflow: bool = True
    sflow_sampling: int = 400
    sflow_polling: int = 10          # seconds between counter samples
    netflow: bool = True
    netflow_active_timeout: int = 10  # seconds
    ipfix: bool = True
    ipfix_sampling: int = 400
    drop_sample_pps: int = 100       # dropped packets sampled to weftd per second and host (a meter;
    drop_sample_burst: int = 25      # ... Neutron's default for its ACL logging: 100 pps, burst 25)
    retention: str = "7d"             # how long the flow history on disk is kept


@dataclass(frozen=True)
class Binding:
    """Which host a port's NIC sits on, learned from that host's OVSDB."""
    port: str            # port uuid
    host: str            # host name
    ofport: int          # OpenFlow port number of the NIC on the host's br-int


_EMPTY = MappingProxyType({})


class _Cow:
    """Copy-on-write view of one index map (and of its inner dicts) while an update is applied."""
    __slots__ = ("out", "src", "fresh", "sharded")

    def __init__(self, src: dict, sharded: bool = False):
        self.src, self.out, self.fresh, self.sharded = src, None, set(), sharded

    def top(self) -> dict:
        if self.out is None:
            if self.sharded:        # a ShardMap: the copy shares all but the shards written
                self.out = writer_of(self.src)
            else:
                self.out = dict(self.src)
        return self.out

    def result(self) -> dict:
        if self.out is None:
            return self.src
        return self.out.done() if self.sharded else self.out

    def put(self, key, value) -> None:
        self.top()[key] = value

    def drop(self, key, uuid: str) -> None:
        """Remove `key` if it still maps to the record `uuid` (a later record may own it)."""
        cur = self.src.get(key) if self.out is None else self.out.get(key)
        if cur is not None and cur.uuid == uuid:
            del self.top()[key]

    def _inner(self, outer) -> dict:
        top = self.top()
        if outer not in self.fresh:
            top[outer] = dict(top.get(outer, ()))
            self.fresh.add(outer)
        return top[outer]

    def put_in(self, outer, key, value) -> None:
        self._inner(outer)[key] = value

    def drop_in(self, outer, key, uuid: str) -> None:
        cur = (self.src if self.out is None else self.out).get(outer)
        if cur is None or key not in cur or cur[key].uuid != uuid:
            return
        inner = self._inner(outer)
        del inner[key]
        if not inner:
            del self.top()[outer]
            self.fresh.discard(outer)


class ModelIndex:
    """Lookups over one snapshot's networks, routers, ports and security groups; read-only once
    built (every map, inner maps included, may be shared with the next snapshot's index)."""

    MAPS = ("net", "nets_of_tenant", "nets_of_router", "router", "routers_of_tenant",
            "ports_of_net", "group", "groups_of_tenant", "members", "owners")
    OWNER_SHARDS = 256      # owners are split so that a change copies 1/256 of them
    SHARDED = frozenset({"ports_of_net", "members"})    # one entry per network / group: ShardMaps
    __slots__ = MAPS

    def __init__(self, **maps):
        for name in self.MAPS:
            setattr(self, name, maps.get(name, {}))
        # net: (tenant, name) -> Network      nets_of_tenant: tenant -> {name: Network}
        # nets_of_router: (tenant, router) -> {name: Network}
        # router: (tenant, name) -> Router     routers_of_tenant: tenant -> {name: Router}
        # ports_of_net: (tenant, net) -> {name: Port}   (no flat map: one less big copy per change)
        # group: (tenant, name) -> SecurityGroup   groups_of_tenant: tenant -> {name: SecurityGroup}
        # members: (tenant, group) -> {port uuid: Port}
        # owners: cookie object id % OWNER_SHARDS -> {object id: (label, ...)}

    @classmethod
    def build(cls, networks: dict, ports: dict, routers: dict, security_groups: dict) -> ModelIndex:
        """The index of a whole snapshot (O(model))."""
        return cls().updated([(None, n) for n in networks.values()], [(None, p) for p in ports.values()],
                             [(None, r) for r in routers.values()],
                             [(None, g) for g in security_groups.values()])

    def updated(self, networks=(), ports=(), routers=(), security_groups=()) -> ModelIndex:
        """A new index with changes applied, each a (old record or None, new record or None) pair
        (one pair per record at most);
        costs O(changes) plus a C-speed copy of the top-level maps the changes touch."""
        cow = {name: _Cow(getattr(self, name), name in self.SHARDED) for name in self.MAPS}
        for pass_ in ("drop", "put"):
            for old, new in networks:
                rec = old if pass_ == "drop" else new
                if rec is not None:
                    self._network(cow, rec, pass_ == "put")
            for old, new in routers:
                rec = old if pass_ == "drop" else new
                if rec is not None:
                    self._router(cow, rec, pass_ == "put")
            for old, new in ports:
                rec = old if pass_ == "drop" else new
                if rec is not None:
                    self._port(cow, rec, pass_ == "put")
            for old, new in security_groups:
                rec = old if pass_ == "drop" else new
                if rec is not None:
                    self._group(cow, rec, pass_ == "put")
        return ModelIndex(**{name: c.result() for name, c in cow.items()})

    @staticmethod
    def _owner(cow, uuid: str, label: str | None) -> None:
        from flows.cookies import object_id
        oid = object_id(uuid)
        owners, shard = cow["owners"], oid % ModelIndex.OWNER_SHARDS
        inner = owners._inner(shard)
        labels = tuple(lab for lab in inner.get(oid, ()) if lab.uuid != uuid)
        if label is not None:
            labels += (_Label(uuid, label),)
        if labels:
            inner[oid] = labels
        else:
            inner.pop(oid, None)
            if not inner:
                del owners.top()[shard]
                owners.fresh.discard(shard)

    def _network(self, cow, net: Network, put: bool) -> None:
        key = (net.tenant, net.name)
        if put:
            cow["net"].put(key, net)
            cow["nets_of_tenant"].put_in(net.tenant, net.name, net)
            if net.router:
                cow["nets_of_router"].put_in((net.tenant, net.router), net.name, net)
        else:
            cow["net"].drop(key, net.uuid)
            cow["nets_of_tenant"].drop_in(net.tenant, net.name, net.uuid)
            if net.router:
                cow["nets_of_router"].drop_in((net.tenant, net.router), net.name, net.uuid)
        self._owner(cow, net.uuid, f"network {net.ref}" if put else None)

    def _router(self, cow, router: Router, put: bool) -> None:
        key = (router.tenant, router.name)
        if put:
            cow["router"].put(key, router)
            cow["routers_of_tenant"].put_in(router.tenant, router.name, router)
        else:
            cow["router"].drop(key, router.uuid)
            cow["routers_of_tenant"].drop_in(router.tenant, router.name, router.uuid)
        self._owner(cow, router.uuid, f"router {router.ref}" if put else None)

    def _port(self, cow, port: Port, put: bool) -> None:
        key = (port.tenant, port.network)
        if put:
            cow["ports_of_net"].put_in(key, port.name, port)
            for group in port.security_groups:
                cow["members"].put_in((port.tenant, group), port.uuid, port)
        else:
            cow["ports_of_net"].drop_in(key, port.name, port.uuid)
            for group in port.security_groups:
                cow["members"].drop_in((port.tenant, group), port.uuid, port.uuid)
        self._owner(cow, port.uuid, f"port {port.ref}" if put else None)

    def _group(self, cow, group: SecurityGroup, put: bool) -> None:
        key = (group.tenant, group.name)
        if put:
            cow["group"].put(key, group)
            cow["groups_of_tenant"].put_in(group.tenant, group.name, group)
        else:
            cow["group"].drop(key, group.uuid)
            cow["groups_of_tenant"].drop_in(group.tenant, group.name, group.uuid)
        self._owner(cow, group.uuid, f"sg {group.ref}" if put else None)
        for rule in group.rules:
            self._owner(cow, rule.uuid, f"rule {rule.uuid} of {group.ref}" if put else None)

    def maps(self) -> dict:
        """Every map by name (for comparing two indexes)."""
        return {name: getattr(self, name) for name in self.MAPS}


@dataclass(frozen=True)
class _Label:
    uuid: str
    text: str


# Indexes of recent store snapshots, found again by the identity of the record dicts they
# index: a snapshot derived with dataclasses.replace(model, bindings=...) shares them.
_SHARED: tuple = ()
_SHARED_MAX = 4


def _index_key(model) -> tuple:
    return (model.networks, model.ports, model.routers, model.security_groups)


def derive(model, **changes):
    """`dataclasses.replace(model, **changes)` that keeps `model`'s index when the records it
    indexes (networks, ports, routers, groups) are the same dicts. The engine derives a model
    with its bindings from every store snapshot; without this the derived model finds its
    index only while the snapshot is among the last _SHARED_MAX shared ones, and a burst of
    writes that outruns the engine made it rebuild the whole index (O(ports)) per change."""
    import dataclasses
    new = dataclasses.replace(model, **changes)
    index = model.__dict__.get("index")
    if index is not None and all(a is b for a, b in zip(_index_key(new), _index_key(model))):
        new.__dict__["index"] = index
    return new


def share_index(model, index: ModelIndex) -> None:
    """Give `model` an index built elsewhere (the store carries it between snapshots)."""
    global _SHARED
    model.__dict__["index"] = index
    _SHARED = ((_index_key(model), index),) + _SHARED[:_SHARED_MAX - 1]


@dataclass(frozen=True)
class Model:
    """A consistent snapshot of the whole model, with O(1) lookups by name (see ModelIndex).

    Equality compares the record dicts only; the index and the per-snapshot caches live
    outside the dataclass fields. Treat every dict a lookup returns as read-only."""
    tenants: dict[str, Tenant] = field(default_factory=dict)      # by name
    networks: dict[str, Network] = field(default_factory=dict)    # by uuid
    ports: dict[str, Port] = field(default_factory=dict)          # by uuid
    hosts: dict[str, Host] = field(default_factory=dict)          # by name
    bindings: dict[str, Binding] = field(default_factory=dict)    # by port uuid
    # a migrating port's NIC on its destination, not active yet (flows/migration.py): by port uuid
    standby: dict[str, Binding] = field(default_factory=dict)
    routers: dict[str, Router] = field(default_factory=dict)      # by uuid
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)   # by uuid
    traffic: TrafficConfig = TrafficConfig()
    floating_ips: dict[str, FloatingIP] = field(default_factory=dict)   # by uuid

    @cached_property
    def index(self) -> ModelIndex:
        key = _index_key(self)
        for shared_key, index in _SHARED:
            if all(a is b for a, b in zip(shared_key, key)):
                return index
        return ModelIndex.build(self.networks, self.ports, self.routers, self.security_groups)

    @cached_property
    def _ports_at(self) -> dict[tuple[str, int], str]:
        """(host, ofport) -> port uuid, from the bindings (built on first use per snapshot)."""
        return {(b.host, b.ofport): port for port, b in self.bindings.items()}

    # -- lookups by name, O(1)
    def network(self, tenant: str, name: str) -> Network | None:
        return self.index.net.get((tenant, name))

    def network_of(self, port: Port) -> Network | None:
        return self.index.net.get((port.tenant, port.network))

    def router(self, tenant: str, name: str) -> Router | None:
        return self.index.router.get((tenant, name))

    def port_by_ref(self, tenant: str, network: str, name: str) -> Port | None:
        return self.index.ports_of_net.get((tenant, network), _EMPTY).get(name)

    def security_group(self, tenant: str, name: str) -> SecurityGroup | None:
        return self.index.group.get((tenant, name))

    def port_at(self, host: str, ofport: int) -> Port | None:
        """The port bound at `ofport` of `host`'s br-int (DHCP packet-ins)."""
        uuid = self._ports_at.get((host, ofport))
        return None if uuid is None else self.ports.get(uuid)

    # -- members, read-only dicts
    def ports_of_network(self, tenant: str, name: str) -> dict[str, Port]:
        """{port name: Port} of network TENANT/NAME (whether or not the network exists)."""
        return self.index.ports_of_net.get((tenant, name), _EMPTY)

    def networks_of_tenant(self, tenant: str) -> dict[str, Network]:
        return self.index.nets_of_tenant.get(tenant, _EMPTY)

    def networks_of_router(self, tenant: str, router: str) -> dict[str, Network]:
        return self.index.nets_of_router.get((tenant, router), _EMPTY)

    def routers_of_tenant(self, tenant: str) -> dict[str, Router]:
        return self.index.routers_of_tenant.get(tenant, _EMPTY)

    def security_groups_of_tenant(self, tenant: str) -> dict[str, SecurityGroup]:
        return self.index.groups_of_tenant.get(tenant, _EMPTY)

    def members_of_group(self, tenant: str, name: str) -> dict[str, Port]:
        """{port uuid: Port} of the ports of `tenant` that list group `name`."""
        return self.index.members.get((tenant, name), _EMPTY)

    # -- counts
    def port_count(self, tenant: str, network: str | None = None) -> int:
        """Ports of a network, or of all the tenant's networks (O(networks of the tenant))."""
        ports = self.index.ports_of_net
        if network is not None:
            return len(ports.get((tenant, network), ()))
        return sum(len(ports.get((tenant, n), ())) for n in self.networks_of_tenant(tenant))

    def network_count(self, tenant: str) -> int:
        return len(self.networks_of_tenant(tenant))

    def owner(self, object_id: int) -> str | None:
        """What a flow cookie's owner id names ("port red/net/a", ...; first of any collision)."""
        found = self.index.owners.get(object_id % ModelIndex.OWNER_SHARDS, _EMPTY).get(object_id)
        return None if not found else min(found, key=lambda lab: lab.uuid).text
