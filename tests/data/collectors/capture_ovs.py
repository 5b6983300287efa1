"""How the ovs-*.bin fixtures were made: real sFlow/NetFlow/IPFIX datagrams from the lab's own OVS.

Run as root from the repository root: `.venv/bin/python tests/data/collectors/capture_ovs.py`.
It brings up a 2-host lab (weftd points every br-int's exporters at its collectors on the
management network), plugs two VMs of one network on different hosts, captures the
exporters' UDP datagrams with tcpdump on the management bridge while ping and iperf3 run,
and writes up to 40 datagrams per protocol to ovs-<proto>.bin as length-prefixed records
(4-byte big-endian length, then the datagram).
"""
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEFT = str(Path(sys.executable).parent / "weft")
ENV = {**os.environ, "WEFT_LAB": "capture", "WEFT_RUN_DIR": "/run/weft-capture"}
PORTS = {6343: "sflow", 2055: "netflow", 4739: "ipfix"}


def weft(*args):
    subprocess.run([WEFT, *args], env=ENV, check=True, capture_output=True)


def main() -> None:
    from scapy.all import UDP, rdpcap
    weft("lab", "down")
    weft("lab", "up", "--hosts", "2")
    pcap = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False).name
    procs = []
    try:
        weft("traffic", "config", "--sflow-sampling", "16", "--sflow-polling", "2",
             "--ipfix-sampling", "16", "--netflow-active-timeout", "2")
        weft("tenant", "create", "t")
        weft("network", "create", "t/n", "--cidr", "10.0.0.0/24")
        for vm, host, ip in (("a", "hv1", "10.0.0.10"), ("b", "hv2", "10.0.0.20")):
            weft("port", "create", f"t/n/{vm}", "--ip", ip)
            weft("lab", "vm", "create", vm, "--host", host, "--port", f"t/n/{vm}")
        dump = subprocess.Popen(["ip", "netns", "exec", "capture-mgmt", "tcpdump", "-i", "br-mgmt", "-U", "-w",
                                 pcap, "udp and (port 6343 or port 2055 or port 4739)"],
                                stderr=subprocess.DEVNULL)
        procs.append(dump)
        time.sleep(1)
        srv = subprocess.Popen([WEFT, "lab", "exec", "b", "--", "iperf3", "-s", "-1"], env=ENV,
                               stdout=subprocess.DEVNULL)
        procs.append(srv)
        time.sleep(0.5)
        subprocess.run([WEFT, "lab", "exec", "a", "--", "ping", "-c", "5", "-i", "0.2", "10.0.0.20"], env=ENV,
                       capture_output=True)
        subprocess.run([WEFT, "lab", "exec", "a", "--", "iperf3", "-c", "10.0.0.20", "-t", "4", "-b", "50M"],
                       env=ENV, capture_output=True)
        srv.wait(timeout=20)
        time.sleep(8)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
        got = {p: [] for p in PORTS.values()}
        for pkt in rdpcap(pcap):
            if UDP in pkt and pkt[UDP].dport in PORTS:
                proto = PORTS[pkt[UDP].dport]
                if len(got[proto]) < 40:
                    got[proto].append(bytes(pkt[UDP].payload))
        for proto, datagrams in got.items():
            with open(HERE / f"ovs-{proto}.bin", "wb") as f:
                for d in datagrams:
                    f.write(struct.pack("!I", len(d)) + d)
            print(proto, len(datagrams))
    finally:
        for proc in procs:          # by pid: a namespace going away does not stop its processes
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.unlink(pcap)
        weft("lab", "down")


if __name__ == "__main__":
    main()
