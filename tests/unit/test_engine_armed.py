"""Armed port-up bundles: written on the switch's own port-status, counted by the engine, never installed on a wrong guess."""
import threading
import time

import pytest

from controller import replay
from controller.armed import ArmedBundles
from controller.driver import OpenFlowDriver
from controller.engine import Engine
from flows.compiler import PENDING
from tests.unit.test_engine import desired_keys, dpid, model, renumbered, settle, up


@pytest.fixture
def engine():
    e = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    yield e
    e.stop()


def wait_armed(engine, host: str, want: bool = True) -> None:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if engine.call(lambda: engine.hosts[host].armed is not None) == want:
            return
        time.sleep(0.005)
    raise AssertionError(f"{host} {'never armed' if want else 'still armed'}")


class Paused:
    """The engine loop held inside one input: what happens meanwhile is the caller's thread alone."""

    def __init__(self, engine):
        self.engine, self.go, self.inside = engine, threading.Event(), threading.Event()

    def __enter__(self):
        def hold():
            self.inside.set()
            self.go.wait(5)
        threading.Thread(target=lambda: self.engine.call(hold, 6), daemon=True).start()
        assert self.inside.wait(2)
        return self

    def __exit__(self, *exc):
        self.go.set()
        settle(self.engine)


def in_port_flows(engine, host: str, ofport: int) -> set:
    return {f.key for f in engine.desired_flows(host) if f.match_dict().get("in_port") == ofport}


def plug_c(engine, sws):
    """hv1 numbered tap-old 5 before; NIC c appears on hv1 without its ofport."""
    engine.port_status(sws["hv1"].datapath, "tap-old", 5)
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
    settle(engine)


def armed_c(engine):
    """Switches up, NIC c seen on hv1 without its number, its bundle armed."""
    sws = up(engine, model(("a", "b", "c")))
    plug_c(engine, sws)
    wait_armed(engine, "hv1")
    return sws


def test_a_right_guess_goes_out_on_the_port_status_before_the_engine_takes_it(engine):
    sws = armed_c(engine)
    sw = sws["hv1"]
    commits = sw.commits
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-c", 6)
        # written on this thread, the engine loop still held: the switch has c's flows
        assert sw.commits == commits + 1
    assert sw.table == desired_keys(engine, "hv1")
    assert in_port_flows(engine, "hv1", 6) <= sw.table and in_port_flows(engine, "hv1", 6)
    assert sw.commits == commits + 1, "the engine sent nothing more: the armed bundle was its plan"
    status = engine.status()["hv1"]
    assert status["in_flight"] == 0 and status["flows"] == len(sw.table)
    timeline = engine.port_up_timeline("c")
    assert timeline["sent_armed"] is True
    assert timeline["committed_ms"] >= timeline["sent_ms"]
    assert engine.call(lambda: engine.hosts["hv1"].armed) is None


def test_a_wrong_guess_is_never_installed(engine):
    sws = armed_c(engine)
    sw = sws["hv1"]
    commits, before = sw.commits, set(sw.table)
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-c", 9)     # not the 6 it was compiled for
        assert sw.commits == commits and sw.table == before
    assert sw.commits == commits + 1
    assert sw.table == desired_keys(engine, "hv1")
    assert in_port_flows(engine, "hv1", 9) <= sw.table
    assert engine.port_up_timeline("c")["sent_armed"] is False
    # another interface numbered 6 does not fire it either
    engine.model_changed(model(("a", "b", "c", "d")), 2)
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (9, "tap-c"), "d": (PENDING, "tap-d")})
    settle(engine)
    wait_armed(engine, "hv1")
    commits = sw.commits
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-x", 10)
        assert sw.commits == commits
    assert sw.table == desired_keys(engine, "hv1")


def test_a_change_meanwhile_takes_it_back_and_the_books_stay_true(engine):
    sws = armed_c(engine)
    sw = sws["hv1"]
    engine.model_changed(renumbered(model(("a", "b", "c"))), 2)   # hv1's flows change
    settle(engine)
    wait_armed(engine, "hv1")          # compiled ahead again, for the new model
    commits = sw.commits
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-c", 6)
        assert sw.commits == commits + 1
    assert sw.commits == commits + 1
    assert sw.table == desired_keys(engine, "hv1")


