"""`bench_scale.py --real-hosts N --vms M`: a lab of N real Open vSwitch hypervisors, M light VMs, real pings.

1. `weft lab up --hosts N` (each hypervisor its own ovsdb-server and ovs-vswitchd; weftd in the lab).
2. M light VMs (`lab/lightvm.py`: a namespace each, its own MAC and IPv4 address, a veth to its
   host's br-int), made before the model and not plugged yet. Tenant t has M/T VMs, VM j of it
   on host (t + j * N/(M/T)) mod N: every host holds VMs of different tenants, and a tenant's
   VMs sit on different hosts (its traffic crosses the VXLAN underlay).
3. The model through the API, one call after another (what a cloud's plugin does): T tenants,
   each with network `net` on the same 10.0.0.0/16 (overlapping CIDRs), its `default` group
   and a group `web` (egress anything, ingress TCP 80 only), and its M/T ports with the VMs'
   MACs and addresses. Half of a tenant's VMs have addresses every tenant uses (10.0.0.10+j),
   half addresses of their own (10.0.(t+1).10+j); the last VM of a tenant is in `web` only.
   The ports are created host by host; as soon as a host's last port exists its NICs are
   plugged (one ovs-vsctl transaction per host, iface-id = the port's id), as a cloud plugs a
   VM's NIC once its port exists, while the model goes on loading.
4. converge_s: from the model loaded (the last API call answered) to the moment every host's
   flow table, dumped from its ovs-vswitchd's management socket (`bench/ofdump.py`, not
   through weftd), holds exactly the flows compiled for it from the northbound model and the ofports Open vSwitch gave the
   NICs: the same (table, priority, cookie) set, the cookie carrying a digest of the flow's
   match and actions. Hosts are dumped round after round from the moment the model is loaded
   until all match, so the figure's resolution is one round (printed); at the end every host
   is checked once more with ovs-ofctl.
5. Real pings on a sample of pairs (`--pairs`, default 400): same-tenant pairs in `default`
   must answer, from the VM with the target's MAC (the sender's neighbour entry is checked);
   a ping to a `web`-only VM must not (ICMP is not admitted); a ping to a VM of another tenant
   — with the other VM's MAC put in the sender's neighbour table, so the echo really goes out
   to it as unicast — must not, on the same host or across hosts.

The lab is WEFT_LAB (default benchscale) under WEFT_RUN_DIR (default /run/weft-bench); it is
taken down at the end, on failure and on SIGTERM (`weft lab down`: the VMs are journalled).
Last line: `scale real_hosts=N vms=M converge_s=X ping_pairs_ok=P/Q`.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ofdump import FlowDumper  # noqa: E402

WEFT = str(Path(sys.executable).parent / "weft")
CIDR = "10.0.0.0/16"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> str:
    with open("/proc/loadavg") as f:
        return "load " + " ".join(f.read().split()[:3])


# ---- the layout ----------------------------------------------------------------------------------

def layout(hosts: int, vms: int, tenants: int) -> list[dict]:
    """The VMs: name, tenant, index in the tenant, host, MAC, address, groups."""
    per = max(1, vms // tenants)
    if tenants > 254 or per > 200:
        raise SystemExit("--tenants must be at most 254 and --vms/--tenants at most 200")
    stride = max(1, hosts // per)
    out = []
    for t in range(tenants):
        for j in range(per):
            shared = j < per // 2             # an address every tenant uses
            out.append({"name": f"t{t}v{j}", "tenant": f"t{t}", "t": t, "j": j,
                        "host": f"hv{(t + j * stride) % hosts + 1}",
                        "mac": f"fa:16:3e:{t >> 8:02x}:{t & 0xFF:02x}:{j:02x}",
                        "ip": f"10.0.0.{10 + j}/16" if shared else f"10.0.{t + 1}.{10 + j}/16",
                        "groups": ["web"] if j == per - 1 and per > 1 else ["default"]})
    return out


def load_model(client, vms: list[dict], tenants: int, host_ready=None) -> dict[str, str]:
    """Tenants, networks, groups and ports through the API, the ports host by host; returns
    {VM name: port id}. `host_ready(host, {VM name: port id})` is called as soon as the last
    port of a host's VMs exists (a cloud plugs a VM's NIC once its port exists)."""
    for t in range(tenants):
        tenant = f"t{t}"
        client.post("/v1/tenants", {"name": tenant})
        client.post("/v1/networks", {"tenant": tenant, "name": "net", "cidr": CIDR, "dhcp": False})
        client.post("/v1/security-groups", {"tenant": tenant, "name": "web"})
        client.post(f"/v1/security-groups/{tenant}/web/rules",
                    {"direction": "egress", "proto": "any", "remote_cidr": "0.0.0.0/0"})
        client.post(f"/v1/security-groups/{tenant}/web/rules",
                    {"direction": "ingress", "proto": "tcp", "port_min": 80, "port_max": 80,
                     "remote_cidr": "0.0.0.0/0"})
    ids: dict[str, str] = {}
    by_host: dict[str, list[dict]] = {}
    for vm in vms:
        by_host.setdefault(vm["host"], []).append(vm)
    for host in sorted(by_host, key=lambda h: int(h[2:])):
        for vm in by_host[host]:
            port = client.post("/v1/ports", {"tenant": vm["tenant"], "network": "net", "name": vm["name"],
                                             "ip": vm["ip"].split("/")[0], "mac": vm["mac"],
                                             "security_groups": vm["groups"]})
            ids[vm["name"]] = port["id"]
        if host_ready is not None:
            host_ready(host, {vm["name"]: ids[vm["name"]] for vm in by_host[host]})
    return ids


# ---- flows: Open vSwitch's tables against the compiled ones ----------------------------------------

FIELD = {k: re.compile(rf"\b{k}=(0x[0-9a-f]+|\d+)") for k in ("cookie", "table", "priority")}
DEFAULT = {"cookie": 0, "table": 0, "priority": 32768}     # what ovs-ofctl leaves out


def dump_keys(host_dir: str) -> set[tuple[int, int, int]]:
    """(table, priority, cookie) of every flow in br-int, from ovs-vswitchd's management socket."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                          f"unix:{os.path.join(host_dir, 'br-int.mgmt')}"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    keys = set()
    for line in out.stdout.splitlines():
        if "actions=" not in line:
            continue
        got = {}
        for k, rx in FIELD.items():
            m = rx.search(line.split("actions=")[0])
            got[k] = int(m.group(1), 0) if m else DEFAULT[k]
        keys.add((got["table"], got["priority"], got["cookie"]))
    return keys


