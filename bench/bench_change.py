"""The production change path at seed scale: API create -> store commit -> engine plans, on a real store.

A real northbound ovsdb-server (its own, in a temporary directory) is filled with 5,000 hosts,
1,000 tenants (one network each, all on the same CIDR, each with its default security group
and a `web` group with a TCP rule) and 10,000 ports created one after another through weftd's
real HTTP API on loopback (one keep-alive connection, as a platform's client keeps; over the tenants in turn, or with `--order by-tenant` each tenant's ports in a row), each plugged right after (reported as a southbound binding on its
host, as weftd's host watcher would). The engine runs its real loop; the switches are
emulated by `controller.driver.InstantDriver` (an empty switch that commits every bundle at
once), since what is measured here is the controller: real switches are in
`bench_port_up.py` and the lab.

Printed: mean ms per API create over the first and the last thousand ports, then, on the full
store, the time from an API port create and its plug (the binding reported right after) to
the engine having queued the plans of every affected host (median and p90 over `--samples`
ports), `weft port list -o json` end to end
(the real CLI, a new process) and the API call alone, and this process's RSS (the store's
IDL, the engine with its compiled index, the API). Last line:
`change api_to_plan_ms_median=X api_to_plan_ms_p90=Y port_list_ms=Z rss_mb=M`.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from os_ken.ofproto import ofproto_v1_4  # noqa: E402

from controller import api as api_mod  # noqa: E402
from controller.driver import InstantDriver  # noqa: E402
from controller.engine import Engine  # noqa: E402
from controller.tuning import tune_interpreter  # noqa: E402
from ovsdb.nbserver import ensure_local_server  # noqa: E402
from ovsdb.nbstore import NorthboundStore  # noqa: E402
from ovsdb.southbound import datapath_id  # noqa: E402

WEFT = str(Path(sys.executable).parent / "weft")


class EmulatedDatapath:
    """What the engine and the InstantDriver need of a connection: an id and the protocol."""
    ofproto = ofproto_v1_4

    def __init__(self, host: str):
        self.id = datapath_id(host)


class ApiClient:
    """One keep-alive HTTP/1.1 connection to weftd's API, as a platform's client keeps one."""

    def __init__(self, host: str, port: int):
        import http.client
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def post(self, path: str, body: dict) -> dict:
        import json
        self.conn.request("POST", path, body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        if resp.status >= 400:
            raise SystemExit(f"POST {path}: {resp.status} {data}")
        return data


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--ports", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=200, help="creates timed API -> plans")
    ap.add_argument("--api-port", type=int, default=16680)
    ap.add_argument("--order", choices=("round-robin", "by-tenant"), default="round-robin",
                    help="round-robin: port i goes to tenant i mod tenants, so networks fill from "
                         "one port to ten over the run (the last thousand touch ten times the hosts "
                         "the first do); by-tenant: each tenant's ports one after another, so every "
                         "thousand has the same network sizes and only the store grows")
    args = ap.parse_args()
    tune_interpreter()                 # as weftd runs
    # stopped with SIGTERM or SIGINT: unwind through `finally`, which stops the ovsdb-server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="weft-bench-change-")
    nb_pid = None
    try:
        remote = ensure_local_server(os.path.join(work, "nb"))
        with open(os.path.join(work, "nb", "nb.pid")) as f:
            nb_pid = int(f.read())
        store = NorthboundStore(remote)
        driver = InstantDriver()
        engine = Engine(driver)
        driver.engine = engine
        engine.start()
        store.subscribe(engine.model_changed)
        store.start()
        server = api_mod.serve(api_mod.Api(store, engine), None, ("127.0.0.1", args.api_port))
        base = f"http://127.0.0.1:{args.api_port}"
        client = ApiClient("127.0.0.1", args.api_port)

        t0 = time.monotonic()
        for i in range(args.hosts):
            store.add_host(f"h{i}", f"198.18.{i // 250}.{i % 250 + 1}", f"unix:/nonexistent/h{i}.sock")
        for i in range(args.hosts):
            engine.switch_connected(EmulatedDatapath(f"h{i}"))
        # the connections' own work (greeting, dump, first sync of every host) is done before
        # the creates are timed: it would otherwise run beside the first thousand
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = engine.status(60)
            if len(status) >= args.hosts and all(h["reconciled"] and not h["in_flight"]
                                                 for h in status.values()):
                break
            time.sleep(0.2)
        else:
            raise SystemExit("the emulated hosts were not all reconciled within 300 s")
        t1 = time.monotonic()
        for t in range(args.tenants):
            store.create_tenant(f"t{t}")
            store.create_network(f"t{t}", "net", "10.0.0.0/22")
            store.create_sg(f"t{t}", "web")
            store.add_rule(f"t{t}", "web", "ingress", "tcp", 80, 80, remote_cidr="0.0.0.0/0")
        engine.wait_processed(store.version, 120)
        t2 = time.monotonic()
        print(f"fill: {args.hosts} hosts (connected, emulated) in {t1 - t0:.1f} s; "
              f"{args.tenants} tenants with a network and 2 groups in {t2 - t1:.1f} s", flush=True)

        live: dict[str, dict] = {}
        per_create = []
        for i in range(args.ports):
            tenant = f"t{i % args.tenants}" if args.order == "round-robin" else \
                f"t{i * args.tenants // args.ports}"
            body = {"tenant": tenant, "network": "net", "name": f"p{i}"}
            if i % 2:
                body["security_groups"] = ["default", "web"]
            c0 = time.perf_counter()
            port = client.post("/v1/ports", body)
            per_create.append((time.perf_counter() - c0) * 1000)
            host = f"h{(i * 7919) % args.hosts}"       # a tenant's ports spread over hosts
            bound = live.setdefault(host, {})
            bound[port["id"]] = (len(bound) + 1, f"tap{i}")
            engine.bindings_changed(host, dict(bound))
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1} ports: last thousand {statistics.mean(per_create[-1000:]):.2f} ms "
                      f"per create, RSS {rss_mb():.0f} MB", flush=True)
        engine.wait_processed(store.version, 120)
        if engine.wait_planned(300) is None:     # the last plugs too, before the samples
            raise SystemExit("the engine did not plan the creates' plugs within 300 s")
        first = statistics.mean(per_create[:1000])
        last = statistics.mean(per_create[-1000:])
        print(f"creates through the API ({args.order}): first thousand {first:.2f} ms each, last thousand "
              f"{last:.2f} ms each (x{last / first:.2f}); all {statistics.mean(per_create):.2f} ms")

        # API create, then the port plugged (its binding reported, as weftd's host watcher
        # would) -> every affected host's plan queued, on the full store. A port bound nowhere
        # changes no host's flows (flows.index.bound_somewhere), so the create alone would
        # measure the store only: the plug is what brings the port's flows to its network's
        # hosts, and what a platform waits for
        lat, api_ms, bind_ms, engine_cpu, touched = [], [], [], [], []
        engine_clock = time.pthread_getcpuclockid(engine._thread.ident)
        for s in range(args.samples):
            tenant = f"t{(s * 37) % args.tenants}"
            host = f"h{(s * 7877 + 13) % args.hosts}"
            cpu0 = time.clock_gettime(engine_clock)
            bundles0 = driver.bundles
            c0 = time.monotonic()
            port = client.post("/v1/ports", {"tenant": tenant, "network": "net", "name": f"s{s}"})
            c1 = time.monotonic()
            bound = live.setdefault(host, {})
            bound[port["id"]] = (len(bound) + 1, f"stap{s}")
            engine.bindings_changed(host, dict(bound))
            done = engine.wait_planned(30)
            if done is None:
                raise SystemExit(f"sample {s}: not planned within 30 s")
            api_ms.append((c1 - c0) * 1000)
            bind_ms.append((done - c1) * 1000)
            lat.append((done - c0) * 1000)
            engine_cpu.append((time.clock_gettime(engine_clock) - cpu0) * 1000)
            touched.append(driver.bundles - bundles0)
            time.sleep(0.005)      # one change at a time: the latency of each, not of a queue
        status = engine.status(30)
        print(f"API create + plug -> plans queued: median {statistics.median(lat):.2f} ms, "
              f"p90 {pct(lat, 0.9):.2f} ms, max {max(lat):.2f} ms ({args.samples} ports; "
              f"{statistics.median(touched):.0f} hosts' bundles each, median); "
              f"{sum(h['flows'] for h in status.values())} flows installed on "
              f"{sum(1 for h in status.values() if h['reconciled'])} emulated hosts, "
              f"{driver.bundles} bundles")
        print(f"  where it goes (medians): the API create {statistics.median(api_ms):.2f} ms, "
              f"plug -> plans queued {statistics.median(bind_ms):.2f} ms, engine CPU per port "
              f"{statistics.median(engine_cpu):.2f} ms")

        env = {**os.environ, "WEFT_API": base}
        cli, call = [], []
        for _ in range(5):
            c0 = time.monotonic()
            out = subprocess.run([WEFT, "port", "list", "-o", "json"], env=env, capture_output=True,
                                 check=True).stdout
            cli.append((time.monotonic() - c0) * 1000)
            c0 = time.monotonic()
            with urllib.request.urlopen(base + "/v1/ports", timeout=30) as resp:
                body = resp.read()
            call.append((time.monotonic() - c0) * 1000)
        import json
        n = len(json.loads(out))
        print(f"weft port list -o json ({n} ports): median {statistics.median(cli):.0f} ms end to end "
              f"(a new CLI process); GET /v1/ports alone {statistics.median(call):.0f} ms "
              f"({len(body) / 1e6:.1f} MB)")
        rss = rss_mb()
        print(f"change api_to_plan_ms_median={statistics.median(lat):.2f} "
              f"api_to_plan_ms_p90={pct(lat, 0.9):.2f} port_list_ms={statistics.median(cli):.0f} "
              f"rss_mb={rss:.0f}")
        for srv in server:
            srv.shutdown()
        engine.stop()
        store.stop()
    finally:
        if nb_pid:
            try:
                os.kill(nb_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
