"""Drop samples: packet-ins attributed to ports, groups and tenants (controller/drop_service.py), aggregated
by collectors/drops.py."""
import struct

from collectors.drops import DropLog, DropSample
from controller.drop_service import DropService
from flows import pipeline as P
from flows.cookies import FEATURES, object_id
from tests.unit.test_flows_acl import PORTS, build


def cookie(reason, owner=None):
    return FEATURES[f"drop:{reason}"] << 56 | object_id(owner) << 24 | 0x123


def frame(src_mac, dst_mac, src_ip, dst_ip, proto=6, dport=80):
    mac = lambda m: bytes.fromhex(m.replace(":", ""))   # noqa: E731
    ip = lambda a: bytes(int(x) for x in a.split("."))    # noqa: E731
    l4 = struct.pack("!HH", 40000, dport) + b"\0" * 16
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, ip(src_ip), ip(dst_ip))
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + hdr + l4


class Engine:
    def __init__(self, model):
        self.model = model

    def effective_model(self):
        return self.model

    def host_of_dpid(self, dpid):
        return "hv1"


def sample(model, host, reason, table, match, src, dst, **kw):
    svc = DropService(Engine(model), DropLog())
    s_mac, s_ip = PORTS[src][1], PORTS[src][2]
    d_mac, d_ip = (PORTS[dst][1], PORTS[dst][2]) if dst in PORTS else dst
    return svc.sample(model, host, cookie(reason), table, match, frame(s_mac, d_mac, s_ip, d_ip, **kw), 100.0)


def test_security_group_drops_name_the_group_of_the_side_without_a_rule():
    model = build()
    s = sample(model, "hv1", "security-group", P.EGRESS_ACL, {"in_port": 1, "reg6": 1000}, "web1", "db1",
               dport=5432)
    assert (s.src, s.dst, s.proto, s.dport, s.reason, s.group) == (
        "red/net/web1", "red/net/db1", "tcp", 5432, "security-group", "red/web")
    s = sample(model, "hv2", "security-group", P.INGRESS_ACL,
               {"in_port": P.TUNNEL_OFPORT, "reg6": 1000, "reg4": 1}, "open", "web2", dport=81)
    assert (s.src, s.dst, s.group, s.src_tenant) == ("red/net/open", "red/net/web2", "red/web", "red")


def test_unknown_destinations_of_another_tenant_are_isolation():
    model = build()
    # to bweb's MAC and address (blue), from red's `open`: red's table 41 had nowhere to send it
    s = sample(model, "hv1", "unknown-destination", P.L2_UNKNOWN, {"in_port": 2, "reg6": 1000},
               "open", ("fa:16:3e:00:00:11", "10.0.0.77"))
    assert (s.reason, s.dst, s.dst_tenant) == ("isolation", "blue/net/bweb", "blue")
    s = sample(model, "hv1", "unknown-destination", P.L2_UNKNOWN, {"in_port": 2, "reg6": 1000},
               "open", ("fa:16:3e:00:00:99", "10.0.0.77"))
    assert (s.reason, s.dst) == ("unknown-destination", "10.0.0.77")


def test_the_log_aggregates_filters_and_forgets():
    log = DropLog(bucket_s=10, retention_s=60)
    seen = []
    log.subscribe(seen.append)
    base = dict(host="hv1", reason="security-group", table=46, src="red/net/a", dst="red/net/b",
                proto="tcp", dport=80, group="red/web", src_tenant="red", dst_tenant="red")
    for t in (100.0, 101.0, 125.0):
        log.add(DropSample(time=t, **base))
    log.add(DropSample(time=126.0, **{**base, "src_tenant": "blue", "dst_tenant": "blue", "src": "x"}))
    rows = log.rows(since=90, tenant="red")
    assert len(rows) == 1 and (rows[0]["packets"], rows[0]["first_seen"], rows[0]["last_seen"]) == (3, 100.0, 125.0)
    assert [r["packets"] for r in log.rows(since=120, tenant="red")] == [1]
    assert len(seen) == 4 and log.status()["hosts"]["hv1"]["samples"] == 4
    log.add(DropSample(time=300.0, **base))              # the first buckets are past the retention
    assert [r["packets"] for r in log.rows(tenant="red")] == [1]
    assert b'weft_drop_samples_total{reason="security-group"} 5.0' in log.render_metrics()


def test_a_full_bucket_counts_the_rest_as_overflow():
    log = DropLog(max_keys=2)
    for i in range(5):
        log.add(DropSample(time=1.0, host="hv1", reason="no-route", table=31, src=f"s{i}", dst="d",
                           proto="udp"))
    rows = {r["src"]: r["packets"] for r in log.rows()}
    assert rows == {"s0": 1, "s1": 1, "(overflow)": 3}


def test_an_arp_request_nobody_answers_names_the_address_asked_for():
    model = build()
    svc = DropService(Engine(model), DropLog())
    arp = (b"\xff" * 6 + bytes.fromhex("fa163e000005") + b"\x08\x06" + bytes.fromhex("0001080006040001")
           + bytes.fromhex("fa163e000005") + bytes([10, 0, 0, 41]) + b"\0" * 6 + bytes([10, 0, 0, 99]))
    s = svc.sample(model, "hv1", cookie("unknown-neighbour"), P.ARP_RESPONDER, {"in_port": 2, "reg6": 1000},
                   arp, 1.0)
    assert (s.src, s.dst, s.proto, s.reason) == ("red/net/open", "10.0.0.99", "arp", "unknown-neighbour")
    s = svc.sample(model, "hv1", cookie("unknown-neighbour"), P.ARP_RESPONDER, {"in_port": 2, "reg6": 1000},
                   arp[:38] + bytes([10, 0, 0, 21]), 1.0)
    assert (s.dst, s.reason) == ("red/net/app1", "unknown-neighbour")    # red's, not blue's bweb
    s = svc.sample(model, "hv1", cookie("unknown-neighbour"), P.ARP_RESPONDER, {"in_port": 2, "reg6": 1000},
                   arp[:38] + bytes([10, 0, 0, 77]), 1.0)
    assert (s.dst, s.reason) == ("10.0.0.77", "unknown-neighbour")
