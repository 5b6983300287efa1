"""Translate pure Flow records into os-ken OpenFlow 1.4 messages, and render flows as text."""
from __future__ import annotations

from flows import cookies
from flows.flow import Flow

NAT_FLAGS = {"src": 1, "dst": 2}       # NX_NAT_F_SRC, NX_NAT_F_DST
FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48,
              "arp_spa": 32, "arp_tpa": 32, "ipv4_src": 32, "ipv4_dst": 32}


def match(parser, flow: Flow):
    return parser.OFPMatch(**dict(flow.match))


def action_object(parser, ofproto, act: tuple):
    """The os-ken action for one action tuple (not goto or meter: those are instructions)."""
    kind = act[0]
    if kind == "output":
        return parser.OFPActionOutput(act[1], 0xFFFF if act[1] == ofproto.OFPP_CONTROLLER else 0)
    if kind == "set_field":
        return parser.OFPActionSetField(**{act[1]: act[2]})
    if kind == "move":
        return parser.NXActionRegMove(src_field=act[1], dst_field=act[2], n_bits=act[3])
    if kind == "ct":
        _kind, commit, zone, table, mark = act
        inner = [parser.OFPActionSetField(ct_mark=mark)] if mark is not None else []
        return parser.NXActionCT(flags=1 if commit else 0, zone_src="", zone_ofs_nbits=zone,
                                 recirc_table=255 if table is None else table, alg=0,
                                 actions=inner)
    if kind == "ct_nat":
        _kind, commit, zone, table, nat = act
        if nat is None:         # apply the connection's translation, if it has one
            inner = parser.NXActionNAT(flags=0)
        else:
            inner = parser.NXActionNAT(flags=NAT_FLAGS[nat[0]], range_ipv4_min=nat[1],
                                       range_ipv4_max=nat[1])
        return parser.NXActionCT(flags=1 if commit else 0, zone_src="", zone_ofs_nbits=zone,
                                 recirc_table=255 if table is None else table, alg=0,
                                 actions=[inner])
    if kind == "sample":
        return parser.NXActionSample(probability=act[1], collector_set_id=act[2],
                                     obs_domain_id=act[3], obs_point_id=act[4])
    if kind == "conjunction":
        return parser.NXActionConjunction(clause=act[2], n_clauses=act[3], id_=act[1])
    if kind == "dec_ttl":
        return parser.OFPActionDecNwTtl()
    if kind == "controller":
        return parser.OFPActionOutput(ofproto.OFPP_CONTROLLER, act[1])
    raise ValueError(f"unknown action {act!r}")


def split(flow: Flow) -> tuple[list, int | None, int | None]:
    """(apply-action tuples, goto table or None, meter id or None): goto and meter are
    instructions of their own."""
    acts, goto, meter = [], None, None
    for act in flow.actions:
        kind = act[0]
        if kind == "meter":
            meter = act[1]
        elif kind == "goto":
            goto = act[1]
        else:
            acts.append(act)
    return acts, goto, meter


def actions(parser, ofproto, flow: Flow):
    """(os-ken apply-actions list, goto table or None, meter id or None)."""
    acts, goto, meter = split(flow)
    return [action_object(parser, ofproto, a) for a in acts], goto, meter


def flow_add(datapath, flow: Flow):
    parser, ofproto = datapath.ofproto_parser, datapath.ofproto
    acts, goto, meter = actions(parser, ofproto, flow)
    inst = []
    if meter is not None:
        inst.append(parser.OFPInstructionMeter(meter, ofproto.OFPIT_METER))
    if acts:
        inst.append(parser.OFPInstructionActions(ofproto.OFPIT_APPLY_ACTIONS, acts))
    if goto is not None:
        inst.append(parser.OFPInstructionGotoTable(goto))
    return parser.OFPFlowMod(datapath, cookie=flow.cookie, table_id=flow.table,
                             command=ofproto.OFPFC_ADD, priority=flow.priority,
                             match=match(parser, flow), instructions=inst)


def flow_delete(datapath, table: int, cookie: int):
    """Delete every flow of `table` carrying exactly `cookie`."""
    parser, ofproto = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPFlowMod(datapath, cookie=cookie, cookie_mask=cookies.FULL_MASK,
                             table_id=table, command=ofproto.OFPFC_DELETE,
                             out_port=ofproto.OFPP_ANY, out_group=ofproto.OFPG_ANY,
                             match=parser.OFPMatch())


