"""Enrolling and retiring hypervisors: `weft host bootstrap`, `weft host remove`, `weft pki init|issue`.

`weft host bootstrap hvK --tunnel-ip A [--mgmt-ip M]` writes the shell script that makes a
hypervisor with a stock Open vSwitch ready for weftd (Debian's ovsdb-server serves the remotes
and SSL files its database names, `--remote=db:Open_vSwitch,Open_vSwitch,manager_options`):

- a key and a certificate naming hvK, signed by weft's CA (`--pki DIR`: ca.pem and ca.key,
  made once with `weft pki init`), written with the CA certificate under `--dir`, the key mode
  0600 in a 0700 directory;
- the Open_vSwitch SSL table pointing at them (ovs-vswitchd presents that certificate to
  weftd's OpenFlow listener, ovsdb-server to weftd's southbound);
- the OVSDB listener for weftd, TLS only (`pssl:6640[:M]`, peers need a certificate from the CA);
- the host's identity (`external_ids:system-id`, `hostname`, `weft-tunnel-ip`) and br-int in
  fail mode secure (nothing forwards until weftd has programmed it); weftd sets the rest
  (controller targets, OpenFlow versions, the tunnel port, the exporters) once it is added.

Printed, the script is meant to be piped to the hypervisor (`... | ssh hvK sh`): it carries the
host's private key, which is never written on the machine that made it. `--apply` runs it here,
on the hypervisor itself (a machine that holds the CA, e.g. the lab). `weft host add` on the
controller side completes the enrolment; the script ends with that command.

`weft host remove hvK` drains the host first: it refuses while ports are bound there (the
platform moves its VMs away, `weft port migrate`), unless `--force`; then weftd forgets it.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
import sys
import time

from topology.errors import WeftError

DEFAULT_PKI = "/etc/weft/pki"
DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_DIR = "/etc/openvswitch/weft"
OVSDB_PORT = 6640
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def add_parsers(host, pki_sub, out) -> None:
    """The `host bootstrap|remove` and `pki init|issue` subcommands (host, pki_sub: subparsers)."""
    p = host.add_parser("bootstrap", help="print (or --apply: run here) what a hypervisor needs for "
                                          "weftd: its certificate, the OVSDB TLS listener, br-int")
    p.add_argument("name")
    p.add_argument("--tunnel-ip", required=True, help="the host's tunnel (underlay) address")
    p.add_argument("--mgmt-ip", help="the address weftd reaches its OVSDB on (default: the tunnel IP; "
                                     "the listener binds there)")
    p.add_argument("--pki", default=os.environ.get("WEFT_PKI", DEFAULT_PKI), metavar="DIR",
                   help=f"weft's CA: ca.pem and ca.key (default $WEFT_PKI or {DEFAULT_PKI})")
    p.add_argument("--db", default=DEFAULT_DB, metavar="REMOTE",
                   help=f"the hypervisor's Open vSwitch database (default {DEFAULT_DB})")
    p.add_argument("--dir", default=DEFAULT_DIR, help=f"where the host's key and certificates go "
                                                      f"(default {DEFAULT_DIR})")
    p.add_argument("--ovsdb-port", type=int, default=OVSDB_PORT, help="the OVSDB TLS port (default 6640)")
    p.add_argument("--datapath-type", choices=["system", "netdev"],
                   help="br-int's datapath (netdev: the userspace datapath, no kernel module)")
    p.add_argument("--apply", action="store_true", help="run the script on this machine")
    p = host.add_parser("remove", help="drain a hypervisor (refused while ports are bound there) and forget it")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="forget it even with ports bound there")
    out(p)
    p = pki_sub.add_parser("init", help="create weft's CA (ca.pem, ca.key) and weftd's certificate")
    p.add_argument("--dir", default=os.environ.get("WEFT_PKI", DEFAULT_PKI))
    p = pki_sub.add_parser("issue", help="a key and certificate naming NAME, signed by weft's CA")
    p.add_argument("name")
    p.add_argument("--dir", default=os.environ.get("WEFT_PKI", DEFAULT_PKI))


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise WeftError(f"invalid host name {name!r}: letters, digits, '.', '_', '-' (at most 63)")
    return name


def _check_ip(value: str, flag: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise WeftError(f"invalid {flag} {value!r}: expected an IP address") from None


def _pki(directory: str):
    from lab.pki import Pki
    pki = Pki(directory)
    for path in (pki.ca_cert, pki.ca_key):
        if not os.access(path, os.R_OK):
            raise WeftError(f"no readable {path}: weft's CA lives there (`weft pki init --dir "
                            f"{directory}` makes one; or give --pki DIR)")
    return pki


def _heredoc(path: str, data: bytes, mode: str) -> list[str]:
    text = data.decode()
    if "WEFT_EOF" in text:          # PEM never holds it; a here-document must not end early
        raise WeftError(f"{path}: unexpected content")
    return [f"(umask 077; cat > {shlex.quote(path)} <<'WEFT_EOF'", text.rstrip("\n"), "WEFT_EOF", ")",
            f"chmod {mode} {shlex.quote(path)}"]


def bootstrap_script(args) -> tuple[str, str]:
    """(the hypervisor's script, the `weft host add` command for the controller side)."""
    name = _check_name(args.name)
    tunnel_ip = _check_ip(args.tunnel_ip, "--tunnel-ip")
    mgmt_ip = _check_ip(args.mgmt_ip, "--mgmt-ip") if args.mgmt_ip else None
    if not 1 <= args.ovsdb_port <= 65535:
        raise WeftError(f"invalid --ovsdb-port {args.ovsdb_port}: 1-65535")
    pki = _pki(args.pki)
    key_pem, cert_pem = pki.issue_pem(name)
    with open(pki.ca_cert, "rb") as f:
        ca_pem = f.read()
    d = args.dir
    key, cert, ca = (os.path.join(d, f) for f in (f"{name}.key", f"{name}.pem", "ca.pem"))
    listen = f"pssl:{args.ovsdb_port}" + (f":{mgmt_ip}" if mgmt_ip else "")
    reach = mgmt_ip or tunnel_ip
    vsctl = ["ovs-vsctl", f"--db={args.db}", "--timeout=20"]
    bridge = ["set", "bridge", "br-int", "fail_mode=secure"]
    if args.datapath_type:
        bridge.append(f"datapath_type={args.datapath_type}")
    settings = [*vsctl, "--", "set-ssl", key, cert, ca,
                "--", "set-manager", listen,
                "--", "set", "Open_vSwitch", ".", f"external_ids:system-id={name}",
                f"external_ids:hostname={name}", f"external_ids:weft-tunnel-ip={tunnel_ip}",
                "--", "--may-exist", "add-br", "br-int", "--", *bridge]
    add = ["weft", "host", "add", name, "--tunnel-ip", tunnel_ip,
           "--ovsdb", f"ssl:{reach}:{args.ovsdb_port}"] + (["--mgmt-ip", mgmt_ip] if mgmt_ip else [])
    lines = [
        "#!/bin/sh",
        f"# weft: enrol hypervisor {name} (tunnel {tunnel_ip}); run as root on {name}.",
        "# It carries the host's private key: pipe it (| ssh HOST sh), do not keep it.",
        "set -eu",
        f"command -v ovs-vsctl >/dev/null || {{ echo 'weft: Open vSwitch is not installed "
        f"(apt-get install openvswitch-switch)' >&2; exit 1; }}",
        f"install -d -m 0700 {shlex.quote(d)}",
        *_heredoc(key, key_pem, "600"),
        *_heredoc(cert, cert_pem, "644"),
        *_heredoc(ca, ca_pem, "644"),
        "# TLS identity, the OVSDB listener for weftd (TLS only), the host's identity, br-int",
        shlex.join(settings),
        f"echo 'weft: {name} is ready; on the controller: {shlex.join(add)}'",
    ]
    return "\n".join(lines) + "\n", shlex.join(add)


def cmd_bootstrap(args) -> int:
    script, add = bootstrap_script(args)
    if not args.apply:
        sys.stdout.write(script)
        return 0
    proc = subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True)
    if proc.returncode != 0:
        raise WeftError(f"bootstrap of {args.name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    print(f"host {args.name} bootstrapped: OVSDB on ssl (port {args.ovsdb_port}), certificate from "
          f"{args.pki}; on the controller: {add}")
    return 0


