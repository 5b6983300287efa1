"""One emulated hypervisor on asyncio: its Open_vSwitch database behind an OVSDB socket, its br-int switch, its NICs.

The database starts as `ovs-vsctl init` plus a br-int with its LOCAL port and the host's NICs
(Interfaces with `external_ids:iface-id`, `attached-mac`, `iface-status`, `vm-id`, as libvirt
and os-vif plug them). What ovs-vswitchd would do after each committed transaction is done by
`_vswitchd`, as a transaction of its own: number new interfaces (ofport_request if set, else
the next number, as OVS does; br-int's LOCAL is 65534), add and remove the switch's ports
(port-status to the controller), take br-int's `other-config:datapath-id` as the switch's
dpid, write `Bridge.datapath_id` and `cur_cfg`, and connect to the Controller targets (or to
the target the swarm was given), reconnecting with the row's max_backoff.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from lab import swarm_ofwire as W
from lab.swarm_ovsdb import Database, JsonStream, Session
from lab.swarm_switch import EmulatedSwitch

LOG = logging.getLogger(__name__)
VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
BRIDGE = "br-int"
LOCAL = 65534
_schema_cache: dict = {}


def vswitch_schema() -> dict:
    if "json" not in _schema_cache:
        with open(VSWITCH_SCHEMA) as f:
            _schema_cache["json"] = json.load(f)
    return _schema_cache["json"]


def default_dpid(name: str) -> int:
    """What the switch calls itself before the controller sets other-config:datapath-id."""
    import zlib
    return 0x0200 << 48 | zlib.crc32(name.encode())


def nic_mac(host_index: int, nic_index: int) -> str:
    v = (host_index << 12 | nic_index) & 0xFFFFFFFF
    return "fa:16:3e:%02x:%02x:%02x" % (v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF) if v < 1 << 24 \
        else "fa:16:%02x:%02x:%02x:%02x" % (v >> 24, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF)


def _u(u) -> list:
    return ["uuid", str(u)]


def _where(u) -> list:
    return [["_uuid", "==", _u(u)]]


class EmulatedHost:
    """One hypervisor. `start()` serves its OVSDB socket; the switch connects once it has a target."""

    def __init__(self, name: str, db_socket: str, nics: list[dict], controller: str | None = None,
                 tls: dict | None = None):
        self.name = name
        self.db_socket = db_socket
        self.override = controller              # a target of our own instead of the Controller rows
        self.tls = tls                          # {"ca", "key", "cert"}: ssl: targets too, as this host
        self.db = Database(vswitch_schema(), _schema_cache)
        self.switch = EmulatedSwitch(default_dpid(name), on_change=self._switch_changed)
        self.next_ofport = 1
        self.iface_port: dict = {}              # Interface uuid -> ofport the switch has
        self.targets: tuple = ()
        self.max_backoff = 1.0
        self._of_task = None
        self._server = None
        self._pending = False
        self._watchers: list = []               # (digest, future)
        self.connects = 0
        self.sessions = 0
        self.db.listeners.append(self._db_changed)
        self._init_db(nics)

    # -- the database
    def _init_db(self, nics: list[dict]) -> None:
        ops = [{"op": "insert", "table": "Open_vSwitch", "uuid-name": "root",
                "row": {"bridges": ["named-uuid", "br"], "ovs_version": "3.1.0-swarm",
                        "external_ids": ["map", [["hostname", self.name], ["system-id", self.name]]]}},
               {"op": "insert", "table": "Interface", "uuid-name": "li", "row": {"name": BRIDGE, "type": "internal"}},
               {"op": "insert", "table": "Port", "uuid-name": "lp",
                "row": {"name": BRIDGE, "interfaces": ["named-uuid", "li"]}},
               {"op": "insert", "table": "Bridge", "uuid-name": "br",
                "row": {"name": BRIDGE, "ports": ["set", [["named-uuid", "lp"]] + [
                    ["named-uuid", f"p{i}"] for i in range(len(nics))]]}}]
        for i, nic in enumerate(nics):
            ops += self._nic_ops(nic, f"i{i}", f"p{i}")
        results, _ = self.db.transact(ops)
        if results and "error" in results[-1]:
            raise RuntimeError(f"{self.name}: initial database: {results[-1]}")
        self._vswitchd()

    @staticmethod
    def _nic_ops(nic: dict, iname: str, pname: str) -> list:
        ext = [["iface-id", nic["iface_id"]], ["attached-mac", nic["mac"]], ["iface-status", "active"],
               ["vm-id", nic.get("vm_id", nic["name"])]]
        return [{"op": "insert", "table": "Interface", "uuid-name": iname,
                 "row": {"name": nic["name"], "external_ids": ["map", ext]}},
                {"op": "insert", "table": "Port", "uuid-name": pname,
                 "row": {"name": nic["name"], "interfaces": ["named-uuid", iname]}}]

    def _bridge(self):
        for u, _row in self.db.rows("Bridge"):
            if self.db.value("Bridge", u, "name") == BRIDGE:
                return u
        return None

    def plug(self, nic: dict) -> int:
        """A NIC plugged as `ovs-vsctl add-port br-int NAME -- set Interface ...` does; returns its ofport."""
        br = self._bridge()
        ops = self._nic_ops(nic, "i", "p") + [
            {"op": "mutate", "table": "Bridge", "where": _where(br),
             "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]]]}]
        results, _ = self.db.transact(ops)
        if "error" in results[-1]:
            raise ValueError(f"{self.name}: plug {nic['name']}: {results[-1]}")
        self._vswitchd()
        iface = self.db.find("Interface", "name", nic["name"])
        return self.db.value("Interface", iface[0], "ofport") if iface else -1

    def unplug(self, name: str) -> bool:
        """`ovs-vsctl del-port br-int NAME`: the Port leaves the bridge (its rows are collected)."""
        br = self._bridge()
        ports = self.db.find("Port", "name", name)
        if not ports or br is None:
            return False
        results, _ = self.db.transact([{"op": "mutate", "table": "Bridge", "where": _where(br),
                                        "mutations": [["ports", "delete", ["set", [_u(ports[0])]]]]}])
        if "error" in results[-1]:
            raise ValueError(f"{self.name}: unplug {name}: {results[-1]}")
        self._vswitchd()
        return True

    def bindings(self) -> dict[str, int]:
        """{iface-id: ofport} of the NICs on br-int."""
        out = {}
        for u, _row in self.db.rows("Interface"):
            iface_id = self.db.value("Interface", u, "external_ids").get("iface-id")
            ofport = self.db.value("Interface", u, "ofport")
            if iface_id and ofport:
                out[iface_id] = ofport
        return out

    def _db_changed(self, _changes) -> None:
        """After a commit, vswitchd's work follows as a transaction of its own (never inside this
        one's notifications). Without a running loop (set-up, unit tests) the caller runs it."""
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self._vswitchd)
                self._pending = True
            except RuntimeError:
                pass

    def _vswitchd(self) -> None:
        """What ovs-vswitchd does after a database change (see the module docstring)."""
        self._pending = False
        db = self.db
        br = self._bridge()
        ops, seen, added = [], set(), []
        if br is not None:
            for pu in db.value("Bridge", br, "ports"):
                for iu in db.value("Port", pu, "interfaces"):
                    seen.add(iu)
                    ofport = db.value("Interface", iu, "ofport")
                    name = db.value("Interface", iu, "name")
                    if not ofport:
                        request = db.value("Interface", iu, "ofport_request")
                        if name == BRIDGE:
                            ofport = LOCAL
                        elif request:
                            ofport = request
                        else:
                            ofport, self.next_ofport = self.next_ofport, self.next_ofport + 1
                        ops.append({"op": "update", "table": "Interface", "where": _where(iu),
                                    "row": {"ofport": ofport}})
                    if iu not in self.iface_port and ofport != LOCAL:
                        self.iface_port[iu] = ofport
                        added.append((ofport, name))
            other = db.value("Bridge", br, "other_config")
            dpid_text = other.get("datapath-id")
            dpid = int(dpid_text, 16) if dpid_text else default_dpid(self.name)
            if db.value("Bridge", br, "datapath_id") != f"{dpid:016x}":
                ops.append({"op": "update", "table": "Bridge", "where": _where(br),
                            "row": {"datapath_id": f"{dpid:016x}"}})
            targets, backoff = [], 1000
            for cu in db.value("Bridge", br, "controller"):
                targets.append(db.value("Controller", cu, "target"))
                backoff = db.value("Controller", cu, "max_backoff") or backoff
            self.max_backoff = backoff / 1000
        else:
            dpid, targets = self.switch.dpid, []
        for root, _row in db.rows("Open_vSwitch"):
            nxt = db.value("Open_vSwitch", root, "next_cfg")
            if db.value("Open_vSwitch", root, "cur_cfg") != nxt:
                ops.append({"op": "update", "table": "Open_vSwitch", "where": _where(root),
                            "row": {"cur_cfg": nxt}})
        if ops:
            results, _ = db.transact(ops)
            if results and "error" in results[-1]:
                LOG.error("%s: vswitchd update failed: %s", self.name, results[-1])
        for iu in set(self.iface_port) - seen:
            self.switch.remove_port(self.iface_port.pop(iu))
        for ofport, name in added:
            self.switch.add_port(ofport, name, _mac_for(self.name, ofport))
        reconnect = dpid != self.switch.dpid
        self.switch.dpid = dpid
        schemes = ("tcp:", "ssl:") if self.tls else ("tcp:",)
        wanted = (self.override,) if self.override else tuple(t for t in targets if t.startswith(schemes))
        if wanted != self.targets or reconnect:
            self.targets = wanted
            self._restart_of()

    # -- OVSDB endpoint
    async def start(self) -> None:
        if os.path.exists(self.db_socket):
            os.unlink(self.db_socket)
        self._server = await asyncio.start_unix_server(self._serve_ovsdb, path=self.db_socket)
        self._vswitchd()

    async def stop(self) -> None:
        self.targets = ()
        if self._of_task is not None:
            self._of_task.cancel()
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.db_socket)
        except FileNotFoundError:
            pass

    async def _serve_ovsdb(self, reader, writer) -> None:
        stream = JsonStream()
        session = Session({self.db.name: self.db}, lambda m: writer.write(JsonStream.encode(m)))
        self.sessions += 1
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for msg in stream.feed(data):
                    session.receive(msg)
        except (ConnectionError, ValueError) as exc:
            LOG.info("%s: OVSDB client gone: %s", self.name, exc)
        finally:
            session.close()
            self.sessions -= 1
            writer.close()

    # -- OpenFlow connection
    def _restart_of(self) -> None:
        if self._of_task is not None:
            self._of_task.cancel()
            self._of_task = None
        if self.targets:
            try:
                self._of_task = asyncio.get_running_loop().create_task(self._run_of(self.targets[0]))
            except RuntimeError:
                pass                        # no loop yet: start() calls _vswitchd again

    def _ssl_context(self):
        """A switch's TLS client: this host's certificate, weftd's checked against the CA."""
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(self.tls["ca"])
        ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
        return ctx

    async def _run_of(self, target: str) -> None:
        proto, host, port = target.split(":")
        ctx = self._ssl_context() if proto == "ssl" else None
        backoff = 0.1
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
                self.connects += 1
                backoff = 0.1
                framer = W.Framer()
                self.switch.connected(writer.write)
                while True:
                    data = await reader.read(262144)
                    if not data:
                        break
                    for _v, msg_type, xid, raw in framer.feed(data):
                        self.switch.handle(msg_type, xid, raw)
            except (ConnectionError, OSError, ValueError) as exc:
                LOG.debug("%s: OpenFlow %s: %s", self.name, target, exc)
            finally:
                self.switch.disconnected()
                if writer is not None:
                    writer.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    @property
    def of_connected(self) -> bool:
        return self.switch.send is not None

    # -- expectations (checker)
    def expect(self, digest: int) -> asyncio.Future:
        """A future with the time (monotonic) at which the table's digest became `digest`."""
        fut = asyncio.get_running_loop().create_future()
        if self.switch.digest == digest:
            fut.set_result(self.switch.changed_at)
        else:
            self._watchers.append((digest, fut))
        return fut

    def _switch_changed(self, switch) -> None:
        if not self._watchers:
            return
        keep = []
        for digest, fut in self._watchers:
            if fut.done():
                continue
            if digest == switch.digest:
                fut.set_result(switch.changed_at)
            else:
                keep.append((digest, fut))
        self._watchers = keep


def _mac_for(host: str, ofport: int) -> str:
    import zlib
    v = zlib.crc32(f"{host}/{ofport}".encode())
    return "02:%02x:%02x:%02x:%02x:%02x" % (v >> 24, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF, ofport & 0xFF)


def now() -> float:
    return time.monotonic()
