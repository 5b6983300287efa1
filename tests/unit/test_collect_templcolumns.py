"""NetFlow v9 / IPFIX columnar path (collectors.templcolumns) agrees with the per-record path.

Constructed datagrams cover Open vSwitch's IPFIX template with its tunnel fields (a
variable-length tunnel key), options templates and data, variable-length templates (one
shape per set, and sets mixing shapes), set padding, a template arriving after its data,
withdrawals and re-sent templates, addresses of every kind and counters too large for
int64; both paths must give the same flows, counters and stats, and most records must go
the numpy way. Captured and fuzzed datagrams are in test_collect_columnar.
"""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_columnar as tc  # noqa: E402
import test_collect_fixtures as fx  # noqa: E402
import test_collect_service as ts  # noqa: E402

from collectors.templates import FieldSpec, Template  # noqa: E402
from collectors.templdtype import fixed_layout, set_layout  # noqa: E402

VM = fx.VMWARE
# a fixed-length v9/IPFIX template: MACs, IPv4, ports, 3-byte ingress, 6-byte counters
FIXED = [(56, 6), (80, 6), (8, 4), (12, 4), (4, 1), (7, 2), (11, 2), (10, 3), (14, 4),
         (2, 6), (1, 5), (136, 1)]
V6 = [(27, 16), (28, 16), (4, 2), (7, 2), (11, 2), (2, 4), (1, 8), (10, 4), (14, 4)]
PORTLESS = [(8, 4), (12, 4), (4, 1), (1, 4), (2, 4)]      # no ports; no MACs
HUGE = [(8, 4), (12, 4), (4, 1), (1, 8), (2, 8)]           # counters past int64
WIDE_PROTO = [(8, 4), (12, 4), (4, 2), (1, 4)]             # a 2-byte protocol number
VAR = [(4, 1), (8, 4), (12, 4), (82, 0xFFFF), (892, 0xFFFF, VM), (7, 2), (11, 2), (1, 4)]
OVS = fx.OVS_TEMPLATE_FIELDS


def _fixed_record(rng, v6=False) -> bytes:
    ip = rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.9"))
    ip2 = rng.choice(("10.0.0.1", "10.0.0.2", "10.0.0.50"))
    ports = struct.pack("!HH", rng.choice((22, 80, 40000)), rng.choice((443, 5000, 60000)))
    if v6:
        return (fx.ip6("2001:db8::1") + fx.ip6(rng.choice(("2001:db8::2", "::1")))
                + struct.pack("!H", rng.choice((6, 17, 58))) + ports
                + struct.pack("!IQII", rng.randrange(1, 99), rng.randrange(1, 1 << 40),
                              rng.choice((7, 9, 17)), rng.choice((9, 19, 60000))))
    return (fx.mac(rng.choice((ts.MAC1, ts.MAC2))) + fx.mac(rng.choice((ts.MAC1, ts.MAC2)))
            + fx.ip4(ip) + fx.ip4(ip2) + bytes([rng.choice((1, 6, 17, 132))]) + ports
            + rng.choice((7, 17, 9, 0x10000)).to_bytes(3, "big")
            + struct.pack("!I", rng.choice((9, 19, 7)))
            + rng.randrange(1, 1 << 40).to_bytes(6, "big")
            + rng.randrange(1, 1 << 36).to_bytes(5, "big") + b"\2")


def _var_record(rng, shape) -> bytes:
    name_len, key_len, long_form = shape
    return (bytes([rng.choice((6, 17))]) + fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2")
            + fx.varlen(b"n" * name_len, long_form) + fx.varlen(
                rng.choice((5001, 6001)).to_bytes(key_len, "big"))
            + struct.pack("!HHI", rng.choice((80, 40000)), 443, rng.randrange(1, 1 << 20)))


def _ovs(rng, n) -> bytes:
    return b"".join(fx.ovs_data_record(vni=rng.choice((5001, 6001, 7)),
                                       src_ip=rng.choice(("10.0.0.1", "10.0.0.2")),
                                       dst_ip=rng.choice(("10.0.0.2", "10.0.0.7")),
                                       sport=rng.choice((33000, 80)), dport=rng.choice((80, 443)),
                                       in_if=rng.choice((7, 17, 9)), out_if=rng.choice((9, 19)))
                    for _ in range(n))


