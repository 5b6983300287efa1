"""weftd's own northbound file: converted in place to a newer schema; a newer file, or a changed schema under the same version, refused before any server starts."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ovsdb import nbschema
from ovsdb.nbserver import ensure_local_server
from topology.errors import WeftError

pytestmark = pytest.mark.integration
WEFTD = str(Path(sys.executable).parent / "weftd")


def schema_variant(path, bump: bool) -> str:
    with open(nbschema.DEFAULT_SCHEMA) as f:
        schema = json.load(f)
    if bump:
        major, minor, _ = nbschema.parse_version(schema["version"])
        schema["version"] = f"{major}.{minor + 1}.0"
    schema["tables"]["Tenant"]["columns"]["upgrade_probe"] = {"type": {"key": "string", "min": 0, "max": 1}}
    path.write_text(json.dumps(schema))
    return str(path)


def db_version(db) -> str:
    return subprocess.run(["ovsdb-tool", "db-version", db], capture_output=True, text=True,
                          check=True).stdout.strip()


def make_db(directory, schema) -> str:
    os.makedirs(directory)
    db = os.path.join(directory, "weft_nb.db")
    subprocess.run(["ovsdb-tool", "create", db, schema], check=True)
    return db


def test_an_older_file_is_converted_in_place(tmp_path):
    db = make_db(tmp_path / "nb", nbschema.DEFAULT_SCHEMA)
    newer = schema_variant(tmp_path / "new.ovsschema", bump=True)
    assert nbschema.upgrade_file(db, newer) == nbschema.known_version()
    assert db_version(db) == nbschema.known_version(newer)
    assert nbschema.upgrade_file(db, newer) is None               # current now: nothing to do


def test_a_newer_file_is_refused_and_left_alone(tmp_path):
    newer = schema_variant(tmp_path / "new.ovsschema", bump=True)
    db = make_db(tmp_path / "nb", newer)
    before = Path(db).read_bytes()
    with pytest.raises(WeftError, match=r"newer than this weftd knows"):
        ensure_local_server(str(tmp_path / "nb"))
    assert Path(db).read_bytes() == before and not (tmp_path / "nb" / "nb.pid").exists()


def test_a_changed_schema_under_the_same_version_is_refused(tmp_path):
    db = make_db(tmp_path / "nb", nbschema.DEFAULT_SCHEMA)
    same = schema_variant(tmp_path / "same.ovsschema", bump=False)
    with pytest.raises(WeftError, match=r"a schema change must bump the version"):
        nbschema.upgrade_file(db, same)


def test_weftd_refuses_to_start_on_a_newer_database(tmp_path):
    newer = schema_variant(tmp_path / "new.ovsschema", bump=True)
    make_db(tmp_path / "run" / "nb", newer)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([WEFTD, "--run-dir", str(tmp_path / "run"), "--insecure-openflow",
                           "--of-listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"has schema version {nbschema.known_version(newer)}, newer than this weftd knows" in proc.stderr
    assert not (tmp_path / "run" / "nb" / "nb.pid").exists()
