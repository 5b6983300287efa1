"""Lab VMs: a namespace whose NIC is plugged into a hypervisor's br-int the way libvirt/OpenStack plug a VM."""
from __future__ import annotations

import re

import netaddr

from lab import netns
from flows.pipeline import vm_mtu
from lab.datacentre import load_up_state
from lab.ovs import HostSwitch
from lab.state import LabPaths, LabState, locked
from topology.errors import NotFound, WeftError, Conflict

VM_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def validate_name(name: str) -> None:
    if not VM_NAME_RE.match(name or ""):
        raise WeftError(f"invalid VM name {name!r}: use 1-31 lower-case letters, digits and '-', "
                        f"starting with a letter")


def normalise_mac(mac: str) -> str:
    try:
        value = netaddr.EUI(mac)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise WeftError(f"invalid MAC address {mac!r}: expected e.g. fa:16:3e:00:00:01") from None
    if value.words[0] & 1:
        raise WeftError(f"invalid MAC address {mac!r}: it is a multicast address")
    value.dialect = netaddr.mac_unix_expanded
    return str(value)


def _parse_net(ip: str, version: int, default_len: int, what: str, example: str) -> netaddr.IPNetwork:
    try:
        net = netaddr.IPNetwork(ip if "/" in ip else f"{ip}/{default_len}")
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise WeftError(f"invalid {what} {ip!r}: expected e.g. {example}") from None
    if net.version != version:
        raise WeftError(f"invalid {what} {ip!r}: expected e.g. {example}")
    return net


def parse_ip(ip: str) -> netaddr.IPNetwork:
    return _parse_net(ip, 4, 24, "IP address", "10.0.0.5/24 (lab VMs take IPv4 addresses here)")


def tap_name(vm: str) -> str:
    return netns.short_name("tap", vm)


def parse_ip6(ip: str) -> netaddr.IPNetwork:
    return _parse_net(ip, 6, 64, "IPv6 address", "fd00:1::5/64")


def create(name: str, host: str, mac: str, ip: str | None, iface_id: str,
           port_ref: str | None = None, gateway: str | None = None,
           mtu: int | None = None, dhcp: bool = False, ip6s=(), gateway6: str | None = None) -> dict:
    """Create VM `name` on `host`; on failure nothing is left behind.

    With dhcp the NIC starts unconfigured (MTU 1500) and busybox udhcpc inside the VM asks
    for its address, prefix, gateway and MTU, as on a real cloud. IPv6 addresses (`ip6s`,
    ADDR/PREFIX) are always static, as is the link-local the kernel derives from the MAC, and
    so is the IPv6 default route via `gateway6` (no router advertisements)."""
    validate_name(name)
    mac = normalise_mac(mac)
    addr = parse_ip(ip) if ip and not dhcp else None
    addrs6 = [str(parse_ip6(a)) for a in ip6s or ()]
    if gateway:
        try:
            gateway = str(netaddr.IPAddress(gateway, 4))
        except (netaddr.AddrFormatError, ValueError):
            raise WeftError(f"invalid gateway {gateway!r}: expected an IPv4 address") from None
    if gateway6:
        try:
            gateway6 = str(netaddr.IPAddress(gateway6, 6))
        except (netaddr.AddrFormatError, ValueError):
            raise WeftError(f"invalid IPv6 gateway {gateway6!r}: expected an IPv6 address") from None
    p, state = load_up_state()
    with locked(p):
        state = LabState.load(p)
        if name in state.vms:
            raise Conflict(f"VM {name!r} already exists (on {state.vms[name]['host']}); "
                           f"delete it first or choose another name")
        if host not in state.hosts:
            raise NotFound(f"unknown host {host!r}: this lab has {_host_list(state)}")
        ns = p.ns(f"vm-{name}")
        netns.refuse_existing(ns)
        vm = {"ns": ns, "host": host, "mac": mac, "ip": str(addr) if addr else None,
              "iface_id": iface_id, "port": port_ref, "gateway": None if dhcp else gateway,
              "tap": tap_name(name), "mtu": mtu or (1500 if dhcp else vm_mtu(state.tunnel, state.underlay_mtu)),
              "dhcp": dhcp, "ip6s": addrs6, "gateway6": gateway6 if addrs6 else None}
        state.vms[name] = vm
        state.save(p)
        try:
            netns.create(ns)
            _plug(p, state, name, vm)
            if dhcp:
                vm.update(_dhcp_client(ns))
                state.save(p)
        except BaseException:
            _unplug(p, state, vm)
            netns.remove(ns)
            del state.vms[name]
            state.save(p)
            raise
    return vm


