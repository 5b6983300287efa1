"""`weft sg suggest` and `weft placement suggest|apply`: the CLI side of controller/decisions.py."""
from __future__ import annotations

import os
import sys

from controller.client import seg
from controller.output import render
from topology.errors import WeftError


def add_sg_suggest(sg, out) -> None:
    p = sg.add_parser("suggest", help="least-privilege groups from observed traffic (dry run unless --apply)")
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--since", default="24h", help="the traffic window (default 24h; e.g. 30m, 2h)")
    p.add_argument("--source", choices=["sflow", "netflow", "ipfix"], default="sflow",
                   help="which collector's flows (default sflow)")
    p.add_argument("--apply", metavar="NAME_PREFIX",
                   help="create the groups (PREFIX-ROLE) and their rules, in one transaction")
    p.add_argument("--assign", action="store_true",
                   help="with --apply: make each observed port a member of its suggested group only")
    out(p)


def add_placement(sub, parser_class, out) -> None:
    pl = sub.add_parser("placement", help="VM moves that cut traffic between hosts (tunnel bytes)"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND", parser_class=parser_class)
    pl.required = True
    for name, helptext in (("suggest", "rank the moves (changes nothing)"),
                           ("apply", "perform the moves as live migrations (weft port migrate; "
                                     "in the lab, weft lab vm move)")):
        p = pl.add_parser(name, help=helptext)
        p.add_argument("--tenant", help="only move this tenant's VMs")
        p.add_argument("--since", default="1h", help="the traffic window (default 1h)")
        p.add_argument("--max-moves", type=_count, default=None if name == "apply" else 10,
                       required=name == "apply", metavar="N",
                       help="at most N migrations" + ("" if name == "apply" else " (default 10)"))
        p.add_argument("--max-ports-per-host", type=_count, metavar="K",
                       help="host capacity in ports (default: the busiest host's load now)")
        p.add_argument("--source", choices=["sflow", "netflow", "ipfix"], default="sflow",
                       help="which collector's flows (default sflow)")
        out(p)


def _count(text: str) -> int:
    import argparse
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


# ---- sg suggest --------------------------------------------------------------------------------

def _remote(r) -> str:
    return f"sg:{r['remote_sg']}" if r.get("remote_sg") else (r.get("remote_cidr") or "-")


def _ports(r) -> str:
    if r.get("port_min") is None:
        return "-"
    return str(r["port_min"]) if r["port_min"] == r["port_max"] else f"{r['port_min']}-{r['port_max']}"


def cmd_sg_suggest(args, client) -> int:
    from topology.validate import name, split_ref
    split_ref(args.tenant, 1, "tenant")
    if args.assign and not args.apply:
        raise WeftError("--assign needs --apply NAME_PREFIX (it moves ports to the groups --apply creates)")
    if args.apply is not None:
        name("group name prefix", args.apply)
        res = client.post("/v1/suggestions/security-groups/apply",
                          {"tenant": args.tenant, "prefix": args.apply, "assign": args.assign,
                           "since": args.since, "source": args.source})
        if args.output == "json":
            print(render(res, "json"))
            return 0
        _print_suggestion(res["suggestion"])
        print()
        for g in res["created"]:
            print(f"created {g['ref']} with {g['rules']} rule(s)")
        for a in res["assigned"]:
            print(f"port {a['port']}: groups {','.join(a['before']) or '-'} -> {','.join(a['after'])}")
        for ref in res.get("not_assigned", ()):
            print(f"port {ref}: not assigned (port security off)")
        print(f"applied in one transaction: {len(res['created'])} group(s), "
              f"{sum(g['rules'] for g in res['created'])} rule(s), {len(res['assigned'])} port(s) assigned")
        return 0
    res = client.get("/v1/suggestions/security-groups", tenant=args.tenant, since=args.since,
                     source=args.source)
    if args.output == "json":
        print(render(res, "json"))
        return 0
    _print_suggestion(res)
    print()
    print("dry run: nothing changed (--apply NAME_PREFIX creates these groups, --assign moves the ports)")
    return 0


def _print_suggestion(s: dict) -> None:
    print(f"tenant {s['tenant']}: {s['connections']} connection(s), {s['bytes']} bytes observed "
          f"({s['source']}); {len(s['groups'])} suggested group(s)")
    print(f"grouping: {s['clustering']}")
    for g in s["groups"]:
        print()
        names = ", ".join(m.rsplit("/", 1)[-1] for m in g["members"])
        print(f"group {g['name']}: {names} — covers {g['covers']['connections']} connection(s), "
              f"{g['covers']['bytes']} bytes")
        rows = [{**r, "ports": _ports(r), "remote": _remote(r)} for r in g["rules"]]
        print(render(rows, columns=["direction", "proto", "ports", "remote", "ethertype",
                                    "connections", "bytes"]))
    unused = [u for u in s["unused"] if u["unused"]]
    if unused:
        print()
        print("allowed now but never used in the window:")
        for u in unused:
            for r in u["unused"]:
                print(f"  {u['group']}: {r['direction']} {r['proto']} {_ports(r)} from/to {_remote(r)} "
                      f"({r['ethertype']}, rule {r['id']})")
    if s["unobserved_ports"]:
        print(f"ports with no observed traffic (left as they are): {', '.join(s['unobserved_ports'])}")
    if s["skipped"]:
        print("not turned into rules: " + ", ".join(f"{k} ({v['rows']} rows, {v['bytes']} bytes)"
                                                   for k, v in sorted(s["skipped"].items())))


# ---- placement ---------------------------------------------------------------------------------

def _query(args) -> dict:
    return {"tenant": args.tenant, "since": args.since, "max_moves": args.max_moves,
            "max_ports_per_host": args.max_ports_per_host, "source": args.source}


def cmd_placement(args, client) -> int:
    if args.tenant is not None:
        from topology.validate import split_ref
        split_ref(args.tenant, 1, "tenant")
    plan = client.get("/v1/suggestions/placement", **_query(args))
    if args.sub == "suggest":
        if args.output == "json":
            print(render(plan, "json"))
        else:
            _print_plan(plan)
            print("dry run: nothing changed (`weft placement apply --max-moves N` performs them)")
        return 0
    done = apply_moves(plan, client, log=None if args.output == "json" else print)
    if args.output == "json":
        print(render({"plan": plan, "done": done}, "json"))
    elif not plan["moves"]:
        _print_plan(plan)
    return 0


def _print_plan(plan: dict) -> None:
    before, after = plan["cross_host_bytes_before"], plan["cross_host_bytes_after"]
    cut = f" ({100 * (before - after) / before:.0f}% less)" if before else ""
    print(f"cross-host bytes over the window: {before} now, {after} after {len(plan['moves'])} "
          f"move(s){cut}; capacity {plan['max_ports_per_host']} ports per host")
    if plan["moves"]:
        print(render(plan["moves"], columns=["port", "from", "to", "bytes_saved", "cross_host_bytes_after"]))
        print(render(plan["hosts"], columns=["host", "load_before", "load_after", "capacity"]))
    elif before:
        print(f"no move fits: every host that would save bytes already holds "
              f"{plan['max_ports_per_host']} ports (raise --max-ports-per-host)")


def _lab_vms() -> dict:
    """{port ref: lab VM name} when the CLI talks to the running lab's weftd, else {}."""
    if os.environ.get("WEFT_API"):
        return {}
    try:
        from lab.state import LabState, paths
        state = LabState.load(paths())
    except (WeftError, OSError):
        return {}
    if state is None:
        return {}
    return {vm["port"]: name for name, vm in state.vms.items() if vm.get("port")}


def apply_moves(plan: dict, client, log=print) -> list[dict]:
    """Perform the plan's moves in order: a lab VM moves (`weft lab vm move`: port migrate, new
    NIC, switch-over, old NIC unplugged); any other port gets `port migrate` (its destination
    programmed ahead; the platform moves the VM). Stops at the first failure, saying what was done."""
    lab = _lab_vms()
    done = []
    for m in plan["moves"]:
        try:
            if m["port"] in lab:
                from lab import vm
                moved = vm.move(lab[m["port"]], m["to"])
                how = f"lab VM {lab[m['port']]} moved" + ("" if moved["activated"] else
                                                          " (weftd did not confirm the switch-over)")
            else:
                res = client.post(f"/v1/ports/{seg(*m['port'].split('/'))}/migrate", {"to": m["to"]})
                how = f"migration requested ({res['migration']['state']}): the platform moves the VM"
        except WeftError as exc:
            sys.stderr.write(f"weft: error: placement stopped at {m['port']} -> {m['to']} after "
                             f"{len(done)} move(s): {exc}\n")
            raise SystemExit(1)
        done.append({**m, "done": how})
        if log:
            log(f"{m['port']}: {m['from']} -> {m['to']} ({m['bytes_saved']} bytes saved over the window): {how}")
    if log and done:
        log(f"{len(done)} move(s) done; cross-host bytes over the window {plan['cross_host_bytes_before']} -> "
            f"{plan['cross_host_bytes_after']} (for the same traffic)")
    return done