def test_fired_while_the_engine_plans_another_bundle_for_the_host(engine):
    """The port-status fires it while the loop is busy; the loop's next sync to the host
    takes it back first, counts it, and plans against books that hold it."""
    sws = armed_c(engine)
    sw = sws["hv1"]
    with Paused(engine):
        engine.model_changed(renumbered(model(("a", "b", "c"))), 2)
        engine.port_status(sw.datapath, "tap-c", 6)       # fired; the change is queued before it
    assert sw.table == desired_keys(engine, "hv1")
    assert in_port_flows(engine, "hv1", 6) <= sw.table
    status = engine.status()["hv1"]
    assert status["in_flight"] == 0 and status["flows"] == len(sw.table)
    assert engine.wait_applied(2, 1.0) == []
    assert engine.port_up_latency_ms("c") is not None


def test_two_nics_waiting_on_one_host_only_the_right_numbering_sends(engine):
    """Both NICs are guessed one above the last number: one is armed, and it goes out only if
    the switch gives that interface exactly that number (here it gives it the next one)."""
    sws = up(engine, model(("a", "b", "c", "d")))
    engine.port_status(sws["hv1"].datapath, "tap-old", 5)
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c"), "d": (PENDING, "tap-d")})
    settle(engine)
    wait_armed(engine, "hv1")
    name = engine.call(lambda: engine.hosts["hv1"].armed.name)
    other = {"tap-c": "tap-d", "tap-d": "tap-c"}[name]
    sw = sws["hv1"]
    commits = sw.commits
    with Paused(engine):
        engine.port_status(sw.datapath, other, 6)      # the other NIC took the guessed number
        engine.port_status(sw.datapath, name, 7)
        assert sw.commits == commits
    assert sw.table == desired_keys(engine, "hv1")
    assert engine.status()["hv1"]["in_flight"] == 0


def unplug_c(engine, sws):
    """c plugged and numbered 6 on hv1, then its NIC leaves: the port stays parked on hv1."""
    plug_c(engine, sws)
    engine.port_status(sws["hv1"].datapath, "tap-c", 6)
    settle(engine)
    engine.bindings_changed("hv1", {"a": (1, "tap-a")})
    engine.port_status(sws["hv1"].datapath, "tap-c", None)
    settle(engine)


@pytest.mark.parametrize("first", ["row", "port-status"])
def test_a_nic_plugged_again_goes_out_on_whichever_confirmation_comes_last(engine, first):
    sws = up(engine, model(("a", "b", "c")))
    unplug_c(engine, sws)
    wait_armed(engine, "hv1")              # armed for tap-c as 7 while the NIC is away
    sw = sws["hv1"]
    assert not in_port_flows(engine, "hv1", 7)
    commits = sw.commits
    with Paused(engine):
        if first == "row":
            engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
            assert sw.commits == commits, "the row alone sends nothing"
            engine.port_status(sw.datapath, "tap-c", 7)
        else:
            engine.port_status(sw.datapath, "tap-c", 7)
            assert sw.commits == commits, "the number alone sends nothing"
            engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
        assert sw.commits == commits + 1
    assert sw.commits == commits + 1
    assert sw.table == desired_keys(engine, "hv1") and in_port_flows(engine, "hv1", 7) <= sw.table
    assert engine.port_up_timeline("c")["sent_armed"] is True
    assert engine.status()["hv1"]["in_flight"] == 0


def test_another_port_behind_the_name_never_gets_its_flows(engine):
    """The interface comes back under the same name with another iface-id (d's): c's armed
    bundle must not go out, whatever number the switch gives it."""
    sws = up(engine, model(("a", "b", "c", "d")))
    unplug_c(engine, sws)
    wait_armed(engine, "hv1")
    sw = sws["hv1"]
    commits = sw.commits
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-c", 7)
        engine.bindings_changed("hv1", {"a": (1, "tap-a"), "d": (PENDING, "tap-c")})
        assert sw.commits == commits
    assert sw.table == desired_keys(engine, "hv1")
    assert engine.call(lambda: engine.bindings()["d"].ofport) == 7
    assert engine.call(lambda: engine.bindings()["c"].ofport) == PENDING


