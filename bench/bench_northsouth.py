"""North-south throughput: TCP to and from the outside through SNAT and floating IPs, against east-west.

One 2-host lab, all paths measured in the same run, alternated round by round:
  east-west   VM on hv2 -> VM on hv1 (same network, VXLAN): the lab's reference
  snat        VM on hv2 -> outside: routed on hv2, tunnelled to hv1 (the gateway host),
              conntrack SNAT there, out of hv1's provider bridge
  fip-out     VM on hv2 with a floating IP -> outside: translated on hv2, straight out
  fip-in      outside -> the floating IP -> VM on hv2 (DNAT, then the port's security group)
Prints per-path medians (Gbit/s), each path's ratio to east-west, and the machine's load.
No peer: the benchmark peers (/work/shared/bench) have no north-south set-up yet.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import WEFT, BenchLab  # noqa: E402

LAB = BenchLab("benchns")
weft = LAB.weft
EDGE, FIP = "203.0.113.1", "203.0.113.50"


def iperf(client: str, server: str, ip: str, seconds: int) -> float:
    import json
    srv = subprocess.Popen([WEFT, "lab", "exec", server, "--", "iperf3", "-s", "-1"], env=LAB.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        out = weft("lab", "exec", client, "--", "iperf3", "-c", ip, "-t", str(seconds), "-J")
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def setup():
    weft("lab", "down", check=False)
    weft("lab", "up", "--hosts", "2")
    weft("tenant", "create", "admin")
    weft("network", "create", "admin/ext", "--cidr", "203.0.113.0/24", "--external")
    weft("tenant", "create", "t")
    weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
    weft("router", "create", "t/r")
    weft("router", "attach", "t/r", "t/n")
    weft("router", "gateway", "set", "t/r", "admin/ext", "--host", "hv1")
    weft("sg", "create", "t/open")
    weft("sg", "rule", "add", "t/open", "--direction", "egress")
    weft("sg", "rule", "add", "t/open", "--direction", "ingress", "--remote-cidr", "0.0.0.0/0")
    for vm, host in (("a", "hv2"), ("b", "hv1"), ("f", "hv2")):
        weft("port", "create", f"t/n/{vm}", "--sg", "t/open")
        weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
    weft("fip", "create", "t", "--external", "admin/ext", "--ip", FIP)
    weft("fip", "associate", FIP, "t/n/f")
    b_ip = weft("port", "show", "t/n/b", "-o", "json")
    import json
    deadline = time.monotonic() + 30
    while subprocess.run([WEFT, "lab", "exec", "a", "--", "ping", "-c1", "-W1", EDGE], env=LAB.env,
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the outside is not reachable")
    return json.loads(b_ip)["ip"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab)")
    try:
        b_ip = setup()
        paths = {"east-west": ("a", "b", b_ip), "snat": ("a", "outside", EDGE),
                 "fip-out": ("f", "outside", EDGE), "fip-in": ("outside", "f", FIP)}
        got = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, (client, server, ip) in paths.items():
                got[name].append(iperf(client, server, ip, args.seconds))
        print(f"load: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        base = statistics.median(got["east-west"])
        for name, runs in got.items():
            med = statistics.median(runs)
            print(f"{name:10s} median {med:.2f} Gbit/s  ratio to east-west {med / base:.2f}  "
                  f"[{', '.join(f'{x:.2f}' for x in runs)}]")
    finally:
        weft("lab", "down", check=False)


if __name__ == "__main__":
    main()
