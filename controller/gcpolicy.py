"""Cyclic garbage collection for weftd's large, long-lived heap: survivors of a full collection are frozen.

CPython's full collection walks every tracked object. weftd at 10,000 ports holds about 1.3
million (flows, the compiled index, the northbound IDL's rows), so each full collection stops
every thread for about a second, and there is one each time the heap grows by a quarter: the
API and the engine get slower the bigger the store (bench/bench_change.py, about a third of
the extra time per create over its last thousand ports, measured with gc.callbacks).

Objects that survived a full collection are long-lived (the model, the compiled flows, the
IDL's rows) and mostly acyclic: they are freed by reference counting when dropped. So after
each full collection the survivors are frozen (`gc.freeze()`), and the next full collection
walks only what was allocated since. What freezing gives up is collecting reference cycles
that pass through frozen objects; to bound that, the survivors are thawed (`gc.unfreeze()`)
once the frozen set has doubled since the last complete walk or THAW_S has passed, and the
full collection after that walks everything again: one whole-heap walk per doubling or per
THAW_S, not one per quarter of growth.
"""
from __future__ import annotations

import gc
import threading
import time

THAW_S = 6 * 3600.0          # at least one whole-heap collection this often
GROWTH = 2.0                 # ... or once the frozen objects have grown by this factor


class FreezeAfterFullCollections:
    """The gc callback; `install()` registers one per process (idempotent)."""

    def __init__(self, thaw_s: float = THAW_S, growth: float = GROWTH, clock=time.monotonic) -> None:
        self.thaw_s, self.growth, self.clock = thaw_s, growth, clock
        self.base = 0                   # frozen objects after the last whole-heap collection
        self.walked_at = clock()        # when that was
        self.thawed = False             # the next full collection walks everything
        self.freezes = self.thaws = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        # the collection is over: moving the generations' lists is all gc.freeze() and
        # gc.unfreeze() do, safe here (CPython calls back before its next collection can start)
        if self.thawed:
            self.thawed = False
            gc.freeze()
            self.base, self.walked_at = gc.get_freeze_count(), self.clock()
            self.freezes += 1
            return
        frozen = gc.get_freeze_count()
        if frozen > self.growth * max(self.base, 1) and self.base or \
                self.clock() - self.walked_at >= self.thaw_s:
            gc.unfreeze()
            self.thawed = True
            self.thaws += 1
            return
        gc.freeze()
        if not self.base:
            self.base, self.walked_at = gc.get_freeze_count(), self.clock()
        self.freezes += 1


_INSTALLED: list[FreezeAfterFullCollections] = []
_LOCK = threading.Lock()


def install() -> FreezeAfterFullCollections:
    """Register the policy with the garbage collector (once per process); return it."""
    with _LOCK:
        if not _INSTALLED:
            policy = FreezeAfterFullCollections()
            gc.callbacks.append(policy)
            _INSTALLED.append(policy)
        return _INSTALLED[0]
