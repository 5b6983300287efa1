"""Sampled-header parser: Ethernet/802.1Q/IPv4/IPv6/TCP/UDP and VXLAN/Geneve inner decode.

Packets are built with scapy (an independent encoder); the parser itself never uses scapy.
"""
from __future__ import annotations

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from collectors.packet import parse_ethernet, parse_ip


def Eth(src: str = "00:00:00:00:00:01", dst: str = "00:00:00:00:00:02") -> Ether:
    """Ethernet with both addresses set, so scapy never tries to resolve (no traffic)."""
    return Ether(src=src, dst=dst)


OUTER = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
         / IP(src="172.16.0.1", dst="172.16.0.2", tos=0x28))
INNER = (Ether(src="52:54:00:aa:00:01", dst="52:54:00:aa:00:02")
         / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xB8)
         / TCP(sport=33000, dport=443, flags="SA"))


def test_plain_tcp_over_ipv4():
    p = parse_ethernet(bytes(INNER))
    assert (p.src_mac, p.dst_mac, p.ether_type) == ("52:54:00:aa:00:01", "52:54:00:aa:00:02", 0x0800)
    assert (p.src_ip, p.dst_ip, p.ip_protocol, p.tos) == ("10.0.0.1", "10.0.0.2", 6, 0xB8)
    assert (p.src_port, p.dst_port, p.tcp_flags) == (33000, 443, 0x12)
    assert p.vlan is None and p.inner is None and not p.truncated


def test_ipv4_options_are_skipped():
    pkt = Eth() / IP(src="1.2.3.4", dst="5.6.7.8", options=b"\x01\x01\x01\x00") / UDP(sport=1, dport=2)
    p = parse_ethernet(bytes(pkt))
    assert (p.src_port, p.dst_port) == (1, 2)


def test_vlan_and_qinq():
    p = parse_ethernet(bytes(Eth() / Dot1Q(vlan=101, prio=5) / IP() / UDP(sport=7, dport=9)))
    assert (p.vlan, p.ether_type, p.src_port) == (101, 0x0800, 7)
    p = parse_ethernet(bytes(Eth() / Dot1AD(vlan=300) / Dot1Q(vlan=42) / IPv6() / UDP(sport=3, dport=4)))
    assert (p.vlan, p.ether_type, p.dst_port) == (300, 0x86DD, 4)


def test_ipv6_with_extension_headers():
    pkt = (Eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0x20)
           / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=0, m=1) / TCP(sport=10, dport=20, flags="F"))
    p = parse_ethernet(bytes(pkt))
    assert (p.src_ip, p.dst_ip, p.tos, p.ip_protocol) == ("2001:db8::1", "2001:db8::2", 0x20, 6)
    assert (p.src_port, p.dst_port, p.tcp_flags) == (10, 20, 0x01)


def test_non_first_fragments_have_no_ports():
    p = parse_ethernet(bytes(Eth() / IP(frag=100, proto=17) / (b"\x00" * 16)))
    assert p.ip_protocol == 17 and p.src_port is None
    pkt = Eth() / IPv6() / IPv6ExtHdrFragment(offset=5, nh=17) / (b"\x00" * 16)
    p = parse_ethernet(bytes(pkt))
    assert p.ip_protocol == 17 and p.src_port is None


def test_non_ip_frames():
    p = parse_ethernet(bytes(Eth(src="00:00:00:00:00:0a") / ARP()))
    assert p.ether_type == 0x0806 and p.src_ip is None and p.src_mac == "00:00:00:00:00:0a"
    p = parse_ethernet(bytes(Eth() / IP() / ICMP()))
    assert p.ip_protocol == 1 and p.src_port is None


