"""The dashboard's static files (controller/ui/), served by weftd at /ui on every API listener.

The files hold no data and no secret, so they are served without the API token; everything
they show comes from the same JSON API as the CLI, and on TCP every one of those requests needs
the bearer token. The page takes the token from a `#token=...` fragment (never sent to the
server, removed from the address bar at once) or asks for it once, and keeps it in the tab's
sessionStorage (gone when the tab closes); it sends it as `Authorization: Bearer`, so no cookie
exists that another site could make the browser send. A strict Content-Security-Policy allows
only these files (no inline script, no other origin), and the page writes data as text, never
as HTML.
"""
from __future__ import annotations

import os

from starlette.responses import RedirectResponse, Response

DIR = os.path.join(os.path.dirname(__file__), "ui")
TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def response(method: str, path: str) -> Response:
    """The answer to a request under /ui: a file, a redirect to /ui/, or a JSON 404/405."""
    from controller.apihttp import _json_error
    if method not in ("GET", "HEAD"):
        return _json_error(405, f"method {method} not allowed on {path}")
    if path == "/ui":
        return RedirectResponse("/ui/", 308)
    name = path[len("/ui/"):] or "index.html"
    if name not in TYPES:                      # only the files we ship, no path to walk
        return _json_error(404, f"no such file: {path}")
    with open(os.path.join(DIR, name), "rb") as f:
        body = f.read()
    return Response(body if method == "GET" else b"", 200, headers=HEADERS, media_type=TYPES[name])
