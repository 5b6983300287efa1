"""`weft collect` (collectors.cli): foreground run with SIGTERM/SIGINT, exports, metrics, errors."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HV1 = "127.0.0.11"

MODEL = {
    "tenants": [{"uuid": "t1", "name": "red"}],
    "networks": {"n1": {"uuid": "n1", "tenant": "red", "name": "net", "cidr": "10.1.0.0/24",
                        "vni": 5001, "gateway": None}},
    "ports": [{"uuid": "p1", "tenant": "red", "network": "net", "name": "web",
               "mac": "52:54:00:00:00:01", "ips": ["10.1.0.1"], "extra": "ignored"},
              {"uuid": "p2", "tenant": "red", "network": "net", "name": "db",
               "mac": "52:54:00:00:00:02", "ips": ["10.2.0.2"]}],
    "hosts": [{"name": "hv1", "tunnel_ip": "172.16.0.1"}],
    "bindings": [{"port": "p1", "host": "hv1", "ofport": 1}],
    "exporters": {HV1: "hv1"},
    "sflow_ifindexes": [{"host": "hv1", "ifindex": 31, "port": "p1"}],
}


def start(*args, tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from collectors.cli import main; sys.exit(main())",
         "--sflow", "127.0.0.1:0", "--netflow", "127.0.0.1:0", "--ipfix", "127.0.0.1:0",
         "--metrics", "127.0.0.1:0", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.match(r"weft collect: listening sflow=([\d.]+):(\d+) netflow=([\d.]+):(\d+) "
                 r"ipfix=([\d.]+):(\d+) metrics=(\S+)", line)
    if m is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no listening line: {line!r} {err!r}")
    g = m.groups()
    addrs = {"sflow": (g[0], int(g[1])), "netflow": (g[2], int(g[3])),
             "ipfix": (g[4], int(g[5]))}
    return proc, addrs, g[6]


def scrape(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def wait_metric(url: str, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while scrape(url, name) < value:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never reached {value}")
        time.sleep(0.05)


def test_run_until_sigterm_prints_json_counters_and_exports(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(MODEL))
    proc, addrs, metrics = start("-o", "json", "--model", str(tmp_path / "model.json"),
                                 "--export-dir", str(tmp_path / "out"), "--bucket", "1",
                                 tmp_path=tmp_path)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HV1, 0))
        frame = bytes.fromhex("5254000000025254000000010800") + bytes(
            [0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 1, 0, 1, 10, 2, 0, 2]) + bytes(20)
        s.sendto(fx.sflow_datagram([fx.sflow_flow_sample([fx.rec_raw_header(frame, 100)],
                                                         rate=10, inp=(0, 31))], agent=HV1),
                 addrs["sflow"])
        s.sendto(fx.v5_packet([fx.v5_record("10.1.0.1", "10.2.0.2", inp=1)] * 2), addrs["netflow"])
        s.sendto(b"junk", addrs["ipfix"])
        wait_metric(metrics, "weft_collector_datagrams_total", 3)
        assert scrape(metrics, "weft_traffic_bytes_total") == 100 * 10 + 2 * 1500
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    c = json.loads(out)
    assert c["totals"]["datagrams"] == 3 and c["totals"]["malformed"] == 1
    assert c["protocols"]["sflow"] | {} == {**c["protocols"]["sflow"], "datagrams": 1,
                                            "records": 1, "malformed": 0, "counted": 1}
    assert (c["protocols"]["netflow5"]["records"], c["protocols"]["ipfix"]["malformed"]) == (2, 1)
    assert {e["host"] for e in c["exporters"] if e["exporter"] == HV1} == {"hv1"}
    rows = [json.loads(x) for f in sorted((tmp_path / "out").glob("*.jsonl"))
            for x in f.read_text().splitlines()]
    assert {(r["src"], r["dst"]) for r in rows} == {("red/net/web", "red/net/db")}
    assert sum(r["bytes"] for r in rows) == 100 * 10 + 2 * 1500


def test_sigint_prints_a_table(tmp_path):
    proc, addrs, metrics = start(tmp_path=tmp_path)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"\x00\x05", addrs["netflow"])
        wait_metric(metrics, "weft_collector_malformed_total", 1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PROTOCOL", "DATAGRAMS", "RECORDS", "MALFORMED"]
    nf5 = next(x for x in lines if x.startswith("netflow5"))
    assert nf5.split()[1:4] == ["1", "0", "1"]
    assert next(x for x in lines if x.startswith("total")).split()[1] == "1"


@pytest.mark.parametrize("argv,msg", [
    ([], "give at least one of"),
    (["--sflow", "nowhere"], "--sflow: bad address"),
    (["--netflow", "127.0.0.1:99999"], "out of range"),
    (["--sflow", ":0", "--model", "/nonexistent/model.json"], "cannot read model file"),
    (["--sflow", ":0", "--exporter", "novalue"], "want ADDR=HOST"),
    (["--sflow", ":0", "--bucket", "0"], "--bucket must be > 0"),
])
def test_bad_arguments_one_line_exit_2(argv, msg, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and err.startswith("weft collect: error:")


def test_unknown_option_and_bad_model_json(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--bogus"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    assert cli.main(["--sflow", ":0", "--model", str(bad)]) == 2
    bad.write_text(json.dumps({"ports": [{"uuid": "p"}]}))
    assert cli.main(["--sflow", ":0", "--model", str(bad)]) == 2
    assert "bad port" in capsys.readouterr().err


def test_port_in_use_exit_1(capsys):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        assert cli.main(["--sflow", f"127.0.0.1:{s.getsockname()[1]}"]) == 1
    finally:
        s.close()
    assert "cannot listen" in capsys.readouterr().err


def test_add_parser_wires_into_a_weft_style_parser():
    parser = argparse.ArgumentParser(prog="weft")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(["collect", "--sflow", ":6343", "-o", "json",
                              "--exporter", "10.0.0.1=hv1"])
    assert (args.command, args.sflow, args.output, args.exporter) == (
        "collect", ":6343", "json", ["10.0.0.1=hv1"])
    assert args.func is cli.run


def test_model_from_dict_lists_and_maps():
    m, exporters, ifindexes = cli.model_from_dict(MODEL)
    assert m.ports["p1"].ips == ("10.1.0.1",) and m.networks["n1"].vni == 5001
    assert m.bindings["p1"].ofport == 1 and m.hosts["hv1"].ovsdb == ""
    assert exporters == {HV1: "hv1"} and ifindexes == {("hv1", 31): "p1"}
    with pytest.raises(cli.UsageError):
        cli.model_from_dict({"sflow_ifindexes": [{"host": "hv1"}]})


ROWS = [{"src": "red/net/a", "dst": "unknown:203.0.113.9", "src_tenant": "red",
         "dst_tenant": None, "bytes": 1_234_567, "packets": 900, "rate_bps": 2_500_000.0,
         "first_seen": 1_700_000_000.5, "last_seen": 1_700_000_009.0}]


def test_render_matrix_formats():
    table = cli.render_matrix(ROWS, "table").splitlines()
    assert table[0].split() == ["SRC", "DST", "SRC_TENANT", "DST_TENANT", "BYTES", "PACKETS",
                                "RATE_BPS", "FIRST_SEEN", "LAST_SEEN"]
    assert "1.2 MB" in table[1] and "2.5 Mbit/s" in table[1] and "2023-11-14T22:13:20Z" in table[1]
    assert " - " in table[1]  # no dst tenant
    assert json.loads(cli.render_matrix(ROWS, "json")) == ROWS
    rows = list(csv.DictReader(io.StringIO(cli.render_matrix(ROWS, "csv"))))
    assert rows[0]["bytes"] == "1234567" and rows[0]["dst_tenant"] == ""
    assert rows[0]["first_seen"] == "2023-11-14T22:13:20.500Z"
    assert cli.render_matrix([], "table") == "(none)"
    with pytest.raises(ValueError):
        cli.render_matrix(ROWS, "xml")


def test_module_runs_with_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "collectors.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, env={**os.environ})
    assert out.returncode == 0 and "--sflow" in out.stdout
