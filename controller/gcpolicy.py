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
once resident memory has doubled since the last complete walk or THAW_S has passed, and the
full collection after that walks everything again: one whole-heap walk per doubling or per
THAW_S, not one per quarter of growth.
"""
from __future__ import annotations

import gc
import os
import resource
import threading
import time

THAW_S = 6 * 3600.0          # at least one whole-heap collection this often
GROWTH = 2.0                 # ... or once resident memory has grown by this factor


def resident_bytes() -> int:
    """This process's resident memory (cheap: one read of /proc/self/statm)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class FreezeAfterFullCollections:
    """The gc callback; `install()` registers one per process (idempotent).

    Growth is judged by resident memory, not by gc.get_freeze_count(): that walks the whole
    frozen list (~0.1 s at a million objects), which made this callback a fifth of weftd's
    engine time when it ran after every full collection."""

    def __init__(self, thaw_s: float = THAW_S, growth: float = GROWTH, clock=time.monotonic,
                 rss=resident_bytes) -> None:
        self.thaw_s, self.growth, self.clock, self.rss = thaw_s, growth, clock, rss
        self.base: int | None = None    # resident bytes after the last whole-heap collection
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
            self.base, self.walked_at = self.rss(), self.clock()
            self.freezes += 1
            return
        if self.base is not None and (self.rss() > self.growth * self.base
                                      or self.clock() - self.walked_at >= self.thaw_s):
            gc.unfreeze()
            self.thawed = True
            self.thaws += 1
            return
        gc.freeze()
        if self.base is None:
            self.base, self.walked_at = self.rss(), self.clock()
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
