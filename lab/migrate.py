"""A lab VM's live migration: a second NIC on the destination, a quick switch inside the VM, RARP, then the source unplugged.

What a hypervisor pair does in a real live migration, in the lab's terms:

1. the platform tells weftd first (`POST /v1/ports/T/N/P/migrate {to}`, what
   `weft port migrate` does), so the destination is programmed ahead;
2. the destination NIC is plugged before the source one goes away: a new veth whose VM end
   (`mig0`, the VM's MAC, down) sits in the VM's namespace and whose other end is plugged
   into the destination's br-int with the port's iface-id; the lab waits (as Nova waits for
   "vif plugged") until weftd says the destination is ready (its flows committed);
3. the VM "stops on the source and resumes on the destination": inside the VM's namespace,
   in one thread already switched into it (no process start-up in the window), mig0 gets
   eth0's addresses while still down, then eth0 goes down, mig0 comes up and at once sends
   the RARP that QEMU sends after a migration; after that it takes over eth0's neighbour
   entries, default route and name;
4. once weftd has switched the port (or after a few RARPs), the source NIC is unplugged.

The VM keeps its MAC, addresses, routes and neighbour cache; only the few milliseconds of
step 3 (the guest's pause) and weftd's activation are lost time.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
import time

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab import netns
from lab.ovs import HostSwitch
from topology.errors import WeftError

CLONE_NEWNET = 0x40000000
NEW_NIC = "mig0"
OLD_NIC = "mig-old"
READY_TIMEOUT = 10.0
ACTIVE_TIMEOUT = 3.0
RARP_EVERY = 0.2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def rarp_frame(mac: str) -> bytes:
    """QEMU's announcement after a migration: RARP request 'reverse' for its own MAC."""
    hw = bytes.fromhex(mac.replace(":", ""))
    return (b"\xff" * 6 + hw + b"\x80\x35" + b"\x00\x01\x08\x00\x06\x04\x00\x03"
            + hw + b"\x00" * 4 + hw + b"\x00" * 4 + b"\x00" * 18)


class InNamespace:
    """A worker thread living in one network namespace (setns is per thread); runs callables there."""

    def __init__(self, ns: str):
        self.ns = ns
        self._todo: list = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"netns-{ns}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise WeftError(f"cannot enter namespace {ns}: {self._error}", 500)

    def _run(self) -> None:
        try:
            fd = os.open(os.path.join(netns.NETNS_DIR, self.ns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            finally:
                os.close(fd)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._todo)
                fn, box, done = self._todo.pop(0)
            if fn is None:
                return
            try:
                box.append(fn())
            except BaseException as exc:
                box.append(exc)
            done.set()

    def run(self, fn, timeout: float = 30.0):
        box, done = [], threading.Event()
        with self._cond:
            self._todo.append((fn, box, done))
            self._cond.notify()
        if not done.wait(timeout):
            raise WeftError(f"namespace {self.ns}: operation timed out", 500)
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def close(self) -> None:
        with self._cond:
            self._todo.append((None, None, None))
            self._cond.notify()
        self._thread.join(5)


def _default_routes(ipr, routes, index: int) -> None:
    """The guest's default routes ((gateway, address family) pairs) again, on NIC `index`."""
    for gateway, family in routes:
        ipr.route("replace", dst="::/0" if family == socket.AF_INET6 else "0.0.0.0/0",
                  gateway=gateway, oif=index, family=family)


class GuestSwitch:
    """The VM's side of the switch-over, prepared ahead so the window holds only netlink calls."""

    def __init__(self, ns: str, mac: str):
        self.mac = mac
        self.worker = InNamespace(ns)
        self.worker.run(self._prepare)

    def _prepare(self) -> None:
        self.ipr = IPRoute()
        self.old = self.ipr.link_lookup(ifname="eth0")[0]
        self.new = self.ipr.link_lookup(ifname=NEW_NIC)[0]
        self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.raw.bind((NEW_NIC, 0))       # bound by ifindex: the rename below does not matter
        self.frame = rarp_frame(self.mac)

    steps: list = []

    def switch(self) -> float:
        """Move the guest to the new NIC and announce it; returns how long eth0 was down (s)."""
        return self.worker.run(self._switch)

    def _switch(self) -> float:
        ipr, old, new = self.ipr, self.old, self.new
        addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                 for a in ipr.get_addr(index=old, family=socket.AF_INET)]
        addrs += [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])      # IPv6 but the link-local,
                  for a in ipr.get_addr(index=old, family=socket.AF_INET6)   # which the MAC gives
                  if a["scope"] == 0]
        routes = [(r.get_attr("RTA_GATEWAY"), family) for family in (socket.AF_INET, socket.AF_INET6)
                  for r in ipr.get_routes(family=family, oif=old)
                  if r.get_attr("RTA_GATEWAY") and r["dst_len"] == 0]
        neigh = [(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")) for n in ipr.get_neighbours(
            ifindex=old, family=socket.AF_INET) if n.get_attr("NDA_LLADDR")]
        for address, prefixlen in addrs:       # on the NIC still down: nothing uses them yet
            ipr.addr("add", index=new, address=address, prefixlen=prefixlen)
        t = [time.monotonic()]
        ipr.link("set", index=old, state="down")                 # the guest stops on the source
        t.append(time.monotonic())
        ipr.link("set", index=new, state="up")                   # ... and resumes on the destination
        t.append(time.monotonic())
        self.raw.send(self.frame)                                 # QEMU's RARP
        t.append(time.monotonic())
        self.steps = [round((b - a) * 1000, 2) for a, b in zip(t, t[1:])]
        for dst, lladdr in neigh:                                 # the guest's ARP cache survives
            ipr.neigh("replace", dst=dst, lladdr=lladdr, ifindex=new, state="stale")
        _default_routes(ipr, routes, new)
        # the VM's NIC is eth0 again (a kernel that cannot rename a NIC that is up gets a
        # second, sub-millisecond pause for it)
        ipr.link("set", index=old, ifname=OLD_NIC)
        try:
            ipr.link("set", index=new, ifname="eth0")
        except NetlinkError as exc:
            if exc.code != errno.EBUSY:
                raise
            ipr.link("set", index=new, state="down")
            ipr.link("set", index=new, ifname="eth0")
            ipr.link("set", index=new, state="up")
            _default_routes(ipr, routes, new)
        return t[-1] - t[0]

    def announce(self) -> None:
        self.worker.run(lambda: self.raw.send(self.frame))

    def drop_old(self) -> None:
        """Delete the old NIC (its veth peer, the source host's tap, goes with it)."""
        def drop():
            found = self.ipr.link_lookup(ifname=OLD_NIC)
            if found:
                self.ipr.link("del", index=found[0])
        self.worker.run(drop)

    def close(self) -> None:
        def close():
            self.raw.close()
            self.ipr.close()
        try:
            self.worker.run(close)
        finally:
            self.worker.close()


