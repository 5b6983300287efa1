"""Test helpers: run the `weft` CLI as a user would, against a lab of the test's own name."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")
VMPROBE = str(Path(__file__).resolve().parent / "vmprobe.py")     # run inside lab VMs
API_TOKEN = "t0ken-for-the-tests-0123456789"   # the admin token of conftest's `served` API
API_KEEPALIVE_S = 3          # `served` closes incomplete or idle connections after this


class Lab:
    """A handle on one named lab (WEFT_LAB) with its own run directory."""

    def __init__(self, name: str, run_dir: str = "/run/weft-test"):
        self.name = name
        self.env = {**os.environ, "WEFT_LAB": name, "WEFT_RUN_DIR": run_dir}
        self.dir = os.path.join(run_dir, name)

    def weft(self, *args: str, check: bool = True, timeout: float = 120, env: dict | None = None
             ) -> subprocess.CompletedProcess:
        proc = subprocess.run([WEFT, *args], capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"weft {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str):
        return json.loads(self.weft(*args, "-o", "json").stdout)

    weft_path = WEFT

    def json_api(self, path: str):
        from controller.client import Client
        return Client(f"unix:{self.dir}/weftd.sock").get(path)

    def exec(self, vm: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.weft("lab", "exec", vm, "--", *argv, check=False, timeout=timeout)

    def namespaces(self) -> list[str]:
        names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        return sorted(n for n in names if n.startswith(self.name + "-"))

    def processes(self) -> list[int]:
        """Live (non-zombie) processes whose command line or environment names this lab's run dir."""
        marker = (self.dir.rstrip("/") + "/").encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().split(")")[-1].split()[0] == "Z":
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if marker in cmd or marker in env:
                found.append(int(entry))
        return found

    def down(self) -> None:
        self.weft("lab", "down", check=False)


@contextlib.contextmanager
def iperf_server(lab: Lab, vm: str):
    """A one-shot `iperf3 -s -1` in lab VM `vm`, listening on 5201 before this yields; stopped
    by pid however the block ends."""
    server = subprocess.Popen([lab.weft_path, "lab", "exec", vm, "--", "iperf3", "-s", "-1"],
                              env=lab.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while ":5201" not in subprocess.run(["ip", "netns", "exec", f"{lab.name}-vm-{vm}", "ss", "-Hltn"],
                                            capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, f"iperf3 server in {vm} did not start"
            time.sleep(0.05)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def probe(lab: Lab, src: str, targets, timeout: float = 90) -> list[bool]:
    """From lab VM `src`, try each (ip, proto, port) target (tests/vmprobe.py): connected or not."""
    r = lab.exec(src, sys.executable, VMPROBE, "probe", json.dumps(targets), timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
