"""The emulated swarm: hypervisors spread over a few worker processes, and the Python API to drive them.

`Swarm(run_dir, hosts, processes)` writes one spec per worker (`lab.swarm_worker`), starts
the workers, and talks to each over its control socket (one persistent connection, one
JSON line per request). Each host's OVSDB endpoint is `unix:<run_dir>/<host>.db`, known
before anything starts, so hosts can be registered with weftd ahead. `stop()` ends the
workers it started, by pid (SIGTERM, then SIGKILL), and removes their sockets.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def nic(host_index: int, nic_index: int, iface_id: str) -> dict:
    """A VM NIC as the swarm plugs it: its tap name, MAC (unique in the swarm) and iface-id."""
    v = host_index * 64 + nic_index + 1
    mac = "fa:16:3e:%02x:%02x:%02x" % (v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF)
    return {"iface_id": iface_id, "name": f"tap{host_index}-{nic_index}", "mac": mac}


class _Control:
    """One worker's control connection."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.lock = threading.Lock()

    def call(self, req: dict):
        with self.lock:
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            line = self.file.readline()
        if not line:
            raise RuntimeError("swarm worker closed its control socket")
        answer = json.loads(line)
        if isinstance(answer, dict) and "error" in answer and len(answer) == 1:
            raise RuntimeError(f"swarm worker: {answer['error']}")
        return answer

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes a thread blocked reading an answer
        except OSError:
            pass
        self.file.close()
        self.sock.close()


class Swarm:
    """Emulated hypervisors `hosts` = {name: [nic, ...]} over `processes` worker processes."""

    def __init__(self, run_dir: str, hosts: dict[str, list[dict]], processes: int = 2,
                 controller: str | None = None, tls: dict[str, dict] | None = None):
        self.run_dir = run_dir
        self.hosts = hosts
        self.tls = tls or {}                     # host -> {"ca", "key", "cert"} for ssl: controllers
        self.processes = max(1, min(processes, len(hosts) or 1))
        self.controller = controller
        names = list(hosts)
        self.worker_of = {name: i % self.processes for i, name in enumerate(names)}
        self.procs: list[subprocess.Popen] = []
        self.controls: list[_Control] = []
        self.log_paths: list[str] = []

    def ovsdb_remote(self, host: str) -> str:
        return f"unix:{os.path.join(self.run_dir, host)}.db"

    # -- life cycle
    def start(self, timeout: float = 120.0) -> "Swarm":
        os.makedirs(self.run_dir, exist_ok=True)
        try:
            for w in range(self.processes):
                spec = {"control": os.path.join(self.run_dir, f"worker{w}.ctl"), "controller": self.controller,
                        "hosts": [{"name": n, "db_socket": self.ovsdb_remote(n)[5:], "nics": self.hosts[n],
                                   "tls": self.tls.get(n)}
                                  for n, i in self.worker_of.items() if i == w]}
                path = os.path.join(self.run_dir, f"worker{w}.json")
                with open(path, "w") as f:
                    json.dump(spec, f)
                log = os.path.join(self.run_dir, f"worker{w}.log")
                self.log_paths.append(log)
                with open(log, "w") as logf:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-m", "lab.swarm_worker", path], stdout=subprocess.PIPE,
                        stderr=logf, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
            deadline = time.monotonic() + timeout
            for w, proc in enumerate(self.procs):
                line = proc.stdout.readline()       # "ready" once every host's socket listens
                if line.strip() != b"ready":
                    raise RuntimeError(f"swarm worker {w} did not start (see {self.log_paths[w]})")
                if time.monotonic() > deadline:
                    raise RuntimeError("swarm workers took too long to start")
                self.controls.append(_Control(os.path.join(self.run_dir, f"worker{w}.ctl")))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for c in self.controls:
            try:
                c.close()
            except OSError:
                pass
        self.controls = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self.procs = []

    def __enter__(self) -> "Swarm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # -- requests
    def _all(self, req: dict) -> list:
        """The same request to every worker, in parallel."""
        out = [None] * len(self.controls)

        def one(i):
            out[i] = self.controls[i].call(req)
        _in_parallel(one, [(i,) for i in range(len(self.controls))])
        return out

    def status(self) -> dict:
        total: dict = {}
        for answer in self._all({"op": "status"}):
            for k, v in answer.items():
                total[k] = total.get(k, 0) + v
        return total

    def plug(self, host: str, nic_spec: dict) -> int:
        return self.controls[self.worker_of[host]].call({"op": "plug", "host": host, "nic": nic_spec})["ofport"]

    def unplug(self, host: str, name: str) -> bool:
        return self.controls[self.worker_of[host]].call({"op": "unplug", "host": host, "name": name})["removed"]

    def bindings(self) -> dict[str, dict[str, int]]:
        out = {}
        for answer in self._all({"op": "bindings"}):
            out.update(answer)
        return out

    def tables(self, hosts=None, entries: bool = False) -> dict:
        if hosts is None:
            out = {}
            for answer in self._all({"op": "tables", "entries": entries}):
                out.update(answer)
            return out
        return self._split_call("tables", list(hosts), entries=entries)

    def _split_call(self, op: str, hosts: list, **extra) -> dict:
        split: dict[int, list] = {}
        for h in hosts:
            split.setdefault(self.worker_of[h], []).append(h)
        out = {}
        for w, names in split.items():
            out.update(self.controls[w].call({"op": op, "hosts": names, **extra}))
        return out

    def expect(self, digests: dict[str, int], timeout: float = 60.0) -> dict[str, float | None]:
        """Wait until each host's table has its digest; {host: monotonic time it got it, or None}."""
        split: dict[int, dict] = {}
        for host, d in digests.items():
            split.setdefault(self.worker_of[host], {})[host] = d
        out = {}

        def one(w, part):
            # a connection of its own: a long wait must not hold up status() and the others
            ctl = _Control(os.path.join(self.run_dir, f"worker{w}.ctl"))
            try:
                out.update(ctl.call({"op": "expect", "digests": part, "timeout": timeout}))
            finally:
                ctl.close()
        _in_parallel(one, list(split.items()))
        return out


def _in_parallel(fn, arg_tuples: list[tuple]) -> None:
    """fn(*args) for each args on a thread of its own; raises the first error once all are done."""
    errors = []

    def run(*args):
        try:
            fn(*args)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=args, daemon=True) for args in arg_tuples]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
