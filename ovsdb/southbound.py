"""Southbound OVSDB: configure each host's br-int and tunnel port, and learn VM bindings from its Interface table.

Configuration uses ovs-vsctl (idempotent, changes only what differs); watching uses one
`ovs` IDL per host, all driven by a single thread and one poller, so that the number of
hosts costs sockets, not threads. A NIC is bound when an Interface has
`external_ids:iface-id=<port uuid>`; until ovs-vswitchd gives it an ofport it is reported as
PENDING (0), which lets the controller install everything that does not need the ofport
ahead of it (ofport -1, a failed interface, is not bound).
"""
from __future__ import annotations

import logging
import subprocess
import threading
import warnings
import zlib

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from flows.compiler import PENDING
from flows.pipeline import TUNNEL_OFPORT
from topology.errors import WeftError

LOG = logging.getLogger(__name__)
BRIDGE = "br-int"
TUNNEL_PORT = "weft-tun"
VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def datapath_id(host: str) -> int:
    """A stable 64-bit datapath id for a host's br-int (so the controller knows who connects)."""
    return 0x7765 << 48 | zlib.crc32(host.encode()) << 8 | 0x01


def vsctl(remote: str, *args: str, timeout: int = 10) -> str:
    proc = subprocess.run(["ovs-vsctl", f"--db={remote}", f"--timeout={timeout}", *args],
                          capture_output=True, text=True, timeout=timeout + 5)
    if proc.returncode != 0:
        raise WeftError(f"ovs-vsctl on {remote} failed: {proc.stderr.strip()}", 502)
    return proc.stdout.strip()


def configure_host(host: str, remote: str, tunnel_ip: str, controllers: list[str],
                   tunnel: str = "vxlan", datapath_type: str | None = None) -> None:
    """Ensure br-int (secure, OpenFlow 1.4, our controllers) and one flow-based tunnel port."""
    dpid = f"{datapath_id(host):016x}"
    bridge_settings = ["fail_mode=secure", "protocols=OpenFlow13,OpenFlow14",
                       f"other-config:datapath-id={dpid}", "other-config:disable-in-band=true"]
    if datapath_type:
        bridge_settings.append(f"datapath_type={datapath_type}")
    args = ["--may-exist", "add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, *bridge_settings,
            "--", "--may-exist", "add-port", BRIDGE, TUNNEL_PORT,
            "--", "set", "Interface", TUNNEL_PORT, f"type={tunnel}", "options:remote_ip=flow",
            "options:key=flow", f"options:local_ip={tunnel_ip}", f"ofport_request={TUNNEL_OFPORT}"]
    try:
        current = vsctl(remote, "get-controller", BRIDGE).split()
    except WeftError:
        current = []          # no br-int yet: created below
    if sorted(current) != sorted(controllers):
        args += ["--", "set", "Bridge", BRIDGE, "controller=[]"]
        for i, target in enumerate(controllers):
            args += ["--", f"--id=@c{i}", "create", "Controller", f'target="{target}"',
                     "max_backoff=1000", "inactivity_probe=5000"]
        if controllers:
            args += ["--", "set", "Bridge", BRIDGE,
                     "controller=[" + ",".join(f"@c{i}" for i in range(len(controllers))) + "]"]
    vsctl(remote, *args)


class BindingWatcher:
    """Watches the Interface table of many hosts and reports {port uuid: ofport} per host."""

    def __init__(self, on_bindings):
        self.on_bindings = on_bindings     # callback(host, {port_uuid: (ofport, interface name)})
        self.lock = threading.Lock()
        self.idls: dict[str, tuple] = {}   # host -> (remote, idl, last seqno, last bindings)
        self._stop = False
        self._wake_r, self._wake_w = None, None
        self._thread = threading.Thread(target=self._loop, name="sb-watch", daemon=True)

    def start(self) -> None:
        import os
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread.start()

    def watch(self, host: str, remote: str) -> None:
        with self.lock:
            if host in self.idls and self.idls[host][0] == remote:
                return
            helper = ovs.db.idl.SchemaHelper(location=VSWITCH_SCHEMA)
            helper.register_columns("Interface", ["name", "external_ids", "ofport"])
            self.idls[host] = [remote, ovs.db.idl.Idl(remote, helper), None, None]
        self._wake()

    def unwatch(self, host: str) -> None:
        with self.lock:
            entry = self.idls.pop(host, None)
        if entry:
            entry[1].close()

    def stop(self) -> None:
        self._stop = True
        self._wake()

    def _wake(self) -> None:
        import os
        if self._wake_w is not None:
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        import os
        while not self._stop:
            reports = []
            poller = ovs.poller.Poller()
            with self.lock:
                for host, entry in self.idls.items():
                    _remote, idl, seqno, last = entry
                    idl.run()
                    if idl.change_seqno != seqno:
                        entry[2] = idl.change_seqno
                        bindings = self._bindings(idl)
                        if bindings != last:
                            entry[3] = bindings
                            reports.append((host, bindings))
                    idl.wait(poller)
            for host, bindings in reports:
                try:
                    self.on_bindings(host, bindings)
                except Exception:
                    LOG.exception("binding callback failed for %s", host)
            poller.fd_wait(self._wake_r, ovs.poller.POLLIN)
            poller.timer_wait(1000)
            poller.block()
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    @staticmethod
    def _bindings(idl) -> dict[str, tuple[int, str]]:
        found = {}
        for row in idl.tables["Interface"].rows.values():
            iface_id = row.external_ids.get("iface-id")
            ofport = row.ofport
            if isinstance(ofport, list):
                ofport = ofport[0] if ofport else PENDING
            if iface_id and isinstance(ofport, int) and ofport >= 0:
                found[iface_id] = (ofport, row.name)   # 0: not numbered by vswitchd yet
        return found


