"""The northbound schema's version: upgraded in place at start, refused when newer than weftd knows.

`ovsdb/weft_nb.ovsschema` carries a version (MAJOR.MINOR.PATCH, OVSDB's own convention). A
schema change bumps it: additive changes (a table, an optional column) the minor number. At
start weftd compares the database's version with its own schema's:

- older: weftd converts the database in place (`ovsdb-client convert` on a server, online,
  every client sees the change; `ovsdb-tool convert` on its own local file before serving it).
  With HA the first upgraded replica converts the cluster's database; the replicas still on the
  old version keep working on it (their IDL monitors only the columns they know; rows they
  write get the new columns' defaults), so replicas are restarted one at a time;
- newer: weftd refuses to start (a conversion back would drop what the newer version wrote);
- the same version with a different content: refused too, since one of the two files changed
  the schema without bumping its version.

`WEFT_NB_SCHEMA` names another schema file (tests simulate a newer weftd with it).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time

from topology.errors import WeftError

DEFAULT_SCHEMA = os.path.join(os.path.dirname(__file__), "weft_nb.ovsschema")
DB_NAME = "Weft_Northbound"
LOG = logging.getLogger("weftd.schema")


def schema_path() -> str:
    return os.environ.get("WEFT_NB_SCHEMA") or DEFAULT_SCHEMA


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise WeftError(f"invalid schema version {text!r}: expected MAJOR.MINOR.PATCH")
    return tuple(int(p) for p in parts)


def known_version(schema: str | None = None) -> str:
    """The version of the schema this weftd carries."""
    with open(schema or schema_path()) as f:
        return json.load(f)["version"]


def compare(current: str, known: str) -> str:
    """What to do with a database at `current` for a weftd that knows `known`:
    "same", "upgrade" or "newer" (refuse)."""
    c, k = parse_version(current), parse_version(known)
    return "same" if c == k else "upgrade" if c < k else "newer"


def _newer_error(where: str, current: str, known: str) -> WeftError:
    return WeftError(f"the northbound database at {where} has schema version {current}, newer than "
                     f"this weftd knows ({known}): it was upgraded by a newer weftd; run that "
                     f"version (a downgrade would lose what it stored)", 500)


def _same_version_error(where: str, version: str) -> WeftError:
    return WeftError(f"the northbound database at {where} has schema version {version} but not this "
                     f"weftd's schema of that version: a schema change must bump the version in "
                     f"ovsdb/weft_nb.ovsschema", 500)


def _tool(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WeftError(f"{' '.join(args)}: no answer in {timeout:.0f} s", 503) from None


def _tls_args(remote: str, tls) -> list[str]:
    if tls is None or "ssl:" not in remote:
        return []
    return [f"--private-key={tls.key}", f"--certificate={tls.cert}", f"--ca-cert={tls.ca}"]


def _ask(args: list[str], what: str, remote: str, timeout: float) -> str:
    """An ovsdb-client answer, asked again until `timeout` (a Raft member that is still joining
    its cluster has no database to show yet)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = _tool(args)
        if proc.returncode == 0:
            return proc.stdout.strip()
        if time.monotonic() > deadline:
            raise WeftError(f"cannot {what} at {remote}: {proc.stderr.strip()}", 503)
        time.sleep(0.2)


def upgrade_server(remote: str, tls=None, schema: str | None = None, timeout: float = 30.0) -> str | None:
    """Bring the database on `remote` (one server or a cluster's members, comma-separated) to
    this weftd's schema. Returns the version it was converted from, or None when it was current.
    Raises WeftError when the database is newer, or differs at the same version."""
    schema = schema or schema_path()
    known = known_version(schema)
    extra = _tls_args(remote, tls)
    for attempt in range(2):
        current = _ask(["ovsdb-client", *extra, "--timeout=10", "get-schema-version", remote, DB_NAME],
                       "read the northbound schema version", remote, timeout)
        verdict = compare(current, known)
        if verdict == "newer":
            raise _newer_error(remote, current, known)
        needs = _ask(["ovsdb-client", *extra, "--timeout=10", "needs-conversion", remote, schema],
                     "compare the northbound schema", remote, timeout)
        if needs == "no":
            return None
        if verdict == "same":
            raise _same_version_error(remote, current)
        conv = _tool(["ovsdb-client", *extra, "--timeout=60", "convert", remote, schema], timeout=90)
        if conv.returncode == 0:
            LOG.warning("northbound schema upgraded in place: %s -> %s (%s)", current, known, remote)
            return current
        if attempt == 0:
            continue            # another replica may have converted it meanwhile: look again
        raise WeftError(f"northbound schema conversion {current} -> {known} at {remote} failed: "
                        f"{conv.stderr.strip()}", 500)
    return None


def upgrade_file(db: str, schema: str | None = None) -> str | None:
    """The same for a database file no server has open (weftd's own local store)."""
    schema = schema or schema_path()
    known = known_version(schema)
    proc = _tool(["ovsdb-tool", "db-version", db])
    if proc.returncode != 0:
        raise WeftError(f"cannot read the schema version of {db}: {proc.stderr.strip()}", 500)
    current = proc.stdout.strip()
    verdict = compare(current, known)
    if verdict == "newer":
        raise _newer_error(db, current, known)
    needs = _tool(["ovsdb-tool", "needs-conversion", db, schema])
    if needs.stdout.strip() != "yes":
        return None
    if verdict == "same":
        raise _same_version_error(db, current)
    conv = _tool(["ovsdb-tool", "convert", db, schema])
    if conv.returncode != 0:
        raise WeftError(f"ovsdb-tool convert {db} failed: {conv.stderr.strip()}", 500)
    LOG.warning("northbound schema upgraded in place: %s -> %s (%s)", current, known, db)
    return current
