"""Port rate limits, weft against OVN 23.03 in one run: what a 50 Mbit/s limit lets through.

Two 2-host labs are up at once: weft's own bench lab (VM a on hv1 with `--egress-rate 50mbit
--ingress-rate 50mbit`, bursts 5mbit) and OVN's (bench/dplabs.py; `qos-add from-lport` and
`to-lport` rules on lsp1 with rate=50000 burst=5000, OVN's meters). Rounds alternate between the
two systems; each round measures, VM 1 -> VM 2 (egress of the limited port) and back (-R,
ingress): UDP offered at 70 Mbit/s (received payload rate) and TCP (--seconds each). Then weft's
packet-rate limit (`--pps 1000`: packets/s received of 3,000 offered; OVN has no such limit).
Medians of --rounds; every run printed with the machine's load. Last line:

  qos limit_mbps=50 weft_udp_mbps= ovn_udp_mbps= weft_tcp_mbps= ovn_tcp_mbps= weft_pps= (each
  the median over both directions)

Needs root; installs Debian's OVN when missing (benchmark-only). Figures printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_datapath import WeftLab  # noqa: E402
from dplabs import OvnLab, ns  # noqa: E402
from peers import ensure_ovn  # noqa: E402

LIMIT_MBIT, OFFERED_MBIT, PPS, PPS_LEN = 50, 70, 1000, 200


def run(client_ns: str, server_ns: str, ip: str, port: int, seconds: int, *args: str) -> dict:
    """One iperf3 run (server started fresh in server_ns), its JSON "end"."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while f":{port}" not in ns(server_ns, "ss", "-Hltn").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        out = ns(client_ns, "iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-O", "1", "-J",
                 *args, timeout=seconds + 30).stdout
        return json.loads(out)["end"]
    finally:
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def measure(client_ns, server_ns, ip, port, seconds) -> dict:
    """Mbit/s received through the limit: UDP and TCP, each way."""
    out = {}
    for way, extra in (("egress", ()), ("ingress", ("-R",))):
        udp = run(client_ns, server_ns, ip, next(port), seconds, "-u", "-b", f"{OFFERED_MBIT}M", "-w", "2M", *extra)
        tcp = run(client_ns, server_ns, ip, next(port), seconds, *extra)
        out[f"udp_{way}"] = udp["sum_received"]["bits_per_second"] / 1e6
        out[f"tcp_{way}"] = tcp["sum_received"]["bits_per_second"] / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    ensure_ovn()
    ovn, weft = OvnLab("bqo"), WeftLab("benchqos")
    port = iter(range(5401, 5600))
    res: dict[str, dict[str, list[float]]] = {"weft": {}, "ovn": {}}
    pps: list[float] = []
    try:
        ovn.up()
        ovn.nbctl("qos-add", "sw0", "from-lport", "100", 'inport == "lsp1"', f"rate={LIMIT_MBIT * 1000}", "burst=5000")
        ovn.nbctl("qos-add", "sw0", "to-lport", "100", 'outport == "lsp1"', f"rate={LIMIT_MBIT * 1000}", "burst=5000")
        ovn.nbctl("--wait=hv", "sync")
        weft.up()
        weft.lab.weft("--wait", "port", "update", "t/n/a", "--egress-rate", f"{LIMIT_MBIT}mbit", "--egress-burst",
                      "5mbit", "--ingress-rate", f"{LIMIT_MBIT}mbit", "--ingress-burst", "5mbit")
        systems = (("weft", lambda: measure(weft.client_ns, weft.server_ns, "10.0.0.12", port, args.seconds)),
                   ("ovn", lambda: measure("bqovm1", "bqovm2", "10.0.0.2", port, args.seconds)))
        for i in range(1, args.rounds + 1):
            for name, fn in systems:
                got = fn()
                for k, v in got.items():
                    res[name].setdefault(k, []).append(v)
                print(f"round {i} {name}: " + " ".join(f"{k}={v:.1f}" for k, v in got.items())
                      + f" (Mbit/s; load {os.getloadavg()[0]:.1f})", flush=True)
        weft.lab.weft("--wait", "port", "update", "t/n/a", "--pps", str(PPS))
        for i in range(1, args.rounds + 1):
            for extra in ((), ("-R",)):
                end = run(weft.client_ns, weft.server_ns, "10.0.0.12", next(port), args.seconds, "-u", "-l",
                          str(PPS_LEN), "-b", f"{3 * PPS * PPS_LEN * 8 // 1000}K", *extra)
                pps.append(end["sum_received"]["bytes"] / PPS_LEN / end["sum_received"]["seconds"])
            print(f"pps round {i}: weft received {pps[-2]:.0f} / {pps[-1]:.0f} packets/s (egress / ingress) "
                  f"of 3,000 offered, limit {PPS} (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        ovn.down()
        weft.down()
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in res.items()}
    for name, r in med.items():
        print(f"{name}: " + " ".join(f"{k} median {v:.1f}" for k, v in r.items()) + " Mbit/s")

    def both(name, kind):
        return statistics.median(res[name][f"{kind}_egress"] + res[name][f"{kind}_ingress"])
    print(f"qos limit_mbps={LIMIT_MBIT} weft_udp_mbps={both('weft', 'udp'):.1f} ovn_udp_mbps={both('ovn', 'udp'):.1f} "
          f"weft_tcp_mbps={both('weft', 'tcp'):.1f} ovn_tcp_mbps={both('ovn', 'tcp'):.1f} "
          f"weft_pps={statistics.median(pps):.0f}")


if __name__ == "__main__":
    main()
