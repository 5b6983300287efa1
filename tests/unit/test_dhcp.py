"""controller.dhcp: client packets built with scapy, replies decoded with scapy, RFC 2131/3442 rules checked."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum

from controller import dhcp
from controller.dhcp import DhcpRequest, Lease, RateLimiter, answer, parse_request

PORT_MAC = "02:00:0a:00:00:05"
OTHER_MAC = "02:00:0a:00:00:99"
SERVER_MAC = "02:fe:00:00:00:01"
BCAST_MAC = "ff:ff:ff:ff:ff:ff"
MAGIC = b"\x63\x82\x53\x63"


def lease(**kw) -> Lease:
    base = dict(mac=PORT_MAC, ip="10.0.0.5", prefixlen=24, server_ip="10.0.0.1", server_mac=SERVER_MAC,
                router="10.0.0.1", dns=("10.0.0.2", "8.8.8.8"))
    base.update(kw)
    return Lease(**base)


def client(mtype, *, mac=PORT_MAC, chaddr=None, xid=0x3903F326, flags=0, ciaddr="0.0.0.0", giaddr="0.0.0.0",
           src="0.0.0.0", dst="255.255.255.255", options=(), vlan=None, sport=68, dport=67, op=1, hlen=6,
           htype=1, sname=b"", file=b"") -> bytes:
    """A client DHCP frame built by scapy."""
    eth = Ether(src=mac, dst=BCAST_MAC)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    hw = bytes.fromhex((chaddr or mac).replace(":", ""))
    opts = ([("message-type", mtype)] if mtype is not None else []) + list(options) + ["end"]
    pkt = eth / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / BOOTP(
        op=op, htype=htype, hlen=hlen, xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr, chaddr=hw,
        sname=sname, file=file) / DHCP(options=opts)
    return bytes(pkt)


def respond(frame: bytes, the_lease: Lease | None = None) -> bytes | None:
    req = parse_request(frame)
    assert req is not None, "the client frame did not parse"
    return answer(req, lease() if the_lease is None else the_lease)


def decoded(reply: bytes):
    assert reply is not None, "expected a reply"
    pkt = Ether(reply)
    assert DHCP in pkt, pkt.summary()
    return pkt


def options(pkt) -> dict:
    """scapy's decoded DHCP options as {name: value or tuple of values}."""
    out = {}
    for opt in pkt[DHCP].options:
        if opt in ("end", "pad"):
            continue
        name, *values = opt
        assert name not in out, f"option {name} repeated"
        out[name] = values[0] if len(values) == 1 else tuple(values)
    return out


def raw_options(reply: bytes) -> dict[int, bytes]:
    """An independent walk of the reply's options area (repeated codes concatenated, RFC 3396)."""
    pkt = Ether(reply)
    bootp = bytes(pkt[UDP].payload)
    assert bootp[236:240] == MAGIC
    out, i = {}, 240
    while bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        code, n = bootp[i], bootp[i + 1]
        out[code] = out.get(code, b"") + bootp[i + 2:i + 2 + n]
        i += 2 + n
    assert not any(bootp[i + 1:]), "only padding may follow the end option"
    return out


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


# --------------------------------------------------------------------------- parse_request

def test_parse_discover_fields():
    frame = client("discover", xid=0xDEADBEEF, flags=0x8000, giaddr="0.0.0.0", options=[
        ("param_req_list", [1, 3, 6, 15, 26, 121]), ("client_id", b"\x01" + ip4("2.0.10.0") + b"\x00\x05"),
        ("hostname", b"vm-1\x00"), ("requested_addr", "10.0.0.5")])
    req = parse_request(frame)
    assert req == DhcpRequest(eth_src=PORT_MAC, chaddr=PORT_MAC, xid=0xDEADBEEF, msg_type=dhcp.DISCOVER,
                              requested_ip="10.0.0.5", server_id=None, ciaddr="0.0.0.0", flags=0x8000,
                              giaddr="0.0.0.0", param_request_list=(1, 3, 6, 15, 26, 121),
                              client_id=b"\x01\x02\x00\x0a\x00\x00\x05", hostname="vm-1", vlan=None)
    assert req.broadcast


