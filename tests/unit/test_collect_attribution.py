"""Attribution of flow records to ports/networks/tenants/hosts, ambiguity, and the dedup rule."""
from __future__ import annotations

import dataclasses

import pytest

from collectors.attribution import Attributor, Endpoint
from collectors.records import FlowRecord
from topology.model import Binding, Host, Model, Network, Port, Tenant

MAC_A, MAC_B, MAC_C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
ROUTER_MAC = "02:00:00:00:ff:01"
MGMT = {"192.0.2.1": "hv1", "192.0.2.2": "hv2", "192.0.2.3": "hv3"}


def two_tenants() -> Model:
    """red and blue: same CIDRs, same MACs, same IPs; a on hv1, b on hv2, c (net2) on hv3."""
    m = Model()
    for t, base, ofp in (("red", 100, 5), ("blue", 200, 7)):
        m.tenants[t] = Tenant(f"t-{t}", t)
        m.networks[f"{t}-net"] = Network(f"{t}-net", t, "net", "10.0.0.0/24", base)
        m.networks[f"{t}-net2"] = Network(f"{t}-net2", t, "net2", "10.1.0.0/24", base + 1)
        for name, mac, ip, net, host, of in (("a", MAC_A, "10.0.0.10", "net", "hv1", ofp),
                                             ("b", MAC_B, "10.0.0.11", "net", "hv2", ofp + 1),
                                             ("c", MAC_C, "10.1.0.5", "net2", "hv3", ofp + 2)):
            uuid = f"{t}-{name}"
            m.ports[uuid] = Port(uuid, t, net, name, mac, (ip,))
            m.bindings[uuid] = Binding(uuid, host, of)
    for i, h in enumerate(("hv1", "hv2", "hv3")):
        m.hosts[h] = Host(h, f"172.16.0.{i + 1}", "unix:/x")
    return m


def rec(exporter="192.0.2.1", vni=None, smac=None, dmac=None, sip=None, dip=None, inp=None,
        out=None, proto="sflow") -> FlowRecord:
    return FlowRecord(exporter, proto, 1000, 1, src_mac=smac, dst_mac=dmac, src_ip=sip,
                      dst_ip=dip, in_interface=inp, out_interface=out, tunnel_key=vni)


@pytest.fixture
def att() -> Attributor:
    return Attributor(two_tenants(), MGMT)


def port(ref: str, host: str) -> Endpoint:
    t, n, _p = ref.split("/")
    return Endpoint(ref, f"{t}/{n}", t, host)


# ------------------------------------------------------------------ with a VNI


def test_vni_separates_tenants_with_identical_macs_and_ips(att):
    for vni, t in ((100, "red"), (200, "blue")):
        a = att.attribute(rec("192.0.2.2", vni, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11"))
        assert a.src == port(f"{t}/net/a", "hv1")
        assert a.dst == port(f"{t}/net/b", "hv2")
        assert a.host == "hv2"


def test_vni_ip_fallback_when_mac_is_not_a_port(att):
    a = att.attribute(rec("192.0.2.2", 200, ROUTER_MAC, MAC_B, "10.0.0.10", "10.0.0.11"))
    assert a.src.port == "blue/net/a"


def test_routed_destination_found_in_same_tenant_only(att):
    # red/net -> red/net2/c through the router: dst MAC is the router's, IP 10.1.0.5
    a = att.attribute(rec("192.0.2.1", 100, MAC_A, ROUTER_MAC, "10.0.0.10", "10.1.0.5"))
    assert a.dst == port("red/net2/c", "hv3")
    b = att.attribute(rec("192.0.2.1", 200, MAC_A, ROUTER_MAC, "10.0.0.10", "10.1.0.5"))
    assert b.dst == port("blue/net2/c", "hv3")


def test_unknown_addresses_are_kept_with_the_tenant_they_were_seen_in(att):
    a = att.attribute(rec("192.0.2.1", 100, MAC_A, ROUTER_MAC, "10.0.0.10", "203.0.113.9"))
    assert a.src.port == "red/net/a"
    assert a.dst == Endpoint(None, None, "red", None, "203.0.113.9", 0)
    assert a.dst.label("vm") == a.dst.label("tenant") == "unknown:203.0.113.9"
    assert a.counted  # the sender is on the exporting host


def test_unknown_vni_is_not_guessed(att):
    a = att.attribute(rec("192.0.2.1", 999, MAC_A, MAC_B, "10.0.0.10", None))
    assert a.src == Endpoint(address="10.0.0.10")
    assert a.dst == Endpoint(address=MAC_B)  # no IP: the MAC is the address
    assert a.dst.label() == f"unknown:{MAC_B}"


# ------------------------------------------------------------------ without a VNI


def test_no_vni_input_ofport_picks_the_tenant(att):
    red = att.attribute(rec("192.0.2.1", None, None, None, "10.0.0.10", "10.0.0.11", inp=5,
                            proto="netflow5"))
    blue = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11", inp=7,
                             proto="netflow9"))
    assert (red.src.port, red.dst.port) == ("red/net/a", "red/net/b")
    assert (blue.src.port, blue.dst.port) == ("blue/net/a", "blue/net/b")
    assert red.counted and blue.counted


