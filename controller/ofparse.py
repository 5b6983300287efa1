"""A switch's flow-stats entries (os-ken objects) read back into weft's Flow records, to trace what it really holds.

The inverse of controller/ofmsg.py for the instructions and actions weft sends: meter, apply
actions (output, controller, set_field, move, ct with a ct_mark, conjunction, sample,
dec_ttl) and goto. Anything else raises ValueError naming it, so a trace never silently
ignores an action a switch holds.
"""
from __future__ import annotations

from flows.flow import Flow

NO_TABLE = 255                  # NXActionCT's recirc_table when it does not recirculate


def flow_of(stats) -> Flow:
    """The Flow of one OFPFlowStats entry (match fields in os-ken's user form, sorted)."""
    match = tuple(sorted((_oxm(k), tuple(v) if isinstance(v, list) else v)
                         for k, v in stats.match.items()))
    return Flow(stats.table_id, stats.priority, match, actions_of(stats.instructions), stats.cookie)


def _oxm(name: str) -> str:
    """os-ken's OXM name of a field it may report by its NXM name (`eth_src_nxm`)."""
    return name[:-4] if name.endswith("_nxm") else name


def actions_of(instructions) -> tuple:
    meter, applied, goto = [], [], []
    for inst in instructions:
        name = type(inst).__name__
        if name == "OFPInstructionMeter":
            meter.append(("meter", inst.meter_id))
        elif name == "OFPInstructionActions" and inst.type == 4:       # OFPIT_APPLY_ACTIONS
            applied.extend(action_of(a) for a in inst.actions)
        elif name == "OFPInstructionGotoTable":
            goto.append(("goto", inst.table_id))
        else:
            raise ValueError(f"instruction {name} (type {getattr(inst, 'type', '?')}) is not one weft uses")
    return tuple(meter + applied + goto)


def action_of(act) -> tuple:
    name = type(act).__name__
    if name == "OFPActionOutput":
        if act.port == 0xFFFFFFFD:                                      # OFPP_CONTROLLER
            return ("controller", act.max_len)
        return ("output", act.port)
    if name == "OFPActionSetField":
        return ("set_field", act.key, act.value)
    if name == "NXActionRegMove":         # a switch names NXM fields e.g. eth_src_nxm
        return ("move", _oxm(act.src_field), _oxm(act.dst_field), act.n_bits)
    if name == "NXActionCT":
        marks = [a.value for a in act.actions if type(a).__name__ == "OFPActionSetField"
                 and a.key == "ct_mark"]
        return ("ct", bool(act.flags & 1), act.zone_ofs_nbits,
                None if act.recirc_table == NO_TABLE else act.recirc_table,
                marks[0] if marks else None)
    if name == "NXActionConjunction":
        return ("conjunction", act.id, act.clause, act.n_clauses)
    if name == "NXActionSample":
        return ("sample", act.probability, act.collector_set_id, act.obs_domain_id, act.obs_point_id)
    if name == "OFPActionDecNwTtl":
        return ("dec_ttl",)
    raise ValueError(f"action {name} is not one weft uses")
