"""sFlow version 5 datagram decoder (sflow.org sflow_version_5.txt, plus the tunnel structures).

`decode(data)` turns one UDP payload into an `SflowDatagram` holding samples, each holding
records. Every length and count is checked against the bytes that are really there; any
inconsistency raises `MalformedDatagram`. Samples and records of unknown type are skipped by
their length and kept as `UnknownSample` / `UnknownRecord` (type and raw bytes).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import AF_INET6, inet_ntoa, inet_ntop

from .errors import MalformedDatagram, as_bytes

# Interface encodings (flow samples). Compact: 2-bit format + 30-bit value in one word;
# expanded: separate format and value words. "Internal to the agent" sentinels differ.
IF_FORMAT_SINGLE = 0
IF_FORMAT_DISCARDED = 1
IF_FORMAT_MULTIPLE = 2
IF_INTERNAL_COMPACT = 0x3FFFFFFF
IF_INTERNAL_EXPANDED = 0xFFFFFFFF

# Header protocols of the raw packet header record.
HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12

_2U32 = struct.Struct("!II")
_DGRAM_TAIL = struct.Struct("!IIII")  # sub-agent id, sequence, uptime, sample count
_FLOW = struct.Struct("!IIIIIIII")  # seq, source, rate, pool, drops, input, output, nrec
# seq, source type, source index, rate, pool, drops, input f/v, output f/v, nrec
_FLOW_X = struct.Struct("!IIIIIIIIIII")
_CNT = struct.Struct("!III")  # seq, source, nrec
_CNT_X = struct.Struct("!IIII")  # seq, stype, sindex, nrec
_RAW = struct.Struct("!IIII")  # protocol, frame length, stripped, header length
_ETHDATA = struct.Struct("!I6s2x6s2xI")
_IPV4DATA = struct.Struct("!II4s4sIIII")
_IPV6DATA = struct.Struct("!II16s16sIIII")
_SWITCH = struct.Struct("!IIII")
_U32 = struct.Struct("!I")
_IFCNT = struct.Struct("!IIQIIQIIIIIIQIIIIII")
_ETHCNT = struct.Struct("!13I")


# --------------------------------------------------------------------------- output types


@dataclass(slots=True)
class SflowDatagram:
    version: int
    agent: str | None  # None when the agent address type is "unknown" (0)
    sub_agent_id: int
    sequence: int
    uptime_ms: int
    samples: list


@dataclass(slots=True)
class FlowSample:
    sequence: int
    source_id_type: int
    source_id_index: int
    sampling_rate: int
    sample_pool: int
    drops: int
    input_format: int
    input_value: int
    output_format: int
    output_value: int
    records: list
    expanded: bool = False

    @property
    def input_ifindex(self) -> int | None:
        return _ifindex(self.input_format, self.input_value, self.expanded)

    @property
    def output_ifindex(self) -> int | None:
        return _ifindex(self.output_format, self.output_value, self.expanded)


@dataclass(slots=True)
class CounterSample:
    sequence: int
    source_id_type: int
    source_id_index: int
    records: list
    expanded: bool = False


@dataclass(slots=True)
class UnknownSample:
    enterprise: int
    format: int
    data: bytes


@dataclass(slots=True)
class RawPacketHeader:  # flow record 1
    protocol: int
    frame_length: int
    stripped: int
    header: bytes


@dataclass(slots=True)
class EthernetFrameData:  # flow record 2
    length: int
    src_mac: str
    dst_mac: str
    eth_type: int


@dataclass(slots=True)
class IPv4Data:  # flow record 3
    length: int
    protocol: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    tcp_flags: int
    tos: int


@dataclass(slots=True)
class IPv6Data:  # flow record 4
    length: int
    protocol: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    tcp_flags: int
    priority: int


@dataclass(slots=True)
class ExtendedSwitch:  # flow record 1001
    src_vlan: int
    src_priority: int
    dst_vlan: int
    dst_priority: int


@dataclass(slots=True)
class ExtendedRouter:  # flow record 1002
    next_hop: str | None
    src_mask_len: int
    dst_mask_len: int


@dataclass(slots=True)
class ExtendedIPv4Tunnel:  # flow records 1023 (egress) / 1024 (ingress): the outer IPv4 header
    egress: bool
    length: int
    protocol: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    tcp_flags: int
    tos: int


@dataclass(slots=True)
class ExtendedVni:  # flow records 1029 (egress) / 1030 (ingress)
    egress: bool
    vni: int


@dataclass(slots=True)
class UnknownRecord:
    enterprise: int
    format: int
    data: bytes


@dataclass(slots=True)
class GenericInterfaceCounters:  # counter record 1
    if_index: int
    if_type: int
    if_speed: int
    if_direction: int
    if_status: int
    in_octets: int
    in_ucast_pkts: int
    in_multicast_pkts: int
    in_broadcast_pkts: int
    in_discards: int
    in_errors: int
    in_unknown_protos: int
    out_octets: int
    out_ucast_pkts: int
    out_multicast_pkts: int
    out_broadcast_pkts: int
    out_discards: int
    out_errors: int
    promiscuous_mode: int


@dataclass(slots=True)
class EthernetCounters:  # counter record 2
    alignment_errors: int
    fcs_errors: int
    single_collision_frames: int
    multiple_collision_frames: int
    sqe_test_errors: int
    deferred_transmissions: int
    late_collisions: int
    excessive_collisions: int
    internal_mac_transmit_errors: int
    carrier_sense_errors: int
    frame_too_longs: int
    internal_mac_receive_errors: int
    symbol_errors: int


def _ifindex(fmt: int, value: int, expanded: bool) -> int | None:
    if fmt != IF_FORMAT_SINGLE:
        return None
    if value == (IF_INTERNAL_EXPANDED if expanded else IF_INTERNAL_COMPACT):
        return None
    return value


# --------------------------------------------------------------------------- record decoders
# Each takes (data, off, end) with end the end of the record's own bytes.


def _need(off: int, size: int, end: int, what: str) -> None:
    if off + size > end:
        raise MalformedDatagram(f"truncated {what}", off)


def _raw_header(data: bytes, off: int, end: int) -> RawPacketHeader:
    if off + 16 > end:
        raise MalformedDatagram("truncated raw packet header record", off)
    proto, frame_len, stripped, hlen = _RAW.unpack_from(data, off)
    off += 16
    if hlen > end - off:
        raise MalformedDatagram("raw header length exceeds record", off)
    return RawPacketHeader(proto, frame_len, stripped, data[off:off + hlen])


def _ethernet_data(data: bytes, off: int, end: int) -> EthernetFrameData:
    _need(off, 24, end, "ethernet frame data record")
    length, src, dst, etype = _ETHDATA.unpack_from(data, off)
    return EthernetFrameData(length, src.hex(":"), dst.hex(":"), etype)


def _ipv4_data(data: bytes, off: int, end: int) -> IPv4Data:
    _need(off, 32, end, "IPv4 data record")
    length, proto, src, dst, sport, dport, flags, tos = _IPV4DATA.unpack_from(data, off)
    return IPv4Data(length, proto, inet_ntoa(src), inet_ntoa(dst), sport, dport, flags, tos)


def _ipv6_data(data: bytes, off: int, end: int) -> IPv6Data:
    _need(off, 56, end, "IPv6 data record")
    length, proto, src, dst, sport, dport, flags, prio = _IPV6DATA.unpack_from(data, off)
    return IPv6Data(length, proto, inet_ntop(AF_INET6, src), inet_ntop(AF_INET6, dst),
                    sport, dport, flags, prio)


def _switch(data: bytes, off: int, end: int) -> ExtendedSwitch:
    _need(off, 16, end, "extended switch record")
    return ExtendedSwitch(*_SWITCH.unpack_from(data, off))


def _address(data: bytes, off: int, end: int) -> tuple[str | None, int]:
    """An sFlow `address` union at off; returns (text or None for unknown, new offset)."""
    _need(off, 4, end, "address")
    atype = _U32.unpack_from(data, off)[0]
    off += 4
    if atype == 1:
        _need(off, 4, end, "IPv4 address")
        return inet_ntoa(data[off:off + 4]), off + 4
    if atype == 2:
        _need(off, 16, end, "IPv6 address")
        return inet_ntop(AF_INET6, data[off:off + 16]), off + 16
    if atype == 0:
        return None, off
    raise MalformedDatagram(f"bad address type {atype}", off - 4)


def _router(data: bytes, off: int, end: int) -> ExtendedRouter:
    nh, off = _address(data, off, end)
    _need(off, 8, end, "extended router record")
    src_mask, dst_mask = _2U32.unpack_from(data, off)
    return ExtendedRouter(nh, src_mask, dst_mask)


def _tunnel(egress: bool):
    def decode(data: bytes, off: int, end: int) -> ExtendedIPv4Tunnel:
        _need(off, 32, end, "IPv4 tunnel record")
        length, proto, src, dst, sport, dport, flags, tos = _IPV4DATA.unpack_from(data, off)
        return ExtendedIPv4Tunnel(egress, length, proto, inet_ntoa(src), inet_ntoa(dst),
                                  sport, dport, flags, tos)
    return decode


def _vni(egress: bool):
    def decode(data: bytes, off: int, end: int) -> ExtendedVni:
        _need(off, 4, end, "VNI record")
        return ExtendedVni(egress, _U32.unpack_from(data, off)[0])
    return decode


def _if_counters(data: bytes, off: int, end: int) -> GenericInterfaceCounters:
    _need(off, 88, end, "generic interface counters")
    return GenericInterfaceCounters(*_IFCNT.unpack_from(data, off))


def _eth_counters(data: bytes, off: int, end: int) -> EthernetCounters:
    _need(off, 52, end, "ethernet counters")
    return EthernetCounters(*_ETHCNT.unpack_from(data, off))


# data_format (enterprise 0) -> decoder; anything else becomes an Unknown* kept by length.
FLOW_RECORD_DECODERS = {
    1: _raw_header,
    2: _ethernet_data,
    3: _ipv4_data,
    4: _ipv6_data,
    1001: _switch,
    1002: _router,
    1023: _tunnel(True),
    1024: _tunnel(False),
    1029: _vni(True),
    1030: _vni(False),
}
COUNTER_RECORD_DECODERS = {
    1: _if_counters,
    2: _eth_counters,
}


def _records(data: bytes, off: int, end: int, count: int, decoders: dict) -> list:
    """`count` (format, length, body) records in [off, end); bodies are XDR-padded to 4."""
    if count > (end - off) >> 3:
        raise MalformedDatagram("record count exceeds sample", off)
    out = []
    append = out.append
    get = decoders.get
    unpack = _2U32.unpack_from
    for _ in range(count):
        if off + 8 > end:
            raise MalformedDatagram("truncated record header", off)
        fmt, length = unpack(data, off)
        off += 8
        rend = off + length
        if rend > end:
            raise MalformedDatagram("record length exceeds sample", off - 8)
        dec = get(fmt)
        if dec is None:
            append(UnknownRecord(fmt >> 12, fmt & 0xFFF, data[off:rend]))
        else:
            append(dec(data, off, rend))
        off = rend + (-length & 3)
        if off > end:  # padding of the last record may be missing; never read past end
            off = end
    return out


def _flow_sample(data: bytes, off: int, end: int) -> FlowSample:
    if off + 32 > end:
        raise MalformedDatagram("truncated flow sample", off)
    seq, source, rate, pool, drops, inp, outp, nrec = _FLOW.unpack_from(data, off)
    recs = _records(data, off + 32, end, nrec, FLOW_RECORD_DECODERS)
    return FlowSample(seq, source >> 24, source & 0xFFFFFF, rate, pool, drops,
                      inp >> 30, inp & 0x3FFFFFFF, outp >> 30, outp & 0x3FFFFFFF, recs, False)


def _flow_sample_expanded(data: bytes, off: int, end: int) -> FlowSample:
    if off + 44 > end:
        raise MalformedDatagram("truncated expanded flow sample", off)
    (seq, stype, sindex, rate, pool, drops,
     in_fmt, in_val, out_fmt, out_val, nrec) = _FLOW_X.unpack_from(data, off)
    recs = _records(data, off + 44, end, nrec, FLOW_RECORD_DECODERS)
    return FlowSample(seq, stype, sindex, rate, pool, drops,
                      in_fmt, in_val, out_fmt, out_val, recs, True)


def _counter_sample(data: bytes, off: int, end: int) -> CounterSample:
    if off + 12 > end:
        raise MalformedDatagram("truncated counter sample", off)
    seq, source, nrec = _CNT.unpack_from(data, off)
    recs = _records(data, off + 12, end, nrec, COUNTER_RECORD_DECODERS)
    return CounterSample(seq, source >> 24, source & 0xFFFFFF, recs, False)


def _counter_sample_expanded(data: bytes, off: int, end: int) -> CounterSample:
    if off + 16 > end:
        raise MalformedDatagram("truncated expanded counter sample", off)
    seq, stype, sindex, nrec = _CNT_X.unpack_from(data, off)
    recs = _records(data, off + 16, end, nrec, COUNTER_RECORD_DECODERS)
    return CounterSample(seq, stype, sindex, recs, True)


SAMPLE_DECODERS = {
    1: _flow_sample,
    2: _counter_sample,
    3: _flow_sample_expanded,
    4: _counter_sample_expanded,
}


# --------------------------------------------------------------------------- datagram


def decode(data: bytes | bytearray | memoryview) -> SflowDatagram:
    """Decode one sFlow v5 datagram; raises MalformedDatagram on anything inconsistent."""
    data = as_bytes(data)
    n = len(data)
    if n < 8:
        raise MalformedDatagram("datagram shorter than sFlow header")
    version, atype = _2U32.unpack_from(data, 0)
    if version != 5:
        raise MalformedDatagram(f"unsupported sFlow version {version}")
    off = 8
    if atype == 1:
        if n < 12:
            raise MalformedDatagram("truncated agent address", off)
        agent = inet_ntoa(data[8:12])
        off = 12
    elif atype == 2:
        if n < 24:
            raise MalformedDatagram("truncated agent address", off)
        agent = inet_ntop(AF_INET6, data[8:24])
        off = 24
    elif atype == 0:
        agent = None
    else:
        raise MalformedDatagram(f"bad agent address type {atype}", 4)
    if off + 16 > n:
        raise MalformedDatagram("truncated datagram header", off)
    sub_agent, seq, uptime, nsamples = _DGRAM_TAIL.unpack_from(data, off)
    off += 16
    if nsamples > (n - off) >> 3:
        raise MalformedDatagram("sample count exceeds datagram", off - 4)
    samples = []
    append = samples.append
    unpack = _2U32.unpack_from
    get = SAMPLE_DECODERS.get
    for _ in range(nsamples):
        if off + 8 > n:
            raise MalformedDatagram("truncated sample header", off)
        fmt, length = unpack(data, off)
        off += 8
        end = off + length
        if end > n:
            raise MalformedDatagram("sample length exceeds datagram", off - 8)
        dec = get(fmt)
        if dec is None:
            append(UnknownSample(fmt >> 12, fmt & 0xFFF, data[off:end]))
        else:
            append(dec(data, off, end))
        off = end + (-length & 3)
        if off > n:
            off = n
    return SflowDatagram(version, agent, sub_agent, seq, uptime, samples)
