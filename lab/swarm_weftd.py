"""A real weftd for swarm runs: its own run directory, loopback listeners on free ports, stopped by pid."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, read back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Weftd:
    """`weftd --nb NB` on 127.0.0.1 (OpenFlow and API on free ports), logs in `run_dir`."""

    def __init__(self, run_dir: str, nb: str, extra: list[str] | None = None, nofile: int = 20000):
        self.run_dir = run_dir
        self.nb = nb
        self.of_port = free_port()
        self.api_port = free_port()
        self.extra = extra or []
        self.nofile = nofile
        self.proc: subprocess.Popen | None = None
        self.started_at = None
        import secrets
        self.token = secrets.token_urlsafe(24)       # the TCP API always needs one
        self.headers = {"Authorization": f"Bearer {self.token}"}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.of_port}"

    def start(self, timeout: float = 60.0) -> "Weftd":
        os.makedirs(self.run_dir, exist_ok=True)
        import resource

        def limits():
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, self.nofile)), hard))
        token_file = os.path.join(self.run_dir, "api.token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)
        cmd = [sys.executable, "-m", "controller.daemon", "--run-dir", self.run_dir, "--nb", self.nb,
               "--of-listen", f"127.0.0.1:{self.of_port}", "--api-listen", f"127.0.0.1:{self.api_port}",
               "--api-token-file", token_file, "--api-no-tls",        # loopback only
               "--insecure-openflow",            # the emulated switches speak plain TCP, on loopback
               "--pidfile", os.path.join(self.run_dir, "weftd.pid"),
               "--log-file", os.path.join(self.run_dir, "weftd.log"), *self.extra]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, preexec_fn=limits, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.run_dir, "weftd.err"), "w"),
                                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weftd exited ({self.proc.returncode}); see {self.run_dir}/weftd.err")
            try:
                self.get("/v1/status", timeout=2)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weftd's API did not answer") from None
                time.sleep(0.05)

    def get(self, path: str, timeout: float = 30):
        req = urllib.request.Request(self.api + path, headers=self.headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict, timeout: float = 30):
        req = urllib.request.Request(self.api + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **self.headers})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def delete(self, path: str, timeout: float = 30):
        req = urllib.request.Request(self.api + path, method="DELETE", headers=self.headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
