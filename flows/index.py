"""The compiler's index of a model snapshot, built once, then updated incrementally per change.

A network is keyed by `(tenant name, network name)` (a NetKey), because that is how ports refer
to it. The index holds:

* `net_by_key`   NetKey -> Network (raises ValueError for two networks with one key or one VNI)
* `ports_by_key` NetKey -> {port uuid: Port}, whether or not the network exists
* `local`        host name -> {port uuid: (Port, Binding)} for every bound port that exists
* `standby`      host name -> {port uuid: (Port, Binding)}: migrating ports' destination NICs,
                 not active yet (a binding change covers them: `ModelDiff.bindings`)

Everything else (which hosts hold a network's ports, the flows a network contributes) is derived
from those per network and cached by the compiler in `fragments`, which `updated()` carries over
for every network the change did not touch.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, compress
from operator import is_not

from topology.model import Binding, Model, Network, Port
from topology.shardmap import ShardCache, ShardMap, writer_of

NetKey = tuple[str, str]


@dataclass(frozen=True)
class ModelDiff:
    """Keys whose record was added, removed or changed between two models, per collection."""
    ports: frozenset[str]
    bindings: frozenset[str]
    networks: frozenset[str]
    hosts: frozenset[str]
    routers: frozenset[str] = frozenset()
    security_groups: frozenset[str] = frozenset()
    floating_ips: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.ports or self.bindings or self.networks or self.hosts or self.routers
                    or self.security_groups or self.floating_ips)


def diff_models(old: Model, new: Model) -> ModelDiff:
    """What changed; O(model) but in C for records shared by both snapshots (the common case)."""
    return ModelDiff(_changed(old.ports, new.ports),
                     _changed(old.bindings, new.bindings) | _changed(old.standby, new.standby),
                     _changed(old.networks, new.networks), _changed(old.hosts, new.hosts),
                     _changed(old.routers, new.routers),
                     _changed(old.security_groups, new.security_groups),
                     _changed(old.floating_ips, new.floating_ips))


def _changed(old: dict, new: dict) -> frozenset:
    if old is new:
        return frozenset()
    if isinstance(old, ShardMap) and isinstance(new, ShardMap):
        return frozenset(new.changed_keys(old, _changed))     # only the shards not shared
    get = old.get
    candidates = list(compress(new, map(is_not, map(get, new), new.values())))
    changed = {k for k in candidates if get(k) != new[k]}
    added = sum(1 for k in candidates if k not in old)
    if len(new) - added != len(old):        # some keys of old are gone
        changed.update(old.keys() - new.keys())
    return frozenset(changed)


def net_key(port: Port) -> NetKey:
    return (port.tenant, port.network)


class CompilerIndex:
    """Lookups for compiling one model; treat as read-only (the fragment cache fills itself)."""

    def __init__(self, model: Model):
        self.model = model
        self.net_by_key: dict[NetKey, Network] = {}
        self._vni_owner: dict[int, str] = {}
        for net in model.networks.values():
            self._add_network(self.net_by_key, self._vni_owner, net)
        by_key: dict[NetKey, dict[str, Port]] = {}
        for uuid, port in model.ports.items():
            by_key.setdefault((port.tenant, port.network), {})[uuid] = port
        local: dict[str, dict[str, tuple[Port, Binding]]] = {}
        self.standby: dict[str, dict[str, tuple[Port, Binding]]] = {}
        ports = model.ports
        for by_host, bindings in ((local, model.bindings), (self.standby, model.standby)):
            for uuid, binding in bindings.items():
                port = ports.get(uuid)
                if port is not None:
                    by_host.setdefault(binding.host, {})[uuid] = (port, binding)
        # one entry per network and per host: sharded, so that an update copies the shards it
        # writes, not the whole map (a dict copy of 5,000 hosts cost ~0.5 ms in weftd's heap)
        self.ports_by_key: ShardMap = ShardMap(by_key)
        self.local: ShardMap = ShardMap(local)
        self._index_routers()
        self.fragments: ShardCache = ShardCache()
        self.parent: Model | None = None        # the model `updated()` derived this index from
        self.diff: ModelDiff | None = None      # ... and what changed since it
        self.touched: frozenset = frozenset()   # NetKeys whose flows may differ from the parent's

    def _index_routers(self) -> None:
        """router_by_name: (tenant, router name) -> Router; nets_by_router: -> {NetKey}."""
        self.router_by_name = {(r.tenant, r.name): r for r in self.model.routers.values()}
        self.nets_by_router: dict[tuple[str, str], set[NetKey]] = {}
        self.nets_by_tenant: dict[str, set[NetKey]] = {}
        for key, net in self.net_by_key.items():
            self.nets_by_tenant.setdefault(net.tenant, set()).add(key)
            if net.router:
                self.nets_by_router.setdefault((net.tenant, net.router), set()).add(key)

    def router_group(self, key: NetKey) -> set[NetKey]:
        """The networks a packet from network `key` may be routed to (itself included)."""
        net = self.net_by_key.get(key)
        if net is None or not net.router or (net.tenant, net.router) not in self.router_by_name:
            return {key}
        return self.nets_by_router.get((net.tenant, net.router), set()) | {key}

    @staticmethod
    def _add_network(net_by_key: dict, vni_owner: dict, net) -> None:
        key = (net.tenant, net.name)
        if key in net_by_key and net_by_key[key].uuid != net.uuid:
            raise ValueError(f"two networks are named {net.tenant}/{net.name}: "
                             f"{net_by_key[key].uuid} and {net.uuid}")
        if not isinstance(net.vni, int) or not 0 < net.vni <= 0xFFFFFF:
            raise ValueError(f"network {net.tenant}/{net.name} has an invalid VNI {net.vni!r}")
        if vni_owner.get(net.vni, net.uuid) != net.uuid:
            raise ValueError(f"VNI {net.vni} is used by two networks ({vni_owner[net.vni]} and "
                             f"{net.uuid}): their traffic would mix")
        net_by_key[key] = net
        vni_owner[net.vni] = net.uuid

    # -- queries ------------------------------------------------------------------------------

    def host_names(self) -> list[str]:
        """Every host that has flows: the declared hosts and any host with a bound port."""
        return sorted(set(self.model.hosts) | set(self.local))

    def keys_on(self, host: str) -> set[NetKey]:
        """NetKeys with a port bound (or standing by) on `host` (the network may not exist)."""
        return {(p.tenant, p.network) for p, _ in chain(self.local.get(host, {}).values(),
                                                        self.standby.get(host, {}).values())}

    def hosts_on(self, key: NetKey) -> set[str]:
        """Hosts with a port of `key` bound (or standing by) on them (a superset of where the
        network is present)."""
        bindings, standby = self.model.bindings, self.model.standby
        hosts = {bindings[u].host for u in self.ports_by_key.get(key, ()) if u in bindings}
        if standby:
            hosts.update(standby[u].host for u in self.ports_by_key.get(key, ()) if u in standby)
        return hosts

    # -- incremental update -------------------------------------------------------------------

    def updated(self, new_model: Model, diff: ModelDiff | None = None) -> "CompilerIndex":
        """The index of `new_model`, sharing everything the change from self.model did not touch.

        Cost: the diff (C-speed over shared records) plus O(size of the touched networks).
        A caller that knows what changed (the store's tracked rows) passes `diff`, a superset
        of the keys whose records differ, and saves the O(model) comparison.
        `self` is left unchanged and stays valid for its own model.
        """
        old_model = self.model
        if diff is None:
            diff = diff_models(old_model, new_model)
        new = CompilerIndex.__new__(CompilerIndex)
        new.model, new.parent, new.diff = new_model, old_model, diff

        new.net_by_key, new._vni_owner = self.net_by_key, self._vni_owner
        if diff.networks:
            new.net_by_key, new._vni_owner = dict(self.net_by_key), dict(self._vni_owner)
            for uuid in diff.networks:
                net = old_model.networks.get(uuid)
                if net is not None:
                    key = (net.tenant, net.name)
                    if key in new.net_by_key and new.net_by_key[key].uuid == uuid:
                        del new.net_by_key[key]
                    if new._vni_owner.get(net.vni) == uuid:
                        del new._vni_owner[net.vni]
            for uuid in sorted(diff.networks):
                net = new_model.networks.get(uuid)
                if net is not None:
                    self._add_network(new.net_by_key, new._vni_owner, net)

        dirty = diff.ports | diff.bindings
        new.ports_by_key, new.local, new.standby = self.ports_by_key, self.local, self.standby
        if dirty:
            # the sharded maps copy only the shards written (a port created unbound leaves
            # `local`, one entry per host, shared), and each entry written is a copy of its
            # own; `standby` holds migrating ports only
            new.standby = dict(self.standby) if old_model.standby or new_model.standby else {}
            copied_keys, copied_hosts, copied_standby = set(), set(), set()
            by_key, local = writer_of(self.ports_by_key), writer_of(self.local)

            def ports_of(key):
                if key not in copied_keys:
                    copied_keys.add(key)
                    by_key[key] = dict(by_key.get(key, ()))
                return by_key[key]

            def local_of(host):
                if host not in copied_hosts:
                    copied_hosts.add(host)
                    local[host] = dict(local.get(host, ()))
                return local[host]

            for uuid in dirty:
                old_port, new_port = old_model.ports.get(uuid), new_model.ports.get(uuid)
                old_bind, new_bind = old_model.bindings.get(uuid), new_model.bindings.get(uuid)
                if uuid in diff.ports:
                    if old_port is not None:
                        ports_of(net_key(old_port)).pop(uuid, None)
                    if new_port is not None:
                        ports_of(net_key(new_port))[uuid] = new_port
                if old_port is not None and old_bind is not None:
                    local_of(old_bind.host).pop(uuid, None)
                if new_port is not None and new_bind is not None:
                    local_of(new_bind.host)[uuid] = (new_port, new_bind)
                old_sb, new_sb = old_model.standby.get(uuid), new_model.standby.get(uuid)
                if old_port is not None and old_sb is not None:
                    _copied(new.standby, copied_standby, old_sb.host).pop(uuid, None)
                if new_port is not None and new_sb is not None:
                    _copied(new.standby, copied_standby, new_sb.host)[uuid] = (new_port, new_sb)
            for key in copied_keys:
                if not by_key[key]:
                    del by_key[key]
            for host in copied_hosts:
                if not local[host]:
                    del local[host]
            if copied_keys:
                new.ports_by_key = by_key.done()
            if copied_hosts:
                new.local = local.done()
            for host in copied_standby:
                if not new.standby[host]:
                    del new.standby[host]

        if diff.networks or diff.routers:
            new._index_routers()
        else:
            new.router_by_name, new.nets_by_router = self.router_by_name, self.nets_by_router
            new.nets_by_tenant = self.nets_by_tenant
        new.touched = frozenset(touched_keys(diff, self, new))
        if old_model.traffic != new_model.traffic:     # sampling is in every port's flows
            new.touched = frozenset(self.net_by_key) | frozenset(new.net_by_key)
            new.fragments = ShardCache()
            return new
        new.fragments = self.fragments
        if new.touched:
            new.fragments = fragments = self.fragments.fork()
            for key in new.touched:
                fragments.invalidate(key)
                fragments.invalidate(("acl", key[0]))
                for idx in (self, new):
                    net = idx.net_by_key.get(key)
                    if net is not None and net.router:
                        fragments.invalidate(("router", net.tenant, net.router))
        return new


def bound_somewhere(model, uuid: str) -> bool:
    """Whether port `uuid` is bound to a host (or standing by on one while it migrates).

    A port that is nowhere gives other hosts nothing: no ARP/ND answers for its addresses (as
    OVN answers only for ports that are up), no routing to it, and it is no member of its
    security groups (flows/acl.py): no traffic can come from it, and an unbound port's
    address used by someone else is not let in on its behalf. Creating a port therefore
    changes no host's flows; binding it does."""
    return uuid in model.bindings or uuid in model.standby


def _copied(by_host: dict, copied: set, host: str) -> dict:
    """by_host[host] as a dict of its own (copied once per update), for changing it."""
    if host not in copied:
        copied.add(host)
        by_host[host] = dict(by_host.get(host, ()))
    return by_host[host]


def touched_keys(diff: ModelDiff, old: CompilerIndex, new: CompilerIndex) -> set[NetKey]:
    """NetKeys whose contributed flows may differ between the two indexes' models.

    A network's flows depend on its record, its ports, their bindings and the host records of
    the hosts those ports are bound on; the flows a host gets from it also depend on which of
    its ports are local there, which a binding change covers.
    """
    keys: set[NetKey] = set()
    # a port bound nowhere before and after gives no host anything (`bound_somewhere`): its
    # creation, change or removal touches no network
    absent = [u for u in diff.ports - diff.bindings
              if not bound_somewhere(old.model, u) and not bound_somewhere(new.model, u)]
    dirty = (diff.ports | diff.bindings).difference(absent)
    for model in (old.model, new.model):
        ports, networks = model.ports, model.networks
        for uuid in dirty:
            port = ports.get(uuid)
            if port is not None:
                keys.add((port.tenant, port.network))
        for uuid in diff.networks:
            net = networks.get(uuid)
            if net is not None:
                keys.add((net.tenant, net.name))
    for host in diff.hosts:
        keys |= old.keys_on(host)
        keys |= new.keys_on(host)
    # security groups: a group's members and rules reach every port of its tenant that uses them
    for model in (old.model, new.model):
        tenants = {model.security_groups[u].tenant for u in diff.security_groups
                   if u in model.security_groups}
        tenants |= {model.ports[u].tenant for u in dirty
                    if u in model.ports and model.ports[u].security_groups}
        for tenant in tenants:
            keys |= old.nets_by_tenant.get(tenant, set()) | new.nets_by_tenant.get(tenant, set())
    for uuid in diff.routers:
        for model in (old.model, new.model):
            router = model.routers.get(uuid)
            if router is not None:
                for idx in (old, new):
                    keys |= idx.nets_by_router.get((router.tenant, router.name), set())
    from flows import northsouth
    keys |= northsouth.touched(diff, old, new)
    # a routed network's flows reach every host where a network of its router is present
    for key in list(keys):
        keys |= old.router_group(key)
        keys |= new.router_group(key)
    return keys