def _plug(p: LabPaths, state: LabState, name: str, vm: dict) -> None:
    """Wire the VM's eth0 to its host's br-int and configure it."""
    host = state.hosts[vm["host"]]
    ns, tap, mtu = vm["ns"], vm["tap"], vm["mtu"]
    _ipv6_settings(ns)
    netns.veth(ns, "eth0", host["ns"], tap, mtu=mtu)
    # the hypervisor's end is a switch port, not a host interface: no IPv6 stack of its own
    # answering what VMs send (as os-vif does for the devices it plugs)
    netns.run(["ip", "netns", "exec", host["ns"], "sysctl", "-q", "-w",
               f"net.ipv6.conf.{tap}.disable_ipv6=1"])
    if vm.get("dhcp"):
        # the guest starts at 1500 and takes its MTU from DHCP; its host end is set to the
        # network's, as a hypervisor sets a tap's, so frames up to what DHCP gives fit
        netns.set_link(host["ns"], tap, mtu=vm_mtu(state.tunnel, state.underlay_mtu))
    netns.set_link(ns, "eth0", state="down")
    netns.set_link(ns, "eth0", address=vm["mac"], state="up")
    netns.run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"])
    if vm["ip"] and not vm.get("dhcp"):
        addr = netaddr.IPNetwork(vm["ip"])
        netns.add_address(ns, "eth0", str(addr.ip), addr.prefixlen)
    for addr6 in vm.get("ip6s") or ():
        netns.run(["ip", "-n", ns, "-6", "addr", "add", addr6, "dev", "eth0", "nodad"])
    if vm.get("gateway") and not vm.get("dhcp"):
        netns.add_default_route(ns, vm["gateway"])
    if vm.get("gateway6"):
        netns.run(["ip", "-n", ns, "-6", "route", "add", "default", "via", vm["gateway6"], "dev", "eth0"])
    switch = HostSwitch(host["ns"], host["dir"])
    switch.vsctl("--may-exist", "add-port", "br-int", tap, "--",
                 "set", "Interface", tap,
                 f"external_ids:iface-id={vm['iface_id']}",
                 f"external_ids:attached-mac={vm['mac']}",
                 f"external_ids:vm-id={name}",
                 "external_ids:iface-status=active")


def _ipv6_settings(ns: str) -> None:
    """IPv6 on in the VM, without duplicate address detection (weft keeps addresses unique, and
    DAD would hold a new NIC's addresses back a second) and without router advertisements."""
    netns.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0",
               "net.ipv6.conf.default.disable_ipv6=0", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.default.accept_ra=0"])


def _dhcp_client(ns: str, timeout: int = 6) -> dict:
    """Run busybox udhcpc in the VM until it has a lease; the lease as the VM sees it."""
    import json
    import os
    script = os.path.join(os.path.dirname(__file__), "udhcpc.sh")
    proc = netns.run(["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
                      "-t", str(timeout), "-T", "1", "-s", script, "-O", "mtu"],
                     check=False, timeout=timeout + 10)
    if proc.returncode != 0:
        raise WeftError(f"the VM got no DHCP lease within {timeout} s "
                        f"(is DHCP on for its network, and is its MAC the port's?)", 502)
    addrs = json.loads(netns.run(["ip", "-n", ns, "-j", "addr", "show", "eth0"]).stdout)[0]
    inet = [a for a in addrs.get("addr_info", []) if a.get("family") == "inet"]
    routes = json.loads(netns.run(["ip", "-n", ns, "-j", "route", "show", "default"]).stdout)
    return {"ip": f"{inet[0]['local']}/{inet[0]['prefixlen']}" if inet else None,
            "gateway": routes[0]["gateway"] if routes else None, "mtu": addrs.get("mtu")}


