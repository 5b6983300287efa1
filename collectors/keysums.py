"""Running sums per int64 key for whole arrays at once: a vectorised hash group-by.

`KeySums.add(keys, nbytes, npkts, now)` adds each row's bytes and packets to its key's sums
(first seen, last seen = `now`); `columns()` gives (keys, bytes, packets, first, last), one
row per distinct key. Keys map to rows through an open-addressing table (slots of row
numbers, linear probing, at most a quarter full) homed by a bijective 64-bit mix, so equal
mixes mean equal keys. A burst costs a few gathers and `np.add.at`, no sort: sorting each
burst and merging the bursts (the former way) was the largest cost of a busy bucket.
Sums stay exact: they are int64 while an upper bound of every sum stays below 2**62, then
Python integers (object arrays; only hostile counts get there).
"""
from __future__ import annotations

import numpy as np

from . import probing

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(keys: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 (no two keys share a mix)."""
    h = keys.astype(np.uint64)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(30)
        h *= _M1
        h ^= h >> np.uint64(27)
        h *= _M2
        h ^= h >> np.uint64(31)
    return h


class KeySums:
    """Sums of bytes and packets, first and last time, per distinct int64 key."""

    def __init__(self, expect: int = 0) -> None:
        """`expect`: keys to make room for at once (the previous bucket's count: a busy
        bucket then does not grow its table step by step while it fills)."""
        rows, slots = 16, 64
        while rows < expect:
            rows *= 2
        while slots < 8 * expect:
            slots *= 2
        self.n = 0
        self.keys = np.zeros(rows, dtype=np.int64)
        self.nb = np.zeros(rows, dtype=np.int64)
        self.np = np.zeros(rows, dtype=np.int64)
        self.first = np.zeros(rows, dtype=np.float64)
        self.last = np.zeros(rows, dtype=np.float64)
        self.slots = np.full(slots, -1, dtype=np.int32)
        self.probes = 0
        self.bound = 0.0            # no sum can exceed this (int64 while < 2**62)
        self.newest = -np.inf       # the latest `now` added so far

    def __len__(self) -> int:
        return self.n

    def _find(self, keys: np.ndarray, home: np.ndarray) -> np.ndarray:
        return probing.find(self.slots, self.keys, keys, home & (len(self.slots) - 1), self.probes)

    def _place(self, rows: np.ndarray, home: np.ndarray) -> None:
        self.probes = max(self.probes, probing.place(self.slots, rows, home & (len(self.slots) - 1)))

    def _grow(self, need: int) -> None:
        size = len(self.keys)
        while size < need:
            size *= 2
        if size != len(self.keys):
            for name in ("keys", "nb", "np", "first", "last"):
                old = getattr(self, name)
                new = np.zeros(size, dtype=old.dtype)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)

    def add(self, keys: np.ndarray, nbytes: np.ndarray, npkts: np.ndarray, now: float) -> None:
        if not len(keys):
            return
        home = (mix(keys) >> np.uint64(1)).astype(np.int64)
        rows = self._find(keys, home) if self.n else np.full(len(keys), -1, dtype=np.int64)
        miss = rows < 0
        if miss.any():
            new, first, inverse = np.unique(keys[miss], return_index=True, return_inverse=True)
            base, k = self.n, len(new)
            self._grow(base + k)
            self.keys[base:base + k] = new
            self.nb[base:base + k] = 0
            self.np[base:base + k] = 0
            self.first[base:base + k] = now
            self.n = total = base + k
            new_home = home[np.flatnonzero(miss)[first]]
            grown = probing.resized(self.slots, total)
            if grown is not None:                # at most a quarter full: grow, place all again
                self.slots, self.probes = grown, 0
                self._place(np.arange(total),
                            (mix(self.keys[:total]) >> np.uint64(1)).astype(np.int64))
            else:
                self._place(np.arange(base, total), new_home)
            rows[miss] = base + inverse.reshape(-1)
        self.bound += max(float(nbytes.sum(dtype=np.float64)),
                          float(npkts.sum(dtype=np.float64)))
        if self.bound >= 2.0 ** 62 and self.nb.dtype != object:
            self.nb = self.nb.astype(object)     # Python integers from now on
            self.np = self.np.astype(object)
        if self.nb.dtype == object:
            nbytes, npkts = nbytes.astype(object), npkts.astype(object)
        np.add.at(self.nb, rows, nbytes)
        np.add.at(self.np, rows, npkts)
        if now >= self.newest:      # time in order: every first and last is <= now
            self.newest = now
            self.last[rows] = now
        else:
            self.first[rows] = np.minimum(self.first[rows], now)
            self.last[rows] = np.maximum(self.last[rows], now)

    def columns(self) -> tuple:
        """(keys, bytes, packets, first, last) of the distinct keys."""
        n = self.n
        return self.keys[:n], self.nb[:n], self.np[:n], self.first[:n], self.last[:n]
