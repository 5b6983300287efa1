"""The dashboard's static files at /ui: served without the token (they hold no data), with a strict
Content-Security-Policy, only the files shipped; the API behind them still needs the token."""
import http.client
import json
import re
import socket
from pathlib import Path

import pytest

from controller import apihttp

TOKEN = "t" * 24
UI = Path(__file__).resolve().parents[2] / "controller" / "ui"


class Api:
    store = None                 # no tenant tokens: the admin token only

    def dispatch(self, method, path, query, body):
        return {"hosts": {}}

    def wait_timeout(self, query):
        return None


@pytest.fixture
def server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    servers = apihttp.serve(Api(), tcp=sock, token=TOKEN)      # a listening socket handed over
    yield sock.getsockname()[1]
    for s in servers:
        s.shutdown()


def get(port, path, method="GET", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(50):
        try:
            conn.request(method, path, headers=headers or {})
            break
        except ConnectionRefusedError:
            import time
            time.sleep(0.05)
    res = conn.getresponse()
    return res.status, dict(res.getheaders()), res.read()


def test_the_page_and_its_files_are_served_without_the_token(server):
    status, headers, body = get(server, "/ui/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="app.js"' in body
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = get(server, f"/ui/{name}")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert body == (UI / name).read_bytes()
    status, headers, _ = get(server, "/ui")
    assert status == 308 and headers["location"] == "/ui/"


def test_only_the_shipped_files_and_only_reads(server):
    for path in ("/ui/../openapi.yaml", "/ui/%2e%2e/openapi.yaml", "/ui/secret.txt", "/ui/ui.py"):
        status, headers, body = get(server, path)
        assert status == 404 and headers["content-type"] == "application/json", path
        assert "error" in json.loads(body)
    status, _h, body = get(server, "/ui/", method="POST")
    assert status == 405 and "not allowed" in json.loads(body)["error"]


def test_the_api_behind_it_still_needs_the_token(server):
    status, _h, body = get(server, "/v1/status")
    assert status == 401 and "token" in json.loads(body)["error"]
    status, _h, body = get(server, "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200


def test_the_page_uses_no_external_asset_and_writes_no_html():
    text = "".join((UI / n).read_text() for n in ("index.html", "app.js", "style.css"))
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text
    assert "<script>" not in text and "style=" not in (UI / "index.html").read_text()
