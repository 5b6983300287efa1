"""Shell completion in a real bash, with names from a running weftd's API; zsh code generated."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.client import Client
from topology.errors import WeftError

pytestmark = pytest.mark.integration
BIN = str(Path(sys.executable).parent)
COMPLETE = r'''
source <(weft completion bash)
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMPREPLY=()
_python_argcomplete weft
printf '%s\n' "${COMPREPLY[@]}"
'''


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A weftd of the test's own (local store, OpenFlow on loopback) with a few objects."""
    run = tmp_path_factory.mktemp("completion")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([f"{BIN}/weftd", "--run-dir", str(run), "--insecure-openflow",
                             "--of-listen", f"127.0.0.1:{port}", "--log-file", str(run / "weftd.log")],
                            start_new_session=True)
    endpoint = f"unix:{run}/weftd.sock"
    try:
        client = Client(endpoint, timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/v1/status")
                break
            except WeftError:
                assert proc.poll() is None and time.monotonic() < deadline, "weftd did not start"
                time.sleep(0.05)
        for tenant in ("red", "blue"):
            client.post("/v1/tenants", {"name": tenant})
        client.post("/v1/networks", {"tenant": "red", "name": "net", "cidrs": ["10.0.0.0/24"]})
        for name in ("web1", "db"):
            client.post("/v1/ports", {"tenant": "red", "network": "net", "name": name})
        client.post("/v1/security-groups", {"tenant": "red", "name": "web"})
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        pidfile = run / "nb" / "nb.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def complete(line: str, endpoint: str) -> list[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "WEFT_API": endpoint}
    proc = subprocess.run(["bash", "-c", COMPLETE, "complete", line], capture_output=True, text=True,
                          env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return sorted(w.strip() for w in proc.stdout.splitlines() if w.strip())


@pytest.mark.parametrize("line, words", [
    ("weft ho", ["host"]),
    ("weft host b", ["bootstrap"]),
    ("weft tenant delete ", ["blue", "red"]),
    ("weft port show red/", ["red/net/db", "red/net/web1"]),
    ("weft port show red/net/w", ["red/net/web1"]),
    ("weft network delete r", ["red/net"]),
    ("weft port list ", ["blue", "red", "red/net"]),
    ("weft port create red/net/x --sg ", ["blue/default", "red/default", "red/web"]),
    ("weft sg show red/w", ["red/web"]),
    ("weft tenant delete --c", ["--cascade"]),
])
def test_bash_completes_commands_and_names_from_the_api(api, line, words):
    assert complete(line, api) == words


def test_no_api_completes_no_names_quickly(tmp_path):
    start = time.monotonic()
    assert complete("weft port show ", f"unix:{tmp_path}/none.sock") == []
    assert time.monotonic() - start < 20


def test_zsh_code():
    proc = subprocess.run([f"{BIN}/weft", "completion", "zsh"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("#compdef weft")
