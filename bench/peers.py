"""Port-up peers (the no-controller floor, OVN 23.03): run the shared scripts, parse their per-run figures."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

PEER_DIR = os.environ.get("WEFT_PEER_BENCH", "/work/shared/bench")


@dataclass
class Peer:
    """One peer script: its name, the prefix its lab uses (/tmp/PREFIX, namespaces PREFIX*), what it runs."""
    name: str
    script: str
    prefix: str
    tunnel: str
    run_re: str

    def parse(self, out: str) -> list[float | None]:
        """Per-run port-up in ms, None for a run without a reply."""
        found = []
        for m in re.finditer(self.run_re, out, re.M):
            found += [None if v == "none" else float(v) for v in m.group(1).split()]
        return found


FLOOR = Peer("floor", "floor_port_up.sh", "flr", "vxlan (static remote_ip, NORMAL bridges, static ARP)",
             r"^floor runs: (.*)$")
OVN = Peer("ovn", "ovn_port_up.sh", "ovn", "geneve (OVN always runs Geneve)", r"^run \d+: (\S+)$")


def ensure_ovn() -> None:
    """Install Debian's OVN 23.03 when missing: a benchmark-only dependency, not in scripts/setup.sh."""
    if shutil.which("ovn-northd") and shutil.which("ovn-controller") and shutil.which("ovn-nbctl"):
        return
    print("installing ovn-central ovn-host (benchmark-only dependency)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "ovn-central", "ovn-host"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def ovn_northd_scale(tenants: int, ports_per_tenant: int) -> dict:
    """ovn-northd alone on T tenants of P ports with a port group and 3 stateful ACLs each (the
    shared ovn_northd_scale.sh): {"full_compute_ms", "port_add_ms": [...], "rss_mb", "lflows"}."""
    ensure_ovn()
    out = subprocess.run(["bash", os.path.join(PEER_DIR, "ovn_northd_scale.sh"), str(tenants),
                          str(ports_per_tenant)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"ovn_northd_scale.sh failed: {out.stderr.strip()[-500:]}")
    text = out.stdout
    full = re.search(r"full_compute_ms=(\d+) lflows=(\d+)", text)
    rss = re.search(r"rss_mb=(\d+)", text)
    return {"full_compute_ms": int(full.group(1)) if full else None,
            "lflows": int(full.group(2)) if full else None,
            "port_add_ms": [int(v) for v in re.findall(r"port_add_ms=(\d+)", text)],
            "rss_mb": int(rss.group(1)) if rss else None}


def _in_use(peer: Peer) -> bool:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return os.path.exists(f"/tmp/{peer.prefix}") or any(
        line.split()[0].startswith(peer.prefix) for line in names.splitlines() if line.strip())


def _wait_free(peer: Peer, timeout: float) -> None:
    """The peer scripts tear down /tmp/PREFIX first: never start while another run of it is live."""
    deadline = time.monotonic() + timeout
    while _in_use(peer):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name}: /tmp/{peer.prefix} or its namespaces exist (another run of "
                               f"{peer.script}?); not touching them")
        time.sleep(2)


def _owned_pid(pidfile: str, marker: str) -> int | None:
    try:
        pid = int(open(pidfile).read().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def _cleanup(peer: Peer) -> None:
    """Undo what an interrupted run of the peer's script (ours) left: its daemons by pid file, then its lab."""
    base = f"/tmp/{peer.prefix}"
    if not _in_use(peer):
        return
    for sub in ("central", "hv1", "hv2"):
        d = os.path.join(base, sub)
        for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            pid = _owned_pid(os.path.join(d, f), base) if f.endswith(".pid") else None
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
    subprocess.run(["bash", os.path.join(PEER_DIR, "lab.sh"), "down", "2", peer.prefix],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop every process left in the session our child `proc` leads (by its pgid = proc.pid)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()
            time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def run(peer: Peer, runs: int, timeout: float = 600) -> tuple[list[float | None], str]:
    """Run `SCRIPT RUNS` once; (per-run ms, output). Whatever it started is gone afterwards, on every path."""
    _wait_free(peer, timeout=120)
    proc = subprocess.Popen(["bash", os.path.join(PEER_DIR, peer.script), str(runs)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    clean = False
    try:
        out, _ = proc.communicate(timeout=timeout)
        clean = proc.returncode == 0
    finally:
        # the session our own child leads holds only what the script started: floor_port_up.sh's
        # `kill $pp` stops the subshell, not its `ping`, which is left running, orphaned, in it
        _stop_group(proc)
        if not clean:
            _cleanup(peer)
    if not clean:
        raise RuntimeError(f"{peer.script} {runs} failed (exit {proc.returncode}):\n{out[-2000:]}")
    return peer.parse(out), out
