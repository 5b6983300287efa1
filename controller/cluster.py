"""`weft cluster status`: every weftd replica and northbound member with its role, pid and address.

A replica reports itself, asks its peers (`weftd --peer NAME=ENDPOINT`, their API) for
theirs, and asks each northbound member over OVSDB (`_Server` database) whether it leads the
Raft cluster. A member that does not answer is listed with role "down". The pid of a
northbound member is known when it is reached over a unix socket (the socket's peer
credentials); over TCP it is that machine's business (null).
"""
from __future__ import annotations

import json
import os
import socket
import struct

from topology.errors import WeftError

DB_NAME = "Weft_Northbound"
TIMEOUT = 1.0


def weftd_peer(name: str, endpoint: str) -> dict:
    from controller.client import Client
    try:
        view = Client(endpoint, timeout=TIMEOUT).request("GET", "/v1/cluster", query={"self": "1"})
        return {**view, "name": view.get("name") or name}
    except WeftError as exc:
        return {"name": name, "kind": "weftd", "role": "down", "pid": None, "address": None,
                "api": endpoint, "error": str(exc)}


def nb_members(remote: str) -> list[dict]:
    return [nb_member(r) for r in remote.split(",") if r]


def nb_member(remote: str) -> dict:
    name = os.path.splitext(os.path.basename(remote.split(":", 1)[-1]))[0] if remote.startswith("unix:") \
        else remote
    entry = {"name": name, "kind": "nb", "role": "down", "pid": None, "address": remote}
    try:
        sock, pid = _connect(remote)
    except OSError as exc:
        return {**entry, "error": str(exc)}
    entry["pid"] = pid
    try:
        with sock:
            rows = _select_database(sock)
    except (OSError, ValueError) as exc:
        return {**entry, "error": str(exc)}
    row = next((r for r in rows if r.get("name") == DB_NAME), None)
    if row is None:
        return {**entry, "error": f"serves no {DB_NAME} database"}
    if row.get("model") != "clustered":
        return {**entry, "role": "standalone"}
    if not row.get("connected"):
        return {**entry, "role": "down", "error": "disconnected from the cluster"}
    return {**entry, "role": "leader" if row.get("leader") else "follower"}


def _connect(remote: str) -> tuple[socket.socket, int | None]:
    kind, _, where = remote.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(where)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return sock, struct.unpack("3i", creds)[0]
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=TIMEOUT), None
    raise OSError(f"cannot query {remote} (unix: or tcp: only)")


def _select_database(sock: socket.socket) -> list[dict]:
    request = {"id": 1, "method": "transact", "params": [
        "_Server", {"op": "select", "table": "Database", "where": [],
                    "columns": ["name", "model", "connected", "leader"]}]}
    sock.sendall(json.dumps(request).encode())
    decoder, buf = json.JSONDecoder(), ""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the answer")
        buf += chunk.decode()
        try:
            reply, _end = decoder.raw_decode(buf)
        except ValueError:
            continue
        if reply.get("id") != 1:           # e.g. an echo request: not ours
            buf = buf[_end:].lstrip()
            continue
        if reply.get("error"):
            raise ValueError(str(reply["error"]))
        return reply["result"][0].get("rows", [])
