"""Pure southbound planning: a host's desired Open vSwitch configuration vs what its OVSDB holds -> the changes."""
from __future__ import annotations

import dataclasses

from flows.pipeline import PROVIDER_OFPORT, TUNNEL_OFPORT

BRIDGE = "br-int"
TUNNEL_PORT = "weft-tun"
IPFIX_SET = 1                    # the Flow_Sample_Collector_Set id weft's `sample` actions name
# Open vSwitch caches IPFIX flows only when cache_max_flows is set: without it every sampled
# packet left as a datagram of its own (1 in 400 of a VM's packets: ~190 a second per host at
# 0.7 Gbit/s), each one a send in the datapath thread and a wake-up of weftd's collector. With
# the cache, the samples of a flow are summed (their counts already scaled by the sampling
# rate) and exported once per cache_active_timeout; past this many flows the oldest go at once.
IPFIX_CACHE_FLOWS = 4096
PROTOCOLS = ("OpenFlow13", "OpenFlow14")
CONTROLLER = {"max_backoff": 1000, "inactivity_probe": 5000}
# br-int's own internal interface (OpenFlow LOCAL; weft's flows never use it) gets a fixed MTU.
# Without one, ovs-vswitchd keeps an internal interface at the smallest MTU of its bridge's other
# ports, so a VM's tap (1400 on a 1500 underlay with Geneve) leaving and coming back moved br-int
# between 1500 and 1400 at every unplug and plug: an MTU set, a link change (ovs-vswitchd then
# re-reads the whole routing table), one more reconfiguration, database write and port-status,
# all in ovs-vswitchd's main loop on the port-up critical path (add-port -> ofport 4.0 -> 2.0 ms).
LOCAL_MTU = 1500
EXPORTER_KINDS = ("sflow", "netflow", "ipfix")


@dataclasses.dataclass(frozen=True)
class Desired:
    """What weft wants on one host's OVS. `exporters` None: leave the exporters as they are."""
    datapath_id: str                       # 16 hex digits
    controllers: tuple[str, ...]
    tunnel_type: str                       # vxlan | geneve
    tunnel_ip: str
    datapath_type: str | None = None
    exporters: dict | None = None          # {"sflow"|"netflow"|"ipfix": settings or None}
    providers: tuple = ()                  # ((provider name, its bridge), ...) sorted by name

    def provider_patches(self) -> dict:
        """{br-int patch port name: (bridge, its peer's name, ofport_request)} per provider."""
        return {provider_port(name): (bridge, provider_peer(name), PROVIDER_OFPORT + i)
                for i, (name, bridge) in enumerate(self.providers)}

    def bridge_columns(self) -> dict:
        cols = {"fail_mode": "secure", "protocols": frozenset(PROTOCOLS)}
        if self.datapath_type:
            cols["datapath_type"] = self.datapath_type
        return cols

    def local(self) -> dict:
        """Columns of br-int's own internal Interface (named like the bridge)."""
        return {"mtu_request": LOCAL_MTU}

    def bridge_other_config(self) -> dict:
        return {"datapath-id": self.datapath_id, "disable-in-band": "true"}

    def tunnel(self) -> dict:
        return {"type": self.tunnel_type, "ofport_request": TUNNEL_OFPORT,
                # tos=inherit: the outer IP header carries the inner packet's DSCP (and ECN), so
                # a port's DSCP marking (flows/qos.py) is seen by the underlay
                "options": {"remote_ip": "flow", "key": "flow", "local_ip": self.tunnel_ip,
                            "tos": "inherit"}}


def provider_port(name: str) -> str:
    """br-int's end of the patch to provider `name`'s bridge."""
    return f"weft-p-{name}"


def provider_peer(name: str) -> str:
    """The provider bridge's end of that patch."""
    return f"weft-i-{name}"


@dataclasses.dataclass(frozen=True)
class Change:
    """One edit of a transaction.

    op:  add-bridge (value = columns of its internal Interface) | bridge (column `key` = value)
         | local (column `key` of br-int's internal Interface = value)
         | bridge-config (other_config `key` = value)
         | controllers (value = {"keep": [targets], "add": [targets]}) | add-tunnel (value = columns)
         | tunnel (Interface column `key` = value) | exporter (`key` = sflow|netflow|ipfix,
         value = the exporter's columns, or None to remove it)
         | provider (`key` = br-int's patch port, value = (bridge, peer, ofport_request): make
         or fix the patch pair between br-int and the provider bridge)
    """
    op: str
    key: str = ""
    value: object = None


