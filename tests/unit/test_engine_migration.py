"""Live migration in the engine loop, against simulated switches: request, standby, announcement, activation, clean-up."""
import pytest

from controller.driver import OpenFlowDriver
from controller.engine import Engine
from flows import cookies
from flows.pipeline import TUNNEL_OFPORT
from tests.fakeswitch import FakeSwitch
from tests.unit.test_engine import dpid, model, settle
from topology.errors import Conflict, NotFound, WeftError

EXTRA = ("hv3",)
MAC_B = "fa:16:3e:00:00:02"


def rarp(mac: str) -> bytes:
    return bytes(6 * [0xFF]) + bytes.fromhex(mac.replace(":", "")) + b"\x80\x35" + bytes(28)


@pytest.fixture
def lab():
    e = Engine(OpenFlowDriver(), datapath_id=dpid).start()
    m = model(("a", "b"), extra_hosts=EXTRA)
    e.model_changed(m, 1)
    sws = {h: FakeSwitch(e, dpid(h)) for h in m.hosts}
    for sw in sws.values():
        sw.connect()
    e.bindings_changed("hv1", {"a": (1, "tap-a")})
    e.bindings_changed("hv2", {"b": (1, "tap-b")})
    e.bindings_changed("hv3", {})
    settle(e)
    yield e, sws
    e.stop()


def where(engine, port):
    b = engine.bindings().get(port)
    return None if b is None else (b.host, b.ofport)


def tunnels_to(engine, host, ip_of_target):
    """Does `host` send b's MAC into the tunnel toward `ip_of_target`?"""
    flows = engine.desired_flows(host)
    return any(f.table == 40 and ("eth_dst", MAC_B) in f.match
               and ("set_field", "tun_ipv4_dst", ip_of_target) in f.actions
               and ("output", TUNNEL_OFPORT) in f.actions for f in flows)


def test_bad_requests_are_refused_and_change_nothing(lab):
    engine, _ = lab
    with pytest.raises(NotFound, match="unknown host 'hv9'"):
        engine.migrate("b", "hv9")
    with pytest.raises(NotFound, match="no port"):
        engine.migrate("zz", "hv3")
    with pytest.raises(WeftError, match="already on hv2"):
        engine.migrate("b", "hv2")
    engine.bindings_changed("hv2", {})            # b's NIC leaves: parked, not running anywhere
    settle(engine)
    with pytest.raises(Conflict, match="not bound"):
        engine.migrate("b", "hv3")
    assert engine.migration_view("b") is None
    assert where(engine, "b") == ("hv2", 0)


def test_destination_programmed_ahead_then_activated_by_the_announcement(lab):
    engine, sws = lab
    view = engine.migrate("b", "hv3")
    assert (view["from"], view["to"], view["state"]) == ("hv2", "hv3", "requested")
    engine.bindings_changed("hv3", {"b": (4, "tap-b")})   # the destination NIC appears
    settle(engine)
    assert where(engine, "b") == ("hv2", 1), "traffic still goes to the source"
    assert engine.effective_model().standby["b"].host == "hv3"
    assert engine.migration_view("b")["state"] == "ready"
    # hv3 holds its one announcement flow, and the network ahead
    hv3 = engine.desired_flows("hv3")
    announce = [f for f in hv3 if cookies.decode(f.cookie)[0] == "migrate"]
    assert [f.match for f in announce] == [(("in_port", 4),)]
    assert {f.key for f in announce} <= sws["hv3"].table
    assert tunnels_to(engine, "hv1", "198.18.0.12")       # hv1 -> hv2 (b's source)
    # an announcement from another MAC, or from another ofport, activates nothing
    engine.announce(sws["hv3"].datapath, 4, rarp("fa:16:3e:00:00:99"))
    engine.announce(sws["hv3"].datapath, 7, rarp(MAC_B))
    engine.announce(sws["hv2"].datapath, 4, rarp(MAC_B))
    settle(engine)
    assert where(engine, "b") == ("hv2", 1)
    # the VM's RARP on hv3: b moves there on every host
    engine.announce(sws["hv3"].datapath, 4, rarp(MAC_B))
    settle(engine)
    assert where(engine, "b") == ("hv3", 4)
    assert "b" not in engine.effective_model().standby
    view = engine.migration_view("b")
    assert view["state"] == "active" and view["trigger"] == "rarp"
    assert view["blackout_ms"] is not None and view["blackout_ms"] >= 0
    assert tunnels_to(engine, "hv1", "198.18.0.20") and not tunnels_to(engine, "hv1", "198.18.0.12")
    for h, sw in sws.items():
        assert sw.table == {f.key for f in engine.desired_flows(h)}, h
    # the source's NIC still reported (not unplugged yet) counts for nothing, even when hv2 reports again
    engine.bindings_changed("hv2", {"b": (1, "tap-b"), "a2": (2, "tap-x")})
    settle(engine)
    assert where(engine, "b") == ("hv3", 4)
    with pytest.raises(Conflict, match="still migrating"):
        engine.migrate("b", "hv1")
    # the source NIC leaves: done
    engine.bindings_changed("hv2", {})
    settle(engine)
    assert where(engine, "b") == ("hv3", 4)
    assert engine.migration_view("b")["state"] == "done"
    # and it can migrate back
    assert engine.migrate("b", "hv2")["state"] == "requested"


def test_blackout_counts_only_once_every_host_confirmed(lab):
    engine, sws = lab
    engine.migrate("b", "hv3")
    engine.bindings_changed("hv3", {"b": (4, "tap-b")})
    settle(engine)
    sws["hv1"].hold = True                  # hv1 sends to b: its commit reply is late
    engine.announce(sws["hv3"].datapath, 4, rarp(MAC_B))
    settle(engine)
    view = engine.migration_view("b")
    assert view["state"] == "active" and view["blackout_ms"] is None
    sws["hv1"].hold = False
    sws["hv1"].release()
    settle(engine)
    assert engine.migration_view("b")["blackout_ms"] is not None


def test_a_destination_nic_that_leaves_before_activation_leaves_the_source_alone(lab):
    engine, _ = lab
    engine.migrate("b", "hv3")
    engine.bindings_changed("hv3", {"b": (4, "tap-b")})
    settle(engine)
    engine.bindings_changed("hv3", {})
    settle(engine)
    assert where(engine, "b") == ("hv2", 1)
    assert engine.effective_model().standby == {}
    assert engine.migration_view("b")["state"] == "requested"
