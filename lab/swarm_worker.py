"""One swarm process: many emulated hypervisors on one asyncio loop, driven over a unix control socket.

`python -m lab.swarm_worker SPEC.json` reads {"control": socket path, "controller": target or
null, "hosts": [{"name", "db_socket", "nics": [{"iface_id", "name", "mac"}]}]}, starts every
host's OVSDB endpoint, then serves the control socket: one JSON request per line, one JSON
answer per line. Requests: {"op": "status"} | {"op": "plug", "host", "nic"} | {"op": "unplug",
"host", "name"} | {"op": "bindings"} | {"op": "tables", "hosts": [..] or null, "entries": bool}
| {"op": "expect", "digests": {host: digest}, "timeout": s} (answers {host: monotonic time the
table got that digest, or null}) | {"op": "stop"}.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import sys

from lab.swarm_host import EmulatedHost

LOG = logging.getLogger("swarm-worker")


class Worker:
    def __init__(self, spec: dict):
        self.spec = spec
        self.hosts: dict[str, EmulatedHost] = {}
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        for h in self.spec["hosts"]:
            host = EmulatedHost(h["name"], h["db_socket"], h["nics"], self.spec.get("controller"),
                                h.get("tls"))
            self.hosts[h["name"]] = host
            await host.start()
        self.server = await asyncio.start_unix_server(self._control, path=self.spec["control"])

    async def _control(self, reader, writer) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    answer = await self.request(json.loads(line))
                except Exception as exc:        # an answer, never a dead worker
                    LOG.exception("control request failed")
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def request(self, req: dict):
        op = req.get("op")
        if op == "status":
            return {"hosts": len(self.hosts),
                    "of_connected": sum(h.of_connected for h in self.hosts.values()),
                    "ovsdb_sessions": sum(h.sessions for h in self.hosts.values()),
                    "targets": sum(bool(h.targets) for h in self.hosts.values()),
                    "commits": sum(h.switch.commits for h in self.hosts.values()),
                    "flow_mods": sum(h.switch.flow_mods for h in self.hosts.values()),
                    "errors": sum(h.switch.errors for h in self.hosts.values()),
                    "rss_mb": _rss_mb()}
        if op == "plug":
            return {"ofport": self.hosts[req["host"]].plug(req["nic"])}
        if op == "unplug":
            return {"removed": self.hosts[req["host"]].unplug(req["name"])}
        if op == "bindings":
            return {name: h.bindings() for name, h in self.hosts.items()}
        if op == "tables":
            names = req.get("hosts") or list(self.hosts)
            out = {}
            for name in names:
                sw = self.hosts[name].switch
                out[name] = {"digest": sw.digest, "flows": len(sw.t.flows), "changed_at": sw.changed_at,
                             "connected": self.hosts[name].of_connected}
                if req.get("entries"):
                    out[name]["entries"] = sw.flows_as_checked()
            return out
        if op == "expect":
            names = list(req["digests"])
            futs = [self.hosts[n].expect(int(req["digests"][n])) for n in names]
            done, _pending = await asyncio.wait(futs, timeout=req.get("timeout", 60))
            return {n: (f.result() if f in done else None) for n, f in zip(names, futs)}
        if op == "stop":
            self.stopping.set()
            return {}
        raise ValueError(f"unknown op {op!r}")

    async def stop(self) -> None:
        for host in self.hosts.values():
            await host.stop()
        self.server.close()
        try:
            os.unlink(self.spec["control"])
        except FileNotFoundError:
            pass


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _main(spec: dict) -> None:
    worker = Worker(spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    await worker.start()
    print("ready", flush=True)
    await worker.stopping.wait()
    await worker.stop()


def main(argv=None) -> int:
    import warnings
    warnings.simplefilter("ignore")
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4 * len(spec["hosts"]) + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    asyncio.run(_main(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
