"""The normalised flow record the rest of weft consumes, whatever protocol it came from.

Counts are estimates of real traffic: sampling has been undone exactly once, by the
function that built the record (`sampling_scale` says by which factor; 1 = taken as-is).
"""
from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("sflow", "netflow5", "netflow9", "ipfix")


@dataclass(slots=True)
class FlowRecord:
    exporter: object  # agent / exporter address
    protocol: str  # one of PROTOCOLS
    # Layer-2 bytes where the exporter reports them (sFlow frame length incl. any tunnel
    # encapsulation, IPFIX layer2OctetDeltaCount), else layer-3 bytes (NetFlow octets).
    bytes: int = 0
    packets: int = 0
    src_mac: str | None = None
    dst_mac: str | None = None
    vlan: int | None = None
    ether_type: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    ip_protocol: int | None = None
    tos: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    tcp_flags: int | None = None
    in_interface: int | None = None
    out_interface: int | None = None
    start: float | None = None  # unix seconds (sFlow: the caller's receive time, if given)
    end: float | None = None
    sampling_scale: int = 1  # factor already applied to bytes/packets
    # Overlay: the tunnel the flow travelled in (VNI / key), and its outer endpoints.
    tunnel_key: int | None = None
    tunnel_type: str | None = None
    tunnel_src: str | None = None
    tunnel_dst: str | None = None
    tunnel_src_port: int | None = None
    tunnel_dst_port: int | None = None
