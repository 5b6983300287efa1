"""Port-up latency: from plugging a VM's NIC into br-int on one host to the first ping answered across hosts.

The port already exists in weft. A VM on hv1 pings the VM on hv2 every 2 ms; the NIC of the hv2
VM is unplugged, then plugged again (ovs-vsctl add-port with its iface-id, as libvirt does); the
latency is the timestamp of the first echo reply after T0 minus T0. Median of N runs (default 10).

Whatever request that first reply answers counts, as in the peers' scripts. Unanswered, ping
sends every ~10 ms (iputils waits MININTERVAL while requests are in flight), so a system whose
path opens between two requests is timed at the next one. weftd holds what the NIC's host
drops for it while it is away (each sender's latest request) and sends it back behind the
NIC's port-up bundle (controller/replay.py): then the first reply answers a request sent
before the path opened, even before T0. The bench prints, per round, when the request of each
weft run's first reply was sent (ping's RTT gives it) and in how many runs that was before T0.

The method is the one of the peer scripts in /work/shared/bench (floor_port_up.sh,
ovn_port_up.sh), step for step, so the figures compare:
  - del-port, 0.5 s, `ip netns exec VM ping -D -n -i 0.002 -W 0.5` started, 0.3 s, plug, 0.7 s,
    in one bash process as the peers' loop runs it (`CYCLE`: ping's 10 ms grid while unanswered
    makes the figure depend on how t0 falls on it, so the processes must be the same);
  - the plug is the peers' own shell line: `t0=$(date +%s.%N); ip netns exec HV ovs-vsctl
    --db=unix:... add-port br-int TAP -- set interface TAP external_ids:...` (ovs-vsctl waits for
    ovs-vswitchd, no --no-wait, in all three), so T0 is taken before the `ip netns exec` process
    starts and its start-up and ovs-vsctl's are counted the same way;
  - as in the peers' scripts, `kill $pp` stops the subshell running the `ns` function, not its
    `ping`: each cycle's pinger goes on pinging (answered, once the NIC is back) until the end of
    the round, so by the tenth plug nine earlier ones still run, in all three systems alike. The
    peers' runner stops their scripts' sessions; weft's lab stops what runs in its namespaces
    when it goes down (before 1 Dec 2026 it did not, and they ran on through later benchmarks);
  - the pinger is `ping` itself in the VM's namespace (before: through the `weft lab exec`
    Python wrapper, which under load was not always running 0.3 s later), and ovs-vsctl runs
    inside the hypervisor's namespace (before: outside it, saving `ip netns exec`'s start-up).
  - weft's lab has the peer's layout: each hypervisor has br-phy (the underlay) and br-int and
    no provider bridge (`weft lab up --no-provider`; `--provider` adds br-ex and its patch to
    br-int, as the demo lab has: ovs-vswitchd's reconfiguration at each plug then walks a third
    bridge, which cost ~1 ms more of its CPU per unplug/plug here);
  - weft's ports are configured as the OVN peer's logical ports are (addresses; no port
    security, no ACLs), so the two do the same work per packet; `--security` also measures
    them with weft's defaults (port security and the default group's stateful ACLs).
A run without a reply is reported and left out of the median.

`--peer ovn` runs the no-controller floor (VXLAN, NORMAL bridges), OVN 23.03 (always Geneve)
and weft (`--tunnel`) from this one process, alternating them over `--rounds` (RUNS each per
round), prints every run and every median, and ends with
`port-up weft_ms=X ovn_ms=Y floor_ms=F ratio=R overhead_ratio=O` (R = X/Y, O = (X-F)/(Y-F)).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import BenchLab  # noqa: E402

PING = ["ping", "-D", "-n", "-i", "0.002", "-W", "0.5"]
PLUG = ('t0=$(date +%s.%N); ip netns exec "$1" ovs-vsctl --db=unix:"$2" $VSCTL_OPTS add-port br-int "$3" '
        '-- set interface "$3" "${@:4}" || exit 1; t1=$(date +%s.%N); echo "$t0 $t1"')
PLUG_BARE = ('t0=$(date +%s.%N); ip netns exec "$1" ovs-vsctl --db=unix:"$2" $VSCTL_OPTS add-port br-int "$3" '
             '|| exit 1; t1=$(date +%s.%N); echo "$t0 $t1"')     # the floor's plug: no external_ids
REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from", re.M)
RTT_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from.* time=([\d.]+) ms", re.M)


def stop(proc: subprocess.Popen) -> str:
    """Stop one process we started, by its pid; its stdout."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# One unplug/plug cycle as the peer scripts' loop body runs it, in one bash process: del-port,
