"""Per-port QoS as flows and meters (pure): OpenFlow meters at the VM's own port, both directions.

Why meters: on the userspace (netdev) datapath they are what works for every port type. OVS
meters there take drop bands in kbit/s or packets/s with a burst; `ingress_policing_rate` on a
veth/tap interface asks the kernel's tc policer (absent here: "adding cls_basic policing action
failed"), the `egress-policer` QoS type exists for DPDK ports only, and linux-htb queues need the
kernel datapath's skb priority. A meter counts whole frames (Ethernet header included).

Where: egress (what the VM sends) is metered by the port's table-0 flow, before anything else
sees the packet, so every packet it sends counts, whatever its destination or later NAT; a
second meter (packets per second, when it also has a rate) and DSCP marking follow in
QOS_EGRESS. Ingress (what the VM receives) is metered where unicast is delivered to the local
port: delivery sets reg4 = its ofport and goes to QOS_INGRESS (and QOS_INGRESS2 for a second
meter) instead of straight out, after the ingress security groups. Everything that reaches the
VM's host for it -- from a tunnel, another local port, a router, a floating IP's NAT on that
host -- passes there. Broadcast and multicast flooded to several ports are not metered (one
meter instruction per flow; a flood outputs to several ports in one flow).

Meter ids are per switch and derived from the port's ofport (unique on its br-int), so they are
stable while a port stays plugged and need no allocator: METER_BASE + 4 * ofport + kind. Ids
below METER_BASE are weft's own (the DHCP meter 1, the drop-sample meter 2).
"""
from __future__ import annotations

from dataclasses import dataclass

from flows import pipeline as P
from flows.cookies import make
from flows.flow import ETH_TYPE_IP, ETH_TYPE_IPV6, Flow, make_match
from topology.model import Port
from topology.qos import QoS

METER_BASE = 0x100
EGRESS_RATE, INGRESS_RATE, EGRESS_PPS, INGRESS_PPS = range(4)
BURST_SHARE = 0.8           # default burst: 80% of the rate (Neutron's advice for TCP)
PRIO = 100


@dataclass(frozen=True)
class Meter:
    """One OpenFlow meter with one drop band: rate in kbit/s (or packets/s when pktps), burst in
    kbit (or packets)."""
    id: int
    pktps: bool
    rate: int
    burst: int


def meter_id(ofport: int, kind: int) -> int:
    return METER_BASE + 4 * ofport + kind


def _burst(rate: int, burst: int | None) -> int:
    return burst if burst is not None else max(1, int(rate * BURST_SHARE))


def _pps_burst(pps: int) -> int:
    return max(10, pps // 10)


def meters(qos: QoS | None, ofport: int) -> tuple[tuple[Meter, ...], tuple[Meter, ...]]:
    """(egress meters, ingress meters) of a port with `qos` at `ofport`: the rate's first."""
    if qos is None:
        return (), ()
    out = []
    for direction, rate, burst, rate_kind, pps_kind in (
            ("egress", qos.egress_rate, qos.egress_burst, EGRESS_RATE, EGRESS_PPS),
            ("ingress", qos.ingress_rate, qos.ingress_burst, INGRESS_RATE, INGRESS_PPS)):
        found = []
        if rate is not None:
            found.append(Meter(meter_id(ofport, rate_kind), False, rate, _burst(rate, burst)))
        if qos.pps is not None:
            found.append(Meter(meter_id(ofport, pps_kind), True, qos.pps, _pps_burst(qos.pps)))
        out.append(tuple(found))
    return out[0], out[1]


def host_meters(ports) -> dict[int, Meter]:
    """{meter id: Meter} a host needs for its bound ports, given as (ofport, Port) pairs."""
    found = {}
    for ofport, port in ports:
        egress, ingress = meters(port.qos, ofport)
        for m in egress + ingress:
            found[m.id] = m
    return found


def _meter(m: Meter | None) -> tuple:
    return () if m is None else (("meter", m.id),)


def classify_actions(port: Port, ofport: int, sample: tuple, vni: int) -> tuple:
    """The actions of the port's table-0 flow: its first egress meter, sampling, its network,
    then QOS_EGRESS when a second meter or DSCP marking follows, else PORT_SECURITY."""
    egress, _ = meters(port.qos, ofport)
    second = len(egress) > 1 or (port.qos is not None and port.qos.dscp is not None)
    return (_meter(egress[0] if egress else None) + sample
            + (("set_field", P.REG_NET, vni), ("goto", P.QOS_EGRESS if second else P.PORT_SECURITY)))


def egress_flows(port: Port, ofport: int) -> list[Flow]:
    """QOS_EGRESS: the second egress meter and the DSCP of IPv4 and IPv6 the port sends."""
    qos = port.qos
    egress, _ = meters(qos, ofport)
    if qos is None or (len(egress) < 2 and qos.dscp is None):
        return []
    second = _meter(egress[1] if len(egress) > 1 else None)
    on = (("goto", P.PORT_SECURITY),)
    flows = [make("qos", port.uuid, P.QOS_EGRESS, PRIO, make_match(in_port=ofport), second + on)]
    if qos.dscp is not None:
        for eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6):
            flows.append(make("qos", port.uuid, P.QOS_EGRESS, PRIO + 1,
                              make_match(in_port=ofport, eth_type=eth_type),
                              second + (("set_field", "ip_dscp", qos.dscp),) + on))
    return flows


def has_ingress(port: Port) -> bool:
    qos = port.qos
    return qos is not None and (qos.ingress_rate is not None or qos.pps is not None)


def deliver(port: Port, ofport: int) -> tuple:
    """Unicast delivery to a local port without security groups: out, or through its meters."""
    if not has_ingress(port):
        return (("output", ofport),)
    return (("set_field", P.REG_OUT, ofport), ("goto", P.QOS_INGRESS))


def out_action(port: Port, ofport: int) -> tuple:
    """The last action of delivery when reg4 already holds the ofport (after ingress ACLs)."""
    return ("goto", P.QOS_INGRESS) if has_ingress(port) else ("output", ofport)


def ingress_flows(port: Port, ofport: int) -> list[Flow]:
    """QOS_INGRESS (and QOS_INGRESS2): the port's ingress meters, then out of its ofport."""
    _, ingress = meters(port.qos, ofport)
    if not ingress:
        return []
    match = make_match(**{P.REG_OUT: ofport})
    if len(ingress) == 1:
        return [make("qos", port.uuid, P.QOS_INGRESS, PRIO, match, _meter(ingress[0]) + (("output", ofport),))]
    return [make("qos", port.uuid, P.QOS_INGRESS, PRIO, match, _meter(ingress[0]) + (("goto", P.QOS_INGRESS2),)),
            make("qos", port.uuid, P.QOS_INGRESS2, PRIO, match, _meter(ingress[1]) + (("output", ofport),))]


def plan_meters(expected: dict[int, Meter], desired: dict[int, Meter]):
    """(("add"|"modify", Meter) before the flows, ("delete", Meter) after them), sorted by id.

    Meters are added or changed before the bundle whose flows use them and deleted after it,
    once no flow names them (deleting a meter deletes the flows that use it)."""
    before = [("add" if mid not in expected else "modify", m)
              for mid, m in sorted(desired.items()) if expected.get(mid) != m]
    after = [("delete", m) for mid, m in sorted(expected.items()) if mid not in desired]
    return before, after
