"""The southbound's ifindex map reaches the collectors' attribution on their refresher thread, a little later, never in the thread that reports it (a port-up's path)."""
import threading
import time

from collectors.service import MODEL_SETTLE_S, CollectorService

MAP = {("hv1", 7): "port-a"}


def test_without_a_refresher_the_map_is_taken_at_once():
    s = CollectorService(None, sflow=("127.0.0.1", 0))        # not started: no refresher
    s.ifindexes_changed(MAP)
    assert s.attributor.ifindexes == MAP


def test_with_a_refresher_the_map_is_taken_on_it():
    s = CollectorService(lambda: None, sflow=("127.0.0.1", 0), model_refresh=5.0,
                         flush_interval=0.05).start()
    try:
        threads = []
        update = s.attributor.update

        def recorded(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return update(*args, **kwargs)
        s.attributor.update = recorded
        start = time.monotonic()
        s.ifindexes_changed(MAP)
        deadline = start + 10
        while s.attributor.ifindexes != MAP and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.attributor.ifindexes == MAP
        assert time.monotonic() - start >= MODEL_SETTLE_S     # the burst settles first
        assert threads == ["collect-model"]                  # one rebuild, on the refresher
        s.ifindexes_changed(MAP)                              # the same map again: no rebuild
        time.sleep(MODEL_SETTLE_S * 3)
        assert threads == ["collect-model"]
    finally:
        s.stop()
