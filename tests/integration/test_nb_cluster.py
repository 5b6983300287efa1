"""The northbound store on a 3-member OVSDB Raft cluster: the IDL follows the leader, kill -9 of the leader loses no acknowledged write."""
import os
import signal
import socket
import time

import pytest

from ovsdb import nbcluster
from ovsdb.nbstore import NorthboundStore
from topology.errors import Conflict, WeftError

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pid(m) -> int | None:
    try:
        with open(m.pidfile) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


@pytest.fixture
def cluster(tmp_path):
    """Three members on loopback (Raft over TCP on free ports), stopped by pid afterwards."""
    ports = _free_ports(3)
    members = [nbcluster.Member(f"nb{k}", str(tmp_path), f"tcp:127.0.0.1:{p}")
               for k, p in enumerate(ports, 1)]
    nbcluster.create(members)
    try:
        for m in members:
            nbcluster.start(m)
        nbcluster.wait_formed(members)
        yield members
    finally:
        for m in members:
            pid = _pid(m)
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _write(store, name: str, deadline: float) -> str:
    """Create tenant `name`, retrying while the store answers 503 (the only error allowed);
    returns "ok", or "present" when a retry finds the write of an unanswered attempt applied."""
    retried = False
    while True:
        try:
            store.create_tenant(name)
            return "ok"
        except Conflict:
            assert retried, f"{name}: conflict on the first attempt"
            return "present"             # the attempt that lost its answer had been committed
        except WeftError as exc:
            assert exc.status == 503, exc
            assert "retry" in str(exc)
            retried = True
            assert time.monotonic() < deadline, f"writes did not resume: {exc}"
            time.sleep(0.02)


def test_store_follows_the_leader_and_loses_no_acknowledged_write(cluster):
    store = NorthboundStore(nbcluster.remotes(cluster))
    store.start()
    try:
        acked = []
        for i in range(5):
            store.create_tenant(f"before{i}")
            acked.append(f"before{i}")
        leader = nbcluster.leader(cluster)
        assert leader is not None
        assert store.idl.session_name() == leader.remote      # leader_only: writes go to the leader
        os.kill(_pid(leader), signal.SIGKILL)
        deadline = time.monotonic() + 10
        for i in range(20):                                   # through the election and after it
            _write(store, f"during{i}", deadline)
            acked.append(f"during{i}")
        assert store.connected() and store.idl.session_name() != leader.remote
        survivors = [m for m in cluster if m is not leader]
        assert nbcluster.leader(survivors) is not None
        assert set(acked) <= set(store.model.tenants)
        # durable: a fresh client of the surviving members reads every acknowledged write
        fresh = NorthboundStore(nbcluster.remotes(survivors))
        fresh.start()
        assert set(acked) <= set(fresh.model.tenants)
        assert store._link.losses == 1
    finally:
        store.stop()
