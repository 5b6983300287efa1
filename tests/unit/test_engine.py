"""The engine loop against simulated switches: acknowledged bundles, errors, disconnects, input order, port-up."""
import time
from dataclasses import replace

import pytest

from controller.driver import OpenFlowDriver
from controller.engine import Engine
from flows.compiler import PENDING
from tests.fakeswitch import FakeDatapath, FakeSwitch
from topology.model import Binding, Host, Model, Network, Port, Tenant

HOSTS = {"hv1": "198.18.0.11", "hv2": "198.18.0.12"}


def dpid(name: str) -> int:
    return {"hv1": 0x11, "hv2": 0x12, "hv3": 0x13}[name]


def model(ports=("a", "b"), extra_hosts=()) -> Model:
    hosts = dict(HOSTS, **{h: f"198.18.0.{20 + i}" for i, h in enumerate(extra_hosts)})
    return Model(
        tenants={"red": Tenant("t-red", "red")},
        networks={"n1": Network("n1", "red", "net", "10.0.0.0/24", 1001)},
        ports={p: Port(p, "red", "net", p, f"fa:16:3e:00:00:{i + 1:02x}", (f"10.0.0.{11 + i}",))
               for i, p in enumerate(ports)},
        hosts={h: Host(h, ip, f"unix:/nonexistent/{h}") for h, ip in hosts.items()})


def renumbered(m: Model) -> Model:
    """`m` with port a at new addresses (one more than it had): a change to the flows of every
    host of its network (a port bound nowhere, by contrast, changes no host's flows)."""
    return replace(m, ports={**m.ports, "a": replace(m.ports["a"], ips=("10.0.0.98", "10.0.0.99"))})


def settle(engine: Engine) -> None:
    """Wait until the loop has taken everything queued so far (and what that queued)."""
    for _ in range(3):
        engine.call(lambda: None)


@pytest.fixture
def engine():
    e = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    yield e
    e.stop()


def desired_keys(engine, host):
    return {f.key for f in engine.desired_flows(host)}


def up(engine, m, version=1):
    engine.model_changed(m, version)
    sws = {h: FakeSwitch(engine, dpid(h)) for h in m.hosts}
    for sw in sws.values():
        sw.connect()
    engine.bindings_changed("hv1", {"a": (1, "tap-a")})
    engine.bindings_changed("hv2", {"b": (1, "tap-b")})
    settle(engine)
    return sws


def test_bundles_count_as_installed_only_when_committed(engine):
    sws = up(engine, model())
    for h in ("hv1", "hv2"):
        assert sws[h].table == desired_keys(engine, h)
        assert sws[h].table, "the switch got flows"
    status = engine.status()
    assert status["hv1"]["flows"] == len(sws["hv1"].table)
    assert status["hv1"]["in_flight"] == 0
    # a held commit: the engine expects the flows, but does not count them as installed
    sws["hv1"].hold = True
    engine.model_changed(renumbered(model()), 2)
    settle(engine)
    status = engine.status()["hv1"]
    assert status["in_flight"] == 1
    assert status["flows"] != len(desired_keys(engine, "hv1"))
    assert engine.wait_applied(2, 0.2) == ["hv1"]
    sws["hv1"].hold = False
    sws["hv1"].release()
    settle(engine)
    assert engine.status()["hv1"]["flows"] == len(desired_keys(engine, "hv1"))
    assert engine.wait_applied(2, 1.0) == []
    assert sws["hv1"].table == desired_keys(engine, "hv1")


def test_restart_with_unchanged_model_sends_nothing(engine):
    sws = up(engine, model())
    before = {h: (sw.flow_mods, set(sw.table)) for h, sw in sws.items()}
    engine.stop()
    fresh = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    try:
        fresh.model_changed(model(), 1)
        fresh.bindings_changed("hv1", {"a": (1, "tap-a")})
        fresh.bindings_changed("hv2", {"b": (1, "tap-b")})
        for sw in sws.values():
            sw.engine = fresh
            sw.connect()
        settle(fresh)
        assert all(s["reconciled"] for s in fresh.status().values())
        assert {h: (sw.flow_mods, set(sw.table)) for h, sw in sws.items()} == before
        assert sum(s["flow_mods"] for s in fresh.status().values()) == 0
    finally:
        fresh.stop()


