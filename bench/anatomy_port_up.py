"""Port-up, weft and OVN side by side, split at the moment ovs-vswitchd added the port.

bench_port_up.py gives the ratio; this says where it comes from. Both labs stay up together
(weft's bench lab and OVN 23.03 from the shared ovn_peer.sh, KEEP=1) and their plugs alternate,
each the peers' own unplug/plug shell sequence, but timed with a 1 ms ICMP probe
(icmp_probe.py) instead of `ping -i 0.002`, whose ~10 ms grid while unanswered hides
millisecond differences. Per plug, in ms after T0 (taken before `ip netns exec ... ovs-vsctl
add-port` starts):
  added    ovs-vswitchd's log on the NIC's host: "added interface TAP on port N"
  exit     ovs-vsctl returned (ovs-vswitchd applied the change)
  ready    the first reply came (the probe's request time is not used: a request the sender's
           kernel held while it resolved the neighbour would date the path's opening too early)
  after    ready - added: what happens once Open vSwitch has the port — the controller
           learning of it, its flows committed, and the switch's datapath taking them
weft's runs also give its own timeline (`weft port show -o json` up_timeline): when the bundle
went out and when the switch committed it, and how many dropped requests weftd sent back through
the new flows: dropped while the datapath's cache was stale, and held while the NIC was away
(controller/replay.py). The probe's "ready" is when the first reply came, whatever request it
answers: with weft it may answer one sent before the plug and held.

What "after" measures here: a NIC plugged again has traffic waiting, so the host's datapath
holds a cached flow (megaflow) that drops it; new OpenFlow flows replace it only when a
revalidator round re-translates it, and Open vSwitch starts those rounds at most every 5 ms
(ofproto-dpif-upcall.c, udpif_revalidator) — one starts when the port is added. Flows
committed within those 5 ms take effect at the next round, so "after" stays near 5 ms or more
for a controller that programs a port's flows once the port exists, unless it sends what the
stale cache drops back through the new flows itself (weft does: controller/replay.py).

Ends with `port-up-anatomy weft_added_ms=A weft_after_ms=B ovn_added_ms=C ovn_after_ms=D runs=N`
(medians). Needs root; OVN is installed from Debian when missing; everything started is stopped
on every path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from bench_port_up import WeftPortUp  # noqa: E402

HERE = Path(__file__).resolve().parent
PROBE = str(HERE / "icmp_probe.py")
OVN_DIR = "/tmp/ovn"
# the peers' cycle (bench_port_up.CYCLE) with the 1 ms probe in place of ping
CYCLE = (
    'ns() { ip netns exec "$@"; }; HV=$1; DB=$2; TAP=$3; VM=$4; DST=$5; PY=$6; PROBE=$7; shift 7; '
    'ns "$HV" ovs-vsctl --db=unix:"$DB" --if-exists del-port br-int "$TAP"; '
    'sleep 0.5; '
    'out=$(mktemp); ns "$VM" "$PY" "$PROBE" "$DST" 1.0 > "$out" 2>&1 & pp=$!; sleep 0.3; '
    't0=$(date +%s.%N); '
    'ns "$HV" ovs-vsctl --db=unix:"$DB" add-port br-int "$TAP" -- set interface "$TAP" "$@"; rc=$?; '
    't1=$(date +%s.%N); '
    'wait $pp; echo "$t0 $t1 $(cat "$out")"; rm -f "$out"; exit $rc')
ADDED = r"^(\S+)Z\|\d+\|bridge\|INFO\|bridge br-int: added interface {tap} on port \d+"


def ovs_time(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()


def added_at(log: str, tap: str, after: float) -> float | None:
    """When ovs-vswitchd's log says it added TAP, the last time at or after `after` (epoch s)."""
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return None
    # the log has ms resolution: a line in T0's own millisecond counts
    times = [ovs_time(m.group(1)) for m in re.finditer(ADDED.format(tap=re.escape(tap)), text, re.M)]
    times = [t for t in times if t >= after - 0.001]
    return times[-1] if times else None


