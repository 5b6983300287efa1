"""weftd's OpenFlow listener for os-ken: TLS (client certificate required) with a handshake deadline, refusals reported, disconnects that always reach the engine.

os-ken's own listener (`OpenFlowController.server_loop`) would do TLS too, but a failed
handshake there is an uncaught exception in a thread (a traceback per attempt, never counted),
a peer that never finishes its handshake holds a thread forever, and with os-ken's native hub a
connection that ends never reports its end: `Datapath.serve()` waits for its send thread, which
waits on an empty queue, so the DEAD_DISPATCHER event never comes (a restarted switch was only
noticed because its new connection replaced the old one). weftd admits one connection per
datapath id, so it must see the old one go at once: when the receive loop ends, `_Datapath`
reports the connection dead and wakes the send thread.

The listener socket is bound when `Listener` is made (weftd fails at start if it cannot bind),
and os-ken's `OFPHandler` is given it in place of its `OpenFlowController` (`install`): the
handler only calls it (`hub.spawn(self.controller)`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import ssl
import threading

from os_ken.controller import ofp_handler
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import DEAD_DISPATCHER
from os_ken.lib import hub

from controller.identity import TLS_HANDSHAKE
from topology.errors import WeftError

LOG = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 10.0       # seconds a peer has to complete its TLS handshake
MAX_HANDSHAKES = 64            # handshakes under way at once; more connections are closed at once
BACKLOG = 128


class _Datapath(Datapath):
    """os-ken's Datapath whose end is always reported (see the module's docstring)."""

    def _recv_loop(self):
        try:
            super()._recv_loop()          # closes the socket when it returns
        finally:
            # the connection is over: say so now (DEAD_DISPATCHER, the engine hears of it), not
            # once serve() has joined the echo thread, which sleeps up to an echo interval
            self.set_state(DEAD_DISPATCHER)
            # an empty write that closes: the send thread ends, serve() returns. Taken like any
            # send (the queue's semaphore); a full queue means the send thread is busy and ends
            # on the closed socket by itself
            q = self.send_q
            if q is not None and self._send_q_sem.acquire(blocking=False):
                try:
                    q.put_nowait((b"", True))
                except queue.Full:
                    self._send_q_sem.release()


def serve_datapath(sock, address) -> None:
    """One switch connection, as os-ken's `datapath_connection_factory` (DEAD_DISPATCHER at the end)."""
    with contextlib.closing(_Datapath(sock, address)) as datapath:
        try:
            datapath.serve()
        except Exception:
            LOG.exception("switch connection from %s (datapath %s) failed", address,
                          "unknown" if datapath.id is None else f"{datapath.id:016x}")


class Listener:
    """Accepts switches on host:port; with `context` every connection must complete a TLS
    handshake presenting a certificate the context's CA signed. `on_refused(address, reason,
    detail)` hears of every connection refused here."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, on_refused):
        self.context = context
        self.on_refused = on_refused
        self._slots = threading.BoundedSemaphore(MAX_HANDSHAKES)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))        # refused when another process listens there
        except OSError as exc:
            self.sock.close()
            raise WeftError(f"cannot listen for OpenFlow on {host}:{port}: {exc.strerror or exc}") from None
        if context is not None:
            context.num_tickets = 0       # no TLS 1.3 session tickets: nothing written after the handshake

    @property
    def tls(self) -> bool:
        return self.context is not None

    def __call__(self) -> None:
        """The accept loop (os-ken's OFPHandler runs it in a thread of its own). The socket
        listens only from now on: until weftd is ready for them, switches are refused at the TCP
        level and come back after their reconnect backoff, as they did with os-ken's listener."""
        try:
            self.sock.listen(BACKLOG)
        except OSError as exc:                  # another weftd bound it too and listens first
            LOG.critical("cannot listen for OpenFlow on %s: %s; weftd stops", self.sock.getsockname(), exc)
            os._exit(1)
        while True:
            try:
                sock, address = self.sock.accept()
            except OSError as exc:
                LOG.error("OpenFlow listener: accept failed: %s", exc)
                hub.sleep(0.1)
                continue
            if self.context is None:
                hub.spawn(serve_datapath, sock, address)
            elif not self._slots.acquire(blocking=False):
                sock.close()
                self.on_refused(address, TLS_HANDSHAKE,
                                f"{MAX_HANDSHAKES} TLS handshakes already under way; closed at once")
            else:
                hub.spawn(self._handshake, sock, address)

    def _handshake(self, sock, address) -> None:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with contextlib.suppress(OSError):
                sock.close()
            self.on_refused(address, TLS_HANDSHAKE, handshake_error(exc))
            return
        finally:
            self._slots.release()
        serve_datapath(tls, address)


def handshake_error(exc: BaseException) -> str:
    """One line on why a TLS handshake failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate refused: {exc.verify_message}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT:.0f} s"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return {"PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer presented no certificate",
                "WRONG_VERSION_NUMBER": "not TLS (a plain-TCP switch?)",
                "HTTP_REQUEST": "not TLS (an HTTP request)",
                }.get(exc.reason, f"TLS error: {exc.reason.lower().replace('_', ' ')}")
    return f"connection failed during the TLS handshake: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"


def install(listener: Listener) -> None:
    """Make os-ken's OpenFlow handler run `listener` instead of its own OpenFlowController."""
    ofp_handler.OpenFlowController = lambda: listener
