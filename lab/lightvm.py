"""Light VMs for scale runs: a namespace per VM with one veth into its host's br-int, made in bulk.

A lab VM (`lab/vm.py`) costs a dozen processes and netlink round trips (sysctls, ethtool,
IPv6 settings, one ovs-vsctl); a thousand of them on two cores take many minutes. A light VM
keeps what a ping between VMs needs — its own network stack (a namespace, so addresses of
different tenants may overlap), its own MAC and IPv4 address on `eth0`, a veth whose other
end is plugged into its host's `br-int` with the port's iface-id as os-vif plugs one — and
is made in bulk: one `ip -batch` for every namespace, one per host for its veths, one per VM
for its address, and one ovs-vsctl transaction per host to plug all of its NICs. No DHCP, no
IPv6 address of its own, TX checksum offload left on (ICMP does not need it).

Light VMs are journalled in the lab's state (`vms`, with `light: true`) before anything is
made, so `weft lab down` removes them even after a crash; `weft lab exec NAME -- CMD` runs
in one, and `weft lab vm delete NAME` removes one.
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import time

import netaddr

from lab import netns
from lab.datacentre import load_up_state
from lab.ovs import HostSwitch
from lab.state import LabState, locked
from lab.vm import normalise_mac, tap_name, validate_name, vm_mtu
from topology.errors import Conflict, NotFound, WeftError

WORKERS = 4         # processes run at once (two cores; the hypervisors' own threads need them too)


def _batch(argv: list[str], lines: list[str]) -> None:
    """Run `ip [OPTIONS] -batch -` with `lines` on its input; one line per failure in the error."""
    proc = subprocess.run([*argv, "-batch", "-"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise WeftError(f"{' '.join(argv)} -batch failed: {(proc.stderr or proc.stdout).strip()}", 500)


def _each(fn, items) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for fut in [pool.submit(fn, item) for item in items]:
            fut.result()


def create(specs: list[dict]) -> dict[str, dict]:
    """Make light VMs from `specs` ({name, host, mac, ip: ADDR/PREFIX}), not plugged yet
    (`plug` does that once their ports exist). On failure the VMs made so far stay journalled,
    for `delete_all` or `weft lab down`."""
    p, state = load_up_state()
    checked = []
    for spec in specs:
        validate_name(spec["name"])
        ip = netaddr.IPNetwork(spec["ip"])
        checked.append({**spec, "mac": normalise_mac(spec["mac"]), "ip": f"{ip.ip}/{ip.prefixlen}"})
    with locked(p):
        state = LabState.load(p)
        mtu = vm_mtu(state.tunnel, state.underlay_mtu)
        vms = {}
        for spec in checked:
            if spec["name"] in state.vms or spec["name"] in vms:
                raise Conflict(f"VM {spec['name']!r} already exists")
            if spec["host"] not in state.hosts:
                raise NotFound(f"unknown host {spec['host']!r}")
            ns = p.ns(f"vm-{spec['name']}")
            netns.refuse_existing(ns)
            vms[spec["name"]] = {"ns": ns, "host": spec["host"], "mac": spec["mac"], "ip": spec["ip"],
                                 "iface_id": None, "port": spec.get("port"), "gateway": None,
                                 "tap": tap_name(spec["name"]), "mtu": mtu, "dhcp": False,
                                 "ip6s": [], "gateway6": None, "light": True}
        state.vms.update(vms)            # journalled before anything is made
        state.save(p)
    _batch(["ip"], [f"netns add {vm['ns']}" for vm in vms.values()])
    by_host: dict[str, list[tuple[str, dict]]] = {}
    for name, vm in vms.items():
        by_host.setdefault(vm["host"], []).append((name, vm))

    def wire(host: str) -> None:
        hns = state.hosts[host]["ns"]
        lines = []
        for _name, vm in by_host[host]:
            lines.append(f"link add {vm['tap']} mtu {mtu} type veth peer name eth0 netns {vm['ns']} "
                         f"address {vm['mac']} mtu {mtu}")
            lines.append(f"link set {vm['tap']} up")
        _batch(["ip", "-n", hns], lines)
        # the hypervisor's end is a switch port: no IPv6 stack of its own answering the VM
        netns.run(["ip", "netns", "exec", hns, "sysctl", "-q", "-w",
                   *(f"net.ipv6.conf.{vm['tap']}.disable_ipv6=1" for _n, vm in by_host[host])])

    def address(vm: dict) -> None:
        _batch(["ip", "-n", vm["ns"]], ["link set lo up", "link set eth0 up",
                                        f"addr add {vm['ip']} dev eth0"])

    _each(wire, list(by_host))
    _each(address, list(vms.values()))
    return vms


def plug(iface_ids: dict[str, str]) -> dict[str, dict[str, int]]:
    """Plug light VMs' NICs into their hosts' br-int: {VM name: port uuid (the iface-id)}; one
    ovs-vsctl transaction per host. Returns {host: {iface-id: ofport}} as Open vSwitch numbered them."""
    p, state = load_up_state()
    by_host: dict[str, list[tuple[str, dict]]] = {}
    for name, iface_id in iface_ids.items():
        if name not in state.vms:
            raise NotFound(f"no VM named {name!r}")
        vm = state.vms[name]
        by_host.setdefault(vm["host"], []).append((name, {**vm, "iface_id": iface_id}))
    bound: dict[str, dict[str, int]] = {}

    def plug_host(host: str) -> None:
        info = state.hosts[host]
        args = []
        for name, vm in by_host[host]:
            args += ["--", "--may-exist", "add-port", "br-int", vm["tap"], "--", "set", "Interface", vm["tap"],
                     f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}",
                     f"external_ids:vm-id={name}", "external_ids:iface-status=active"]
        switch = HostSwitch(info["ns"], info["dir"])
        switch.vsctl(*args, timeout=60)
        taps = {vm["tap"]: vm["iface_id"] for _n, vm in by_host[host]}
        deadline = time.monotonic() + 30
        while True:         # ovs-vsctl waited for ovs-vswitchd; an ofport is normally there at once
            out = switch.vsctl("--format=csv", "--data=bare", "--no-headings", "--columns=name,ofport",
                               "list", "Interface", *taps)
            rows = dict(line.split(",") for line in out.splitlines())
            if all(rows.get(t, "").lstrip("-").isdigit() and int(rows[t]) > 0 for t in taps):
                break
            if time.monotonic() > deadline:
                raise WeftError(f"Open vSwitch on {host} gave no ofport to {sorted(taps)} in 30 s", 500)
            time.sleep(0.1)
        bound[host] = {taps[t]: int(rows[t]) for t in taps}

    _each(plug_host, list(by_host))
    with locked(p):
        state = LabState.load(p)
        for name, iface_id in iface_ids.items():
            state.vms[name]["iface_id"] = iface_id
        state.save(p)
    return bound


def delete_all() -> list[str]:
    """Remove every light VM of the lab (their host ends go with their namespaces)."""
    p, state = load_up_state()
    with locked(p):
        state = LabState.load(p)
        names = [n for n, vm in state.vms.items() if vm.get("light")]
        by_host: dict[str, list[str]] = {}
        for n in names:
            by_host.setdefault(state.vms[n]["host"], []).append(state.vms[n]["tap"])
        for host, taps in by_host.items():
            info = state.hosts.get(host)
            if info is not None:
                args = []
                for tap in taps:
                    args += ["--", "--if-exists", "del-port", "br-int", tap]
                try:
                    HostSwitch(info["ns"], info["dir"]).vsctl(*args, timeout=60)
                except WeftError:
                    pass
        for n in names:
            netns.remove(state.vms[n]["ns"])
            del state.vms[n]
        state.save(p)
    return names
