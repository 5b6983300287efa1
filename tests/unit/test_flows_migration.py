"""A migrating port bound to two hosts, traced through the compiled tables of every host.

r2 migrates from hv2 (ofport 1) to hv3 (ofport 5). Before activation its destination NIC only
reaches the controller and receives nothing; after activation (the destination becomes the
binding, the source NIC no binding at all) everything follows it to hv3.
"""
from dataclasses import replace

from flows import cookies, migration
from flows.compiler import affected_hosts, compile_all
from flows.flow import BROADCAST, CONTROLLER
from flows.index import CompilerIndex
from flows.tracer import Fabric, arp_request, ethernet, ipv4
from topology.model import Binding, Host, Model, Network, Port, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3", "hv4": "192.0.2.4"}
MAC = {"r1": "fa:16:3e:00:00:01", "r2": "fa:16:3e:00:00:02", "r4": "fa:16:3e:00:00:04"}
IP = {"r1": "10.0.0.11", "r2": "10.0.0.12", "r4": "10.0.0.14"}
SRC, DST = Binding("r2", "hv2", 1), Binding("r2", "hv3", 5)


def base() -> Model:
    return Model(
        tenants={"red": Tenant("t-red", "red")},
        networks={"n": Network("n", "red", "net", "10.0.0.0/24", 1001)},
        ports={p: Port(p, "red", "net", p, MAC[p], (IP[p],)) for p in MAC},
        hosts={h: Host(h, ip, f"unix:/run/{h}.sock") for h, ip in HOSTS.items()},
        bindings={"r1": Binding("r1", "hv1", 1), "r2": SRC, "r4": Binding("r4", "hv4", 1)})


def before() -> Model:
    return replace(base(), standby={"r2": DST})


def after() -> Model:
    m = base()
    return replace(m, bindings={**m.bindings, "r2": DST})


class Net:
    def __init__(self, model: Model):
        self.model = model
        self.flows = compile_all(CompilerIndex(model))
        self.fabric = Fabric(self.flows, HOSTS)

    def ping_r2(self, src="r1"):
        b = self.model.bindings[src]
        pkt = ipv4(MAC[src], MAC["r2"], IP[src], IP["r2"])
        return sorted((d.host, d.port) for d in self.fabric.send(b.host, pkt, b.ofport))

    def from_nic(self, host, ofport, packet):
        return [(d.host, d.port) for d in self.fabric.send(host, packet, ofport)]


def rarp(mac):
    return ethernet(mac, BROADCAST, 0x8035)


def test_before_activation_traffic_to_the_port_still_reaches_the_source_only():
    net = Net(before())
    assert net.ping_r2("r1") == [("hv2", 1)]
    assert net.ping_r2("r4") == [("hv2", 1)]
    # a broadcast from r1 reaches the source NIC, never the standby one
    arp = ipv4(MAC["r1"], BROADCAST, IP["r1"], "10.0.0.255")
    assert ("hv3", 5) not in net.from_nic("hv1", 1, arp)
    assert ("hv2", 1) in net.from_nic("hv1", 1, arp)


def test_before_activation_the_standby_nic_reaches_the_controller_and_nothing_else():
    net = Net(before())
    assert net.from_nic("hv3", 5, rarp(MAC["r2"])) == [("hv3", CONTROLLER)]
    # as the port's identity, toward a peer: still only the controller
    pkt = ipv4(MAC["r2"], MAC["r1"], IP["r2"], IP["r1"])
    assert net.from_nic("hv3", 5, pkt) == [("hv3", CONTROLLER)]
    assert net.from_nic("hv3", 5, arp_request(MAC["r2"], IP["r2"], IP["r1"])) == [("hv3", CONTROLLER)]
    # the packet-in's cookie says it is an announcement (not DHCP)
    flow = next(f for f in net.flows["hv3"] if f.match == (("in_port", 5),))
    assert migration.is_announcement(flow.cookie)
    assert cookies.decode(flow.cookie) == ("migrate", cookies.object_id("r2"))
    # the source NIC works as before
    assert net.from_nic("hv2", 1, ipv4(MAC["r2"], MAC["r1"], IP["r2"], IP["r1"])) == [("hv1", 1)]


def test_the_destination_has_the_network_ahead():
    flows = Net(before()).flows["hv3"]
    tables = {f.table for f in flows if f.cookie >> 56 != cookies.FEATURES["pipeline"]}
    assert {0, 20, 40} <= tables             # tunnel classify, ARP answers, L2 to the other ports
    assert not any(f.match == (("in_port", 5),) and f.cookie >> 56 == cookies.FEATURES["classify"]
                   for f in flows)


def test_after_activation_everything_follows_to_the_destination():
    net = Net(after())
    assert net.ping_r2("r1") == [("hv3", 5)]
    assert net.ping_r2("r4") == [("hv3", 5)]
    assert net.from_nic("hv3", 5, ipv4(MAC["r2"], MAC["r1"], IP["r2"], IP["r1"])) == [("hv1", 1)]
    # the source NIC (still plugged until the lab or the platform removes it) is cut off
    assert net.from_nic("hv2", 1, ipv4(MAC["r2"], MAC["r1"], IP["r2"], IP["r1"])) == []
    assert not any(f.cookie >> 56 == cookies.FEATURES["migrate"] for fl in net.flows.values() for f in fl)


def test_standby_pending_ofport_installs_the_network_but_no_port_flow():
    m = replace(base(), standby={"r2": Binding("r2", "hv3", 0)})
    flows = Net(m).flows["hv3"]
    assert any(f.table == 40 for f in flows)
    assert not any(f.cookie >> 56 == cookies.FEATURES["migrate"] for f in flows)


def test_affected_hosts_and_incremental_index_match_a_full_compile():
    steps = [base(), replace(base(), standby={"r2": Binding("r2", "hv3", 0)}), before(), after(), base()]
    index = CompilerIndex(steps[0])
    for old, new in zip(steps, steps[1:]):
        new_index = index.updated(new)
        full = compile_all(CompilerIndex(new))
        from flows.compiler import compile_host
        for host in HOSTS:
            assert sorted(f.key for f in compile_host(new_index, host)) == sorted(f.key for f in full[host])
        old_full = compile_all(CompilerIndex(old))
        changed = {h for h in HOSTS if sorted(f.key for f in old_full[h]) != sorted(f.key for f in full[h])}
        assert changed <= affected_hosts(old, new, index, new_index)
        index = new_index
    # activation touches the destination and the source (and every host sending to the port)
    assert affected_hosts(before(), after()) >= {"hv1", "hv2", "hv3", "hv4"}


def test_two_nics_on_one_ofport_are_refused():
    m = replace(base(), standby={"r2": Binding("r2", "hv1", 1)})
    import pytest
    with pytest.raises(ValueError, match="ofport 1"):
        compile_all(CompilerIndex(m))