# ---- traffic exporters (sFlow, NetFlow, IPFIX) on br-int ---------------------------------------

def _current(remote: str, table: str, column: str) -> dict | None:
    """The exporter record br-int points to, as {column: value}, or None."""
    import json
    ref = vsctl(remote, "get", "Bridge", BRIDGE, column).strip()
    if ref in ("[]", ""):
        return None
    data = json.loads(vsctl(remote, "--format=json", "list", table, ref))
    row = dict(zip(data["headings"], data["data"][0])) if data["data"] else None
    return row


def _ovs_value(value):
    """An ovs-vsctl JSON cell as a plain value (["set", []] -> None, ["map", ...] -> dict)."""
    if isinstance(value, list) and value and value[0] == "set":
        return value[1][0] if value[1] else None
    if isinstance(value, list) and value and value[0] == "map":
        return {k: v for k, v in value[1]}
    return value


def exporter_args(kind: str, cfg: dict) -> list[str]:
    """ovs-vsctl arguments that create exporter `kind` with settings `cfg` and attach it.

    IPFIX is flow-based: a Flow_Sample_Collector_Set (id 1) that the sample actions weft puts
    in table 0 feed. Bridge-level IPFIX would miss every packet that conntrack recirculates."""
    if kind == "sflow":
        args = ["--", "--id=@x", "create", "sFlow", f'targets="{cfg["target"]}"',
                f"sampling={cfg['sampling']}", f"polling={cfg['polling']}", f"header={cfg.get('header', 128)}"]
        if cfg.get("agent"):
            args.append(f"agent={cfg['agent']}")
        return args + ["--", "set", "Bridge", BRIDGE, "sflow=@x"]
    if kind == "netflow":
        return ["--", "--id=@x", "create", "NetFlow", f'targets="{cfg["target"]}"',
                f"active_timeout={cfg['active_timeout']}", f"engine_id={cfg.get('engine_id', 0)}",
                "--", "set", "Bridge", BRIDGE, "netflow=@x"]
    return ["--", "--id=@br", "get", "Bridge", BRIDGE,
            "--", "--id=@x", "create", "IPFIX", f'targets="{cfg["target"]}"',
            f"obs_domain_id={cfg.get('obs_domain_id', 1)}",
            f"cache_active_timeout={cfg.get('active_timeout', 10)}",
            "other_config:enable-tunnel-sampling=true",
            "--", "create", "Flow_Sample_Collector_Set", f"id={IPFIX_SET}", "bridge=@br", "ipfix=@x"]


IPFIX_SET = 1


def _ipfix_current(remote: str):
    """(collector set uuid, its IPFIX row) of weft's collector set on br-int, or (None, None)."""
    import json
    data = json.loads(vsctl(remote, "--format=json", "--columns=_uuid,id,ipfix", "list",
                            "Flow_Sample_Collector_Set"))
    for uuid, set_id, ipfix in data["data"]:
        if set_id == IPFIX_SET:
            rows = json.loads(vsctl(remote, "--format=json", "list", "IPFIX", ipfix[1]))
            row = dict(zip(rows["headings"], rows["data"][0])) if rows["data"] else {}
            return uuid[1], row
    return None, None


def _matches(kind: str, row: dict, cfg: dict) -> bool:
    v = {k: _ovs_value(x) for k, x in row.items()}
    targets = _ovs_value(row.get("targets"))
    if kind == "sflow":
        return (targets == cfg["target"] and v.get("sampling") == cfg["sampling"]
                and v.get("polling") == cfg["polling"] and (v.get("agent") or None) == (cfg.get("agent") or None))
    if kind == "netflow":
        return targets == cfg["target"] and v.get("active_timeout") == cfg["active_timeout"]
    return (targets == cfg["target"] and v.get("obs_domain_id") == cfg.get("obs_domain_id", 1)
            and v.get("cache_active_timeout") == cfg.get("active_timeout", 10))


def configure_exporters(remote: str, settings: dict) -> list[str]:
    """Make br-int's sFlow/NetFlow/IPFIX exporters equal `settings` ({kind: cfg or None}).

    Changes only what differs (an unchanged exporter keeps its sequence numbers); returns the
    kinds changed."""
    changed = []
    for kind, table in (("sflow", "sFlow"), ("netflow", "NetFlow")):
        cfg = settings.get(kind)
        row = _current(remote, table, kind)
        if cfg is None:
            if row is not None:
                vsctl(remote, "clear", "Bridge", BRIDGE, kind)
                changed.append(kind)
        elif row is None or not _matches(kind, row, cfg):
            vsctl(remote, *exporter_args(kind, cfg))
            changed.append(kind)
    cfg = settings.get("ipfix")
    uuid, row = _ipfix_current(remote)
    if uuid is not None and (cfg is None or not _matches("ipfix", row, cfg)):
        vsctl(remote, "destroy", "Flow_Sample_Collector_Set", uuid)
        changed.append("ipfix")
        uuid = None
    if cfg is not None and uuid is None:
        vsctl(remote, *exporter_args("ipfix", cfg))
        if "ipfix" not in changed:
            changed.append("ipfix")
    return changed