def test_rejected_bundle_is_counted_and_the_host_reconciled(engine):
    sws = up(engine, model(("a", "b", "c")))
    sw = sws["hv1"]
    good = set(sw.table)
    # refuse the bundle that plugs c on hv1: one cookie only c's flows bring
    sw.reject_cookie = next(iter({k[2] for k in _compile_with_c(engine)} - {k[2] for k in good}))
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (2, "tap-c")})
    settle(engine)
    assert sw.errors_sent == 1
    status = engine.status()["hv1"]
    assert status["bundle_errors"] == 1 and status["in_flight"] == 0
    assert "refused" in status["last_error"] and f"{sw.reject_cookie:#x}" in status["last_error"]
    assert sw.table == good, "nothing of the refused bundle was applied"
    assert status["flows"] == len(good), "the engine's books did not change either"
    assert 'weft_bundles_total{result="failed"} 1.0' in engine.metrics.render().decode()
    # after a backoff the host is dumped and reconciled again; the switch accepts this time
    sw.reject_cookie = None
    deadline = time.monotonic() + 5
    while sw.table != desired_keys(engine, "hv1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sw.table == desired_keys(engine, "hv1")
    status = engine.status()["hv1"]
    assert status["reconciled"] and status["bundle_errors"] == 1


def test_a_switch_that_keeps_refusing_is_retried_with_backoff(engine):
    sws = up(engine, model(("a", "b", "c")))
    sw = sws["hv1"]
    sw.reject_cookie = next(iter({k[2] for k in _compile_with_c(engine)} - {k[2] for k in sw.table}))
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (2, "tap-c")})
    time.sleep(1.0)
    # 0.1 + 0.2 + 0.4 s of backoff fit in a second: a handful of tries, not a tight loop
    assert 2 <= sw.errors_sent <= 5


def _compile_with_c(engine):
    from flows.compiler import CompilerIndex, compile_host
    m = engine.effective_model()
    m = replace(m, bindings={**m.bindings, "c": Binding("c", "hv1", 2)})
    return {f.key for f in compile_host(CompilerIndex(m), "hv1")}


def test_disconnect_with_a_bundle_in_flight_is_reconciled_on_reconnect(engine):
    sws = up(engine, model())
    sw = sws["hv2"]
    sw.hold = True
    engine.model_changed(renumbered(model()), 2)
    settle(engine)
    assert engine.status()["hv2"]["in_flight"] == 1
    applied_before_drop = set(sw.table)        # the switch applied it; the reply is lost
    assert applied_before_drop == desired_keys(engine, "hv2")
    sw.disconnect()
    settle(engine)
    assert not engine.status()["hv2"]["connected"]
    sw.release()                               # replies of the dead connection: ignored
    sw.hold = False
    # the model moves on while the switch is away
    engine.model_changed(model(("a", "b", "c", "d")), 3)
    settle(engine)
    mods = sw.flow_mods
    sw.connect()
    settle(engine)
    status = engine.status()["hv2"]
    assert status["connected"] and status["reconciled"] and status["in_flight"] == 0
    assert sw.table == desired_keys(engine, "hv2")
    assert status["flows"] == len(sw.table)
    assert sw.flow_mods > mods


def test_out_of_order_inputs(engine):
    # a port-status before the binding that names it; bindings before the switch connects
    m = model()
    engine.model_changed(m, 5)
    engine.model_changed(model(("a",)), 4)         # stale: ignored
    settle(engine)
    assert set(engine.effective_model().ports) == {"a", "b"}
    sw = FakeSwitch(engine, dpid("hv1"))
    dp = sw.connect()
    engine.port_status(dp, "tap-a", 7)
    engine.bindings_changed("hv1", {"a": (PENDING, "tap-a")})
    settle(engine)
    assert engine.bindings()["a"] == Binding("a", "hv1", 7)
    assert sw.table == desired_keys(engine, "hv1")
    # a reply from a connection that is gone changes nothing
    old = sw.datapath
    sw.disconnect()
    sw.connect()
    engine.flow_stats(old, 1, [(0, 1, 1)], False)
    engine.bundle_reply(old, 1, 5)
    settle(engine)
    assert engine.status()["hv1"]["reconciled"]
    assert sw.table == desired_keys(engine, "hv1")
    # an unknown datapath is ignored
    stranger = FakeSwitch(engine, 0x99)
    stranger.connect()
    settle(engine)
    assert set(engine.status()) == {"hv1"}
    assert stranger.flow_mods == 0


