"""The emulated OVSDB endpoint: transactions, monitors and what weftd's southbound sees through it."""
from __future__ import annotations

import json
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from ovs.jsonrpc import Message

from lab.swarm_host import EmulatedHost, vswitch_schema
from lab.swarm_ovsdb import Database, JsonStream, Session
from ovsdb import hostconfig, southbound

NIC = {"iface_id": "port-1", "name": "tap1", "mac": "fa:16:3e:00:00:01"}


def talk(session_out, session, method, params, id_=1):
    session.receive(Message.create_request(method, params))
    return session_out.pop(0)


def test_insert_named_uuid_forward_reference_and_garbage_collection():
    db = Database(vswitch_schema())
    ops = [{"op": "insert", "table": "Open_vSwitch", "row": {"bridges": ["named-uuid", "b"]}},
           {"op": "insert", "table": "Bridge", "uuid-name": "b",
            "row": {"name": "br-int", "ports": ["named-uuid", "p"]}},
           {"op": "insert", "table": "Port", "uuid-name": "p", "row": {"name": "x", "interfaces": ["named-uuid", "i"]}},
           {"op": "insert", "table": "Interface", "uuid-name": "i", "row": {"name": "x"}}]
    results, changes = db.transact(ops)
    assert all("uuid" in r for r in results) and set(changes) == {"Open_vSwitch", "Bridge", "Port", "Interface"}
    (bridge,) = db.find("Bridge", "name", "br-int")
    (port,) = db.find("Port", "name", "x")
    results, changes = db.transact([{"op": "mutate", "table": "Bridge", "where": [["_uuid", "==", ["uuid", str(bridge)]]],
                                     "mutations": [["ports", "delete", ["set", [["uuid", str(port)]]]]]}])
    assert results == [{"count": 1}]
    assert not db.find("Port", "name", "x") and not db.find("Interface", "name", "x")   # collected


def test_failed_operation_changes_nothing():
    db = Database(vswitch_schema())
    results, changes = db.transact([{"op": "insert", "table": "Bridge", "row": {"name": "b"}},
                                    {"op": "insert", "table": "Port", "row": {"name": "p", "interfaces": ["uuid", "00000000-0000-0000-0000-000000000001"]}}])
    assert "error" in results[-1] and changes == {}
    assert not list(db.rows("Bridge"))


def test_wait_fails_when_a_verified_column_changed():
    host = EmulatedHost("hv1", "/nonexistent", [NIC])
    (br,) = host.db.find("Bridge", "name", "br-int")
    where = [["_uuid", "==", ["uuid", str(br)]]]
    wait = {"op": "wait", "table": "Bridge", "where": where, "columns": ["fail_mode"], "until": "==",
            "rows": [{"fail_mode": ["set", []]}], "timeout": 0}
    assert "error" not in host.db.transact([wait])[0][-1]
    host.db.transact([{"op": "update", "table": "Bridge", "where": where, "row": {"fail_mode": "secure"}}])
    assert host.db.transact([wait])[0][-1]["error"] == "timed out"


def test_monitor_cond_since_initial_then_update3_diffs():
    host = EmulatedHost("hv1", "/nonexistent", [NIC])
    out = []
    s = Session({"Open_vSwitch": host.db}, out.append)
    reply = talk(out, s, "monitor_cond_since",
                 ["Open_vSwitch", ["m"], {"Interface": [{"columns": ["name", "ofport", "external_ids"]}]},
                  "00000000-0000-0000-0000-000000000000"])
    found, _last, initial = reply.result
    rows = {r["initial"]["name"]: r["initial"] for r in initial["Interface"].values()}
    assert not found and rows["tap1"]["ofport"] == 1
    assert rows["tap1"]["external_ids"] == ["map", [["attached-mac", NIC["mac"]], ["iface-id", "port-1"],
                                                     ["iface-status", "active"], ["vm-id", "tap1"]]]
    host.plug({"iface_id": "port-2", "name": "tap2", "mac": "fa:16:3e:00:00:02"})
    kinds = [(m.method, [list(e)[0] for e in m.params[2]["Interface"].values()]) for m in out]
    assert kinds == [("update3", ["insert"]), ("update3", ["modify"])]     # then vswitchd numbers it
    assert list(out[1].params[2]["Interface"].values())[0]["modify"] == {"ofport": 2}


def test_server_database_and_errors():
    host = EmulatedHost("hv1", "/nonexistent", [])
    out = []
    s = Session({"Open_vSwitch": host.db}, out.append)
    assert talk(out, s, "list_dbs", []).result == ["Open_vSwitch"]
    reply = talk(out, s, "monitor_cond", ["_Server", ["s"], {"Database": [{"columns": ["name", "model", "leader"]}]}])
    (row,) = reply.result["Database"].values()
    assert row["initial"] == {"name": "Open_vSwitch", "model": "standalone", "leader": True}
    assert talk(out, s, "get_schema", ["nope"]).error["error"] == "unknown database"
    assert talk(out, s, "frobnicate", []).error == {"error": "unknown method", "details": ""}


def test_json_stream_splits_back_to_back_messages():
    stream = JsonStream()
    a = JsonStream.encode(Message.create_request("echo", [1]))
    b = JsonStream.encode(Message.create_request("echo", [2]))
    whole = a + b
    msgs = stream.feed(whole[:len(a) + 3]) + stream.feed(whole[len(a) + 3:])
    assert [m.params for m in msgs] == [[1], [2]]


def test_weftd_southbound_plan_applies_and_settles(tmp_path):
    """weftd's own IDL and transaction builder against the endpoint: configured, then nothing to do."""
    import os
    import threading
    import time

    import asyncio

    host = EmulatedHost("hv1", str(tmp_path / "db"), [NIC])
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(host.start())
        started.set()
        loop.run_forever()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(5)
    seen = []
    mgr = southbound.HostManager(lambda h, b: seen.append(b), ["tcp:127.0.0.1:9"], "geneve", "netdev")
    try:
        mgr.start()
        mgr.set_host("hv1", f"unix:{tmp_path / 'db'}", "198.18.0.10", None)
        deadline = time.monotonic() + 10
        while mgr.status()["hv1"]["state"] != "configured" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mgr.status()["hv1"]["state"] == "configured"
        assert seen[-1] == {"port-1": (1, "tap1")}
        db = host.db
        (br,) = db.find("Bridge", "name", "br-int")
        assert db.value("Bridge", br, "fail_mode") == "secure"
        assert db.value("Bridge", br, "datapath_type") == "netdev"
        dpid = f"{southbound.datapath_id('hv1'):016x}"
        assert db.value("Bridge", br, "other_config")["datapath-id"] == dpid
        assert host.switch.dpid == int(dpid, 16) and host.targets == ("tcp:127.0.0.1:9",)
        (tun,) = db.find("Interface", "name", hostconfig.TUNNEL_PORT)
        assert db.value("Interface", tun, "ofport") == 60000
        assert db.value("Interface", tun, "type") == "geneve"
        assert os.path.exists(tmp_path / "db")
    finally:
        mgr.stop()
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
    assert json.dumps(sorted(host.bindings().items())) == '[["port-1", 1]]'
