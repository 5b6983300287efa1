"""The lab's run directory: its journal of what was created, its lock, and stopping its processes by pid."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field

from topology.errors import WeftError

DEFAULT_RUN_DIR = "/run/weft"
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def lab_name() -> str:
    name = os.environ.get("WEFT_LAB", "weft")
    if not LAB_NAME_RE.match(name):
        raise WeftError(f"WEFT_LAB={name!r} is not a valid lab name: use 1-12 lower-case letters "
                        f"and digits, starting with a letter")
    return name


def run_root() -> str:
    return os.environ.get("WEFT_RUN_DIR", DEFAULT_RUN_DIR)


@dataclass
class LabPaths:
    name: str
    root: str

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.name)

    @property
    def state_file(self) -> str:
        return os.path.join(self.dir, "state.json")

    @property
    def lock_file(self) -> str:
        return os.path.join(self.root, f"{self.name}.lock")

    def host_dir(self, host: str) -> str:
        return os.path.join(self.dir, host)

    def ns(self, what: str) -> str:
        """The namespace name of a lab object: `<lab>-hv1`, `<lab>-fabric`, `<lab>-vm-web1`."""
        return f"{self.name}-{what}"


def paths() -> LabPaths:
    return LabPaths(lab_name(), run_root())


@contextlib.contextmanager
def locked(p: LabPaths):
    """Serialise lab commands: one `weft lab …` changes the lab at a time."""
    os.makedirs(p.root, exist_ok=True)
    with open(p.lock_file, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class LabState:
    """What the lab has created, written before each creation so `down` can undo a crash."""
    status: str = "starting"          # starting | up
    tunnel: str = "vxlan"
    underlay_mtu: int = 1500
    ha: bool = False                  # --ha: northbound Raft cluster and two weftd replicas
    provider: bool = True             # br-ex (provider `phys`) and the outside; --no-provider: none
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, dict] = field(default_factory=dict)
    vms: dict[str, dict] = field(default_factory=dict)
    services: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, p: LabPaths) -> "LabState | None":
        try:
            with open(p.state_file) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            # a crash while writing: everything else is still found from the run directory
            return cls(status="broken")
        return cls(**data)

    def save(self, p: LabPaths) -> None:
        os.makedirs(p.dir, exist_ok=True)
        tmp = p.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.__dict__, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p.state_file)


def pid_from_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pid_belongs(pid: int, marker: str) -> bool:
    """True when process `pid` is one of ours: its command line names our run directory."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return marker in cmdline or marker in environ


def stop_pid(pid: int, marker: str | None, timeout: float = 5.0) -> bool:
    """Stop process `pid` (TERM, then KILL) if it is ours (its command line or environment names
    `marker`; None: the caller knows, e.g. it runs in a namespace the lab made); True if it was
    running."""
    if not pid_alive(pid) or (marker is not None and not pid_belongs(pid, marker)):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.01)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            _reap(pid)
            time.sleep(0.01)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pidfiles(directory: str) -> list[str]:
    """Every *.pid file below `directory`."""
    found = []
    for dirpath, _dirs, files in os.walk(directory):
        found += [os.path.join(dirpath, f) for f in files if f.endswith(".pid")]
    return sorted(found)