# sleep 0.5, ping in the background, sleep 0.3, t0, add-port, sleep 0.7, stop the pinger. While
# unanswered, ping sends only every 10 ms (iputils waits MIN_INTERVAL_MS for replies in flight),
# so the first reply is the first request after the NIC is ready, on a 10 ms grid whose phase
# against t0 comes from how the pinger, the sleeps and t0's `date` are started: the same
# processes in the same order as the peers, or the figures compare grid phases (measured: a
# Python-driven cycle put t0 1-3 ms later on the grid than the peers' shell loop)
CYCLE = (
    'ns() { ip netns exec "$@"; }; HV=$1; DB=$2; TAP=$3; VM=$4; DST=$5; LOG=$6; shift 6; '
    'ns "$HV" ovs-vsctl --db=unix:"$DB" --if-exists del-port br-int "$TAP"; '
    'sleep 0.5; '
    'ns "$VM" ping -D -n -i 0.002 -W 0.5 "$DST" > "$LOG" 2>&1 & '
    'pp=$!; sleep 0.3; '
    't0=$(date +%s.%N); '
    'if [ $# -gt 0 ]; then ns "$HV" ovs-vsctl --db=unix:"$DB" add-port br-int "$TAP" -- set interface "$TAP" "$@"; '
    'else ns "$HV" ovs-vsctl --db=unix:"$DB" add-port br-int "$TAP"; fi; rc=$?; '
    't1=$(date +%s.%N); '
    'sleep 0.7; kill $pp; wait $pp 2>/dev/null; '
    '[ $rc -eq 0 ] || exit 1; echo "$t0 $t1"')


def plug_once(t, before_plug=None, vsctl_opts: str = "") -> dict:
    """One unplug/plug of t.tap on t.host_ns, pinged from t.src_ns; {'t0', 't_exit', 'replies'} (epoch s).

    Without `before_plug` or `vsctl_opts` (the bench itself), the cycle is the peers' own shell
    sequence (CYCLE); timeline_port_up.py hooks in between, so it drives the steps from here."""
    if before_plug is None and not vsctl_opts:
        with tempfile.NamedTemporaryFile("w+", suffix=".ping") as log:
            cycle = subprocess.run(["bash", "-c", CYCLE, "cycle", t.host_ns, t.db_sock, t.tap, t.src_ns,
                                    t.dst_ip, log.name, *t.ext], capture_output=True, text=True)
            if cycle.returncode != 0:
                raise RuntimeError(f"add-port failed: {cycle.stderr.strip()}")
            t0, t_exit = (float(v) for v in cycle.stdout.split())
            log.seek(0)
            text = log.read()
            return {"t0": t0, "t_exit": t_exit, "replies": [float(ts) for ts in REPLY_RE.findall(text)],
                    # (reply, its request's time): ping's RTT says when the request went
                    "requested": [(float(ts), float(ts) - float(rtt) / 1000) for ts, rtt in RTT_RE.findall(text)]}
    subprocess.run(["ip", "netns", "exec", t.host_ns, "ovs-vsctl", f"--db=unix:{t.db_sock}", "--if-exists",
                    "del-port", "br-int", t.tap], check=True, capture_output=True)
    time.sleep(0.5)
    log = tempfile.TemporaryFile("w+")       # a file, as the peers do: ping never blocks on a pipe
    pinger = subprocess.Popen(["ip", "netns", "exec", t.src_ns, *PING, t.dst_ip],
                              stdout=log, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)
        if before_plug:
            before_plug()
        plug = subprocess.run(["bash", "-c", PLUG if t.ext else PLUG_BARE, "plug", t.host_ns, t.db_sock, t.tap, *t.ext],
                              capture_output=True, text=True, env={**os.environ, "VSCTL_OPTS": vsctl_opts})
        time.sleep(0.7)
    finally:
        stop(pinger)
        log.seek(0)
        out = log.read()
        log.close()
    if plug.returncode != 0:
        raise RuntimeError(f"add-port failed: {plug.stderr.strip()}")
    t0, t_exit = (float(v) for v in plug.stdout.split())
    return {"t0": t0, "t_exit": t_exit, "replies": [float(ts) for ts in REPLY_RE.findall(out)]}