def ipfix_datagrams(rng) -> list:
    out = []
    seq = {ts.HV1: 0, ts.HV2: 0}

    def msg(src, sets, records):
        out.append(("ipfix", src, fx.ipfix_message(sets, seq=seq[src])))
        seq[src] += records

    templates = [fx.ipfix_set(2, fx.ipfix_template(300, OVS) + fx.ipfix_template(301, FIXED)
                              + fx.ipfix_template(302, V6) + fx.ipfix_template(303, VAR)
                              + fx.ipfix_template(304, PORTLESS) + fx.ipfix_template(305, HUGE)
                              + fx.ipfix_template(306, WIDE_PROTO)),
                 fx.ipfix_set(3, fx.ipfix_options_template(400, 1, [(149, 4), (305, 4), (306, 4)]))]
    # data before its templates (held), then the templates (decoded late)
    for src in (ts.HV1, ts.HV2):
        msg(src, [fx.ipfix_set(300, _ovs(rng, 3)), fx.ipfix_set(301, _fixed_record(rng))], 4)
        msg(src, templates, 0)
    for i in range(120):
        src = rng.choice((ts.HV1, ts.HV2))
        n = rng.randrange(1, 12)
        shape = (rng.choice((0, 3)), rng.choice((3, 4)), rng.random() < 0.3)
        pick = rng.randrange(9)
        if pick == 0:
            sets = [fx.ipfix_set(300, _ovs(rng, n), pad=rng.choice((0, 3)))]
        elif pick == 1:
            sets = [fx.ipfix_set(301, b"".join(_fixed_record(rng) for _ in range(n)),
                                 pad=rng.choice((0, 5)))]
        elif pick == 2:
            sets = [fx.ipfix_set(302, b"".join(_fixed_record(rng, True) for _ in range(n)))]
        elif pick == 3:     # one shape per set, or mixed shapes (per record)
            mixed = rng.random() < 0.3
            sets = [fx.ipfix_set(303, b"".join(
                _var_record(rng, (rng.choice((0, 3)), 3, False) if mixed else shape)
                for _ in range(n)), pad=rng.choice((0, 2, 40)))]
        elif pick == 4:
            sets = [fx.ipfix_set(304, b"".join(fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2")
                                               + bytes([rng.choice((1, 6))])
                                               + struct.pack("!II", 1500, 1) for _ in range(n)))]
        elif pick == 5:
            sets = [fx.ipfix_set(305, b"".join(fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2") + b"\6"
                                               + struct.pack("!QQ", rng.choice(((1 << 64) - 1, 9)), 1)
                                               for _ in range(n)))]
        elif pick == 6:
            sets = [fx.ipfix_set(306, b"".join(fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2")
                                               + struct.pack("!HI", rng.choice((6, 300)), 100)
                                               for _ in range(n)))]
        elif pick == 7:
            sets = [fx.ipfix_set(400, struct.pack("!III", 1, 1, 99) * n),
                    fx.ipfix_set(300, _ovs(rng, n))]
        else:               # a re-sent template, then its data, in one message
            sets = [fx.ipfix_set(2, fx.ipfix_template(301, FIXED)),
                    fx.ipfix_set(301, _fixed_record(rng) * n), fx.ipfix_set(300, _ovs(rng, 1))]
        msg(src, sets, n)
    # a withdrawal, data for it (held, never decoded), and the template again with new fields
    msg(ts.HV1, [fx.ipfix_set(2, fx.ipfix_withdrawal(301)), fx.ipfix_set(301, _fixed_record(rng))], 0)
    msg(ts.HV1, [fx.ipfix_set(2, fx.ipfix_template(301, PORTLESS)),
                 fx.ipfix_set(301, fx.ip4("10.0.0.2") + fx.ip4("10.0.0.1") + b"\6" + b"\0" * 8)], 1)
    # a template re-sent, a set of one shape, then that shape with a zero tail long enough
    # for the loop to read another (zero-length fields) record from: that set goes per record
    shape = (3, 3, False)
    msg(ts.HV2, [fx.ipfix_set(2, fx.ipfix_template(303, VAR))], 0)
    msg(ts.HV2, [fx.ipfix_set(303, _var_record(rng, shape) * 2)], 2)
    msg(ts.HV2, [fx.ipfix_set(303, _var_record(rng, shape) * 2 + b"\0" * 20)], 3)
    # counters past int64 from hv1 (counted there: 10.0.0.1 is on hv1 in both tenants)
    msg(ts.HV1, [fx.ipfix_set(305, (fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2") + b"\6"
                                    + struct.pack("!QQ", (1 << 64) - 1, 1)) * 2)], 2)
    return out


