"""ShardMap: a read-only mapping whose changed copy shares the shards it did not change."""
import pickle

import pytest

from flows.index import _changed
from topology.shardmap import SHARDS, ShardMap


def test_it_reads_as_the_dict_it_was_made_from():
    d = {f"uuid-{i}": i for i in range(1000)}
    m = ShardMap(d)
    assert len(m) == 1000 and dict(m) == d and m == d and d == dict(m.items())
    assert m["uuid-5"] == 5 and m.get("uuid-7") == 7 and m.get("nope", -1) == -1
    assert "uuid-9" in m and "nope" not in m
    assert sorted(m.values()) == list(range(1000)) and set(m.keys()) == set(d)
    with pytest.raises(KeyError):
        m["nope"]


def test_a_written_copy_shares_the_untouched_shards_and_leaves_the_original_alone():
    m = ShardMap({f"uuid-{i}": i for i in range(1000)})
    w = m.writer()
    w["new"] = 1
    w["uuid-1"] = -1
    assert w.pop("uuid-2") == 2 and w.pop("absent", None) is None
    del w["uuid-3"]
    n = w.done()
    assert len(n) == 999 and n["new"] == 1 and n["uuid-1"] == -1
    assert "uuid-2" not in n and "uuid-3" not in n
    assert len(m) == 1000 and m["uuid-1"] == 1 and "new" not in m     # the original is unchanged
    shared = sum(a is b for a, b in zip(m._shards, n._shards))
    assert shared >= SHARDS - 4
    assert n != m and n == ShardMap(dict(n.items()))


def test_changed_keys_look_only_at_the_shards_that_differ():
    m = ShardMap({f"uuid-{i}": i for i in range(500)})
    w = m.writer()
    w["uuid-1"] = "changed"
    w["added"] = 0
    w.pop("uuid-2")
    n = w.done()
    assert _changed(m, n) == {"uuid-1", "added", "uuid-2"}
    assert _changed(m, m) == frozenset()
    assert _changed(dict(m.items()), dict(n.items())) == {"uuid-1", "added", "uuid-2"}


def test_it_pickles_for_another_process_by_content():
    m = ShardMap({f"uuid-{i}": i for i in range(100)})
    again = pickle.loads(pickle.dumps(m))
    assert again == m and again["uuid-42"] == 42


def test_a_forked_cache_shares_what_it_keeps_and_owns_what_it_invalidates():
    from topology.shardmap import ShardCache
    base = ShardCache({f"net-{i}": i for i in range(300)})
    fork = base.fork()
    fork.invalidate("net-1")            # touched by the change: computed again for the fork
    fork.invalidate("absent")           # not cached yet: what the fork computes stays its own
    assert fork.get("net-1") is None and base.get("net-1") == 1
    fork["net-1"] = "new"
    fork["absent"] = "new"
    assert base.get("net-1") == 1 and base.get("absent") is None
    assert fork.get("net-2") == 2                          # the rest is shared
    # a key neither side invalidated holds for both: computed by one, found by the other
    untouched = next(f"k-{i}" for i in range(1000)
                     if hash(f"k-{i}") % SHARDS not in {hash("net-1") % SHARDS, hash("absent") % SHARDS})
    fork[untouched] = "shared"
    assert base.get(untouched) == "shared"
    base.invalidate("net-3")            # either side's invalidation stays its own
    assert base.get("net-3") is None and fork.get("net-3") == 3
