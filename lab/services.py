"""The lab's controller: weftd in the management namespace, with its store, and the hosts registered."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab.datacentre import MGMT_IP, load_up_state
from lab.state import LabPaths, LabState, locked, pid_alive, pid_from_file, stop_pid
from topology.errors import WeftError

OF_PORT = 6653


def _weftd_argv(p: LabPaths, state: LabState) -> tuple[list[str], dict]:
    ctl = os.path.join(p.dir, "ctl")
    svc = {"api": os.path.join(p.dir, "weftd.sock"), "pidfile": os.path.join(ctl, "weftd.pid"),
           "log": os.path.join(ctl, "weftd.log"), "of": f"tcp:{MGMT_IP}:{OF_PORT}"}
    weftd = str(Path(sys.executable).parent / "weftd")
    argv = ["ip", "netns", "exec", p.ns("mgmt"), weftd, "--run-dir", ctl,
            "--of-listen", f"{MGMT_IP}:{OF_PORT}", "--api-socket", svc["api"],
            "--pidfile", svc["pidfile"], "--log-file", svc["log"], "--tunnel", state.tunnel,
            "--datapath-type", "netdev", "--collector-ip", MGMT_IP, "--sflow-agent", "mgmt0"] + (["-v"] if os.environ.get("WEFTD_VERBOSE") else [])
    return argv, svc


def start_weftd(p: LabPaths, state: LabState, timeout: float | None = None) -> None:
    """Start weftd, wait for its API, register the lab's hosts and wait until all are in sync.

    Journals `in_sync_at` (epoch seconds): when the lab saw every host reconciled."""
    from controller.client import Client

    if timeout is None:
        timeout = 20.0 + 0.2 * len(state.hosts)

    argv, svc = _weftd_argv(p, state)
    os.makedirs(os.path.dirname(svc["pidfile"]), exist_ok=True)
    state.services["weftd"] = svc
    state.save(p)
    with open(svc["log"] + ".out", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    client = Client("unix:" + svc["api"], timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise WeftError(f"weftd exited at start (see {svc['log']})", 500)
        try:
            client.get("/v1/status")
            break
        except WeftError:
            if time.monotonic() > deadline:
                raise WeftError(f"weftd did not answer within {timeout:.0f} s (see {svc['log']})", 500)
            time.sleep(0.05)
    for name, info in state.hosts.items():
        client.post("/v1/hosts", {"name": name, "tunnel_ip": info["underlay_ip"], "ovsdb": info["ovsdb"],
                                  "mgmt_ip": info["mgmt_ip"]})
    wait_in_sync(client, set(state.hosts), deadline)
    svc["in_sync_at"] = time.time()
    state.save(p)


def wait_in_sync(client, hosts: set[str], deadline: float) -> None:
    while True:
        status = client.get("/v1/status")["hosts"]
        if all(status.get(h, {}).get("reconciled") for h in hosts):
            return
        if time.monotonic() > deadline:
            late = sorted(h for h in hosts if not status.get(h, {}).get("reconciled"))
            raise WeftError(f"hosts did not connect to the controller in time: {', '.join(late)}", 500)
        time.sleep(0.02)


def stop_weftd(p: LabPaths, state: LabState) -> bool:
    svc = state.services.get("weftd")
    if not svc:
        return False
    pid = pid_from_file(svc["pidfile"])
    return bool(pid) and stop_pid(pid, p.dir.rstrip("/") + "/")


def controller_stop() -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        if not stop_weftd(p, state):
            raise WeftError("the lab's controller is not running")


def controller_start() -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        svc = state.services.get("weftd")
        pid = pid_from_file(svc["pidfile"]) if svc else None
        if pid and pid_alive(pid):
            raise WeftError(f"the lab's controller is already running (pid {pid})")
        start_weftd(p, state)


def controller_restart() -> None:
    p, _ = load_up_state()
    with locked(p):
        state = LabState.load(p)
        stop_weftd(p, state)
        start_weftd(p, state)
