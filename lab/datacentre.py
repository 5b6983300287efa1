"""`weft lab up|down|status`: the emulated data centre's hypervisors, underlay fabric and management network.

Layout (all inside namespaces the lab makes; nothing touches the machine's own network):

    <lab>-fabric   Linux bridge br-ul: the underlay. hvK's eth0 = 198.18.0.(10+K)/24, held by
                   the hypervisor's br-phy (userspace tunnelling, see LAB-NOTES).
    <lab>-mgmt     Linux bridge br-mgmt at 198.19.0.1/24: the management network where the
                   controller (OpenFlow) and the collectors (sFlow/NetFlow/IPFIX) listen;
                   hvK's mgmt0 = 198.19.0.(10+K)/24.
    <lab>-hvK      one hypervisor: its own ovsdb-server + ovs-vswitchd, bridges br-phy and br-int,
                   and the provider bridge br-ex (provider `phys`) owning eth1, its leg outside.
    <lab>-outside  the world beyond the edge: Linux bridge br-out holding 203.0.113.1/24 (the
                   edge router's stand-in) with every hypervisor's eth1 on it (`weft lab exec
                   outside -- CMD`); weft patches br-ex to br-int (ovsdb/hostconfig.py).

TLS everywhere (`lab.pki`): the lab's own CA in <run-dir>/pki, a certificate per hypervisor
(CN = its name) and one for weftd. Each ovs-vswitchd talks OpenFlow to weftd over ssl: with its
host's certificate, given on its command line (not the SSL table: `HostSwitch.set_vswitchd_pki`);
each ovsdb-server serves weftd on ssl:198.19.0.(10+K):6640 with the same certificate (its unix
socket stays for local tools).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import threading
import time
import warnings

from flows.pipeline import TUNNEL_MTU, UNDERLAY_MTU, check_underlay_mtu
# imported here, in the main thread: the `ovs` library imports eventlet when it is installed,
# and that import from a worker thread leaves the thread pool unable to join
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from ovs.unixctl.client import UnixctlClient
from lab import netns
from lab.ovs import OVSDB_TLS_PORT, HostSwitch, require_tools
from lab.pki import Pki, lab_pki_dir
from lab.state import LabPaths, LabState, locked, paths, pid_alive, pid_from_file, pidfiles, stop_pid
from ovsdb.hostconfig import LOCAL_MTU
from topology.errors import WeftError

MAX_HOSTS = 200                  # addresses 198.18.0.(10+K) and 198.19.0.(10+K) stay below .255
UNDERLAY_PREFIX = "198.18.0."
MGMT_PREFIX = "198.19.0."
MGMT_IP = MGMT_PREFIX + "1"
OUTSIDE_IP, OUTSIDE_PREFIXLEN = "203.0.113.1", 24      # documentation range, never leaves the lab
PROVIDERS = {"phys": "br-ex"}                          # what every lab hypervisor offers


def host_names(n: int) -> list[str]:
    return [f"hv{k}" for k in range(1, n + 1)]


def validate_up(hosts: int, tunnel: str, underlay_mtu: int = UNDERLAY_MTU) -> None:
    if not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
        raise WeftError(f"--hosts must be between 1 and {MAX_HOSTS} (got {hosts}): each emulated "
                        f"hypervisor runs its own Open vSwitch on this one machine")
    if tunnel not in TUNNEL_MTU:
        raise WeftError(f"--tunnel must be vxlan or geneve (got {tunnel!r})")
    try:
        check_underlay_mtu(underlay_mtu)
    except ValueError as exc:
        raise WeftError(f"--underlay-mtu: {exc}") from None


def require_root() -> None:
    if os.geteuid() != 0:
        raise WeftError("the lab needs root (network namespaces and Open vSwitch); run it as root")


def up(hosts: int = 3, tunnel: str = "vxlan", on_ready=None, underlay_mtu: int = UNDERLAY_MTU,
       ha: bool = False, progress=None, provider: bool = True) -> LabState:
    """Bring up hv1..hvN; on any failure remove everything made so far and raise.
    `progress` (controller.progress.Progress) hears of each host built, then of hosts in sync.
    provider=False: no provider bridge br-ex, no eth1 and no outside namespace (no north-south):
    each hypervisor has br-phy and br-int only, the layout of the OVN peer's lab (bench/)."""
    validate_up(hosts, tunnel, underlay_mtu)
    require_root()
    require_tools()
    p = paths()
    with locked(p):
        existing = LabState.load(p)
        if existing is not None or os.path.exists(p.dir):
            if existing is not None and existing.status == "up":
                raise WeftError(f"lab {p.name!r} is already up with {len(existing.hosts)} hosts; "
                                f"run `weft lab down` first")
            raise WeftError(f"lab {p.name!r} is partly up from an earlier run that did not finish; "
                            f"run `weft lab down` to clean it up")
        state = LabState(tunnel=tunnel, underlay_mtu=underlay_mtu, ha=ha, provider=provider)
        state.save(p)
        # a controller that can come up alongside the hypervisors (`on_ready.during_build`) is
        # started once the management network exists and told about each host as its Open
        # vSwitch comes up; a plain `on_ready(p, state)` runs once everything is built
        during = getattr(on_ready, "during_build", None)
        ctl = during(p, state) if during is not None else None
        try:
            _build(p, state, hosts, ctl, progress)
            if ctl is not None:
                ctl.finish(progress)
            elif on_ready is not None:
                on_ready(p, state)
            state.status = "up"
            state.save(p)
        except BaseException as exc:
            if ctl is not None:
                ctl.abort()
            _teardown(p, state)
            if isinstance(exc, WeftError):
                raise WeftError(f"lab up failed and was rolled back: {exc}", 500) from exc
            raise
    return state


