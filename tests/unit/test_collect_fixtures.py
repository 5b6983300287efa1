"""Byte-level builders of sFlow / NetFlow v5 / v9 / IPFIX datagrams for the collector tests.

Written from the wire specifications with struct.pack, independently of the decoders.
Imported by the other test_collect_* modules; holds no tests itself.
"""
from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "collectors"


def load_hex(name: str) -> bytes:
    """A hex fixture: '#' starts a comment, whitespace is ignored."""
    text = (DATA_DIR / name).read_text()
    digits = "".join(line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex("".join(digits.split()))


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def ip4(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def ip6(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def mac(addr: str) -> bytes:
    return bytes.fromhex(addr.replace(":", ""))


# ------------------------------------------------------------------ sFlow v5


def sflow_address(addr: str | None) -> bytes:
    if addr is None:
        return struct.pack("!I", 0)
    ip = ipaddress.ip_address(addr)
    return struct.pack("!I", 1 if ip.version == 4 else 2) + ip.packed


def sflow_datagram(samples: list[bytes], agent: str | None = "192.0.2.10", sub_agent: int = 0,
                   seq: int = 1, uptime: int = 60000, nsamples: int | None = None) -> bytes:
    return (struct.pack("!I", 5) + sflow_address(agent)
            + struct.pack("!IIII", sub_agent, seq, uptime,
                          len(samples) if nsamples is None else nsamples)
            + b"".join(samples))


def sflow_tagged(fmt: int, body: bytes, enterprise: int = 0) -> bytes:
    """data_format + length + opaque body (used for samples and for records)."""
    return struct.pack("!II", (enterprise << 12) | fmt, len(body)) + pad4(body)


def sflow_flow_sample(records: list[bytes], seq: int = 1, source: tuple[int, int] = (0, 3),
                      rate: int = 256, pool: int = 2560, drops: int = 0,
                      inp: tuple[int, int] = (0, 3), out: tuple[int, int] = (0, 4),
                      expanded: bool = False) -> bytes:
    if expanded:
        body = struct.pack("!IIIIIIIIIII", seq, source[0], source[1], rate, pool, drops,
                           inp[0], inp[1], out[0], out[1], len(records))
        return sflow_tagged(3, body + b"".join(records))
    body = struct.pack("!IIIIIIII", seq, (source[0] << 24) | source[1], rate, pool, drops,
                       (inp[0] << 30) | inp[1], (out[0] << 30) | out[1], len(records))
    return sflow_tagged(1, body + b"".join(records))


def sflow_counter_sample(records: list[bytes], seq: int = 1, source: tuple[int, int] = (0, 3),
                         expanded: bool = False) -> bytes:
    if expanded:
        body = struct.pack("!IIII", seq, source[0], source[1], len(records))
        return sflow_tagged(4, body + b"".join(records))
    body = struct.pack("!III", seq, (source[0] << 24) | source[1], len(records))
    return sflow_tagged(2, body + b"".join(records))


def rec_raw_header(header: bytes, frame_length: int | None = None, protocol: int = 1,
                   stripped: int = 4) -> bytes:
    if frame_length is None:
        frame_length = len(header) + stripped
    body = struct.pack("!IIII", protocol, frame_length, stripped, len(header)) + pad4(header)
    return sflow_tagged(1, body)


def rec_ethernet(length: int, src: str, dst: str, eth_type: int) -> bytes:
    return sflow_tagged(2, struct.pack("!I", length) + mac(src) + b"\0\0" + mac(dst) + b"\0\0"
                        + struct.pack("!I", eth_type))


def _sampled_ipv4(length, proto, src, dst, sport, dport, flags, tos) -> bytes:
    return struct.pack("!II4s4sIIII", length, proto, ip4(src), ip4(dst), sport, dport, flags, tos)


def rec_ipv4(length=84, proto=6, src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=80,
             flags=0x12, tos=0) -> bytes:
    return sflow_tagged(3, _sampled_ipv4(length, proto, src, dst, sport, dport, flags, tos))


def rec_ipv6(length=104, proto=17, src="2001:db8::1", dst="2001:db8::2", sport=5353, dport=53,
             flags=0, priority=0) -> bytes:
    return sflow_tagged(4, struct.pack("!II16s16sIIII", length, proto, ip6(src), ip6(dst),
                                       sport, dport, flags, priority))


def rec_switch(src_vlan=10, src_prio=0, dst_vlan=20, dst_prio=3) -> bytes:
    return sflow_tagged(1001, struct.pack("!IIII", src_vlan, src_prio, dst_vlan, dst_prio))


def rec_router(next_hop: str | None = "192.0.2.254", src_mask=24, dst_mask=16) -> bytes:
    return sflow_tagged(1002, sflow_address(next_hop) + struct.pack("!II", src_mask, dst_mask))


def rec_tunnel4(egress: bool, src="172.16.0.1", dst="172.16.0.2", proto=17, sport=49152,
                dport=4789, length=0, flags=0, tos=0) -> bytes:
    return sflow_tagged(1023 if egress else 1024,
                        _sampled_ipv4(length, proto, src, dst, sport, dport, flags, tos))


def rec_vni(egress: bool, vni: int) -> bytes:
    return sflow_tagged(1029 if egress else 1030, struct.pack("!I", vni))


IF_COUNTER_VALUES = (7, 6, 10_000_000_000, 1, 3, 123456789012, 1000, 20, 5, 1, 2, 0,
                     987654321098, 2000, 30, 6, 3, 4, 0)


def rec_if_counters(values=IF_COUNTER_VALUES) -> bytes:
    return sflow_tagged(1, struct.pack("!IIQIIQIIIIIIQIIIIII", *values))


ETH_COUNTER_VALUES = tuple(range(1, 14))


def rec_eth_counters(values=ETH_COUNTER_VALUES) -> bytes:
    return sflow_tagged(2, struct.pack("!13I", *values))


# ------------------------------------------------------------------ NetFlow v5

V5_RECORD = "!4s4s4sHHIIIIHHxBBBHHBBxx"


def v5_record(src="10.1.0.1", dst="10.2.0.2", nexthop="0.0.0.0", inp=1, out=2, packets=10,
              octets=1500, first=1000, last=2000, sport=40000, dport=443, flags=0x1b, proto=6,
              tos=0, src_as=0, dst_as=0, src_mask=0, dst_mask=0) -> bytes:
    return struct.pack(V5_RECORD, ip4(src), ip4(dst), ip4(nexthop), inp, out, packets, octets,
                       first, last, sport, dport, flags, proto, tos, src_as, dst_as,
                       src_mask, dst_mask)


def v5_packet(records: list[bytes], seq=100, uptime=5000, secs=1_700_000_000, nsecs=0,
              engine_type=0, engine_id=0, sampling=0, count=None) -> bytes:
    return struct.pack("!HHIIIIBBH", 5, len(records) if count is None else count, uptime, secs,
                       nsecs, seq, engine_type, engine_id, sampling) + b"".join(records)


# ------------------------------------------------------------------ NetFlow v9


def v9_packet(flowsets: list[bytes], seq=1, source_id=0, uptime=100_000,
              secs=1_700_000_000, count=None) -> bytes:
    return struct.pack("!HHIIII", 9, len(flowsets) if count is None else count, uptime, secs,
                       seq, source_id) + b"".join(flowsets)


def v9_flowset(fsid: int, body: bytes, pad: bool = True) -> bytes:
    if pad:
        body = pad4(body)
    return struct.pack("!HH", fsid, len(body) + 4) + body


def v9_template_flowset(templates: list[tuple[int, list[tuple[int, int]]]]) -> bytes:
    body = b""
    for tid, fields in templates:
        body += struct.pack("!HH", tid, len(fields))
        body += b"".join(struct.pack("!HH", t, ln) for t, ln in fields)
    return v9_flowset(0, body)


def v9_options_template_flowset(tid: int, scopes: list[tuple[int, int]],
                                options: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HHH", tid, 4 * len(scopes), 4 * len(options))
    body += b"".join(struct.pack("!HH", t, ln) for t, ln in scopes + options)
    return v9_flowset(1, body)


# ------------------------------------------------------------------ IPFIX


def ipfix_message(sets: list[bytes], seq=0, domain=1, export_time=1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def ipfix_set(set_id: int, body: bytes, pad: int = 0) -> bytes:
    body = body + b"\0" * pad
    return struct.pack("!HH", set_id, len(body) + 4) + body


def ipfix_field(ie_id: int, length: int, pen: int = 0) -> bytes:
    if pen:
        return struct.pack("!HHI", ie_id | 0x8000, length, pen)
    return struct.pack("!HH", ie_id, length)


def ipfix_template(tid: int, fields: list[tuple]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(ipfix_field(*f) for f in fields)


def ipfix_options_template(tid: int, scope_count: int, fields: list[tuple]) -> bytes:
    return (struct.pack("!HHH", tid, len(fields), scope_count)
            + b"".join(ipfix_field(*f) for f in fields))


def ipfix_withdrawal(tid: int) -> bytes:
    return struct.pack("!HH", tid, 0)


def varlen(value: bytes, long_form: bool = False) -> bytes:
    """IPFIX variable-length encoding: 1-byte length, or 255 + 2-byte length."""
    if long_form or len(value) >= 255:
        return struct.pack("!BH", 255, len(value)) + value
    return struct.pack("!B", len(value)) + value


# OVS-like IPFIX template: L2 + IPv4 + L4 + VMware tunnel fields + counters.
VMWARE = 6876
OVS_TEMPLATE_FIELDS = [
    (56, 6), (80, 6), (256, 2), (58, 2),           # src/dst MAC, ethertype, vlan
    (4, 1), (8, 4), (12, 4), (7, 2), (11, 2),      # proto, src/dst IPv4, ports
    (893, 4, VMWARE), (894, 4, VMWARE), (895, 1, VMWARE), (896, 2, VMWARE),
    (897, 2, VMWARE), (891, 1, VMWARE), (892, 0xFFFF, VMWARE),
    (158, 4), (159, 4), (2, 8), (352, 8), (1, 8), (136, 1), (10, 4), (14, 4),
]


def ovs_data_record(vni=5001, src_ip="10.0.0.1", dst_ip="10.0.0.2", sport=33000, dport=80,
                    packets=4096, l2_octets=4096 * 1000, octets=4096 * 986, start_delta=2_000_000,
                    end_delta=500_000, in_if=7, out_if=9) -> bytes:
    return (mac("52:54:00:00:00:01") + mac("52:54:00:00:00:02") + struct.pack("!HH", 0x0800, 0)
            + struct.pack("!B4s4sHH", 6, ip4(src_ip), ip4(dst_ip), sport, dport)
            + struct.pack("!4s4sBHHB", ip4("172.16.0.1"), ip4("172.16.0.2"), 17, 49152, 4789, 1)
            + varlen(vni.to_bytes(3, "big"))
            + struct.pack("!IIQQQBII", start_delta, end_delta, packets, l2_octets, octets, 2,
                          in_if, out_if))
