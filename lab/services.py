"""The lab's controller: weftd in the management namespace, with its store, and the hosts registered.

With `lab up --ha`: the northbound database as a 3-member Raft cluster (nb1..nb3, Raft over
TCP on the management network, clients on unix sockets) and two weftd replicas, `weftd` on
198.19.0.1 and `weftd2` on 198.19.0.2, each with its own OpenFlow listener, collectors and
API socket; every host's br-int lists both as controllers."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from lab import netns
from lab.datacentre import MGMT_IP, MGMT_PREFIX, load_up_state
from lab.pki import Pki, lab_pki_dir
from lab.state import LabPaths, LabState, locked, pid_alive, pid_from_file, stop_pid
from topology.errors import WeftError

OF_PORT = 6653
REPLICAS = {"weftd": MGMT_IP, "weftd2": MGMT_PREFIX + "2"}     # --ha: replica -> its address
NB_RAFT_PORT = 6643                                           # nb1..nb3: 6643..6645


def replicas(state: LabState) -> list[str]:
    return list(REPLICAS) if state.ha else ["weftd"]


def nb_members(p: LabPaths):
    from ovsdb import nbcluster
    pki = Pki(lab_pki_dir(p.dir))
    key, cert = pki.files("nb")              # issued by start_nb_cluster
    return nbcluster.members(os.path.join(p.dir, "nb"), MGMT_IP, NB_RAFT_PORT,
                             tls=(key, cert, pki.ca_cert))


def _weftd_argv(p: LabPaths, state: LabState, name: str = "weftd") -> tuple[list[str], dict]:
    ctl = os.path.join(p.dir, "ctl" + name[len("weftd"):])
    ip = REPLICAS[name]
    svc = {"api": os.path.join(p.dir, f"{name}.sock"), "pidfile": os.path.join(ctl, "weftd.pid"),
           "log": os.path.join(ctl, "weftd.log"), "of": f"ssl:{ip}:{OF_PORT}"}
    weftd = str(Path(sys.executable).parent / "weftd")
    pki = Pki(lab_pki_dir(p.dir))
    key, cert = pki.files("weftd")
    argv = ["ip", "netns", "exec", p.ns("mgmt"), weftd, "--run-dir", ctl,
            "--of-listen", f"{ip}:{OF_PORT}", "--api-socket", svc["api"],
            "--ssl-key", key, "--ssl-cert", cert, "--ssl-ca", pki.ca_cert,
            "--pidfile", svc["pidfile"], "--log-file", svc["log"], "--tunnel", state.tunnel,
            "--underlay-mtu", str(state.underlay_mtu),
            "--datapath-type", "netdev"] + (
                # WEFT_LAB_NO_EXPORTERS (benchmarks only): no collectors, so no exporters on
                # any br-int, to compare with a peer that runs none
                [] if os.environ.get("WEFT_LAB_NO_EXPORTERS") else
                ["--collector-ip", ip, "--sflow-agent", "mgmt0"]) + (["-v"] if os.environ.get("WEFTD_VERBOSE") else [])
    if state.ha:
        from ovsdb import nbcluster
        argv += ["--ha", "--name", name, "--nb", nbcluster.remotes(nb_members(p))]
        for other, other_ip in REPLICAS.items():
            argv += ["--controller-target", f"ssl:{other_ip}:{OF_PORT}"]
            if other != name:
                argv += ["--peer", f"{other}=unix:{os.path.join(p.dir, other + '.sock')}"]
    return argv, svc


def start_nb_cluster(p: LabPaths, state: LabState) -> None:
    """--ha: journal, create and start the three northbound members in the management
    namespace (where their Raft addresses live); weftd waits for a leader itself."""
    from ovsdb import nbcluster
    Pki(lab_pki_dir(p.dir)).issue("nb")       # the members' certificate: Raft over TLS
    members = nb_members(p)
    for m in members:
        state.services[m.name] = {"pidfile": m.pidfile, "log": m.log, "address": m.remote,
                                  "raft": m.raft, "ctl": m.ctl}
    state.save(p)
    nbcluster.create(members)
    for m in members:
        nbcluster.start(m, p.ns("mgmt"))


def _launch_weftd(p: LabPaths, state: LabState, name: str = "weftd") -> tuple[subprocess.Popen, dict]:
    """Journal weftd as a service, start it, and write its pid file at once (weftd writes the
    same pid once it runs): a `down` that comes while it is still starting finds it."""
    from lab import dashboard
    argv, svc = _weftd_argv(p, state, name)
    os.makedirs(os.path.dirname(svc["pidfile"]), exist_ok=True)
    ui = dashboard.listener(state.services.get(name, {}).get("ui_port", 0))  # the machine's loopback
    svc["ui_port"] = ui.getsockname()[1]
    argv += ["--api-listen", f"fd:{ui.fileno()}", "--api-no-tls",
             "--api-token-file", dashboard.token_file(p.dir)]
    state.services[name] = svc
    state.save(p)
    try:
        with open(svc["log"] + ".out", "ab") as out:
            # `ip netns exec` execs weftd: the pid is weftd's
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, pass_fds=(ui.fileno(),))
    finally:
        ui.close()                     # weftd holds its own copy
    with open(svc["pidfile"], "w") as f:
        f.write(f"{proc.pid}\n")
    return proc, svc


def _wait_api(proc: subprocess.Popen, client, svc: dict, deadline: float, timeout: float,
              stop: threading.Event | None = None) -> None:
    while True:
        if proc.poll() is not None:
            try:
                with open(svc["log"] + ".out", errors="replace") as f:
                    said = " | ".join(line.strip() for line in f.read().splitlines()[-3:])
            except OSError:
                said = ""
            raise WeftError(f"weftd exited at start: {said or 'no output'} (see {svc['log']})", 500)
        try:
            client.get("/v1/status")
            return
        except WeftError:
            if time.monotonic() > deadline:
                raise WeftError(f"weftd did not answer within {timeout:.0f} s (see {svc['log']})", 500)
            if stop is not None and stop.is_set():
                raise WeftError("lab up stopped", 500)
            time.sleep(0.02)


def _register(client, name: str, info: dict) -> None:
    """Register the host; one the store already has (a restarted weftd) is updated to the lab's
    settings instead (adding an existing host is refused with 409)."""
    from topology.errors import WeftError
    from lab.datacentre import PROVIDERS
    body = {"tunnel_ip": info["underlay_ip"], "ovsdb": info["ovsdb"], "mgmt_ip": info["mgmt_ip"],
            "providers": info.get("providers", PROVIDERS)}
    try:
        client.post("/v1/hosts", {"name": name, **body})
    except WeftError as exc:
        if exc.status != 409 or "already exists" not in str(exc):
            raise
        client.request("PATCH", f"/v1/hosts/{name}", body=body)


def start_weftd(p: LabPaths, state: LabState, timeout: float | None = None) -> None:
    """Start weftd, wait for its API, register the lab's hosts and wait until all are in sync.

    Journals `in_sync_at` (epoch seconds): when the lab saw every host reconciled."""
    from controller.client import Client

    if timeout is None:
        timeout = 20.0 + 0.2 * len(state.hosts)
    proc, svc = _launch_weftd(p, state)
    client = Client("unix:" + svc["api"], timeout=5)
    deadline = time.monotonic() + timeout
    _wait_api(proc, client, svc, deadline, timeout)
    for name, info in state.hosts.items():
        if not info.get("bare"):            # `lab host add`: enrolled by the operator, not by the lab
            _register(client, name, info)
    wait_in_sync(client, {h for h, i in state.hosts.items() if not i.get("bare")}, deadline)
    if state.ha:                        # the other replica too, and one of them active
        wait_cluster_in_sync(p, state, deadline)
    svc["in_sync_at"] = time.time()
    state.save(p)


class WeftdDuringBuild:
    """weftd for `weft lab up`, brought up alongside the hypervisors instead of after them.

    `begin()` (once the management network exists) journals and starts weftd; its start-up
    (imports, its store) overlaps the hosts' build. `host_up()` (from a build thread, once that
    host's ovs-vswitchd runs with br-int) queues the host; REGISTRARS threads, each with its own
    API connection, register queued hosts as soon as the API answers, so weftd configures and
    reconciles each host while the others are still being built. `finish()` waits until every
    host is reconciled and journals `in_sync_at`; `abort()` stops the registrars (the lab's
    teardown stops weftd by its pid file)."""

    REGISTRARS = 4

    def __init__(self, p: LabPaths, state: LabState):
        self.p, self.state = p, state
        self.queue: queue.Queue = queue.Queue()
        self.ready = threading.Event()        # the API answers
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.proc = self.svc = None
        self.timeout = 20.0

    def begin(self) -> None:
        from controller.client import Client     # imported here, in the main thread

        self.client_cls = Client
        if self.state.ha:
            netns.add_address(self.p.ns("mgmt"), "br-mgmt", REPLICAS["weftd2"], 24)
            start_nb_cluster(self.p, self.state)
            for name in replicas(self.state)[1:]:
                _launch_weftd(self.p, self.state, name)
        self.proc, self.svc = _launch_weftd(self.p, self.state)
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._wait_ready, name="weftd-start", daemon=True)]
        self.threads += [threading.Thread(target=self._registrar, name=f"weftd-register-{i}", daemon=True)
                         for i in range(self.REGISTRARS)]
        for t in self.threads:
            t.start()

    def host_up(self, name: str, info: dict) -> None:
        self.queue.put((name, info))

    def _client(self, timeout: float = 10):
        return self.client_cls("unix:" + self.svc["api"], timeout=timeout)

    def _wait_ready(self) -> None:
        try:
            _wait_api(self.proc, self._client(5), self.svc, self.started + self.timeout, self.timeout,
                      self.stop)
            self.ready.set()
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()

    def _registrar(self) -> None:
        client = None
        while True:
            item = self.queue.get()
            if item is None:
                return
            while not self.ready.wait(0.05):
                if self.stop.is_set():
                    break
            if self.stop.is_set():
                continue                        # drain: nothing more is sent after a failure
            try:
                client = client or self._client()
                _register(client, *item)
            except BaseException as exc:
                self.errors.append(exc)
                self.stop.set()

    def _join(self) -> None:
        for _ in range(self.REGISTRARS):
            self.queue.put(None)
        for t in self.threads:
            t.join()

    def finish(self, progress=None) -> None:
        self._join()
        if self.errors:
            raise self.errors[0]
        hosts = set(self.state.hosts)
        deadline = time.monotonic() + 20.0 + 0.1 * len(hosts)
        if progress is not None:
            progress.stage("hosts in sync with weftd", len(hosts))
        wait_in_sync(self._client(5), hosts, deadline, progress)
        if self.state.ha:
            wait_cluster_in_sync(self.p, self.state, deadline)
        self.svc["in_sync_at"] = time.time()
        self.state.save(self.p)

    def abort(self) -> None:
        self.stop.set()
        if self.threads:
            self._join()





def wait_in_sync(client, hosts: set[str], deadline: float, progress=None) -> None:
    while True:
        status = client.get("/v1/status")["hosts"]
        if progress is not None:
            progress.set(sum(1 for h in hosts if status.get(h, {}).get("reconciled")))
        if all(status.get(h, {}).get("reconciled") for h in hosts):
            return
        if time.monotonic() > deadline:
            late = sorted(h for h in hosts if not status.get(h, {}).get("reconciled"))
            raise WeftError(f"hosts did not connect to the controller in time: {', '.join(late)}", 500)
        time.sleep(0.02)


def wait_cluster_in_sync(p: LabPaths, state: LabState, deadline: float) -> None:
    """--ha: every replica has every host reconciled (the standby as a slave), one is active."""
    from controller.client import Client
    clients = {name: Client("unix:" + state.services[name]["api"], timeout=5) for name in replicas(state)}
    hosts = {h for h, i in state.hosts.items() if not i.get("bare")}
    while True:
        try:
            for client in clients.values():
                wait_in_sync(client, hosts, deadline)
            roles = {n: c.get("/v1/status")["ha"]["role"] for n, c in clients.items()}
        except WeftError:
            roles = {}
        if "active" in roles.values():
            return
        if time.monotonic() > deadline:
            raise WeftError(f"no weftd replica became active in time ({roles})", 500)
        time.sleep(0.05)


def stop_weftd(p: LabPaths, state: LabState, name: str = "weftd") -> bool:
    svc = state.services.get(name)
    if not svc:
        return False
    pid = pid_from_file(svc["pidfile"])
    return bool(pid) and stop_pid(pid, p.dir.rstrip("/") + "/")


def _replica(state: LabState, name: str) -> str:
    if name not in replicas(state):
        raise WeftError(f"the lab has no controller replica {name!r} "
                        f"(it has: {', '.join(replicas(state))})")
    return name


def controller_stop(name: str = "weftd") -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        if not stop_weftd(p, state, _replica(state, name)):
            raise WeftError(f"the lab's controller {name} is not running")


def controller_start(name: str = "weftd") -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        svc = state.services.get(_replica(state, name))
        pid = pid_from_file(svc["pidfile"]) if svc else None
        if pid and pid_alive(pid):
            raise WeftError(f"the lab's controller {name} is already running (pid {pid})")
        _start(p, state, name)


def controller_restart(name: str = "weftd") -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        stop_weftd(p, state, _replica(state, name))
        _start(p, state, name)


def _start(p: LabPaths, state: LabState, name: str) -> None:
    if name == "weftd":
        start_weftd(p, state)
        return
    proc, svc = _launch_weftd(p, state, name)     # another replica: the hosts are registered
    from controller.client import Client
    deadline = time.monotonic() + 20.0
    _wait_api(proc, Client("unix:" + svc["api"], timeout=5), svc, deadline, 20.0)
    wait_cluster_in_sync(p, state, deadline)


# `weft lab up` (datacentre.up(on_ready=start_weftd)) starts weftd alongside the hypervisors;
# `weft lab controller start|restart` call start_weftd itself on a lab that is up
start_weftd.during_build = WeftdDuringBuild
