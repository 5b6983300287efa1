"""NetFlow v5 decoder, cross-checked against scapy's independent NetFlow v5 encoder."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import netflow_v5  # noqa: E402
from collectors.errors import MalformedDatagram  # noqa: E402


def test_decode_scapy_built_packet():
    pkt = (NetflowHeader(version=5)
           / NetflowHeaderV5(count=2, sysUptime=5000, unixSecs=1_700_000_000, unixNanoSeconds=5,
                             flowSequence=77, engineType=1, engineID=2,
                             samplingInterval=(1 << 14) | 100)
           / NetflowRecordV5(src="10.0.0.1", dst="10.0.0.2", nexthop="10.0.0.254", input=3,
                             output=4, dpkts=11, dOctets=2200, first=1000, last=4000,
                             srcport=1111, dstport=2222, tcpFlags=0x10, prot=17, tos=8,
                             src_as=65001, dst_as=65002, src_mask=24, dst_mask=16)
           / NetflowRecordV5(src="10.0.0.3", dst="10.0.0.4", dpkts=1, dOctets=60))
    p = netflow_v5.decode(bytes(pkt))
    assert (p.version, p.count, p.sys_uptime, p.unix_secs, p.unix_nsecs) == (5, 2, 5000, 1_700_000_000, 5)
    assert (p.flow_sequence, p.engine_type, p.engine_id) == (77, 1, 2)
    assert (p.sampling_mode, p.sampling_interval) == (1, 100)
    r = p.records[0]
    assert r == netflow_v5.NetflowV5Record(
        "10.0.0.1", "10.0.0.2", "10.0.0.254", 3, 4, 11, 2200, 1000, 4000, 1111, 2222,
        0x10, 17, 8, 65001, 65002, 24, 16)
    assert (p.records[1].src_addr, p.records[1].packets, p.records[1].octets) == ("10.0.0.3", 1, 60)


def test_decode_struct_built_packet_with_30_records():
    recs = [fx.v5_record(src=f"10.0.{i}.1", packets=i + 1) for i in range(30)]
    p = netflow_v5.decode(fx.v5_packet(recs, seq=4242))
    assert p.count == 30 and len(p.records) == 30
    assert [r.packets for r in p.records] == list(range(1, 31))
    assert p.records[29].src_addr == "10.0.29.1"


def test_zero_records_and_trailing_bytes():
    assert netflow_v5.decode(fx.v5_packet([])).records == []
    p = netflow_v5.decode(fx.v5_packet([fx.v5_record()]) + b"\xff" * 7)
    assert len(p.records) == 1


def test_count_beyond_datagram():
    with pytest.raises(MalformedDatagram, match="record count"):
        netflow_v5.decode(fx.v5_packet([fx.v5_record()], count=2))
    with pytest.raises(MalformedDatagram):
        netflow_v5.decode(fx.v5_packet([], count=0xFFFF))


def test_every_truncation_is_malformed():
    data = fx.v5_packet([fx.v5_record(), fx.v5_record()])
    for cut in range(len(data)):
        with pytest.raises(MalformedDatagram):
            netflow_v5.decode(data[:cut])


@pytest.mark.parametrize("version", [1, 7, 9, 10, 0x0500])
def test_wrong_version(version):
    data = struct.pack("!H", version) + fx.v5_packet([fx.v5_record()])[2:]
    with pytest.raises(MalformedDatagram, match="v5"):
        netflow_v5.decode(data)