def test_a_refused_armed_bundle_sends_the_host_back_to_a_dump(engine):
    sws = armed_c(engine)
    sw = sws["hv1"]
    good = set(sw.table)
    armed_cookies = engine.call(lambda: {f.cookie for f in engine.hosts["hv1"].armed.bundle.items
                                         if not isinstance(f, tuple)})
    sw.reject_cookie = next(iter(armed_cookies - {k[2] for k in good}))
    engine.port_status(sw.datapath, "tap-c", 6)
    settle(engine)
    assert sw.errors_sent == 1 and sw.table == good
    status = engine.status()["hv1"]
    assert status["bundle_errors"] == 1 and "refused" in status["last_error"]
    sw.reject_cookie = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sw.table != desired_keys(engine, "hv1"):
        time.sleep(0.02)
    assert sw.table == desired_keys(engine, "hv1"), "reconciled after the backoff"


def test_a_disconnect_forgets_it(engine):
    sws = armed_c(engine)
    sw = sws["hv1"]
    old = sw.datapath
    sw.disconnect()
    settle(engine)
    assert engine.driver.disarm(old, "tap-c") is None
    old.closed = False                      # a late port-status on the old connection
    commits = sw.commits
    engine.port_status(old, "tap-c", 6)
    assert sw.commits == commits


def test_armed_bundles_go_out_once_both_facts_are_in():
    sent = []
    armed = ArmedBundles(lambda dp, data: sent.append((dp, data)))
    dp, other = object(), object()
    armed.arm(dp, "tap-c", "c", 6, b"bundle", seen=True)
    assert not armed.port_numbered(dp, "tap-c", 7) and sent == []
    assert not armed.port_numbered(dp, "tap-c", 6), "numbered otherwise once: never"
    armed.arm(dp, "tap-c", "c", 6, b"bundle", seen=True)
    assert not armed.port_numbered(dp, "tap-d", 6) and not armed.port_numbered(other, "tap-c", 6)
    assert armed.port_numbered(dp, "tap-c", 6) and sent == [(dp, b"bundle")]
    assert not armed.port_numbered(dp, "tap-c", 6) and len(sent) == 1
    fired = armed.disarm(dp, "tap-c")
    assert fired is not None and fired <= time.monotonic()
    assert armed.disarm(dp, "tap-c") is None
    # not seen yet: the number and the row, in either order; news of the NIC that left
    # (its removal, a late change with its old number) says nothing of the one to come
    armed.arm(dp, "tap-c", "c", 6, b"two", seen=False)
    assert not armed.port_numbered(dp, "tap-c", None) and not armed.port_numbered(dp, "tap-c", 3)
    assert not armed.port_numbered(dp, "tap-c", 6)
    assert not armed.rows_seen(other, {"c": (0, "tap-c")})
    assert not armed.rows_seen(dp, {"d": (0, "tap-c")}), "another iface-id behind the name"
    assert armed.rows_seen(dp, {"c": (0, "tap-c")}) and sent[-1] == (dp, b"two")
    armed.arm(dp, "tap-c", "c", 6, b"three", seen=False)
    assert not armed.rows_seen(dp, {"c": (0, "tap-c")})
    assert armed.rows_seen(dp, {"c": (6, "tap-c")}) and sent[-1] == (dp, b"three"), "the row's own ofport"
    # seen, then the NIC left before it was numbered: never
    armed.arm(dp, "tap-c", "c", 6, b"four", seen=True)
    assert not armed.rows_seen(dp, {})
    assert not armed.port_numbered(dp, "tap-c", 6) and len(sent) == 3
    # removed by the switch: never
    armed.arm(dp, "tap-c", "c", 6, b"five", seen=True)
    assert not armed.port_numbered(dp, "tap-c", None)
    assert not armed.port_numbered(dp, "tap-c", 6) and len(sent) == 3
    assert armed.disarm(dp, "tap-c") is None, "taken back unsent"
    armed.arm(dp, "tap-c", "c", 6, b"x", seen=True)
    armed.forget(dp)
    assert not armed.port_numbered(dp, "tap-c", 6) and len(armed) == 0


