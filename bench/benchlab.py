"""Shared by the lab benchmarks: run `weft` against a benchmark lab of its own, and iperf3 between VMs."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")
RUN_DIR = "/run/weft-bench"


class BenchLab:
    def __init__(self, name: str):
        self.env = {**os.environ, "WEFT_LAB": name, "WEFT_RUN_DIR": RUN_DIR}
        self.dir = os.path.join(RUN_DIR, name)

    def weft(self, *args, check=True) -> str:
        proc = subprocess.run([WEFT, *args], env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"weft {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def iperf(self, client: str, server: str, ip: str, seconds: int) -> float:
        """TCP throughput client -> server in Gbit/s (iperf3, one run)."""
        srv = subprocess.Popen([WEFT, "lab", "exec", server, "--", "iperf3", "-s", "-1"], env=self.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.4)
            out = self.weft("lab", "exec", client, "--", "iperf3", "-c", ip, "-t", str(seconds), "-J")
            return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
        finally:
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()           # by pid: the lab going away would not stop it
                srv.wait()

    def exists(self) -> bool:
        """True when this lab (or what is left of an earlier run of it) is on the machine."""
        return os.path.exists(self.dir)

    def state(self) -> dict:
        """The lab's state file (hosts, VMs, services) as written by `weft lab`."""
        with open(os.path.join(self.dir, "state.json")) as f:
            return json.load(f)
