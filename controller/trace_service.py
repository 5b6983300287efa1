"""GET /v1/trace: `weft trace` over the compiled flows, and with `installed` over what the switches hold.

The walk and the verdict are pure (flows/tracewalk.py); this module gathers its inputs:
the engine's effective model (bindings included), the compiled flows of each host the
packet reaches (computed on the engine's loop, `Engine.desired_flows`), and for
`installed=1` each such host's flow dump read over OpenFlow (weftd's own connection, not
ovs-ofctl), parsed back into flows (controller/ofparse.py). Then it renders steps with their
owners and, for `installed`, the differences between compiled and installed on those hosts.
"""
from __future__ import annotations

from controller import ofmsg, ofparse
from flows import cookies, tracewalk
from flows import pipeline as P
from flows.compiler import PENDING
from topology.errors import Conflict, NotFound, WeftError

FIELDS = ("port", "dst", "proto", "dport", "installed", "src_ip", "src_mac", "ttl")
MAX_DIFFERENCES = 500


def _one(query: dict, name: str):
    values = query.get(name)
    return values[-1] if values else None


def _int(query: dict, name: str):
    text = _one(query, name)
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit():
        raise WeftError(f"invalid {name} {text!r}: a whole number")
    return int(text)


def run(api, query: dict) -> dict:
    unknown = sorted(set(query) - set(FIELDS))
    if unknown:
        raise WeftError(f"unknown parameter(s) {', '.join(unknown)} (a trace takes {', '.join(FIELDS)})")
    ref, dst = _one(query, "port"), _one(query, "dst")
    if not ref or not dst:
        raise WeftError("a trace needs port (TENANT/NET/PORT) and dst (an IP, a MAC or TENANT/NET/PORT)")
    parts = ref.split("/")
    if len(parts) != 3 or not all(parts):
        raise WeftError(f"invalid port {ref!r}: expected TENANT/NET/PORT")
    proto = _one(query, "proto") or "icmp"
    dport, ttl = _int(query, "dport"), _int(query, "ttl")
    installed = (_one(query, "installed") or "0").lower() in ("1", "true", "yes")
    model = api.engine.effective_model()
    source = model.port_by_ref(*parts)
    if source is None:
        raise NotFound(f"no port {ref}")
    binding = model.bindings.get(source.uuid)
    if binding is None or binding.ofport == PENDING:
        raise Conflict(f"port {ref} is not plugged on any host (no NIC with its iface-id has an "
                       f"ofport): nothing to trace from")
    tunnel_ips = {h.name: h.tunnel_ip for h in model.hosts.values()}
    compiled: dict[str, list] = {}

    def compiled_of(host: str):
        if host not in compiled:
            compiled[host] = list(api.engine.desired_flows(host))
        return compiled[host]

    args = dict(dst=dst, proto=proto, dport=dport, src_ip=_one(query, "src_ip"),
                src_mac=_one(query, "src_mac"), ttl=64 if ttl is None else ttl)
    try:
        trace = tracewalk.trace(model, tracewalk.Walker(compiled_of, tunnel_ips), source,
                                binding.host, binding.ofport, **args)
    except LookupError as exc:
        raise NotFound(str(exc.args[0])) from None
    except ValueError as exc:
        raise WeftError(str(exc)) from None
    result = render(model, trace)
    result["flows"] = "compiled"
    if not installed:
        return result
    dumped: dict[str, list] = {}

    def installed_of(host: str):
        if host not in dumped:
            dumped[host] = _installed_flows(api, host)
        return dumped[host]

    try:
        real = tracewalk.trace(model, tracewalk.Walker(installed_of, tunnel_ips), source,
                               binding.host, binding.ofport, **args)
    except ValueError as exc:
        raise WeftError(f"cannot trace the installed flows: {exc}", 502) from None
    result["installed"] = render(model, real)
    compiled_steps = {id(s.flow) for s in trace.steps if s.flow is not None}
    installed_keys = {s.flow.key for s in real.steps if s.flow is not None}
    diffs = []
    for host in sorted(dumped):
        want = {f.key: f for f in compiled_of(host)}
        have = {f.key: f for f in dumped[host]}
        for key in sorted(want.keys() - have.keys()):
            diffs.append(_diff_row(model, host, "missing", want[key], id(want[key]) in compiled_steps))
        for key in sorted(have.keys() - want.keys()):
            diffs.append(_diff_row(model, host, "extra", have[key], key in installed_keys))
    diffs.sort(key=lambda d: (not d["on_path"], d["host"], d["table"], -d["priority"]))
    result["differences"] = diffs[:MAX_DIFFERENCES]
    result["differences_total"] = len(diffs)
    result["hosts_compared"] = sorted(dumped)
    result["verdicts_differ"] = (result["verdict"], result["reason"], result["delivered_to"]) != (
        real.verdict, result["installed"]["reason"], result["installed"]["delivered_to"])
    return result


