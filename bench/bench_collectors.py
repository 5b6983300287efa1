"""Loopback replay benchmark of the collector service: highest zero-loss rate and CPU per record.

    python bench/bench_collectors.py [--trial 3] [--quick] [--no-nfdump]

A `CollectorService` (sFlow + NetFlow sockets on 127.0.0.1, a synthetic two-tenant model
with identical CIDRs and MACs, attribution and aggregation on) runs in a child process;
this process replays generated datagrams to it, paced in 1 ms slots:

* sFlow v5: datagrams of 8 flow samples, each a 128-byte VXLAN-encapsulated raw header of
  traffic between the model's ports (plus the OVS tunnel and VNI records), sampling 1:400;
* NetFlow v5: datagrams of 30 records between the model's ports with input ofports.

For each protocol the rate is raised geometrically until a trial loses anything, then
bisected. A trial passes ("zero loss") when every datagram sent was received and decoded
(service counters == sent, kernel socket drops 0, no malformed) AND the collector drained
its backlog within `--lag` seconds of the last send, so the socket buffer did not hide a
collector slower than the sender. CPU seconds per million records are the child's
utime+stime (/proc/<pid>/stat) over the best passing trial.

If `nfcapd` / `sfcapd` (Debian: `apt-get install nfdump nfdump-sflow`) are installed, the
same datagrams are replayed to them at the same rate and their CPU seconds per million
records are read from /proc/<pid>/stat, and the ratio printed.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from topology.model import Binding, Host, Model, Network, Port, Tenant  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SFLOW_PER_DGRAM = 8
NF5_PER_DGRAM = 30
HOSTS = ("hv1", "hv2", "hv3")
MGMT = {f"127.0.0.{10 + i}": h for i, h in enumerate(HOSTS)}  # exporter address -> host
EXPORTER_OF = {h: a for a, h in MGMT.items()}


# ------------------------------------------------------------------ model and traffic


def synthetic_model(tenants=("red", "blue"), nets=4, ports_per_net=16) -> Model:
    """Tenants with identical CIDRs and MACs; ports spread round-robin over the hosts."""
    m = Model()
    vni = 5000
    for t in tenants:
        m.tenants[t] = Tenant(f"t-{t}", t)
        for n in range(nets):
            vni += 1
            uuid = f"n-{t}-{n}"
            m.networks[uuid] = Network(uuid, t, f"net{n}", f"10.{n}.0.0/24", vni)
            for p in range(ports_per_net):
                pu = f"p-{t}-{n}-{p}"
                m.ports[pu] = Port(pu, t, f"net{n}", f"vm{p}", f"52:54:00:00:{n:02x}:{p:02x}",
                                   (f"10.{n}.0.{10 + p}",))
                host = HOSTS[p % len(HOSTS)]
                m.bindings[pu] = Binding(pu, host, 10 + (len(m.bindings) % 200))
    for i, h in enumerate(HOSTS):
        m.hosts[h] = Host(h, f"172.16.0.{1 + i}", "unix:/dev/null")
    return m


def flows(model: Model, count: int = 1024) -> list[tuple]:
    """(src port, dst port, vni, src binding) pairs inside each network, cycled to `count`."""
    nets = {(n.tenant, n.name): n for n in model.networks.values()}
    by_net: dict = {}
    for p in model.ports.values():
        by_net.setdefault((p.tenant, p.network), []).append(p)
    out = []
    while len(out) < count:
        for key, ports in by_net.items():
            for i, a in enumerate(ports):
                b = ports[(i + 1 + len(out) // 97) % len(ports)]
                if a is not b:
                    out.append((a, b, nets[key].vni, model.bindings[a.uuid]))
    return out[:count]


def _xdr(fmt: int, body: bytes) -> bytes:
    return struct.pack("!II", fmt, len(body)) + body + b"\0" * (-len(body) % 4)


def _ip(a: str) -> bytes:
    return socket.inet_aton(a)


def vxlan_header(src: Port, dst: Port, vni: int, i: int) -> bytes:
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1400, i & 0xFFFF, 0x4000, 64, 6, 0,
                           _ip(src.ips[0]), _ip(dst.ips[0]))
    tcp = struct.pack("!HHIIHHHH", 30000 + i % 1000, 443, 1, 0, 0x5018, 65535, 0, 0)
    inner = (bytes.fromhex(dst.mac.replace(":", "")) + bytes.fromhex(src.mac.replace(":", ""))
             + b"\x08\x00" + inner_ip + tcp)
    vx = struct.pack("!B3xI", 0x08, vni << 8)
    udp = struct.pack("!HHHH", 49152 + i % 1024, 4789, 8 + len(vx) + len(inner) + 1400, 0)
    outer_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1450, 0, 0x4000, 64, 17, 0,
                           _ip("172.16.0.1"), _ip("172.16.0.2"))
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + outer_ip + udp + vx + inner
    return (frame + b"\xab" * 128)[:128]


def sflow_datagrams(model: Model, n: int = 256, vni_record: bool = True) -> dict[str, list[bytes]]:
    """Per exporter address, `n` datagrams; each sample is counted on its exporter (sender).

    `vni_record=False` leaves out the VNI record (1029), which sfcapd 1.7 rejects whole
    datagrams for ("flow_sample_element length error"); the header still carries the VNI."""
    fl = flows(model)
    out: dict[str, list[bytes]] = {a: [] for a in MGMT}
    by_host: dict[str, list] = {}
    for f in fl:
        by_host.setdefault(f[3].host, []).append(f)
    for addr, host in MGMT.items():
        mine = by_host.get(host, [])
        for seq in range(n):
            samples = []
            for k in range(SFLOW_PER_DGRAM):
                i = seq * SFLOW_PER_DGRAM + k
                src, dst, vni, b = mine[i % len(mine)]
                header = vxlan_header(src, dst, vni, i)
                recs = [_xdr(1, struct.pack("!IIII", 1, 1518, 4, len(header)) + header),
                        _xdr(1023, struct.pack("!II4s4sIIII", 0, 17, _ip("172.16.0.1"),
                                               _ip("172.16.0.2"), 49152, 4789, 0, 0))]
                if vni_record:
                    recs.append(_xdr(1029, struct.pack("!I", vni)))
                body = struct.pack("!IIIIIIII", i, 3, 400, i * 400, 0, b.ofport, 60000,
                                   len(recs)) + b"".join(recs)
                samples.append(_xdr(1, body))
            out[addr].append(struct.pack("!II4sIIII", 5, 1, _ip(addr), 0, seq, 1000,
                                         SFLOW_PER_DGRAM) + b"".join(samples))
    return out


def netflow5_datagrams(model: Model, n: int = 256) -> dict[str, list[bytes]]:
    """Per exporter address, `n` datagrams of 30 records with input ofports (no VNI)."""
    fl = flows(model)
    out: dict[str, list[bytes]] = {a: [] for a in MGMT}
    by_host: dict[str, list] = {}
    for f in fl:
        by_host.setdefault(f[3].host, []).append(f)
    for addr, host in MGMT.items():
        mine = by_host.get(host, [])
        for seq in range(n):
            recs = []
            for k in range(NF5_PER_DGRAM):
                i = seq * NF5_PER_DGRAM + k
                src, dst, _vni, b = mine[i % len(mine)]
                recs.append(struct.pack("!4s4s4sHHIIIIHHxBBBHHBBxx", _ip(src.ips[0]),
                                        _ip(dst.ips[0]), bytes(4), b.ofport, 60000, 10,
                                        15000, 1000, 2000, 40000 + k, 443, 0x1B, 6, 0, 0, 0,
                                        24, 24))
            out[addr].append(struct.pack("!HHIIIIBBH", 5, NF5_PER_DGRAM, 5000, 1_700_000_000,
                                         0, seq * NF5_PER_DGRAM, 0, 0, 0) + b"".join(recs))
    return out


def interleave(per_exporter: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    lists = list(per_exporter.items())
    out = []
    for i in range(max(len(v) for _, v in lists)):
        for addr, v in lists:
            out.append((addr, v[i % len(v)]))
    return out


# ------------------------------------------------------------------ collector child


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _collector_child(conn) -> None:
    from collectors.service import CollectorService
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {0})
        except OSError:
            pass
    model = synthetic_model()
    svc = CollectorService(model, sflow=("127.0.0.1", 0), netflow=("127.0.0.1", 0),
                           exporter_hosts=MGMT).start()
    conn.send(svc.addresses)
    while True:
        cmd = conn.recv()
        if cmd == "status":
            st = svc.status()
            conn.send({"protocols": st["protocols"], "sockets": st["sockets"],
                       "errors": st["errors"], "cpu": cpu_seconds(os.getpid()),
                       "aggregate": st["aggregate"]})
        elif cmd == "matrix":
            svc.flush()
            conn.send(svc.top(5, by="tenant"))
        elif cmd == "stop":
            svc.stop()
            conn.send("stopped")
            return


class Collector:
    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_collector_child, args=(child,), daemon=True)
        self.proc.start()
        self.addresses = self.conn.recv()

    def status(self) -> dict:
        self.conn.send("status")
        return self.conn.recv()

    def call(self, cmd: str):
        self.conn.send(cmd)
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.call("stop")
        finally:
            self.proc.join(5)


# ------------------------------------------------------------------ sender


def senders() -> dict[str, socket.socket]:
    """One UDP socket per exporter address (127.0.0.10-12), so exporters are distinct."""
    out = {}
    for addr in MGMT:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((addr, 0))
        out[addr] = s
    return out


def replay(socks: dict, stream: list[tuple[str, bytes]], dest, rate_dgrams: float,
           seconds: float) -> tuple[int, float]:
    """Send datagrams at `rate_dgrams`/s for `seconds` in 1 ms slots; (sent, elapsed)."""
    total = max(1, int(rate_dgrams * seconds))
    per_slot = rate_dgrams / 1000.0
    sent = 0
    n = len(stream)
    sendto = {a: s.sendto for a, s in socks.items()}
    t0 = time.perf_counter()
    slot = 0
    credit = 0.0
    while sent < total:
        slot += 1
        credit += per_slot
        k = min(int(credit), total - sent)
        credit -= k
        for _ in range(k):
            addr, d = stream[sent % n]
            sendto[addr](d, dest)
            sent += 1
        target = t0 + slot / 1000.0
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return sent, time.perf_counter() - t0


def _counts(st: dict, kind: str, protos: tuple[str, ...]) -> tuple[int, int, int, int]:
    sock = st["sockets"][kind]
    dg = sock["datagrams"]
    recs = sum(st["protocols"][p]["flows"] for p in protos)
    bad = sum(st["protocols"][p]["malformed"] for p in protos) + st["errors"]
    return dg, recs, bad, sock["kernel_drops"] or 0


def trial(col: Collector, socks, stream, kind: str, protos, per_dgram: int, rate_records: float,
          seconds: float, lag: float) -> dict:
    dest = col.addresses[kind]
    before = col.status()
    dg0, rec0, bad0, drop0 = _counts(before, kind, protos)
    sent, elapsed = replay(socks, stream, dest, rate_records / per_dgram, seconds)
    t_end = time.perf_counter()
    drained_at = None
    while True:
        st = col.status()
        dg, recs, bad, drops = _counts(st, kind, protos)
        if dg - dg0 >= sent and drained_at is None:
            drained_at = time.perf_counter() - t_end
        if drained_at is not None or time.perf_counter() - t_end > max(2.0, 2 * lag):
            break
        time.sleep(0.005)
    got = dg - dg0
    ok = (got == sent and recs - rec0 == sent * per_dgram and bad == bad0 and drops == drop0
          and drained_at is not None and drained_at <= lag)
    return {"rate": rate_records, "sent": sent, "received": got, "records": recs - rec0,
            "drops": drops - drop0, "malformed": bad - bad0, "elapsed": elapsed,
            "lag": drained_at, "ok": ok, "cpu": st["cpu"] - before["cpu"],
            "achieved": sent * per_dgram / elapsed}


def search(col, socks, stream, kind, protos, per_dgram, start, seconds, lag, steps, log):
    """Raise the rate x1.25 until a trial fails, then bisect `steps` times."""
    best = None
    lo, hi = None, None
    rate = start
    for _ in range(30):
        t = trial(col, socks, stream, kind, protos, per_dgram, rate, seconds, lag)
        log(t)
        if t["ok"]:
            best, lo = t, rate
            rate *= 1.25
        else:
            hi = rate
            break
        time.sleep(0.2)
    if lo is None:  # even the start rate failed: go down
        hi = start
        rate = start
        while lo is None and rate > 1000:
            rate /= 2
            t = trial(col, socks, stream, kind, protos, per_dgram, rate, seconds, lag)
            log(t)
            if t["ok"]:
                best, lo = t, rate
            else:
                hi = rate
    for _ in range(steps if lo is not None and hi is not None else 0):
        mid = (lo + hi) / 2
        time.sleep(0.2)
        t = trial(col, socks, stream, kind, protos, per_dgram, mid, seconds, lag)
        log(t)
        if t["ok"]:
            best, lo = t, mid
        else:
            hi = mid
    return best


# ------------------------------------------------------------------ nfcapd / sfcapd


def _pin_core0() -> None:
    """Run the reference collector on the core the weft collector had (not the sender's)."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {0})
        except OSError:
            pass


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nfdump_tool(tool: str, socks, stream, per_dgram: int, rate_records: float,
                seconds: float) -> dict | None:
    """Replay to nfcapd/sfcapd; their CPU seconds and how many flows they stored."""
    path = shutil.which(tool)
    if path is None:
        return None
    port = _free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = None
        for flag in ("-w", "-l"):  # nfdump >= 1.7 uses -w, older -l
            cmd = [path, "-b", "127.0.0.1", "-p", str(port), flag, d, "-t", "3600",
                   "-B", str(32 << 20)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    preexec_fn=_pin_core0)
            time.sleep(0.7)
            if proc.poll() is None:
                break
            proc = None
        if proc is None:
            return {"error": f"{tool} did not start"}
        try:
            c0 = cpu_seconds(proc.pid)
            sent, elapsed = replay(socks, stream, ("127.0.0.1", port),
                                   rate_records / per_dgram, seconds)
            time.sleep(0.5)
            cpu = cpu_seconds(proc.pid) - c0
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stored = _stored_flows(d)
    return {"sent_records": sent * per_dgram, "cpu": cpu, "elapsed": elapsed, "stored": stored}


def _stored_flows(directory: str) -> int | None:
    nfdump = shutil.which("nfdump")
    if nfdump is None:
        return None
    total = 0
    found = False
    for f in Path(directory).rglob("nfcapd.*"):
        found = True
        out = subprocess.run([nfdump, "-r", str(f), "-I"], capture_output=True, text=True,
                             timeout=60).stdout
        for line in out.splitlines():
            if line.startswith("Flows:"):
                total += int(line.split(":", 1)[1].strip())
                break
    return total if found else None


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", type=float, default=3.0, help="seconds per trial (default 3)")
    ap.add_argument("--lag", type=float, default=0.25,
                    help="max seconds to drain the backlog after the last send (default 0.25)")
    ap.add_argument("--steps", type=int, default=3, help="bisection steps (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 s trials, 1 bisection step")
    ap.add_argument("--no-nfdump", action="store_true", help="skip nfcapd/sfcapd")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every trial")
    args = ap.parse_args()
    if args.quick:
        args.trial, args.steps = 1.0, 1

    model = synthetic_model()
    sf = interleave(sflow_datagrams(model))
    sf_ref = interleave(sflow_datagrams(model, vni_record=False))
    nf = interleave(netflow5_datagrams(model))
    socks = senders()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        try:
            os.sched_setaffinity(0, {1})
        except OSError:
            pass

    def log(t):
        if args.verbose:
            lag = "-" if t["lag"] is None else f"{t['lag']:.3f}s"
            print(f"  trial {t['rate']:>11,.0f}/s sent {t['sent']:>7} recv {t['received']:>7} "
                  f"drops {t['drops']} lag {lag} cpu {t['cpu']:.2f}s "
                  f"{'ok' if t['ok'] else 'LOSS/LAG'}", flush=True)

    col = Collector()
    results = {}
    try:
        print(f"python {sys.version.split()[0]}, collector pinned to one core, "
              f"trial {args.trial:g}s, max drain lag {args.lag:g}s", flush=True)
        for name, stream, kind, protos, per, start, goal in (
                ("sFlow flow samples (VXLAN)", sf, "sflow", ("sflow",), SFLOW_PER_DGRAM,
                 80_000, 100_000),
                ("NetFlow v5 records", nf, "netflow", ("netflow5",), NF5_PER_DGRAM,
                 400_000, 500_000)):
            if args.verbose:
                print(name, flush=True)
            best = search(col, socks, stream, kind, protos, per, start, args.trial, args.lag,
                          args.steps, log)
            results[name] = (best, goal, sf_ref if kind == "sflow" else stream, per)
        sample = col.call("matrix")
    finally:
        col.close()

    print()
    print(f"{'path':<30} {'zero-loss rate':>16} {'cpu s / 1M rec':>15}  goal")
    for name, (best, goal, _s, _p) in results.items():
        if best is None:
            print(f"{name:<30} {'none':>16} {'-':>15}  {goal:,}/s: BELOW")
            continue
        per_m = best["cpu"] / (best["sent"] * _p) * 1e6
        verdict = "ok" if best["rate"] >= goal else "BELOW"
        print(f"{name:<30} {best['rate']:>14,.0f}/s {per_m:>15.2f}  {goal:,}/s: {verdict}"
              f"  (sender achieved {best['achieved']:,.0f}/s, drain lag {best['lag']:.3f}s)")
    print("top tenant pairs seen:", ", ".join(f"{r['src']}->{r['dst']}" for r in sample))

    if args.no_nfdump:
        return 0
    tools = (("sfcapd", "sFlow flow samples (VXLAN)"), ("nfcapd", "NetFlow v5 records"))
    if not any(shutil.which(t) for t, _ in tools):
        print("nfcapd/sfcapd not installed: `apt-get install nfdump nfdump-sflow` "
              "to compare (skipped)")
        return 0
    print()
    print(f"{'reference':<30} {'rate':>16} {'cpu s / 1M rec':>15}  weft/ref cpu  stored")
    for tool, name in tools:
        best, _goal, stream, per = results[name]
        if best is None:
            continue
        if shutil.which(tool) is None:
            print(f"{tool:<30} not installed (apt-get install "
                  f"{'nfdump-sflow' if tool == 'sfcapd' else 'nfdump'})")
            continue
        r = nfdump_tool(tool, socks, stream, per, best["rate"], args.trial)
        if r is None or "error" in r:
            print(f"{tool:<30} {r and r.get('error')}")
            continue
        ref = r["cpu"] / r["sent_records"] * 1e6
        ours = best["cpu"] / (best["sent"] * per) * 1e6
        ratio = f"{ours / ref:.1f}x" if ref > 0 else "n/a (below clock tick)"
        stored = "-" if r["stored"] is None else f"{r['stored']:,}/{r['sent_records']:,}"
        print(f"{tool:<30} {best['rate']:>14,.0f}/s {ref:>15.2f}  {ratio:>12}  {stored}")
    print("(sfcapd is sent the same datagrams without the VNI record 1029, which it rejects;"
          " nfcapd/sfcapd store flows, they do not decode VXLAN or attribute)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
