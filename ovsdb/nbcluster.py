"""The northbound database as an OVSDB Raft cluster: create its members, start them, ask who leads.

Each member is an ovsdb-server serving a clustered copy of weft's database (`ovsdb-tool
create-cluster` for the first, `join-cluster` for the others) on a unix socket of its own
(`unix:<dir>/<name>.sock`, what weftd's IDL connects to: `--nb unix:a,unix:b,unix:c`), and
talking Raft to the others over TCP (`raft` addresses, `tcp:IP:PORT`). A transaction is
answered only once a majority has it in its log, so an acknowledged write survives the loss
of any one member; weftd's IDL talks to the leader only (`leader_only`) and moves to the
next member when it loses it.

With `tls` = (key, cert, CA) the members talk Raft over `ssl:` (each presents its certificate
and accepts only peers whose certificate the CA signed), and `client` adds an `pssl:` listener
for weftd replicas on other machines (`--nb ssl:IP:PORT,...`).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time

from ovsdb.nbserver import SCHEMA
from topology.errors import WeftError

DB_NAME = "Weft_Northbound"


@dataclasses.dataclass(frozen=True)
class Member:
    name: str                 # nb1, nb2, ...
    directory: str
    raft: str                 # ssl:IP:PORT (tcp: without tls), between members
    tls: tuple | None = None  # (key, cert, CA) files of the member
    client: str | None = None  # IP:PORT of an ssl client listener, if any

    @property
    def db(self) -> str:
        return os.path.join(self.directory, f"{self.name}.db")

    @property
    def socket(self) -> str:
        return os.path.join(self.directory, f"{self.name}.sock")

    @property
    def remote(self) -> str:
        return f"unix:{self.socket}"

    @property
    def pidfile(self) -> str:
        return os.path.join(self.directory, f"{self.name}.pid")

    @property
    def ctl(self) -> str:
        return os.path.join(self.directory, f"{self.name}.ctl")

    @property
    def log(self) -> str:
        return os.path.join(self.directory, f"{self.name}.log")


def members(directory: str, raft_ip: str, first_port: int, count: int = 3,
            tls: tuple | None = None) -> list[Member]:
    scheme = "ssl" if tls else "tcp"
    return [Member(f"nb{k}", directory, f"{scheme}:{raft_ip}:{first_port + k - 1}", tls)
            for k in range(1, count + 1)]


def remotes(cluster: list[Member]) -> str:
    """The IDL remote for the whole cluster: every member's socket, comma-separated."""
    return ",".join(m.remote for m in cluster)


def create(cluster: list[Member]) -> None:
    """Make every member's database file: the first one creates the cluster, the others join it
    (they become members when their server first reaches the cluster)."""
    os.makedirs(cluster[0].directory, exist_ok=True)
    _run(["ovsdb-tool", "create-cluster", cluster[0].db, SCHEMA, cluster[0].raft])
    for m in cluster[1:]:
        _run(["ovsdb-tool", "join-cluster", m.db, DB_NAME, m.raft, cluster[0].raft])


def server_argv(m: Member, netns: str | None = None) -> list[str]:
    """ovsdb-server for one member (detached; inside `netns` when given, where its Raft address lives)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    ssl = []
    if m.tls:
        key, cert, ca = m.tls
        ssl = [f"--private-key={key}", f"--certificate={cert}", f"--ca-cert={ca}"]
        if m.client:
            ip, _, port = m.client.rpartition(":")
            ssl.append(f"--remote=pssl:{port}:{ip}")
    return prefix + ["ovsdb-server", m.db, f"--remote=punix:{m.socket}", *ssl, f"--pidfile={m.pidfile}",
                     "--detach", f"--log-file={m.log}", f"--unixctl={m.ctl}"]


def start(m: Member, netns: str | None = None) -> None:
    _run(server_argv(m, netns))


def status(m: Member, timeout: float = 2.0) -> dict:
    """{"status": "cluster member"|..., "role": "leader"|"follower"|"candidate", "term": N}
    from the member's `cluster/status`; {} when it does not answer."""
    try:
        proc = subprocess.run(["ovs-appctl", "-T", str(max(1, int(timeout))), "-t", m.ctl,
                               "cluster/status", DB_NAME], capture_output=True, text=True,
                              timeout=timeout + 1)
    except subprocess.TimeoutExpired:
        return {}
    if proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in ("Status", "Role", "Term"):
            out[key.lower()] = value.strip()
    return out


def wait_formed(cluster: list[Member], timeout: float = 20.0) -> str:
    """Wait until every member has joined and one leads; returns the leader's name."""
    deadline = time.monotonic() + timeout
    while True:
        states = {m.name: status(m) for m in cluster}
        leaders = [n for n, s in states.items() if s.get("role") == "leader"]
        if leaders and all(s.get("status") == "cluster member" for s in states.values()):
            return leaders[0]
        if time.monotonic() > deadline:
            raise WeftError(f"the northbound cluster did not form in {timeout:.0f} s: {states} "
                            f"(see {cluster[0].directory}/nb*.log)", 500)
        time.sleep(0.05)


def leader(cluster: list[Member]) -> Member | None:
    for m in cluster:
        if status(m).get("role") == "leader":
            return m
    return None


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WeftError(f"{' '.join(args)} failed: {proc.stderr.strip()}", 500)
