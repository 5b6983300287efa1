"""Security-group cost: TCP throughput with a 20-rule group vs none (same run), and flow counts.

1. Two VM pairs across hv1 -> hv2 in one lab: one pair without security groups, one pair in a
   20-rule group (conntrack on both ends). iperf3 alternates between them for several rounds;
   prints the medians and the ratio (goal >= 0.85).
2. The flows of a host with 50 ports in 10 groups whose rules reference each other, as
   compiled (conjunctive matches), against the naive members x rules x ports count.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import BenchLab  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.unit.test_flows_acl import count_flows  # noqa: E402  (the same scenario the tests check)

LAB = BenchLab("benchsg")
weft, iperf = LAB.weft, LAB.iperf


def throughput(rounds, seconds):
    weft("lab", "down", check=False)
    weft("lab", "up", "--hosts", "2")
    try:
        weft("tenant", "create", "t")
        weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        weft("sg", "create", "t/g20")
        weft("sg", "rule", "add", "t/g20", "--direction", "egress")
        weft("sg", "rule", "add", "t/g20", "--direction", "ingress", "--proto", "tcp", "--port", "5201",
             "--remote-sg", "t/g20")
        for i in range(18):
            weft("sg", "rule", "add", "t/g20", "--direction", "ingress", "--proto", "tcp" if i % 2 else "udp",
                 "--port", str(2000 + 10 * i), "--remote-cidr", f"10.{i}.0.0/16")
        rules = len(json.loads(weft("sg", "show", "t/g20", "-o", "json"))["rules"])
        for vm, host, ip, sg in (("plain1", "hv1", "10.0.0.11", None), ("plain2", "hv2", "10.0.0.12", None),
                                 ("sg1", "hv1", "10.0.0.21", "t/g20"), ("sg2", "hv2", "10.0.0.22", "t/g20")):
            extra = ["--sg", sg] if sg else []
            weft("port", "create", f"t/n/{vm}", "--ip", ip, *extra)
            if not sg:
                weft("port", "update", f"t/n/{vm}", "--no-sg")
            weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
        plain, guarded = [], []
        for _ in range(rounds):
            plain.append(iperf("plain1", "plain2", "10.0.0.12", seconds))
            guarded.append(iperf("sg1", "sg2", "10.0.0.22", seconds))
        p, g = statistics.median(plain), statistics.median(guarded)
        print(f"no security groups:        median {p:.2f} Gbit/s  [{', '.join(f'{x:.2f}' for x in plain)}]")
        print(f"{rules}-rule group, both ends: median {g:.2f} Gbit/s  [{', '.join(f'{x:.2f}' for x in guarded)}]")
        print(f"ratio with/without: {g / p:.3f} (goal >= 0.85)")
    finally:
        weft("lab", "down", check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--no-lab", action="store_true", help="only the flow counts")
    args = ap.parse_args()
    for ports in (50, 100):
        flows, naive = count_flows(n_ports=ports)
        print(f"ACL flows, {ports} ports in 10 groups referencing each other: {flows} compiled "
              f"(conjunctions) vs {naive} naive remote-group flows alone (members x rules x ports)")
    if not args.no_lab:
        throughput(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
