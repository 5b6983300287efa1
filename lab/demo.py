"""The lab demo: hypervisors, two tenants on the same CIDR, VMs on several hosts, pings, isolation,
flows, then traffic between VMs and the who-talks-to-whom report."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

WEFT = str(Path(sys.executable).parent / "weft")

VMS = {  # tenant -> vm -> (host, ip)
    "red": {"red1": ("hv1", "10.0.0.11"), "red2": ("hv1", "10.0.0.12"), "red3": ("hv2", "10.0.0.13"),
            "red4": ("hv3", "10.0.0.14")},
    "blue": {"blue1": ("hv2", "10.0.0.11"), "blue2": ("hv3", "10.0.0.13")},
}


def weft(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    if not quiet:
        print(f"$ weft {' '.join(args)}", flush=True)
    proc = subprocess.run([WEFT, *args], text=True, capture_output=True)
    if not quiet:
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `weft {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def reach(src: str, ip: str) -> bool:
    return weft("lab", "exec", src, "--", "ping", "-c", "1", "-W", "1", ip, check=False,
                quiet=True).returncode == 0


def print_dashboard(kept: bool) -> None:
    """The dashboard's address (weftd serves it at /ui), signed in through the URL's fragment."""
    from lab import dashboard, datacentre
    status = datacentre.status()
    for svc in status["services"]:
        if svc.get("dashboard"):
            token = dashboard.read_token(status["run_dir"])
            print(f"\n# dashboard: {svc['dashboard']}  (API token in {status['run_dir']}/api.token)\n"
                  f"#   signed in: {svc['dashboard']}#token={token}\n"
                  f"#   {'open it in a browser on this machine' if kept else 'run the demo with --keep to leave it up'}",
                  flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()
    weft("lab", "down")
    failures = 0
    try:
        weft("lab", "up", "--hosts", "3")
        for tenant, vms in VMS.items():
            weft("tenant", "create", tenant)
            weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
            for vm, (host, ip) in vms.items():
                weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip)
                weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
        weft("host", "list")
        weft("port", "list")
        print("\n# reachability matrix (ping): every VM to every VM's address", flush=True)
        everyone = [(t, vm, host, ip) for t, vms in VMS.items() for vm, (host, ip) in vms.items()]
        for t1, src, h1, _ in everyone:
            for t2, dst, h2, ip in everyone:
                if src == dst:
                    continue
                if t1 != t2 and any(t == t1 and i == ip for t, _v, _h, i in everyone):
                    continue      # that address is also one of the source tenant's own VMs
                ok = reach(src, ip)
                expected = t1 == t2
                verdict = "ok" if ok == expected else "UNEXPECTED"
                failures += verdict != "ok"
                print(f"  {src:>5}@{h1} -> {dst:<5}@{h2} {ip:<10} {'reached' if ok else 'blocked':<8} {verdict}")
        weft("flows", "hv3")
        print("\n# traffic: iperf3 UDP red1 -> red3 (40 Mbit/s) and blue1 -> blue2 (20 Mbit/s), then the report",
              flush=True)
        streams = [("red1", "red3", "10.0.0.13", "40M"), ("blue1", "blue2", "10.0.0.13", "20M")]
        servers = [subprocess.Popen([WEFT, "lab", "exec", dst, "--", "iperf3", "-s", "-1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _src, dst, _ip, _rate in streams]
        time.sleep(0.5)
        clients = [subprocess.Popen([WEFT, "lab", "exec", src, "--", "iperf3", "-c", ip, "-u", "-b", rate,
                                     "-t", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for src, _dst, ip, rate in streams]
        for proc in clients + servers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        time.sleep(1)
        weft("traffic", "matrix", "--by", "vm")
        weft("traffic", "matrix", "--by", "tenant")
        weft("traffic", "top", "-n", "3")
        print_dashboard(args.keep)
        print(f"\ndemo finished: {'all as expected' if not failures else f'{failures} unexpected results'}")
    finally:
        if not args.keep:
            weft("lab", "down")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
