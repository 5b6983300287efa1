"""Information elements shared by NetFlow v9 and IPFIX: id -> (name, value kind).

Standard ids follow the IANA IPFIX registry (ids 1-127 are the NetFlow v9 field types too).
Open vSwitch exports tunnel data with VMware's enterprise number 6876
(ofproto/ipfix-enterprise-entities.def). Ids not listed here decode to raw bytes named
`ie_<id>` (standard) or `ent<pen>_<id>` (enterprise).
"""
from __future__ import annotations

# Value kinds: how a field's bytes become a Python value.
UINT = "uint"  # unsigned big-endian integer of any length (reduced-size encoding allowed)
IPV4 = "ipv4"  # dotted quad when 4 bytes long
IPV6 = "ipv6"  # RFC 5952 text when 16 bytes long
MAC = "mac"  # aa:bb:cc:dd:ee:ff when 6 bytes long
FLOAT = "float"  # IEEE float32/float64
STRING = "string"  # UTF-8 text (invalid bytes replaced)
OCTETS = "octets"  # raw bytes
PADDING = "padding"  # paddingOctets: dropped from the decoded record

VMWARE_PEN = 6876

IANA: dict[int, tuple[str, str]] = {
    1: ("octetDeltaCount", UINT),
    2: ("packetDeltaCount", UINT),
    3: ("deltaFlowCount", UINT),
    4: ("protocolIdentifier", UINT),
    5: ("ipClassOfService", UINT),
    6: ("tcpControlBits", UINT),
    7: ("sourceTransportPort", UINT),
    8: ("sourceIPv4Address", IPV4),
    9: ("sourceIPv4PrefixLength", UINT),
    10: ("ingressInterface", UINT),
    11: ("destinationTransportPort", UINT),
    12: ("destinationIPv4Address", IPV4),
    13: ("destinationIPv4PrefixLength", UINT),
    14: ("egressInterface", UINT),
    15: ("ipNextHopIPv4Address", IPV4),
    16: ("bgpSourceAsNumber", UINT),
    17: ("bgpDestinationAsNumber", UINT),
    18: ("bgpNextHopIPv4Address", IPV4),
    19: ("postMCastPacketDeltaCount", UINT),
    20: ("postMCastOctetDeltaCount", UINT),
    21: ("flowEndSysUpTime", UINT),
    22: ("flowStartSysUpTime", UINT),
    23: ("postOctetDeltaCount", UINT),
    24: ("postPacketDeltaCount", UINT),
    25: ("minimumIpTotalLength", UINT),
    26: ("maximumIpTotalLength", UINT),
    27: ("sourceIPv6Address", IPV6),
    28: ("destinationIPv6Address", IPV6),
    29: ("sourceIPv6PrefixLength", UINT),
    30: ("destinationIPv6PrefixLength", UINT),
    31: ("flowLabelIPv6", UINT),
    32: ("icmpTypeCodeIPv4", UINT),
    34: ("samplingInterval", UINT),
    35: ("samplingAlgorithm", UINT),
    36: ("flowActiveTimeout", UINT),
    37: ("flowIdleTimeout", UINT),
    40: ("exportedOctetTotalCount", UINT),
    41: ("exportedMessageTotalCount", UINT),
    42: ("exportedFlowRecordTotalCount", UINT),
    56: ("sourceMacAddress", MAC),
    57: ("postDestinationMacAddress", MAC),
    58: ("vlanId", UINT),
    59: ("postVlanId", UINT),
    60: ("ipVersion", UINT),
    61: ("flowDirection", UINT),
    62: ("ipNextHopIPv6Address", IPV6),
    80: ("destinationMacAddress", MAC),
    81: ("postSourceMacAddress", MAC),
    85: ("octetTotalCount", UINT),
    86: ("packetTotalCount", UINT),
    130: ("exporterIPv4Address", IPV4),
    131: ("exporterIPv6Address", IPV6),
    132: ("droppedOctetDeltaCount", UINT),
    133: ("droppedPacketDeltaCount", UINT),
    134: ("droppedOctetTotalCount", UINT),
    135: ("droppedPacketTotalCount", UINT),
    136: ("flowEndReason", UINT),
    138: ("observationPointId", UINT),
    139: ("icmpTypeCodeIPv6", UINT),
    144: ("exportingProcessId", UINT),
    148: ("flowId", UINT),
    149: ("observationDomainId", UINT),
    150: ("flowStartSeconds", UINT),
    151: ("flowEndSeconds", UINT),
    152: ("flowStartMilliseconds", UINT),
    153: ("flowEndMilliseconds", UINT),
    158: ("flowStartDeltaMicroseconds", UINT),
    159: ("flowEndDeltaMicroseconds", UINT),
    160: ("systemInitTimeMilliseconds", UINT),
    176: ("icmpTypeIPv4", UINT),
    177: ("icmpCodeIPv4", UINT),
    178: ("icmpTypeIPv6", UINT),
    179: ("icmpCodeIPv6", UINT),
    192: ("ipTTL", UINT),
    195: ("ipDiffServCodePoint", UINT),
    196: ("ipPrecedence", UINT),
    198: ("octetDeltaSumOfSquares", UINT),
    199: ("octetTotalSumOfSquares", UINT),
    210: ("paddingOctets", PADDING),
    224: ("ipTotalLength", UINT),
    225: ("postNATSourceIPv4Address", IPV4),
    226: ("postNATDestinationIPv4Address", IPV4),
    227: ("postNAPTSourceTransportPort", UINT),
    228: ("postNAPTDestinationTransportPort", UINT),
    240: ("ethernetHeaderLength", UINT),
    241: ("ethernetPayloadLength", UINT),
    242: ("ethernetTotalLength", UINT),
    243: ("dot1qVlanId", UINT),
    244: ("dot1qPriority", UINT),
    245: ("dot1qCustomerVlanId", UINT),
    246: ("dot1qCustomerPriority", UINT),
    252: ("ingressPhysicalInterface", UINT),
    253: ("egressPhysicalInterface", UINT),
    256: ("ethernetType", UINT),
    302: ("selectorId", UINT),
    304: ("selectorAlgorithm", UINT),
    305: ("samplingPacketInterval", UINT),
    306: ("samplingPacketSpace", UINT),
    311: ("samplingProbability", FLOAT),
    351: ("layer2SegmentId", UINT),
    352: ("layer2OctetDeltaCount", UINT),
    353: ("layer2OctetTotalCount", UINT),
}

