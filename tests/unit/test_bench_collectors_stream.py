"""bench_collectors' record pools renew when used up: the datagrams stay valid (decoded and
counted by the collector, sequences continuing without gaps), and no record repeats one sent
in an earlier pass."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_collectors as bc  # noqa: E402

from collectors import netflow_v5, sflow  # noqa: E402
from collectors.service import CollectorService, _Receiver  # noqa: E402

NOW = 1_700_000_003.0


def _stream(kind, model):
    if kind == "netflow":
        return bc.Stream(bc.netflow5_stream(model, 60), bc.NF5_PER_DGRAM, bc._renew_netflow5,
                         bc._netflow5_content)
    return bc.Stream(bc.sflow_stream(model, 60), bc.SFLOW_PER_DGRAM, bc._renew_sflow,
                     bc._sflow_content)


def _content(kind, data: bytes) -> list:
    if kind == "netflow":
        return [(r.src_addr, r.dst_addr, r.src_port, r.dst_port, r.protocol, r.packets,
                 r.octets, r.first, r.last, r.input, r.output)
                for r in netflow_v5.decode(data).records]
    out = []
    for s in sflow.decode(data).samples:
        raw = [r for r in s.records if isinstance(r, sflow.RawPacketHeader)][0]
        out.append((raw.frame_length, bytes(raw.header)))
    return out


@pytest.mark.parametrize("kind", ["netflow", "sflow"])
def test_renewed_pools_stay_valid_and_never_repeat_a_record(kind):
    model = bc.synthetic_model()
    stream = _stream(kind, model)
    pool = len(stream.addrs)
    items = []
    for _ in range(7):                      # 3.5 passes, takes that span the wraps
        items += [(a, bytes(d)) for a, d in stream.take(pool // 2)]
    assert stream.wrapped == 3
    assert stream.records == len(items) * stream.per
    seen = [c for _a, d in items for c in _content(kind, d)]
    assert len(seen) == stream.records
    assert len(set(seen)) == stream.records - stream.repeats
    assert stream.repeats < stream.records // 100    # only what random traffic gives
    svc = CollectorService(model, sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                           exporter_hosts=bc.MGMT, clock=lambda: NOW)
    svc.refresh_model()
    r = _Receiver(svc, kind, ("127.0.0.1", 0))
    try:
        for i in range(0, len(items), 64):
            r.handle_batch([(d, a) for a, d in items[i:i + 64]], NOW)
        snap = r.snapshot()
    finally:
        r.sock.close()
    proto = "netflow5" if kind == "netflow" else "sflow"
    assert snap["flows"][proto][0] == stream.records     # (records, counted, dedup)
    for exporter, st in snap["stats"][proto].items():
        assert st["malformed"] == 0, exporter
        assert st["sequence_gaps"] == 0 and st["out_of_order"] == 0, (exporter, st)
    assert np.isin(list(snap["stats"][proto]), list(bc.MGMT)).all()


def test_repeats_are_counted_where_they_are_handed_out():
    """Records whose content repeats an earlier one of the pass count as repeats once taken."""
    items = [("127.0.0.10", bytes([i]) * 8) for i in range(4)]          # 4 datagrams, 2 records
    hashes = np.array([1, 2, 3, 1, 2, 2, 4, 5], dtype=np.uint64)        # repeats at 3, 4, 5

    def renew(grid, per, npass, rng):
        return np.arange(8, dtype=np.uint64)                           # all distinct
    s = bc.Stream(items, 2, renew, lambda grid: hashes)
    s.take(1)
    assert (s.records, s.repeats) == (2, 0)
    s.take(2)                                  # datagrams 1, 2: records 2-5 (repeats 3, 4, 5)
    assert (s.records, s.repeats) == (6, 3)
    s.take(3)                                  # the last datagram, then two of the new pass
    assert (s.records, s.repeats, s.wrapped) == (12, 3, 1)
    assert s.distinct().startswith("9 distinct of 12 records sent")
