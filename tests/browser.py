"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no port,
no websocket library, no selenium. Used by the dashboard's integration test.

The browser reaches nothing but the loopback: every other host name resolves to nothing and
every other request would go to a proxy that does not exist; background services are off.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
         "--disable-client-side-phishing-detection", "--no-pings", "--metrics-recording-only",
         "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--proxy-server=127.0.0.1:9",      # loopback bypasses a proxy implicitly
         "--window-size=1400,1600", "--remote-debugging-pipe"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, with the errors it reported (exceptions, console.error, error log entries)."""

    def __init__(self, browser: "Browser", session: str):
        self.browser, self.session = browser, session
        self.errors: list[str] = []

    def call(self, method: str, **params):
        return self.browser.call(method, session=self.session, **params)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r} raised: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        """Poll until `expression` is truthy; returns its value (AssertionError on timeout)."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:        # e.g. the document is still being replaced
                value = str(exc)
            else:
                if value:
                    return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression!r} (last value {value!r}); "
                             f"page errors: {self.errors}")

    def screenshot(self, path: str) -> str:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path


class Browser:
    def __init__(self, user_data_dir: str, binary: str | None = None):
        binary = binary or chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed (scripts/setup.sh installs it)")
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()

        def fds():                     # the protocol's pipes are fd 3 (in) and 4 (out)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, pass_fds=(3, 4),
                                     start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._lock = threading.Lock()
        self._answers: dict[int, queue.Queue] = {}
        self.pages: dict[str, Page] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                for q in list(self._answers.values()):
                    q.put({"error": {"message": "the browser closed its pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._dispatch(json.loads(raw))

    def _dispatch(self, msg: dict) -> None:
        if "id" in msg:
            q = self._answers.get(msg["id"])
            if q is not None:
                q.put(msg)
            return
        page = self.pages.get(msg.get("sessionId"))
        if page is None:
            return
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            page.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            page.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                            for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            e = params["entry"]
            page.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())

    def call(self, method: str, session: str | None = None, timeout: float = 30.0, **params):
        with self._lock:
            self._next += 1
            ident = self._next
            q = self._answers[ident] = queue.Queue()
        msg = {"id": ident, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        try:
            answer = q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the browser did not answer {method} within {timeout} s") from None
        finally:
            self._answers.pop(ident, None)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = self.pages[session] = Page(self, session)
        for domain in ("Runtime", "Log", "Page"):
            page.call(f"{domain}.enable")
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()          # by its pid, the process we started
            self.proc.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
