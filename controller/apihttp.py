"""weftd's API over HTTP: a Starlette app served by uvicorn on a unix socket and/or TCP (TLS, bearer token).

Why a library and not http.server: the hand-written server had no body cap, no timeouts, a
thread per connection and a listen backlog of 5, misparsed chunked bodies and answered HTML
to unknown methods. uvicorn (httptools) parses HTTP/1.1 strictly (bad or negative Content-Length,
chunked bodies), holds idle keep-alive connections without a thread each and closes them
after a timeout, caps open connections (503 beyond) and the listen backlog is ours to set;
Starlette gives the request/response plumbing. What is weft's own stays here: every answer
is JSON, bodies are capped at 1 MiB (413) before they are read, bad JSON is a 400, and the
reads run on a bounded worker pool (anyio's, 40 threads); writes, which hold the store's
lock through their commit anyway, run on the event loop itself (fewer thread hand-offs). On TCP every request needs a bearer token: the admin token (constant-time compare) or a tenant token
from the northbound database (looked up by its SHA-256); controller/access.py decides what a
tenant token may do (403 otherwise). The unix socket is an admin's (its file mode guards it).
"""
from __future__ import annotations

import asyncio
import grp
import hmac
import json
import logging
import os
import socket
import threading
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.access import ADMIN, Principal, authorize
from topology.errors import WeftError

LOG = logging.getLogger(__name__)
MAX_BODY = 1 << 20                 # 1 MiB: the largest request weft's API needs is a few KB
BACKLOG = 128
MAX_CONNECTIONS = 2048             # open connections + requests in flight; beyond: 503
KEEPALIVE_S = 15                   # a connection without a complete request is closed after this
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"]
JSON = "application/json"
INLINE_METHODS = frozenset({"POST", "PATCH", "DELETE"})   # run on the event loop (see handle)
READ_ONLY_POSTS = ("/what-if",)    # POSTs that change nothing: worker pool, 200 (their body is a question)
API_GROUP = "weft"


