"""The datapath peers kept up side by side: the no-controller ceiling and OVN 23.03, each a 2-host lab.

What they run is what ../shared/bench/ceiling_tcp.sh and ovn_peer.sh / ovn_peer_more.sh do, on
the shared lab.sh, under prefixes of this benchmark's own (never the scripts' own, so a run of
those scripts elsewhere is not touched), and left up between iperf3 runs so that the ceiling,
OVN and weft can alternate run by run. Everything started is stopped by pid file, then lab.sh
removes the namespaces.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from peers import PEER_DIR


def ns(name: str, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def iperf(client_ns: str, server_ns: str, server_ip: str, port: int, seconds: int = 4) -> float:
    """TCP client -> server for SECONDS, Gbit/s received (iperf3, one run)."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        out = ns(client_ns, "iperf3", "-c", server_ip, "-t", str(seconds), "-p", str(port), "-J",
                 timeout=seconds + 20).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


class BareLab:
    """lab.sh's N hypervisors (own ovsdb-server + ovs-vswitchd, userspace datapath) under PREFIX."""

    def __init__(self, prefix: str, hosts: int = 2):
        self.prefix, self.hosts, self.root = prefix, hosts, f"/tmp/{prefix}"
        self.vms: list[str] = []
        self.started = False           # only what this object brought up is ever taken down

    def _lab(self, cmd: str) -> None:
        subprocess.run(["bash", os.path.join(PEER_DIR, "lab.sh"), cmd, str(self.hosts), self.prefix],
                       check=cmd == "up", capture_output=True, text=True)

    def up(self) -> None:
        if os.path.exists(self.root):
            raise SystemExit(f"{self.root} exists (another run of this benchmark, or a crashed one); "
                             f"not touching it")
        self.started = True
        self._lab("up")

    def vsctl(self, k: int, *args: str) -> None:
        ns(f"{self.prefix}hv{k}", "ovs-vsctl", f"--db=unix:{self.root}/hv{k}/db.sock", *args)

    def vm(self, k: int, mtu: int, iface_id: str | None = None) -> str:
        """VM k (namespace PREFIXvmK, eth0 0a:00:00:00:00:0K, 10.0.0.K/24) plugged into hvK's br-int."""
        name, host = f"{self.prefix}vm{k}", f"{self.prefix}hv{k}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.vms.append(name)
        subprocess.run(["ip", "link", "add", f"tap{k}", "netns", host, "type", "veth", "peer", "name", "eth0",
                        "netns", name], check=True)
        ns(host, "ip", "link", "set", f"tap{k}", "up")
        for argv in (("ip", "link", "set", "lo", "up"), ("ip", "link", "set", "eth0", "address", f"0a:00:00:00:00:0{k}"),
                     ("ip", "link", "set", "eth0", "mtu", str(mtu)), ("ip", "link", "set", "eth0", "up"),
                     ("ip", "addr", "add", f"10.0.0.{k}/24", "dev", "eth0"), ("ethtool", "-K", "eth0", "tx", "off")):
            ns(name, *argv)
        plug = ["add-port", "br-int", f"tap{k}"]
        if iface_id:
            plug += ["--", "set", "interface", f"tap{k}", f"external_ids:iface-id={iface_id}"]
        self.vsctl(k, *plug)
        return name

    def wait_ping(self, src: str, ip: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ns(src, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0:
                return
        raise RuntimeError(f"{self.prefix}: {src} cannot reach {ip} after {timeout} s")

    def down(self) -> None:
        if not self.started:
            return
        self.started = False
        for name in self.vms:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        self._lab("down")            # stops each host's daemons by pid file, deletes PREFIX* namespaces


class CeilingLab(BareLab):
    """No controller: NORMAL bridges, one VXLAN port each way, VM MTU 1450 (ceiling_tcp.sh)."""

    def up(self) -> None:
        super().up()
        for k in (1, 2):
            other = 3 - k
            self.vsctl(k, "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "--",
                       "add-port", "br-int", "vx", "--", "set", "interface", "vx", "type=vxlan",
                       f"options:remote_ip=198.18.0.{other}", "options:key=100")
            self.vm(k, 1450)
        self.wait_ping(f"{self.prefix}vm1", "10.0.0.2")


class OvnLab(BareLab):
    """OVN 23.03 (Debian): central NB/SB ovsdb-servers and ovn-northd, ovn-controller per host,
    one logical switch, Geneve, VM MTU 1400 (ovn_peer.sh); `acls()` adds ovn_peer_more.sh's 20."""

    def up(self) -> None:
        super().up()
        c = self.central = f"{self.root}/central"
        os.makedirs(c, exist_ok=True)
        for db, schema in (("nb", "ovn-nb"), ("sb", "ovn-sb")):
            subprocess.run(["ovsdb-tool", "create", f"{c}/{db}.db", f"/usr/share/ovn/{schema}.ovsschema"],
                           check=True, capture_output=True)
            subprocess.run(["ovsdb-server", f"{c}/{db}.db", f"--remote=punix:{c}/{db}.sock", f"--pidfile={c}/{db}.pid",
                            "--detach", f"--log-file={c}/{db}.log", f"--unixctl={c}/{db}.ctl"],
                           check=True, capture_output=True)
        subprocess.run(["ovn-northd", f"--ovnnb-db=unix:{c}/nb.sock", f"--ovnsb-db=unix:{c}/sb.sock",
                        f"--pidfile={c}/northd.pid", "--detach", f"--log-file={c}/northd.log",
                        f"--unixctl={c}/northd.ctl"], check=True, capture_output=True)
        for k in (1, 2):
            d = f"{self.root}/hv{k}"
            self.vsctl(k, "set", "open", ".", f"external_ids:system-id=hv{k}",
                       f"external_ids:ovn-remote=unix:{c}/sb.sock", "external_ids:ovn-encap-type=geneve",
                       f"external_ids:ovn-encap-ip=198.18.0.{k}", "external_ids:ovn-bridge-datapath-type=netdev")
            ns(f"{self.prefix}hv{k}", "env", f"OVS_RUNDIR={d}", f"OVN_RUNDIR={d}", "ovn-controller",
               f"unix:{d}/db.sock", f"--pidfile={d}/ovnc.pid", "--detach", f"--log-file={d}/ovnc.log")
        time.sleep(3)
        self.nbctl("ls-add", "sw0")
        for k in (1, 2):
            self.nbctl("lsp-add", "sw0", f"lsp{k}", "--", "lsp-set-addresses", f"lsp{k}",
                       f"0a:00:00:00:00:0{k} 10.0.0.{k}")
            self.vm(k, 1400, iface_id=f"lsp{k}")
        self.nbctl("--wait=hv", "sync")
        self.wait_ping(f"{self.prefix}vm1", "10.0.0.2")

    def nbctl(self, *args: str) -> None:
        subprocess.run(["ovn-nbctl", f"--db=unix:{self.central}/nb.sock", *args], check=True,
                       capture_output=True, timeout=60)

    def acls(self) -> None:
        """20 stateful ACLs to the ports: 18 allow-related TCP ports, 5400-5499 (iperf3), drop the rest."""
        self.nbctl("pg-add", "pgall", "lsp1", "lsp2")
        for i in range(1, 19):
            self.nbctl("acl-add", "pgall", "to-lport", "1002", f"outport == @pgall && ip4 && tcp.dst == {2000 + i}",
                       "allow-related")
        self.nbctl("acl-add", "pgall", "to-lport", "1002",
                   "outport == @pgall && ip4 && tcp.dst >= 5400 && tcp.dst <= 5499", "allow-related")
        self.nbctl("acl-add", "pgall", "to-lport", "1001", "outport == @pgall && ip4", "drop")
        self.nbctl("--wait=hv", "sync")

    def down(self) -> None:
        if not self.started:
            return
        c = f"{self.root}/central"
        for f in sorted(os.listdir(c)) if os.path.isdir(c) else []:
            if f.endswith(".pid"):
                _stop_pidfile(os.path.join(c, f), self.root)
        super().down()


def _stop_pidfile(path: str, marker: str) -> None:
    """SIGTERM the process a pid file names, only if its command line names our run directory."""
    try:
        pid = int(open(path).read().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        return
    if marker in cmdline:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
