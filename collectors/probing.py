"""Open addressing with linear probing over numpy arrays, for the collectors' hash tables.

A table is `slots` (int32 entry numbers, -1 empty, a power of two long) over the caller's own
entry arrays; `stored[entry]` is what a lookup compares. Lookups and inserts go a whole batch
at a time: one numpy pass per probe step, never a Python step per key.
"""
from __future__ import annotations

import numpy as np


def find(slots: np.ndarray, stored: np.ndarray, wanted: np.ndarray, pos: np.ndarray,
         probes: int) -> np.ndarray:
    """Entry number of each `wanted` value (-1 when absent); `pos`: each one's home slot
    (int64, already masked to the table); `probes`: the longest probe sequence - 1."""
    mask = len(slots) - 1
    # the first step for all at once (most end there): stored[-1] for an empty slot reads
    # some entry, and the `e >= 0` check discards it
    e = slots[pos]
    full = e >= 0
    match = stored[e] == wanted
    match &= full
    found = np.where(match, e, np.int64(-1))   # (int64: cheaper to index with)
    if not probes:
        return found
    active = np.flatnonzero(full & ~match)
    pos = (pos[active] + 1) & mask
    for _ in range(probes):
        if not len(active):
            break
        e = slots[pos]
        full = e >= 0
        match = full & (stored[np.where(full, e, 0)] == wanted[active])
        found[active[match]] = e[match]
        more = full & ~match
        active = active[more]
        pos = (pos[more] + 1) & mask
    return found


def place(slots: np.ndarray, entries: np.ndarray, pos: np.ndarray) -> int:
    """Put entries (numbers) into free slots, each at or after its home slot `pos`; of the
    entries wanting one free slot, the first takes it. Returns the longest probe step taken."""
    mask = len(slots) - 1
    step = longest = 0
    while len(entries):
        cand = np.flatnonzero(slots[pos] < 0)
        _u, first = np.unique(pos[cand], return_index=True)
        won = cand[first]
        slots[pos[won]] = entries[won]
        longest = step
        left = np.ones(len(entries), dtype=bool)
        left[won] = False
        entries, pos = entries[left], (pos[left] + 1) & mask
        step += 1
    return longest


def resized(slots: np.ndarray, entries: int) -> np.ndarray | None:
    """A new, empty slot array when `entries` would fill `slots` past a quarter (sized for at
    most an eighth full), else None: the caller then places every entry again."""
    if 4 * entries <= len(slots):
        return None
    size = len(slots)
    while 8 * entries > size:
        size *= 2
    return np.full(size, -1, dtype=np.int32)
