"""Array lookup of attributions: keys of K uint64 words -> index of an Attribution, for whole batches.

The attribution of a record depends only on a few of its fields (exporter, VNI, MACs, IPs,
interfaces), packed by the caller into K 64-bit words. The table keeps the keys it has
seen with the index of their Attribution, in an open-addressing hash table (slots of
entry numbers, linear probing, at most a quarter full) on a 64-bit hash; `lookup` finds a whole
batch with a few gathers (one per probe step, the longest probe sequence is kept short)
and an equality check of every word (a hash collision is a miss, never a wrong answer).
(A sorted hash array and `searchsorted` cost ~300 ns a record with 4,000 keys; the slots
cost a few tens.) Keys not found are resolved once each by the caller's
per-record function (Attributor.attribute, the same code as the per-record path) and
inserted. One table lives in the Attributor's per-model memo, so a model change empties it;
it is also emptied when it holds `max_keys` keys (`attrs` is then a new list, so indexes
already handed out stay valid against the list they were read from).
"""
from __future__ import annotations

import numpy as np

from . import probing

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def hash_rows(keys: np.ndarray) -> np.ndarray:
    """A 64-bit mix of each row of an (N, K) uint64 array."""
    h = np.zeros(keys.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            h = (h ^ keys[:, j]) * _M1
            h ^= h >> np.uint64(29)
        h *= _M2
        h ^= h >> np.uint64(32)
        h *= _M3
        h ^= h >> np.uint64(29)
    return h


class AttributionTable:
    """Hash table of K-word keys -> attribution index; see the module docstring."""

    def __init__(self, width: int, max_keys: int = 1 << 18) -> None:
        self.width = width
        self.max_keys = max_keys
        self._reset()

    def _reset(self) -> None:
        self.hashes = np.zeros(0, dtype=np.uint64)      # per entry
        self.keys = np.zeros((0, self.width), dtype=np.uint64)
        self.index = np.zeros(0, dtype=np.int64)
        self.slots = np.full(8, -1, dtype=np.int32)     # entry number, -1: empty
        self.probes = 0                                 # longest probe sequence - 1
        self.attrs: list = []            # index -> Attribution
        self.counted = np.zeros(0, dtype=bool)
        self._ids: dict = {}             # id(Attribution) -> index (one index per object)

    def __len__(self) -> int:
        return len(self.hashes)

    def _home(self, h: np.ndarray) -> np.ndarray:
        return (h & np.uint64(len(self.slots) - 1)).astype(np.int64)

    def _find(self, h: np.ndarray) -> np.ndarray:
        """Entry number of each hash, -1 when absent."""
        return probing.find(self.slots, self.hashes, h, self._home(h), self.probes)

    def _place(self, entries: np.ndarray) -> None:
        """Put entries (numbers) into free slots, each at or after its home slot."""
        self.probes = max(self.probes, probing.place(self.slots, entries,
                                                     self._home(self.hashes[entries])))

    def lookup(self, keys: np.ndarray, resolve) -> tuple[np.ndarray, list, np.ndarray]:
        """(attribution index per row, the attrs list they index, counted per index).

        `resolve(row_words: tuple[int, ...]) -> Attribution` is called once per key not in
        the table."""
        n = keys.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64), self.attrs, self.counted
        h = hash_rows(keys)
        out = np.full(n, -1, dtype=np.int64)
        if len(self.hashes):
            e = self._find(h)
            hit = e >= 0
            ec = np.where(hit, e, 0)
            for j in range(self.width):     # word by word (faster than a 2-D .all(axis=1))
                hit &= self.keys[ec, j] == keys[:, j]
            out[hit] = self.index[e[hit]]
        miss = np.flatnonzero(out < 0)
        if len(miss):
            if len(self.hashes) + len(miss) > self.max_keys:
                self._reset()
                out[:] = -1
                miss = np.arange(n)
            self._insert(keys, h, miss, out, resolve)
        return out, self.attrs, self.counted

    def _insert(self, keys, h, miss, out, resolve) -> None:
        uniq, first, inverse = np.unique(keys[miss], axis=0, return_index=True,
                                         return_inverse=True)
        inverse = inverse.reshape(-1)
        new_idx = np.empty(len(uniq), dtype=np.int64)
        resolved = [resolve(tuple(row)) for row in uniq.tolist()]  # may raise: nothing changed yet
        counted = []
        for i, a in enumerate(resolved):
            j = self._ids.get(id(a))
            if j is None or self.attrs[j] is not a:
                j = len(self.attrs)
                self.attrs.append(a)
                self._ids[id(a)] = j
                counted.append(a.counted)
            new_idx[i] = j
        if counted:
            self.counted = np.concatenate([self.counted, np.array(counted, dtype=bool)])
        out[miss] = new_idx[inverse]
        # insert the new keys, except hashes already present (a collision: stays a miss)
        nh = h[miss[first]]
        nh_u, keep = np.unique(nh, return_index=True)
        if len(self.hashes):
            present = self._find(nh_u) >= 0
            keep = keep[~present]
            nh_u = nh_u[~present]
        if not len(keep):
            return
        base = len(self.hashes)
        self.hashes = np.concatenate([self.hashes, nh_u])
        self.keys = np.concatenate([self.keys, uniq[keep]])
        self.index = np.concatenate([self.index, new_idx[keep]])
        total = len(self.hashes)
        grown = probing.resized(self.slots, total)
        if grown is not None:              # at most a quarter full: grow, place everything again
            self.slots, self.probes = grown, 0
            self._place(np.arange(total))
        else:
            self._place(np.arange(base, total))
