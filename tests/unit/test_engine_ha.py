"""HA roles in the engine against simulated switches: a standby is a slave that sends nothing; taking over is a role change plus a reconcile."""
import time

import pytest

from controller.driver import OpenFlowDriver
from controller.engine import ROLE_MASTER, ROLE_RETRIES, ROLE_SLAVE, Engine
from tests.fakeswitch import FakeSwitch
from tests.unit.test_engine import dpid, model, settle
from topology.errors import WeftError


@pytest.fixture
def standby():
    e = Engine(OpenFlowDriver(), datapath_id=dpid, ha=True).start()
    yield e
    e.stop()


def connect(engine, m):
    engine.model_changed(m, 1)
    sws = {h: FakeSwitch(engine, dpid(h)) for h in m.hosts}
    for sw in sws.values():
        sw.connect()
    engine.bindings_changed("hv1", {"a": (1, "tap-a")})
    engine.bindings_changed("hv2", {"b": (1, "tap-b")})
    settle(engine)
    return sws


def test_a_standby_is_slave_everywhere_and_sends_no_flows(standby):
    sws = connect(standby, model())
    for sw in sws.values():
        assert [r for r, _g in sw.roles] == [ROLE_SLAVE]
        assert sw.commits == 0 and sw.meter_mods == 0 and sw.slave_writes == 0
    status = standby.status()
    assert all(h["of_role"] == "slave" and h["reconciled"] and h["flow_mods"] == 0
               for h in status.values())
    standby.model_changed(model(("a", "b", "c")), 2)      # it compiles, and still sends nothing
    settle(standby)
    assert all(sw.commits == 0 and sw.slave_writes == 0 for sw in sws.values())
    with pytest.raises(WeftError) as exc:
        standby.migrate("a", "hv2")
    assert exc.value.status == 503


def test_taking_over_unchanged_switches_is_a_role_change_and_no_flow_mod(standby):
    sws = connect(standby, model())
    for h, sw in sws.items():           # what the former active installed
        sw.table = {f.key for f in standby.desired_flows(h)}
    standby.set_active(True)
    settle(standby)
    for sw in sws.values():
        assert [r for r, _g in sw.roles] == [ROLE_SLAVE, ROLE_MASTER]
        assert sw.roles[1][1] > sw.roles[0][1]          # generation ids increase
        assert sw.commits == 0 and sw.flow_mods == 0
        assert sw.meter_mods == 3       # the DHCP and drop meters (the latter added, then set), on every connection
    status = standby.status()
    assert all(h["of_role"] == "master" and h["master_at"] and h["reconciled"] and h["flow_mods"] == 0
               for h in status.values())


def test_taking_over_a_switch_that_lacks_flows_sends_the_difference(standby):
    sws = connect(standby, model())
    want = {f.key for f in standby.desired_flows("hv1")}
    sws["hv1"].table = set(list(want)[1:])
    sws["hv2"].table = {f.key for f in standby.desired_flows("hv2")}
    standby.set_active(True)
    settle(standby)
    assert sws["hv1"].table == want and sws["hv1"].flow_mods == 1
    assert sws["hv2"].commits == 0
    standby.set_active(False)          # another replica took the lock: slave again, quiet
    settle(standby)
    assert sws["hv1"].roles[-1][0] == ROLE_SLAVE
    standby.model_changed(model(("a", "b", "c")), 2)
    settle(standby)
    assert sws["hv1"].commits == 1 and sws["hv1"].slave_writes == 0


def test_without_ha_no_role_is_requested():
    e = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    try:
        sws = connect(e, model())
        assert all(sw.roles == [] and sw.commits == 1 for sw in sws.values())
    finally:
        e.stop()


def wait_for(engine, check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        settle(engine)
        time.sleep(0.01)


def test_a_role_request_refused_as_stale_is_asked_again_with_a_newer_id(standby):
    """Two replicas greeting a switch at once: the other's newer id arrived first (CI saw a
    standby that never became slave)."""
    m = model()
    standby.model_changed(m, 1)
    sws = {h: FakeSwitch(standby, dpid(h)) for h in m.hosts}
    other = time.time_ns() // 1000 + 30_000          # the other replica's id, 30 ms ahead of ours
    for sw in sws.values():
        sw.master_election_id = other
        sw.connect()
    wait_for(standby, lambda: all(h["of_role"] == "slave" for h in standby.status().values()))
    for sw in sws.values():
        assert sw.stale_refusals >= 1
        assert sw.roles[-1][0] == ROLE_SLAVE and sw.roles[-1][1] >= other
        assert sw.slave_writes == 0


def test_stale_role_refusals_are_retried_a_bounded_number_of_times_then_reported(standby):
    m = model()
    standby.model_changed(m, 1)
    sw = FakeSwitch(standby, dpid("hv1"))
    sw.master_election_id = 1 << 62                   # far ahead: every retry is stale too
    sw.connect()
    wait_for(standby, lambda: standby.status()["hv1"]["last_error"] is not None)
    time.sleep(0.3)
    settle(standby)
    # the first request and ROLE_RETRIES retries, then an error the status shows
    assert len(sw.roles) == 1 + ROLE_RETRIES and sw.stale_refusals == len(sw.roles)
    assert "role request (slave) refused" in standby.status()["hv1"]["last_error"]
    assert standby.status()["hv1"]["of_role"] is None