def underlay_mac(k: int) -> str:
    """hvK's underlay MAC (its eth0, and br-phy's through other-config:hwaddr), fixed in advance
    so every host can learn every other host's before they exist: 02:00:c6:12:00:(10+K)."""
    return f"02:00:c6:12:00:{10 + k:02x}"


def _build(p: LabPaths, state: LabState, hosts: int, ctl=None, progress=None) -> None:
    journal = threading.Lock()

    def make_ns(name: str) -> None:
        """Journal a namespace before creating it; a foreign one of that name is never adopted."""
        netns.refuse_existing(name)
        with journal:
            state.namespaces.append(name)
            state.save(p)
        netns.create(name)

    fabric, mgmt, outside = p.ns("fabric"), p.ns("mgmt"), p.ns("outside")
    make_ns(fabric)
    netns.bridge(fabric, "br-ul")
    if state.provider:
        make_ns(outside)
        netns.bridge(outside, "br-out")
        netns.add_address(outside, "br-out", OUTSIDE_IP, OUTSIDE_PREFIXLEN)
        # the userspace datapath (and its NAT) needs full checksums from the kernel's side
        netns.run(["ip", "netns", "exec", outside, "ethtool", "-K", "br-out", "tx", "off"], check=False)
    make_ns(mgmt)
    netns.bridge(mgmt, "br-mgmt")
    netns.add_address(mgmt, "br-mgmt", MGMT_IP, 24)
    pki = Pki.create(lab_pki_dir(p.dir))
    pki.issue("weftd")
    if ctl is not None:
        with journal:
            ctl.begin()        # journals its service before it starts it; runs alongside the build
    # the underlay's ARP, fixed up front: every host's tunnel neighbour cache knows every other
    # host, so the first packet through a tunnel is not lost to neighbour resolution
    neighbours = {f"hv{k}": (f"{UNDERLAY_PREFIX}{10 + k}", underlay_mac(k)) for k in range(1, hosts + 1)}

    def build_host(k: int) -> None:
        name = f"hv{k}"
        ns = p.ns(name)
        info = {"ns": ns, "dir": p.host_dir(name), "underlay_ip": neighbours[name][0],
                "mgmt_ip": f"{MGMT_PREFIX}{10 + k}", "providers": PROVIDERS if state.provider else {}}
        info["ovsdb"] = f"ssl:{info['mgmt_ip']}:{OVSDB_TLS_PORT}"     # what weftd is given
        with journal:
            state.hosts[name] = info
        make_ns(ns)
        wire_host(p, state, name, info, neighbours[name][1])
        key, cert = pki.issue(name)
        switch = HostSwitch(ns, info["dir"])
        switch.start_db(init=False, tls=(key, cert, pki.ca_cert, info["mgmt_ip"]))
        eth0_mac = neighbours[name][1]          # set on eth0 when it was made
        # configure the database before ovs-vswitchd starts: it comes up with everything in place
        provider_bridge = ("add-br", "br-ex", "--", "set", "bridge", "br-ex", "datapath_type=netdev",
                           "fail_mode=standalone", "--", "add-port", "br-ex", "eth1", "--") \
            if state.provider else ()
        switch.vsctl("--no-wait", "init", "--",
                     "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                     f"other-config:hwaddr={eth0_mac}", "fail_mode=standalone", "--",
                     "set", "interface", "br-phy", f"mtu_request={state.underlay_mtu}", "--",
                     "add-port", "br-phy", "eth0", "--", *provider_bridge,
                     "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                     "fail_mode=secure", "protocols=OpenFlow13,OpenFlow15", "--",
                     "set", "interface", "br-int", f"mtu_request={LOCAL_MTU}", "--",
                     "set", "Open_vSwitch", ".", f"external_ids:system-id={name}",
                     f"external_ids:hostname={name}", f"external_ids:weft-tunnel-ip={info['underlay_ip']}")
        # its TLS files on its command line, not in the SSL table (see HostSwitch.set_vswitchd_pki)
        switch.set_vswitchd_pki(key, cert, pki.ca_cert)
        # returns once ovs-vswitchd has detached, i.e. after its first configuration (br-int made)
        switch.start_vswitchd()
        with journal:
            info["ovs_up_at"] = time.time()      # the benchmark's origin: this hypervisor's OVS is up
        if ctl is not None:
            ctl.host_up(name, info)              # the controller configures it from now on
        netns.wait_link(ns, "br-phy")
        netns.set_link(ns, "br-phy", state="up")
        netns.add_address(ns, "br-phy", info["underlay_ip"], 24)
        _static_tunnel_neighbours(name, info, neighbours)
        _fault(f"crash-after-{name}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(hosts, 8)) as pool:
        futures = [pool.submit(build_host, k) for k in range(1, hosts + 1)]
        for fut in concurrent.futures.as_completed(futures):
            fut.result()
            if progress is not None:
                progress.step()


def wire_host(p: LabPaths, state: LabState, name: str, info: dict, eth0_mac: str) -> None:
    """A hypervisor's cabling: eth0 on the underlay, eth1 on the provider network (the outside),
    mgmt0 on the management network (with its address), and the sysctls userspace tunnelling needs (see LAB-NOTES)."""
    ns, fabric, mgmt, outside = info["ns"], p.ns("fabric"), p.ns("mgmt"), p.ns("outside")
    netns.veth(ns, "eth0", fabric, f"ul-{name}", mac_a=eth0_mac, mtu=state.underlay_mtu)
    netns.enslave(fabric, f"ul-{name}", "br-ul")
    # eth1: the provider network, to the "outside" namespace (the data centre's edge)
    if state.provider:
        netns.veth(ns, "eth1", outside, f"ex-{name}")
        netns.enslave(outside, f"ex-{name}", "br-out")
        for where, ifname in ((ns, "eth1"), (outside, f"ex-{name}")):
            netns.run(["ip", "netns", "exec", where, "ethtool", "-K", ifname, "tx", "off"], check=False)
    netns.veth(ns, "mgmt0", mgmt, f"mg-{name}")
    netns.enslave(mgmt, f"mg-{name}", "br-mgmt")
    netns.add_address(ns, "mgmt0", info["mgmt_ip"], 24)
    # no IPv6 in the hypervisor's own stack (its underlay and management are IPv4; the VMs' IPv6
    # is theirs), as in the peers' lab (/work/shared/bench/lab.sh): ovs-vswitchd re-reads the
    # whole routing table at every link change, a NIC's unplug and plug included, and the
    # link-local, local and multicast routes of lo, eth0, mgmt0 and br-phy were 14 of its 23
    # routes (~0.5 ms of ovs-vswitchd's main thread per unplug/plug, schedstat)
    netns.sysctl(ns, {"net.ipv4.conf.eth0.arp_ignore": "8",
                      "net.ipv4.conf.all.rp_filter": "1",
                      "net.ipv4.conf.eth0.rp_filter": "1",
                      "net.ipv6.conf.all.disable_ipv6": "1",
                      "net.ipv6.conf.default.disable_ipv6": "1"})


def _static_tunnel_neighbours(name: str, info: dict, neighbours: dict[str, tuple[str, str]]) -> None:
    """Every other host's underlay MAC in this host's tunnel neighbour cache, over one unixctl
    connection (N-1 commands, not N-1 ovs-appctl processes: 100 hosts would be 9,900 of them)."""
    ctl = os.path.join(info["dir"], "vs.ctl")
    error, client = UnixctlClient.create(ctl)
    if error:
        raise WeftError(f"cannot reach ovs-vswitchd of {name} at {ctl}: {os.strerror(error)}", 500)
    try:
        for other, (ip, mac) in neighbours.items():
            if other != name:
                error, failure, _result = client.transact("tnl/neigh/set", ["br-phy", ip, mac])
                if error or failure:
                    raise WeftError(f"tnl/neigh/set on {name} failed: "
                                    f"{failure or os.strerror(error)}".strip(), 500)
    finally:
        client.close()


def _fault(point: str) -> None:
    """Fault injection for the clean-up tests: WEFT_LAB_FAULT=crash-after-hv2 kills `up` right there."""
    if os.environ.get("WEFT_LAB_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def down() -> list[str]:
    """Stop every process the lab started and delete every namespace it made; returns what was removed."""
    require_root()
    p = paths()
    with locked(p):
        state = LabState.load(p)
        if state is None and not os.path.exists(p.dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p.lock_file)
            return []
        return _teardown(p, state or LabState())


def _teardown(p: LabPaths, state: LabState) -> list[str]:
    removed = []
    marker = p.dir.rstrip("/") + "/"
    # processes first (by their pid files, and only if their command line names our run dir);
    # the services (weftd) before the rest, so one still starting cannot start more behind us
    services = [svc["pidfile"] for svc in state.services.values() if svc.get("pidfile")]
    for batch in (lambda: services, lambda: pidfiles(p.dir)):
        for pidfile in batch():
            pid = pid_from_file(pidfile)
            if pid is not None and stop_pid(pid, marker):
                removed.append(f"process {pid} ({os.path.relpath(pidfile, p.dir)})")
    for ns in [vm["ns"] for vm in state.vms.values()] + list(reversed(state.namespaces)):
        # whatever still runs inside a namespace the lab made was started there through it
        # (`weft lab exec VM -- ping ... &`, a benchmark's pinger): deleting the namespace
        # would leave it running, so it is stopped first, by pid
        for pid in netns.pids(ns):
            if stop_pid(pid, marker=None):
                removed.append(f"process {pid} (in {ns})")
        if netns.remove(ns):
            removed.append(f"namespace {ns}")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(p.dir)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p.lock_file)      # held by us right now; nothing of the lab is left after this
    return removed


def status() -> dict:
    p = paths()
    state = LabState.load(p)
    if state is None:
        return {"lab": p.name, "status": "down", "hosts": [], "vms": [], "services": []}
    hosts = []
    for name, info in sorted(state.hosts.items(), key=lambda kv: int(kv[0][2:])):
        procs = {proc: pid_alive(pid) if (pid := pid_from_file(os.path.join(info["dir"], f"{proc}.pid"))) else False
                 for proc in ("ovsdb", "vs")}
        hosts.append({"name": name, "namespace": info["ns"], "underlay_ip": info["underlay_ip"],
                      "mgmt_ip": info["mgmt_ip"], "ovsdb": info["ovsdb"],
                      "ovsdb_server": "running" if procs["ovsdb"] else "stopped",
                      "ovs_vswitchd": "running" if procs["vs"] else "stopped"})
    vms = [{"name": n, "host": v["host"], "port": v.get("port"), "mac": v["mac"], "ip": v["ip"],
            "namespace": v["ns"]} for n, v in sorted(state.vms.items())]
    services = []
    for name, svc in sorted(state.services.items()):
        pid = pid_from_file(svc["pidfile"])
        services.append({"name": name, "pid": pid, "running": bool(pid and pid_alive(pid)),
                         **{k: v for k, v in svc.items() if k != "pidfile"}})
        if svc.get("ui_port"):
            from lab.dashboard import url
            services[-1]["dashboard"] = url(svc)
    return {"lab": p.name, "status": state.status, "tunnel": state.tunnel, "ha": state.ha,
            "provider": state.provider,
            "underlay_mtu": state.underlay_mtu, "run_dir": p.dir,
            "mgmt_ip": MGMT_IP, "hosts": hosts, "vms": vms, "services": services}


def load_up_state() -> tuple[LabPaths, LabState]:
    p = paths()
    state = LabState.load(p)
    if state is None or state.status != "up":
        raise WeftError(f"lab {p.name!r} is not up; run `weft lab up` first")
    return p, state
