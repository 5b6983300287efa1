"""`weft trace` and `weft traffic drops`: parsers and output (the work is weftd's, over its API)."""
from __future__ import annotations

from controller.output import render

STEP_COLUMNS = ["phase", "host", "table", "table_name", "priority", "feature", "owner", "match",
                "actions", "note"]
DROP_COLUMNS = ["src", "dst", "proto", "dport", "reason", "group", "host", "packets",
                "first_seen", "last_seen"]


def add_trace_parser(sub) -> None:
    p = sub.add_parser("trace", help="walk a packet from a port through the pipeline (and the tunnel) "
                                     "to its verdict: delivered, or dropped and why")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    p.add_argument("--dst", required=True, metavar="IP|MAC|TENANT/NET/PORT")
    p.add_argument("--proto", choices=["tcp", "udp", "icmp"],
                   help="default: tcp with --dport, else icmp (an echo request)")
    p.add_argument("--dport", type=int, metavar="N", help="destination port (tcp, udp)")
    p.add_argument("--src-ip", metavar="IP", help="send from this address (spoofing: port security)")
    p.add_argument("--src-mac", metavar="MAC", help="send from this MAC (spoofing: port security)")
    p.add_argument("--ttl", type=int, metavar="N", help="IPv4 TTL (default 64)")
    p.add_argument("--installed", action="store_true",
                   help="also walk the flows the switches hold (dumped over OpenFlow) and list "
                        "where they differ from the compiled ones")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


def add_drops_parser(traffic_sub) -> None:
    p = traffic_sub.add_parser("drops", help="packets the data path dropped, by reason (sampled, "
                                             "rate-limited per host)")
    p.add_argument("--tenant", help="only drops with this tenant on one side")
    p.add_argument("--since", help="only the last DURATION (e.g. 30s, 10m, 1h; default 10m)")
    p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")


def cmd_trace(args, client) -> int:
    proto = args.proto or ("tcp" if args.dport is not None else "icmp")
    query = {"port": args.ref, "dst": args.dst, "proto": proto, "dport": args.dport,
             "src_ip": args.src_ip, "src_mac": args.src_mac, "ttl": args.ttl,
             "installed": "1" if args.installed else None}
    res = client.get("/v1/trace", **{k: v for k, v in query.items() if v is not None})
    if args.output == "json":
        print(render(res, "json"))
        return 0
    _print_walk(res, "compiled flows" if args.installed else None)
    if args.installed:
        print()
        _print_walk(res["installed"], "installed flows (dumped from the switches)")
        diffs = res.get("differences", [])
        print(f"\ndifferences between compiled and installed on {', '.join(res['hosts_compared'])}: "
              f"{res['differences_total']}" + (" (the verdicts differ)" if res["verdicts_differ"] else ""))
        if diffs:
            print(render(diffs, "table", ["host", "kind", "table", "priority", "feature", "owner",
                                          "match", "actions", "on_path"]))
    return 0


def _print_walk(res: dict, title: str | None) -> None:
    pkt = res["packet"]
    what = {6: "tcp", 17: "udp"}.get(pkt.get("ip_proto"), "icmp") if pkt else "-"
    port = pkt.get("tcp_dst") or pkt.get("udp_dst") if pkt else None
    print(f"{title + ': ' if title else ''}{res['source']} ({res['host']}, ofport {res['ofport']}) -> "
          f"{res['dst']}{' (' + res['dst_port'] + ')' if res['dst_port'] else ''} {what}"
          f"{'/' + str(port) if port else ''}")
    if res["steps"]:
        print(render(res["steps"], "table", STEP_COLUMNS))
    print(verdict_line(res))


def verdict_line(res: dict) -> str:
    if res["verdict"] == "delivered":
        to = ", ".join(f"{d['port'] or 'ofport ' + str(d['ofport'])} on {d['host']}"
                       for d in res["delivered_to"])
        return f"verdict: delivered to {to}"
    if res["verdict"] == "to-controller":
        return "verdict: sent to the controller"
    where = f" at table {res['drop_table']} on {res['drop_host']}" if res.get("drop_host") else ""
    return f"verdict: dropped{where}: {res['reason']}: {res['detail']}"


def cmd_drops(args, client) -> int:
    rows = client.get("/v1/traffic/drops", tenant=args.tenant, since=args.since)
    if args.output == "json":
        print(render(rows, "json"))
        return 0
    if args.output == "table":            # CSV keeps the epoch seconds, as JSON does
        import time
        stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))   # noqa: E731
        rows = [{**r, "first_seen": stamp(r["first_seen"]), "last_seen": stamp(r["last_seen"])}
                for r in rows]
    print(render(rows, args.output, DROP_COLUMNS))
    return 0
