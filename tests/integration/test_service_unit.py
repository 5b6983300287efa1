"""weftd as packaging/weftd.service runs it: the unit checks out, weftd says READY=1 once it serves, and stops cleanly.

Under systemd (PID 1) the unit itself is installed as a runtime unit and started; otherwise (this
sandbox, containers) the unit's own ExecStartPre/ExecStart command lines are run with a
NOTIFY_SOCKET the test listens on, as systemd would."""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.client import Client
from lab.pki import Pki

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "weftd.service"
WEFTD = str(Path(sys.executable).parent / "weftd")


def unit_lines(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(key + "=")]


def command(line: str, config: str) -> list[str]:
    return shlex.split(line.replace("@WEFTD@", WEFTD).replace("/etc/weft/weftd.toml", config))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def systemd_running() -> bool:
    if shutil.which("systemctl") is None:
        return False
    state = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True).stdout.strip()
    return state in ("running", "degraded", "starting")


@pytest.fixture
def setup(tmp_path):
    pki = Pki.create(str(tmp_path / "pki"))
    key, cert = pki.issue("weftd")
    run = tmp_path / "run"
    of_port = free_port()
    config = tmp_path / "weftd.toml"
    config.write_text(f'run-dir = "{run}"\napi-socket = "{run}/weftd.sock"\n'
                      f'of-listen = "127.0.0.1:{of_port}"\nssl-key = "{key}"\nssl-cert = "{cert}"\n'
                      f'ssl-ca = "{pki.ca_cert}"\n')
    yield {"config": str(config), "run": run, "of_port": of_port}
    pidfile = run / "nb" / "nb.pid"            # weftd's own northbound ovsdb-server outlives it
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def test_unit_file_verifies_and_is_hardened(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for name in ("weftd.service", "weft-nb.service"):
        text = (REPO / "packaging" / name).read_text()
        unit = tmp_path / name
        unit.write_text(text.replace("@WEFTD@", WEFTD).replace("@PYTHON@", sys.executable))
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=25",
                               str(unit)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-500:]
        assert re.search(r"Overall exposure level for \S+: [0-2]\.\d OK", proc.stdout), proc.stdout[-300:]
    text = UNIT.read_text()
    for setting in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "CapabilityBoundingSet=\n", "User=weft"):
        assert setting in text + "\n", setting


def test_weftd_under_its_unit_notifies_ready_once_serving_and_stops_cleanly(setup, tmp_path):
    if systemd_running():
        return run_under_systemd(setup, tmp_path)
    (pre,), (start,) = unit_lines("ExecStartPre"), unit_lines("ExecStart")
    check = subprocess.run(command(pre, setup["config"]), capture_output=True, text=True)
    assert check.returncode == 0 and "configuration OK" in check.stdout, check.stderr
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(60)
    log = open(tmp_path / "weftd.out", "w")
    proc = subprocess.Popen(command(start, setup["config"]), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "NOTIFY_SOCKET": notify_path}, start_new_session=True)
    try:
        message = listener.recv(4096).decode()
        assert "READY=1" in message.split("\n"), message
        # ready means ready: the API answers and OpenFlow accepts connections right away
        status = Client(f"unix:{setup['run']}/weftd.sock", timeout=5).get("/v1/status")
        assert status["hosts"] == {}
        with socket.create_connection(("127.0.0.1", setup["of_port"]), timeout=5):
            pass
        assert "STATUS=OpenFlow on 127.0.0.1:" in message
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0          # TimeoutStopSec
        assert "STOPPING=1" in listener.recv(4096).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
        log.close()
    assert "Traceback" not in (tmp_path / "weftd.out").read_text()


def test_weftd_refuses_a_bad_file_before_starting(tmp_path):
    (pre,) = unit_lines("ExecStartPre")
    bad = tmp_path / "bad.toml"
    bad.write_text('of-listen = "127.0.0.1:6653"\nssl_key = "/nonexistent"\n')
    check = subprocess.run(command(pre, str(bad)), capture_output=True, text=True)
    assert check.returncode == 2 and "key 'ssl_key': unknown key (did you mean 'ssl-key'?)" in check.stderr


def run_under_systemd(setup, tmp_path):
    """The same unit started by the machine's systemd, as root, from /run/systemd/system."""
    name = f"weftd-test-{os.getpid()}"
    path = Path(f"/run/systemd/system/{name}.service")
    text = UNIT.read_text().replace("@WEFTD@", WEFTD).replace("/etc/weft/weftd.toml", setup["config"])
    path.write_text(text.replace("User=weft", "User=root").replace("Group=weft", "Group=root")
                    .replace("ProtectHome=yes", "ProtectHome=no").replace("PrivateTmp=yes", "PrivateTmp=no")
                    + f"\n[Service]\nReadWritePaths={tmp_path}\nRuntimeDirectory={name}\n")
    try:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "start", name], check=True, timeout=120)   # returns at READY=1
        show = subprocess.run(["systemctl", "show", name, "-p", "ActiveState,StatusText"],
                              capture_output=True, text=True).stdout
        assert "ActiveState=active" in show and "OpenFlow on" in show, show
        assert Client(f"unix:{setup['run']}/weftd.sock", timeout=5).get("/v1/status")["hosts"] == {}
        subprocess.run(["systemctl", "stop", name], check=True, timeout=60)
        show = subprocess.run(["systemctl", "show", name, "-p", "Result,ExecMainStatus"],
                              capture_output=True, text=True).stdout
        assert "Result=success" in show and "ExecMainStatus=0" in show, show
    finally:
        subprocess.run(["systemctl", "stop", name], capture_output=True)
        path.unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