def test_ipfix_interfaces_are_datapath_ports_never_taken_for_ofports(att):
    """OVS IPFIX's ingressInterface is a datapath port number: 7 is blue a's ofport, but a
    datapath port 7 may be any NIC, so it decides nothing (same MACs and IPs: ambiguous)."""
    a = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11", inp=7,
                          proto="ipfix"))
    assert a.src.port is None and a.src.candidates == 2


def test_no_vni_input_port_is_the_sender_even_without_addresses(att):
    a = att.attribute(rec("192.0.2.1", None, None, None, None, None, inp=7, proto="netflow9"))
    assert a.src.port == "blue/net/a"
    assert a.dst.port is None and a.dst.tenant == "blue"


def test_sflow_interfaces_are_ifindexes_not_ofports(att):
    # sFlow ifindex 7 is some kernel interface, not blue/a's ofport 7: no tenant is picked
    a = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11", inp=7))
    assert a.src.port is None and a.src.candidates == 2
    # with the host's ifindex map the sample's input interface names the port
    att = Attributor(two_tenants(), MGMT, ifindexes={("hv1", 41): "red-a", ("hv1", 42): "blue-a"})
    for ifindex, tenant in ((41, "red"), (42, "blue")):
        a = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11",
                              inp=ifindex))
        assert (a.src.port, a.dst.port) == (f"{tenant}/net/a", f"{tenant}/net/b")
    # ... and is not taken for an ofport by NetFlow
    a = att.attribute(rec("192.0.2.1", None, None, None, "10.0.0.10", "10.0.0.11", inp=41,
                          proto="netflow5"))
    assert a.src.port is None


def test_sflow_uses_only_the_input_of_frames_without_a_vni():
    """OVS names the tunnel (no kernel ifindex) by its datapath port number, which may equal
    a NIC's ifindex: an output interface, or the input of a tunnelled frame, names nothing."""
    att = Attributor(two_tenants(), MGMT, ifindexes={("hv1", 41): "red-a", ("hv1", 4): "red-b"})
    # red a multicasts out of the tunnel, datapath port 4 = red b's ifindex: dst stays unknown
    a = att.attribute(rec("192.0.2.1", None, MAC_A, "33:33:00:00:00:16", "10.0.0.10",
                          "ff02::16", inp=41, out=4))
    assert a.src.port == "red/net/a" and a.dst.port is None and a.dst.tenant == "red"
    # a frame from the tunnel (VNI 100: red) entering "ifindex 4": the VNI decides
    a = att.attribute(rec("192.0.2.1", 100, "02:00:00:00:00:99", MAC_B, "10.0.0.99",
                          "10.0.0.11", inp=4))
    assert a.src.port is None and a.dst.port == "red/net/b"


