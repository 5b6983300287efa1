"""Port-up timeline of single plugs, seen from outside (ovs-vsctl, OVSDB, ovs-vswitchd's and weftd's logs, ping).

For each plug (same method as bench_port_up.py) it prints, in ms after T0 (taken before the
`ip netns exec ... ovs-vsctl add-port` process starts, as the peers do):
  vsctl main        ovs-vsctl's own log: its first line (process started, libraries loaded)
  vsctl txn sent    ovs-vsctl's transaction to ovsdb-server (jsonrpc debug log)
  vsctl txn committed  ovsdb-server's reply to it
  ovsdb row         the Interface row with its iface-id, seen by `ovsdb-client --timestamp monitor`
                    (started before the plug)
  ovsdb ofport      the same row with its ofport
  vswitchd port     ovs-vswitchd's log: "added interface TAP on port N"
  hvK last bundle opened / commit requested / committed
                    each ovs-vswitchd's own log (vconn at debug during the plug): when it read
                    the last bundle's open and its commit, and its reply (the flows are in)
  vsctl exit        ovs-vsctl returned (it waits for ovs-vswitchd to apply the change)
  weftd ...         every weftd log line in the window (weftd runs with -v): binding seen,
                    port-status, bundles per host; the format may change, so lines are shown as logged
  first reply       first echo reply after T0 (ping -D -i 0.002 from the other host)
  --packets         also every echo request the pinger sends and each one the NIC gets (tcpdump):
                    ping sends every ~10 ms while unanswered, so the first reply waits for the
                    first request sent after the flows are in
`--system floor` runs the same probe on the no-controller floor's layout (floor_port_up.sh's:
lab.sh, NORMAL bridges, VXLAN, static ARP) under its own prefix, to compare phase by phase.
Figures printed, never asserted; everything started is stopped by pid on every path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_port_up import WeftPortUp, plug_once, stop  # noqa: E402
from peers import PEER_DIR  # noqa: E402

OVS_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z\|\d+\|(\w+)\|(\w+)\|(.*)$")
WEFTD_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)$")
MON_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})$")


def ovs_time(stamp: str) -> float:
    """An Open vSwitch log timestamp (UTC, ms) as epoch seconds."""
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()


def read_from(path: str, offset: int) -> str:
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return ""


def size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


class FloorLayout:
    """floor_port_up.sh's layout under prefix `tlf` (lab.sh up 2 tlf): NORMAL br-int, a VXLAN port, static ARP."""

    P = "tlf"

    def __init__(self):
        self.dir = f"/tmp/{self.P}"
        self.src_ns, self.dst_ip = f"{self.P}vm1", "10.0.0.2"
        self.host_ns, self.tap, self.ext = f"{self.P}hv2", "tap2", []
        self.host_dir = f"{self.dir}/hv2"
        self.db_sock = f"{self.host_dir}/db.sock"
        self.host_dirs = {f"hv{n}": f"{self.dir}/hv{n}" for n in (1, 2)}
        self.weftd_log = None
        self.started = False

    def sh(self, *argv: str) -> None:
        subprocess.run(list(argv), check=True, capture_output=True)

    def __enter__(self) -> "FloorLayout":
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if os.path.exists(self.dir) or re.search(rf"^{self.P}", names, re.M):
            raise SystemExit(f"{self.dir} or namespaces {self.P}* exist: another run of this probe?")
        self.started = True
        try:
            self.sh("bash", f"{PEER_DIR}/lab.sh", "up", "2", self.P)
            for n in (1, 2):
                d, h, v, o = f"{self.dir}/hv{n}", f"{self.P}hv{n}", f"{self.P}vm{n}", 3 - n
                ns = ["ip", "netns", "exec"]
                self.sh(*ns, h, "ovs-vsctl", f"--db=unix:{d}/db.sock", "add-br", "br-int", "--", "set", "bridge",
                        "br-int", "datapath_type=netdev", "--", "add-port", "br-int", "vx", "--", "set",
                        "interface", "vx", "type=vxlan", f"options:remote_ip=198.18.0.{o}", "options:key=100")
                self.sh("ip", "netns", "add", v)
                self.sh("ip", "link", "add", f"tap{n}", "netns", h, "type", "veth", "peer", "name", "eth0",
                        "netns", v)
                self.sh(*ns, h, "ip", "link", "set", f"tap{n}", "up")
                self.sh(*ns, v, "ip", "link", "set", "lo", "up")
                self.sh(*ns, v, "ip", "link", "set", "eth0", "address", f"0a:00:00:00:00:0{n}", "mtu", "1400", "up")
                self.sh(*ns, v, "ip", "addr", "add", f"10.0.0.{n}/24", "dev", "eth0")
                self.sh(*ns, v, "ethtool", "-K", "eth0", "tx", "off")
                self.sh(*ns, v, "ip", "neigh", "add", f"10.0.0.{o}", "lladdr", f"0a:00:00:00:00:0{o}", "dev", "eth0")
                self.sh(*ns, h, "ovs-vsctl", f"--db=unix:{d}/db.sock", "add-port", "br-int", f"tap{n}")
            time.sleep(2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        if self.started:
            self.started = False
            for n in (1, 2):    # lab.sh down also stops whatever runs in our VM namespaces
                subprocess.run(["ip", "netns", "del", f"{self.P}vm{n}"], capture_output=True)
            subprocess.run(["bash", f"{PEER_DIR}/lab.sh", "down", "2", self.P], capture_output=True)


def probe(t, packets: bool = False) -> dict:
    """One plug with every outside observer running; {event: ms after T0}, plus weftd's lines."""
    mon_out = tempfile.NamedTemporaryFile("w+", prefix="pu-mon-", delete=False)
    vsctl_log = tempfile.NamedTemporaryFile("w+", prefix="pu-vsctl-", suffix=".log", delete=False)
    logs = {h: (f"{d}/vs.log", 0) for h, d in t.host_dirs.items()}
    logs["weftd"] = (t.weftd_log, 0)
    mon = None
    dumps: dict[str, subprocess.Popen] = {}
    dump_out = {k: tempfile.TemporaryFile("w+") for k in ("src", "dst")}
    vconn_debug(t, "dbg")     # each vswitchd logs the OpenFlow it gets: when bundles arrive and commit

    def before_plug() -> None:
        nonlocal mon, logs
        logs = {k: (p, size(p)) for k, (p, _o) in logs.items() if p}
        mon = subprocess.Popen(["ovsdb-client", "--timestamp", "monitor", f"unix:{t.db_sock}", "Open_vSwitch",
                                "Interface", "name,external_ids,ofport"], stdout=mon_out, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while size(mon_out.name) == 0 and time.monotonic() < deadline:   # the initial dump: it is watching
            time.sleep(0.01)
        if packets:
            for key, ns, iface in (("src", t.src_ns, "any"), ("dst", t.host_ns, t.tap)):
                dumps[key] = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-tt", "-i", iface,
                                               "icmp[icmptype] == icmp-echo"], stdout=dump_out[key],
                                              stderr=subprocess.PIPE, text=True)
                dumps[key].stderr.readline()          # "listening on ...": it captures

    try:
        r = plug_once(t, before_plug, vsctl_opts=f"--log-file={vsctl_log.name} -vreconnect:file:dbg "
                                                 f"-vjsonrpc:file:dbg")
    finally:
        if mon is not None:
            stop(mon)
        for d in dumps.values():
            stop(d)
        vconn_debug(t, "info")
    t0 = r["t0"]
    ev: dict[str, float] = {}
    info: dict[str, str] = {}            # what is not a time (the ofport the NIC got)
    ms = lambda ts: (ts - t0) * 1000  # noqa: E731
    for line in read_from(vsctl_log.name, 0).splitlines():
        m = OVS_TS.match(line)
        if m:
            ev.setdefault("vsctl main", ms(ovs_time(m.group(1))))
            msg = m.group(4)
            if m.group(2) == "jsonrpc" and '"transact"' in msg and '"insert"' in msg:
                ev.setdefault("vsctl txn sent", ms(ovs_time(m.group(1))))
            elif m.group(2) == "jsonrpc" and "vsctl txn sent" in ev and "received reply" in msg:
                ev.setdefault("vsctl txn committed", ms(ovs_time(m.group(1))))
    ev.update(_monitor(read_from(mon_out.name, 0), t.tap, ms))
    for h in t.host_dirs:
        for m in ovs_records(read_from(*logs[h])):
            msg, at = m.group(4), ms(ovs_time(m.group(1)))
            if f"added interface {t.tap} on port" in msg:
                ev.setdefault("vswitchd port", at)
                info["ofport"] = msg.split(" on port ")[1].split()[0].rstrip(".,")
            elif "OFPT_BUNDLE_CONTROL" in msg and "OPEN_REQUEST" in msg and at >= 0:
                ev[f"{h} last bundle opened"] = at
            elif "OFPT_BUNDLE_CONTROL" in msg and "COMMIT_REQUEST" in msg and at >= 0:
                ev[f"{h} last bundle commit requested"] = at
            elif "OFPT_BUNDLE_CONTROL" in msg and "COMMIT_REPLY" in msg and at >= 0:
                ev[f"{h} last bundle committed"] = at
    ev["vsctl exit"] = ms(r["t_exit"])
    after = [ts for ts in r["replies"] if ts >= t0]
    if after:
        ev["first reply"] = ms(after[0])
    lines = []
    for key, what in (("src", "echo request sent by the pinger"), ("dst", "echo request delivered to the NIC")):
        dump_out[key].seek(0)
        for line in dump_out[key].read().splitlines():
            stamp = line.split(" ", 1)[0]
            if re.fullmatch(r"\d+\.\d+", stamp) and -1 <= ms(float(stamp)) <= ev.get("first reply", 700) + 1:
                lines.append((ms(float(stamp)), what))
        dump_out[key].close()
    if "weftd" in logs:
        for line in read_from(*logs["weftd"]).splitlines():
            m = WEFTD_TS.match(line)
            if m and not m.group(3).startswith("os_ken.base"):     # not os-ken's per-event dispatch lines
                at = ms(dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
                if -5 <= at <= ev.get("first reply", 700) + 20:
                    lines.append((at, f"weftd {m.group(3)}: {m.group(4)[:220]}"))
    for path in (mon_out.name, vsctl_log.name):
        os.unlink(path)
    ev_sorted = sorted([(v, k) for k, v in ev.items()] + lines)
    return {"events": ev, "lines": ev_sorted, "info": info}


def ovs_records(text: str) -> list[re.Match]:
    """An Open vSwitch log's records, each with its continuation lines (vconn prints messages over several)."""
    return list(re.finditer(r"^(\S+)Z\|\d+\|(\w+)\|(\w+)\|(.*(?:\n(?!\d{4}-\d\d-\d\dT).*)*)", text, re.M))


def vconn_debug(t, level: str) -> None:
    """Set each host's ovs-vswitchd vconn file logging (dbg: every OpenFlow message, with ms timestamps)."""
    for d in t.host_dirs.values():
        subprocess.run(["ovs-appctl", "-t", f"{d}/vs.ctl", "vlog/set", f"vconn:file:{level}"], capture_output=True)


def _monitor(text: str, tap: str, ms) -> dict[str, float]:
    """First appearance of TAP's row, and of its ofport, in `ovsdb-client --timestamp monitor` output."""
    out, stamp, cols = {}, None, None
    for line in text.splitlines():
        m = MON_TS.match(line.strip())
        if m:
            stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=dt.timezone.utc).timestamp()
            continue
        fields = line.split()
        if "name" in fields and "ofport" in fields:
            cols = line
            continue
        if stamp is None or cols is None or not re.search(rf"(^|\s){re.escape(tap)}(\s|$)", line):
            continue
        if "iface-id" in line or "insert" in line:
            out.setdefault("ovsdb row", ms(stamp))
        if re.search(r"\s[1-9]\d*\s*$", line) or re.search(r"\s[1-9]\d*\s", line.split("}")[-1]):
            out.setdefault("ovsdb ofport", ms(stamp))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="weft", choices=["weft", "floor"])
    ap.add_argument("--tunnel", default="vxlan", choices=["vxlan", "geneve"], help="weft's tunnel")
    ap.add_argument("--plugs", type=int, default=3)
    ap.add_argument("--packets", action="store_true",
                    help="also capture (tcpdump) each echo request the pinger sends and each one the NIC gets")
    args = ap.parse_args()
    target = WeftPortUp(args.tunnel, verbose=True) if args.system == "weft" else FloorLayout()
    per_event: dict[str, list[float]] = {}
    with target as t:
        for i in range(1, args.plugs + 1):
            res = probe(t, args.packets)
            print(f"--- {args.system} plug {i} (ms after T0; the NIC got ofport {res['info'].get('ofport', '?')})")
            for at, what in res["lines"]:
                print(f"  {at:8.1f}  {what}")
            for k, v in res["events"].items():
                per_event.setdefault(k, []).append(v)
    print(f"--- {args.system} median over {args.plugs} plugs (ms after T0)")
    for k, v in sorted(per_event.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"  {statistics.median(v):8.1f}  {k}  ({len(v)} plugs; {' '.join(f'{x:.1f}' for x in v)})")


if __name__ == "__main__":
    main()
