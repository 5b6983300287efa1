"""NetFlow version 5 decoder: a 24-byte header followed by `count` fixed 48-byte flow records."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import inet_ntoa

from .errors import MalformedDatagram, as_bytes

HEADER = struct.Struct("!HHIIIIBBH")
RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")
HEADER_LEN = HEADER.size  # 24
RECORD_LEN = RECORD.size  # 48
MAX_RECORDS = (65535 - HEADER_LEN) // RECORD_LEN  # what one UDP datagram can hold


@dataclass(slots=True)
class NetflowV5Record:
    src_addr: str
    dst_addr: str
    next_hop: str
    input: int
    output: int
    packets: int
    octets: int
    first: int  # sysUptime (ms) at the first packet
    last: int  # sysUptime (ms) at the last packet
    src_port: int
    dst_port: int
    tcp_flags: int
    protocol: int
    tos: int
    src_as: int
    dst_as: int
    src_mask: int
    dst_mask: int


@dataclass(slots=True)
class NetflowV5Packet:
    version: int
    count: int
    sys_uptime: int
    unix_secs: int
    unix_nsecs: int
    flow_sequence: int
    engine_type: int
    engine_id: int
    sampling_mode: int  # top 2 bits of the sampling field
    sampling_interval: int  # low 14 bits; 0 = unsampled
    records: list


def decode(data: bytes | bytearray | memoryview) -> NetflowV5Packet:
    """Decode one NetFlow v5 datagram; raises MalformedDatagram on anything inconsistent."""
    data = as_bytes(data)
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedDatagram("datagram shorter than NetFlow v5 header")
    (version, count, uptime, secs, nsecs, seq,
     etype, eid, sampling) = HEADER.unpack_from(data, 0)
    if version != 5:
        raise MalformedDatagram(f"not NetFlow v5 (version {version})")
    end = HEADER_LEN + count * RECORD_LEN
    if end > n:
        raise MalformedDatagram(f"record count {count} exceeds datagram of {n} bytes")
    records = [
        NetflowV5Record(inet_ntoa(s), inet_ntoa(d), inet_ntoa(h), i, o, p, b, f, l,
                        sp, dp, fl, pr, tos, sa, da, sm, dm)
        for (s, d, h, i, o, p, b, f, l, sp, dp, fl, pr, tos, sa, da, sm, dm)
        in RECORD.iter_unpack(data[HEADER_LEN:end])
    ]
    return NetflowV5Packet(version, count, uptime, secs, nsecs, seq, etype, eid,
                           sampling >> 14, sampling & 0x3FFF, records)
