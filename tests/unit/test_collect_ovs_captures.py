"""Decoders against datagrams captured from the lab's own Open vSwitch (tests/data/collectors/ovs-*.bin).

The captures come from tests/data/collectors/capture_ovs.py: two VMs 10.0.0.10 (hv1) and
10.0.0.20 (hv2) of one network (VNI 1000), ping and iperf3 between them, exporters set by weftd
(sFlow and IPFIX sampling 1 in 16, NetFlow active timeout 2 s), agents on 198.19.0.11/12.
"""
import struct
from pathlib import Path

import pytest

from collectors import netflow_v5, normalise, sflow
from collectors.ipfix import IpfixDecoder

DATA = Path(__file__).resolve().parent.parent / "data" / "collectors"
VMS = {"10.0.0.10", "10.0.0.20"}


def datagrams(proto: str) -> list[bytes]:
    blob = (DATA / f"ovs-{proto}.bin").read_bytes()
    out, i = [], 0
    while i < len(blob):
        (n,) = struct.unpack_from("!I", blob, i)
        out.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    return out


@pytest.mark.parametrize("proto", ["sflow", "netflow", "ipfix"])
def test_captures_are_present(proto):
    assert len(datagrams(proto)) >= 5


def test_ovs_sflow_datagrams_decode_with_vxlan_vni_and_counters():
    records, agents, counters = [], set(), 0
    for data in datagrams("sflow"):
        dgram = sflow.decode(data)
        assert dgram.version == 5
        agents.add(str(dgram.agent))
        counters += sum(1 for s in dgram.samples if type(s).__name__.startswith("Counter"))
        records += normalise.from_sflow(dgram, exporter=str(dgram.agent))
    assert agents <= {"198.19.0.11", "198.19.0.12"} and agents
    assert counters > 0
    ip_pairs = {(r.src_ip, r.dst_ip) for r in records if r.src_ip in VMS}
    assert ip_pairs == {("10.0.0.10", "10.0.0.20"), ("10.0.0.20", "10.0.0.10")}
    tunnelled = [r for r in records if r.tunnel_key is not None]
    assert tunnelled and {r.tunnel_key for r in tunnelled} == {1000}
    assert {r.tunnel_src for r in tunnelled} <= {"198.18.0.11", "198.18.0.12"}
    assert all(r.sampling_scale == 16 and r.bytes == 16 * (r.bytes // 16) for r in records if r.src_ip in VMS)


def test_ovs_netflow_v5_datagrams_decode_unsampled():
    records = []
    for data in datagrams("netflow"):
        pkt = netflow_v5.decode(data)
        assert pkt.version == 5 and pkt.count == len(pkt.records)
        records += normalise.from_netflow5(pkt, "x")
    assert {(r.src_ip, r.dst_ip) for r in records} >= {("10.0.0.10", "10.0.0.20")}
    assert all(r.sampling_scale == 1 for r in records)
    assert sum(r.bytes for r in records if r.src_ip == "10.0.0.10") > 10_000_000   # the iperf3 stream


def test_ovs_ipfix_messages_decode_with_their_templates():
    decoder, records = IpfixDecoder(), []
    for data in datagrams("ipfix"):
        records += normalise.from_ipfix(decoder.decode(data, "198.19.0.12"), "198.19.0.12")
    assert records
    assert any(r.src_ip in VMS and r.dst_ip in VMS for r in records)
    assert all(r.packets > 0 and r.bytes > 0 for r in records)
