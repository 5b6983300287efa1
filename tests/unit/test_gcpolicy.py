"""The garbage-collection policy: survivors of full collections frozen, thawed again on growth or time."""
import gc
import weakref

import pytest

from controller.gcpolicy import FreezeAfterFullCollections


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Node:
    def __init__(self):
        self.other = None


@pytest.fixture
def policy():
    clock = Clock()
    memory = {"rss": 100 << 20}
    p = FreezeAfterFullCollections(thaw_s=60.0, growth=2.0, clock=clock, rss=lambda: memory["rss"])
    p.clock_obj, p.memory = clock, memory
    was_enabled = gc.isenabled()
    gc.disable()                  # only the tests' own collections: counts stay exact
    # a weftd run in this process (other tests) installed the process's own policy: set aside
    others = [cb for cb in gc.callbacks if isinstance(cb, FreezeAfterFullCollections)]
    for cb in others:
        gc.callbacks.remove(cb)
    gc.collect()
    gc.unfreeze()
    gc.callbacks.append(p)
    try:
        yield p
    finally:
        gc.callbacks.remove(p)
        gc.callbacks.extend(others)
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        gc.collect()


def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def test_a_full_collection_freezes_its_survivors_so_the_next_walks_only_newer_objects(policy):
    keep = [Node() for _ in range(1000)]
    gc.collect()
    assert policy.freezes == 1 and policy.thaws == 0
    assert gc.get_freeze_count() >= len(keep)
    assert policy.base == 100 << 20
    # young garbage cycles are still collected
    a, ref = cycle()
    del a
    gc.collect()
    assert ref() is None


def test_a_cycle_through_frozen_objects_is_collected_once_time_thaws_them(policy):
    a, ref = cycle()
    gc.collect()                                  # a and b survive: frozen
    del a
    gc.collect()
    assert ref() is not None, "frozen: the cycle waits for the thaw"
    policy.clock_obj.now += 61.0                 # THAW_S passed
    gc.collect()                                  # this one's end thaws everything
    assert policy.thaws == 1 and policy.thawed
    gc.collect()                                  # the next walks the whole heap again
    assert ref() is None
    assert not policy.thawed and gc.get_freeze_count() > 0, "frozen again after the walk"


def test_memory_doubling_thaws_the_frozen_objects_for_one_whole_walk(policy):
    gc.collect()
    keep = [Node() for _ in range(1000)]
    policy.memory["rss"] = 150 << 20
    gc.collect()                                  # grown by half: frozen again, no thaw
    assert policy.thaws == 0 and policy.freezes == 2
    policy.memory["rss"] = 201 << 20
    gc.collect()                                  # more than doubled: thawed at its end
    assert policy.thaws == 1 and policy.thawed and gc.get_freeze_count() == 0
    gc.collect()                                  # the whole walk; frozen again, a new base
    assert not policy.thawed and policy.base == 201 << 20 and gc.get_freeze_count() >= len(keep)