# (enterprise number, id) -> (name, kind).
ENTERPRISE: dict[tuple[int, int], tuple[str, str]] = {
    (VMWARE_PEN, 891): ("tunnel_type", UINT),
    (VMWARE_PEN, 892): ("tunnel_key", UINT),  # variable length: 3 (VXLAN/Geneve), 4 (GRE), 8 (STT)
    (VMWARE_PEN, 893): ("tunnel_source_ipv4_address", IPV4),
    (VMWARE_PEN, 894): ("tunnel_destination_ipv4_address", IPV4),
    (VMWARE_PEN, 895): ("tunnel_protocol_identifier", UINT),
    (VMWARE_PEN, 896): ("tunnel_source_transport_port", UINT),
    (VMWARE_PEN, 897): ("tunnel_destination_transport_port", UINT),
}

# NetFlow v9 options-template scope field types (a separate name space from field types).
V9_SCOPES: dict[int, str] = {
    1: "scope_system",
    2: "scope_interface",
    3: "scope_line_card",
    4: "scope_cache",
    5: "scope_template",
}

# tunnel_type values used by Open vSwitch (ofproto-dpif-ipfix.c, enum dpif_ipfix_tunnel_type).
OVS_TUNNEL_TYPES: dict[int, str] = {
    1: "vxlan",
    2: "gre",
    3: "lisp",
    4: "stt",
    5: "ipsec_gre",
    7: "geneve",
}


def lookup(ie_id: int, pen: int = 0) -> tuple[str, str]:
    """Name and kind of an information element; unknown ones are raw bytes."""
    if pen:
        known = ENTERPRISE.get((pen, ie_id))
        return known if known is not None else (f"ent{pen}_{ie_id}", OCTETS)
    known = IANA.get(ie_id)
    return known if known is not None else (f"ie_{ie_id}", OCTETS)