def v9_datagrams(rng) -> list:
    out = []
    tpl = fx.v9_template_flowset([(256, FIXED), (257, V6), (258, PORTLESS),
                                  (259, [(8, 4), (12, 4), (4, 1), (1, 0xFFFF)])])
    opts = fx.v9_options_template_flowset(260, [(1, 4)], [(34, 4), (35, 1)])
    for src in (ts.HV1, ts.HV2):
        out.append(("netflow", src, fx.v9_packet([fx.v9_flowset(256, _fixed_record(rng))], seq=0)))
        out.append(("netflow", src, fx.v9_packet([tpl, opts], seq=1)))
    for i in range(80):
        src = rng.choice((ts.HV1, ts.HV2))
        n = rng.randrange(1, 10)
        pick = rng.randrange(4)
        if pick == 0:
            fs = [fx.v9_flowset(256, b"".join(_fixed_record(rng) for _ in range(n)))]
        elif pick == 1:
            fs = [fx.v9_flowset(257, b"".join(_fixed_record(rng, True) for _ in range(n)))]
        elif pick == 2:
            fs = [fx.v9_flowset(260, struct.pack("!IIB", 1, 100, 2) * n),
                  fx.v9_flowset(258, b"".join(fx.ip4("10.0.0.1") + fx.ip4("10.0.0.2") + b"\6"
                                              + struct.pack("!II", 99, 1) for _ in range(n)))]
        else:               # a 65535-byte "fixed" field (v9 has no variable lengths): too long
            fs = [fx.v9_flowset(259, b"\0" * 20)]
        out.append(("netflow", src, fx.v9_packet(fs, seq=2 + i)))
    out.append(("netflow", ts.HV1, fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7)])))
    return out


def test_constructed_ipfix_and_v9_datagrams_agree():
    rng = random.Random(13)
    datagrams = ipfix_datagrams(rng) + v9_datagrams(rng)
    for batch in (512, 7):
        res = tc.both_paths(datagrams, ts.model(), ts.EXPORTERS, batch=batch)
        assert res[True][0] == res[False][0]
        assert res[True][1] == res[False][1]
        assert res[False][3] == 0
        ipfix = res[True][1]["ipfix"]
        total = ipfix["flows"]["ipfix"][0] + res[True][1]["netflow"]["flows"]["netflow9"][0]
        assert res[True][3] > total * 0.6, (res[True][3], total)   # most went the numpy way
        assert ipfix["stats"]["ipfix"][ts.HV1]["pending_sets"] > 0
        assert ipfix["errors"] == 0 and res[True][1]["netflow"]["errors"] == 0
    assert {dict(f)["src"] for f in res[True][0]} >= {"red/net/a", "blue/net/a"}
    assert max(dict(f)["bytes"] for f in res[True][0]) >= (1 << 64) - 1


def test_fixed_templates_compile_one_big_endian_dtype_kept_on_the_template():
    tpl = Template(301, [FieldSpec(*f) for f in FIXED])
    lay = fixed_layout(tpl)
    assert fixed_layout(tpl) is lay and lay.size == tpl.fixed_length
    assert lay.dtype["in_if"].subdtype[1] == (3,) and lay.dtype["out_if"] == np.dtype(">u4")
    rng = random.Random(1)
    body = b"".join(_fixed_record(rng) for _ in range(5)) + b"\0" * 7   # padding ignored
    got, count = set_layout(tpl, body, 0, len(body))
    assert got is lay and count == 5
    rows = np.frombuffer(body, dtype=lay.dtype, count=count)
    dicts = tpl.decode_records(body, 0, len(body))
    assert lay.uint(rows, "in_if").tolist() == [d["ingressInterface"] for d in dicts]
    assert lay.uint(rows, "l2octets") is None
    assert lay.uint(rows, "octets").tolist() == [d["octetDeltaCount"] for d in dicts]
    # the template re-sent is a new object: a new dtype
    assert fixed_layout(Template(301, [FieldSpec(*f) for f in FIXED])) is not lay


def test_variable_length_sets_take_one_shape_or_go_per_record():
    tpl = Template(303, [FieldSpec(*f) for f in VAR])
    rng = random.Random(2)
    same = b"".join(_var_record(rng, (3, 3, True)) for _ in range(4))
    lay, count = set_layout(tpl, same, 0, len(same))
    assert count == 4 and lay.size == len(same) // 4
    assert set_layout(tpl, same + b"\0" * 3, 0, len(same) + 3) is not None   # short padding
    assert set_layout(tpl, same + b"\0" * 40, 0, len(same) + 40) is None    # the loop's call
    mixed = _var_record(rng, (3, 3, False)) + _var_record(rng, (0, 3, False))
    assert set_layout(tpl, mixed, 0, len(mixed)) is None
    rows = np.frombuffer(same, dtype=lay.dtype, count=count)
    assert lay.uint(rows, "tunnel_key").tolist() == \
        [d["tunnel_key"] for d in tpl.decode_records(same, 0, len(same))]
