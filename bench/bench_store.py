"""Time the northbound store at data-centre scale through the real HTTP API: port creates one
after another as the store grows, `weft port list -o json`, commit -> snapshot, RSS.

The store runs on its own ovsdb-server in a temporary directory. Hosts, tenants (each with its
default group and a `web` group of three rules) and two networks per tenant are written by a
few big transactions straight on the store's IDL (the fill is not what is measured); every
port is then created through `POST /v1/ports` one after another, and the ports are bound to
hosts (one IDL transaction) before the reads are timed. The API runs with an engine stub that
only serves bindings and status: this measures the store and the API, not the engine.

    sudo .venv/bin/python bench/bench_store.py [--ports 10000] [--hosts 5000] [--tenants 1000]
"""
import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from controller.api import Api, serve  # noqa: E402
from controller.client import Client  # noqa: E402
from ovsdb.nbserver import ensure_local_server  # noqa: E402
from ovsdb.nbstore import NorthboundStore  # noqa: E402
from topology import validate  # noqa: E402


class EngineStub:
    """What the API asks of the engine for reads: bindings (the store's) and host status."""

    def __init__(self, store):
        self.store = store

    def bindings(self):
        return self.store.model.bindings

    def status(self):
        return {}


def fill(store, hosts: int, tenants: int) -> None:
    """Hosts, tenants with their groups and rules, two networks each: big IDL transactions."""
    def build_hosts(txn):
        for i in range(hosts):
            row = txn.insert(store.idl.tables["Host"])
            row.name, row.tunnel_ip = f"hv{i:04d}", f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}"
            row.ovsdb = f"tcp:192.0.2.1:{6640 + i}"
        return {}

    def build_tenants(txn):
        vni = validate.VNI_FIRST
        for t in range(tenants):
            name = f"tenant{t:04d}"
            row = txn.insert(store.idl.tables["Tenant"])
            row.name = name
            store._insert_default_group(txn, name)
            group = txn.insert(store.idl.tables["Security_Group"])
            group.tenant, group.name = name, "web"
            for port in (22, 80, 443):
                fields = validate.sg_rule("ingress", "tcp", port, port, remote_cidr="0.0.0.0/0")
                store._insert_rule(txn, name, "web", fields, store._alloc_rule_key())
            for n in range(2):
                net = txn.insert(store.idl.tables["Network"])
                net.tenant, net.name, net.cidr, net.vni = name, f"net{n}", f"10.{n}.0.0/16", vni
                net.gateway, net.dhcp, net.dns = [f"10.{n}.0.1"], True, []
                vni += 1
        return {}
    store._transact(build_hosts)
    store._transact(build_tenants)


def bind_all(store, hosts: int) -> None:
    """Every port bound to a host, round robin (one IDL transaction)."""
    def build(txn):
        ofports: dict[str, int] = {}
        for i, port in enumerate(sorted(store.model.ports)):
            host = f"hv{i % hosts:04d}"
            ofports[host] = ofports.get(host, 0) + 1
            row = txn.insert(store.idl.tables["Binding"])
            row.port, row.host, row.ofport = port, host, ofports[host]
        return {}
    store._transact(build)


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_refreshes(store) -> list[float]:
    """Record how long each refresh that produced a snapshot took (commit -> snapshot)."""
    times: list[float] = []
    refresh = store._refresh

    def wrapper():
        start = time.perf_counter()
        made = refresh()
        if made:
            times.append(time.perf_counter() - start)
        return made
    store._refresh = wrapper
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=3000, help="ports created through the API")
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    directory = tempfile.mkdtemp(prefix="weft-bench-store-")
    store = servers = None
    try:
        store = NorthboundStore(ensure_local_server(directory))
        store.start()
        t0 = time.perf_counter()
        fill(store, args.hosts, args.tenants)
        print(f"fill (IDL transactions): {args.hosts} hosts, {args.tenants} tenants, "
              f"{len(store.model.networks)} networks, {len(store.model.security_groups)} groups, "
              f"{sum(len(g.rules) for g in store.model.security_groups.values())} rules "
              f"in {time.perf_counter() - t0:.1f} s")

        api = Api(store, EngineStub(store))
        servers = serve(api, tcp=("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{servers[0].address[1]}"
        client = Client(endpoint)
        refreshes = timed_refreshes(store)

        creates = []
        for i in range(args.ports):
            tenant = f"tenant{rng.randrange(args.tenants):04d}"
            body = {"tenant": tenant, "network": f"net{rng.randrange(2)}", "name": f"port{i:05d}",
                    "security_groups": rng.choice([[], ["web"], ["web", "default"]])}
            start = time.perf_counter()
            client.post("/v1/ports", body)
            creates.append(time.perf_counter() - start)
        chunk = min(1000, args.ports)
        first, last = statistics.mean(creates[:chunk]), statistics.mean(creates[-chunk:])
        print(f"port create through the API ({args.ports} one after another): "
              f"first {chunk} {first * 1000:.2f} ms mean, last {chunk} {last * 1000:.2f} ms mean "
              f"(x{last / first:.2f}), p99 {sorted(creates)[int(len(creates) * 0.99)] * 1000:.2f} ms")
        tail = refreshes[-chunk:]
        print(f"store change, commit -> new snapshot (incremental): {statistics.mean(tail) * 1000:.3f} ms "
              f"mean, p99 {sorted(tail)[int(len(tail) * 0.99)] * 1000:.3f} ms over the last {len(tail)}")
        with store.lock:
            start = time.perf_counter()
            store.rebuilt()
            full = time.perf_counter() - start
        print(f"full rebuild of the same store (first load, reconnect): {full * 1000:.1f} ms")

        bind_all(store, args.hosts)
        env = {**os.environ, "WEFT_API": endpoint}
        weft = os.path.join(os.path.dirname(sys.executable), "weft")
        cli, raw = [], []
        for _ in range(5):
            start = time.perf_counter()
            out = subprocess.run([weft, "port", "list", "-o", "json"], env=env, capture_output=True,
                                 check=True).stdout
            cli.append(time.perf_counter() - start)
            start = time.perf_counter()
            listed = client.get("/v1/ports")
            raw.append(time.perf_counter() - start)
        assert len(listed) == args.ports and out.count(b'"ofport"') == args.ports
        start = time.perf_counter()
        subprocess.run([weft, "--help"], env=env, capture_output=True, check=True)
        startup = time.perf_counter() - start
        print(f"`weft port list -o json` ({args.ports} ports, all bound): "
              f"{statistics.median(cli) * 1000:.0f} ms median of 5 (GET /v1/ports alone "
              f"{statistics.median(raw) * 1000:.0f} ms; `weft --help` {startup * 1000:.0f} ms)")
        with open(os.path.join(directory, "nb.pid")) as f:
            server_pid = int(f.read())
        print(f"RSS: this process (store + API) {rss_mb():.0f} MB, ovsdb-server {rss_mb(server_pid):.0f} MB")
    finally:
        for srv in servers or ():
            srv.shutdown()
        if store is not None:
            store.stop()
        try:
            with open(os.path.join(directory, "nb.pid")) as f:
                os.kill(int(f.read()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