def plug_destination(host: dict, vm: dict, name: str, tap_mtu: int | None = None) -> None:
    """The destination NIC: mig0 (the VM's MAC, down) in the VM, its peer on the host's br-int
    (with `tap_mtu`, the network's, when the guest's MTU came from DHCP)."""
    ns, tap = vm["ns"], vm["tap"]
    netns.veth(ns, NEW_NIC, host["ns"], tap, mtu=vm["mtu"])
    netns.run(["ip", "netns", "exec", host["ns"], "sysctl", "-q", "-w",
               f"net.ipv6.conf.{tap}.disable_ipv6=1"])      # a switch port, as in vm._plug
    if tap_mtu:
        netns.set_link(host["ns"], tap, mtu=tap_mtu)
    netns.set_link(ns, NEW_NIC, state="down")
    netns.set_link(ns, NEW_NIC, address=vm["mac"])
    netns.run(["ip", "netns", "exec", ns, "ethtool", "-K", NEW_NIC, "tx", "off"])
    HostSwitch(host["ns"], host["dir"]).vsctl(
        "--may-exist", "add-port", "br-int", tap, "--", "set", "Interface", tap,
        f"external_ids:iface-id={vm['iface_id']}", f"external_ids:attached-mac={vm['mac']}",
        f"external_ids:vm-id={name}", "external_ids:iface-status=active")


def unplug_destination(host: dict, vm: dict) -> None:
    """Undo plug_destination (a migration that could not go ahead)."""
    try:
        HostSwitch(host["ns"], host["dir"]).vsctl("--if-exists", "del-port", "br-int", vm["tap"])
    except WeftError:
        pass
    netns.run(["ip", "-n", host["ns"], "link", "del", vm["tap"]], check=False)


class Controller:
    """What the lab asks weftd about the port during the move (None: no port / no weftd)."""

    def __init__(self, port_ref: str | None):
        self.path = None
        if port_ref:
            from controller.client import Client, seg
            self.client = Client(timeout=5)
            self.path = f"/v1/ports/{seg(*port_ref.split('/'))}"

    def migrate(self, host: str) -> None:
        """Tell weftd first. A VM whose port weftd does not know (created with --iface-id) moves
        all the same, without weftd programming the destination ahead."""
        if self.path:
            try:
                self.client.post(f"{self.path}/migrate", {"to": host})
            except WeftError as exc:
                if exc.status != 404 or not str(exc).startswith("no port"):
                    raise
                self.path = None

    def state(self) -> str | None:
        if not self.path:
            return None
        m = self.client.get(self.path).get("migration")
        return m["state"] if m else None

    def wait(self, states: tuple[str, ...], timeout: float, every: float = 0.005, tick=None) -> bool:
        if not self.path:
            return True
        deadline, last_tick = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            if self.state() in states:
                return True
            if tick is not None and time.monotonic() - last_tick >= RARP_EVERY:
                tick()
                last_tick = time.monotonic()
            time.sleep(every)
        return False
