"""weftd's OpenFlow listener for os-ken: TLS (client certificate required) with a handshake deadline, refusals reported, disconnects that always reach the engine.

os-ken's own listener (`OpenFlowController.server_loop`) would do TLS too, but a failed
handshake there is an uncaught exception in a thread (a traceback per attempt, never counted),
a peer that never finishes its handshake holds a thread forever, a connection that ends never
reports its end with os-ken's native hub, and every switch costs three threads. Here every
connection, handshakes included, is served by one selector loop (`controller.ofloop`) running
in the listener's thread: a handshake has a deadline, a connection that ends is reported dead
(DEAD_DISPATCHER) at once — weftd admits one connection per datapath id, so it must see the
old one go — and 5,000 switches cost 5,000 sockets, not 15,000 threads.

The listener socket is bound when `Listener` is made (weftd fails at start if it cannot bind),
and os-ken's `OFPHandler` is given it in place of its `OpenFlowController` (`install`): the
handler only calls it (`hub.spawn(self.controller)`).
"""
from __future__ import annotations

import logging
import os
import socket
import ssl

from os_ken.controller import ofp_handler

from controller.identity import TLS_HANDSHAKE
from controller.ofloop import OpenFlowLoop
from topology.errors import WeftError

LOG = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 10.0       # seconds a peer has to complete its TLS handshake
MAX_HANDSHAKES = 64            # handshakes under way at once; more connections are closed at once
BACKLOG = 4096                 # every host of a seed-scale site may connect at once (cold start)


class Listener:
    """Accepts switches on host:port; with `context` every connection must complete a TLS
    handshake presenting a certificate the context's CA signed. `on_refused(address, reason,
    detail)` hears of every connection refused here."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, on_refused,
                 raw_handlers: dict | None = None):
        self.context = context
        self.on_refused = on_refused
        self.raw_handlers = raw_handlers        # read before os-ken's parser (controller.ofloop)
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
        """The OpenFlow loop (os-ken's OFPHandler runs it in a thread of its own). The socket
        listens only from now on: until weftd is ready for them, switches are refused at the TCP
        level and come back after their reconnect backoff, as they did with os-ken's listener."""
        try:
            self.sock.listen(BACKLOG)
        except OSError as exc:                  # another weftd bound it too and listens first
            LOG.critical("cannot listen for OpenFlow on %s: %s; weftd stops", self.sock.getsockname(), exc)
            os._exit(1)
        OpenFlowLoop(self.sock, self.context, self.on_refused, handshake_error, TLS_HANDSHAKE,
                     HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, self.raw_handlers).run()


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
