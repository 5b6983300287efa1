"""collectors.recvmany: recvmmsg through ctypes gives what recvfrom gives, many datagrams a call."""
from __future__ import annotations

import socket
import time

import pytest

from collectors.recvmany import ManyReceiver
from collectors.service import udp_socket


def _send_and_take(family, host, sources, use_recvmmsg, sizes):
    rx = udp_socket((host, 0))
    txs = []
    try:
        for src in sources:
            tx = socket.socket(family, socket.SOCK_DGRAM)
            tx.bind((src, 0))
            txs.append(tx)
        mr = ManyReceiver(rx, slots=64, use_recvmmsg=use_recvmmsg)
        assert mr.recv(64) == []                       # nothing waiting
        sent = []
        for i, size in enumerate(sizes):
            tx = txs[i % len(txs)]
            data = bytes([i % 256]) * size
            tx.sendto(data, rx.getsockname()[:2])
            sent.append((data, tx.getsockname()[0]))
        got, deadline = [], time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            part = mr.recv(40)
            assert len(part) <= 40
            got += part
            if not part:
                time.sleep(0.01)
        return sent, got, mr
    finally:
        for s in txs:
            s.close()
        rx.close()


@pytest.mark.parametrize("use_recvmmsg", [True, False])
def test_ipv4_datagrams_and_sources_as_recvfrom_gives_them(use_recvmmsg):
    sizes = [1, 1464, 60_000, 0, 3] + [100 + i for i in range(95)]
    sent, got, mr = _send_and_take(socket.AF_INET, "127.0.0.1",
                                   ["127.0.0.10", "127.0.0.11", "127.0.0.12"], use_recvmmsg,
                                   sizes)
    assert got == sent
    if use_recvmmsg:
        assert mr._call is not None and len(mr._names) == 3   # one name per exporter socket


@pytest.mark.parametrize("use_recvmmsg", [True, False])
def test_ipv6_sources(use_recvmmsg):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sent, got, _mr = _send_and_take(socket.AF_INET6, "::1", ["::1"], use_recvmmsg,
                                        [10, 2000, 7])
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    assert got == sent and got[0][1] == "::1"


def test_a_closed_socket_is_an_error_not_silence():
    rx = udp_socket(("127.0.0.1", 0))
    mr = ManyReceiver(rx)
    rx.close()
    with pytest.raises(OSError):
        mr.recv(8)