def test_no_vni_output_ofport_names_the_destination():
    m = two_tenants()
    m.ports["red-d"] = Port("red-d", "red", "net", "d", "02:00:00:00:00:0d", ("10.0.0.13",))
    m.bindings["red-d"] = Binding("red-d", "hv2", 20)
    att = Attributor(m, MGMT)
    # red/b (ofport 6 on hv2) to an address the model does not know, out of ofport 20
    a = att.attribute(rec("192.0.2.2", None, None, None, "10.0.0.11", "10.0.0.99",
                          inp=6, out=20, proto="netflow5"))
    assert (a.src.port, a.dst.port) == ("red/net/b", "red/net/d")
    # from the tunnel (no VNI in NetFlow v5): the source is red/a or blue/a
    b = att.attribute(rec("192.0.2.2", None, None, None, "10.0.0.10", "10.0.0.99",
                          inp=60000, out=20, proto="netflow5"))
    assert b.src.port is None and b.src.candidates == 2
    assert b.dst.port == "red/net/d"  # the frame left by d's port
    # routed to a port of another network of the same tenant, unknown address: output port
    m.ports["red-e"] = Port("red-e", "red", "net2", "e", "02:00:00:00:00:0e", ("10.1.0.9",))
    m.bindings["red-e"] = Binding("red-e", "hv2", 21)
    m.ports["blue-f"] = Port("blue-f", "blue", "net", "f", "02:00:00:00:00:0f", ("10.0.0.15",))
    m.bindings["blue-f"] = Binding("blue-f", "hv2", 22)
    att.update(m)
    c = att.attribute(rec("192.0.2.2", None, None, None, "10.0.0.11", "10.1.0.99",
                          inp=6, out=21, proto="netflow5"))
    assert c.dst.port == "red/net2/e"
    # ... but never a port of another tenant
    d = att.attribute(rec("192.0.2.2", None, None, None, "10.0.0.11", "10.1.0.99",
                          inp=6, out=22, proto="netflow5"))
    assert d.dst.port is None and d.dst.tenant == "red"


def test_no_vni_ambiguous_across_tenants_stays_unknown_with_candidates(att):
    a = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11"))
    assert a.src == Endpoint(None, None, None, "hv1", "10.0.0.10", 2)
    assert a.dst == Endpoint(None, None, None, "hv2", "10.0.0.11", 2)
    assert a.src.label("network") == "unknown:10.0.0.10"


def test_no_vni_unique_in_exporting_host_networks(att):
    m = two_tenants()
    m.ports["blue-a"] = dataclasses.replace(m.ports["blue-a"], mac="02:00:00:00:00:99",
                                            ips=("10.0.0.99",))
    att = Attributor(m, MGMT)
    a = att.attribute(rec("192.0.2.1", None, "02:00:00:00:00:99", MAC_B, None, None))
    assert a.src.port == "blue/net/a"
    assert a.dst.port == "blue/net/b"  # looked up in the source's network


def test_no_vni_host_scope_excludes_networks_not_on_the_host(att):
    m = two_tenants()
    for t in ("red", "blue"):  # c's network exists only on hv3
        m.ports[f"{t}-c"] = dataclasses.replace(m.ports[f"{t}-c"], ips=("10.1.0.5",))
    m.ports["blue-c"] = dataclasses.replace(m.ports["blue-c"], ips=("10.1.0.6",))
    att = Attributor(m, MGMT)
    on_hv3 = att.attribute(rec("192.0.2.3", None, None, None, "10.1.0.6", None))
    assert on_hv3.src.port == "blue/net2/c"
    on_hv1 = att.attribute(rec("192.0.2.1", None, None, None, "10.1.0.6", None))
    assert on_hv1.src.port is None  # net2 has no port on hv1


def test_unknown_exporter_searches_everything_but_never_guesses(att):
    a = att.attribute(rec("198.51.100.7", None, MAC_A, None, None, None))
    assert a.host is None and a.src.port is None and a.src.candidates == 2
    assert a.counted  # no host to dedup against


def test_mac_and_ip_together_disambiguate(att):
    m = two_tenants()
    m.ports["blue-a"] = dataclasses.replace(m.ports["blue-a"], ips=("10.0.0.77",))
    att = Attributor(m)
    a = att.attribute(rec("198.51.100.7", None, MAC_A, None, "10.0.0.77", None))
    assert a.src.port == "blue/net/a"  # only one port has both this MAC and this IP


