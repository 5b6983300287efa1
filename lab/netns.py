"""Network namespaces, veth pairs, addresses and sysctls for the lab, built on pyroute2."""
from __future__ import annotations

import os
import subprocess
import time
import zlib

from pyroute2 import IPRoute, NetNS, config as pyroute2_config, netns

from topology.errors import WeftError

# pyroute2 opens a namespace's netlink socket through a forked helper and gives it 2 s to answer;
# on 2 busy cores building a 100-host lab (load 100+) the helper takes longer and `lab up` failed
# with "child process is dead"; a slow answer is not an error here
pyroute2_config.default_communicate_timeout = 60

NETNS_DIR = "/run/netns"


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def refuse_existing(name: str) -> None:
    if exists(name):
        raise WeftError(f"network namespace {name!r} already exists and is not this lab's "
                        f"(remove it with `ip netns del {name}` if it is stale)")


def create(name: str) -> None:
    """Create namespace `name` with its loopback up."""
    refuse_existing(name)
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def pids(name: str) -> list[int]:
    """Processes running in namespace `name` (what `ip netns pids` lists)."""
    try:
        inode = os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return found


def remove(name: str) -> bool:
    """Delete namespace `name`; True if it existed."""
    if not exists(name):
        return False
    netns.remove(name)
    return True


def short_name(prefix: str, key: str) -> str:
    """A stable interface name of at most 15 characters for `key`."""
    return f"{prefix}{zlib.crc32(key.encode()):08x}"[:15]


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int | None = None,
         mac_a: str | None = None) -> None:
    """Create a veth pair with end `name_a` in `ns_a` (MAC `mac_a` if given) and `name_b` in
    `ns_b`, both up."""
    tmp_a = short_name("wa", f"{ns_a}/{name_a}/{os.getpid()}")
    tmp_b = short_name("wb", f"{ns_b}/{name_b}/{os.getpid()}")
    with IPRoute() as ipr:
        extra = {"address": mac_a} if mac_a else {}
        ipr.link("add", ifname=tmp_a, kind="veth", peer={"ifname": tmp_b, "net_ns_fd": ns_b}, **extra)
        ipr.link("set", index=ipr.link_lookup(ifname=tmp_a)[0], net_ns_fd=ns_a)
    for ns_name, tmp, final in ((ns_a, tmp_a, name_a), (ns_b, tmp_b, name_b)):
        with NetNS(ns_name) as ns:
            idx = ns.link_lookup(ifname=tmp)[0]
            kwargs = {"ifname": final, "state": "up"}
            if mtu:
                kwargs["mtu"] = mtu
            ns.link("set", index=idx, **kwargs)


def set_link(ns_name: str, ifname: str, **kwargs) -> None:
    with NetNS(ns_name) as ns:
        ns.link("set", index=_index(ns, ns_name, ifname), **kwargs)


def add_address(ns_name: str, ifname: str, address: str, prefixlen: int) -> None:
    with NetNS(ns_name) as ns:
        ns.addr("add", index=_index(ns, ns_name, ifname), address=address, prefixlen=prefixlen)


def add_default_route(ns_name: str, gateway: str) -> None:
    with NetNS(ns_name) as ns:
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def link_mac(ns_name: str, ifname: str) -> str:
    with NetNS(ns_name) as ns:
        link = ns.get_links(_index(ns, ns_name, ifname))[0]
        return link.get_attr("IFLA_ADDRESS")


def wait_link(ns_name: str, ifname: str, timeout: float = 10.0) -> None:
    """Wait until interface `ifname` exists in `ns_name` (Open vSwitch creates ports asynchronously)."""
    deadline = time.monotonic() + timeout
    with NetNS(ns_name) as ns:
        while not ns.link_lookup(ifname=ifname):
            if time.monotonic() > deadline:
                raise WeftError(f"interface {ifname} did not appear in {ns_name} within {timeout:.0f} s")
            time.sleep(0.01)


def bridge(ns_name: str, ifname: str) -> None:
    """Create a Linux bridge `ifname` in `ns_name`, up."""
    with NetNS(ns_name) as ns:
        ns.link("add", ifname=ifname, kind="bridge")
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")


def enslave(ns_name: str, ifname: str, bridge_name: str) -> None:
    with NetNS(ns_name) as ns:
        ns.link("set", index=_index(ns, ns_name, ifname),
                master=_index(ns, ns_name, bridge_name))


def sysctl(ns_name: str, settings: dict[str, str]) -> None:
    """Set sysctls inside a namespace (one `sysctl` process for all of them)."""
    args = ["ip", "netns", "exec", ns_name, "sysctl", "-q", "-w"]
    args += [f"{k}={v}" for k, v in settings.items()]
    run(args)


def run(args: list[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise WeftError(f"{' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}", status=500)
    return proc


def _index(ns, ns_name: str, ifname: str) -> int:
    found = ns.link_lookup(ifname=ifname)
    if not found:
        raise WeftError(f"no interface {ifname} in namespace {ns_name}", status=500)
    return found[0]