class System:
    """One side's plug: the namespaces and paths the cycle needs."""

    def __init__(self, name, host_ns, db_sock, tap, src_ns, dst_ip, vs_log, ext):
        self.name, self.host_ns, self.db_sock, self.tap = name, host_ns, db_sock, tap
        self.src_ns, self.dst_ip, self.vs_log, self.ext = src_ns, dst_ip, vs_log, ext

    def plug(self) -> dict:
        out = subprocess.run(["bash", "-c", CYCLE, "cycle", self.host_ns, self.db_sock, self.tap, self.src_ns,
                              self.dst_ip, sys.executable, PROBE, *self.ext], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: plug failed: {out.stderr.strip()[-500:]}")
        t0, t1, _sent, received = out.stdout.split()
        t0 = float(t0)
        added = added_at(self.vs_log, self.tap, t0)
        ms = lambda t: None if t is None else (t - t0) * 1000     # noqa: E731
        ready = None if received == "none" else ms(float(received))
        return {"t0": t0, "exit": ms(float(t1)), "added": ms(added), "ready": ready,
                "after": None if ready is None or added is None else ready - ms(added)}


def ovn_up() -> System:
    """OVN's two-host lab from the shared ovn_peer.sh, left up (KEEP=1); the caller tears it down."""
    env = {**os.environ, "KEEP": "1"}
    setup = subprocess.run(["bash", os.path.join(peers.PEER_DIR, "ovn_peer.sh"), "2"], env=env,
                           capture_output=True, text=True)
    if setup.returncode != 0:
        raise RuntimeError(f"ovn_peer.sh failed: {setup.stdout[-1000:]}{setup.stderr[-1000:]}")
    return System("ovn", "ovnhv2", f"{OVN_DIR}/hv2/db.sock", "tap2", "ovnvm1", "10.0.0.2",
                  f"{OVN_DIR}/hv2/vs.log", ["external_ids:iface-id=lsp2"])


def weft_system(w: WeftPortUp) -> System:
    return System("weft", w.host_ns, w.db_sock, w.tap, w.src_ns, w.dst_ip, f"{w.host_dir}/vs.log", w.ext)


def replayed(w: WeftPortUp) -> tuple[int, int]:
    """Drop samples weftd sent back through a NIC's new flows (controller/replay.py), so far:
    (replayed from the stale cache, released after being held while the NIC was away)."""
    from controller.client import Client
    counts = Client(f"unix:{w.lab.dir}/weftd.sock").get("/v1/traffic/drops/status")["packet_ins"]
    return counts["replayed"], counts.get("released", 0)


def weft_timeline(w: WeftPortUp, t0: float) -> dict:
    """weft's own view of the plug: bundle sent / committed, ms after T0."""
    view = json.loads(w.lab.weft("port", "show", "t/n/dst", "-o", "json")).get("up_timeline") or {}
    seen = (view.get("seen_at", t0) - t0) * 1000
    rel = lambda k: None if view.get(k) is None else seen + view[k]       # noqa: E731
    return {"seen": seen, "sent": rel("sent_ms"), "committed": rel("committed_ms"),
            "armed": view.get("sent_armed")}


def fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def median(rows: list[dict], key: str) -> float | None:
    got = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(got) if got else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="plugs per system (alternating)")
    ap.add_argument("--tunnel", default="geneve", choices=["vxlan", "geneve"], help="weft's tunnel")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, not {args.runs}")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"load: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    rows: dict[str, list[dict]] = {"weft": [], "ovn": []}
    peers.ensure_ovn()
    peers._wait_free(peers.OVN, timeout=120)    # another run's OVN lab is never ours to tear down
    try:
        ovn = ovn_up()
        with WeftPortUp(args.tunnel) as w:
            weft = weft_system(w)
            time.sleep(1)
            for i in range(1, args.runs + 1):
                for system in (weft, ovn):
                    before = replayed(w) if system is weft else (0, 0)
                    r = system.plug()
                    if system is weft:
                        now = replayed(w)
                        r.update(weft_timeline(w, r["t0"]), replayed=now[0] - before[0],
                                 released=now[1] - before[1])
                    rows[system.name].append(r)
                    extra = (f" | weft bundle sent {fmt(r['sent'])} committed {fmt(r['committed'])}"
                             f"{' (armed)' if r.get('armed') else ''}, {r['replayed']} replayed, "
                             f"{r['released']} held and released")\
                        if system is weft else ""
                    print(f"run {i} {system.name}: added {fmt(r['added'])} exit {fmt(r['exit'])} "
                          f"ready {fmt(r['ready'])} after {fmt(r['after'])}{extra}", flush=True)
    finally:
        peers._cleanup(peers.OVN)
    print(f"load: {Path('/proc/loadavg').read_text().strip()}")
    for name, got in rows.items():
        print(f"{name} ({args.tunnel if name == 'weft' else 'geneve'}): medians over {len(got)} plugs: "
              f"added {fmt(median(got, 'added'))}, exit {fmt(median(got, 'exit'))}, "
              f"ready {fmt(median(got, 'ready'))}, after {fmt(median(got, 'after'))} ms"
              + (f"; bundle sent {fmt(median(got, 'sent'))}, committed {fmt(median(got, 'committed'))}"
                 if name == "weft" else ""))
    print(f"port-up-anatomy weft_added_ms={fmt(median(rows['weft'], 'added'))} "
          f"weft_after_ms={fmt(median(rows['weft'], 'after'))} "
          f"ovn_added_ms={fmt(median(rows['ovn'], 'added'))} ovn_after_ms={fmt(median(rows['ovn'], 'after'))} "
          f"runs={args.runs}")


if __name__ == "__main__":
    main()