class WeftPortUp:
    """weft's side: a two-host bench lab of its own with VM src on hv1 and dst on hv2, up while in `with`."""

    def __init__(self, tunnel: str = "vxlan", verbose: bool = False, security: bool = False,
                 exporters: bool = True, provider: bool = False):
        """security: the ports keep weft's defaults (port security and the tenant's default
        group: stateful ACLs through conntrack); without it they are configured as the OVN
        peer's logical ports are (addresses, no port security, no ACLs), like for like."""
        self.lab = BenchLab("benchpu")
        if not exporters:           # weftd without collectors: no sFlow/NetFlow/IPFIX on br-int
            self.lab.env["WEFT_LAB_NO_EXPORTERS"] = "1"
        self.security = security
        self.provider = provider    # br-ex and the outside (north-south); the peer's lab has none
        if verbose:
            self.lab.env["WEFTD_VERBOSE"] = "1"
        self.tunnel = tunnel
        self.started = False

    def __enter__(self) -> "WeftPortUp":
        if self.lab.exists():
            raise SystemExit(f"{self.lab.dir} exists (another bench run, or a crashed one: then "
                             f"`WEFT_LAB=benchpu WEFT_RUN_DIR=/run/weft-bench weft lab down`)")
        self.started = True
        try:
            w = self.lab.weft
            w("lab", "up", "--hosts", "2", "--tunnel", self.tunnel,
              *(() if self.provider else ("--no-provider",)))
            w("tenant", "create", "t")
            w("network", "create", "t/n", "--cidr", "10.0.0.0/24")
            open_ = () if self.security else ("--no-port-security",)
            w("port", "create", "t/n/src", "--ip", "10.0.0.10", *open_)
            w("port", "create", "t/n/dst", "--ip", "10.0.0.20", *open_)
            w("lab", "vm", "create", "src", "--host", "hv1", "--port", "t/n/src")
            w("lab", "vm", "create", "dst", "--host", "hv2", "--port", "t/n/dst")
            state = self.lab.state()
        except BaseException:
            self.__exit__()
            raise
        vm, host = state["vms"]["dst"], state["hosts"]["hv2"]
        self.src_ns, self.dst_ip = state["vms"]["src"]["ns"], "10.0.0.20"
        self.host_ns, self.tap = host["ns"], vm["tap"]
        self.db_sock = f"{host['dir']}/db.sock"
        self.host_dir = host["dir"]
        self.host_dirs = {name: h["dir"] for name, h in state["hosts"].items()}
        self.weftd_log = state["services"]["weftd"]["log"]
        self.iface_id = vm["iface_id"]
        self.ext = [f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}",
                    "external_ids:vm-id=dst", "external_ids:iface-status=active"]
        return self

    def __exit__(self, *_exc) -> None:
        if self.started:
            self.started = False
            self.lab.weft("lab", "down", check=False)

    def plug_once(self, before_plug=None) -> dict:
        return plug_once(self, before_plug)

    def measure(self, runs: int, label: str = "weft") -> list[float | None]:
        """RUNS plugs; per-run ms to the first reply after T0, None (and a line saying so) when none came.
        Also says in how many runs that reply answered a request sent before T0: one weft held
        while the NIC was away and sent back behind its port-up bundle (controller/replay.py)."""
        results, asked = [], []
        for i in range(1, runs + 1):
            r = self.plug_once()
            after = [ts for ts in r["replies"] if ts >= r["t0"]]
            results.append((after[0] - r["t0"]) * 1000 if after else None)
            if not after:
                print(f"{label} run {i}: no reply within 0.7 s; skipped", flush=True)
            first = [a for ts, a in r.get("requested", ()) if ts >= r["t0"]][:1]
            asked += [(a - r["t0"]) * 1000 for a in first]
        if asked:
            print(f"{label}: the first reply's request was sent at {fmt(asked)} ms after T0; before T0 in "
                  f"{sum(a < 0 for a in asked)} of {len(asked)} runs (held while the NIC was away)", flush=True)
        return results


