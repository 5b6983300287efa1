"""A small client for weftd's API over a unix socket or TCP, used by the `weft` CLI and the lab."""
from __future__ import annotations

import http.client
import json
import os
import socket
from urllib.parse import quote, urlencode

from topology.errors import WeftError

DEFAULT_SOCKET = "unix:/run/weftd/weftd.sock"      # weftd's default --run-dir


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def default_endpoint() -> str:
    """WEFT_API if set; else the running lab's controller socket(s) (every replica's, with
    `lab up --ha`); else weftd's default socket."""
    if os.environ.get("WEFT_API"):
        return os.environ["WEFT_API"]
    try:
        from lab.state import LabState, paths
        p = paths()
        state = LabState.load(p)
        if state is not None and "weftd" in state.services:
            return ",".join("unix:" + svc["api"] for name, svc in sorted(state.services.items())
                            if name.startswith("weftd") and svc.get("api"))
    except WeftError:
        pass
    return DEFAULT_SOCKET


class Client:
    def __init__(self, endpoint: str | None = None, timeout: float = 30.0,
                 wait_timeout: float | None = None):
        """wait_timeout: every change waits (up to that long) until the hypervisors it affects
        have committed it; a change that is not applied in time is an error saying so.

        endpoint may list several replicas, comma-separated: a request goes to the first that
        accepts the connection (every replica serves the API; a request is never sent twice)."""
        self.endpoint = endpoint or default_endpoint()
        self.endpoints = [e for e in self.endpoint.split(",") if e]
        self.wait_timeout = wait_timeout
        self.timeout = timeout if wait_timeout is None else max(timeout, wait_timeout + 10)

    def _connection(self, endpoint: str):
        if endpoint.startswith("unix:"):
            return _UnixConnection(endpoint[5:], self.timeout)
        if endpoint.startswith("https://"):
            import ssl
            ctx = ssl.create_default_context(cafile=os.environ.get("WEFT_CA") or None)
            hostport = endpoint[8:].rstrip("/")
            return http.client.HTTPSConnection(hostport, timeout=self.timeout, context=ctx)
        if endpoint.startswith("http://"):
            hostport = endpoint[7:].rstrip("/")
            return http.client.HTTPConnection(hostport, timeout=self.timeout)
        raise WeftError(f"invalid API endpoint {endpoint!r}: use unix:PATH, https://HOST:PORT "
                        f"or http://HOST:PORT")

    def _connect(self):
        """A connection to the first endpoint that accepts one (a TLS failure is not skipped)."""
        import ssl
        error = None
        for endpoint in self.endpoints or [self.endpoint]:
            conn = self._connection(endpoint)
            try:
                conn.connect()
                return conn
            except ssl.SSLError:
                conn.close()
                raise
            except OSError as exc:
                conn.close()
                error = exc
        raise WeftError(f"cannot reach weftd at {self.endpoint} ({error.__class__.__name__}): "
                        f"is it running? (`weft lab up` starts one; or set WEFT_API)", 503)

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
                raw: bool = False):
        """The decoded answer; with `raw`, (status, body bytes) of a successful answer instead
        (errors are raised the same way)."""
        if self.wait_timeout is not None and method != "GET":
            query = {**(query or {}), "wait": "hv", "timeout": self.wait_timeout}
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = self._connect()
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            if os.environ.get("WEFT_TOKEN") and not isinstance(conn, _UnixConnection):
                headers["Authorization"] = "Bearer " + os.environ["WEFT_TOKEN"]
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout, OSError) as exc:
            raise WeftError(f"cannot reach weftd at {self.endpoint} ({exc.__class__.__name__}): "
                            f"is it running? (`weft lab up` starts one; or set WEFT_API)", 503) from None
        finally:
            conn.close()
        if raw and resp.status < 400:
            return data
        try:
            result = json.loads(data) if data else None
        except json.JSONDecodeError:
            raise WeftError(f"weftd answered {resp.status} with a body that is not JSON", 502) from None
        if resp.status >= 400:
            message = result.get("error") if isinstance(result, dict) else str(result)
            raise WeftError(message or f"HTTP {resp.status}", resp.status)
        waited = result.get("wait") if isinstance(result, dict) else None
        if waited and waited.get("hosts_pending"):
            raise WeftError(f"the change is committed, but not yet applied on "
                            f"{', '.join(waited['hosts_pending'])} after {self.wait_timeout:g} s "
                            f"(see `weft host list`)", 504)
        return result

    def get(self, path: str, **query):
        return self.request("GET", path, query=query or None)

    def get_listing(self, path: str, **query) -> bytes | list:
        """A list answer: its body as is when it is already in `-o json`'s layout (one object a
        line, as weftd encodes cached views: 10,000 ports are not decoded and encoded again),
        else the decoded list."""
        data = self.request("GET", path, query=query or None, raw=True)
        if data == b"[]" or (data.startswith(b"[\n  {") and data.endswith(b"}\n]")):
            return data
        return json.loads(data) if data else []

    def post(self, path: str, body: dict):
        return self.request("POST", path, body=body)

    def delete(self, path: str, **query):
        return self.request("DELETE", path, query=query or None)


def seg(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)