def expected_keys(model, bound: dict[str, dict[str, int]]) -> dict[str, set]:
    from flows import compiler
    from lab import swarm_check
    index = compiler.CompilerIndex(swarm_check.with_bindings(model, bound))
    return {h: {f.key for f in compiler.compile_host(index, h)} for h in model.hosts}


class Dumper(threading.Thread):
    """Dumps hosts round after round from the moment the model is loaded, keeping for each host
    every distinct table it saw and when (the dump's end); once told the expected tables
    (`expect`), it dumps only hosts not yet matching and stops when all match (or at `stop`).
    A host converged when it first showed the table it holds at the end: `converged_at`."""

    def __init__(self, host_dirs: dict[str, str], workers: int = 8):
        super().__init__(name="dumper", daemon=True)
        self.host_dirs = host_dirs
        self.workers = workers
        self.conns = {h: FlowDumper(os.path.join(d, "br-int.mgmt")) for h, d in host_dirs.items()}
        self.history: dict[str, list[tuple[float, set]]] = {h: [] for h in host_dirs}
        self.want: dict[str, set] | None = None
        self.rounds: list[float] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def expect(self, want: dict[str, set]) -> None:
        self.want = want

    def matches(self, host: str) -> bool:
        hist = self.history[host]
        return self.want is not None and bool(hist) and hist[-1][1] == self.want[host]

    def converged_at(self, host: str) -> float | None:
        return self.history[host][-1][0] if self.matches(host) else None

    def dump_round(self, hosts, pool) -> None:
        r0 = time.monotonic()
        for host, keys, at in pool.map(lambda h: (h, self.conns[h].keys(), time.monotonic()), hosts):
            hist = self.history[host]
            if not hist or hist[-1][1] != keys:
                hist.append((at, keys))
        self.rounds.append(time.monotonic() - r0)

    def run(self) -> None:
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
                while not self.halt.is_set():
                    todo = [h for h in self.host_dirs if not self.matches(h)]
                    if self.want is not None and not todo:
                        return
                    self.dump_round(todo, pool)
        except BaseException as exc:        # reported by the caller
            self.error = exc
        finally:
            for conn in self.conns.values():
                conn.close()

    def final_check(self) -> dict[str, tuple[int, int]]:
        """Every host dumped once more, by another reader (ovs-ofctl, its text parsed):
        {host: (missing, extra)} of those not matching now."""
        bad = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            for host, keys in pool.map(lambda h: (h, dump_keys(self.host_dirs[h])), self.host_dirs):
                if keys != self.want[host]:
                    bad[host] = (len(self.want[host] - keys), len(keys - self.want[host]))
        return bad


# ---- pings ---------------------------------------------------------------------------------------

