"""`weft lab swarm`: emulated hypervisors in the foreground, registered with the running weftd, until stopped."""
from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid

from lab.swarm import Swarm, nic
from topology.errors import WeftError


def _lab_certificates(names: list[str]) -> dict[str, dict] | None:
    """With a lab up, a certificate from its CA for each emulated host (so each switch can
    connect to the lab's weftd over TLS as itself); None without one."""
    from lab.pki import Pki, lab_pki_dir
    from lab.state import paths

    pki = Pki(lab_pki_dir(paths().dir))
    if not os.path.exists(pki.ca_key):
        return None
    out = {}
    for name in names:
        key, cert = pki.issue(name)
        out[name] = {"ca": pki.ca_cert, "key": key, "cert": cert}
    return out


def run(args, client) -> int:
    """Start --hosts emulated hosts with --ports-per-host NICs each; print status until SIGINT/SIGTERM."""
    if args.hosts < 1 or args.ports_per_host < 0:
        raise WeftError("--hosts must be at least 1 and --ports-per-host at least 0")
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="weft-swarm-")
    names = [f"{args.prefix}{i + 1}" for i in range(args.hosts)]
    probe = Swarm(run_dir, {n: [] for n in names})
    nics: dict[str, list] = {}
    if args.network and args.network.count("/") != 1:
        raise WeftError(f"--network {args.network!r}: expected TENANT/NET")
    tls = _lab_certificates(names)
    from controller.progress import Progress
    with Progress("swarm", total=args.hosts, unit="hosts registered, their ports created") as progress:
        for i, name in enumerate(names):
            if args.register:      # a unix socket on this machine: no TLS to be had, said explicitly
                client.post("/v1/hosts", {"name": name, "tunnel_ip": f"198.18.{i // 250 + 100}.{i % 250 + 1}",
                                          "ovsdb": probe.ovsdb_remote(name), "insecure": True})
            ids = []
            for k in range(args.ports_per_host):
                if args.network:
                    tenant, net = args.network.split("/")
                    ids.append(client.post("/v1/ports", {"tenant": tenant, "network": net,
                                                         "name": f"{name}-vm{k + 1}"})["id"])
                else:
                    ids.append(str(uuid.uuid4()))
            nics[name] = [nic(i, k, pid) for k, pid in enumerate(ids)]
            progress.step()
    swarm = Swarm(run_dir, nics, args.processes, controller=args.controller, tls=tls)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        swarm.start()
        print(f"swarm: {args.hosts} hosts x {args.ports_per_host} NICs in {swarm.processes} processes "
              f"(pids {' '.join(map(str, swarm.pids))}), sockets in {run_dir}"
              + ("" if args.register else "; not registered with weftd (--no-register)"), flush=True)
        while not stop:
            st = swarm.status()
            print(f"{time.strftime('%H:%M:%S')} {st['ovsdb_sessions']} OVSDB sessions, "
                  f"{st['of_connected']}/{st['hosts']} OpenFlow connected, {st['commits']} bundles, "
                  f"{st['flow_mods']} flow-mods, {st['errors']} errors", flush=True)
            for _ in range(int(args.interval * 10)):
                if stop:
                    break
                time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        swarm.stop()
        if not args.run_dir:
            for f in os.listdir(run_dir):
                os.unlink(os.path.join(run_dir, f))
            os.rmdir(run_dir)
    print("swarm stopped (hosts stay registered: weft host delete NAME)")
    return 0
