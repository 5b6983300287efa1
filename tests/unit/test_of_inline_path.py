"""The port-up path's hand-offs: engine-bound OpenFlow events are handled on the thread that parsed them, and a sender writes an idle connection's bytes itself."""
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, register_instance
from os_ken.ofproto import ofproto_v1_4 as ofp
from os_ken.ofproto import ofproto_v1_4_parser as parser

from controller.ofapp import OpenFlowSinks, WeftOFApp
from controller.ofloop import DIRECT_WRITE_MAX, LoopDatapath


class _Engine:
    def __init__(self):
        self.calls = []

    def port_status(self, dp, name, ofport):
        self.calls.append(("port", name, ofport, threading.current_thread()))

    def bundle_reply(self, dp, bundle_id, kind):
        self.calls.append(("bundle", bundle_id, kind, threading.current_thread()))

    def admitted(self, dp):
        return True


def _app():
    engine = _Engine()
    app = WeftOFApp(weft=OpenFlowSinks(engine=engine, driver=None))
    register_instance(app)            # what os-ken's register_app does, without the global registry
    return app, engine


def _dp():
    return SimpleNamespace(id=1, ofproto=ofp, ofproto_parser=parser)


def _port_status(dp, reason=ofp.OFPPR_ADD, port_no=7, name=b"tap7"):
    desc = parser.OFPPort(port_no=port_no, hw_addr="02:00:00:00:00:07", name=name, config=0,
                          state=0, properties=[])
    return ofp_event.EventOFPPortStatus(parser.OFPPortStatus(dp, reason, desc))


def test_port_status_and_bundle_replies_reach_the_engine_on_the_parsing_thread():
    app, engine = _app()
    dp = _dp()
    app._send_event(_port_status(dp), MAIN_DISPATCHER)
    app._send_event(ofp_event.EventOFPBundleCtrlMsg(
        parser.OFPBundleCtrlMsg(dp, 9, ofp.OFPBCT_COMMIT_REPLY, 0, [])), MAIN_DISPATCHER)
    me = threading.current_thread()
    assert engine.calls == [("port", "tap7", 7, me), ("bundle", 9, ofp.OFPBCT_COMMIT_REPLY, me)]
    assert app.events.empty()                     # nothing went through the app's own queue


def test_inline_events_keep_their_dispatcher_state_and_a_failing_handler_stays_in_the_app():
    app, engine = _app()
    dp = _dp()
    app._send_event(_port_status(dp), CONFIG_DISPATCHER)     # port_status is MAIN only
    assert engine.calls == [] and app.events.empty()
    engine.port_status = None                                # the handler raises TypeError
    app._send_event(_port_status(dp), MAIN_DISPATCHER)       # logged, not raised into the loop


def test_other_events_still_go_through_the_apps_queue():
    app, engine = _app()
    dp = _dp()
    ev = ofp_event.EventOFPPacketIn(parser.OFPPacketIn(dp, data=b"x" * 64))
    app._send_event(ev, MAIN_DISPATCHER)
    assert engine.calls == []
    assert app.events.get_nowait() == (ev, MAIN_DISPATCHER)


class _Loop:
    """What a LoopDatapath needs of its loop: posts recorded, the loop's thread elsewhere."""

    def __init__(self):
        self._thread = None
        self.posted = []

    def want_write(self, dp):
        self.posted.append("write")

    def want_close(self, dp):
        self.posted.append("close")


@pytest.fixture
def pair():
    """(LoopDatapath, its peer's socket, its loop) over a loopback TCP connection (os-ken's
    Datapath sets TCP_NODELAY on its socket); both sockets closed afterwards."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        b = socket.create_connection(server.getsockname())
        a, _ = server.accept()
    loop = _Loop()
    dp = LoopDatapath(a, ("192.0.2.1", 6653), loop)
    yield dp, b, loop
    dp.socket.close()
    b.close()


def test_a_sender_writes_an_idle_connection_itself(pair):
    dp, peer, loop = pair
    assert dp.send(b"bundle bytes")
    assert peer.recv(100) == b"bundle bytes"
    assert loop.posted == [] and not dp._posted      # the loop was not needed
    assert dp.send(b"more")                           # and again for the next one
    assert peer.recv(100) == b"more" and loop.posted == []


def test_the_loop_takes_over_when_the_socket_is_busy_or_full(pair):
    dp, peer, loop = pair
    with dp._io_lock:                     # the loop is reading or writing this socket
        assert dp.send(b"first")
    assert loop.posted == ["write"] and dp._posted
    assert dp.send(b"second")             # already posted: appended for the loop
    assert loop.posted == ["write"]
    assert dp._flush() is True            # the loop's write: both, in order
    assert peer.recv(100) == b"firstsecond"
    loop.posted.clear()
    dp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    part = b"y" * 60000                   # more than the socket takes at once
    assert dp.send(part)
    assert loop.posted == ["write"] and dp._out   # the rest waits for writability
    assert _drain(dp, peer, len(part)) == part
    loop.posted.clear()
    whole = b"z" * (DIRECT_WRITE_MAX + 1)  # a whole host's flows: the loop's to write
    assert dp.send(whole)
    assert loop.posted == ["write"] and sum(map(len, dp._out)) == len(whole)
    assert _drain(dp, peer, len(whole)) == whole


def _drain(dp, peer, size: int) -> bytes:
    """What the loop would do on writability until the peer has `size` bytes."""
    got = bytearray()
    peer.settimeout(0.05)
    deadline = time.monotonic() + 30
    while len(got) < size and time.monotonic() < deadline:
        if dp._out:
            dp._flush()
        try:
            got += peer.recv(1 << 20)
        except socket.timeout:
            pass
    assert not dp._out
    return bytes(got)


def test_a_closing_send_is_the_loops(pair):
    dp, peer, loop = pair
    assert dp.send(b"bye", close_socket=True)
    assert loop.posted == ["write"]
    assert dp._flush() is None             # written, then the connection is over
    assert peer.recv(100) == b"bye"


def test_the_loops_own_sends_stay_with_the_loop(pair):
    dp, peer, loop = pair
    loop._thread = threading.current_thread()      # an echo reply written while parsing
    assert dp.send(b"echo")
    assert loop.posted == ["write"]
    assert dp._flush() is True and peer.recv(100) == b"echo"
