"""The southbound planner: desired host configuration vs a snapshot of its OVSDB -> only the changes that differ."""
import copy

import pytest

from flows.pipeline import TUNNEL_OFPORT
from ovsdb.hostconfig import IPFIX_CACHE_FLOWS, LOCAL_MTU, Change, Desired, exporter_columns, plan

CTL = "tcp:198.19.0.1:6653"
EXPORTERS = {
    "sflow": {"target": "198.19.0.1:6343", "sampling": 64, "polling": 10, "agent": "mgmt0"},
    "netflow": {"target": "198.19.0.1:2055", "engine_id": 7, "active_timeout": 10},
    "ipfix": {"target": "198.19.0.1:4739", "obs_domain_id": 1799, "active_timeout": 5},
}


def desired(**kw) -> Desired:
    base = dict(datapath_id="776500913e9dc001", controllers=(CTL,), tunnel_type="vxlan",
                tunnel_ip="198.18.0.11", datapath_type="netdev", exporters=EXPORTERS)
    return Desired(**{**base, **kw})


def in_sync(d: Desired) -> dict:
    """A snapshot the way the IDL would show a host configured as `d` (sets as lists, in any order)."""
    return {"bridge": {
        "datapath_type": d.datapath_type or "", "fail_mode": "secure",
        "protocols": ["OpenFlow14", "OpenFlow13"],
        "other_config": {"datapath-id": d.datapath_id, "disable-in-band": "true", "hwaddr": "x"},
        "controllers": {t: {"max_backoff": 1000, "inactivity_probe": 5000} for t in d.controllers},
        "tunnel": {"type": d.tunnel_type, "ofport_request": TUNNEL_OFPORT,
                   "options": {"local_ip": d.tunnel_ip, "remote_ip": "flow", "key": "flow",
                               "tos": "inherit"}},
        "local": {"mtu_request": LOCAL_MTU},
        **{k: ({**exporter_columns(k, cfg), "targets": list(exporter_columns(k, cfg)["targets"])}
               if cfg else None) for k, cfg in (d.exporters or {}).items()},
    }}


def test_fresh_database_gets_everything():
    ops = [(c.op, c.key) for c in plan(desired(), {"bridge": None})]
    assert ops == [("add-bridge", ""), ("bridge", "fail_mode"), ("bridge", "protocols"),
                   ("bridge", "datapath_type"), ("bridge-config", "datapath-id"),
                   ("bridge-config", "disable-in-band"), ("controllers", ""), ("add-tunnel", ""),
                   ("exporter", "sflow"), ("exporter", "netflow"), ("exporter", "ipfix")]


def test_fresh_bridge_gets_its_internal_interface_mtu_pinned():
    (add, *_rest) = plan(desired(), {"bridge": None})
    assert add == Change("add-bridge", value={"mtu_request": LOCAL_MTU})


def test_in_sync_means_no_changes():
    d = desired()
    assert plan(d, in_sync(d)) == []
    assert plan(desired(exporters=None), in_sync(d)) == []      # exporters left alone


def test_datapath_type_only_when_given():
    d = desired(datapath_type=None)
    snap = in_sync(desired())           # netdev on the switch, weftd without --datapath-type
    assert plan(d, snap) == []
    assert ("bridge", "datapath_type") not in [(c.op, c.key) for c in plan(d, {"bridge": None})]


@pytest.mark.parametrize("edit, expected", [
    (lambda b: b.update(fail_mode="standalone"), [Change("bridge", "fail_mode", "secure")]),
    (lambda b: b.update(fail_mode=None), [Change("bridge", "fail_mode", "secure")]),
    (lambda b: b.update(protocols=["OpenFlow13", "OpenFlow15"]),
     [Change("bridge", "protocols", frozenset({"OpenFlow13", "OpenFlow14"}))]),
    (lambda b: b["other_config"].pop("disable-in-band"), [Change("bridge-config", "disable-in-band", "true")]),
    (lambda b: b["tunnel"]["options"].update(local_ip="198.18.0.99"),
     [Change("tunnel", "options", {"remote_ip": "flow", "key": "flow", "local_ip": "198.18.0.11",
                                   "tos": "inherit"})]),
    (lambda b: b["tunnel"].update(ofport_request=None), [Change("tunnel", "ofport_request", TUNNEL_OFPORT)]),
    (lambda b: b["tunnel"].update(type="geneve"), [Change("tunnel", "type", "vxlan")]),
    (lambda b: b.update(tunnel=None), [Change("add-tunnel", value=desired().tunnel())]),
    (lambda b: b.update(local={"mtu_request": None}), [Change("local", "mtu_request", LOCAL_MTU)]),
    (lambda b: b.update(local={"mtu_request": 9000}), [Change("local", "mtu_request", LOCAL_MTU)]),
    (lambda b: b.update(local=None), []),          # no internal interface named br-int: nothing to pin
])
def test_one_drift_one_change(edit, expected):
    d = desired()
    snap = in_sync(d)
    edit(snap["bridge"])
    assert plan(d, snap) == expected


def test_controllers_kept_added_and_dropped():
    d = desired(controllers=(CTL, "tcp:198.19.0.2:6653"))
    snap = in_sync(desired())
    snap["bridge"]["controllers"]["tcp:192.0.2.9:6653"] = {"max_backoff": 1000, "inactivity_probe": 5000}
    assert plan(d, snap) == [Change("controllers", value={"keep": [CTL], "add": ["tcp:198.19.0.2:6653"]})]
    # a kept target with the wrong settings is replaced
    snap = in_sync(desired())
    snap["bridge"]["controllers"][CTL]["inactivity_probe"] = None
    assert plan(desired(), snap) == [Change("controllers", value={"keep": [], "add": [CTL]})]
    # no controllers wanted, none there: nothing; some there: dropped
    assert plan(desired(controllers=()), {**in_sync(desired(controllers=()))}) == []
    assert plan(desired(controllers=()), in_sync(desired())) == [Change("controllers", value={"keep": [], "add": []})]


def test_only_the_changed_exporter_is_replaced():
    d = desired()
    snap = in_sync(d)
    changed = copy.deepcopy(EXPORTERS)
    changed["sflow"]["sampling"] = 128
    assert plan(desired(exporters=changed), snap) == [
        Change("exporter", "sflow", exporter_columns("sflow", changed["sflow"]))]
    changed = {**EXPORTERS, "netflow": None}
    assert plan(desired(exporters=changed), snap) == [Change("exporter", "netflow", None)]
    snap["bridge"]["ipfix"]["other_config"] = {}
    assert [(c.op, c.key) for c in plan(d, snap)] == [("exporter", "ipfix")]
    snap = in_sync(d)
    snap["bridge"]["ipfix"]["cache_max_flows"] = None      # a host configured before the cache
    assert [(c.op, c.key) for c in plan(d, snap)] == [("exporter", "ipfix")]


def test_exporter_columns():
    assert exporter_columns("sflow", EXPORTERS["sflow"]) == {
        "targets": ("198.19.0.1:6343",), "sampling": 64, "polling": 10, "header": 128, "agent": "mgmt0"}
    ipfix = exporter_columns("ipfix", EXPORTERS["ipfix"])
    assert ipfix["cache_active_timeout"] == 5
    # a flow's samples are summed in Open vSwitch's cache, not sent one datagram each
    assert ipfix["cache_max_flows"] == IPFIX_CACHE_FLOWS > 0
    with pytest.raises(ValueError, match="unknown exporter kind 'jflow'"):
        exporter_columns("jflow", {})
