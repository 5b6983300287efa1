"""Template compilation and the template cache's bounds (size, held data, age)."""
from __future__ import annotations

import struct

import pytest

from collectors.errors import MalformedDatagram
from collectors.templates import HELD_OVERHEAD, FieldSpec, Template, TemplateCache


def tpl(tid: int = 256, *fields: tuple) -> Template:
    return Template(tid, [FieldSpec(*f) for f in (fields or ((2, 8),))])


def test_fixed_template_compiles_to_one_struct():
    t = tpl(256, (8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (56, 6))
    assert t.fixed_length == 19 and t.min_length == 19
    rec = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HHB", 1, 2, 17) + b"\x01" * 6
    assert t.decode_records(rec * 2 + b"\0" * 5, 0, 43) == [{
        "sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "10.0.0.2",
        "sourceTransportPort": 1, "destinationTransportPort": 2, "protocolIdentifier": 17,
        "sourceMacAddress": "01:01:01:01:01:01"}] * 2


def test_decode_respects_offsets():
    t = tpl(256, (7, 2))
    buf = b"\xff\xff" + struct.pack("!HHH", 1, 2, 3) + b"\xee\xee"
    assert t.decode_records(buf, 2, 8) == [{"sourceTransportPort": v} for v in (1, 2, 3)]


def test_variable_template_min_length():
    t = tpl(256, (4, 1), (999, 0xFFFF), (7, 2))
    assert t.fixed_length is None and t.min_length == 4


def test_zero_length_template_rejected():
    with pytest.raises(MalformedDatagram, match="zero-length"):
        tpl(256, (4, 0), (5, 0))


def test_cache_bounded_by_template_count_evicts_least_recently_refreshed():
    c = TemplateCache(max_templates=3)
    for tid in (256, 257, 258):
        c.put(("e", 0, tid), tpl(tid), now=float(tid))
    c.put(("e", 0, 256), tpl(256), now=300.0)  # refresh 256: 257 is now the oldest
    c.put(("e", 0, 259), tpl(259), now=301.0)
    assert len(c) == 3 and c.evicted == 1
    assert c.get(("e", 0, 257), 302.0) is None
    assert all(c.get(("e", 0, t), 302.0) is not None for t in (256, 258, 259))


def test_held_data_bounded_in_bytes():
    each = 30 + HELD_OVERHEAD
    c = TemplateCache(pending_max_bytes=3 * each + 10, pending_max_sets=10)
    for i in range(6):
        assert c.hold(("e", 0, 256 + i), bytes([i]) * 30, None, now=1.0)
    assert c.pending_bytes == 3 * each and c.pending_sets == 3 and c.pending_dropped == 3
    assert c.put(("e", 0, 256), tpl(256), now=2.0) == []  # the oldest ones were dropped
    held = c.put(("e", 0, 261), tpl(261), now=2.0)
    assert [body for _, body, _ in held] == [b"\x05" * 30]
    assert c.pending_bytes == 2 * each
    assert not c.hold(("e", 0, 999), b"x" * (3 * each), None, now=3.0)  # over the whole budget


def test_empty_sets_are_not_held_so_keys_stay_bounded():
    c = TemplateCache(pending_max_bytes=10 * (4 + HELD_OVERHEAD))
    for tid in range(256, 20_000):
        c.hold(("e", 0, tid), b"", None, now=1.0)
        c.hold(("e", 1, tid), b"abcd", None, now=1.0)
    assert c.pending_sets == 10 and c.pending_bytes == 10 * (4 + HELD_OVERHEAD)


def test_expire_drops_stale_held_data_too():
    c = TemplateCache(pending_max_age=10.0)
    c.hold(("e", 0, 256), b"abcd", None, now=0.0)
    c.expire(now=11.0)
    assert c.pending_sets == 0 and c.pending_bytes == 0 and c.pending_dropped == 1


def test_counts_per_exporter_and_withdraw_all():
    c = TemplateCache()
    c.put(("a", 1, 256), tpl(256), 0.0)
    c.put(("a", 1, 257), Template(257, [FieldSpec(149, 4)], 1, options=True), 0.0)
    c.put(("a", 2, 256), tpl(256), 0.0)
    c.put(("b", 1, 256), tpl(256), 0.0)
    assert (c.count("a"), c.count("b"), c.count()) == (3, 1, 4)
    assert c.withdraw_all("a", 1, options=False) == 1
    assert c.withdraw_all("a", 1, options=True) == 1
    assert c.withdraw_all("a", 7, options=True) == 0
    assert c.withdraw(("b", 1, 256)) and not c.withdraw(("b", 1, 256))
    assert (c.count("a"), c.count("b"), c.withdrawn) == (1, 0, 3)
