"""The `weft` command line: lab commands run locally; network commands call weftd's northbound API."""
from __future__ import annotations

import argparse
import os
import sys
import time

from controller.output import render
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    lab = sub.add_parser("lab", help="the emulated data centre").add_subparsers(
        dest="lab_cmd", metavar="LAB_COMMAND", parser_class=Parser)
    lab.required = True
    p = lab.add_parser("up", help="create hv1..hvN, the underlay and the management network")
    p.add_argument("--hosts", type=int, default=3, help="number of hypervisors (default 3)")
    p.add_argument("--tunnel", choices=["vxlan", "geneve"], default="vxlan")
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
    p.add_argument("--gateway", help="default gateway inside the VM")
    p.add_argument("--iface-id", help="external_ids:iface-id (default: the port's id)")
    _out(p)
    p = vm.add_parser("delete", help="delete a VM")
    p.add_argument("name")
    p = vm.add_parser("move", help="move a VM's NIC to another host")
    p.add_argument("name")
    p.add_argument("--host", required=True)
    p = lab.add_parser("exec", help="run a command inside a VM (or a host)")
    p.add_argument("name")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    return parser


def cmd_lab(args) -> int:
    from lab import datacentre, vm

    if args.lab_cmd == "up":
        start = time.monotonic()
        datacentre.up(hosts=args.hosts, tunnel=args.tunnel)
        status = datacentre.status()
        status["seconds"] = round(time.monotonic() - start, 2)
        if args.output == "json":
            print(render(status, "json"))
        else:
            print(f"lab {status['lab']} is up: {len(status['hosts'])} hosts, "
                  f"{status['tunnel']} tunnels, in {status['seconds']} s")
            print(render(status["hosts"], columns=["name", "underlay_ip", "mgmt_ip", "namespace"]))
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
            print(f"VM {args.name} moved to {moved['host']}")
            return 0
    if args.lab_cmd == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        cmd = vm.exec_argv(args.name, argv)
        sys.stdout.flush()
        os.execvp(cmd[0], cmd)
    raise WeftError(f"unknown lab command {args.lab_cmd!r}")


def _vm_create(args) -> int:
    from lab import vm

    port = _port_for_vm(args)
    created = vm.create(args.name, args.host, mac=port["mac"], ip=port["ip"],
                        iface_id=port["id"], port_ref=args.port, gateway=port.get("gateway"))
    if args.output == "json":
        print(render({"name": args.name, **created}, "json"))
    else:
        print(f"VM {args.name} on {created['host']}: mac {created['mac']} ip {created['ip']} "
              f"port {args.port}")
    return 0


def _port_for_vm(args) -> dict:
    """MAC, IP and iface-id for a lab VM: from the command line (the port model comes later)."""
    if not args.mac or not args.ip:
        raise WeftError("give --mac and --ip for the VM's NIC")
    return {"mac": args.mac, "ip": args.ip, "id": args.iface_id or args.port,
            "gateway": args.gateway}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "lab":
            return cmd_lab(args)
        raise WeftError(f"unknown command {args.command!r}")
    except WeftError as exc:
        sys.stderr.write(f"weft: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
