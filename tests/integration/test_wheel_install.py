"""The wheel: built from a copy of the source, installed into a fresh virtualenv, gives working `weft` and `weftd`.

The fresh virtualenv gets weft from the wheel alone (no index); its dependencies are the ones
this test's own environment already has (a path entry, so nothing is downloaded), and the test
checks that `controller` and the package data are imported from the fresh install."""
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run(*args, **kw) -> subprocess.CompletedProcess:
    """In / (not the source tree: `python -c` would import it from the working directory)."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          cwd="/", **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "build", "*.egg-info", ".pytest_cache"))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps",
                "--disable-pip-version-check", "-q", "-w", tmp / "dist", src)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("weft-*.whl")
    venv = tmp / "venv"
    made = run("/usr/bin/python3", "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    pip = run(venv / "bin" / "pip", "install", "--no-deps", "--no-index", "-q",
              "--disable-pip-version-check", wheel)
    assert pip.returncode == 0, pip.stderr[-2000:]
    site = run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(site.stdout.strip(), "weft-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, wheel


def test_wheel_installs_weft_from_itself_with_its_data(installed):
    venv, wheel = installed
    where = run(venv / "bin" / "python", "-c",
                "import controller, ovsdb.nbschema as s, os; print(controller.__file__); "
                "print(os.path.exists(s.DEFAULT_SCHEMA)); "
                "print(os.path.exists(os.path.join(os.path.dirname(controller.__file__), 'openapi.yaml')))")
    assert where.returncode == 0, where.stderr
    lines = where.stdout.split()
    assert lines[0].startswith(str(venv)), lines       # not the source tree's
    assert lines[1:] == ["True", "True"]
    deps = run(venv / "bin" / "pip", "check")
    assert deps.returncode == 0, deps.stdout


def test_weft_help(installed):
    venv, _ = installed
    proc = run(venv / "bin" / "weft", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: weft"), proc.stderr
    for command in ("tenant", "network", "port", "host", "lab"):
        assert command in proc.stdout


def test_weftd_check_config_good_and_bad(installed, tmp_path):
    venv, _ = installed
    good = tmp_path / "good.toml"
    good.write_text((REPO / "packaging" / "weftd.toml").read_text()
                    .replace('ssl-key = "/etc/weft/pki/weftd.key"', "insecure-openflow = true")
                    .replace("ssl-cert =", "# ").replace("ssl-ca =", "# "))
    proc = run(venv / "bin" / "weftd", "--config", good, "--check-config")
    assert proc.returncode == 0 and "configuration OK" in proc.stdout, proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('of-listen = "192.0.2.10:6653"\ninsecure-openflow = true\nunderlay-mtu = 64\n')
    proc = run(venv / "bin" / "weftd", "--config", bad, "--check-config")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"weftd: error: {bad}: key 'underlay-mtu': ") and proc.stderr.count("\n") == 1
