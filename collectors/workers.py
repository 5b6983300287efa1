"""More collector processes on the same UDP ports (SO_REUSEPORT), merged into one Aggregator.

`CollectorService(workers=N)` keeps its own receivers (worker 0) and starts N-1 worker
processes, each a CollectorService of its own on the same ports with SO_REUSEPORT: the
kernel hashes each datagram by its source and destination address and port, so every
datagram of one exporter socket lands in the same worker, which keeps that exporter's
templates and sequence numbers (tests check the spread). A worker sends each batch of closed
buckets ({(src, dst, Service): [bytes, packets, first, last]}) to the parent, which merges
it into its Aggregator with `add_batch`, as its own receivers do; `flush()` and `status()`
ask every worker and wait for the answers. Workers are new interpreters (`python -m
collectors.workers FD`, not forks: weftd has threads) talking over a socketpair; they get
the model with every change (pickled) and exit when the parent stops them or goes away.

Default number of workers: the machine's cores minus one (left for weftd), at least 1.
"""
from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection



def collector_gc() -> None:
    """For a process that only collects (`weft collect`, a worker): young collections every
    100,000 net allocations instead of 700. The per-burst tuples and a closed bucket's keys
    die young; with the default thresholds they were promoted and set off full collections
    (measured: 11 in 25 s of 50,000 sFlow samples/s, up to 180 ms each, 1.9 s in all)."""
    gc.set_threshold(100_000, 50, 50)


def default_workers() -> int:
    """The cores this process may run on, minus one for weftd; at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n - 1)


class _Forward:
    """Stands in for a worker's Aggregator: batches go to the parent."""

    def __init__(self, conn, lock, bucket_seconds: float, max_keys: int | None) -> None:
        self.conn = conn
        self.lock = lock
        self.bucket_seconds = bucket_seconds
        self.max_keys = max_keys     # the parent's: columnar buckets are folded to it here

    def add_batch(self, batch: dict, tenant_pairs: dict | None = None, folded: int = 0) -> None:
        if batch:
            with self.lock:
                self.conn.send(("batch", (batch, tenant_pairs, folded)))

    def stats(self) -> dict:
        return {}


def _worker_main(conn) -> None:
    """A worker process: the same sockets (SO_REUSEPORT), batches forwarded to the parent."""
    from .service import CollectorService
    collector_gc()
    config = conn.recv()
    lock = threading.Lock()
    fwd = _Forward(conn, lock, config.pop("bucket_seconds"), config.pop("max_keys", None))
    model = config.pop("model")
    svc = CollectorService(model, aggregator=fwd, reuse_port=True, workers=1, **config)
    try:
        svc.start()
    except OSError as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    with lock:
        conn.send(("ready", None))
    try:
        while True:
            try:
                msg, arg = conn.recv()
            except (EOFError, OSError):
                break
            if msg == "model":
                svc.model_provider = arg
                svc.refresh_model()
            elif msg == "ifindexes":
                svc.set_ifindexes(arg)
            elif msg == "flush":
                svc.flush()
                with lock:
                    conn.send(("flushed", arg))
            elif msg == "status":
                st = svc.status()
                with lock:
                    conn.send(("status", st))
            elif msg == "stop":
                break
    finally:
        svc.stop()
        try:
            with lock:
                conn.send(("stopped", None))
        except (OSError, ValueError):
            pass


class Worker:
    """The parent's end of one worker process: a reader thread merges its batches."""

    def __init__(self, aggregator, config: dict) -> None:
        self.aggregator = aggregator
        mine, theirs = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in (env.get("PYTHONPATH"),) if p])
        self.proc = subprocess.Popen([sys.executable, "-m", "collectors.workers",
                                      str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(config)
        self.send_lock = threading.Lock()
        self.replies: dict[str, list] = {}
        self.cond = threading.Condition()
        self.error: str | None = None
        try:
            kind, arg = self.conn.recv() if self.conn.poll(60) else ("error", "did not start")
        except (EOFError, OSError):
            kind, arg = "error", f"exited with status {self.proc.wait(10)}"
        if kind != "ready":
            self.error = arg
            self._end()
            raise OSError(f"collector worker failed: {arg}")
        self.thread = threading.Thread(target=self._read, name="collect-worker-reader",
                                       daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                kind, arg = self.conn.recv()
            except (EOFError, OSError):
                break
            if kind == "batch":
                self.aggregator.add_batch(*arg)
                continue
            with self.cond:
                self.replies.setdefault(kind, []).append(arg)
                self.cond.notify_all()
            if kind == "stopped":
                break
        with self.cond:
            self.replies.setdefault("stopped", []).append(None)
            self.cond.notify_all()

    def send(self, msg: str, arg=None) -> bool:
        try:
            with self.send_lock:
                self.conn.send((msg, arg))
            return True
        except (OSError, ValueError, BrokenPipeError):
            return False

    def ask(self, msg: str, reply: str, timeout: float = 10.0):
        """Send `msg` and wait for the next `reply` (None when the worker is gone)."""
        with self.cond:
            self.replies.pop(reply, None)
        if not self.send(msg):
            return None
        with self.cond:
            ok = self.cond.wait_for(lambda: self.replies.get(reply) or "stopped" in self.replies,
                                    timeout)
            got = self.replies.get(reply)
            if ok and got:
                return got.pop(0)
        return None

    def stop(self) -> None:
        self.ask("stop", "stopped", timeout=10.0)
        self._end()

    def _end(self) -> None:
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.conn.close()


def merge_status(parts: list[dict]) -> dict:
    """One status() from the parent's and the workers' (counters summed, lists joined)."""
    out = parts[0]
    for st in parts[1:]:
        for k in ("datagrams", "records", "malformed", "flows", "counted", "deduplicated",
                  "rejected"):
            out["totals"][k] = out["totals"].get(k, 0) + st["totals"].get(k, 0)
        for proto, p in st["protocols"].items():
            mine = out["protocols"].setdefault(proto, dict.fromkeys(p, 0))
            for k, v in p.items():
                if isinstance(v, (int, float)):
                    mine[k] = mine.get(k, 0) + v
        out["exporters"] += st["exporters"]
        out["rejected"] += st["rejected"]
        out["errors"] += st["errors"]
        out["model_errors"] += st["model_errors"]
        for kind, s in st["sockets"].items():
            mine = out["sockets"].setdefault(kind, dict(s))
            if mine is not s:
                for k in ("datagrams", "bytes", "errors", "kernel_drops"):
                    if s.get(k) is not None:
                        mine[k] = (mine.get(k) or 0) + s[k]
                mine["last_error"] = mine.get("last_error") or s.get("last_error")
    out["workers"] = len(parts)
    return out


if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1])))
