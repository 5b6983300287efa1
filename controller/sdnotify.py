"""systemd's readiness protocol (sd_notify): one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

Written here rather than taken from a library: the protocol is a single sendto() on a unix
datagram socket (systemd documents it as stable, sd_notify(3)), and the maintained binding
(systemd-python) needs libsystemd's headers and a C build in the virtualenv.
"""
from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send e.g. notify("READY=1", "STATUS=...") when weftd runs under a service manager that
    asked for it (NOTIFY_SOCKET set); False when nobody listens. Never raises."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):                 # an abstract socket
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False                            # vsock: and others: not for a local service
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
        return True
    except OSError:
        return False
