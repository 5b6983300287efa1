"""`weft sg what-if TENANT/SG (--delete-rule ID | --add-rule RULE-OPTIONS) [--since 1h]`: asks weftd's
what-if API which observed connections a rule change would block or newly allow."""
from __future__ import annotations

from controller.client import seg
from controller.output import render
from topology.errors import WeftError

COLUMNS = ["client", "server", "proto", "port", "bytes", "packets", "why"]


def add_parser(sg_subparsers) -> None:
    p = sg_subparsers.add_parser(
        "what-if", help="replay the observed traffic against the group as a change would leave it "
                        "(nothing is changed)")
    p.add_argument("ref", metavar="TENANT/SG")
    p.add_argument("--delete-rule", action="append", default=[], metavar="RULE_ID",
                   help="a rule to take away (repeatable)")
    p.add_argument("--add-rule", action="store_true",
                   help="a rule to add, given by the options of `weft sg rule add` that follow")
    p.add_argument("--direction", choices=["ingress", "egress"])
    p.add_argument("--proto", choices=["tcp", "udp", "icmp", "any"])
    p.add_argument("--port", metavar="N|N-M", help="destination port or range (tcp and udp only)")
    p.add_argument("--icmp-type", metavar="T", help="ICMP type 0-255 (icmp only)")
    remote = p.add_mutually_exclusive_group()
    remote.add_argument("--remote-cidr", metavar="CIDR")
    remote.add_argument("--remote-sg", metavar="TENANT/SG")
    p.add_argument("--ethertype", choices=["ipv4", "ipv6"])
    p.add_argument("--since", default="1h", help="the traffic of the last DURATION (default 1h)")
    p.add_argument("--source", choices=["sflow", "netflow", "ipfix"], default="sflow",
                   help="which collector's traffic (default sflow)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


RULE_OPTIONS = ("direction", "proto", "port", "icmp_type", "remote_cidr", "remote_sg", "ethertype")


def request_body(args, tenant: str, name: str) -> dict:
    from controller.cli import rule_body
    given = [o for o in RULE_OPTIONS if getattr(args, o) is not None]
    if given and not args.add_rule:
        raise WeftError(f"--{given[0].replace('_', '-')} describes a rule to add: give --add-rule too")
    if not args.add_rule and not args.delete_rule:
        raise WeftError("nothing to try: give --delete-rule RULE_ID or --add-rule with the rule's options")
    body = {"since": args.since, "source": args.source}
    if args.delete_rule:
        body["delete_rules"] = args.delete_rule
    if args.add_rule:
        if args.direction is None:
            raise WeftError("--add-rule needs --direction ingress|egress (and the rule's other options)")
        body["add_rules"] = [rule_body(args, tenant, name)]
    return body


def run(args, client) -> int:
    from controller.cli import _ref
    tenant, name = _ref(args.ref, 2, "security group")
    res = client.post(f"/v1/security-groups/{seg(tenant, name)}/what-if", request_body(args, tenant, name))
    if args.output == "json":
        print(render(res, "json"))
        return 0
    print(f"{res['connections']} connection(s) of tenant {tenant} seen by {res['source']} in the last "
          f"{res['since']}; nothing was changed")
    for key, title, verdict in (("blocked", "would become BLOCKED", "after"),
                                ("allowed", "would become ALLOWED", "before")):
        rows = [{**e, "why": e[verdict]["reason"] if verdict == "after" else
                 (e["after"]["ingress_rule"] or e["after"]["egress_rule"])} for e in res[key]]
        print(f"\n{title}: {len(rows)}")
        if rows:
            print(render(rows, columns=COLUMNS))
    return 0
