"""`weft ... list -o json` passes weftd's list body through: same text as decoding and rendering it."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.api import EncodedView, encode_result
from controller.client import Client
from controller.output import render

ROWS = [{"ref": f"red/net/p{i}", "ips": [f"10.0.0.{i}"], "host": None, "qos": {"dscp": 10},
         "name": "é\"quoted\"", "ofport": i} for i in range(5)]


@pytest.fixture
def answering():
    """A loopback HTTP server answering GET with the body given to it."""
    bodies = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = bodies[self.path.split("?")[0]]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield bodies, Client(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_encoded_views_are_in_renders_layout():
    body = encode_result([EncodedView(r) for r in ROWS])
    assert body.decode() == render(ROWS, "json")
    assert json.loads(body) == ROWS


def test_listing_is_passed_through_only_in_renders_layout(answering):
    bodies, client = answering
    bodies["/v1/ports"] = (200, encode_result([EncodedView(r) for r in ROWS]))
    listing = client.get_listing("/v1/ports", tenant="red")
    assert isinstance(listing, bytes) and listing.decode() == render(ROWS, "json")
    bodies["/v1/ports"] = (200, json.dumps(ROWS).encode())     # another layout: decoded
    assert client.get_listing("/v1/ports") == ROWS
    bodies["/v1/ports"] = (200, b"[]")
    assert client.get_listing("/v1/ports") == b"[]"


def test_listing_errors_are_raised_as_before(answering):
    from topology.errors import WeftError
    bodies, client = answering
    bodies["/v1/ports"] = (404, json.dumps({"error": "no tenant named 'x'"}).encode())
    with pytest.raises(WeftError, match="no tenant named 'x'"):
        client.get_listing("/v1/ports", tenant="x")
