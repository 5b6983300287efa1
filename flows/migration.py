"""Flows of a migrating port's destination NIC before activation: it may only announce itself.

While a VM live-migrates, its port is bound to two hosts (like OVN's multi-chassis
requested-chassis with activation-strategy=rarp): the *active* binding (the source, in
`Model.bindings`) gets every flow as before, and the destination NIC (in `Model.standby`)
gets exactly one flow, in table 0: whatever it sends goes to the controller, through the
host's DHCP meter (50 pps), and nowhere else. That packet-in — QEMU's RARP after a live
migration, a GARP, or simply the guest's first frame — is the activation trigger: the
engine then makes the destination the active binding on every host in one batch.

Why this is safe: before activation the destination NIC cannot put a single frame into the
network (no classification into the network, no port security pass, no delivery to any
port or tunnel), nothing is delivered to it (its network's L2 and flood flows on every host
still name the source), and the only thing it reaches is the controller, rate-limited per
host; the engine activates only on a frame from the port's own MAC arriving on the very
ofport the destination host numbered for the port's iface-id, on the host the operator named
(`weft port migrate ... --to`). The rest of the port's network is installed on the
destination ahead (it counts as present there), so activation changes a handful of flows.
"""
from __future__ import annotations

from flows import pipeline as P
from flows.cookies import make
from flows.flow import Flow, make_match
from topology.model import Port

PRIO_STANDBY = 100
ANNOUNCE_BYTES = 64             # enough of the frame to read its Ethernet header


def standby_flows(port: Port, ofport: int) -> tuple[Flow, ...]:
    """The one flow of a standby NIC: everything it sends -> meter -> controller."""
    return (make("migrate", port.uuid, P.CLASSIFY, PRIO_STANDBY, make_match(in_port=ofport),
                 (("meter", P.DHCP_METER), ("controller", ANNOUNCE_BYTES))),)


def is_announcement(cookie: int) -> bool:
    """True for a packet-in sent by a standby NIC's flow (its cookie's feature is `migrate`)."""
    from flows.cookies import FEATURES
    return cookie >> 56 == FEATURES["migrate"]
