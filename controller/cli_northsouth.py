"""The CLI's north-south commands: `weft router gateway set|unset` and `weft fip ...` (registered by controller/cli.py)."""
from __future__ import annotations

from controller.output import render
from topology.errors import WeftError

FIP_COLUMNS = ["ip", "tenant", "network", "port", "fixed_ip", "host", "id"]


def add_router_gateway(router, parser_class, out) -> None:
    """`weft router gateway set TENANT/R TENANT/EXT [--ip A] [--host H]` and `... unset TENANT/R`."""
    gw = router.add_parser("gateway", help="the router's gateway on an external network (SNAT)")
    verbs = gw.add_subparsers(dest="gateway_cmd", metavar="GATEWAY_COMMAND", parser_class=parser_class)
    verbs.required = True
    p = verbs.add_parser("set", help="give the router a gateway: its networks reach the outside, "
                                     "translated to the gateway address")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    p.add_argument("network", metavar="TENANT/EXT", help="an external network (of any tenant)")
    p.add_argument("--ip", help="the gateway address (default: the lowest free one)")
    p.add_argument("--host", help="the host that does the SNAT (default: the one with the provider "
                                  "that does the fewest)")
    out(p)
    p = verbs.add_parser("unset", help="remove the router's gateway")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    out(p)


def gateway_text(gw: dict | None) -> str | None:
    """A router's gateway in one line: "203.0.113.2 on admin/ext (SNAT on hv1, mac ...)"."""
    if not gw:
        return None
    return f"{gw['ip']} on {gw['network']} (SNAT on {gw['host']}, mac {gw['mac']})"


def cmd_gateway(args, client, tenant: str, name: str, seg) -> int:
    path = f"/v1/routers/{seg(tenant, name)}/gateway"
    if args.gateway_cmd == "set":
        body = {"network": args.network}
        body.update({k: v for k, v in (("ip", args.ip), ("host", args.host)) if v is not None})
        res = client.post(path, body)
        print(render(res, "json") if args.output == "json" else
              f"router {tenant}/{name} gateway {res['ip']} on {res['network']} (SNAT on {res['host']})")
    else:
        res = client.delete(path)
        print(render(res, "json") if args.output == "json" else f"router {tenant}/{name} has no gateway now")
    return 0


def add_fip(sub, parser_class, out) -> None:
    fip = sub.add_parser("fip", help="floating IPs (1:1 NAT on the VM's own host)").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=parser_class)
    fip.required = True
    p = fip.add_parser("create", help="allocate a floating IP for TENANT on an external network")
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--external", required=True, metavar="TENANT/EXT")
    p.add_argument("--ip", help="the address (default: the lowest free one)")
    out(p)
    p = fip.add_parser("associate", help="translate FIP to a port's address")
    p.add_argument("fip", metavar="FIP", help="its address or id")
    p.add_argument("port", metavar="TENANT/NET/PORT")
    out(p)
    for verb, text in (("disassociate", "stop translating FIP"), ("delete", "release FIP"),
                       ("show", "show FIP")):
        p = fip.add_parser(verb, help=text)
        p.add_argument("fip", metavar="FIP", help="its address or id")
        out(p)
    p = fip.add_parser("list", help="list floating IPs")
    p.add_argument("tenant", nargs="?")
    out(p)


def cmd_fip(args, client, seg) -> int:
    if args.sub == "list":
        rows = client.get("/v1/floating-ips", tenant=args.tenant)
        print(render(rows, args.output, FIP_COLUMNS))
        return 0
    if args.sub == "create":
        body = {"tenant": args.tenant, "network": args.external}
        if args.ip is not None:
            body["ip"] = args.ip
        res = client.post("/v1/floating-ips", body)
        print(render(res, "json") if args.output == "json" else
              f"floating IP {res['ip']} allocated to {res['tenant']} on {res['network']} ({res['id']})")
        return 0
    path = f"/v1/floating-ips/{seg(args.fip)}"
    if args.sub == "associate":
        res = client.post(f"{path}/associate", {"port": args.port})
        text = f"floating IP {res['ip']} -> {res['port']} ({res['fixed_ip']})"
    elif args.sub == "disassociate":
        res = client.post(f"{path}/disassociate", {})
        text = f"floating IP {res['ip']} disassociated"
    elif args.sub == "delete":
        res = client.delete(path)
        text = f"floating IP {res['ip']} deleted"
    elif args.sub == "show":
        res = client.get(path)
        text = render(res)
    else:
        raise WeftError(f"unknown fip command {args.sub!r}")
    print(render(res, "json") if args.output == "json" else text)
    return 0
