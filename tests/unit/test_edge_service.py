"""weftd's north-south upkeep: ARP probes for the edge router, learning its MAC, gateway failover."""
import struct

from controller import edge_service as E
from flows import northsouth as NS
from flows.pipeline import PROVIDER_OFPORT
from topology.model import Binding, FloatingIP, Host, Model, Network, Router

EXT = Network("ext", "admin", "ext", "203.0.113.0/24", 900, "203.0.113.1", dhcp=False,
              external=True, provider="phys")


def model(gw_host="hv1", edge_mac=None):
    ext = EXT if edge_mac is None else Network(**{**EXT.__dict__, "gateway_mac": edge_mac})
    return Model(networks={"ext": ext},
                 hosts={h: Host(h, f"192.0.2.{i}", "x", providers=(("phys", "br-ex"),))
                        for i, h in enumerate(("hv1", "hv2", "hv3"), 1)},
                 routers={"r": Router("r", "red", "r", "02:77:65:00:00:aa", 7, (), "admin/ext",
                                      "203.0.113.2", "02:77:65:00:01:aa", 2001, gw_host)},
                 floating_ips={"f": FloatingIP("f", "red", "admin/ext", "203.0.113.9", "02:77:65:00:02:09", "p")},
                 bindings={"p": Binding("p", "hv3", 4)})


class Datapath:
    def __init__(self, dpid):
        self.id, self.sent = dpid, []
        from os_ken.ofproto import ofproto_v1_4 as ofp
        from os_ken.ofproto import ofproto_v1_4_parser as parser
        self.ofproto, self.ofproto_parser = ofp, parser

    def send_msg(self, msg):
        self.sent.append(msg)


class Engine:
    active = True

    def __init__(self, m, connected=("hv1", "hv2", "hv3")):
        self.m = m
        self.dps = {h: Datapath(i) for i, h in enumerate(connected, 1)}

    def effective_model(self):
        return self.m

    def datapath(self, host):
        return self.dps.get(host)

    def host_of_dpid(self, dpid):
        return next(h for h, dp in self.dps.items() if dp.id == dpid)


class Store:
    def __init__(self):
        self.macs, self.moves = [], []

    def set_gateway_mac(self, uuid, mac):
        self.macs.append((uuid, mac))
        return True

    def move_gateways(self, host, exclude=()):
        self.moves.append((host, set(exclude)))
        return [{"router": "red/r", "from": host, "to": "hv2"}]


def reply(mac: str, ip: str) -> bytes:
    m = bytes.fromhex(mac.replace(":", ""))
    return (bytes.fromhex(NS.RESOLVER_MAC.replace(":", "")) + m + b"\x08\x06"
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + m + bytes(map(int, ip.split(".")))
            + bytes.fromhex(NS.RESOLVER_MAC.replace(":", "")) + b"\0\0\0\0")


def test_probe_is_a_sender_less_arp_request_for_the_edge():
    frame = E.arp_probe("203.0.113.1")
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert struct.unpack("!H", frame[20:22])[0] == 1 and frame[28:32] == b"\0\0\0\0"
    assert frame[38:42] == bytes([203, 0, 113, 1])
    assert E.parse_arp_reply(frame) is None                          # a request is no answer
    assert E.parse_arp_reply(reply("02:00:00:00:0e:01", "203.0.113.1")) == ("02:00:00:00:0e:01", "203.0.113.1")


def test_probes_go_out_of_the_gateway_hosts_provider_port_until_the_mac_is_known():
    engine, store = Engine(model()), Store()
    svc = E.EdgeService(engine, store)
    svc._probe()
    sent = engine.dps["hv1"].sent
    assert len(sent) == 1 and sent[0].actions[0].port == PROVIDER_OFPORT
    svc._probe()                                                      # not again within a second
    assert len(sent) == 1
    # hv1 gone: the floating IP's host asks instead
    engine2 = Engine(model(), connected=("hv2", "hv3"))
    E.EdgeService(engine2, store)._probe()
    assert len(engine2.dps["hv3"].sent) == 1 and not engine2.dps["hv2"].sent


def test_a_reply_from_the_edge_on_the_provider_port_is_recorded_once():
    engine, store = Engine(model()), Store()
    svc = E.EdgeService(engine, store)
    dp = engine.dps["hv1"]
    svc.packet_in(dp, PROVIDER_OFPORT, reply("02:00:00:00:0e:01", "203.0.113.1"))
    svc.packet_in(dp, PROVIDER_OFPORT, reply("02:00:00:00:0e:66", "203.0.113.7"))   # not the edge
    svc.packet_in(dp, 5, reply("02:00:00:00:0e:66", "203.0.113.1"))                 # not the provider
    svc._drain(timeout=0.1)
    assert store.macs == [("ext", "02:00:00:00:0e:01")]
    engine.m = model(edge_mac="02:00:00:00:0e:01")
    svc.packet_in(dp, PROVIDER_OFPORT, reply("02:00:00:00:0e:01", "203.0.113.1"))
    svc._drain(timeout=0.1)
    assert len(store.macs) == 1                                       # unchanged: no write


def test_a_gateway_host_gone_for_a_while_hands_its_gateways_over(monkeypatch):
    engine, store = Engine(model(), connected=("hv2", "hv3")), Store()
    now = [100.0]
    monkeypatch.setattr(E.time, "monotonic", lambda: now[0])
    svc = E.EdgeService(engine, store)
    svc._failover()
    now[0] += E.FAILOVER_AFTER + 1
    svc._failover()
    assert store.moves == []                                          # weftd just started: no
    now[0] += E.STARTUP_GRACE
    svc._failover()
    assert store.moves == []                                          # just noticed
    now[0] += E.FAILOVER_AFTER + 0.1
    svc._failover()
    assert store.moves == [("hv1", {"hv1"})]