def pairs(vms: list[dict], count: int) -> list[tuple[str, dict, dict]]:
    """(kind, source, target): half `allowed` (same tenant, both in `default`), a quarter
    `sg-denied` (to the tenant's `web`-only VM), a quarter `cross-tenant` (to a VM of another
    tenant, with an address of its own: half on the source's host, half on another host)."""
    by_tenant: dict[str, list[dict]] = {}
    by_host: dict[str, list[dict]] = {}
    for vm in vms:
        by_tenant.setdefault(vm["tenant"], []).append(vm)
        by_host.setdefault(vm["host"], []).append(vm)
    tenants = sorted(by_tenant, key=lambda t: int(t[1:]))
    members = {t: [v for v in by_tenant[t] if v["groups"] == ["default"]] or by_tenant[t] for t in tenants}
    web = {t: [v for v in by_tenant[t] if v["groups"] == ["web"]] for t in tenants}
    want = {"allowed": count - 2 * (count // 4), "sg-denied": count // 4, "cross-tenant": count // 4}
    out: list[tuple[str, dict, dict]] = []

    def own_address(v: dict) -> bool:
        return not v["ip"].startswith("10.0.0.")

    for k in range(4 * count):
        if not any(want.values()):
            break
        for idx, t in enumerate(tenants):
            mem = members[t]
            a = mem[(k + idx) % len(mem)]
            b = mem[(k + idx + 1 + k // len(mem)) % len(mem)]
            if want["allowed"] and a is not b:
                out.append(("allowed", a, b))
                want["allowed"] -= 1
            if want["sg-denied"] and web[t] and a not in web[t]:
                out.append(("sg-denied", a, web[t][k % len(web[t])]))
                want["sg-denied"] -= 1
            if want["cross-tenant"]:
                if (idx + k) % 2 == 0:
                    others = [v for v in by_host[a["host"]] if v["tenant"] != t]
                else:
                    other = tenants[(idx + 1 + k) % len(tenants)]
                    others = [v for v in by_tenant[other] if v["host"] != a["host"] and other != t]
                others = ([v for v in others if own_address(v) and v["groups"] == ["default"]]
                          or [v for v in others if own_address(v)] or others)
                if others:
                    out.append(("cross-tenant", a, others[(k + idx) % len(others)]))
                    want["cross-tenant"] -= 1
    return out


def ping(ns: str, kind: str, target: dict, deadline: int) -> tuple[bool, str]:
    """(answered, the sender's neighbour entry) of one ping from namespace `ns`; an allowed
    pair counts as answered only when the neighbour entry holds the target's MAC."""
    ip = target["ip"].split("/")[0]
    script = ""
    if kind == "cross-tenant":      # the echo goes to the other tenant's MAC, as unicast
        script += f"ip neigh replace {ip} lladdr {target['mac']} dev eth0 nud permanent; "
    script += (f"ping -n -q -c 1 -i 0.2 -w {deadline} {ip} >/dev/null; rc=$?; "
               f"ip neigh show {ip} dev eth0; exit $rc")
    proc = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script],
                          capture_output=True, text=True, timeout=deadline + 30)
    neigh = proc.stdout.strip()
    if kind != "allowed":               # any answer at all is a failure of isolation
        return proc.returncode == 0, neigh
    return proc.returncode == 0 and target["mac"] in neigh, neigh


def ping_pairs(sample, ns_of: dict[str, str], workers: int = 16) -> tuple[int, dict, list]:
    """Ping every pair (allowed: deadline 10 s; others: 3 s); (pairs that behaved, per kind, failures)."""
    def one(item):
        kind, a, b = item
        answered, neigh = ping(ns_of[a["name"]], kind, b, 10 if kind == "allowed" else 3)
        ok = answered if kind == "allowed" else not answered
        return kind, ok, f"{kind} {a['name']}({a['host']}) -> {b['name']}({b['host']}) {b['ip']}: " \
                         f"{'answered' if answered else 'no answer'} [{neigh}]"
    per: dict[str, list[int]] = {}
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for kind, ok, detail in pool.map(one, sample):
            per.setdefault(kind, [0, 0])
            per[kind][1] += 1
            per[kind][0] += ok
            if not ok:
                bad.append(detail)
    return sum(v[0] for v in per.values()), per, bad


# ---- the run -------------------------------------------------------------------------------------

def run(args) -> None:
    os.environ.setdefault("WEFT_LAB", "benchscale")
    os.environ.setdefault("WEFT_RUN_DIR", "/run/weft-bench")
    from controller.client import Client
    from lab import lightvm
    from lab.datacentre import load_up_state
    from ovsdb.nbstore import NorthboundStore

    n, m = args.real_hosts, args.vms
    tenants = args.tenants or max(1, m // 10)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))       # unwind through the lab down below
    subprocess.run([WEFT, "lab", "down"], capture_output=True)
    store = None
    try:
        log(f"weft lab up --hosts {n} ({load()})")
        t = time.monotonic()
        up = subprocess.run([WEFT, "lab", "up", "--hosts", str(n)], capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"weft lab up --hosts {n} failed: {up.stderr.strip()}")
        log(f"lab up: {n} hosts in {time.monotonic() - t:.1f} s ({load()})")
        p, state = load_up_state()
        vms = layout(n, m, tenants)
        t = time.monotonic()
        lightvm.create([{k: vm[k] for k in ("name", "host", "mac", "ip")} for vm in vms])
        log(f"{len(vms)} light VMs (namespaces, veths, addresses) in {time.monotonic() - t:.1f} s ({load()})")

        client = Client("unix:" + state.services["weftd"]["api"], timeout=60)
        log(f"loading the model through the API: {tenants} tenants, {len(vms)} ports ({load()})")
        t = time.monotonic()
        plugger = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        plugs = []
        dumper = Dumper({h: info["dir"] for h, info in state.hosts.items()})
        try:
            ids = load_model(client, vms, tenants,
                             lambda host, nics: plugs.append(plugger.submit(lightvm.plug, nics)))
            t_loaded = time.monotonic()
            dumper.start()              # from now on every host's table is watched
            load_s = t_loaded - t
            log(f"model loaded in {load_s:.1f} s ({(load_s * 1000) / (5 * tenants + len(vms)):.1f} ms "
                f"per call), each host's NICs plugged as soon as its ports existed")
            bound = {}
            for fut in plugs:
                bound.update(fut.result())
        finally:
            plugger.shutdown()
        plug_s = time.monotonic() - t_loaded
        log(f"NICs plugged on {len(bound)} hosts, the last {plug_s:.1f} s after the model was loaded ({load()})")

        try:
            store = NorthboundStore(f"unix:{os.path.join(p.dir, 'ctl', 'nb', 'nb.sock')}")
            store.start()
            deadline = time.monotonic() + 60
            while not set(ids.values()) <= set(store.model.ports):
                if time.monotonic() > deadline:
                    raise SystemExit("the northbound store never showed every port")
                time.sleep(0.05)
            t = time.monotonic()
            dumper.expect(expected_keys(store.model, bound))
            log(f"compiled every host's flows from the northbound model and Open vSwitch's ofports "
                f"in {time.monotonic() - t:.1f} s (while the hosts were being dumped)")
            dumper.join(max(0.0, args.converge_timeout - (time.monotonic() - t_loaded)))
        finally:
            dumper.halt.set()
            dumper.join()
        if dumper.error is not None:
            raise dumper.error
        want = dumper.want
        at = {h: dumper.converged_at(h) for h in want}
        late = sorted(h for h, v in at.items() if v is None)
        converge_s = max(at.values()) - t_loaded if not late else float("nan")
        bad = dumper.final_check()
        log(f"flows: {len(want) - len(late)}/{len(want)} hosts hold exactly their compiled flows "
            f"({sum(len(k) for k in want.values())} flows in all); the last {converge_s:.2f} s after the "
            f"model was loaded; {len(dumper.rounds)} dump rounds (the hosts not yet matching, 8 at a "
            f"time, over OpenFlow on their management sockets; the longest {max(dumper.rounds, default=0):.2f} s: the figure's resolution) ({load()})"
            + (f"; never matched: {late[:5]}" if late else "")
            + (f"; final check: {len(bad)} hosts differ (missing, extra): {dict(list(bad.items())[:5])}"
               if bad else "; final check: every host still matches"))
        pid = int(open(state.services["weftd"]["pidfile"]).read())
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
        log(f"weftd RSS {rss:.0f} MB")

        sample = pairs(vms, args.pairs)
        t = time.monotonic()
        ok, per, bad = ping_pairs(sample, {vm["name"]: p.ns(f"vm-{vm['name']}") for vm in vms})
        log(f"pings: {ok}/{len(sample)} pairs as expected in {time.monotonic() - t:.1f} s ({load()}): "
            + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in per.items()))
        for detail in bad[:10]:
            log(f"  unexpected: {detail}")
        print(f"scale real_hosts={n} vms={len(vms)} converge_s={converge_s:.2f} "
              f"ping_pairs_ok={ok}/{len(sample)}", flush=True)
    finally:
        if store is not None:
            store.stop()
        if not args.keep:
            down = subprocess.run([WEFT, "lab", "down"], capture_output=True, text=True)
            if down.returncode != 0:
                sys.stderr.write(f"weft lab down failed: {down.stderr.strip()}\n")
