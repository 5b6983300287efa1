"""QoS per port on the real lab: meters cap iperf3 both ways across hosts, a pps limit, DSCP on the underlay, bad input."""
import json
import os
import signal
import subprocess
import time

import pytest

from tests.labtools import Lab, iperf_server

pytestmark = pytest.mark.integration
A_IP, B_IP = "10.0.0.11", "10.0.0.12"     # a on hv1 (the port with QoS), b on hv2
OFFERED_MBIT = 70                          # UDP offered: well above the 50 Mbit/s limit
PPS_LEN = 200                              # UDP payload bytes in the packet-rate test


@pytest.fixture(scope="module")
def qlab():
    lab = Lab(f"q{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "2")
    try:
        lab.weft("tenant", "create", "red")
        lab.weft("network", "create", "red/net", "--cidr", "10.0.0.0/24")
        lab.weft("port", "create", "red/net/a", "--ip", A_IP, "--egress-rate", "50mbit",
                 "--egress-burst", "5mbit", "--ingress-rate", "50mbit", "--ingress-burst", "5mbit")
        lab.weft("port", "create", "red/net/b", "--ip", B_IP)
        lab.weft("lab", "vm", "create", "a", "--host", "hv1", "--port", "red/net/a")
        lab.weft("lab", "vm", "create", "b", "--host", "hv2", "--port", "red/net/b")
        deadline = time.monotonic() + 20
        while lab.exec("a", "ping", "-c", "1", "-W", "1", B_IP).returncode != 0:
            assert time.monotonic() < deadline, "a never reached b"
        yield lab
    finally:
        lab.down()


def iperf(lab: Lab, *args: str, attempts: int = 3) -> dict:
    """iperf3 from a to b's server (-R: b sends to a) as JSON; the server is b's own, started
    fresh and waited for. A run whose sender could not offer what was asked (the machine too
    busy to load the limiter) is repeated, so that a measurement always tests the limit."""
    last = None
    for _ in range(attempts):
        with iperf_server(lab, "b"):
            r = lab.exec("a", "iperf3", "-c", B_IP, "-J", *args, timeout=60)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr
            last = json.loads(r.stdout)["end"]
        offered = last["sum_sent"]["bits_per_second"]
        wanted = _offered(args)
        if offered >= 0.9 * wanted:
            return last
        print(f"sender offered only {offered / 1e6:.1f} of {wanted / 1e6:.1f} Mbit/s (machine busy: "
              f"{os.getloadavg()}); again")
    raise AssertionError(f"the sender could not offer the load in {attempts} runs: {last['sum_sent']}")


def _offered(args) -> float:
    rate = args[list(args).index("-b") + 1]
    return float(rate[:-1]) * {"M": 1e6, "K": 1e3}[rate[-1]]


@pytest.mark.parametrize("direction", ["egress", "ingress"])
def test_a_50_mbit_port_measures_45_to_55_both_ways_across_hosts(qlab, direction):
    """UDP offered well above the limit (a known rate: TCP's own back-off would measure TCP, not
    the meter). Every run must stay under 55 Mbit/s. A run below 45 is repeated (at most 3 runs)
    when the receiver lost packets after the meter -- on this shared 2-core machine a starved
    receiving VM or switch thread drops a UDP burst now and then; one run of the three must show
    the limiter passing 45 Mbit/s or more."""
    reverse = ("-R",) if direction == "ingress" else ()      # ingress: b sends to a
    runs = []
    for _ in range(3):
        end = iperf(qlab, "-u", "-b", f"{OFFERED_MBIT}M", "-w", "2M", "-t", "4", "-O", "1", *reverse)
        got = end["sum_received"]["bits_per_second"] / 1e6
        runs.append(got)
        print(f"{direction}: offered {end['sum_sent']['bits_per_second'] / 1e6:.1f} Mbit/s, received "
              f"{got:.1f} Mbit/s (UDP payload), load {os.getloadavg()}")
        assert got <= 55, f"{direction} through a 50 Mbit/s limit measured {got:.1f} Mbit/s"
        if got >= 45:
            break
    assert max(runs) >= 45, f"{direction} through a 50 Mbit/s limit measured {runs} Mbit/s"


def test_a_pps_limit_caps_udp_packets_within_10_percent(qlab):
    qlab.weft("--wait", "port", "update", "red/net/a", "--pps", "1000")
    try:
        assert qlab.json("port", "show", "red/net/a")["qos"] == {"pps": 1000}
        for reverse in ((), ("-R",)):
            # 3,000 packets per second offered
            end = iperf(qlab, "-u", "-l", str(PPS_LEN), "-b", f"{3000 * PPS_LEN * 8 // 1000}K",
                        "-t", "3", "-O", "1", *reverse)
            got = end["sum_received"]["bytes"] / PPS_LEN / end["sum_received"]["seconds"]
            print(f"pps {'ingress' if reverse else 'egress'}: received {got:.0f} packets/s")
            assert 900 <= got <= 1100, f"a 1000 pps limit let {got:.0f} packets/s through"
    finally:
        qlab.weft("--wait", "port", "update", "red/net/a", "--egress-rate", "50mbit", "--egress-burst",
                  "5mbit", "--ingress-rate", "50mbit", "--ingress-burst", "5mbit")


def test_dscp_is_set_on_the_port_traffic_and_its_tunnel_on_the_underlay(qlab, tmp_path):
    from scapy.all import IP, VXLAN, rdpcap
    qlab.weft("--wait", "port", "update", "red/net/a", "--dscp", "46")
    try:
        pcap = str(tmp_path / "underlay.pcap")
        dump = subprocess.Popen(["ip", "netns", "exec", f"{qlab.name}-fabric", "tcpdump", "-U",
                                 "--immediate-mode", "-n", "-i", "br-ul", "-w", pcap, "udp port 4789"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while not os.path.exists(pcap) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            # b asks (b's port has no QoS: DSCP 0), a answers (its port marks DSCP 46)
            assert qlab.exec("b", "ping", "-c", "3", "-i", "0.2", A_IP).returncode == 0
            time.sleep(0.3)
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=5)
        seen = {}
        for frame in rdpcap(pcap):
            if VXLAN not in frame or IP not in frame[VXLAN]:
                continue
            inner = frame[VXLAN][IP]
            seen.setdefault(inner.src, []).append((frame[IP].tos >> 2, inner.tos >> 2))
        assert seen.get(A_IP) and all(dscp == (46, 46) for dscp in seen[A_IP]), seen
        assert seen.get(B_IP) and all(dscp == (0, 0) for dscp in seen[B_IP]), seen
    finally:
        qlab.weft("--wait", "port", "update", "red/net/a", "--egress-rate", "50mbit", "--egress-burst",
                  "5mbit", "--ingress-rate", "50mbit", "--ingress-burst", "5mbit")


BAD = [("--egress-rate", "0"), ("--egress-rate", "fast"), ("--ingress-rate", "0mbit"), ("--dscp", "64"),
       ("--pps",), ("--pps", "fast"), ("--egress-burst", "1mbit"), ("--no-qos", "--dscp", "3")]


def test_bad_qos_input_is_one_line_and_changes_nothing(qlab):
    before = qlab.json("port", "show", "red/net/a")["qos"]
    flows = installed(qlab)
    for args in BAD:
        for command in (("port", "update", "red/net/a"), ("port", "create", "red/net/c")):
            r = qlab.weft(*command, *args, check=False)
            assert r.returncode != 0 and r.stdout == "", (args, r.stdout)
            assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
            assert r.stderr.startswith("weft: error: "), r.stderr
    assert qlab.json("port", "show", "red/net/a")["qos"] == before
    assert "red/net/c" not in {p["ref"] for p in qlab.json("port", "list")}
    assert installed(qlab) == flows


def installed(lab: Lab) -> set:
    return {(f["table"], f["priority"], f["cookie"]) for f in lab.json("flows", "hv1")}