def _json_error(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(json.dumps({"error": message}).encode(), status, headers=headers, media_type=JSON)


async def _body(request: Request) -> dict:
    """The request's JSON object body ({} when empty); WeftError 413/400 when it is not one."""
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > MAX_BODY:     # the parser has checked it is digits
        raise WeftError(f"request body too large: {declared} bytes (at most {MAX_BODY})", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise WeftError(f"request body too large (at most {MAX_BODY} bytes)", 413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:      # bad JSON, too deep, an oversized integer
        raise WeftError(f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise WeftError("request body must be a JSON object")
    return body


def make_app(api, token: str | None = None) -> Starlette:
    """The ASGI app over `api` (controller.api.Api); with `token`, every request must carry
    `Authorization: Bearer TOKEN` with that (admin) token or a tenant token of the store."""
    from controller import ui
    from controller.api import OPENAPI, encode_result
    expected = token.encode() if token else None
    tenant_token = getattr(api.store, "token_principal", None)

    def principal(request: Request) -> Principal | None:
        if expected is None:
            return ADMIN
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        if hmac.compare_digest(value.encode(), expected):
            return ADMIN
        found = tenant_token(value) if tenant_token is not None else None
        return Principal(*found) if found else None

    async def handle(request: Request) -> Response:
        method, path = request.method, request.url.path
        if ui.is_ui(path):                 # the dashboard's static files: no data, no token
            return ui.response(method, path)
        who = principal(request)
        if who is None:
            return _json_error(401, "missing or wrong API token (Authorization: Bearer TOKEN; "
                                    "the CLI reads WEFT_TOKEN)", {"WWW-Authenticate": "Bearer"})
        try:
            body = await _body(request)
            query = authorize(who, method, path, parse_qs(request.url.query), body)
            if path == "/openapi.yaml" and method == "GET":
                with open(OPENAPI, "rb") as f:
                    return Response(f.read(), 200, media_type="application/yaml")
            if path == "/metrics" and method == "GET":
                text = await run_in_threadpool(api.metrics)
                return Response(text, 200, media_type="text/plain; version=0.0.4; charset=utf-8")
            if "wait" in query and method == "GET":
                raise WeftError("wait=hv is for changes (POST, PATCH, DELETE)")
            read_only = method == "POST" and path.endswith(READ_ONLY_POSTS)
            if method in INLINE_METHODS and "wait" not in query and not read_only:
                # a write holds the store's lock for its whole commit anyway, so running it on
                # the event loop serialises nothing more, and it saves two thread hand-offs,
                # each a wait for the GIL while the engine compiles the previous change
                result = _call(api, method, path, query, body)
            else:
                result = await run_in_threadpool(_call, api, method, path, query, body)
            status = 201 if method == "POST" and not read_only else 200
            return Response(encode_result(result), status, media_type=JSON)
        except WeftError as exc:
            return _json_error(exc.status, str(exc))
        except Exception as exc:  # never leave a client without an answer
            LOG.exception("API failure on %s %s", method, path)
            return _json_error(500, f"internal error: {exc}")

    async def not_found(request: Request, exc) -> Response:
        return _json_error(getattr(exc, "status_code", 500), getattr(exc, "detail", "error"))

    return Starlette(routes=[Route("/{path:path}", handle, methods=METHODS)],
                     exception_handlers={404: not_found, 405: not_found, 500: not_found})


def _call(api, method: str, path: str, query: dict, body: dict):
    """One operation, on a worker thread: the write, then `?wait=hv` if asked."""
    wait = api.wait_timeout(query)
    result = api.dispatch(method, path, query, body)
    if wait is not None:
        waited = api.wait_for_hosts(wait)
        if isinstance(result, dict):
            result = {**result, "wait": waited}       # views may be shared: never mutate
    return result


MAX_HEAD = 32 << 10                # request line + headers, bytes


def _protocol_class():
    """uvicorn's httptools protocol (a C parser: a quarter of a request's cost less than h11)
    with three changes: a connection must deliver a complete request head within KEEPALIVE_S of
    opening (or of its last answer), however slowly it trickles bytes in; the head is capped at
    32 KiB; and a request that is not HTTP gets a JSON 400 like every other answer."""
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class JsonHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.head_bytes = 0
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def data_received(self, data: bytes) -> None:
            # unlike uvicorn, bytes alone do not stop the clock: a complete request head does
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self.send_400_response("protocol upgrades are not supported")
            except httptools.HttpParserError as exc:
                self.send_400_response(str(exc.__cause__ or exc) or "not HTTP")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.head_bytes = 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, n: int) -> None:
            self.head_bytes += n
            if self.head_bytes > MAX_HEAD:
                raise ValueError(f"request head over {MAX_HEAD} bytes")

        def on_headers_complete(self) -> None:
            self._unset_keepalive_if_required()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if self.transport.is_closing():
                return
            body = json.dumps({"error": f"bad HTTP request: {msg}"}).encode()
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
            self.transport.close()

    return JsonHttpToolsProtocol


class ApiServer:
    """One listening socket served by uvicorn on a thread of its own."""

    def __init__(self, app, sock: socket.socket, ssl: tuple[str, str] | None = None,
                 keepalive_s: float = KEEPALIVE_S):
        import uvicorn
        kwargs = {"ssl_certfile": ssl[0], "ssl_keyfile": ssl[1]} if ssl else {}
        self.config = uvicorn.Config(app, http=_protocol_class(), lifespan="off", log_level="warning",
                                     access_log=False, server_header=False, backlog=BACKLOG,
                                     limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=keepalive_s,
                                     **kwargs)
        self.server = uvicorn.Server(self.config)
        self.sock = sock
        self.address = sock.getsockname()
        self.thread = threading.Thread(target=self._run, name="api", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> "ApiServer":
        self.thread.start()
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


def unix_listener(path: str, mode: int = 0o660) -> socket.socket:
    """A listening unix socket at `path` (a stale one is replaced; a live one is an error),
    readable and writable by its owner and group only."""
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            raise WeftError(f"another weftd already serves {path}", 409)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    try:                                   # the `weft` group, when the machine has one, may use it
        os.chown(path, -1, grp.getgrnam(API_GROUP).gr_gid)
    except KeyError:
        pass
    sock.listen(BACKLOG)
    return sock


def tcp_listener(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP; without it an answer's headers and body, written apart, wait for
    # the client's delayed ACK (40 ms a request). Set on the listener as well: accepts inherit it.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WeftError(f"cannot listen on {host}:{port} for the API: {exc.strerror or exc}", 500) from None
    sock.listen(BACKLOG)
    return sock


def serve(api, unix_path: str | None = None, tcp: tuple[str, int] | None = None,
          token: str | None = None, tls: tuple[str, str] | None = None,
          keepalive_s: float = KEEPALIVE_S) -> list[ApiServer]:
    """Start the API on a unix socket (its file mode guards it) and/or TCP (with `token`
    required, and TLS when `tls` = (certfile, keyfile)); returns the running servers.
    A listener that cannot be opened raises before anything is served."""
    socks = []
    try:
        if unix_path:
            socks.append((unix_listener(unix_path), None, None))
        if tcp:                            # an address, or a listening socket handed over
            socks.append((tcp if isinstance(tcp, socket.socket) else tcp_listener(tcp), token, tls))
    except BaseException:
        for sock, _t, _s in socks:
            sock.close()
        raise
    return [ApiServer(make_app(api, tok), sock, ssl, keepalive_s).start() for sock, tok, ssl in socks]
