"""The service side of a flow record (protocol, server port, direction) and `flows()` rows."""
import sys
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from collectors.aggregate import Aggregator  # noqa: E402
from collectors.attribution import Endpoint  # noqa: E402
from collectors.services import Service, classify, classify_ipv4, label  # noqa: E402


def test_the_well_known_or_registered_port_is_the_service_either_way():
    assert classify(6, 40000, 80) == Service(6, 80, True)
    assert classify(6, 80, 40000) == Service(6, 80, False)
    assert classify(6, 50123, 8080) == Service(6, 8080, True)     # registered vs ephemeral
    assert classify(6, 8080, 50123) == Service(6, 8080, False)
    assert classify(17, 1000, 53) == Service(17, 53, True)         # both privileged: the lower
    assert classify(17, 40000, 40001) == Service(17, 40000, False)  # both ephemeral: the lower
    assert classify(17, 5000, 5000) == Service(17, 5000, True)


def test_records_without_ports_or_protocol():
    assert classify(1, None, None) == Service(1, None, True)
    assert classify(1, 0, 0) == Service(1, None, True)             # ICMP type/code: not ports
    assert classify(6, None, 80) == Service(6, None, True)
    assert classify(None, 1, 2) is None
    assert label(None) == (None, None)
    assert label(Service(6, 443, True)) == ("tcp", 443)
    assert label(Service(47, None, True)) == ("47", None)


def test_classify_ipv4_reads_the_header_like_a_parser():
    assert classify_ipv4(bytes(IP() / TCP(sport=33000, dport=22)), 0) == Service(6, 22, True)
    assert classify_ipv4(b"\0" * 4 + bytes(IP(ihl=6, options=b"\1\1\1\1") / UDP(sport=53, dport=40000)),
                         4) == Service(17, 53, False)
    assert classify_ipv4(bytes(IP() / ICMP()), 0) == Service(1, None, True)
    assert classify_ipv4(bytes(IP(frag=3) / UDP(sport=1, dport=2)), 0) == Service(17, None, True)
    assert classify_ipv4(bytes(IP() / UDP())[:22], 0) == Service(17, None, True)  # ports cut
    assert classify_ipv4(bytes(IP())[:19], 0) is None
    assert classify_ipv4(b"\x60" + bytes(39), 0) is None                          # IPv6


def test_flows_keep_services_apart_while_matrix_sums_them():
    agg = Aggregator(bucket_seconds=1, clock=lambda: 1005.0)
    a = Endpoint(port="red/net/a", tenant="red", network="red/net", host="hv1")
    b = Endpoint(port="red/net/b", tenant="red", network="red/net", host="hv2")
    agg.add(a, b, 100, 1, ts=1000, service=classify(6, 40000, 80))
    agg.add(b, a, 500, 2, ts=1001, service=classify(6, 80, 40000))
    agg.add(a, b, 10, 1, ts=1002, service=classify(6, 40001, 80))
    agg.add(a, b, 7, 1, ts=1002, service=classify(1, None, None))
    agg.add(a, b, 3, 1, ts=1003)
    rows = {(r["src"], r["dst"], r["proto"], r["port"], r["to_server"]): r["bytes"]
            for r in agg.flows()}
    assert rows == {("red/net/a", "red/net/b", "tcp", 80, True): 110,
                    ("red/net/b", "red/net/a", "tcp", 80, False): 500,
                    ("red/net/a", "red/net/b", "icmp", None, True): 7,
                    ("red/net/a", "red/net/b", None, None, None): 3}
    assert {(r["src"], r["dst"]): r["bytes"] for r in agg.matrix()} == {
        ("red/net/a", "red/net/b"): 120, ("red/net/b", "red/net/a"): 500}
    assert agg.flows(tenant="blue") == []
    assert [r["bytes"] for r in agg.flows(since=1002.5)] == [10, 7, 3]