def test_parse_request_fields_and_types():
    frame = client("request", ciaddr="10.0.0.5", giaddr="10.9.9.9",
                   options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5")])
    req = parse_request(frame)
    assert (req.msg_type, req.server_id, req.requested_ip, req.ciaddr, req.giaddr, req.flags, req.broadcast) == \
        (3, "10.0.0.1", "10.0.0.5", "10.0.0.5", "10.9.9.9", 0, False)
    assert req.client_id is None and req.hostname is None and req.param_request_list == ()
    for name, num in (("decline", 4), ("release", 7), ("inform", 8)):
        assert parse_request(client(name)).msg_type == num


def test_parse_8021q_tagged():
    req = parse_request(client("discover", vlan=123))
    assert req is not None and req.vlan == 123 and req.chaddr == PORT_MAC


def test_parse_tolerates_ethernet_padding_and_missing_end():
    frame = client("discover")
    assert parse_request(frame + bytes(30)) is not None           # trailer after the IP datagram
    no_end = bytes(Ether(src=PORT_MAC, dst=BCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255")
                   / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("02000a000005"))
                   / Raw(MAGIC + b"\x35\x01\x01"))
    assert parse_request(no_end).msg_type == dhcp.DISCOVER


def test_parse_option_overload_and_concatenation():
    # message type carried in 'file' (option 52 = 1), DNS-style split option 55 concatenated (RFC 3396)
    file_opts = b"\x35\x01\x03\x37\x02\x01\x03\xff"
    frame = bytes(Ether(src=PORT_MAC, dst=BCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255")
                  / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("02000a000005"), file=file_opts)
                  / Raw(MAGIC + b"\x34\x01\x01\x37\x01\x06\xff"))
    req = parse_request(frame)
    assert req.msg_type == dhcp.REQUEST and req.param_request_list == (6, 1, 3)


@pytest.mark.parametrize("frame", [
    pytest.param(client("discover", sport=67, dport=68), id="server-ports"),
    pytest.param(client("discover", sport=68, dport=68), id="wrong-dport"),
    pytest.param(client("discover", op=2), id="bootreply"),
    pytest.param(client("discover", htype=6), id="htype"),
    pytest.param(client("discover", hlen=16), id="hlen"),
    pytest.param(client("offer"), id="server-msg-offer"),
    pytest.param(client("ack"), id="server-msg-ack"),
    pytest.param(client(None), id="no-msg-type-bootp"),
    pytest.param(client("discover").replace(MAGIC, b"\x63\x82\x53\x64"), id="bad-cookie"),
    pytest.param(bytes(Ether(src=PORT_MAC) / IP() / UDP(sport=68, dport=67) / Raw(bytes(300))), id="no-cookie"),
    pytest.param(bytes(Ether(src=PORT_MAC, type=0x86DD) / Raw(bytes(300))), id="ipv6"),
    pytest.param(bytes(Ether(src=PORT_MAC) / IP(proto=6) / Raw(bytes(300))), id="not-udp"),
    pytest.param(bytes(Ether(src=PORT_MAC) / IP(flags="MF") / UDP(sport=68, dport=67)
                       / BOOTP(chaddr=b"\x02" * 6) / DHCP(options=[("message-type", 1), "end"])), id="fragment"),
    pytest.param(bytes(Ether(src=PORT_MAC) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / IP() / UDP(sport=68, dport=67)
                       / BOOTP(chaddr=b"\x02" * 6) / DHCP(options=[("message-type", 1), "end"])), id="qinq"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff" * 13, id="short-eth"),
    pytest.param(bytes(Ether(src=PORT_MAC) / Raw(b"\x45")), id="short-ip"),
])
def test_parse_rejects(frame):
    assert parse_request(frame) is None


def test_parse_rejects_bad_ip_checksum_and_bad_option_lengths():
    frame = bytearray(client("discover"))
    frame[24] ^= 0xFF                   # IP header checksum
    assert parse_request(bytes(frame)) is None
    bad50 = client("request", options=[("requested_addr", "10.0.0.5")]).replace(b"\x32\x04", b"\x32\x03", 1)
    assert parse_request(bad50) is None
    overrun = bytearray(client("discover"))
    overrun[14 + 20 + 8 + 240 + 1] = 200           # option 53's length runs past the end
    assert parse_request(bytes(overrun)) is None


def test_parse_rejects_trailing_option_overrunning_the_datagram():
    def frame(tail: bytes) -> bytes:
        return bytes(Ether(src=PORT_MAC, dst=BCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255")
                     / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("02000a000005"))
                     / Raw(MAGIC + b"\x35\x01\x01" + tail))
    assert parse_request(frame(b"\x0c\x03abc")).hostname == "abc"
    assert parse_request(frame(b"\x0c\x32abc")) is None        # hostname claims 50 bytes, 3 remain
    assert parse_request(frame(b"\x0c")) is None                # code without a length


def test_parse_every_truncation_is_rejected():
    frame = client("request", options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5")])
    ip_end = 14 + struct.unpack_from("!H", frame, 16)[0]
    for cut in range(ip_end):
        assert parse_request(frame[:cut]) is None, cut
    assert parse_request(frame[:ip_end]) is not None


def test_parse_never_raises_on_odd_input_types():
    for bad in (None, 5, "text", [1, 2], memoryview(b"\x00" * 5)):
        assert parse_request(bad) is None
    assert parse_request(bytearray(client("discover"))).msg_type == dhcp.DISCOVER


# --------------------------------------------------------------------------- answer: message rules

def test_discover_gets_offer_with_every_option():
    pkt = decoded(respond(client("discover", xid=0x01020304)))
    b = pkt[BOOTP]
    assert (b.op, b.htype, b.hlen, b.xid, b.flags, b.hops, b.secs) == (2, 1, 6, 0x01020304, 0, 0, 0)
    assert (b.yiaddr, b.siaddr, b.ciaddr, b.giaddr) == ("10.0.0.5", "10.0.0.1", "0.0.0.0", "0.0.0.0")
    assert b.chaddr == bytes.fromhex("02000a000005") + bytes(10)
    assert b.sname == bytes(64) and b.file == bytes(128)
    assert options(pkt) == {
        "message-type": 2, "server_id": "10.0.0.1", "lease_time": 86400, "renewal_time": 43200,
        "rebinding_time": 75600, "subnet_mask": "255.255.255.0", "broadcast_address": "10.0.0.255",
        "router": "10.0.0.1", "name_server": ("10.0.0.2", "8.8.8.8"), "interface-mtu": 1450}
    # the option order puts the message type first and the subnet mask before the router (RFC 2132 3.3)
    names = [o[0] for o in pkt[DHCP].options if isinstance(o, tuple)]
    assert names[0] == "message-type" and names.index("subnet_mask") < names.index("router")


def test_discover_with_other_requested_ip_still_offers_the_ports_address():
    pkt = decoded(respond(client("discover", options=[("requested_addr", "10.0.0.77")])))
    assert pkt[BOOTP].yiaddr == "10.0.0.5" and options(pkt)["message-type"] == 2


def test_request_selecting_gets_ack():
    pkt = decoded(respond(client("request", options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5")])))
    o = options(pkt)
    assert o["message-type"] == 5 and pkt[BOOTP].yiaddr == "10.0.0.5" and o["lease_time"] == 86400
    assert o["subnet_mask"] == "255.255.255.0" and o["router"] == "10.0.0.1"


def test_request_init_reboot_right_address_ack_wrong_address_nak():
    assert options(decoded(respond(client("request", options=[("requested_addr", "10.0.0.5")]))))[
        "message-type"] == 5
    nak = decoded(respond(client("request", options=[("requested_addr", "192.168.1.50")])))
    assert options(nak) == {"message-type": 6, "server_id": "10.0.0.1"}     # no lease times, no configuration
    b = nak[BOOTP]
    assert (b.yiaddr, b.ciaddr, b.siaddr) == ("0.0.0.0", "0.0.0.0", "0.0.0.0")
    assert nak[IP].dst == "255.255.255.255" and nak[Ether].dst == BCAST_MAC
    assert nak[IP].src == "10.0.0.1" and nak[Ether].src == SERVER_MAC


def test_request_selecting_wrong_address_naks():
    nak = decoded(respond(client("request", options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.6")])))
    assert options(nak)["message-type"] == 6


def test_request_for_another_server_is_ignored():
    assert respond(client("request", options=[("server_id", "10.0.0.254"), ("requested_addr", "10.0.0.5")])) is None


def test_renewing_unicast_ack_and_wrong_ciaddr_nak():
    ack = decoded(respond(client("request", ciaddr="10.0.0.5", src="10.0.0.5", dst="10.0.0.1")))
    assert options(ack)["message-type"] == 5
    assert (ack[BOOTP].ciaddr, ack[BOOTP].yiaddr) == ("10.0.0.5", "10.0.0.5")
    assert ack[IP].dst == "10.0.0.5" and ack[Ether].dst == PORT_MAC
    # even with the broadcast bit, a client that has its address is answered by unicast (RFC 2131 4.1)
    ack_b = decoded(respond(client("request", ciaddr="10.0.0.5", flags=0x8000)))
    assert ack_b[IP].dst == "10.0.0.5" and ack_b[Ether].dst == PORT_MAC and ack_b[BOOTP].flags == 0x8000
    nak = decoded(respond(client("request", ciaddr="10.0.0.9", src="10.0.0.9", dst="10.0.0.1")))
    assert options(nak)["message-type"] == 6 and nak[IP].dst == "255.255.255.255"


def test_request_without_address_is_acked_with_the_ports_address():
    pkt = decoded(respond(client("request")))
    assert options(pkt)["message-type"] == 5 and pkt[BOOTP].yiaddr == "10.0.0.5"


def test_inform_gets_options_only():
    pkt = decoded(respond(client("inform", ciaddr="10.0.0.5", src="10.0.0.5")))
    o = options(pkt)
    assert o["message-type"] == 5 and pkt[BOOTP].yiaddr == "0.0.0.0" and pkt[BOOTP].ciaddr == "10.0.0.5"
    assert not {"lease_time", "renewal_time", "rebinding_time"} & set(o)
    assert o["subnet_mask"] == "255.255.255.0" and o["name_server"] == ("10.0.0.2", "8.8.8.8")
    assert pkt[IP].dst == "10.0.0.5" and pkt[Ether].dst == PORT_MAC


@pytest.mark.parametrize("mtype", ["decline", "release"])
def test_decline_and_release_get_no_answer(mtype):
    assert respond(client(mtype, options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5")])) is None


def test_unknown_port_and_foreign_macs_get_nothing():
    req = parse_request(client("discover"))
    assert answer(req, None) is None
    # chaddr naming another port (Ethernet source is the port's) and the reverse
    assert respond(client("discover", chaddr=OTHER_MAC)) is None
    assert respond(client("discover", mac=OTHER_MAC, chaddr=PORT_MAC)) is None
    assert respond(client("discover", mac=OTHER_MAC)) is None
    # the lease's MAC is normalised, so case does not matter
    assert respond(client("discover"), lease(mac=PORT_MAC.upper())) is not None


def test_xid_flags_giaddr_and_chaddr_are_echoed():
    for xid in (0, 1, 0xFFFFFFFF, 0x12345678):
        pkt = decoded(respond(client("discover", xid=xid, giaddr="0.0.0.0")))
        assert pkt[BOOTP].xid == xid
    pkt = decoded(respond(client("discover", giaddr="172.16.0.1", flags=0x8000)))
    assert pkt[BOOTP].giaddr == "172.16.0.1" and pkt[BOOTP].flags == 0x8000
    assert pkt[BOOTP].chaddr[:6] == bytes.fromhex(PORT_MAC.replace(":", ""))


def test_client_identifier_is_echoed():
    cid = b"\xff\x00\x00\x00\x01\x00\x01\x02\x03"
    for msg, extra in (("discover", []), ("request", [("requested_addr", "10.0.0.99")])):
        pkt = decoded(respond(client(msg, options=[("client_id", cid)] + extra)))
        assert options(pkt)["client_id"] == cid
    assert "client_id" not in options(decoded(respond(client("discover"))))


# --------------------------------------------------------------------------- answer: option values

@pytest.mark.parametrize("ip,prefix,mask,bcast", [
    ("10.0.0.5", 24, "255.255.255.0", "10.0.0.255"),
    ("172.16.37.9", 20, "255.255.240.0", "172.16.47.255"),
    ("192.168.0.2", 30, "255.255.255.252", "192.168.0.3"),
])
def test_subnet_mask_and_broadcast(ip, prefix, mask, bcast):
    o = options(decoded(respond(client("discover"), lease(ip=ip, prefixlen=prefix))))
    assert o["subnet_mask"] == mask and o["broadcast_address"] == bcast


def test_no_broadcast_option_for_31_and_32():
    for prefix in (31, 32):
        o = options(decoded(respond(client("discover"), lease(prefixlen=prefix))))
        assert "broadcast_address" not in o and o["subnet_mask"] == ("255.255.255.254", "255.255.255.255")[prefix - 31]


def test_router_only_when_set():
    assert "router" not in options(decoded(respond(client("discover"), lease(router=None))))
    assert options(decoded(respond(client("discover"), lease(router="10.0.0.254"))))["router"] == "10.0.0.254"


def test_dns_list_and_absence():
    o = options(decoded(respond(client("discover"), lease(dns=("1.1.1.1", "9.9.9.9", "8.8.4.4")))))
    assert o["name_server"] == ("1.1.1.1", "9.9.9.9", "8.8.4.4")
    assert "name_server" not in options(decoded(respond(client("discover"), lease(dns=()))))
    assert options(decoded(respond(client("discover"), lease(dns=("1.1.1.1",)))))["name_server"] == "1.1.1.1"


def test_many_dns_servers_are_split_per_rfc3396():
    servers = tuple(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(70))       # 280 bytes > 255
    reply = respond(client("discover"), lease(dns=servers))
    assert raw_options(reply)[6] == b"".join(ip4(s) for s in servers)


@pytest.mark.parametrize("mtu", [1450, 1400, 9000])
def test_mtu(mtu):
    assert options(decoded(respond(client("discover"), lease(mtu=mtu))))["interface-mtu"] == mtu


@pytest.mark.parametrize("t,t1,t2", [(86400, 43200, 75600), (3600, 1800, 3150), (1, 0, 0), (601, 300, 525),
                                     (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)])
def test_lease_times(t, t1, t2):
    for msg in ("discover", "request"):
        o = options(decoded(respond(client(msg), lease(lease_time=t))))
        assert (o["lease_time"], o["renewal_time"], o["rebinding_time"]) == (t, t1, t2)


def test_domain():
    assert options(decoded(respond(client("discover"), lease(domain="tenant1.weft.internal"))))["domain"] == \
        b"tenant1.weft.internal"
    assert "domain" not in options(decoded(respond(client("discover"))))


# RFC 3442 section 3's table: subnet -> destination descriptor
RFC3442 = [
    ("0.0.0.0/0", bytes([0])),
    ("10.0.0.0/8", bytes([8, 10])),
    ("10.0.0.0/24", bytes([24, 10, 0, 0])),
    ("10.17.0.0/16", bytes([16, 10, 17])),
    ("10.27.129.0/24", bytes([24, 10, 27, 129])),
    ("10.229.0.128/25", bytes([25, 10, 229, 0, 128])),
    ("10.198.122.47/32", bytes([32, 10, 198, 122, 47])),
]


@pytest.mark.parametrize("cidr,descriptor", RFC3442)
def test_classless_route_rfc3442_examples(cidr, descriptor):
    reply = respond(client("discover"), lease(router=None, routes=((cidr, "10.0.0.254"),)))
    assert raw_options(reply)[121] == descriptor + bytes([10, 0, 0, 254])
    assert dhcp.classless_routes([(cidr, "10.0.0.254")]) == descriptor + bytes([10, 0, 0, 254])


def test_classless_routes_all_examples_and_default_route():
    routes = tuple((cidr, "10.0.0.254") for cidr, _ in RFC3442[1:])
    want = b"".join(d + ip4("10.0.0.254") for _, d in RFC3442[1:])
    # no router: exactly the configured routes, no option 3
    raw = raw_options(respond(client("discover"), lease(router=None, routes=routes)))
    assert raw[121] == want and 3 not in raw
    # router set: option 3 for old clients and the default route appended to 121 (RFC 3442 section 3)
    pkt = decoded(respond(client("discover"), lease(router="10.0.0.1", routes=routes)))
    raw = raw_options(bytes(pkt))
    assert raw[121] == want + b"\x00" + ip4("10.0.0.1") and raw[3] == ip4("10.0.0.1")
    assert options(pkt)["classless_static_routes"][-1] == "0.0.0.0/0:10.0.0.1"
    # an explicit default route is not duplicated
    raw = raw_options(respond(client("discover"), lease(router="10.0.0.1", routes=(("0.0.0.0/0", "10.0.0.9"),))))
    assert raw[121] == b"\x00" + ip4("10.0.0.9")
    # router but no routes: no option 121 at all
    assert 121 not in raw_options(respond(client("discover")))


def test_classless_routes_host_bits_are_masked():
    assert dhcp.classless_routes([("10.229.0.200/25", "0.0.0.0")]) == bytes([25, 10, 229, 0, 128, 0, 0, 0, 0])


# --------------------------------------------------------------------------- answer: addressing and framing

def test_unicast_vs_broadcast_addressing():
    uni = decoded(respond(client("discover", flags=0)))
    assert (uni[Ether].src, uni[Ether].dst, uni[IP].src, uni[IP].dst) == (SERVER_MAC, PORT_MAC, "10.0.0.1",
                                                                          "10.0.0.5")
    bc = decoded(respond(client("discover", flags=0x8000)))
    assert (bc[Ether].src, bc[Ether].dst, bc[IP].src, bc[IP].dst) == (SERVER_MAC, BCAST_MAC, "10.0.0.1",
                                                                      "255.255.255.255")
    ack = decoded(respond(client("request", flags=0x8000, options=[("requested_addr", "10.0.0.5")])))
    assert ack[IP].dst == "255.255.255.255" and ack[Ether].dst == BCAST_MAC
    for pkt in (uni, bc, ack):
        assert (pkt[IP].ttl, pkt[IP].proto, pkt[IP].ihl, pkt[IP].frag) == (64, 17, 5, 0)
        assert (pkt[UDP].sport, pkt[UDP].dport) == (67, 68)


@pytest.mark.parametrize("frame", [
    client("discover"), client("discover", flags=0x8000), client("request", ciaddr="10.0.0.5"),
    client("request", options=[("requested_addr", "10.9.9.9"), ("client_id", b"\x01abcdef")]),
    client("inform", ciaddr="10.0.0.5"), client("discover", vlan=7),
], ids=["offer", "offer-bcast", "renew-ack", "nak", "inform", "tagged"])
def test_checksums_and_lengths(frame):
    reply = respond(frame, lease(domain="x.example", routes=(("10.10.0.0/16", "10.0.0.254"),)))
    pkt = Ether(reply)
    ip_off = 18 if Dot1Q in pkt else 14
    ip_hdr = reply[ip_off:ip_off + 20]
    assert checksum(ip_hdr) == 0                          # a valid header sums to zero
    # scapy recomputes both checksums over the same bytes
    rebuilt = IP(bytes(IP(src=pkt[IP].src, dst=pkt[IP].dst, ttl=64, id=0, flags=0)
                       / UDP(sport=67, dport=68) / Raw(reply[ip_off + 28:])))
    assert rebuilt.chksum == pkt[IP].chksum and rebuilt[UDP].chksum == pkt[UDP].chksum != 0
    assert pkt[IP].len == len(reply) - ip_off and pkt[UDP].len == len(reply) - ip_off - 20
    assert len(reply) - ip_off - 28 >= 300                # BOOTP padded to the RFC 1542 minimum
    assert reply[ip_off + 28 + 236:ip_off + 28 + 240] == MAGIC


def test_udp_checksum_zero_is_sent_as_ffff():
    # the one's-complement sum is linear in the xid: setting xid to the checksum obtained with xid 0
    # makes the computed checksum 0, which UDP must transmit as 0xffff (RFC 768)
    first = Ether(respond(client("discover", xid=0)))[UDP].chksum
    reply = respond(client("discover", xid=first))
    pkt = Ether(reply)
    assert pkt[UDP].chksum == 0xFFFF
    rebuilt = IP(bytes(IP(src=pkt[IP].src, dst=pkt[IP].dst) / UDP(sport=67, dport=68) / Raw(reply[42:])))
    assert rebuilt[UDP].chksum == 0xFFFF


def test_tagged_request_gets_tagged_reply():
    pkt = decoded(respond(client("discover", vlan=42)))
    assert pkt[Dot1Q].vlan == 42 and pkt[Dot1Q].type == 0x0800 and pkt[BOOTP].yiaddr == "10.0.0.5"


def test_reply_parses_as_no_client_message():
    # our own replies fed back in (e.g. a loop) are not client messages
    assert parse_request(respond(client("discover"))) is None


# --------------------------------------------------------------------------- Lease validation

@pytest.mark.parametrize("kw", [
    dict(mac="02:00:0a:00:00"), dict(mac="zz:00:0a:00:00:05"), dict(server_mac=""), dict(ip="10.0.0.256"),
    dict(ip="10.0.0"), dict(server_ip="::1"), dict(prefixlen=33), dict(prefixlen=-1), dict(prefixlen="24"),
    dict(router="gateway"), dict(dns=("8.8.8.8", "x")), dict(mtu=67), dict(mtu=70000), dict(lease_time=0),
    dict(lease_time=2 ** 32), dict(domain=""), dict(domain="exämple.org"), dict(routes=(("10.0.0.0/33", "1.1.1.1"),)),
    dict(routes=(("10.0.0.0/8",),)), dict(routes=(("10.0.0.0/8", "via"),)),
])
def test_lease_validation(kw):
    with pytest.raises(ValueError):
        lease(**kw)


def test_lease_normalises():
    the = lease(mac=PORT_MAC.upper(), dns=["8.8.8.8"], routes=[("10.1.2.3/16", "10.0.0.254")])
    assert the.mac == PORT_MAC and the.dns == ("8.8.8.8",) and the.routes == (("10.1.0.0/16", "10.0.0.254"),)
    hash(the)


# --------------------------------------------------------------------------- fuzzing

def _seeds() -> list[bytes]:
    cid = [("client_id", b"\x01" + bytes(6))]
    return [
        client("discover", options=[("param_req_list", [1, 3, 6, 121]), ("hostname", b"vm")] + cid),
        client("request", options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5")]),
        client("request", ciaddr="10.0.0.5", flags=0x8000),
        client("inform", ciaddr="10.0.0.5", vlan=9),
        client("release", options=[("server_id", "10.0.0.1")]),
        bytes(Ether(src=PORT_MAC, dst=BCAST_MAC) / IP(dst="255.255.255.255") / UDP(sport=68, dport=67)
              / BOOTP(chaddr=bytes.fromhex("02000a000005"), file=b"\x35\x01\x01\xff", sname=b"\x37\x01\x03\xff")
              / Raw(MAGIC + b"\x34\x01\x03\xff")),
    ]


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if not buf:
            buf = bytearray(rng.randbytes(rng.randrange(64)))
        pos = rng.randrange(len(buf))
        if op == 0:                                     # bit flips
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:                                   # random byte
            buf[pos] = rng.randrange(256)
        elif op == 2:                                   # boundary values
            buf[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFE, 0xFF))
        elif op == 3:                                   # truncation
            del buf[pos:]
        elif op == 4:                                   # insertion
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 5:                                   # deletion
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 6:                                   # splice with another seed
            other = rng.choice(seeds)
            buf = buf[:pos] + other[rng.randrange(len(other)):]
        else:                                           # 16-bit length-ish field set to something odd
            if pos + 2 <= len(buf):
                buf[pos:pos + 2] = struct.pack("!H", rng.choice((0, 1, 7, 8, 20, 255, 300, 0xFFFF,
                                                                 rng.randrange(0x10000))))
    return bytes(buf)


def test_fuzz_parse_request_never_raises():
    rng = random.Random(0xD4C9)
    seeds = _seeds()
    for seed in seeds:
        assert parse_request(seed) is not None
    the_lease = lease(routes=(("10.10.0.0/16", "10.0.0.254"),))
    parsed = 0
    for i in range(20_000):
        kind = i % 10
        if kind == 0:                                   # pure noise
            frame = rng.randbytes(rng.randrange(400))
        elif kind == 1:                                 # valid headers, random BOOTP body
            frame = seeds[0][:42] + rng.randbytes(rng.randrange(400))
        elif kind == 2:                                 # valid fixed part, random options
            frame = seeds[1][:42 + 240] + rng.randbytes(rng.randrange(300))
        else:
            frame = _mutate(rng, rng.choice(seeds), seeds)
        try:
            req = parse_request(frame)
            if req is not None:
                parsed += 1
                assert isinstance(req, DhcpRequest) and req.msg_type in (1, 3, 4, 7, 8)
                reply = answer(req, the_lease)
                if reply is not None:                   # whatever we send must itself be well formed
                    assert Ether(reply)[BOOTP].op == 2
        except Exception as exc:                        # pragma: no cover - reports the reproducer
            raise AssertionError(f"iteration {i}: {exc!r} on {frame.hex()}") from exc
    assert parsed > 2000, parsed                        # the mutations also reach the option parser


# --------------------------------------------------------------------------- RateLimiter

def test_rate_limiter_burst_then_rate():
    rl = RateLimiter(rate=20, burst=40)
    assert all(rl.allow("p1", 100.0) for _ in range(40))
    assert not rl.allow("p1", 100.0)
    assert rl.allow("p2", 100.0)                        # other ports unaffected
    assert sum(rl.allow("p1", 100.5) for _ in range(20)) == 10      # 0.5 s * 20/s
    # sustained: from 100.5 s (bucket empty) to 111.0 s at 1000 offers/s, 10.5 s * 20/s get through
    got = sum(rl.allow("p1", 101.0 + k / 1000) for k in range(10_001))
    assert 209 <= got <= 210, got


def test_rate_limiter_caps_refill_at_burst():
    rl = RateLimiter(rate=20, burst=40)
    rl.allow("p", 0.0)
    assert sum(rl.allow("p", 3600.0) for _ in range(100)) == 40


def test_rate_limiter_clock_stepping_back_grants_nothing():
    rl = RateLimiter(rate=10, burst=2)
    assert rl.allow("p", 50.0) and rl.allow("p", 50.0) and not rl.allow("p", 50.0)
    assert not rl.allow("p", 10.0)                      # time went backwards: no refill, no error
    assert rl.allow("p", 10.25)                         # and it resumes from the new clock


def test_rate_limiter_bounds_tracked_keys():
    rl = RateLimiter(rate=1, burst=2, max_keys=3)
    for k in "abc":
        assert rl.allow(k, 0.0)
    assert not rl.allow("d", 0.5)                       # all three still refilling: new key refused
    assert len(rl) == 3
    assert rl.allow("d", 5.0)                           # idle (full) buckets are forgotten
    assert len(rl) == 1


@pytest.mark.parametrize("kw", [dict(rate=0), dict(rate=-1), dict(burst=0), dict(max_keys=0)])
def test_rate_limiter_validation(kw):
    with pytest.raises(ValueError):
        RateLimiter(**kw)


# --------------------------------------------------------------------------- runtime properties

def test_no_scapy_at_runtime():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", "import sys, controller.dhcp; print('scapy' in sys.modules)"],
                         cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_speed():
    frame = client("request", options=[("server_id", "10.0.0.1"), ("requested_addr", "10.0.0.5"),
                                       ("param_req_list", [1, 3, 6, 15, 26, 121])])
    the_lease = lease(routes=(("10.10.0.0/16", "10.0.0.254"),))
    start = time.perf_counter()
    for _ in range(5000):
        answer(parse_request(frame), the_lease)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.5, f"{elapsed / 5000 * 1e6:.0f} us per packet"    # ~25 us on a laptop
