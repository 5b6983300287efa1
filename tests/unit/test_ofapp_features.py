"""The os-ken app hands the engine a switch's datapath id with its features, whatever os-ken's own handler has done yet."""
from types import SimpleNamespace

from controller.ofapp import WeftOFApp


class _Engine:
    def __init__(self):
        self.connected = []

    def switch_connected(self, dp, names):
        self.connected.append((dp.id, names))


def test_features_set_the_datapath_id_before_the_engine_hears_of_the_switch():
    # os-ken's OFPHandler sets datapath.id in its own thread; it may not have run yet
    dp = SimpleNamespace(id=None, address=("198.19.0.53", 41210), socket=SimpleNamespace())
    engine = _Engine()
    app = SimpleNamespace(engine=engine)
    WeftOFApp.switch_features(app, SimpleNamespace(msg=SimpleNamespace(datapath=dp, datapath_id=0x7765000b42e60801)))
    assert engine.connected == [(0x7765000b42e60801, None)]
    assert dp.id == 0x7765000b42e60801
