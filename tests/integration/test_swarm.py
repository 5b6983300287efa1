"""A real weftd against a small emulated swarm (loopback and unix sockets only: no root, no Open vSwitch).

Not marked `integration`: it needs only ovsdb-server (the northbound store), so it runs
wherever the unit tests run. Five hosts with three NICs each converge to their compiled
flows; a port added through the API and plugged reaches exactly the hosts whose compiled
flows change; a NIC unplugged takes its flows with it.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from lab import swarm_check
from lab.swarm import Swarm, nic
from lab.swarm_weftd import Weftd

pytestmark = pytest.mark.skipif(shutil.which("ovsdb-server") is None, reason="needs ovsdb-server")

HOSTS, NICS = 5, 3


@pytest.fixture
def world(tmp_path):
    from ovsdb.nbserver import ensure_local_server
    from ovsdb.nbstore import NorthboundStore

    base = tmp_path
    if len(str(base)) > 60:            # unix socket paths are short
        import tempfile
        base = tempfile.mkdtemp(prefix="wsw-")
    remote = ensure_local_server(os.path.join(base, "nb"))
    with open(os.path.join(base, "nb", "nb.pid")) as f:
        nb_pid = int(f.read())
    store = NorthboundStore(remote)
    swarm = weftd = None
    try:
        store.start()
        names = [f"hv{i}" for i in range(HOSTS)]
        run = os.path.join(base, "swarm")
        for t in ("red", "blue"):
            store.create_tenant(t)
            store.create_network(t, "net", "10.0.0.0/24")
        hosts = {}
        for i, name in enumerate(names):
            store.add_host(name, f"198.18.0.{10 + i}", f"unix:{run}/{name}.db")
            hosts[name] = [nic(i, k, store.create_port(("red", "blue")[(i + k) % 2], "net", f"p{i}{k}")["id"])
                           for k in range(NICS)]
        swarm = Swarm(run, hosts, processes=2).start()
        weftd = Weftd(os.path.join(base, "weftd"), remote).start()
        yield store, swarm, weftd, names
    finally:
        if weftd is not None:
            weftd.stop()
        if swarm is not None:
            swarm.stop()
        store.stop()
        os.kill(nb_pid, signal.SIGTERM)
        if base is not tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def expected_now(store, swarm, parked=None):
    return swarm_check.Expected(swarm_check.with_bindings(store.model, swarm.bindings(), parked))


def converge(swarm, expected, hosts):
    """Every host reaches its compiled flows (a generous bound: a stuck host fails, a slow one does not)."""
    at = swarm.expect(expected.digests(hosts), timeout=60)
    return {h for h, t in at.items() if t is None}


def test_swarm_converges_and_follows_port_changes(world):
    store, swarm, weftd, names = world
    cold = expected_now(store, swarm)
    assert converge(swarm, cold, names) == set()
    checked, bad = swarm_check.check(swarm, cold)
    assert bad == {} and checked == sum(len(cold.entries(h)) for h in names) > 0
    assert swarm.status()["errors"] == 0

    # a red port plugged on hv1: the hosts with red ports change, blue-only hosts do not
    before = swarm.tables()
    port = weftd.post("/v1/ports", {"tenant": "red", "network": "net", "name": "new"})
    # the test's own store hears of weftd's write asynchronously: expect nothing before it has
    deadline = time.monotonic() + 10
    while port["id"] not in store.model.ports and time.monotonic() < deadline:
        time.sleep(0.01)
    assert port["id"] in store.model.ports
    ofport = swarm.plug("hv1", {"iface_id": port["id"], "name": "tapnew", "mac": "fa:16:3f:00:00:01"})
    assert ofport == NICS + 1                      # numbered after the host's NICs, as OVS does
    added = expected_now(store, swarm)
    assert converge(swarm, added, names) == set()
    changed = {h for h in names if swarm.tables([h])[h]["digest"] != before[h]["digest"]}
    red_hosts = {b.host for p, b in added.model.bindings.items() if added.model.ports[p].tenant == "red"}
    assert changed == red_hosts and "hv1" in changed
    assert any(e[2] for e in added.entries("hv1"))

    # the NIC unplugged: its flows go (the port stays parked on hv1 without an ofport)
    swarm.unplug("hv1", "tapnew")
    gone = expected_now(store, swarm, parked={port["id"]: "hv1"})
    assert converge(swarm, gone, names) == set()
    assert gone.digest("hv1") != added.digest("hv1")
    checked, bad = swarm_check.check(swarm, gone)
    assert bad == {}
