"""Test helpers: run the `weft` CLI as a user would, against a lab of the test's own name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")
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