def exporter_columns(kind: str, cfg: dict) -> dict:
    """The sFlow / NetFlow / IPFIX row columns for weft's exporter settings `cfg`.

    IPFIX is flow-based: an IPFIX row behind Flow_Sample_Collector_Set id 1, which the sample
    actions weft puts in table 0 feed (bridge-level IPFIX misses every packet that conntrack
    recirculates)."""
    if kind == "sflow":
        return {"targets": (cfg["target"],), "sampling": cfg["sampling"], "polling": cfg["polling"],
                "header": cfg.get("header", 128), "agent": cfg.get("agent") or None}
    if kind == "netflow":
        return {"targets": (cfg["target"],), "active_timeout": cfg["active_timeout"],
                "engine_id": cfg.get("engine_id", 0)}
    if kind == "ipfix":
        return {"targets": (cfg["target"],), "obs_domain_id": cfg.get("obs_domain_id", 1),
                "cache_active_timeout": cfg.get("active_timeout", 10),
                "cache_max_flows": cfg.get("cache_max_flows", IPFIX_CACHE_FLOWS),
                "other_config": {"enable-tunnel-sampling": "true"}}
    raise ValueError(f"unknown exporter kind {kind!r}: expected one of {', '.join(EXPORTER_KINDS)}")


def _norm(value):
    """Comparable form of a column value: sets/lists as sorted tuples, maps as dicts."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(sorted(value))
    return value


def _same(current: dict | None, wanted: dict) -> bool:
    return current is not None and all(_norm(current.get(k)) == _norm(v) for k, v in wanted.items())


EMPTY_BRIDGE = {"datapath_type": "", "fail_mode": None, "protocols": (), "other_config": {},
                "controllers": {}, "tunnel": None, "sflow": None, "netflow": None, "ipfix": None,
                "local": None}


def plan(desired: Desired, current: dict) -> list[Change]:
    """The changes that make `current` (a snapshot, see `ovsdb.southbound.snapshot`) equal `desired`.

    `current` = {"bridge": None or {datapath_type, fail_mode, protocols, other_config,
    controllers: {target: {max_backoff, inactivity_probe}}, tunnel: None or {type, options,
    ofport_request}, sflow/netflow/ipfix: None or {columns}, local: None (no internal
    Interface named br-int) or {mtu_request}}}. Only what differs is changed:
    an exporter whose settings match is left alone (it keeps its sequence numbers), other
    keys of other_config and other ports of the bridge are never touched. Empty: in sync."""
    changes: list[Change] = []
    bridge = current.get("bridge")
    if bridge is None:
        changes.append(Change("add-bridge", value=desired.local()))
        bridge = EMPTY_BRIDGE
    for column, value in desired.bridge_columns().items():
        if _norm(bridge.get(column)) != _norm(value):
            changes.append(Change("bridge", column, value))
    local = bridge.get("local")
    if local is not None:
        for column, value in desired.local().items():
            if local.get(column) != value:
                changes.append(Change("local", column, value))
    other = bridge.get("other_config") or {}
    for key, value in desired.bridge_other_config().items():
        if other.get(key) != value:
            changes.append(Change("bridge-config", key, value))
    have = bridge.get("controllers") or {}
    keep = [t for t in desired.controllers if _same(have.get(t), CONTROLLER)]
    add = [t for t in desired.controllers if t not in keep]
    if add or set(keep) != set(have):
        changes.append(Change("controllers", value={"keep": keep, "add": add}))
    tunnel = desired.tunnel()
    if bridge.get("tunnel") is None:
        changes.append(Change("add-tunnel", value=tunnel))
    else:
        for column, value in tunnel.items():
            if _norm(bridge["tunnel"].get(column)) != _norm(value):
                changes.append(Change("tunnel", column, value))
    patches = bridge.get("patches") or {}
    for port, (br, peer, ofport) in desired.provider_patches().items():
        if patches.get(port) != (br, peer, ofport):
            changes.append(Change("provider", port, (br, peer, ofport)))
    if desired.exporters is not None:
        for kind in EXPORTER_KINDS:
            cfg = desired.exporters.get(kind)
            row = bridge.get(kind)
            if cfg is None:
                if row is not None:
                    changes.append(Change("exporter", kind, None))
                continue
            wanted = exporter_columns(kind, cfg)
            if not _same(row, wanted):
                changes.append(Change("exporter", kind, wanted))
    return changes
