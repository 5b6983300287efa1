"""TCP throughput, routed vs switched, between VMs on different hosts (iperf3, same run, alternating).

switched: a (10.0.0.0/24 on hv1) -> b (10.0.0.0/24 on hv2)
routed:   a (10.0.0.0/24 on hv1) -> c (10.0.1.0/24 on hv2), through the distributed router
Prints the median of several alternating rounds and the ratio routed/switched (goal >= 0.9).
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import BenchLab  # noqa: E402

LAB = BenchLab("benchrt")
weft, iperf = LAB.weft, LAB.iperf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    weft("lab", "down", check=False)
    weft("lab", "up", "--hosts", "2")
    try:
        weft("tenant", "create", "t")
        weft("network", "create", "t/n0", "--cidr", "10.0.0.0/24")
        weft("network", "create", "t/n1", "--cidr", "10.0.1.0/24")
        weft("router", "create", "t/r")
        weft("router", "attach", "t/r", "t/n0")
        weft("router", "attach", "t/r", "t/n1")
        for vm, net, host, ip in (("a", "n0", "hv1", "10.0.0.10"), ("b", "n0", "hv2", "10.0.0.20"),
                                  ("c", "n1", "hv2", "10.0.1.20")):
            weft("port", "create", f"t/{net}/{vm}", "--ip", ip)
            weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/{net}/{vm}")
        switched, routed = [], []
        for _ in range(args.rounds):
            switched.append(iperf("a", "b", "10.0.0.20", args.seconds))
            routed.append(iperf("a", "c", "10.0.1.20", args.seconds))
        s, r = statistics.median(switched), statistics.median(routed)
        print(f"switched (same subnet, across hosts): median {s:.2f} Gbit/s  "
              f"[{', '.join(f'{x:.2f}' for x in switched)}]")
        print(f"routed (across subnets and hosts):    median {r:.2f} Gbit/s  "
              f"[{', '.join(f'{x:.2f}' for x in routed)}]")
        print(f"ratio routed/switched: {r / s:.3f} (goal >= 0.90)")
    finally:
        weft("lab", "down", check=False)


if __name__ == "__main__":
    main()
