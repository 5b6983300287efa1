"""`weft lab up` shows its progress on a terminal (hosts built, hosts in sync, elapsed) and nothing when its output is JSON."""
import os
import pty
import select
import subprocess

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration


def run_on_tty(lab: Lab, *args: str) -> tuple[int, str, str]:
    """Run weft with stderr on a terminal; returns (status, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([lab.weft_path, *args], env=lab.env, stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read()
    proc.wait(120)
    os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


def test_lab_up_progress_on_a_terminal_only(tmp_path):
    lab = Lab(f"p{os.getpid() % 100000}")
    lab.down()
    try:
        status, out, shown = run_on_tty(lab, "lab", "up", "--hosts", "2")
        assert status == 0, shown
        assert "lab up: 2/2 hosts built, 0 left, " in shown
        assert "lab up: 2/2 hosts in sync with weftd, 0 left, " in shown
        assert shown.endswith("\r\x1b[K")             # the line is cleared at the end
        assert out.startswith(f"lab {lab.name} is up: 2 hosts") and "\r" not in out
        status, out, shown = run_on_tty(lab, "--wait", "tenant", "create", "red", "-o", "json")
        assert status == 0 and shown == "" and '"name": "red"' in out
    finally:
        lab.down()