def cmd_remove(args, client) -> int:
    from controller.client import seg
    from controller.output import render

    name = _check_name(args.name)
    hosts = {h["name"]: h for h in client.get("/v1/hosts")}
    if name not in hosts:
        raise WeftError(f"no host named {name!r}", 404)
    # a port whose NIC left the host stays parked there (ofport 0) until it shows up elsewhere:
    # only ports with a NIC on the host hold it back
    bound = sorted(p["ref"] for p in client.get("/v1/ports")
                   if p.get("host") == name and p.get("ofport") != 0)
    if bound and not args.force:
        shown = ", ".join(bound[:5]) + (f" and {len(bound) - 5} more" if len(bound) > 5 else "")
        raise WeftError(f"host {name} still has {len(bound)} port(s) bound: {shown}; move their VMs "
                        f"away (`weft port migrate PORT --to HOST`) or delete them, or --force", 409)
    client.delete(f"/v1/hosts/{seg(name)}")
    deadline = time.monotonic() + 10
    while name in {h["name"] for h in client.get("/v1/hosts")}:        # this replica's view too
        if time.monotonic() > deadline:
            raise WeftError(f"host {name} was deleted but weftd still lists it after 10 s", 504)
        time.sleep(0.05)
    res = {"name": name, "removed": True, "ports_bound": bound}
    if args.output == "json":
        print(render(res, "json"))
    else:
        print(f"host {name} removed{f' ({len(bound)} port(s) were bound there)' if bound else ''}; on "
              f"{name}: ovs-vsctl del-controller br-int -- del-manager -- del-ssl")
    return 0


def cmd_pki(args) -> int:
    from lab.pki import Pki
    if args.sub == "init":
        try:
            pki = Pki.create(args.dir, ca_name="weft CA")
        except FileExistsError:
            raise WeftError(f"{args.dir} already holds a CA (ca.key): keep it, or choose another --dir") from None
        key, cert = pki.issue("weftd")
        print(f"CA {pki.ca_cert}; weftd's key {key} and certificate {cert} (set ssl-key, ssl-cert, ssl-ca)")
        return 0
    pki = _pki(args.dir)
    key, cert = pki.issue(_check_name(args.name))
    print(f"{args.name}: key {key}, certificate {cert}")
    return 0


def dispatch(args, client) -> int | None:
    """Run `host bootstrap|remove`; None for the other host subcommands."""
    if args.sub == "bootstrap":
        return cmd_bootstrap(args)
    if args.sub == "remove":
        return cmd_remove(args, client)
    return None

