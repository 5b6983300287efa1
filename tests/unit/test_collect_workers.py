"""Collector workers: processes sharing one UDP port (SO_REUSEPORT), merged into one Aggregator."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402
import test_collect_service as ts  # noqa: E402

from collectors.service import CollectorService  # noqa: E402
from collectors.workers import default_workers  # noqa: E402

SOURCES = [f"127.0.1.{i}" for i in range(1, 33)]


def test_each_exporter_lands_on_one_worker_and_results_merge():
    """32 exporters (one socket each) to 2 workers: the kernel spreads them over both, each
    exporter's datagrams all reach the same one (no sequence gap, no reordering), and the
    parent's counters and traffic rows hold every record."""
    exporters = dict(ts.EXPORTERS, **{a: "hv1" for a in SOURCES})
    svc = CollectorService(ts.model(), sflow=None, netflow=("127.0.0.1", 0),
                           exporter_hosts=exporters, workers=2).start()
    socks = []
    try:
        assert len(svc._workers) == 1
        for a in SOURCES:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a, 0))
            socks.append(s)
        per = 20
        for seq in range(per):
            for s in socks:
                s.sendto(fx.v5_packet([fx.v5_record("10.0.0.1", "10.0.0.2", inp=7)] * 30,
                                      seq=seq * 30), svc.addresses["netflow"])
            time.sleep(0.002)
        want = len(SOURCES) * per
        deadline = time.monotonic() + 20
        while svc.status()["totals"]["datagrams"] < want and time.monotonic() < deadline:
            time.sleep(0.05)
        st = svc.status()
        assert st["workers"] == 2
        assert st["totals"]["datagrams"] == want and st["totals"]["records"] == want * 30
        seen = [e for e in st["exporters"] if e["exporter"] in SOURCES]
        assert sorted(e["exporter"] for e in seen) == sorted(SOURCES)   # each in one worker
        assert all(e["datagrams"] == per and e["sequence_gaps"] == 0 and e["out_of_order"] == 0
                   for e in seen)
        own = svc._receivers["netflow"].snapshot()["datagrams"]
        assert 0 < own < want   # both the parent and the worker got some
        rows = svc.matrix()
        assert rows[0]["src"] == "red/net/a" and rows[0]["packets"] == want * 30 * 10
    finally:
        for s in socks:
            s.close()
        svc.stop()
    assert svc._workers == []
    st = svc.status()   # after stop: the workers' last counts are kept
    assert st["workers"] == 2 and st["totals"]["records"] == want * 30


def test_workers_flag_is_checked_and_defaults_to_cores_minus_one(capsys):
    from collectors.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--netflow", "127.0.0.1:0", "--workers", "x"])
    assert e.value.code == 2
    assert main(["--netflow", "127.0.0.1:0", "--workers", "0"]) == 2
    assert "--workers must be between 1 and 256" in capsys.readouterr().err
    assert default_workers() >= 1
    with pytest.raises(ValueError):
        CollectorService(None, netflow=("127.0.0.1", 0), workers=0)
