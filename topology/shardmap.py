"""A read-only mapping kept in shards, so that a changed copy shares every shard but those it changed.

The store makes a new model snapshot per write; copying a 10,000-entry dict for that costs
~50 us in a micro-benchmark but ~1 ms in weftd's heap (measured, bench_change: each entry's
reference count is a cold cache line), on the path from an API write to the flows. A write
through a `Writer` copies the 64-entry shard tuple and the one shard (~1/64) it touches.
Reads cost a Python call more than a dict's; iteration is in key-hash order, which no caller
relies on (the models' dicts are keyed by uuid).
"""
from __future__ import annotations

from collections.abc import Mapping
from itertools import chain

SHARDS = 64                     # a power of two
_MASK = SHARDS - 1


class _Reads:
    """Lookups over `_shards` (a ShardMap's, or a Writer's while it changes them)."""
    __slots__ = ()

    def __getitem__(self, key):
        return self._shards[hash(key) & _MASK][key]

    def get(self, key, default=None):
        return self._shards[hash(key) & _MASK].get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._shards[hash(key) & _MASK]


class ShardMap(_Reads, Mapping):
    __slots__ = ("_shards", "_len")

    def __init__(self, items=()):
        shards = [{} for _ in range(SHARDS)]
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            shards[hash(k) & _MASK][k] = v
        self._shards = tuple(shards)
        self._len = sum(map(len, shards))

    @classmethod
    def _of(cls, shards: tuple, length: int) -> "ShardMap":
        m = cls.__new__(cls)
        m._shards, m._len = shards, length
        return m

    def __iter__(self):
        return chain.from_iterable(self._shards)

    def __len__(self) -> int:
        return self._len

    def values(self):
        return chain.from_iterable(s.values() for s in self._shards)

    def items(self):
        return chain.from_iterable(s.items() for s in self._shards)

    def __eq__(self, other) -> bool:
        if isinstance(other, ShardMap):
            # shards shared by both compare by identity, at C speed
            return self._len == other._len and self._shards == other._shards
        if isinstance(other, Mapping):
            return len(self) == len(other) and all(
                k in other and other[k] == v for k, v in self.items())
        return NotImplemented

    __hash__ = None

    def __reduce__(self):
        # string hashes differ between processes (PYTHONHASHSEED): rebuild the shards there
        return (ShardMap, (dict(self.items()),))

    def __repr__(self) -> str:
        return f"ShardMap({dict(self.items())!r})"

    def writer(self) -> "Writer":
        return Writer(self)

    def changed_keys(self, other: "ShardMap", changed) -> set:
        """changed(old shard, new shard) over the shards that are not shared with `other`."""
        out = set()
        for a, b in zip(other._shards, self._shards):
            if a is not b:
                out |= changed(a, b)
        return out


class Writer(_Reads):
    """A ShardMap being changed (one thread, before the result is shared): copy-on-write per shard."""
    __slots__ = ("_shards", "_own", "_len")

    def __init__(self, base: ShardMap):
        self._shards = list(base._shards)
        self._own: set[int] = set()
        self._len = base._len

    def _writable(self, i: int) -> dict:
        if i not in self._own:
            self._shards[i] = dict(self._shards[i])
            self._own.add(i)
        return self._shards[i]

    def __setitem__(self, key, value) -> None:
        shard = self._writable(hash(key) & _MASK)
        if key not in shard:
            self._len += 1
        shard[key] = value

    def __delitem__(self, key) -> None:
        del self._writable(hash(key) & _MASK)[key]
        self._len -= 1

    def pop(self, key, *default):
        i = hash(key) & _MASK
        if key in self._shards[i]:
            self._len -= 1
            return self._writable(i).pop(key)
        if default:
            return default[0]
        raise KeyError(key)

    def done(self) -> ShardMap:
        return ShardMap._of(tuple(self._shards), self._len)


def writer_of(mapping: Mapping) -> Writer:
    """A Writer over `mapping`: a ShardMap's shards are shared, a plain dict is sharded first."""
    return (mapping if isinstance(mapping, ShardMap) else ShardMap(mapping)).writer()


class ShardCache:
    """A cache in shards that a derived snapshot forks: the fork shares every shard, and
    dropping a key (`invalidate`) copies only that key's shard. A value computed for a key
    either side did not invalidate holds for both, so it is stored in place, shared.

    The compiler's fragment cache (flows/index.py): one entry per network and tenant, so a
    dict copy per change cost ~0.2 ms in weftd's heap at 1,000 tenants (bench_change)."""
    __slots__ = ("_shards", "_own")

    def __init__(self, items=()):
        shards = [{} for _ in range(SHARDS)]
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            shards[hash(k) & _MASK][k] = v
        self._shards = shards
        self._own = set(range(SHARDS))

    def get(self, key, default=None):
        return self._shards[hash(key) & _MASK].get(key, default)

    def __setitem__(self, key, value) -> None:
        self._shards[hash(key) & _MASK][key] = value

    def fork(self) -> "ShardCache":
        """A cache sharing every shard with this one, until either side's `invalidate`
        copies one."""
        c = ShardCache.__new__(ShardCache)
        c._shards, c._own = list(self._shards), set()
        self._own = set()
        return c

    def invalidate(self, key) -> None:
        """Drop `key` here only: its shard is copied first when it is still shared (whether
        or not the key is in it, so that what this cache computes again for it stays its own)."""
        i = hash(key) & _MASK
        if i not in self._own:
            self._shards[i] = dict(self._shards[i])
            self._own.add(i)
        self._shards[i].pop(key, None)