def _unplug(p: LabPaths, state: LabState, vm: dict) -> None:
    host = state.hosts.get(vm["host"])
    if host is None:
        return
    try:
        HostSwitch(host["ns"], host["dir"]).vsctl("--if-exists", "del-port", "br-int", vm["tap"])
    except WeftError:
        pass
    if netns.exists(host["ns"]):
        netns.run(["ip", "-n", host["ns"], "link", "del", vm["tap"]], check=False)


def delete(name: str) -> None:
    p, state = load_up_state()
    with locked(p):
        state = LabState.load(p)
        vm = _get(state, name)
        _unplug(p, state, vm)
        netns.remove(vm["ns"])
        del state.vms[name]
        state.save(p)


def move(name: str, host: str) -> dict:
    """Live-migrate the VM to `host` (lab/migrate.py): weftd is told first, the destination NIC
    is plugged before the source one goes, the VM switches over and sends a RARP, then the
    source NIC is unplugged. It keeps its MAC and addresses. Bad input changes nothing."""
    from lab import migrate

    p, state = load_up_state()
    with locked(p):
        state = LabState.load(p)
        vm = _get(state, name)
        if host not in state.hosts:
            raise NotFound(f"unknown host {host!r}: this lab has {_host_list(state)}")
        if vm["host"] == host:
            raise WeftError(f"VM {name!r} is already on {host}")
        dest = state.hosts[host]
        ctl = migrate.Controller(vm.get("port"))
        ctl.migrate(host)                     # weftd refuses bad requests before anything changed
        guest = None
        try:
            migrate.plug_destination(dest, vm, name, tap_mtu=vm_mtu(state.tunnel, state.underlay_mtu)
                                     if vm.get("dhcp") else None)
            if not ctl.wait(("ready",), migrate.READY_TIMEOUT):
                raise WeftError(f"weftd did not program {host} for {vm.get('port')} within "
                                f"{migrate.READY_TIMEOUT:.0f} s; the VM stays on {vm['host']}", 504)
            guest = migrate.GuestSwitch(vm["ns"], vm["mac"])
        except BaseException:
            if guest is not None:
                guest.close()
            migrate.unplug_destination(dest, vm)
            raise
        source_name = vm["host"]
        try:
            vm["switch_ms"] = round(guest.switch() * 1000, 2)
            steps = guest.steps
            vm["host"] = host
            state.save(p)
            # weftd switches the port on the RARP; a lost one is sent again, as QEMU repeats it
            activated = ctl.wait(("active", "done"), migrate.ACTIVE_TIMEOUT, tick=guest.announce)
            _unplug(p, state, {**vm, "host": source_name})
            guest.drop_old()
        finally:
            guest.close()
        state.save(p)
    return {**vm, "activated": activated, "switch_steps_ms": steps}


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """The command line that runs `argv` inside VM (or host) `name`."""
    if not argv:
        raise WeftError("no command given: use `weft lab exec VM -- CMD [ARGS...]`")
    p, state = load_up_state()
    if name in state.vms:
        ns = state.vms[name]["ns"]
    elif name in state.hosts:
        ns = state.hosts[name]["ns"]
    elif name == "outside" and p.ns("outside") in state.namespaces:
        ns = p.ns("outside")        # the world beyond the edge (203.0.113.1)
    elif name == "outside" and not state.provider:
        raise NotFound(f"lab {p.name!r} has no outside network: it was brought up with "
                       f"--no-provider (no provider bridge, no north-south)")
    else:
        raise NotFound(f"no VM or host named {name!r} in lab {p.name!r}")
    return ["ip", "netns", "exec", ns, *argv]


def _get(state: LabState, name: str) -> dict:
    if name not in state.vms:
        known = ", ".join(sorted(state.vms)) or "none"
        raise NotFound(f"no VM named {name!r} (VMs: {known})")
    return state.vms[name]


def _host_list(state: LabState) -> str:
    names = sorted(state.hosts, key=lambda h: int(h[2:]))
    return f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]
