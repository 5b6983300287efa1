# PYTHON_ARGCOMPLETE_OK
"""The `weft` command line: lab commands run locally; network commands call weftd's northbound API."""
from __future__ import annotations

import argparse
import os
import sys
import time

from controller import qos_cli
from controller.cli_trace import cmd_trace
from controller import cli_northsouth
from controller.client import Client, seg
from controller.output import render
from topology.addresses import router_ip6
from topology.errors import WeftError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"weft: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _out(p):
    p.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="output format (default: table)")


def build_parser() -> Parser:
    parser = Parser(prog="weft", description="weft: virtual networking for Open vSwitch hypervisors")
    parser.add_argument("--wait", nargs="?", const="hv", choices=["hv"], metavar="hv",
                        help="after a change, wait until every hypervisor it affects has committed "
                             "it (like ovn-nbctl --wait=hv); also accepted after the command")
    parser.add_argument("--wait-timeout", type=float, default=10.0, metavar="S",
                        help="how long --wait waits (default 10 s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    lab = sub.add_parser("lab", help="the emulated data centre").add_subparsers(
        dest="lab_cmd", metavar="LAB_COMMAND", parser_class=Parser)
    lab.required = True
    p = lab.add_parser("up", help="create hv1..hvN, the underlay and the management network")
    p.add_argument("--hosts", type=int, default=3, help="number of hypervisors (default 3)")
    p.add_argument("--tunnel", choices=["vxlan", "geneve"], default="vxlan")
    p.add_argument("--underlay-mtu", type=int, default=1500, metavar="BYTES",
                   help="MTU of the hypervisors' tunnel network (default 1500; e.g. 9000 for jumbo "
                        "frames): VMs get it less the encapsulation")
    p.add_argument("--ha", action="store_true",
                   help="the northbound database as a 3-member Raft cluster and 2 weftd replicas "
                        "(one active, one hot standby)")
    p.add_argument("--no-provider", dest="provider", action="store_false",
                   help="no provider bridge br-ex and no outside network (no north-south): "
                        "hypervisors with br-phy and br-int only, as the OVN peer's bench lab")
    _out(p)
    lab.add_parser("down", help="remove every namespace and process the lab made")
    _out(lab.add_parser("status", help="hosts, VMs and services of the lab"))
    vm = lab.add_parser("vm", help="lab VMs").add_subparsers(dest="vm_cmd", metavar="VM_COMMAND",
                                                            parser_class=Parser)
    vm.required = True
    p = vm.add_parser("create", help="create a VM plugged into a host's br-int")
    p.add_argument("name")
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, help="TENANT/NET/PORT")
    p.add_argument("--mac", help="override the port's MAC")
    p.add_argument("--ip", help="override the port's IP (ADDR/PREFIX)")
    p.add_argument("--ip6", action="append", help="override the port's IPv6 addresses (ADDR/PREFIX, repeat it)")
    p.add_argument("--gateway", help="default gateway inside the VM")
    p.add_argument("--iface-id", help="external_ids:iface-id (default: the port's id)")
    p.add_argument("--dhcp", action="store_true",
                   help="configure the NIC with a DHCP client in the VM instead of statically")
    _out(p)
    p = vm.add_parser("delete", help="delete a VM")
    p.add_argument("name")
    p = vm.add_parser("move", help="live-migrate a VM to another host (weft port migrate, new NIC, RARP, "
                                   "old NIC unplugged)")
    p.add_argument("name")
    p.add_argument("--host", required=True)
    p = lab.add_parser("exec", help="run a command inside a VM (or a host)")
    p.add_argument("name")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p = lab.add_parser("swarm", help="emulated hypervisors (OVSDB + OpenFlow, no Open vSwitch) for scale runs")
    p.add_argument("--hosts", type=int, required=True)
    p.add_argument("--ports-per-host", type=int, default=2, help="VM NICs plugged on each host (default 2)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--network", metavar="TENANT/NET", help="create each NIC's port there (default: iface-ids "
                                                             "weftd does not know)")
    p.add_argument("--prefix", default="sw", help="host names PREFIX1..PREFIXN (default sw)")
    p.add_argument("--run-dir", help="where the sockets live (default: a temporary directory)")
    p.add_argument("--controller", metavar="tcp:IP:PORT",
                   help="connect there instead of to the Controller target weftd writes")
    p.add_argument("--no-register", dest="register", action="store_false",
                   help="do not register the hosts with weftd (weft host add)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between status lines")
    lh = lab.add_parser("host", help="lab hypervisors").add_subparsers(dest="host_cmd", metavar="HOST_COMMAND",
                                                                      parser_class=Parser)
    lh.required = True
    p = lh.add_parser("add", help="a bare hypervisor hvK: cabled, Open vSwitch as Debian starts it, not "
                                  "enrolled (weft host bootstrap + weft host add do that)")
    p.add_argument("name", metavar="hvK")
    _out(p)
    ctl = lab.add_parser("controller", help="stop/start/restart the lab's weftd")
    ctl.add_argument("action", choices=["start", "stop", "restart"])
    ctl.add_argument("--replica", default="weftd", metavar="NAME",
                     help="with `lab up --ha`: which replica (weftd or weftd2; default weftd)")

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    tenant.required = True
    p = tenant.add_parser("create", help="create a tenant")
    p.add_argument("name")
    _out(p)
    p = tenant.add_parser("delete", help="delete a tenant")
    p.add_argument("name")
    p.add_argument("--cascade", action="store_true", help="also delete its networks and ports")
    _out(tenant.add_parser("list", help="list tenants"))

    net = sub.add_parser("network", help="networks").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    net.required = True
    p = net.add_parser("create", help="create TENANT/NET")
    p.add_argument("ref", metavar="TENANT/NET")
    p.add_argument("--cidr", required=True, action="append",
                   help="the IPv4 prefix; repeat it for an IPv6 prefix besides (e.g. fd00:1::/64)")
    p.add_argument("--gateway", help="gateway address (default: the first address)")
    p.add_argument("--dns", action="append", default=[], help="DNS server handed out by DHCP")
    p.add_argument("--no-dhcp", action="store_true")
    p.add_argument("--external", action="store_true",
                   help="a network on the hosts' provider bridges (router gateways, floating IPs)")
    p.add_argument("--provider", help="external only: the provider it maps onto (default phys)")
    _out(p)
    p = net.add_parser("delete", help="delete TENANT/NET")
    p.add_argument("ref", metavar="TENANT/NET")
    p.add_argument("--cascade", action="store_true", help="also delete its ports")
    p = net.add_parser("show", help="show TENANT/NET and its ports")
    p.add_argument("ref", metavar="TENANT/NET")
    _out(p)
    p = net.add_parser("list", help="list networks")
    p.add_argument("tenant", nargs="?")
    _out(p)

    port = sub.add_parser("port", help="ports").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    port.required = True
    p = port.add_parser("create", help="create TENANT/NET/PORT (prints id, mac, ip)")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    p.add_argument("--ip", action="append",
                   help="an address (repeat it: one IPv4, IPv6 ones); a family given none gets one allocated")
    p.add_argument("--mac")
    p.add_argument("--sg", action="append", default=[], metavar="TENANT/SG")
    p.add_argument("--no-port-security", action="store_true")
    qos_cli.add_flags(p, removable=False)
    _out(p)
    p = port.add_parser("update", help="replace the security groups of TENANT/NET/PORT, turn "
                                       "its port security on or off, set or remove its QoS")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    groups = p.add_mutually_exclusive_group()
    groups.add_argument("--sg", action="append", metavar="TENANT/SG",
                        help="the port's security groups (repeat it; replaces the set)")
    groups.add_argument("--no-sg", action="store_true", help="take every security group off the port")
    security = p.add_mutually_exclusive_group()
    security.add_argument("--port-security", dest="port_security", action="store_const", const=True,
                          help="turn anti-spoofing and security groups on")
    security.add_argument("--no-port-security", dest="port_security", action="store_const",
                          const=False, help="turn them off (the port must have no security group)")
    qos_cli.add_flags(p, removable=True)
    _out(p)
    p = port.add_parser("migrate", help="live migration: program hvK ahead; traffic moves when the VM "
                                        "announces itself there (RARP/GARP/first frame)")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    p.add_argument("--to", required=True, metavar="HOST")
    _out(p)
    p = port.add_parser("delete", help="delete TENANT/NET/PORT")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    p = port.add_parser("show", help="show TENANT/NET/PORT")
    p.add_argument("ref", metavar="TENANT/NET/PORT")
    _out(p)
    p = port.add_parser("list", help="list ports")
    p.add_argument("scope", nargs="?", metavar="TENANT[/NET]")
    _out(p)

    router = sub.add_parser("router", help="distributed routers").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    router.required = True
    p = router.add_parser("create", help="create TENANT/ROUTER")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    _out(p)
    p = router.add_parser("delete", help="delete TENANT/ROUTER")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    p.add_argument("--cascade", action="store_true", help="detach its networks first")
    p = router.add_parser("show", help="show TENANT/ROUTER, its networks and routes")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    _out(p)
    p = router.add_parser("list", help="list routers")
    p.add_argument("tenant", nargs="?")
    _out(p)
    for verb in ("attach", "detach"):
        p = router.add_parser(verb, help=f"{verb} TENANT/NET {'to' if verb == 'attach' else 'from'} the router")
        p.add_argument("ref", metavar="TENANT/ROUTER")
        p.add_argument("network", metavar="TENANT/NET")
        _out(p)
    route = router.add_parser("route", help="static routes").add_subparsers(
        dest="route_cmd", metavar="ROUTE_COMMAND", parser_class=Parser)
    route.required = True
    p = route.add_parser("add", help="add a static route (IPv4 or IPv6)")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    p.add_argument("cidr")
    p.add_argument("--via", required=True, help="next hop of the route's family, inside one of the router's networks")
    _out(p)
    p = route.add_parser("delete", help="delete a static route")
    p.add_argument("ref", metavar="TENANT/ROUTER")
    p.add_argument("cidr")
    cli_northsouth.add_router_gateway(router, Parser, _out)
    cli_northsouth.add_fip(sub, Parser, _out)

    sg = sub.add_parser("sg", help="security groups").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    sg.required = True
    p = sg.add_parser("create", help="create TENANT/SG (with no rule: add them with `weft sg rule add`)")
    p.add_argument("ref", metavar="TENANT/SG")
    _out(p)
    p = sg.add_parser("delete", help="delete TENANT/SG (refused while ports or rules use it)")
    p.add_argument("ref", metavar="TENANT/SG")
    p = sg.add_parser("show", help="show TENANT/SG, its rules and the ports using it")
    p.add_argument("ref", metavar="TENANT/SG")
    _out(p)
    p = sg.add_parser("list", help="list security groups")
    p.add_argument("tenant", nargs="?")
    _out(p)
    from controller.decisions_cli import add_placement, add_sg_suggest
    add_sg_suggest(sg, _out)
    add_placement(sub, Parser, _out)
    rule = sg.add_parser("rule", help="security-group rules").add_subparsers(
        dest="rule_cmd", metavar="RULE_COMMAND", parser_class=Parser)
    rule.required = True
    p = rule.add_parser("add", help="add a rule (prints its id)")
    p.add_argument("ref", metavar="TENANT/SG")
    p.add_argument("--direction", required=True, choices=["ingress", "egress"])
    p.add_argument("--proto", default="any", choices=["tcp", "udp", "icmp", "any"])
    p.add_argument("--port", metavar="N|N-M", help="destination port or range (tcp and udp only)")
    p.add_argument("--icmp-type", metavar="T", help="ICMP type 0-255 (icmp only)")
    remote = p.add_mutually_exclusive_group()
    remote.add_argument("--remote-cidr", metavar="CIDR", help="peers by address (default 0.0.0.0/0)")
    remote.add_argument("--remote-sg", metavar="TENANT/SG", help="peers: the members of this group")
    p.add_argument("--ethertype", default="ipv4", choices=["ipv4", "ipv6"],
                   help="the rule's address family (icmp means ICMPv6 for ipv6)")
    _out(p)
    p = rule.add_parser("delete", help="delete a rule")
    p.add_argument("ref", metavar="TENANT/SG")
    p.add_argument("rule_id", metavar="RULE_ID")
    from controller.whatif_cli import add_parser as add_what_if
    add_what_if(sg)

    host = sub.add_parser("host", help="hypervisors").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    host.required = True
    _out(host.add_parser("list", help="name, tunnel ip, connected, ports bound"))
    p = host.add_parser("add", help="register a hypervisor")
    p.add_argument("name")
    p.add_argument("--tunnel-ip", required=True)
    p.add_argument("--ovsdb", required=True,
                   help="ssl:IP:PORT of its Open vSwitch DB (unix:PATH or tcp:IP:PORT only with --insecure)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a unix: or tcp: OVSDB remote (no TLS: whoever holds that address "
                        "is configured as the host)")
    p.add_argument("--mgmt-ip", help="the address its flow exporters send from")
    p.add_argument("--provider", action="append", metavar="NAME:BRIDGE",
                   help="a provider bridge of the host, e.g. phys:br-ex (repeat for more)")
    _out(p)
    p = host.add_parser("update", help="change a hypervisor's tunnel IP, OVSDB remote or management IP")
    p.add_argument("name")
    p.add_argument("--tunnel-ip")
    p.add_argument("--ovsdb", help="ssl:IP:PORT (unix:/tcp: only with --insecure)")
    p.add_argument("--insecure", action="store_true", help="allow a unix: or tcp: OVSDB remote")
    p.add_argument("--mgmt-ip")
    p.add_argument("--no-mgmt-ip", action="store_true", help="forget its management IP")
    p.add_argument("--provider", action="append", metavar="NAME:BRIDGE",
                   help="its provider bridges (replaces them all; repeat for more)")
    _out(p)
    p = host.add_parser("delete", help="forget a hypervisor")
    p.add_argument("name")
    pki = sub.add_parser("pki", help="weft's CA: certificates for weftd and hypervisors").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    pki.required = True
    from controller import hostops
    hostops.add_parsers(host, pki, _out)

    traffic = sub.add_parser("traffic", help="who talks to whom (sFlow/NetFlow/IPFIX)").add_subparsers(
        dest="sub", metavar="SUBCOMMAND", parser_class=Parser)
    traffic.required = True
    for name, helptext in (("matrix", "traffic between VMs, networks or tenants"),
                           ("top", "top talkers")):
        p = traffic.add_parser(name, help=helptext)
        p.add_argument("--since", help="only the last DURATION (e.g. 30s, 5m, 1h)")
        p.add_argument("--by", choices=["vm", "network", "tenant"], default="vm")
        p.add_argument("--source", choices=["sflow", "netflow", "ipfix"], default="sflow",
                       help="which collector to report (default sflow)")
        p.add_argument("--tenant", help="only pairs with this tenant on one side")
        if name == "top":
            p.add_argument("-n", type=int, default=10, help="how many (default 10)")
        p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    p = traffic.add_parser("flows", help="traffic between VMs per service (protocol, server port, "
                           "direction)")
    p.add_argument("--since", help="only the last DURATION (e.g. 30s, 5m, 1h)")
    p.add_argument("--tenant", help="only pairs with this tenant on one side")
    p.add_argument("--source", choices=["sflow", "netflow", "ipfix"], default="sflow",
                   help="which collector to report (default sflow)")
    p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    from controller.cli_trace import add_drops_parser, add_trace_parser
    add_drops_parser(traffic)
    p = traffic.add_parser("status", help="per exporter: datagrams, records, malformed, gaps, templates")
    p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    p = traffic.add_parser("config", help="show or change what the hosts export")
    onoff = {"choices": ["on", "off"]}
    p.add_argument("--sflow", **onoff)
    p.add_argument("--sflow-sampling", type=int, metavar="N", help="sample 1 packet in N")
    p.add_argument("--sflow-polling", type=int, metavar="S", help="counter polling interval (s)")
    p.add_argument("--netflow", **onoff)
    p.add_argument("--netflow-active-timeout", type=int, metavar="S")
    p.add_argument("--ipfix", **onoff)
    p.add_argument("--ipfix-sampling", type=int, metavar="N", help="sample 1 packet in N")
    p.add_argument("--drop-sample-pps", type=int, metavar="N",
                   help="dropped packets sampled to weftd per second and host (an OpenFlow meter)")
    p.add_argument("--drop-sample-burst", type=int, metavar="N", help="... and the meter's burst")
    p.add_argument("--retention", metavar="DURATION",
                   help="keep the flow history on disk this long (1h to 3650d, e.g. 36h, 7d, 2w; "
                        "default 7d)")
    p.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    from collectors.cli import add_parser as add_collect
    add_collect(sub)

    cl = sub.add_parser("cluster", help="HA: the weftd replicas and northbound Raft members").add_subparsers(
        dest="sub", metavar="CLUSTER_COMMAND", parser_class=Parser)
    cl.required = True
    _out(cl.add_parser("status", help="name, kind (weftd|nb), role, pid, address of every member"))

    p = sub.add_parser("completion", help="shell completion code: source <(weft completion bash)")
    p.add_argument("shell", choices=["bash", "zsh"])
    add_trace_parser(sub)
    p = sub.add_parser("flows", help="installed flows of a host, annotated with their owner")
    p.add_argument("host")
    _out(p)

    tok = sub.add_parser("token", help="API tokens: per-tenant access over TCP (admins only)").add_subparsers(
        dest="sub", metavar="TOKEN_COMMAND", parser_class=Parser)
    tok.required = True
    p = tok.add_parser("create", help="create a token that sees and changes only TENANT (prints its secret once)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", help="the token's name (default TENANT-XXXXXX)")
    _out(p)
    _out(tok.add_parser("list", help="name and tenant of every token"))
    p = tok.add_parser("delete", help="delete a token: requests with it are refused at once")
    p.add_argument("name")
    return parser


