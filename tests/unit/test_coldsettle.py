"""A cold start's hold on first bundles: when it ends, which hosts it lets go early, and the engine holding to it."""
import time

from controller.coldsettle import ColdSettle
from controller.driver import OpenFlowDriver
from controller.engine import Engine
from flows.index import CompilerIndex
from tests.fakeswitch import FakeSwitch
from topology.model import Binding, Host, Model, Network, Port, Tenant


def model(hosts=("hv1", "hv2"), ports=(("a", "net"), ("b", "net")), bindings=None) -> Model:
    return Model(
        tenants={"red": Tenant("t-red", "red")},
        networks={"n1": Network("n1", "red", "net", "10.0.0.0/24", 1001),
                  "n2": Network("n2", "red", "other", "10.1.0.0/24", 1002)},
        ports={p: Port(p, "red", net, p, f"fa:16:3e:00:00:{i + 1:02x}", (f"10.0.0.{11 + i}",))
               for i, (p, net) in enumerate(ports)},
        hosts={h: Host(h, f"198.18.0.{11 + i}", f"unix:/nonexistent/{h}") for i, h in enumerate(hosts)},
        bindings=bindings or {})


def test_off_without_a_quiet_time():
    c = ColdSettle(0.0, 60.0)
    assert not c.on and not c.hold("hv1", 0.0) and c.over(0.0, {}, {})


def test_ends_when_every_host_of_the_model_has_reported():
    c = ColdSettle(2.0, 60.0)
    c.start(100.0)
    hosts = {"hv1": None, "hv2": None}
    assert c.hold("hv1", 100.1)
    assert not c.over(100.2, hosts, {"hv1": {}})
    assert c.over(100.3, hosts, {"hv1": {}, "hv2": {}, "elsewhere": {}})
    assert c.release() == ["hv1"]
    assert not c.hold("hv2", 100.4), "over for good"


def test_ends_after_quiet_time_without_a_new_report():
    c = ColdSettle(2.0, 60.0)
    c.start(100.0)
    hosts = {"hv1": None, "hv2": None}        # hv2 never reports (down)
    c.progress(101.0)
    assert c.hold("hv1", 101.5)
    assert c.deadline() <= 101.5, "a held host: a look at it is due"
    assert c.ready(101.5, CompilerIndex(model()), {}) == []      # hv1 has not reported
    assert c.deadline() == 101.6, "the next look (SCAN), before the quiet time's end (103.5)"
    assert not c.over(103.0, hosts, {"hv1": {}})
    c.progress(103.0)                     # another host's first report or switch: the clock starts again
    assert not c.over(104.9, hosts, {"hv1": {}})
    assert c.over(105.0, hosts, {"hv1": {}})


def test_ends_at_the_limit_even_while_hosts_keep_reporting():
    c = ColdSettle(2.0, 10.0)
    c.start(100.0)
    hosts = {f"hv{i}": None for i in range(100)}
    for i in range(9):
        c.progress(101.0 + i)
        assert not c.over(101.0 + i, hosts, {})
    assert c.over(110.0, hosts, {})