def test_vxlan_inner_decode():
    pkt = OUTER / UDP(sport=49152, dport=4789) / VXLAN(vni=5001) / INNER
    p = parse_ethernet(bytes(pkt))
    assert (p.tunnel_type, p.vni, p.src_ip, p.dst_port) == ("vxlan", 5001, "172.16.0.1", 4789)
    i = p.inner
    assert (i.src_mac, i.src_ip, i.dst_ip, i.ip_protocol) == ("52:54:00:aa:00:01", "10.0.0.1", "10.0.0.2", 6)
    assert (i.src_port, i.dst_port, i.tcp_flags, i.tos) == (33000, 443, 0x12, 0xB8)
    assert not i.truncated and not p.truncated


def test_vxlan_without_i_flag_has_no_vni_but_inner_decoded():
    pkt = OUTER / UDP(dport=4789) / VXLAN(flags=0, vni=9) / INNER
    p = parse_ethernet(bytes(pkt))
    assert p.vni is None and p.inner.src_ip == "10.0.0.1"


def test_geneve_with_options_inner_decode():
    pkt = (OUTER / UDP(sport=50000, dport=6081)
           / GENEVE(vni=0xABCDEF, proto=0x6558, optionlen=3, options=b"\x01\x02\x03\x04" * 3)
           / INNER)
    p = parse_ethernet(bytes(pkt))
    assert (p.tunnel_type, p.vni) == ("geneve", 0xABCDEF)
    assert (p.inner.src_ip, p.inner.dst_port) == ("10.0.0.1", 443)


def test_geneve_carrying_ip_directly():
    pkt = OUTER / UDP(dport=6081) / GENEVE(vni=12, proto=0x86DD) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2)
    p = parse_ethernet(bytes(pkt))
    assert p.vni == 12 and p.inner.src_ip == "fd00::1" and p.inner.src_mac is None
    assert p.inner.dst_port == 2


def test_vxlan_over_ipv6_underlay():
    pkt = (Eth() / IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(dport=4789)
           / VXLAN(vni=77) / INNER)
    p = parse_ethernet(bytes(pkt))
    assert p.src_ip == "2001:db8::a" and p.vni == 77 and p.inner.dst_ip == "10.0.0.2"


def test_only_one_level_of_decapsulation():
    nested = OUTER / UDP(dport=4789) / VXLAN(vni=1) / OUTER / UDP(dport=4789) / VXLAN(vni=2) / INNER
    p = parse_ethernet(bytes(nested))
    assert p.vni == 1 and p.inner.dst_port == 4789 and p.inner.inner is None


VXLAN_FRAME = bytes(OUTER / UDP(sport=49152, dport=4789) / VXLAN(vni=5001) / INNER)


@pytest.mark.parametrize("cut", range(0, 104))
def test_every_truncation_yields_what_can_be_decoded(cut):
    full = VXLAN_FRAME
    assert len(full) == 104
    p = parse_ethernet(full[:cut])
    assert p.truncated == (cut < 98)  # 98 bytes hold everything decoded (TCP flags at 84+13)
    if cut >= 12:
        assert p.src_mac == "02:00:00:00:00:01"
    if cut >= 34:
        assert p.src_ip == "172.16.0.1"
    if cut >= 42:
        assert p.vni is None or p.vni == 5001
    if cut >= 50:
        assert p.vni == 5001 and p.inner is not None
        if cut >= 62:
            assert p.inner.src_mac == "52:54:00:aa:00:01"
        if cut >= 84:
            assert p.inner.src_ip == "10.0.0.1"
        if cut >= 88:
            assert p.inner.src_port == 33000
        if cut >= 98:
            assert p.inner.tcp_flags == 0x12


def test_bare_ip_headers():
    p = parse_ip(bytes(IP(src="9.9.9.9", dst="8.8.8.8") / UDP(sport=53, dport=5353)))
    assert (p.ether_type, p.src_ip, p.src_port) == (0x0800, "9.9.9.9", 53)
    p = parse_ip(bytes(IPv6(src="::1", dst="::2") / TCP(sport=1, dport=2)))
    assert (p.ether_type, p.dst_ip, p.dst_port) == (0x86DD, "::2", 2)
    assert parse_ip(b"").truncated
    assert parse_ip(b"\x70\x00").src_ip is None
