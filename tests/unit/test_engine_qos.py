"""The engine keeps each switch's QoS meters equal to the compiled ones, confirmed like its flows."""
from dataclasses import replace

from controller.driver import OpenFlowDriver
from controller.engine import Engine
from flows import qos as Q
from tests.fakeswitch import FakeSwitch
from topology.model import Host, Model, Network, Port, Tenant
from topology.qos import QoS

from test_engine import dpid, engine, settle  # noqa: F401,E402  (engine: the shared fixture)

LIMITS = QoS(egress_rate=50_000, ingress_rate=50_000, dscp=46)


def model(qos=LIMITS) -> Model:
    return Model(
        tenants={"red": Tenant("t-red", "red")},
        networks={"n1": Network("n1", "red", "net", "10.0.0.0/24", 1001)},
        ports={"a": Port("a", "red", "net", "a", "fa:16:3e:00:00:01", ("10.0.0.11",), qos=qos),
               "b": Port("b", "red", "net", "b", "fa:16:3e:00:00:02", ("10.0.0.12",))},
        hosts={h: Host(h, ip, f"unix:/nonexistent/{h}")
               for h, ip in (("hv1", "198.18.0.11"), ("hv2", "198.18.0.12"))})


def up(engine, m, version=1):
    engine.model_changed(m, version)
    sws = {h: FakeSwitch(engine, dpid(h)) for h in m.hosts}
    for sw in sws.values():
        sw.connect()
    engine.bindings_changed("hv1", {"a": (3, "tap-a")})
    engine.bindings_changed("hv2", {"b": (4, "tap-b")})
    settle(engine)
    return sws


def wanted(ofport=3, rate=50_000):
    return {Q.meter_id(ofport, k): Q.Meter(Q.meter_id(ofport, k), False, rate, int(rate * 0.8))
            for k in (Q.EGRESS_RATE, Q.INGRESS_RATE)}


def test_meters_go_with_the_flows_and_count_once_committed(engine):
    sws = up(engine, model())
    assert sws["hv1"].meters == wanted() and sws["hv2"].meters == {}
    assert engine.status()["hv1"]["meters"] == 2
    # a held commit: the meter change is sent, not yet confirmed
    commits = sws["hv1"].commits
    sws["hv1"].hold = True
    engine.model_changed(model(replace(LIMITS, egress_rate=20_000, ingress_rate=20_000)), 2)
    settle(engine)
    assert sws["hv1"].meters == wanted(rate=20_000), "changed in place (modify), before the bundle"
    assert engine.wait_applied(2, 0.2) == ["hv1"]
    sws["hv1"].hold = False
    sws["hv1"].release()
    settle(engine)
    assert engine.wait_applied(2, 1.0) == []
    assert sws["hv1"].commits == commits + 1, "a meter change alone is confirmed by an (empty) bundle"


def test_removing_qos_deletes_the_meters_after_the_flows_that_use_them(engine):
    sws = up(engine, model())
    sw = sws["hv1"]
    sent_before = len(sw.datapath.received)
    engine.model_changed(model(None), 2)
    settle(engine)
    assert sw.meters == {} and engine.status()["hv1"]["meters"] == 0
    kinds = sw.datapath.received[sent_before:]
    commit_at = max(i for i, t in enumerate(kinds) if t == 33)          # the bundle's commit
    assert [i for i, t in enumerate(kinds) if t == 29] and all(
        i > commit_at for i, t in enumerate(kinds) if t == 29), kinds   # meter-mods after it


def test_a_reconnect_or_restart_with_unchanged_qos_sends_no_meter_mod(engine):
    sws = up(engine, model())
    mods = {h: sw.qos_meter_mods for h, sw in sws.items()}
    fresh = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    try:
        engine.stop()
        fresh.model_changed(model(), 1)
        fresh.bindings_changed("hv1", {"a": (3, "tap-a")})
        fresh.bindings_changed("hv2", {"b": (4, "tap-b")})
        for sw in sws.values():
            sw.engine = fresh
            sw.connect()
        settle(fresh)
        assert all(s["reconciled"] for s in fresh.status().values())
        # the greeting's own meters only, nothing for QoS
        assert {h: sw.qos_meter_mods - mods[h] for h, sw in sws.items()} == {"hv1": 0, "hv2": 0}
        assert all(sw.meter_mods > 0 for sw in sws.values())
        assert sws["hv1"].meters == wanted() and fresh.status()["hv1"]["flow_mods"] == 0
    finally:
        fresh.stop()


def test_a_meter_lost_by_the_switch_is_put_back_on_reconnect(engine):
    sws = up(engine, model())
    sw = sws["hv1"]
    sw.meters.pop(Q.meter_id(3, Q.INGRESS_RATE))
    sw.disconnect()
    sw.connect()
    settle(engine)
    assert sw.meters == wanted()


def test_a_switch_that_will_not_dump_meters_is_reconciled_as_having_none(engine):
    engine.model_changed(model(), 1)
    sw = FakeSwitch(engine, dpid("hv1"))
    sw.meters_answer = False
    sw.connect()
    engine.bindings_changed("hv1", {"a": (3, "tap-a")})
    settle(engine)
    assert engine.status()["hv1"]["reconciled"] and sw.meters == wanted()