def _ref(value: str, parts: int, what: str) -> list[str]:
    from topology.validate import split_ref
    return split_ref(value, parts, what)


def cmd_tenant(args, client) -> int:
    if args.sub == "create":
        res = client.post("/v1/tenants", {"name": args.name})
        print(render(res, "json") if args.output == "json" else f"tenant {res['name']} created ({res['id']})")
    elif args.sub == "delete":
        client.delete(f"/v1/tenants/{seg(args.name)}", cascade=1 if args.cascade else None)
        print(f"tenant {args.name} deleted")
    else:
        print(render(client.get("/v1/tenants"), args.output, ["name", "networks", "ports", "id"]))
    return 0


def cmd_network(args, client) -> int:
    if args.sub == "list":
        if args.tenant:
            _ref(args.tenant, 1, "tenant")
        rows = client.get("/v1/networks", tenant=args.tenant)
        print(render(rows, args.output, ["ref", "cidrs", "gateway", "vni", "dhcp", "router", "ports"]))
        return 0
    tenant, name = _ref(args.ref, 2, "network")
    if args.sub == "create":
        body = {"tenant": tenant, "name": name, "cidrs": args.cidr, "gateway": args.gateway,
                "dhcp": not args.no_dhcp, "dns": args.dns}
        if args.external or args.provider:
            body.update(external=args.external, provider=args.provider)
        res = client.post("/v1/networks", body)
        print(render(res, "json") if args.output == "json" else
              f"network {tenant}/{name} created: {' '.join(res['cidrs'])} gateway {res['gateway']} "
              f"vni {res['vni']}")
    elif args.sub == "delete":
        client.delete(f"/v1/networks/{seg(tenant, name)}", cascade=1 if args.cascade else None)
        print(f"network {tenant}/{name} deleted")
    else:
        res = client.get(f"/v1/networks/{seg(tenant, name)}")
        if args.output == "json":
            print(render(res, "json"))
        else:
            print(render({k: v for k, v in res.items() if k != "port_list"}))
            if res["port_list"]:
                print()
                print(render(res["port_list"], columns=["name", "mac", "ips", "host", "id"]))
    return 0