def test_store_bindings_count_until_the_host_reports(engine):
    m = replace(model(), bindings={"a": Binding("a", "hv1", 3), "b": Binding("b", "hv2", 4)})
    engine.model_changed(m, 1)
    settle(engine)
    assert engine.bindings()["a"].ofport == 3
    engine.bindings_changed("hv1", {})             # hv1 reports: a is not there any more
    settle(engine)
    assert "a" not in engine.bindings() and engine.bindings()["b"].ofport == 4


def test_port_up_timeline(engine):
    sws = up(engine, model(("a", "b", "c")))
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
    settle(engine)
    assert engine.port_up_latency_ms("c") is None          # flows ahead, no ofport yet
    time.sleep(0.01)
    engine.port_status(sws["hv1"].datapath, "tap-c", 5)
    settle(engine)
    latency = engine.port_up_latency_ms("c")
    assert latency is not None and latency >= 10
    timeline = engine.port_up_timeline("c")
    assert timeline["host"] == "hv1" and timeline["numbered_ms"] >= 10
    assert timeline["committed_ms"] >= timeline["sent_ms"] >= timeline["numbered_ms"]
    text = engine.metrics.render().decode()
    assert "weft_port_up_seconds_count 1.0" in text
    # ports present when the host first reports are not port-ups
    assert engine.port_up_latency_ms("a") is None


def test_observers_hear_of_a_change_after_its_bundles_are_out(engine):
    """The collectors' attribution rebuild must not compete with a port-up's compile."""
    sws = up(engine, model(("a", "b", "c")))
    seen = []
    engine.observe(lambda: seen.append(sws["hv1"].flow_mods))
    before = sws["hv1"].flow_mods
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
    engine.port_status(sws["hv1"].datapath, "tap-c", 5)
    settle(engine)
    assert engine.port_up_latency_ms("c") is not None
    assert seen and seen[0] > before, "an observer ran before the port's bundle was written"
    assert engine.port_up_timeline("c")["engine_cpu_ms"] >= 0


@pytest.mark.parametrize("numbered", [6, 9])
def test_flows_compiled_ahead_for_the_likely_ofport_change_nothing_but_time(engine, numbered):
    """A NIC seen without its ofport: the engine compiles ahead for the ofport after the last
    one the switch numbered (6 here). Right or wrong, the switch ends with exactly the flows a
    compile of the real state gives, and the timeline says whether the guess was right."""
    sws = up(engine, model(("a", "b", "c")))
    engine.port_status(sws["hv1"].datapath, "tap-old", 5)     # the switch numbered 5 before
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
    settle(engine)
    assert engine.call(lambda: engine._port_up[("hv1", "c")].guess) == 6
    engine.port_status(sws["hv1"].datapath, "tap-c", numbered)
    settle(engine)
    assert engine.port_up_latency_ms("c") is not None
    assert sws["hv1"].table == desired_keys(engine, "hv1")
    assert any(f.match_dict().get("in_port") == numbered for f in engine.desired_flows("hv1"))
    assert not any(f.match_dict().get("in_port") == 6 for f in engine.desired_flows("hv1")) \
        or numbered == 6


def test_a_slow_switch_does_not_stall_the_others():
    """A connection whose send queue is full: its bundles wait in the driver, the rest go on."""
    import threading

    class Stuck:
        """An os-ken-like connection with a bounded queue nobody drains."""
        def __init__(self, real):
            self.real, self.id = real, real.id
            self.ofproto, self.ofproto_parser = real.ofproto, real.ofproto_parser
            self._send_q_sem = threading.BoundedSemaphore(1)
            self._send_q_sem.acquire()               # full
            self.send_q = object()

    engine = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    try:
        engine.model_changed(model(), 1)
        sw1, sw2 = FakeSwitch(engine, dpid("hv1")), FakeSwitch(engine, dpid("hv2"))
        sw1.connect()
        settle(engine)
        stuck = Stuck(FakeDatapath(sw2))
        engine.switch_connected(stuck)             # hv2's connection is a stuck one
        engine.bindings_changed("hv1", {"a": (1, "tap-a")})
        engine.bindings_changed("hv2", {"b": (1, "tap-b")})
        settle(engine)
        assert sw1.table == desired_keys(engine, "hv1")
        assert not engine.status()["hv2"]["reconciled"]   # its dump request is still queued
    finally:
        engine.stop()


