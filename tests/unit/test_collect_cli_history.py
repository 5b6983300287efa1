"""`weft collect --history DIR`: the standalone collector keeps flow history and templates across restarts."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

from test_collect_template_store import ovs_ipfix, split


def start(history):
    proc = subprocess.Popen([sys.executable, "-m", "collectors.cli", "--ipfix", "127.0.0.1:0",
                             "--history", history, "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.join(os.path.dirname(__file__), "..", ".."))
    line = proc.stderr.readline()
    assert "listening ipfix=127.0.0.1:" in line, line
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return json.loads(out)


def send(port, datagrams):
    """Send, then wait until the collector's socket queue is empty (all read)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    deadline = time.monotonic() + 20
    while rx_queue(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rx_queue(port) == 0


def rx_queue(port):
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) == port:
                return int(cols[4].split(":")[1], 16)
    raise AssertionError(f"no UDP socket on port {port}")


def test_collect_restart_keeps_templates_and_writes_history_at_exit(tmp_path):
    templates, data = split(ovs_ipfix()[:22])
    proc, port = start(str(tmp_path))
    try:
        send(port, templates)
    finally:
        first = stop(proc)
    assert first["protocols"]["ipfix"]["flows"] == 0
    assert glob.glob(str(tmp_path / "templates" / "ipfix" / "*.json"))
    proc, port = start(str(tmp_path))            # restarted: data sets only
    try:
        send(port, data)
    finally:
        second = stop(proc)
    assert second["protocols"]["ipfix"]["flows"] > 0            # decoded, not held
    files = glob.glob(str(tmp_path / "flows" / "date=*" / "hour=*" / "*.parquet"))
    assert files, "no flow history written at exit"
    import pyarrow.parquet as pq
    rows = pq.read_table(files).to_pylist()
    assert {r["source"] for r in rows} == {"collect"}
    assert sum(r["bytes"] for r in rows) > 0
