"""Reconciliation plans: empty when nothing changed, minimal and deterministic otherwise."""
import random

import pytest

from flows.compiler import compile_all
from flows.cookies import make
from flows.flow import make_match
from flows.index import CompilerIndex
from flows.planner import Plan, plan
from topology.model import Binding, Host, Model, Network, Port, Tenant


def f(table, priority, port, owner="p1", out=1):
    return make("l2", owner, table, priority, make_match(in_port=port), (("output", out),))


def test_identical_inputs_give_an_empty_plan():
    desired = [f(0, 100, 1), f(0, 100, 2), f(40, 10, 3)]
    result = plan([x.key for x in desired], desired)
    assert result.empty and result == Plan([], [])


def test_stale_flows_are_deleted_and_missing_ones_added():
    old, keep, new = f(0, 100, 1), f(0, 100, 2), f(0, 100, 3)
    result = plan([old.key, keep.key], [keep, new])
    assert result.delete == [(0, old.cookie)]
    assert result.add == [new]
    assert not result.empty


def test_changed_flow_content_changes_the_cookie():
    before, after = f(40, 100, 1, out=1), f(40, 100, 1, out=2)
    assert before.key != after.key
    result = plan([before.key], [after])
    assert result.delete == [(40, before.cookie)] and result.add == [after]


def test_duplicates_count_once():
    a, b = f(0, 100, 1), f(0, 100, 2)
    assert plan([a.key, a.key, b.key], [a, b, a, b]).empty
    result = plan([], [a, b, a])
    assert result.add == sorted([a, b], key=lambda x: x.key)


def test_distinct_desired_flows_sharing_a_key_are_all_added():
    a, b = f(0, 100, 1), f(0, 100, 2)
    twin = type(b)(b.table, b.priority, b.match, b.actions, a.cookie)   # a digest collision
    result = plan([], [twin, a])
    assert len(result.add) == 2 and set(result.add) == {a, twin}
    assert plan([], [a, twin]).add == result.add


def test_a_delete_that_would_take_a_desired_flow_with_it_re_adds_it():
    wanted = f(0, 100, 1)
    stale_key = (0, 90, wanted.cookie)      # other priority, same cookie in the same table
    result = plan([wanted.key, stale_key], [wanted])
    assert result.delete == [(0, wanted.cookie)]
    assert result.add == [wanted]


def test_order_is_deterministic():
    rng = random.Random(7)
    desired = [f(t, p, port) for t in (0, 10, 40) for p in (10, 100) for port in range(1, 6)]
    installed = [x.key for x in desired[::3]] + [(40, 5, 12345), (0, 1, 999), (10, 1, 999)]
    first = plan(installed, desired)
    for _ in range(5):
        rng.shuffle(desired)
        rng.shuffle(installed)
        assert plan(installed, desired) == first
    assert first.delete == sorted(first.delete) == [(0, 999), (10, 999), (40, 12345)]
    assert [x.key for x in first.add] == sorted(x.key for x in first.add)


def test_bad_installed_keys_raise():
    with pytest.raises(ValueError):
        plan([(0, 100)], [])
    with pytest.raises(ValueError):
        plan([(0, "100", 5)], [])


def test_restart_with_unchanged_model_sends_nothing():
    model = Model(
        tenants={"red": Tenant("t1", "red")},
        networks={"n1": Network("n1", "red", "net", "10.0.0.0/24", 1001)},
        ports={f"p{i}": Port(f"p{i}", "red", "net", f"vm{i}", f"fa:16:3e:00:00:0{i}",
                             (f"10.0.0.1{i}",)) for i in range(1, 4)},
        hosts={h: Host(h, f"192.0.2.{i}", "unix:x") for i, h in enumerate(("hv1", "hv2"), 1)},
        bindings={"p1": Binding("p1", "hv1", 1), "p2": Binding("p2", "hv1", 2),
                  "p3": Binding("p3", "hv2", 1)})
    first = compile_all(CompilerIndex(model))
    again = compile_all(CompilerIndex(model))        # a new controller process, same model
    for host, flows in first.items():
        assert plan([x.key for x in flows], again[host]).empty
    moved = Model(model.tenants, model.networks, model.ports, model.hosts,
                  {**model.bindings, "p3": Binding("p3", "hv1", 3)})
    after = compile_all(CompilerIndex(moved))
    changed = plan([x.key for x in first["hv1"]], after["hv1"])
    assert changed.add and changed.delete


def test_stale_keys_and_adds_update_the_books_as_the_cookie_masked_deletes_do():
    """The engine's books after a plan: installed - stale | adds must equal what the switch
    holds after the cookie-masked deletes and the adds (flows sharing a cookie included)."""
    rng = random.Random(7)
    for _ in range(300):
        pool = [f(rng.choice((0, 40)), rng.choice((100, 90)), rng.randrange(6), owner=f"p{rng.randrange(3)}",
                  out=rng.randrange(2)) for _ in range(12)]
        installed = {x.key for x in rng.sample(pool, rng.randrange(len(pool)))}
        desired = rng.sample(pool, rng.randrange(len(pool)))
        p = plan(set(installed), desired)
        deleted = set(p.delete)
        switch = {k for k in installed if (k[0], k[2]) not in deleted} | {x.key for x in p.add}
        assert (installed - p.stale) | {x.key for x in p.add} == switch
        assert switch == {x.key for x in desired}