def test_wait_applied_names_a_host_that_went_away_without_waiting_out_the_timeout(engine):
    sws = up(engine, model())
    sws["hv2"].hold = True
    engine.model_changed(renumbered(model()), 2)
    settle(engine)
    sws["hv2"].disconnect()
    t0 = time.monotonic()
    assert engine.wait_applied(2, 5.0) == ["hv2"]
    assert time.monotonic() - t0 < 2.0
    assert engine.wait_applied(99, 0.2) == ["(engine)"], "a version the engine never saw"


def test_a_nic_that_leaves_its_host_stays_parked_there(engine):
    sws = up(engine, model())
    hv1_before = set(sws["hv1"].table)
    engine.bindings_changed("hv2", {})                    # b's NIC unplugged from hv2
    settle(engine)
    assert engine.bindings()["b"] == Binding("b", "hv2", PENDING)
    assert sws["hv1"].table == hv1_before, "peers keep their path to b: nothing to redo on re-plug"
    assert sws["hv2"].table == desired_keys(engine, "hv2")
    assert not any(k in sws["hv2"].table for k in _local_only(engine)), "no delivery to the old ofport"
    engine.bindings_changed("hv2", {"b": (7, "tap-b")})   # plugged again (a new ofport)
    settle(engine)
    assert engine.bindings()["b"] == Binding("b", "hv2", 7)
    assert sws["hv1"].table == hv1_before
    # a parked port that moves, or is deleted, leaves its old host
    engine.bindings_changed("hv2", {})
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "b": (2, "tap-b")})
    settle(engine)
    assert engine.bindings()["b"] == Binding("b", "hv1", 2)
    engine.bindings_changed("hv1", {"a": (1, "tap-a")})
    engine.model_changed(model(("a",)), 2)
    settle(engine)
    assert "b" not in engine.bindings()


def _local_only(engine):
    """Flow keys hv2 would have with b delivered at ofport 1 (and not without)."""
    from flows.compiler import CompilerIndex, compile_host
    m = engine.effective_model()
    with_b = replace(m, bindings={**m.bindings, "b": Binding("b", "hv2", 1)})
    return {f.key for f in compile_host(CompilerIndex(with_b), "hv2")} - \
           {f.key for f in compile_host(CompilerIndex(m), "hv2")}


def test_a_burst_of_snapshots_behind_a_busy_loop_is_coalesced(engine):
    import threading
    sws = up(engine, model())
    busy = threading.Thread(target=lambda: engine.call(lambda: time.sleep(0.3)))
    busy.start()
    time.sleep(0.05)                                   # the loop is busy now
    ports = ["a", "b"]
    for v in range(2, 52):
        ports.append(f"x{v}")
        engine.model_changed(model(tuple(ports)), v)
    assert engine._inbox.qsize() <= 2, "one pending snapshot, not fifty"
    busy.join()
    assert engine.wait_applied(25, 5.0) == [], "an intermediate version counts as applied"
    settle(engine)
    assert set(engine.effective_model().ports) == set(ports)
    for h in ("hv1", "hv2"):
        assert sws[h].table == desired_keys(engine, h)


def test_wait_planned_returns_once_what_was_queued_before_it_is_planned_on_every_host(engine):
    sws = up(engine, model(("a", "b", "c")))
    for sw in sws.values():
        sw.hold = True                    # bundles stay in flight: only planning is waited for
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (2, "tap-c")})   # c plugged on hv1
    at = engine.wait_planned(5.0)
    assert at is not None
    status = engine.status()
    # both hosts got c's flows planned and sent (hv1: its own port; hv2: the way to it)
    assert status["hv1"]["in_flight"] == 1 and status["hv2"]["in_flight"] == 1, status
    with_c = engine.call(lambda: {h: set(s.expected) for h, s in engine.hosts.items()})
    for h in ("hv1", "hv2"):
        assert with_c[h] == desired_keys(engine, h)
    sent = engine.call(lambda: [b.sent_at for s in engine.hosts.values() for b in s.in_flight.values()])
    assert len(sent) == 2 and at >= max(sent), "the mark was set after both bundles went out"
    # nothing queued: it returns at once, with the time of the batch that took the mark
    assert engine.wait_planned(5.0) >= at