def fmt(values: list[float | None]) -> str:
    return " ".join("none" if v is None else f"{v:.1f}" for v in values)


def summary(name: str, values: list[float | None]) -> float:
    got = [v for v in values if v is not None]
    if not got:
        print(f"{name}: no run got a reply ({len(values)} runs)")
        return float("nan")
    med = statistics.median(got)
    print(f"{name}: median {med:.1f} ms, min {min(got):.1f}, max {max(got):.1f} "
          f"({len(got)} runs, {len(values) - len(got)} without a reply)")
    return med


def weft_only(args) -> None:
    with WeftPortUp(args.tunnel, security=args.security, exporters=not args.no_exporters,
                    provider=args.provider) as w:
        results = w.measure(args.runs)
    print(f"runs (ms): {fmt(results)}")
    summary(f"port-up latency ({args.tunnel}, plug on hv2 -> first reply on hv1)", results)


def with_peers(args) -> None:
    import peers
    peers.ensure_ovn()
    print(f"load: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    print(f"floor: {peers.FLOOR.tunnel}; ovn: {peers.OVN.tunnel}; weft: {args.tunnel}", flush=True)
    got = {"floor": [], "ovn": [], "weft": [], "weft_secure": []}
    for rnd in range(1, args.rounds + 1):
        for peer in (peers.FLOOR, peers.OVN):
            values, _out = peers.run(peer, args.runs)
            print(f"round {rnd} {peer.name} runs (ms): {fmt(values)}", flush=True)
            got[peer.name] += values
        with WeftPortUp(args.tunnel, exporters=not args.no_exporters, provider=args.provider) as w:
            values = w.measure(args.runs)
        print(f"round {rnd} weft runs (ms): {fmt(values)}", flush=True)
        got["weft"] += values
        if args.security:
            with WeftPortUp(args.tunnel, security=True, provider=args.provider) as w:
                values = w.measure(args.runs, "weft with security")
            print(f"round {rnd} weft with port security and its default group runs (ms): "
                  f"{fmt(values)}", flush=True)
            got["weft_secure"] += values
    print(f"load: {Path('/proc/loadavg').read_text().strip()}")
    f = summary("floor (no controller, vxlan)", got["floor"])
    y = summary("ovn 23.03 (geneve; logical ports with addresses, no port security, no ACLs)", got["ovn"])
    if args.security:
        summary(f"weft ({args.tunnel}) with port security and the default group (stateful ACLs; "
                f"no OVN figure to compare: the peer's ports have neither)", got["weft_secure"])
    x = summary(f"weft ({args.tunnel}; ports configured as the peer's"
                f"{'; no exporters' if args.no_exporters else '; sFlow, NetFlow and IPFIX exporters on'}"
                f"{'; with the provider bridge br-ex' if args.provider else ''})",
                got["weft"])
    ratio = x / y if y else float("nan")
    overhead = (x - f) / (y - f) if y - f > 0 else float("nan")
    print(f"port-up weft_ms={x:.1f} ovn_ms={y:.1f} floor_ms={f:.1f} ratio={ratio:.2f} overhead_ratio={overhead:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="plugs per system per round")
    ap.add_argument("--tunnel", default="vxlan", choices=["vxlan", "geneve"], help="weft's tunnel")
    ap.add_argument("--peer", choices=["ovn"], help="also run the no-controller floor and OVN, alternating")
    ap.add_argument("--rounds", type=int, default=1, help="with --peer: floor, ovn, weft, repeated K times")
    ap.add_argument("--no-exporters", action="store_true",
                    help="weft's lab without its sFlow/NetFlow/IPFIX exporters (the OVN peer runs none)")
    ap.add_argument("--provider", action="store_true",
                    help="weft's hypervisors with the provider bridge br-ex (north-south), as the "
                         "demo lab; by default they have the peer's layout (br-phy and br-int)")
    ap.add_argument("--security", action="store_true",
                    help="weft's ports with port security and the default group (stateful ACLs); "
                         "with --peer: measured besides the like-for-like ports, not in the ratio")
    args = ap.parse_args()
    # INT and TERM unwind through every finally (labs down, peers stopped), even when started in the background
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.peer:
        with_peers(args)
    else:
        weft_only(args)


if __name__ == "__main__":
    main()