CT_BITS = (("new", 0x01), ("est", 0x02), ("rel", 0x04), ("rpl", 0x08), ("inv", 0x10), ("trk", 0x20))


def render_match(flow: Flow) -> str:
    parts = []
    for field, value in flow.match:
        if field == "ct_state" and isinstance(value, tuple):
            bits, mask = value
            parts.append("ct_state=" + "".join(("+" if bits & b else "-") + n
                                               for n, b in CT_BITS if mask & b))
            continue
        if isinstance(value, tuple):
            value = f"{_v(value[0])}/{_v(value[1])}"
        parts.append(f"{field}={_v(value)}")
    return ",".join(parts) or "*"


def render_actions(flow: Flow) -> str:
    out = []
    for act in flow.actions:
        kind = act[0]
        if kind == "output":
            out.append({0xFFFFFFF8: "output:IN_PORT", 0xFFFFFFFD: "CONTROLLER"}.get(act[1], f"output:{act[1]}"))
        elif kind == "set_field":
            out.append(f"set_field:{_v(act[2])}->{act[1]}")
        elif kind == "move":
            out.append(f"move:{act[1]}->{act[2]}")
        elif kind == "goto":
            out.append(f"goto_table:{act[1]}")
        elif kind == "controller":
            out.append("CONTROLLER")
        elif kind == "meter":
            out.append(f"meter:{act[1]}")
        elif kind == "ct":
            _kind, commit, zone, table, mark = act
            parts = (["commit"] if commit else []) + [f"zone={zone}"]
            parts += [f"table={table}"] if table is not None else []
            parts += [f"exec(set_field:{mark}->ct_mark)"] if mark is not None else []
            out.append(f"ct({','.join(parts)})")
        elif kind == "ct_nat":
            _kind, commit, zone, table, nat = act
            parts = (["commit"] if commit else []) + [f"zone={zone}"]
            parts += [f"table={table}"] if table is not None else []
            parts.append("nat" if nat is None else f"nat({nat[0]}={nat[1]})")
            out.append(f"ct({','.join(parts)})")
        elif kind == "sample":
            out.append(f"sample(probability={act[1]},collector_set_id={act[2]},obs_point_id={act[4]})")
        elif kind == "conjunction":
            out.append(f"conjunction({act[1]},{act[2] + 1}/{act[3]})")
        else:
            out.append(kind)
    return ",".join(out) or "drop"


def _v(value) -> str:
    return hex(value) if isinstance(value, int) and value > 0xFFFF else str(value)


def meter_add(datapath, meter_id: int, pps: int, burst: int, modify: bool = False):
    """A packets-per-second drop meter (DHCP to the controller goes through one); `modify`
    changes the rate of an existing one."""
    parser, ofproto = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPMeterMod(datapath, command=ofproto.OFPMC_MODIFY if modify else ofproto.OFPMC_ADD,
                              flags=ofproto.OFPMF_PKTPS | ofproto.OFPMF_BURST, meter_id=meter_id,
                              bands=[parser.OFPMeterBandDrop(rate=pps, burst_size=burst)])


def meter_mod(datapath, command: str, meter):
    """OFPMC_ADD/MODIFY/DELETE of a QoS meter (flows/qos.Meter): one drop band, kbit/s or pps."""
    parser, ofproto = datapath.ofproto_parser, datapath.ofproto
    cmd = {"add": ofproto.OFPMC_ADD, "modify": ofproto.OFPMC_MODIFY, "delete": ofproto.OFPMC_DELETE}[command]
    if command == "delete":
        return parser.OFPMeterMod(datapath, command=cmd, flags=0, meter_id=meter.id, bands=[])
    unit = ofproto.OFPMF_PKTPS if meter.pktps else ofproto.OFPMF_KBPS
    return parser.OFPMeterMod(datapath, command=cmd, flags=unit | ofproto.OFPMF_BURST,
                              meter_id=meter.id,
                              bands=[parser.OFPMeterBandDrop(rate=meter.rate, burst_size=meter.burst)])


def meter_of_config(ofproto, entry):
    """A flows/qos.Meter from a meter-config stats entry (its first drop band), or None."""
    from flows.qos import Meter
    bands = [b for b in entry.bands if getattr(b, "type", None) == ofproto.OFPMBT_DROP]
    if not bands:
        return None
    return Meter(entry.meter_id, bool(entry.flags & ofproto.OFPMF_PKTPS), bands[0].rate, bands[0].burst_size)