def test_the_stores_record_of_bindings_leaves_it_armed(engine):
    """weftd's binding recorder writes what hosts report into the store half a second later:
    no flow changes with it, so a NIC plugged again meanwhile keeps its armed bundle."""
    from dataclasses import replace

    from topology.model import Binding
    sws = up(engine, model(("a", "b", "c")))
    unplug_c(engine, sws)
    wait_armed(engine, "hv1")
    armed = engine.call(lambda: engine.hosts["hv1"].armed.bundle.bundle_id)
    from topology.changes import record_changes
    recorded = replace(model(("a", "b", "c")), bindings={"a": Binding("a", "hv1", 1), "c": Binding("c", "hv1", 6)})
    record_changes(recorded, {"bindings": {"a", "c"}})      # as the store tracks its rows
    engine.model_changed(recorded, 2)
    settle(engine)
    assert engine.call(lambda: engine.hosts["hv1"].armed.bundle.bundle_id) == armed
    sw = sws["hv1"]
    commits = sw.commits
    with Paused(engine):
        engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
        engine.port_status(sw.datapath, "tap-c", 7)
        assert sw.commits == commits + 1
    assert sw.table == desired_keys(engine, "hv1") and engine.status()["hv1"]["in_flight"] == 0


def fresh_flows(engine, host: str) -> set:
    """The host's flows compiled from scratch on the engine's current model (no index reuse)."""
    from flows import compiler

    def compile_fresh():
        return {f.key for f in compiler.compile_host(compiler.CompilerIndex(engine._model), host)}
    return engine.call(compile_fresh)


def replug_c(engine, also=None):
    """c's NIC leaves hv1 and comes back numbered as guessed, in one batch (with `also`);
    (switches, the model its armed bundle was compiled with)."""
    sws = up(engine, model(("a", "b", "c")))
    unplug_c(engine, sws)
    wait_armed(engine, "hv1")
    guessed = engine.call(lambda: engine.hosts["hv1"].armed.model)
    with Paused(engine):
        engine.port_status(sws["hv1"].datapath, "tap-c", 7)
        engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (PENDING, "tap-c")})
        if also:
            also()
    return sws, guessed


def test_a_batch_that_is_exactly_the_guess_takes_its_compile_as_the_new_state(engine):
    """Row and number as guessed, nothing else: the engine adopts the model and index the
    armed bundle was compiled with (no compile beside ovs-vswitchd), and they are right."""
    sws, guessed = replug_c(engine)
    assert engine.call(lambda: engine._model) is guessed
    assert engine.bindings()["c"].ofport == 7
    for host in ("hv1", "hv2"):
        assert sws[host].table == desired_keys(engine, host) == fresh_flows(engine, host), host
    # and the state goes on from there: a change to every host of the network
    engine.model_changed(renumbered(model(("a", "b", "c"))), 2)
    settle(engine)
    for host in ("hv1", "hv2"):
        assert sws[host].table == desired_keys(engine, host) == fresh_flows(engine, host), host
    assert engine.wait_applied(2, 1.0) == []


def test_a_batch_with_more_than_the_guess_is_compiled(engine):
    sws, guessed = replug_c(engine, also=lambda: engine.bindings_changed("hv2", {}))  # b's NIC left
    assert engine.call(lambda: engine._model) is not guessed
    for host in ("hv1", "hv2"):
        assert sws[host].table == desired_keys(engine, host) == fresh_flows(engine, host), host
    assert engine.status()["hv1"]["in_flight"] == 0


