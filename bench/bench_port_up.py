"""Port-up latency: from plugging a VM's NIC into br-int on one host to the first ping answered across hosts.

The port already exists in weft. A VM on hv1 runs `ping -D -i 0.002` towards the VM on hv2
the whole time; the NIC of the hv2 VM is unplugged, then plugged again (ovs-vsctl add-port
with its iface-id, as libvirt does) at time T0; the latency is the timestamp of the first
echo reply after T0 minus T0. Median of N runs (default 10).
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import WEFT, BenchLab  # noqa: E402

LAB = BenchLab("benchpu")
weft, ENV, LAB_DIR = LAB.weft, LAB.env, LAB.dir


def vsctl(host, *args):
    subprocess.run(["ovs-vsctl", f"--db=unix:{LAB_DIR}/{host}/db.sock", *args], check=True,
                   capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tunnel", default="vxlan", choices=["vxlan", "geneve"])
    args = ap.parse_args()
    weft("lab", "down", check=False)
    weft("lab", "up", "--hosts", "2", "--tunnel", args.tunnel)
    try:
        weft("tenant", "create", "t")
        weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        weft("port", "create", "t/n/src", "--ip", "10.0.0.10")
        weft("port", "create", "t/n/dst", "--ip", "10.0.0.20")
        weft("lab", "vm", "create", "src", "--host", "hv1", "--port", "t/n/src")
        weft("lab", "vm", "create", "dst", "--host", "hv2", "--port", "t/n/dst")
        state = json.load(open(f"{LAB_DIR}/state.json"))
        vm = state["vms"]["dst"]
        ext = [f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}",
               "external_ids:vm-id=dst", "external_ids:iface-status=active"]
        results = []
        for _run in range(args.runs):
            vsctl("hv2", "del-port", "br-int", vm["tap"])
            time.sleep(0.3)
            pinger = subprocess.Popen([WEFT, "lab", "exec", "src", "--", "ping", "-D", "-n", "-i", "0.002",
                                       "-W", "0.5", "10.0.0.20"], env=ENV, stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            t0 = time.time()
            vsctl("hv2", "add-port", "br-int", vm["tap"], "--", "set", "Interface", vm["tap"], *ext)
            time.sleep(0.5)
            pinger.terminate()
            out, _ = pinger.communicate()
            replies = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
            after = [ts for ts in replies if ts >= t0]
            if not after:
                print("run without a reply; skipped", file=sys.stderr)
                continue
            results.append((after[0] - t0) * 1000)
        print(f"port-up latency ({args.tunnel}, plug on hv2 -> first reply on hv1): "
              f"median {statistics.median(results):.1f} ms, min {min(results):.1f}, "
              f"max {max(results):.1f} ({len(results)} runs)")
        print("runs (ms): " + ", ".join(f"{r:.1f}" for r in results))
    finally:
        weft("lab", "down", check=False)


if __name__ == "__main__":
    main()
