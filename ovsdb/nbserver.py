"""Start (or reuse) a local ovsdb-server holding weft's northbound database in a file."""
from __future__ import annotations

import os
import subprocess
import time

from ovsdb import nbschema
from topology.errors import WeftError

SCHEMA = nbschema.schema_path()       # weft_nb.ovsschema (WEFT_NB_SCHEMA: another, for tests)


def _alive(pidfile: str) -> bool:
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def ensure_local_server(directory: str, timeout: float = 10.0) -> str:
    """Run ovsdb-server for the northbound DB in `directory` (created if needed); returns its remote."""
    os.makedirs(directory, exist_ok=True)
    db = os.path.join(directory, "weft_nb.db")
    sock = os.path.join(directory, "nb.sock")
    pidfile = os.path.join(directory, "nb.pid")
    if _alive(pidfile) and os.path.exists(sock):
        return f"unix:{sock}"
    if not os.path.exists(db):
        _run(["ovsdb-tool", "create", db, SCHEMA])
    else:
        nbschema.upgrade_file(db, SCHEMA)     # refuses a newer database than this weftd knows
    _run(["ovsdb-server", db, f"--remote=punix:{sock}", f"--pidfile={pidfile}", "--detach",
          f"--log-file={directory}/nb.log", f"--unixctl={directory}/nb.ctl"])
    deadline = time.monotonic() + timeout
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            raise WeftError(f"northbound ovsdb-server did not start (see {directory}/nb.log)", 500)
        time.sleep(0.01)
    return f"unix:{sock}"


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WeftError(f"{' '.join(args)} failed: {proc.stderr.strip()}", 500)
