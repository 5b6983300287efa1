"""The ovs library's Poller waits on file descriptors above 1023 (weftd holds one per host)."""
import os
import resource
import socket

import ovs.poller

from ovsdb import pollfix  # noqa: F401


def test_a_poller_waits_on_a_descriptor_above_1023():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 2000)
    try:
        b.send(b"x")
        poller = ovs.poller.Poller()
        poller.fd_wait(high, ovs.poller.POLLIN)
        poller.timer_wait(5000)
        poller.block()                      # select.select raised ValueError here
        assert os.read(high, 1) == b"x"
    finally:
        os.close(high)
        a.close()
        b.close()
