"""Drop samples on disk: written to the history's `drops` table and read back with the ones in memory,
never twice, across a restart (a new DropLog over the same history)."""
import time

from collectors.drop_history import DropHistory
from collectors.drops import DropLog, DropSample
from collectors.history import History


def sample(t, src="red/net/web1", dst="red/net/db1", tenant="red", reason="security-group"):
    return DropSample(time=t, host="hv2", reason=reason, table=45, src=src, dst=dst, proto="tcp",
                      dport=5432, group="red/db", owner="red/net/db1", src_tenant=tenant,
                      dst_tenant=tenant)


def test_drops_survive_a_restart_and_are_counted_once(tmp_path):
    now = time.time()
    history = History(str(tmp_path / "history"))
    log = DropLog()
    before = DropHistory(history, log, flush_seconds=3600)
    for t in (now - 100, now - 50):
        log.add(sample(t))
    log.add(sample(now - 40, src="blue/net/a", dst="blue/net/b", tenant="blue"))
    # before the write, and after it: memory alone answers, nothing doubled
    assert [r["packets"] for r in before.rows(now - 600, "red")] == [2]
    assert before.flush() == 3 and before.written == 3
    assert [r["packets"] for r in before.rows(now - 600, "red")] == [2]
    assert before.rows(now - 600) == log.rows(now - 600)

    # weftd restarted: an empty DropLog, the same history
    log2 = DropLog()
    after = DropHistory(history, log2, flush_seconds=3600)
    log2.add(sample(now - 5))
    rows = after.rows(now - 600, "red")
    assert len(rows) == 1
    row = rows[0]
    assert row["packets"] == 3 and row["reason"] == "security-group" and row["group"] == "red/db"
    assert row["first_seen"] == round(now - 100, 3) and row["last_seen"] == round(now - 5, 3)
    assert {r["src_tenant"] for r in after.rows(now - 600)} == {"red", "blue"}
    assert after.rows(now - 600, "green") == []
    assert [r["packets"] for r in after.rows(now - 45, "blue")] == [1]   # the window applies on disk
    assert after.rows(now - 20, "blue") == []


def test_a_flood_is_bounded_and_counted(tmp_path, monkeypatch):
    import collectors.drop_history as dh
    monkeypatch.setattr(dh, "MAX_BUFFERED", 10)
    log = DropLog()
    h = DropHistory(History(str(tmp_path / "h")), log, flush_seconds=3600)
    now = time.time()
    for i in range(25):
        log.add(sample(now - 1 + i / 100))
    assert h.lost == 15 and h.flush() == 10