def test_a_port_ups_bundle_marks_its_nic_fresh_and_refills_the_drop_meter(engine, monkeypatch):
    """Once a NIC's port-up bundle is written (here armed, on the switch's port-status), the
    engine names it fresh for the drop service (controller/replay.py), and the drop meter is set
    again right behind the bundle (a full bucket); other hosts and MACs are not fresh, and
    freshness lapses."""
    sws = armed_c(engine)
    sw = sws["hv1"]
    mac = bytes.fromhex("fa163e000003")                # c's MAC in tests.unit.test_engine.model
    assert engine.fresh_port("hv1", mac) is None, "not up yet"
    refills = sw.meter_mods
    with Paused(engine):
        engine.port_status(sw.datapath, "tap-c", 6)
        fresh = engine.fresh_port("hv1", mac)          # marked by the firing thread itself
    assert (fresh.port, fresh.vni) == ("c", 1001)
    assert sw.meter_mods == refills + 1, "the drop meter set again after the bundle"
    assert engine.fresh_port("hv2", mac) is None and engine.fresh_port("hv1", bytes(6)) is None
    monkeypatch.setattr(replay, "FRESH_S", 0.0)
    assert engine.fresh_port("hv1", mac) is None, "no longer fresh"


def test_a_nic_that_leaves_its_host_is_no_longer_fresh_there(engine):
    """What the host drops for a NIC that left (unplugged again within FRESH_S) is its flows'
    answer: never sent back (it would be dropped and sampled again, and sent back again)."""
    sws = armed_c(engine)
    engine.port_status(sws["hv1"].datapath, "tap-c", 6)
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (6, "tap-c")})
    settle(engine)
    mac = bytes.fromhex("fa163e000003")
    assert engine.fresh_port("hv1", mac).port == "c"
    engine.bindings_changed("hv1", {"a": (1, "tap-a")})           # c's NIC unplugged
    settle(engine)
    assert engine.fresh_port("hv1", mac) is None


def test_what_the_host_held_for_a_nic_goes_back_right_behind_its_bundle(engine):
    """A drop sample held for the parked NIC (controller/replay.py) is sent back as a packet-out
    on the same connection, after the bundle's commit, once; nothing for another NIC or host."""
    from os_ken.ofproto.ofproto_v1_4 import OFPT_BUNDLE_CONTROL, OFPT_PACKET_OUT
    sws = armed_c(engine)
    dp = sws["hv1"].datapath
    mac = bytes.fromhex("fa163e000003")                # c's MAC in tests.unit.test_engine.model
    frame = mac + bytes.fromhex("fa163e000001") + b"\x08\x00" + bytes(46)
    match = {"in_port": 60000, "tunnel_id": 1001, "reg6": 1001, "reg7": 1}
    wire = replay.encode(dp, 30, match, frame)
    assert engine.hold("hv1", mac, 1001, frame, wire)
    assert engine.hold("hv1", bytes(6), 1001, bytes(6) + frame[6:], b"other"), "another NIC's"
    assert engine.hold("hv2", mac, 1001, frame, b"other"), "another host's"
    seen = []
    real_send = dp.send
    dp.send = lambda buf: seen.append(bytes(buf)) or real_send(buf)
    before = len(dp.received)
    with Paused(engine):
        engine.port_status(dp, "tap-c", 6)
    sent = dp.received[before:]
    assert sent.count(OFPT_PACKET_OUT) == 1, sent
    commit = max(i for i, t in enumerate(sent) if t == OFPT_BUNDLE_CONTROL)
    assert sent.index(OFPT_PACKET_OUT) > commit, "after the commit"
    out = next(b for chunk in seen for b in _messages(chunk) if b[1] == OFPT_PACKET_OUT)
    assert out.endswith(frame)
    assert engine.fresh.counters["released"] == 1
    assert engine.fresh.mark("hv1", "fa:16:3e:00:00:03", "c", 1001) == [], "sent once"


def _messages(buf: bytes):
    off = 0
    while off < len(buf):
        length = int.from_bytes(buf[off + 2:off + 4], "big")
        yield buf[off:off + length]
        off += length
