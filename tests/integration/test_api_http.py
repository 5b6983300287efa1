"""The API's HTTP layer under abuse: tokens on TCP, body caps, bad HTTP and JSON, idle connections.

A real store (its own ovsdb-server) and the real engine loop behind the real uvicorn server,
probed with raw sockets as an attacker would: every refusal is a 4xx with a JSON body, and
the daemon's threads and memory stay bounded.
"""
import json
import os
import resource
import socket
import stat
import threading
import time

import pytest

from controller import api as api_mod
from controller.client import Client
from topology.errors import WeftError

pytestmark = pytest.mark.integration
from tests.labtools import API_KEEPALIVE_S as KEEPALIVE_S, API_TOKEN as TOKEN  # the `served` fixture's


def raw(addr, data: bytes, timeout: float = 5.0) -> tuple[int, dict | None, bytes]:
    """Send `data` on a new TCP connection; (status, JSON body or None, raw answer)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                head, _, body = out.partition(b"\r\n\r\n")
                length = [int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                          if k.strip().lower() == b"content-length"]
                if length and len(body) >= length[0]:
                    break
        except socket.timeout:
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return status, parsed, out


def req(method: str, path: str, body: bytes = b"", headers: dict | None = None, token: str | None = TOKEN) -> bytes:
    h = {"Host": "x", "Content-Length": str(len(body)), **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode() + body


def test_tcp_needs_the_token_and_the_unix_socket_is_owner_and_group_only(served, monkeypatch):
    tcp = served["tcp"]
    for token, expect in ((None, 401), ("wrong-token-wrong-token", 401), (TOKEN, 200)):
        status, body, _ = raw(tcp, req("GET", "/v1/tenants", token=token))
        assert status == expect, body
        assert isinstance(body, (dict, list))
    assert "token" in raw(tcp, req("GET", "/v1/tenants", token=None))[1]["error"]
    mode = stat.S_IMODE(os.stat(served["unix"]).st_mode)
    assert mode == 0o660
    assert Client("unix:" + served["unix"]).get("/v1/tenants") == []            # no token on unix
    monkeypatch.setenv("WEFT_TOKEN", TOKEN)
    assert Client(f"http://127.0.0.1:{tcp[1]}").post("/v1/tenants", {"name": "red"})["name"] == "red"
    monkeypatch.setenv("WEFT_TOKEN", "nope-nope-nope-nope")
    with pytest.raises(WeftError, match="token"):
        Client(f"http://127.0.0.1:{tcp[1]}").get("/v1/tenants")


def test_bodies_are_capped_before_they_are_read(served):
    tcp = served["tcp"]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # a declared 1 GB body: refused from its header, nothing read
    status, body, _ = raw(tcp, req("POST", "/v1/tenants", headers={"Content-Length": str(1 << 30)}))
    assert status == 413 and "too large" in body["error"]
    # 50 MB actually sent (four times): refused once past 1 MiB, memory does not follow
    big = b'{"name": "' + b"x" * (50 << 20) + b'"}'
    for _ in range(4):
        status, body, _ = raw(tcp, req("POST", "/v1/tenants", big), timeout=30)
        assert status == 413, body
    # chunked, over the cap
    chunk = b"x" * 65536
    chunked = (b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(20)) + b"0\r\n\r\n")
    assert raw(tcp, chunked)[0] == 413
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200 * 1024      # KiB: < 200 MB


def test_bad_http_and_bad_json_are_4xx_json(served):
    tcp = served["tcp"]
    probes = {
        "negative length": (req("POST", "/v1/tenants", headers={"Content-Length": "-5"}), 400),
        "not a number": (req("POST", "/v1/tenants", headers={"Content-Length": "abc"}), 400),
        "not HTTP": (b"HELLO THERE\r\n\r\n", 400),
        "bad JSON": (req("POST", "/v1/tenants", b"{nope"), 400),
        "deep JSON": (req("POST", "/v1/tenants", b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), 400),
        "huge integer": (req("POST", "/v1/tenants", b'{"name": ' + b"9" * 100000 + b"}"), 400),
        "not an object": (req("POST", "/v1/tenants", b"[1, 2]"), 400),
        "PUT": (req("PUT", "/v1/tenants", b"{}"), 405),
        "unknown path": (req("GET", "/nowhere"), 404),
    }
    for what, (data, expect) in probes.items():
        status, body, out = raw(tcp, data)
        assert status == expect, (what, out[:300])
        assert isinstance(body, dict) and body.get("error"), (what, out[:300])
    # a chunked body that is fine is read as one
    body = b'{"name": "blue"}'
    chunked = (b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    status, got, _ = raw(tcp, chunked)
    assert status == 201 and got["name"] == "blue"


def test_idle_connections_cost_no_threads_and_are_closed(served):
    tcp = served["tcp"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    n = min(1000, (want - 200) // 2)          # both ends of every connection are in this process
    threads0 = threading.active_count()
    idle = []
    try:
        for i in range(n):
            s = socket.create_connection(tcp, timeout=5)
            if i % 2:
                s.sendall(b"GET /v1/tenants HTTP/1.1\r\nHo")        # half a request, then nothing
            idle.append(s)
        assert threading.active_count() - threads0 < 10
        status, body, _ = raw(tcp, req("GET", "/v1/tenants"))          # still served
        assert status == 200, body
        time.sleep(KEEPALIVE_S + 1)
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(10) == b""
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        assert closed == n                    # every idle or incomplete connection was closed
    finally:
        for s in idle:
            s.close()


def test_a_connection_that_never_finishes_its_request_is_closed(served):
    old = KEEPALIVE_S
    with socket.create_connection(served["tcp"], timeout=30) as s:
        s.sendall(b"GET /v1/tenants HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        for _ in range(5):                      # keep trickling: bytes alone do not keep it open
            time.sleep(1)
            try:
                s.sendall(b"s")
            except OSError:
                break
        s.settimeout(old + 10)
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b"timeout"
    assert data == b"", data           # closed by the server, not left open
    assert time.monotonic() - t0 < old + 10


def test_weftd_refuses_a_tcp_api_without_a_token_file(tmp_path, capsys):
    from controller import daemon
    with pytest.raises(SystemExit):
        daemon.parse_args(["--api-listen", "127.0.0.1:0"])
    assert "needs --api-token-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        daemon.parse_args(["--api-listen", "127.0.0.1:0", "--api-token-file", "f"])
    assert "needs --api-tls-cert" in capsys.readouterr().err
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    with pytest.raises(WeftError, match="readable by others"):
        daemon.read_token(str(token))
    token.chmod(0o600)
    assert daemon.read_token(str(token)) == TOKEN
    token.write_text("short")
    with pytest.raises(WeftError, match="at least 16"):
        daemon.read_token(str(token))
    args = daemon.parse_args(["--run-dir", str(tmp_path)])
    assert args.api_socket == str(tmp_path / "weftd.sock") and args.api_listen is None


def test_tcp_answers_are_not_held_back_by_nagle():
    """Accepted connections inherit TCP_NODELAY, and asyncio sets it only on sockets that say
    they are TCP: without both, every answer waits for the client's delayed ACK."""
    from controller import apihttp
    sock = apihttp.tcp_listener(("127.0.0.1", 0))
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_host_add_is_409_for_an_existing_host_and_patch_changes_it(served):
    c = Client("unix:" + served["unix"])
    c.post("/v1/hosts", {"name": "hv1", "tunnel_ip": "192.0.2.1", "ovsdb": "ssl:192.0.2.1:6640"})
    with pytest.raises(WeftError, match="already exists") as err:
        c.post("/v1/hosts", {"name": "hv1", "tunnel_ip": "192.0.2.9", "ovsdb": "ssl:192.0.2.9:6640"})
    assert err.value.status == 409
    res = c.request("PATCH", "/v1/hosts/hv1", body={"tunnel_ip": "192.0.2.2"})
    assert (res["tunnel_ip"], res["ovsdb"]) == ("192.0.2.2", "ssl:192.0.2.1:6640")
    for bad, says in (({"ovsdb": "tcp:192.0.2.1:6640"}, "not TLS"), ({"colour": "red"}, "unknown field"),
                      ({}, "nothing to update")):
        with pytest.raises(WeftError, match=says):
            c.request("PATCH", "/v1/hosts/hv1", body=bad)
    (host,) = c.get("/v1/hosts")
    assert host["tunnel_ip"] == "192.0.2.2"