# ------------------------------------------------------------------ exporters and updates


def test_exporter_by_tunnel_ip_and_by_extra_map():
    att = Attributor(two_tenants(), {"10.99.0.1": "hv1"})
    assert att.host_of("172.16.0.2") == "hv2"
    assert att.host_of("10.99.0.1") == "hv1"
    assert att.host_of("10.99.0.2") is None
    assert Attributor(two_tenants(), {"2001:DB8::1": "hv3"}).host_of("2001:db8::1") == "hv3"


def test_exporter_by_the_hosts_management_address():
    import dataclasses
    m = two_tenants()
    m.hosts["hv2"] = dataclasses.replace(m.hosts["hv2"], mgmt_ip="198.19.0.12")
    att = Attributor(m)
    assert att.host_of("198.19.0.12") == "hv2" and att.host_of("172.16.0.2") == "hv2"
    assert att.host_of("198.19.0.11") is None


def test_update_rebuilds_and_drops_the_memo(att):
    r = rec("192.0.2.1", 100, MAC_A, MAC_B)
    assert att.attribute(r).src.host == "hv1"
    m = two_tenants()
    m.bindings["red-a"] = Binding("red-a", "hv3", 9)
    att.update(m)
    after = att.attribute(r)
    assert after.src.host == "hv3"
    assert not after.counted  # the sender is now on hv3, this exporter is hv1
    att.update(None)
    assert att.attribute(r).src == Endpoint(address=MAC_A)


def test_no_model_keeps_everything_unknown():
    a = Attributor().attribute(rec(vni=100, smac=MAC_A, sip="10.0.0.1", dip="10.0.0.2"))
    assert (a.src.label(), a.dst.label(), a.counted) == ("unknown:10.0.0.1", "unknown:10.0.0.2",
                                                         True)


def test_label_rejects_unknown_grouping():
    with pytest.raises(ValueError):
        port("red/net/a", "hv1").label("rack")


# ------------------------------------------------------------------ dedup rule


def test_same_flow_from_sender_and_receiver_counted_once(att):
    # red a (hv1) -> red b (hv2): on hv1 at a's port (no VNI), on hv2 from the tunnel (VNI)
    sender = att.attribute(rec("192.0.2.1", None, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11",
                               inp=5, proto="netflow9"))
    receiver = att.attribute(rec("192.0.2.2", 100, MAC_A, MAC_B, "10.0.0.10", "10.0.0.11",
                                 inp=60000))
    assert sender.src == receiver.src and sender.dst == receiver.dst
    assert (sender.counted, receiver.counted) == (True, False)


def test_remote_only_source_counted_on_destination_host(att):
    ext = ("203.0.113.9", "10.0.0.11")
    at_hv1 = att.attribute(rec("192.0.2.1", 100, ROUTER_MAC, MAC_B, *ext))
    at_hv2 = att.attribute(rec("192.0.2.2", 100, ROUTER_MAC, MAC_B, *ext))
    assert at_hv2.dst.port == "red/net/b"
    assert (at_hv1.counted, at_hv2.counted) == (False, True)


def test_ambiguous_source_whose_candidates_share_a_host_still_dedups(att):
    # NetFlow v5 on hv2 (no MAC, no VNI, from the tunnel): the source is red/a or blue/a,
    # both on hv1, so hv1 counts it and hv2 must not
    a = att.attribute(rec("192.0.2.2", None, None, None, "10.0.0.10", "10.0.0.11",
                          inp=60000, proto="netflow5"))
    assert a.src.port is None and a.src.host == "hv1"
    assert not a.counted


def test_nothing_known_counted_wherever_seen(att):
    a = att.attribute(rec("192.0.2.1", None, None, None, "198.51.100.1", "198.51.100.2"))
    b = att.attribute(rec("192.0.2.2", None, None, None, "198.51.100.1", "198.51.100.2"))
    assert a.counted and b.counted


def test_memo_is_bounded():
    att = Attributor(two_tenants(), MGMT, cache_max=8)
    for i in range(50):
        att.attribute(rec(sip=f"10.9.0.{i}"))
    assert len(att._index.cache) <= 8
