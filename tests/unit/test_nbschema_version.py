"""The northbound schema's version rules: older is upgraded, newer refused; the shipped schema's version parses."""
import pytest

from ovsdb import nbschema
from topology.errors import WeftError


@pytest.mark.parametrize("current, known, verdict", [
    ("1.4.0", "1.4.0", "same"), ("1.4.0", "1.5.0", "upgrade"), ("1.9.0", "1.10.0", "upgrade"),
    ("1.5.0", "1.4.9", "newer"), ("2.0.0", "1.99.99", "newer"), ("0.9.9", "1.0.0", "upgrade"),
])
def test_compare(current, known, verdict):
    assert nbschema.compare(current, known) == verdict


@pytest.mark.parametrize("text", ["1.4", "1.4.0.1", "a.b.c", "1.٤.0", "", "1..0"])
def test_bad_versions_are_refused(text):
    with pytest.raises(WeftError, match="invalid schema version"):
        nbschema.parse_version(text)


def test_shipped_schema_has_a_version():
    assert nbschema.parse_version(nbschema.known_version(nbschema.DEFAULT_SCHEMA))


def test_weft_nb_schema_names_another_file(monkeypatch, tmp_path):
    monkeypatch.setenv("WEFT_NB_SCHEMA", str(tmp_path / "x.ovsschema"))
    assert nbschema.schema_path() == str(tmp_path / "x.ovsschema")
    monkeypatch.delenv("WEFT_NB_SCHEMA")
    assert nbschema.schema_path() == nbschema.DEFAULT_SCHEMA
