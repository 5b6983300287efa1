"""Neighbour solicitations answered by weftd: frames built with scapy, answers decoded and checked by scapy."""
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                                IPv6)
from scapy.layers.l2 import Ether

from controller import ndp
from controller.nd_service import NdService
from tests.unit.test_flows_ipv6 import build_model6
from topology.addresses import link_local

R1, R2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"


def solicitation(target, src="fd00:1::11", mac=R1, hlim=255, sll=True):
    frame = Ether(src=mac, dst="33:33:ff:00:00:12") / IPv6(src=src, dst="ff02::1:ff00:12", hlim=hlim) \
        / ICMPv6ND_NS(tgt=target)
    return bytes(frame / ICMPv6NDOptSrcLLAddr(lladdr=mac) if sll else frame)


def test_a_solicitation_is_answered_with_a_solicited_override_advertisement_scapy_accepts():
    sol = ndp.parse_solicitation(solicitation("fd00:1::12"))
    assert sol == ndp.Solicitation(R1, "fd00:1::11", "ff02::1:ff00:12", "fd00:1::12", R1)
    frame = Ether(ndp.advertisement(sol, R2))
    assert (frame.src, frame.dst, frame[IPv6].src, frame[IPv6].dst, frame[IPv6].hlim) == \
        (R2, R1, "fd00:1::12", "fd00:1::11", 255)
    na = frame[ICMPv6ND_NA]
    assert (na.tgt, na.S, na.O, na.R, frame[ICMPv6NDOptDstLLAddr].lladdr) == ("fd00:1::12", 1, 1, 0, R2)
    raw = bytes(frame)
    frame[ICMPv6ND_NA].cksum = None                      # scapy recomputes: the same checksum
    assert bytes(Ether(bytes(frame))) == raw
    assert ndp.advertisement(ndp.parse_solicitation(solicitation("fd00:1::12", src="::", sll=False)), R2) is None


def test_invalid_solicitations_are_not_parsed():
    assert ndp.parse_solicitation(solicitation("fd00:1::12", hlim=64)) is None     # not from the link
    assert ndp.parse_solicitation(solicitation("ff02::1")) is None                 # multicast target
    assert ndp.parse_solicitation(bytes(Ether() / IPv6() / ICMPv6ND_NA(tgt="fd00::1"))) is None
    assert ndp.parse_solicitation(b"\x00" * 20) is None
    assert ndp.parse_solicitation(solicitation("fd00:1::12")[:-3]) is None          # truncated


class _Engine:
    def __init__(self, model):
        self.model = model

    def effective_model(self):
        return self.model


def test_the_service_answers_only_for_addresses_of_the_senders_network():
    model = build_model6()
    nd = NdService(_Engine(model))
    for target, mac in (("fd00:1::12", R2), (link_local(R2), R2), ("fd00:1::13", "fa:16:3e:00:00:03")):
        answer = Ether(nd.answer(model, "hv1", 1, solicitation(target)))
        assert answer[ICMPv6NDOptDstLLAddr].lladdr == mac and answer[ICMPv6ND_NA].tgt == target
    assert nd.answer(model, "hv1", 1, solicitation("fd00:1::99")) is None       # nobody's
    assert nd.answer(model, "hv1", 1, solicitation(link_local("fa:16:3e:00:00:b1"))) is None  # blue's b1
    blue = Ether(nd.answer(model, "hv1", 3, solicitation("fd00:1::11", "fd00:1::12", "fa:16:3e:00:00:b1")))
    assert blue[ICMPv6NDOptDstLLAddr].lladdr == "fa:16:3e:00:00:b2"             # blue's fd00:1::11
    assert nd.answer(model, "hv1", 1, solicitation("fd00:1::12", mac="fa:16:3e:00:00:99")) is None
    assert nd.answer(model, "hv1", 9, solicitation("fd00:1::12")) is None       # no port there
    assert nd.counters["answers"] == 4 and nd.counters["ignored"] == 4


def test_the_router_answers_for_its_gateway_and_link_local_with_the_router_flag():
    from tests.unit.test_flows_routing6 import B_MAC, R_MAC, build_routed6
    model = build_routed6()
    nd = NdService(_Engine(model))
    ra = "fa:16:3e:00:00:01"                        # red/n0 (fd00::/64), hv1 ofport 1
    for target in ("fd00::1", link_local(R_MAC)):
        answer = Ether(nd.answer(model, "hv1", 1, solicitation(target, src="fd00::10", mac=ra)))
        na = answer[ICMPv6ND_NA]
        assert (answer.src, answer[ICMPv6NDOptDstLLAddr].lladdr, na.tgt, na.R, na.S, na.O) == \
            (R_MAC, R_MAC, target, 1, 1, 1)
    port = Ether(nd.answer(model, "hv1", 1, solicitation("fd00::20", src="fd00::10", mac=ra)))
    assert port[ICMPv6ND_NA].R == 0                 # a VM is no router
    # not on this link: the router's address on n1, blue's router, a network without a router
    for target in ("fd00:1::1", link_local(B_MAC)):
        assert nd.answer(model, "hv1", 1, solicitation(target, src="fd00::10", mac=ra)) is None
    detached = build_routed6(routes=(), attached=("n1",))
    assert NdService(_Engine(detached)).answer(
        detached, "hv1", 1, solicitation("fd00::1", src="fd00::10", mac=ra)) is None
