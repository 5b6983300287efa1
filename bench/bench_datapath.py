"""TCP between VMs on two hosts: the no-controller ceiling, OVN 23.03 and weft, alternating in one run.

Three 2-host labs are up at once (the ceiling's and OVN's from bench/dplabs.py, weft's own
bench lab) and each round runs one iperf3 (VM on hv1 -> VM on hv2, --seconds) on each in turn,
so all three see the same machine. First without security groups/ACLs; then with 20
stateful rules on both VMs (OVN: ovn_peer_more.sh's 19 allow-related to-lport ACLs and a
drop; weft: a group with the same 19 ingress rules and egress to anywhere) for OVN and weft.
weft always runs with its defaults, exporters on (sFlow, NetFlow, IPFIX), on a lab laid out
like the peers' (`weft lab up --no-provider`: no provider bridge, which the peers do not have
either; Open vSwitch's main loop works for every bridge on each pass, ~3 % of a packet's
cost there). Last, unless
--no-jumbo, weft again on a 9000-byte underlay (VM MTU 8950; printed, no ratio: OVN could do
the same). Medians of --runs; every run is printed. Last line:

  datapath weft_gbps=X ovn_gbps=Y ceiling_gbps=C ratio=X/Y ceiling_ratio=X/C
           sg_weft_gbps=A sg_ovn_gbps=B sg_ratio=A/B [jumbo_weft_gbps=J]

Needs root; installs Debian's OVN when missing (benchmark-only). Figures printed, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import BenchLab  # noqa: E402
from dplabs import CeilingLab, OvnLab, iperf  # noqa: E402
from peers import ensure_ovn  # noqa: E402

SG_TCP_PORTS = range(2001, 2019)
IPERF_PORTS = "5400-5499"           # allowed by both systems' rules


class WeftLab:
    """weft's side: its own bench lab, VMs a (hv1) and b (hv2) on one network."""

    def __init__(self, name: str, underlay_mtu: int = 1500):
        self.lab = BenchLab(name)
        self.underlay_mtu = underlay_mtu
        self.started = False

    def up(self) -> None:
        if self.lab.exists():
            raise SystemExit(f"{self.lab.dir} exists (another bench run, or a crashed one: then "
                             f"`WEFT_LAB={Path(self.lab.dir).name} WEFT_RUN_DIR=/run/weft-bench weft lab down`)")
        self.started = True
        w = self.lab.weft
        w("lab", "up", "--hosts", "2", "--no-provider", "--underlay-mtu", str(self.underlay_mtu))
        w("tenant", "create", "t")
        w("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("a", "hv1", "10.0.0.11"), ("b", "hv2", "10.0.0.12")):
            w("port", "create", f"t/n/{vm}", "--ip", ip)
            w("port", "update", f"t/n/{vm}", "--no-sg")
            w("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
        w("lab", "exec", "a", "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12")
        state = self.lab.state()
        self.client_ns, self.server_ns = state["vms"]["a"]["ns"], state["vms"]["b"]["ns"]

    def security_group(self) -> None:
        w = self.lab.weft
        w("sg", "create", "t/g20")
        for port in SG_TCP_PORTS:
            w("sg", "rule", "add", "t/g20", "--direction", "ingress", "--proto", "tcp", "--port", str(port))
        w("sg", "rule", "add", "t/g20", "--direction", "ingress", "--proto", "tcp", "--port", IPERF_PORTS)
        w("sg", "rule", "add", "t/g20", "--direction", "egress", "--proto", "any")
        for vm in ("a", "b"):
            w("port", "update", f"t/n/{vm}", "--sg", "t/g20")

    def iperf(self, port: int, seconds: int) -> float:
        return iperf(self.client_ns, self.server_ns, "10.0.0.12", port, seconds)

    def down(self) -> None:
        if self.started:
            self.started = False
            self.lab.weft("lab", "down", check=False)


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--no-jumbo", action="store_true", help="skip weft on a 9000-byte underlay")
    args = ap.parse_args()
    ensure_ovn()
    ceiling, ovn, weft = CeilingLab("dpc"), OvnLab("dpo"), WeftLab("benchdp")
    res: dict[str, list[float]] = {k: [] for k in ("ceiling", "ovn", "weft", "sg_ovn", "sg_weft", "jumbo_weft")}
    port = iter(range(5401, 5500))
    try:
        for lab in (ceiling, ovn):
            lab.up()
        weft.up()
        systems = (("ceiling", lambda p: iperf("dpcvm1", "dpcvm2", "10.0.0.2", p, args.seconds)),
                   ("ovn", lambda p: iperf("dpovm1", "dpovm2", "10.0.0.2", p, args.seconds)),
                   ("weft", lambda p: weft.iperf(p, args.seconds)))
        for i in range(1, args.runs + 1):
            for name, run in systems:
                res[name].append(run(next(port)))
            print(f"round {i}: " + " ".join(f"{n}={res[n][-1]:.3f}" for n, _ in systems), flush=True)
        ceiling.down()
        ovn.acls()
        weft.security_group()
        for i in range(1, args.runs + 1):
            res["sg_ovn"].append(iperf("dpovm1", "dpovm2", "10.0.0.2", next(port), args.seconds))
            res["sg_weft"].append(weft.iperf(next(port), args.seconds))
            print(f"sg round {i}: ovn={res['sg_ovn'][-1]:.3f} weft={res['sg_weft'][-1]:.3f}", flush=True)
        ovn.down()
        weft.down()
        if not args.no_jumbo:
            jumbo = WeftLab("benchdp9", underlay_mtu=9000)
            try:
                jumbo.up()
                for i in range(1, args.runs + 1):
                    res["jumbo_weft"].append(jumbo.iperf(next(port), args.seconds))
                    print(f"jumbo round {i}: weft={res['jumbo_weft'][-1]:.3f}", flush=True)
            finally:
                jumbo.down()
    finally:
        ceiling.down()
        ovn.down()
        weft.down()
    for k, v in res.items():
        if v:
            print(f"{k:11s} runs (Gbit/s): {fmt(v)}  median {statistics.median(v):.3f}")
    med = {k: statistics.median(v) for k, v in res.items() if v}
    line = (f"datapath weft_gbps={med['weft']:.3f} ovn_gbps={med['ovn']:.3f} ceiling_gbps={med['ceiling']:.3f} "
            f"ratio={med['weft'] / med['ovn']:.2f} ceiling_ratio={med['weft'] / med['ceiling']:.2f} "
            f"sg_weft_gbps={med['sg_weft']:.3f} sg_ovn_gbps={med['sg_ovn']:.3f} "
            f"sg_ratio={med['sg_weft'] / med['sg_ovn']:.2f}")
    if "jumbo_weft" in med:
        line += f" jumbo_weft_gbps={med['jumbo_weft']:.3f}"
    print(line)


if __name__ == "__main__":
    main()
