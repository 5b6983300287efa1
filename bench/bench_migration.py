"""Live migration, weft against OVN 23.03 in one process: pings lost while a VM moves between hosts.

Both labs have 3 hypervisors (one namespace each, ovsdb-server + ovs-vswitchd on the userspace
datapath). vm1 on hv1 pings vm2 every 10 ms (400 pings, -W 1) while vm2 moves hv2 -> hv3 (and
back on the next round):

* weft: `weft lab vm move vm2 --host hvK` (lab "benchmig" in /run/weft-bench): weftd is told
  first, the destination NIC is programmed ahead, the guest switches NICs and sends a RARP,
  the source NIC is unplugged (lab/migrate.py); weftd's own part of the blackout is
  `last_migration_blackout_ms` (announcement packet-in -> last commit) from `weft port show`;
* OVN: the method of ../shared/bench/ovn_peer_more.sh (its last part): the NIC is deleted
  from the source's br-int, its host end moved to the destination's namespace and added to
  that br-int with the same iface-id (prefix "ovnmig": /tmp/ovnmig, namespaces ovnmig*).

Rounds alternate weft, OVN, weft, OVN... (5 each); the last line is
`migration weft_lost=X ovn_lost=Y` (medians). Needs root; installs ovn-central/ovn-host from
Debian when missing (benchmark-only dependency). Leaves nothing behind.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchlab import BenchLab  # noqa: E402
from bench.peers import PEER_DIR, ensure_ovn  # noqa: E402

PINGS, INTERVAL = 400, "0.01"
OVN_PREFIX = "ovnmig"


def lost_of(out: str) -> int:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not m:
        raise RuntimeError(f"no ping summary in:\n{out[-500:]}")
    return PINGS - int(m.group(2))


def ping_during(argv: list[str], move, env=None) -> tuple[int, object]:
    """Start `argv` (a ping), run move() after 1 s, return (pings lost, what move returned)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        result = move()
        out, _ = proc.communicate(timeout=PINGS * 0.05 + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lost_of(out), result


class Weft:
    def __init__(self):
        self.lab = BenchLab("benchmig")
        self.at = "hv2"

    def up(self) -> None:
        w = self.lab.weft
        if self.lab.exists():
            w("lab", "down", check=False)
        w("lab", "up", "--hosts", "3")
        w("tenant", "create", "red")
        w("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("vm1", "hv1", "10.0.0.11"), ("vm2", "hv2", "10.0.0.12")):
            w("port", "create", f"red/net/{vm}", "--ip", ip)
            w("lab", "vm", "create", vm, "--host", host, "--port", f"red/net/{vm}")
        _wait_ping(["lab", "exec", "vm1", "--"], self.lab, "10.0.0.12")

    def round(self) -> tuple[int, float | None]:
        dest = "hv3" if self.at == "hv2" else "hv2"
        argv = [_weft(), "lab", "exec", "vm1", "--", "ping", "-i", INTERVAL, "-c", str(PINGS), "-W", "1",
                "10.0.0.12"]
        lost, _ = ping_during(argv, lambda: self.lab.weft("lab", "vm", "move", "vm2", "--host", dest),
                              env=self.lab.env)
        self.at = dest
        port = json.loads(self.lab.weft("port", "show", "red/net/vm2", "-o", "json"))
        if port["host"] != dest:
            raise RuntimeError(f"vm2's port is on {port['host']}, not {dest}")
        return lost, port["last_migration_blackout_ms"]

    def down(self) -> None:
        self.lab.weft("lab", "down", check=False)


class Ovn:
    """OVN 23.03 on the shared bare lab (lab.sh), as ovn_peer.sh sets it up, with its own prefix."""

    def __init__(self):
        self.p, self.r = OVN_PREFIX, f"/tmp/{OVN_PREFIX}"
        self.c = f"{self.r}/central"
        self.at = 2

    def sh(self, *argv: str, check: bool = True) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
        return proc.stdout

    def ns(self, name: str, *argv: str, check: bool = True) -> str:
        return self.sh("ip", "netns", "exec", f"{self.p}{name}", *argv, check=check)

    def nb(self, *argv: str) -> str:
        return self.sh("ovn-nbctl", f"--db=unix:{self.c}/nb.sock", *argv)

    def vsctl(self, n: int, *argv: str) -> str:
        return self.ns(f"hv{n}", "ovs-vsctl", f"--db=unix:{self.r}/hv{n}/db.sock", *argv)

    def up(self) -> None:
        ensure_ovn()
        if os.path.exists(self.r):
            self.down()
        self.sh("bash", os.path.join(PEER_DIR, "lab.sh"), "up", "3", self.p)
        c = self.c
        os.makedirs(c, exist_ok=True)
        for db, schema in (("nb", "ovn-nb"), ("sb", "ovn-sb")):
            self.sh("ovsdb-tool", "create", f"{c}/{db}.db", f"/usr/share/ovn/{schema}.ovsschema")
            self.sh("ovsdb-server", f"{c}/{db}.db", f"--remote=punix:{c}/{db}.sock", f"--pidfile={c}/{db}.pid",
                    "--detach", f"--log-file={c}/{db}.log", f"--unixctl={c}/{db}.ctl")
        self.sh("ovn-northd", f"--ovnnb-db=unix:{c}/nb.sock", f"--ovnsb-db=unix:{c}/sb.sock",
                f"--pidfile={c}/northd.pid", "--detach", f"--log-file={c}/northd.log", f"--unixctl={c}/northd.ctl")
        for n in (1, 2, 3):
            d = f"{self.r}/hv{n}"
            self.vsctl(n, "set", "open", ".", f"external_ids:system-id=hv{n}",
                       f"external_ids:ovn-remote=unix:{c}/sb.sock", "external_ids:ovn-encap-type=geneve",
                       f"external_ids:ovn-encap-ip=198.18.0.{n}", "external_ids:ovn-bridge-datapath-type=netdev")
            self.ns(f"hv{n}", "env", f"OVS_RUNDIR={d}", f"OVN_RUNDIR={d}", "ovn-controller", f"unix:{d}/db.sock",
                    f"--pidfile={d}/ovnc.pid", "--detach", f"--log-file={d}/ovnc.log")
        self.nb("ls-add", "sw0")
        for n in (1, 2):
            v = f"{self.p}vm{n}"
            self.sh("ip", "netns", "add", v)
            self.sh("ip", "link", "add", f"tap{n}", "netns", f"{self.p}hv{n}", "type", "veth", "peer", "name",
                    "eth0", "netns", v)
            self.ns(f"hv{n}", "ip", "link", "set", f"tap{n}", "up")
            for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "address", f"0a:00:00:00:00:0{n}"],
                        ["ip", "link", "set", "eth0", "mtu", "1400"], ["ip", "link", "set", "eth0", "up"],
                        ["ip", "addr", "add", f"10.0.0.{n}/24", "dev", "eth0"], ["ethtool", "-K", "eth0", "tx", "off"]):
                self.ns(f"vm{n}", *cmd)
            self.nb("lsp-add", "sw0", f"lsp{n}", "--", "lsp-set-addresses", f"lsp{n}", f"0a:00:00:00:00:0{n} 10.0.0.{n}")
        deadline = time.monotonic() + 30
        while True:
            try:
                for n in (1, 2):
                    self.vsctl(n, "--may-exist", "add-port", "br-int", f"tap{n}", "--", "set", "interface",
                               f"tap{n}", f"external_ids:iface-id=lsp{n}")
                break
            except RuntimeError:            # br-int not created by ovn-controller yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.nb("--wait=hv", "sync")
        _wait_ping(["ip", "netns", "exec", f"{self.p}vm1"], None, "10.0.0.2")

    def round(self) -> int:
        src, dst = self.at, 5 - self.at          # 2 <-> 3

        def move():                              # ovn_peer_more.sh: unplug, move, plug
            self.vsctl(src, "del-port", "br-int", "tap2")
            self.ns(f"hv{src}", "ip", "link", "set", "tap2", "netns", f"{self.p}hv{dst}")
            self.ns(f"hv{dst}", "ip", "link", "set", "tap2", "up")
            self.vsctl(dst, "add-port", "br-int", "tap2", "--", "set", "interface", "tap2",
                       "external_ids:iface-id=lsp2")
        argv = ["ip", "netns", "exec", f"{self.p}vm1", "ping", "-i", INTERVAL, "-W", "1", "-c", str(PINGS), "10.0.0.2"]
        lost, _ = ping_during(argv, move)
        self.at = dst
        return lost

    def down(self) -> None:
        for d in (self.c, *(f"{self.r}/hv{n}" for n in (1, 2, 3))):
            for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if f.endswith(".pid") and f != "ovsdb.pid" and f != "vs.pid":
                    _kill_owned(os.path.join(d, f), self.r)
        subprocess.run(["bash", os.path.join(PEER_DIR, "lab.sh"), "down", "3", self.p],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_owned(pidfile: str, marker: str) -> None:
    """SIGTERM the pid in `pidfile` only if its command line names our directory."""
    try:
        pid = int(open(pidfile).read().strip())
        if marker in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"):
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def _weft() -> str:
    from bench.benchlab import WEFT
    return WEFT


def _wait_ping(prefix: list[str], lab: BenchLab | None, ip: str, timeout: float = 30) -> None:
    argv = ([_weft()] if lab else []) + prefix + ["ping", "-c1", "-W1", ip]
    deadline = time.monotonic() + timeout
    while subprocess.run(argv, env=lab.env if lab else None, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"vm1 never reached vm2 ({' '.join(prefix)})")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"bench_migration {datetime.datetime.now().isoformat(timespec='seconds')}: "
          f"{PINGS} pings every {INTERVAL} s, {args.rounds} migrations each, alternating", flush=True)
    weft, ovn = Weft(), Ovn()
    weft_lost, ovn_lost, blackouts = [], [], []
    try:
        weft.up()
        ovn.up()
        for i in range(args.rounds):
            lost, blackout = weft.round()
            weft_lost.append(lost)
            blackouts.append(blackout)
            print(f"round {i + 1} weft lost={lost} blackout_ms={blackout} (hv{'3' if weft.at == 'hv3' else '2'})",
                  flush=True)
            lost = ovn.round()
            ovn_lost.append(lost)
            print(f"round {i + 1} ovn lost={lost}", flush=True)
    finally:
        weft.down()
        ovn.down()
    known = [b for b in blackouts if b is not None]
    print(f"weft lost per migration {weft_lost}; weftd blackout_ms {blackouts} "
          f"(median {statistics.median(known) if known else None}); ovn lost per migration {ovn_lost}")
    print(f"migration weft_lost={statistics.median(weft_lost):g} ovn_lost={statistics.median(ovn_lost):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