def _print_listing(listing) -> int:
    """`-o json` of a list: weftd's body as is when it is in render's layout, else rendered."""
    if isinstance(listing, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(listing + b"\n")
        sys.stdout.buffer.flush()
    else:
        print(render(listing, "json"))
    return 0


def cmd_port(args, client) -> int:
    if args.sub == "list":
        query = {}
        if args.scope:
            parts = args.scope.split("/")
            _ref(args.scope, len(parts) if len(parts) in (1, 2) else 2, "tenant or network")
            query = {"tenant": parts[0], "network": parts[1] if len(parts) > 1 else None}
        if args.output == "json":
            return _print_listing(client.get_listing("/v1/ports", **query))
        rows = client.get("/v1/ports", **query)
        print(render(rows, args.output, ["ref", "mac", "ips", "host", "ofport", "id"]))
        return 0
    tenant, net, name = _ref(args.ref, 3, "port")
    if args.sub == "create":
        groups = [_group_of(tenant, g, f"port {args.ref}") for g in args.sg]
        res = client.post("/v1/ports", {"tenant": tenant, "network": net, "name": name,
                                        "ips": args.ip, "mac": args.mac,
                                        "security_groups": groups,
                                        "port_security": not args.no_port_security,
                                        "qos": qos_cli.body(args)})
        if args.output == "json":
            print(render(res, "json"))
        else:
            print(f"id {res['id']}\nmac {res['mac']}\nip {res['ip']}")
            for ip6 in res["ips"][1:]:
                print(f"ip6 {ip6}")
    elif args.sub == "update":
        body = {}
        if args.sg or args.no_sg:
            body["security_groups"] = [_group_of(tenant, g, f"port {args.ref}") for g in args.sg or []]
        if args.port_security is not None:
            body["port_security"] = args.port_security
        qos = qos_cli.body(args)
        if qos is not None:
            body["qos"] = qos or None
        if not body:
            raise WeftError("nothing to update: give --sg TENANT/SG (repeatable), --no-sg, "
                            "--port-security, --no-port-security, QoS flags (--egress-rate ...) "
                            "or --no-qos")
        res = client.request("PATCH", f"/v1/ports/{seg(tenant, net, name)}", body)
        if args.output == "json":
            print(render(res, "json"))
        else:
            groups = ", ".join(f"{tenant}/{g}" for g in res["security_groups"]) or "none"
            print(f"port {tenant}/{net}/{name}: security groups {groups}; port security "
                  f"{'on' if res['port_security'] else 'off'}; qos {qos_cli.text(res.get('qos'))}")
    elif args.sub == "migrate":
        res = client.post(f"/v1/ports/{seg(tenant, net, name)}/migrate", {"to": args.to})
        if args.output == "json":
            print(render(res, "json"))
        else:
            m = res["migration"]
            print(f"port {res['ref']} migrating from {m['from']} to {m['to']}: {m['state']}")
    elif args.sub == "delete":
        client.delete(f"/v1/ports/{seg(tenant, net, name)}")
        print(f"port {tenant}/{net}/{name} deleted")
    else:
        view = client.get(f"/v1/ports/{seg(tenant, net, name)}")
        if args.output != "json":
            view = {**view, "qos": qos_cli.text(view.get("qos"))}
        print(render(view, args.output))
    return 0


def cmd_router(args, client) -> int:
    if args.sub == "list":
        if args.tenant:
            _ref(args.tenant, 1, "tenant")
        rows = client.get("/v1/routers", tenant=args.tenant)
        for r in rows:
            r["attached"] = [n["network"] for n in r["networks"]]
            r["route_count"] = len(r["routes"])
        print(render(rows, args.output, ["ref", "mac", "attached", "route_count"]))
        return 0
    tenant, name = _ref(args.ref, 2, "router")
    path = f"/v1/routers/{seg(tenant, name)}"
    if args.sub == "gateway":
        return cli_northsouth.cmd_gateway(args, client, tenant, name, seg)
    if args.sub == "create":
        res = client.post("/v1/routers", {"tenant": tenant, "name": name})
        print(render(res, "json") if args.output == "json" else
              f"router {tenant}/{name} created (mac {res['mac']})")
    elif args.sub == "delete":
        client.delete(path, cascade=1 if args.cascade else None)
        print(f"router {tenant}/{name} deleted")
    elif args.sub == "show":
        res = client.get(path)
        if args.output == "json":
            print(render(res, "json"))
        else:
            print(render({k: cli_northsouth.gateway_text(v) if k == "gateway" else v
                          for k, v in res.items() if k not in ("networks", "routes")}))
            print()
            print(render(res["networks"], columns=["network", "cidr", "gateway", "cidr6", "gateway6"]))
            if res["routes"]:
                print()
                print(render(res["routes"], columns=["cidr", "via"]))
    elif args.sub in ("attach", "detach"):
        net_tenant, net = _ref(args.network, 2, "network")
        if net_tenant != tenant:
            raise WeftError(f"router {tenant}/{name} cannot {args.sub} {net_tenant}/{net}: a router "
                            f"only joins networks of its own tenant ({tenant})")
        res = client.post(f"{path}/{args.sub}", {"network": f"{tenant}/{net}"})
        if args.output == "json":
            print(render(res, "json"))
        elif args.sub == "attach":
            print(f"{tenant}/{net} attached to {tenant}/{name} (gateway {res['gateway']})")
        else:
            print(f"{tenant}/{net} detached from {tenant}/{name}")
    elif args.route_cmd == "add":
        res = client.post(f"{path}/routes", {"cidr": args.cidr, "via": args.via})
        print(render(res, "json") if args.output == "json" else
              f"route {res['cidr']} via {res['via']} added to {tenant}/{name}")
    else:
        client.delete(f"{path}/routes", cidr=args.cidr)
        print(f"route {args.cidr} deleted from {tenant}/{name}")
    return 0


def _group_of(tenant: str, ref: str, user: str) -> str:
    """The name of security group TENANT/SG, which must be of `tenant` (that of `user`)."""
    owner, name = _ref(ref, 2, "security group")
    if owner != tenant:
        raise WeftError(f"{user} cannot use security group {ref}: only groups of its own tenant "
                        f"({tenant}) can be used")
    return name


def _rule_rows(rules: list[dict]) -> list[dict]:
    rows = []
    for r in rules:
        ports = (None if r["port_min"] is None else str(r["port_min"]) if r["port_min"] == r["port_max"]
                 else f"{r['port_min']}-{r['port_max']}")
        remote = r["remote_cidr"] if r["remote_sg"] is None else f"sg:{r['remote_sg']}"
        rows.append({**r, "ports": ports, "remote": remote})
    return rows


RULE_COLUMNS = ["id", "direction", "proto", "ports", "icmp_type", "remote", "ethertype"]


def cmd_sg(args, client) -> int:
    if args.sub == "suggest":
        from controller.decisions_cli import cmd_sg_suggest
        return cmd_sg_suggest(args, client)
    if args.sub == "what-if":
        from controller.whatif_cli import run as run_what_if
        return run_what_if(args, client)
    if args.sub == "list":
        if args.tenant:
            _ref(args.tenant, 1, "tenant")
        rows = client.get("/v1/security-groups", tenant=args.tenant)
        if args.output == "json":
            print(render(rows, "json"))
            return 0
        for g in rows:
            g["rule_count"], g["port_count"] = len(g["rules"]), len(g["ports"])
        print(render(rows, columns=["ref", "rule_count", "port_count", "id"]))
        return 0
    tenant, name = _ref(args.ref, 2, "security group")
    path = f"/v1/security-groups/{seg(tenant, name)}"
    if args.sub == "create":
        res = client.post("/v1/security-groups", {"tenant": tenant, "name": name})
        print(render(res, "json") if args.output == "json" else
              f"security group {tenant}/{name} created ({res['id']})")
    elif args.sub == "delete":
        client.delete(path)
        print(f"security group {tenant}/{name} deleted")
    elif args.sub == "show":
        res = client.get(path)
        if args.output == "json":
            print(render(res, "json"))
            return 0
        print(render({"ref": res["ref"], "id": res["id"], "ports": res["ports"]}))
        print()
        print(render(_rule_rows(res["rules"]), columns=RULE_COLUMNS))
    elif args.rule_cmd == "add":
        res = client.post(f"{path}/rules", rule_body(args, tenant, name))
        print(render(res, "json") if args.output == "json" else res["id"])
    else:
        client.delete(f"{path}/rules/{seg(args.rule_id)}")
        print(f"rule {args.rule_id} deleted from {tenant}/{name}")
    return 0


def rule_body(args, tenant: str, name: str) -> dict:
    """The API body of a rule of group TENANT/NAME from `sg rule add`'s options (also what
    `sg what-if --add-rule` takes)."""
    body = {"direction": args.direction, "proto": args.proto or "any",
            "ethertype": args.ethertype or "ipv4"}
    if args.port is not None:
        from topology.validate import port_range
        body["port_min"], body["port_max"] = port_range(args.port)
    if args.icmp_type is not None:
        body["icmp_type"] = args.icmp_type
    if args.remote_cidr is not None:
        body["remote_cidr"] = args.remote_cidr
    if args.remote_sg is not None:
        body["remote_sg"] = _group_of(tenant, args.remote_sg, f"a rule of {tenant}/{name}")
    return body


def cmd_host(args, client) -> int:
    from controller import hostops
    done = hostops.dispatch(args, client)
    if done is not None:
        return done
    if args.sub == "add":
        body = {"name": args.name, "tunnel_ip": args.tunnel_ip, "ovsdb": args.ovsdb,
                "mgmt_ip": args.mgmt_ip}
        if args.provider:
            body["providers"] = args.provider
        if args.insecure:
            body["insecure"] = True
        res = client.post("/v1/hosts", body)
        print(render(res, "json") if args.output == "json" else f"host {res['name']} registered")
    elif args.sub == "update":
        body = {k: v for k, v in (("tunnel_ip", args.tunnel_ip), ("ovsdb", args.ovsdb),
                                  ("mgmt_ip", args.mgmt_ip)) if v is not None}
        if args.no_mgmt_ip:
            body["mgmt_ip"] = None
        if args.provider:
            body["providers"] = args.provider
        if args.insecure:
            body["insecure"] = True
        res = client.request("PATCH", f"/v1/hosts/{seg(args.name)}", body=body)
        print(render(res, "json") if args.output == "json" else f"host {res['name']} updated")
    elif args.sub == "delete":
        client.delete(f"/v1/hosts/{seg(args.name)}")
        print(f"host {args.name} deleted")
    else:
        rows = client.get("/v1/hosts")
        print(render(rows, args.output, ["name", "tunnel_ip", "connected", "config", "ports_bound", "flows"]))
    return 0


def cmd_traffic(args, client) -> int:
    from collectors.cli import FLOW_COLUMNS, render_matrix

    if args.sub == "flows":
        rows = client.get("/v1/traffic/flows", since=args.since, tenant=args.tenant,
                          source=args.source)
        print(render_matrix(rows, args.output, FLOW_COLUMNS))
        return 0
    if args.sub in ("matrix", "top"):
        query = {"since": args.since, "by": args.by, "source": args.source, "tenant": args.tenant}
        if args.sub == "top":
            query["n"] = args.n
        rows = client.get(f"/v1/traffic/{args.sub}", **query)
        print(render_matrix(rows, args.output))
        return 0
    if args.sub == "drops":
        from controller.cli_trace import cmd_drops
        return cmd_drops(args, client)
    if args.sub == "status":
        st = client.get("/v1/traffic/status")
        rows = st["exporters"]
        if args.output == "json":
            print(render(st, "json"))
        else:
            cols = ["protocol", "exporter", "host", "datagrams", "records", "malformed",
                    "sequence_gaps", "templates"]
            print(render(rows, args.output, [c for c in cols if not rows or c in rows[0]] or None))
            if st.get("rejected") and args.output == "table":
                print("\ndropped: datagrams from addresses that are no known host's exporter")
                print(render(st["rejected"], "table", ["socket", "source", "datagrams"]))
        return 0
    changes = {k: v for k, v in (("sflow", args.sflow), ("sflow_sampling", args.sflow_sampling),
                                 ("sflow_polling", args.sflow_polling), ("netflow", args.netflow),
                                 ("netflow_active_timeout", args.netflow_active_timeout),
                                 ("ipfix", args.ipfix), ("ipfix_sampling", args.ipfix_sampling),
                                 ("drop_sample_pps", args.drop_sample_pps),
                                 ("drop_sample_burst", args.drop_sample_burst),
                                 ("retention", args.retention))
               if v is not None}
    changes = {k: (v == "on") if v in ("on", "off") else v for k, v in changes.items()}
    cfg = client.post("/v1/traffic/config", changes) if changes else client.get("/v1/traffic/config")
    print(render(cfg, "json" if args.output == "json" else args.output))
    return 0


def cmd_flows(args, client) -> int:
    rows = client.get(f"/v1/hosts/{seg(args.host)}/flows")
    if args.output == "json":
        print(render(rows, "json"))
        return 0
    for r in rows:
        print(f"table={r['table']:<3} prio={r['priority']:<4} n_packets={r['packets']:<6} "
              f"{r['match']} actions={r['actions']}  [{r['feature']}: {r['owner']}]")
    return 0


def cmd_token(args, client) -> int:
    if args.sub == "create":
        import secrets
        name = args.name or f"{args.tenant}-{secrets.token_hex(3)}"
        res = client.post("/v1/tokens", {"name": name, "tenant": args.tenant})
        if args.output == "json":
            print(render(res, "json"))
        else:
            print(f"token {res['name']} for tenant {res['tenant']} (shown once; give it as WEFT_TOKEN):")
            print(res["token"])
    elif args.sub == "delete":
        client.delete(f"/v1/tokens/{seg(args.name)}")
        print(f"token {args.name} deleted")
    else:
        print(render(client.get("/v1/tokens"), args.output, ["name", "tenant"]))
    return 0


def cmd_cluster(args, client) -> int:
    print(render(client.get("/v1/cluster"), args.output, ["name", "kind", "role", "pid", "address"]))
    return 0


def cmd_lab(args) -> int:
    if args.lab_cmd == "swarm":
        from lab import swarm_cli
        return swarm_cli.run(args, Client())
    from lab import datacentre, vm

    if args.lab_cmd == "up":
        start = time.monotonic()
        from controller.progress import Progress
        from lab import services
        with Progress("lab up", total=args.hosts, unit="hosts built", output=args.output) as progress:
            datacentre.up(hosts=args.hosts, tunnel=args.tunnel, on_ready=services.start_weftd,
                          underlay_mtu=args.underlay_mtu, ha=args.ha, progress=progress,
                          provider=args.provider)
        status = datacentre.status()
        status["seconds"] = round(time.monotonic() - start, 2)
        if args.output == "json":
            print(render(status, "json"))
        else:
            print(f"lab {status['lab']} is up: {len(status['hosts'])} hosts, "
                  f"{status['tunnel']} tunnels, underlay MTU {status['underlay_mtu']}, in {status['seconds']} s")
            print(render(status["hosts"], columns=["name", "underlay_ip", "mgmt_ip", "namespace"]))
            _print_dashboards(status)
        return 0
    if args.lab_cmd == "down":
        removed = datacentre.down()
        print(f"removed {len(removed)} objects" if removed else "the lab is not up; nothing to remove")
        return 0
    if args.lab_cmd == "status":
        status = datacentre.status()
        if args.output == "json":
            print(render(status, "json"))
            return 0
        print(f"lab {status['lab']}: {status['status']}")
        if status["hosts"]:
            print(render(status["hosts"], columns=["name", "underlay_ip", "mgmt_ip",
                                                   "ovsdb_server", "ovs_vswitchd"]))
        if status["vms"]:
            print(render(status["vms"], columns=["name", "host", "port", "mac", "ip"]))
        if status["services"]:
            print(render(status["services"], columns=["name", "pid", "running"]))
            _print_dashboards(status)
        return 0
    if args.lab_cmd == "vm":
        if args.vm_cmd == "create":
            return _vm_create(args)
        if args.vm_cmd == "delete":
            vm.delete(args.name)
            print(f"VM {args.name} deleted")
            return 0
        if args.vm_cmd == "move":
            moved = vm.move(args.name, args.host)
            note = "" if moved["activated"] else " (weftd did not confirm the switch-over)"
            print(f"VM {args.name} moved to {moved['host']} (guest switch {moved['switch_ms']} ms: "
                  f"{moved['switch_steps_ms']}){note}")
            return 0
    if args.lab_cmd == "host":
        from lab import barehost
        added = barehost.add(args.name)
        print(render(added, "json") if args.output == "json" else
              f"bare host {added['name']}: underlay {added['underlay_ip']}, management {added['mgmt_ip']}, "
              f"namespace {added['ns']} (not enrolled: weft host bootstrap, then weft host add)")
        return 0
    if args.lab_cmd == "controller":
        from lab import services
        getattr(services, f"controller_{args.action}")(args.replica)
        print(f"controller: {args.action} done")
        return 0
    if args.lab_cmd == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        cmd = vm.exec_argv(args.name, argv)
        sys.stdout.flush()
        os.execvp(cmd[0], cmd)
    raise WeftError(f"unknown lab command {args.lab_cmd!r}")


def _cmd_placement(args, client) -> int:
    from controller.decisions_cli import cmd_placement
    return cmd_placement(args, client)


def _vm_create(args) -> int:
    from lab import vm

    port = _port_for_vm(args)
    created = vm.create(args.name, args.host, mac=port["mac"], ip=port["ip"],
                        iface_id=port["id"], port_ref=args.port, gateway=port.get("gateway"),
                        dhcp=args.dhcp, ip6s=port.get("ip6s", ()), gateway6=port.get("gateway6"))
    if args.output == "json":
        print(render({"name": args.name, **created}, "json"))
    else:
        print(f"VM {args.name} on {created['host']}: mac {created['mac']} ip {created['ip']} "
              f"port {args.port}")
    return 0


def _port_for_vm(args) -> dict:
    """MAC, IP, gateway and iface-id for a lab VM: from the port in weftd, overridable by flags."""
    tenant, net, name = _ref(args.port, 3, "port")
    if args.mac and (args.ip or args.dhcp) and args.iface_id:
        return {"mac": args.mac, "ip": args.ip, "id": args.iface_id, "gateway": args.gateway,
                "ip6s": args.ip6 or ()}
    client = Client()
    port = client.get(f"/v1/ports/{seg(tenant, net, name)}")
    gateway, gateway6 = args.gateway, None
    network = client.get(f"/v1/networks/{seg(tenant, net)}")
    if network.get("router"):
        if gateway is None:
            gateway = port["gateway"]    # the router answers there, as DHCP would tell the VM
        if network.get("cidr6"):         # ... and on the IPv6 prefix's ::1 (static, no RAs)
            gateway6 = router_ip6(network["cidr6"])
    ip6s = args.ip6 or [f"{a}/{port['prefixlen6']}" for a in port.get("ips", []) if ":" in a]
    return {"mac": args.mac or port["mac"],
            "ip": args.ip or f"{port['ip']}/{port['prefixlen']}",
            "id": args.iface_id or port["id"], "gateway": gateway, "ip6s": ip6s,
            "gateway6": gateway6 if ip6s else None}


def _print_dashboards(status: dict) -> None:
    for svc in status["services"]:
        if svc.get("dashboard"):
            print(f"dashboard ({svc['name']}): {svc['dashboard']}  (API token: "
                  f"{os.path.join(status['run_dir'], 'api.token')})")


def _take_wait(argv: list[str]) -> tuple[list[str], bool]:
    """`--wait`/`--wait=hv` anywhere before a `--` (which starts a command run in the lab)."""
    end = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:end] if a not in ("--wait", "--wait=hv")]
    return head + argv[end:], len(head) != end


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, wait_anywhere = _take_wait(argv)
    parser = build_parser()
    from controller import completion
    completion.autocomplete(parser)          # answers the shell and exits, when it asked
    args = parser.parse_args(argv)
    wait = args.wait or ("hv" if wait_anywhere else None)
    try:
        if args.command == "lab":
            return cmd_lab(args)
        if args.command == "completion":
            from controller.completion import shell_code
            sys.stdout.write(shell_code(args.shell))
            return 0
        if args.command == "pki":
            from controller.hostops import cmd_pki
            return cmd_pki(args)
        if args.command == "collect":
            from collectors.cli import run as run_collector
            return run_collector(args)
        handler = {"tenant": cmd_tenant, "network": cmd_network, "port": cmd_port,
                   "host": cmd_host, "flows": cmd_flows, "router": cmd_router, "traffic": cmd_traffic,
                   "sg": cmd_sg, "cluster": cmd_cluster, "token": cmd_token,
                   "placement": _cmd_placement,
                   "trace": cmd_trace,
                   "fip": lambda a, c: cli_northsouth.cmd_fip(a, c, seg)}[args.command]
        if wait:          # on a terminal: the time spent waiting for the hypervisors
            from controller.progress import Progress
            with Progress("waiting until every affected hypervisor has it", unit=None,
                          output=getattr(args, "output", None)):
                return handler(args, Client(wait_timeout=args.wait_timeout))
        return handler(args, Client())
    except WeftError as exc:
        sys.stderr.write(f"weft: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
