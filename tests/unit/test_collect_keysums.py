"""collectors.keysums: the vectorised hash group-by gives a dict's sums, exactly, past int64 too."""
from __future__ import annotations

import numpy as np
import pytest

from collectors.keysums import KeySums, mix


def reference(bursts):
    out = {}
    for keys, nb, npk, now in bursts:
        for k, b, p in zip(keys.tolist(), nb.tolist(), npk.tolist()):
            e = out.setdefault(k, [0, 0, now, now])
            e[0] += b
            e[1] += p
            e[2] = min(e[2], now)
            e[3] = max(e[3], now)
    return out


def as_dict(ks: KeySums):
    keys, nb, npk, first, last = ks.columns()
    assert len(set(keys.tolist())) == len(keys) == len(ks)       # one row per key
    return {k: [b, p, f, la] for k, b, p, f, la in zip(keys.tolist(), nb.tolist(), npk.tolist(),
                                                      first.tolist(), last.tolist())}


@pytest.mark.parametrize("expect", [0, 5000])
def test_sums_per_key_equal_a_dicts_over_many_bursts_and_growth(expect):
    rng = np.random.default_rng(3)
    ks, bursts = KeySums(expect), []
    for i in range(60):
        # keys from a growing range (the table grows and reprobes), some negative, repeats
        keys = rng.integers(-50, 200 + i * 500, rng.integers(0, 3000))
        nb = rng.integers(0, 1 << 40, len(keys))
        npk = rng.integers(0, 1 << 20, len(keys))
        now = 1000.0 + (i % 7)                # not monotonic: first/last are min/max
        ks.add(keys, nb, npk, now)
        bursts.append((keys, nb, npk, now))
    assert as_dict(ks) == reference(bursts)
    assert ks.nb.dtype == np.int64


def test_colliding_homes_still_find_their_own_key():
    # keys whose mixes share the low bits land on one home slot: probing tells them apart
    cand = np.arange(200_000, dtype=np.int64)
    home = (mix(cand) >> np.uint64(1)).astype(np.int64) & 63
    same = cand[home == home[0]][:40]
    ks = KeySums()
    for _ in range(3):
        ks.add(same, np.ones(len(same), np.int64), np.ones(len(same), np.int64), 5.0)
    assert as_dict(ks) == {k: [3, 3, 5.0, 5.0] for k in same.tolist()}
    assert len(set(mix(cand[:100_000]).tolist())) == 100_000    # a bijection: no two alike


def test_sums_past_int64_become_python_integers():
    ks = KeySums()
    big = np.array([1 << 61, 1 << 61, 7], dtype=np.int64)
    keys = np.array([1, 1, 2])
    bursts = []
    for now in (1.0, 2.0, 3.0):
        ks.add(keys, big, big, now)
        bursts.append((keys, big, big, now))
    got = as_dict(ks)
    assert got == reference(bursts) and got[1][0] == 6 << 61 and ks.nb.dtype == object