def test_a_host_whose_networks_are_all_bound_is_let_go_early():
    c = ColdSettle(2.0, 60.0)
    c.start(0.0)
    # hv1 holds a (net) and c (other); b (net) is not bound yet; hv3 holds nothing
    m = model(hosts=("hv1", "hv2", "hv3"), ports=(("a", "net"), ("b", "net"), ("c", "other")),
              bindings={"a": Binding("a", "hv1", 1), "c": Binding("c", "hv1", 2)})
    for h in ("hv1", "hv2", "hv3"):
        c.hold(h, 0.1)
    assert c.ready(0.2, CompilerIndex(m), {"hv1": {}, "hv3": {}}) == ["hv3"], \
        "hv1 waits for b; hv2 has not reported"
    assert c.ready(0.25, CompilerIndex(m), {"hv1": {}, "hv3": {}}) == [], "at most one look every SCAN"
    m2 = model(hosts=("hv1", "hv2", "hv3"), ports=(("a", "net"), ("b", "net"), ("c", "other")),
               bindings={"a": Binding("a", "hv1", 1), "c": Binding("c", "hv1", 2),
                         "b": Binding("b", "hv2", 1)})
    assert c.ready(0.5, CompilerIndex(m2), {"hv1": {}, "hv2": {}, "hv3": {}}) == ["hv1", "hv2"]
    assert not c.hold("hv1", 0.6), "let go: not held again"
    assert c.release() == []


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_engine_sends_each_host_one_bundle_once_its_peers_have_reported():
    def dpid(name):
        return {"hv1": 0x11, "hv2": 0x12}[name]
    e = Engine(OpenFlowDriver(), datapath_id=dpid, settle=30.0).start()
    try:
        e.model_changed(model(), 1)
        sws = {h: FakeSwitch(e, dpid(h)) for h in ("hv1", "hv2")}
        for sw in sws.values():
            sw.connect()
        e.bindings_changed("hv1", {"a": (1, "tap-a")})
        for _ in range(3):
            e.call(lambda: None)
        time.sleep(0.3)                    # several looks at the held hosts
        assert sws["hv1"].commits == 0 and sws["hv2"].commits == 0, "hv1's network has b, not bound yet"
        assert e.status()["hv1"]["reconciled"]
        e.bindings_changed("hv2", {"b": (1, "tap-b")})
        wait_for(lambda: sws["hv1"].commits and sws["hv2"].commits)
        for h, sw in sws.items():
            assert sw.table == {f.key for f in e.desired_flows(h)}
            assert sw.commits == 1, "the whole table in one bundle"
        # after the cold start, changes go out at once as always
        e.model_changed(model(ports=(("a", "net"), ("b", "net"), ("c", "net"))), 2)
        assert e.wait_applied(2, 5.0) == []
    finally:
        e.stop()


def test_a_host_that_never_reports_holds_the_others_for_the_quiet_time_only():
    def dpid(name):
        return {"hv1": 0x11, "hv2": 0x12}[name]
    e = Engine(OpenFlowDriver(), datapath_id=dpid, settle=0.3).start()
    try:
        e.model_changed(model(), 1)
        sw = FakeSwitch(e, dpid("hv1"))
        sw.connect()
        e.bindings_changed("hv1", {"a": (1, "tap-a")})   # b is bound nowhere: hv2 is down
        wait_for(lambda: sw.commits == 1)
        assert sw.table == {f.key for f in e.desired_flows("hv1")}
    finally:
        e.stop()


def test_a_batch_touching_many_hosts_sends_the_rest_in_slices(monkeypatch):
    """Past BIG_BATCH hosts and a slice's time, the rest of a batch's hosts are synced between
    later batches: every host still gets its change and wait_applied waits for all of them."""
    import controller.engine as engine_mod
    monkeypatch.setattr(engine_mod, "RELEASE_SLICE", 0.0)      # every host past BIG_BATCH waits
    names = [f"hv{i:03d}" for i in range(engine_mod.BIG_BATCH + 40)]
    ids = {h: 0x100 + i for i, h in enumerate(names)}
    ports = tuple((f"p{i}", "net") for i in range(len(names)))

    def bound(m):
        return Model(m.tenants, m.networks, m.ports, m.hosts,
                     {f"p{i}": Binding(f"p{i}", h, 1) for i, h in enumerate(names)})
    e = Engine(OpenFlowDriver(), datapath_id=ids.get).start()
    try:
        e.model_changed(bound(model(hosts=names, ports=ports)), 1)
        sws = {h: FakeSwitch(e, ids[h]) for h in names}
        for sw in sws.values():
            sw.connect()
        assert e.wait_applied(1, 10.0) == []
        wait_for(lambda: e.call(lambda: not e._releasing))     # the connections' own batches done
        sliced = e.call(lambda: e._released[0])
        before = {h: sw.commits for h, sw in sws.items()}
        grown = bound(model(hosts=names, ports=ports + (("extra", "net"),)))
        grown = Model(grown.tenants, grown.networks, grown.ports, grown.hosts,
                      {**grown.bindings, "extra": Binding("extra", names[0], 2)})
        e.model_changed(grown, 2)        # a port bound on one host: every host of its network
        assert e.wait_applied(2, 10.0) == []
        for h, sw in sws.items():
            assert sw.table == {f.key for f in e.desired_flows(h)}
            assert sw.commits == before[h] + 1, h
        assert e.call(lambda: len(e._releasing)) == 0
        assert e.call(lambda: e._released[0]) - sliced == 40, "the hosts past BIG_BATCH, in slices"
    finally:
        e.stop()
