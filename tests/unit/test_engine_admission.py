"""The engine admits one connection per datapath id, whose certificate names the host that owns it; the rest get nothing and are hung up on."""
import pytest

from controller.driver import OpenFlowDriver
from controller.engine import Engine
from tests.fakeswitch import FakeSwitch
from tests.unit.test_engine import desired_keys, dpid, model, settle

# what an admitted connection is sent at once (meter-mod, flow dump) and then (its bundle)
OFPT_METER_MOD, OFPT_MULTIPART_REQUEST, OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD = 29, 18, 33, 34


@pytest.fixture
def engine():
    e = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    e.model_changed(model(), 1)
    e.bindings_changed("hv1", {"a": (1, "tap-a")})
    yield e
    e.stop()


def refusals(engine):
    return engine.refused()["by_reason"]


def test_a_switch_whose_certificate_names_its_host_gets_its_flows(engine):
    sw = FakeSwitch(engine, dpid("hv1"))
    dp = sw.connect(("hv1",))
    settle(engine)
    assert engine.admitted(dp) and not dp.hung_up
    assert {OFPT_METER_MOD, OFPT_MULTIPART_REQUEST, OFPT_BUNDLE_ADD} <= set(dp.received)
    assert sw.table == desired_keys(engine, "hv1") and sw.table
    assert engine.status()["hv1"]["connected"]
    assert engine.refused()["total"] == 0


@pytest.mark.parametrize("claimed,names,reason", [
    ("hv1", ("hv2",), "certificate-mismatch"),     # another host's certificate
    ("hv1", (), "certificate-mismatch"),
    (0xDEAD, ("hv1",), "unknown-datapath"),       # a valid certificate, a datapath id nobody owns
    (0xDEAD, None, "unknown-datapath"),
])
def test_an_impostor_gets_nothing_and_is_hung_up_on(engine, claimed, names, reason):
    sw = FakeSwitch(engine, dpid(claimed) if isinstance(claimed, str) else claimed)
    dp = sw.connect(names)
    settle(engine)
    assert dp.hung_up
    assert dp.received == [] and sw.table == set()
    assert not engine.admitted(dp)
    assert not engine.status().get("hv1", {}).get("connected", False)
    assert refusals(engine)[reason] == 1 and engine.refused()["total"] == 1
    recent = engine.refused()["recent"][-1]
    assert recent["reason"] == reason and recent["datapath_id"] == f"{sw.dpid:016x}"
    assert "# TYPE weft_switch_refusals_total counter" in engine.metrics.render().decode()
    assert f'weft_switch_refusals_total{{reason="{reason}"}} 1.0' in engine.metrics.render().decode()


def test_a_second_connection_is_refused_and_the_first_keeps_working(engine):
    real = FakeSwitch(engine, dpid("hv1"))
    first = real.connect(("hv1",))
    settle(engine)
    installed = set(real.table)
    twin = FakeSwitch(engine, dpid("hv1"))
    second = twin.connect(("hv1",))               # the right certificate, even
    settle(engine)
    assert second.hung_up and second.received == [] and twin.table == set()
    assert not first.hung_up and engine.admitted(first) and not engine.admitted(second)
    assert refusals(engine)["duplicate-connection"] == 1
    assert engine.status()["hv1"]["connects"] == 1
    # the refused one's end changes nothing; the first still gets what the model says next
    engine.switch_disconnected(second)
    engine.model_changed(model(("a", "b", "c")), 2)
    engine.bindings_changed("hv1", {"a": (1, "tap-a"), "c": (2, "tap-c")})
    settle(engine)
    assert engine.status()["hv1"]["connected"]
    assert real.table == desired_keys(engine, "hv1") and real.table != installed


def test_once_the_first_connection_is_gone_the_switch_is_let_in_again(engine):
    sw = FakeSwitch(engine, dpid("hv1"))
    sw.connect(("hv1",))
    settle(engine)
    sw.disconnect()
    dp = sw.connect(("hv1",))                     # a restarted switch
    settle(engine)
    assert engine.admitted(dp) and not dp.hung_up
    assert engine.status()["hv1"]["connects"] == 2 and engine.refused()["total"] == 0


def test_refusals_from_the_listener_are_counted_with_the_rest(engine):
    engine.switch_refused(("198.19.0.99", 40000), "tls-handshake", "the peer presented no certificate")
    engine.switch_refused(("198.19.0.99", 40001), "tls-handshake", "the peer presented no certificate")
    settle(engine)
    view = engine.refused()
    assert view["by_reason"]["tls-handshake"] == 2 and view["total"] == 2
    assert view["recent"][-1]["peer"] == "198.19.0.99:40001"


def test_a_refused_peer_is_logged_once_however_often_it_retries(engine, caplog):
    import logging
    caplog.set_level(logging.DEBUG, logger="controller.engine")
    for _ in range(5):
        FakeSwitch(engine, dpid("hv1")).connect(("hv2",))
    settle(engine)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert len(warnings) == 1 and "certificate-mismatch" in warnings[0].getMessage()
    assert refusals(engine)["certificate-mismatch"] == 5
