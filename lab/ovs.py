"""One Open vSwitch instance per emulated hypervisor: its own ovsdb-server and ovs-vswitchd (userspace datapath)."""
from __future__ import annotations

import os
import shutil

from lab import netns
from topology.errors import WeftError

OVSDB_TLS_PORT = 6640            # each hypervisor's ovsdb-server, over TLS on its management address
SCHEMA_CANDIDATES = ("/usr/share/openvswitch/vswitch.ovsschema",
                     "/usr/local/share/openvswitch/vswitch.ovsschema")


def vswitch_schema() -> str:
    for path in SCHEMA_CANDIDATES:
        if os.path.exists(path):
            return path
    raise WeftError("Open vSwitch is not installed (no vswitch.ovsschema); run ./scripts/setup.sh", 500)


def require_tools() -> None:
    missing = [t for t in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ip")
               if shutil.which(t) is None]
    if missing:
        raise WeftError(f"missing programs: {', '.join(missing)}; run ./scripts/setup.sh", 500)


class HostSwitch:
    """The Open vSwitch of one hypervisor, living in namespace `ns`, with its files in `dir`."""

    def __init__(self, ns: str, directory: str):
        self.ns = ns
        self.dir = directory

    @property
    def db_sock(self) -> str:
        return os.path.join(self.dir, "db.sock")

    @property
    def remote(self) -> str:
        return f"unix:{self.db_sock}"

    def start_db(self, init: bool = True, tls: tuple[str, str, str, str] | None = None,
                 create: bool = True) -> None:
        """Create and serve the database; `init=False` leaves `ovs-vsctl init` to the caller's
        first ovs-vsctl (one process less per host). `tls` = (key, cert, CA, IP): serve it on
        ssl:IP:6640 too, to peers with a certificate from that CA (the unix socket stays local).
        `create=False` serves the database file as it is (a restart after a crash)."""
        os.makedirs(self.dir, exist_ok=True)
        db = os.path.join(self.dir, "conf.db")
        if create:
            netns.run(["ovsdb-tool", "create", db, vswitch_schema()])
        ssl = []
        if tls is not None:
            key, cert, ca, ip = tls
            ssl = [f"--remote=pssl:{OVSDB_TLS_PORT}:{ip}", f"--private-key={key}",
                   f"--certificate={cert}", f"--ca-cert={ca}"]
        netns.run(["ip", "netns", "exec", self.ns, "ovsdb-server", db,
                   f"--remote=punix:{self.db_sock}", *ssl,
                   f"--pidfile={self.dir}/ovsdb.pid", "--detach",
                   f"--log-file={self.dir}/ovsdb.log",
                   f"--unixctl={self.dir}/ovsdb.ctl"])
        if init:
            self.vsctl("--no-wait", "init")

    @property
    def pki_file(self) -> str:
        return os.path.join(self.dir, "vswitchd-pki")

    def set_vswitchd_pki(self, key: str, cert: str, ca: str) -> None:
        """Give ovs-vswitchd its TLS files on its command line (this and every later start).

        Not the Open_vSwitch SSL table: with a row there, ovs-vswitchd stat()s the key, the
        certificate and the CA on every pass of its main loop (bridge.c re-reads them in case
        they changed), and on the userspace datapath that loop is the forwarding loop: three
        syscalls per batch of packets, 0.15-0.2 us per forwarded packet (perf, bench_datapath's
        lab). Files given with -p/-c/-C are read once at start; the TLS is the same."""
        with open(self.pki_file, "w") as f:
            f.write("\n".join((key, cert, ca)) + "\n")

    def _pki_args(self) -> list[str]:
        try:
            with open(self.pki_file) as f:
                key, cert, ca = f.read().split()
        except FileNotFoundError:
            return []               # a host configured through its database (lab/barehost.py)
        return [f"--private-key={key}", f"--certificate={cert}", f"--ca-cert={ca}"]

    def start_vswitchd(self) -> None:
        netns.run(["ip", "netns", "exec", self.ns, "env", f"OVS_RUNDIR={self.dir}",
                   f"OVS_LOGDIR={self.dir}", "ovs-vswitchd", self.remote, *self._pki_args(),
                   f"--pidfile={self.dir}/vs.pid", "--detach",
                   f"--log-file={self.dir}/vs.log",
                   f"--unixctl={self.dir}/vs.ctl"])

    def vsctl(self, *args: str, timeout: int = 10) -> str:
        proc = netns.run(["ovs-vsctl", f"--db={self.remote}", f"--timeout={timeout}", *args],
                         timeout=timeout + 5)
        return proc.stdout.strip()
