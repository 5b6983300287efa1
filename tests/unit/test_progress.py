"""Progress lines: drawn on a terminal, cleared at the end; nothing on a pipe or with -o json."""
import io
import os
import pty

from controller.progress import Progress, enabled


def read_all(fd) -> str:
    """Everything written to the terminal, once its other end is closed (then read gives EIO)."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return out.decode()
        if not chunk:
            return out.decode()
        out += chunk


def test_a_terminal_sees_done_left_and_elapsed_then_a_clean_line():
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        with Progress("lab up", total=3, unit="hosts built", stream=tty) as p:
            for _ in range(3):
                p.step()
            p.stage("hosts in sync", 3)
            p.set(3)
    text = read_all(master)
    os.close(master)
    assert "lab up: 3/3 hosts built, 0 left," in text
    assert "lab up: 3/3 hosts in sync, 0 left," in text
    assert text.endswith("\r\x1b[K")                   # nothing left behind on the line


def test_pipes_files_and_json_output_see_nothing():
    buf = io.StringIO()
    with Progress("lab up", total=2, stream=buf) as p:
        p.step()
        p.step()
    assert buf.getvalue() == ""
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        assert enabled("table", tty) and not enabled("json", tty)
    os.close(master)
    assert not enabled("table", io.StringIO())


def test_text_without_a_total_or_a_unit():
    p = Progress("waiting", unit=None, stream=io.StringIO())
    assert p.text().startswith("waiting, ") and p.text().endswith(" s")
    p = Progress("creating", unit="ports", stream=io.StringIO())
    p.step(5)
    assert p.text().startswith("creating: 5 ports, ")