def _installed_flows(api, host: str) -> list:
    if api.flow_dumper is None:
        raise WeftError("flow dumps are not available", 503)
    rows = api.flow_dumper(host)
    flows = []
    for row in rows:
        flow = row.get("flow")
        if flow is None:
            raise WeftError("this weftd's flow dumps carry no parsed flows", 503)
        if isinstance(flow, Exception):
            raise WeftError(f"{host} holds a flow weft cannot read back (table {row['table']}, "
                            f"cookie {row['cookie']:#x}): {flow}", 502)
        flows.append(flow)
    return flows


def parsed(stats):
    """The Flow of one flow-stats entry, or the ValueError saying why it cannot be read."""
    try:
        return ofparse.flow_of(stats)
    except ValueError as exc:
        return exc


def _owner(model, cookie: int) -> tuple[str, str]:
    feature, obj = cookies.decode(cookie)
    name = model.owner(obj) if obj else None
    return feature, name or ("-" if obj == 0 else f"unknown:{obj:08x}")


def _flow_view(model, flow) -> dict:
    feature, owner = _owner(model, flow.cookie)
    return {"priority": flow.priority, "cookie": f"0x{flow.cookie:016x}", "feature": feature,
            "owner": owner, "match": ofmsg.render_match(flow), "actions": ofmsg.render_actions(flow)}


def _diff_row(model, host: str, kind: str, flow, on_path: bool) -> dict:
    return {"host": host, "kind": kind, "table": flow.table, **_flow_view(model, flow),
            "on_path": on_path}


def render(model, trace) -> dict:
    steps = []
    for s in trace.steps:
        row = {"phase": s.phase, "host": s.host, "table": s.table,
               "table_name": P.TABLES[s.table].name if s.table in P.TABLES else str(s.table)}
        if s.flow is None:
            row.update(priority=None, cookie=None, feature="-", owner="-", match="(no flow)",
                       actions="drop (table miss)")
        else:
            row.update(_flow_view(model, s.flow))
        row["note"] = s.note
        steps.append(row)
    delivered = []
    for host, ofport in trace.deliveries:
        if ofport == 0xFFFFFFFD:
            delivered.append({"host": host, "ofport": None, "port": "controller"})
            continue
        port = model.port_at(host, ofport)
        delivered.append({"host": host, "ofport": ofport, "port": port.ref if port else None})
    return {"source": trace.source.ref, "host": trace.host, "ofport": trace.ofport,
            "dst": trace.dst_text, "dst_port": trace.dst_port.ref if trace.dst_port else None,
            "packet": trace.packet, "steps": steps,
            "tunnels": [{"from": a, "to": b, "vni": v} for a, b, v in trace.tunnels],
            "verdict": trace.verdict, "reason": trace.reason, "detail": trace.detail,
            "groups": trace.groups, "drop_host": trace.drop_host, "drop_table": trace.drop_table,
            "delivered_to": delivered}
