"""`weft lab host add hvK`: a hypervisor as a fresh machine has it, cabled into the lab but not enrolled.

The host gets its namespace, its underlay and management cabling (`datacentre.wire_host`), and
Open vSwitch started the way Debian's ovs-ctl starts it: ovsdb-server serves the remotes and the
SSL files its own database names (`--remote=db:Open_vSwitch,Open_vSwitch,manager_options`,
`--private-key=db:Open_vSwitch,SSL,private_key`, ...), so `ovs-vsctl set-manager`/`set-ssl`
configure it. Nothing else: no certificate, no OVSDB listener, no br-int, not known to weftd.
Enrolling it is then the operator's path: `weft host bootstrap hvK ... --apply` on it and
`weft host add` (tests/integration/test_host_bootstrap.py). The underlay bridge br-phy is the
lab's stand-in for the machine's NIC and is made here, as the tunnel neighbours are.
"""
from __future__ import annotations

import os
import re

from lab import netns
from lab.datacentre import (MAX_HOSTS, MGMT_PREFIX, UNDERLAY_PREFIX, _static_tunnel_neighbours,
                            load_up_state, underlay_mac, wire_host)
from lab.ovs import OVSDB_TLS_PORT, HostSwitch, vswitch_schema
from lab.state import LabState, locked
from topology.errors import WeftError


def _debian_style_db(switch: HostSwitch) -> None:
    os.makedirs(switch.dir, exist_ok=True)
    db = os.path.join(switch.dir, "conf.db")
    netns.run(["ovsdb-tool", "create", db, vswitch_schema()])
    netns.run(["ip", "netns", "exec", switch.ns, "ovsdb-server", db,
               f"--remote=punix:{switch.db_sock}", "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
               "--private-key=db:Open_vSwitch,SSL,private_key",
               "--certificate=db:Open_vSwitch,SSL,certificate",
               "--bootstrap-ca-cert=db:Open_vSwitch,SSL,ca_cert",
               f"--pidfile={switch.dir}/ovsdb.pid", "--detach", f"--log-file={switch.dir}/ovsdb.log",
               f"--unixctl={switch.dir}/ovsdb.ctl"])


def add(name: str) -> dict:
    """Add bare hypervisor `name` (hvK) to the running lab; returns its addresses."""
    found = re.fullmatch(r"hv([1-9][0-9]*)", name or "")
    if not found or int(found.group(1)) > MAX_HOSTS:
        raise WeftError(f"invalid lab host name {name!r}: hvK with K from 1 to {MAX_HOSTS}")
    k = int(found.group(1))
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        if name in state.hosts:
            raise WeftError(f"lab {p.name!r} already has a host {name}", 409)
        ns = p.ns(name)
        netns.refuse_existing(ns)
        info = {"ns": ns, "dir": p.host_dir(name), "underlay_ip": f"{UNDERLAY_PREFIX}{10 + k}",
                "mgmt_ip": f"{MGMT_PREFIX}{10 + k}", "bare": True}
        info["ovsdb"] = f"ssl:{info['mgmt_ip']}:{OVSDB_TLS_PORT}"
        state.namespaces.append(ns)          # journaled before it exists: `lab down` removes it
        state.hosts[name] = info
        state.save(p)
        netns.create(ns)
        mac = underlay_mac(k)
        wire_host(p, state, name, info, mac)
        switch = HostSwitch(ns, info["dir"])
        _debian_style_db(switch)
        switch.vsctl("--no-wait", "init", "--",
                     "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                     f"other-config:hwaddr={mac}", "fail_mode=standalone", "--",
                     "set", "interface", "br-phy", f"mtu_request={state.underlay_mtu}", "--",
                     "add-port", "br-phy", "eth0")
        switch.start_vswitchd()
        netns.wait_link(ns, "br-phy")
        netns.set_link(ns, "br-phy", state="up")
        netns.add_address(ns, "br-phy", info["underlay_ip"], 24)
        everyone = {h: (i["underlay_ip"], underlay_mac(int(h[2:]))) for h, i in state.hosts.items()}
        _static_tunnel_neighbours(name, info, everyone)
        for other, other_info in state.hosts.items():
            if other != name:
                _static_tunnel_neighbours(other, other_info, {name: everyone[name]})
        state.save(p)
    return {"name": name, **{k: v for k, v in info.items() if k != "bare"}}
