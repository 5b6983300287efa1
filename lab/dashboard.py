"""The lab's dashboard address: a TCP listener on the machine's loopback handed to weftd.

weftd lives in the lab's management namespace, whose addresses a browser on the machine cannot
reach; the lab opens a listening socket on 127.0.0.1 in the machine's own namespace (a socket
keeps the namespace it was made in) and hands it to weftd (`--api-listen fd:N`). That listener
is the whole API, as on any TCP listener: every request needs the bearer token of
`<run-dir>/api.token` (mode 0600), except the dashboard's static files under /ui; plain HTTP,
because it never leaves the loopback. The port is kept in the lab's state, so a restarted weftd
is found at the same address.
"""
from __future__ import annotations

import os
import secrets
import socket

HOST = "127.0.0.1"


def token_file(run_dir: str) -> str:
    """The lab's API token file, created once (owner-only) and kept for the lab's life."""
    path = os.path.join(run_dir, "api.token")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def read_token(run_dir: str) -> str:
    with open(os.path.join(run_dir, "api.token")) as f:
        return f.read().strip()


def listener(port: int = 0) -> socket.socket:
    """A listening socket on the loopback (the given port again if it is free, else a new one)."""
    for attempt in ((port, 0) if port else (0,)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, attempt))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError(f"cannot listen on {HOST} for the lab's dashboard")


def url(svc: dict, with_token: str | None = None) -> str | None:
    """The dashboard's address of a weftd service (with `#token=` to open it signed in)."""
    if not svc.get("ui_port"):
        return None
    base = f"http://{HOST}:{svc['ui_port']}/ui/"
    return base + (f"#token={with_token}" if with_token else "")
