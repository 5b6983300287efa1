"""Seed scale against a real weftd: `--swarm N --ports P` runs N emulated hypervisors (lab/swarm*.py);
`--real-hosts N --vms M` a lab of N real Open vSwitch hypervisors with M light VMs (bench/real_scale.py).

A northbound ovsdb-server of its own is filled first (N hosts whose OVSDB remotes are the
swarm's sockets; P/10 tenants, each with one network on the same CIDR, its default group
and a `web` group with a TCP rule; P ports, every other one in both groups, spread over the
hosts as bench_change.py spreads them). The swarm is started with every port's NIC already
plugged on its host (iface-id = the port's id), then a real weftd (its own run directory,
OpenFlow and API on free loopback ports) is started cold: every host's OVSDB session and
OpenFlow connection come at once.

Printed: cold_converge_s, from weftd's start to the moment the last emulated host's table
equals the flows compiled for it (each host reports the time its table reached the expected
digest — no polling); then `--samples` port adds one after another: an API create, the NIC
plugged on an emulated host right after, until every affected host (weft's own
`affected_hosts`, a superset) holds exactly its compiled flows — a bundle committed —
p50/p99; weftd's RSS; and a final check of every host's table against its compiled flows
(flows_checked; mismatching hosts named). Figures are printed, never asserted. Last line:
`swarm hosts=N ports=P cold_converge_s=X port_add_p50_ms=A port_add_p99_ms=B weftd_rss_mb=M flows_checked=F`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import swarm_check  # noqa: E402
from lab.swarm import Swarm, nic  # noqa: E402
from lab.swarm_weftd import Weftd  # noqa: E402
from ovsdb.nbserver import ensure_local_server  # noqa: E402
from ovsdb.nbstore import NorthboundStore  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fill(store, hosts: list[str], sockets: dict, ports: int, tenants: int) -> dict[str, list]:
    """The model in the store; returns {host: [nic, ...]} for the swarm."""
    for i, h in enumerate(hosts):
        store.add_host(h, f"198.18.{i // 250}.{i % 250 + 1}", sockets[h])
    for t in range(tenants):
        store.create_tenant(f"t{t}")
        store.create_network(f"t{t}", "net", "10.0.0.0/22")
        store.create_sg(f"t{t}", "web")
        store.add_rule(f"t{t}", "web", "ingress", "tcp", 80, 80, remote_cidr="0.0.0.0/0")
    nics: dict[str, list] = {h: [] for h in hosts}
    for i in range(ports):
        sgs = ["default", "web"] if i % 2 else None
        port = store.create_port(f"t{i % tenants}", "net", f"p{i}", security_groups=sgs)
        h = (i * 7919) % len(hosts)
        nics[hosts[h]].append(nic(h, len(nics[hosts[h]]), port["id"]))
        if (i + 1) % 2000 == 0:
            log(f"  {i + 1} ports in the store")
    return nics


def wait_model(store, port_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while port_id not in store.model.ports:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the store never showed port {port_id}")
        time.sleep(0.001)
    return store.model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--swarm", type=int, metavar="HOSTS", help="emulated hypervisors")
    ap.add_argument("--real-hosts", type=int, metavar="HOSTS",
                    help="a lab of real Open vSwitch hypervisors instead (bench/real_scale.py)")
    ap.add_argument("--vms", type=int, default=1000, help="with --real-hosts: light VMs")
    ap.add_argument("--pairs", type=int, default=400, help="with --real-hosts: VM pairs pinged")
    ap.add_argument("--ports", type=int, default=None, help="VM ports (default 2 per host)")
    ap.add_argument("--tenants", type=int, default=None, help="default: ports / 10")
    ap.add_argument("--processes", type=int, default=4, help="swarm worker processes")
    ap.add_argument("--samples", type=int, default=200, help="port adds timed")
    ap.add_argument("--converge-timeout", type=float, default=600.0)
    ap.add_argument("--stall", type=float, default=120.0,
                    help="give up on the cold start after this long without progress (s)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs); with --real-hosts, the lab")
    ap.add_argument("--peer", choices=["ovn"],
                    help="also run ovn-northd alone on the same tenants and ports (its full compute "
                         "and one port add, printed before the last line; installs Debian's OVN)")
    args = ap.parse_args()
    if (args.swarm is None) == (args.real_hosts is None):
        ap.error("give either --swarm HOSTS or --real-hosts HOSTS")
    if args.real_hosts is not None:
        from bench import real_scale
        real_scale.run(args)
        return
    n, ports = args.swarm, args.ports if args.ports is not None else 2 * args.swarm
    tenants = args.tenants or max(1, ports // 10)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="weft-bench-scale-")
    nb_pid, swarm, weftd, store = None, None, None, None
    try:
        remote = ensure_local_server(os.path.join(work, "nb"))
        with open(os.path.join(work, "nb", "nb.pid")) as f:
            nb_pid = int(f.read())
        store = NorthboundStore(remote)
        store.start()
        hosts = [f"h{i}" for i in range(n)]
        run = os.path.join(work, "swarm")
        probe = Swarm(run, {h: [] for h in hosts}, args.processes)
        t = time.monotonic()
        nics = fill(store, hosts, {h: probe.ovsdb_remote(h) for h in hosts}, ports, tenants)
        log(f"store: {n} hosts, {tenants} tenants, {ports} ports in {time.monotonic() - t:.1f} s")

        t = time.monotonic()
        swarm = Swarm(run, nics, args.processes).start(timeout=600)
        log(f"swarm: {n} hosts in {swarm.processes} processes (pids {swarm.pids}) up in "
            f"{time.monotonic() - t:.1f} s")
        t = time.monotonic()
        bound = swarm.bindings()
        expected = swarm_check.Expected(swarm_check.with_bindings(store.model, bound))
        digests = expected.digests(hosts)
        log(f"compiled flows of {n} hosts in {time.monotonic() - t:.1f} s "
            f"({sum(len(expected.entries(h)) for h in hosts)} flows)")

        # ---- cold start: weftd with the model in the store, every host at once
        weftd = Weftd(os.path.join(work, "weftd"), remote)
        got: dict = {}
        waiter = threading.Thread(target=lambda: got.update(swarm.expect(digests, args.converge_timeout)),
                                  daemon=True)
        t0 = time.monotonic()
        weftd.start(timeout=120)
        waiter.start()
        progress, stalled_since = None, time.monotonic()
        while waiter.is_alive():
            waiter.join(10)
            if waiter.is_alive():
                st = swarm.status()
                if (st["ovsdb_sessions"], st["of_connected"], st["commits"]) != progress:
                    progress, stalled_since = (st["ovsdb_sessions"], st["of_connected"], st["commits"]), time.monotonic()
                elif time.monotonic() - stalled_since > args.stall:
                    log(f"  no progress for {args.stall:.0f} s: giving up on the cold start")
                    break
                log(f"  +{time.monotonic() - t0:.0f} s: {st['ovsdb_sessions']} OVSDB sessions, "
                    f"{st['of_connected']} OpenFlow connected, {st['commits']} bundles committed, "
                    f"{st['errors']} errors; weftd RSS {weftd.rss_mb():.0f} MB")
        late = [h for h in hosts if got.get(h) is None]
        cold = max(at for at in got.values() if at is not None) - t0 if len(late) < n else float("nan")
        log(f"cold converge: {n - len(late)}/{n} hosts equal their compiled flows, the last "
            f"{cold:.1f} s after weftd started" + (f"; not converged: {late[:10]}" if late else ""))
        if late:
            st = swarm.status()
            log(f"  swarm: {st}")
            with open(os.path.join(weftd.run_dir, "weftd.err")) as f:
                errors = [line.rstrip() for line in f if "Error" in line or "Exception in thread" in line]
            if errors:
                log(f"  weftd's stderr: {' | '.join(errors[-4:])}")

        # ---- port adds, one at a time
        lat, missed = [], 0
        live = {h: dict(b) for h, b in bound.items()}
        base = expected
        for s in range(0 if late else args.samples):     # no port adds on a swarm that never converged
            tenant = f"t{(s * 37) % tenants}"
            hi = (s * 104729 + 13) % n
            c0 = time.monotonic()
            port = weftd.post("/v1/ports", {"tenant": tenant, "network": "net", "name": f"s{s}"})
            spec = {"iface_id": port["id"], "name": f"add{s}",
                    "mac": "fa:16:3f:%02x:%02x:%02x" % (s >> 16 & 0xFF, s >> 8 & 0xFF, s & 0xFF)}
            ofport = swarm.plug(hosts[hi], spec)
            live.setdefault(hosts[hi], {})[port["id"]] = ofport
            model = swarm_check.with_bindings(wait_model(store, port["id"]), live)
            exp = swarm_check.Expected(model, base=base)
            affected = exp.affected(base) | {hosts[hi]}
            exp = swarm_check.Expected(model, base=base, changed=affected)
            at = swarm.expect(exp.digests(affected), timeout=30)
            if any(v is None for v in at.values()):
                missed += 1
            else:
                lat.append((max(at.values()) - c0) * 1000)
            base = exp
            time.sleep(0.005)          # one change at a time: the latency of each, not of a queue
        if lat:
            log(f"port add -> committed on every affected host: p50 {statistics.median(lat):.1f} ms, "
                f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms over {len(lat)} adds"
                + (f"; {missed} never matched their compiled flows" if missed else ""))
        rss = weftd.rss_mb()

        # ---- every host's table against its compiled flows, at the end
        checked, bad = swarm_check.check(swarm, base)
        log(f"final check: {checked} flows on {n} hosts; {len(bad)} hosts differ"
            + (f": {dict(list(bad.items())[:3])}" if bad else ""))
        st = swarm.status()
        log(f"swarm: {st['commits']} bundles committed, {st['flow_mods']} flow-mods, {st['errors']} errors, "
            f"worker RSS {st['rss_mb']:.0f} MB in all")
        p50 = f"{statistics.median(lat):.1f}" if lat else "nan"
        p99 = f"{pct(lat, 0.99):.1f}" if lat else "nan"
        last = (f"swarm hosts={n} ports={ports} cold_converge_s={cold:.1f} port_add_p50_ms={p50} "
                f"port_add_p99_ms={p99} weftd_rss_mb={rss:.0f} flows_checked={checked}")
        if args.peer == "ovn":
            from bench.peers import ovn_northd_scale
            weftd.stop()                    # the peer runs alone on the machine
            weftd = None
            peer = ovn_northd_scale(tenants, max(1, ports // tenants))
            adds = peer["port_add_ms"]
            print(f"peer ovn-northd tenants={tenants} ports={tenants * max(1, ports // tenants)} "
                  f"full_compute_ms={peer['full_compute_ms']} lflows={peer['lflows']} "
                  f"port_add_ms_median={statistics.median(adds) if adds else 'nan'} "
                  f"rss_mb={peer['rss_mb']} (northd only: no hypervisor, no ovn-controller)", flush=True)
        print(last, flush=True)
    finally:
        if weftd is not None:
            weftd.stop()
        if swarm is not None:
            swarm.stop()
        if store is not None:
            store.stop()
        if nb_pid:
            try:
                os.kill(nb_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
