"""weftd refuses to start, loudly, when its OpenFlow or API listener cannot be had."""
import socket

import pytest

from controller import daemon


@pytest.fixture
def taken():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def _free() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_openflow_port_taken_exits_non_zero_with_a_clear_error(taken, tmp_path, capsys):
    rc = daemon.main(["--run-dir", str(tmp_path), "--of-listen", f"127.0.0.1:{taken}"])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"cannot listen for OpenFlow (--of-listen) on 127.0.0.1:{taken}" in err
    assert not (tmp_path / "nb").exists()          # nothing was started


def test_api_port_taken_exits_non_zero_with_a_clear_error(taken, tmp_path, capsys):
    rc = daemon.main(["--run-dir", str(tmp_path), "--of-listen", f"127.0.0.1:{_free()}",
                      "--api-listen", f"127.0.0.1:{taken}", "--api-token-file", str(tmp_path / "t"),
                      "--api-no-tls"])
    assert rc == 1
    assert f"cannot listen for the API (--api-listen) on 127.0.0.1:{taken}" in capsys.readouterr().err


def test_ha_needs_a_shared_northbound(tmp_path):
    with pytest.raises(SystemExit):
        daemon.parse_args(["--ha"])


def test_an_api_listener_handed_over_must_be_a_tcp_socket(tmp_path, capsys):
    """--api-listen fd:N (the lab's loopback listener): a descriptor that is no TCP socket is
    refused before anything starts."""
    with open(tmp_path / "file", "w") as f:
        rc = daemon.main(["--run-dir", str(tmp_path), "--of-listen", f"127.0.0.1:{_free()}",
                          "--api-listen", f"fd:{f.fileno()}", "--api-token-file", str(tmp_path / "t"),
                          "--api-no-tls"])
    assert rc == 1
    assert "not a socket handed to weftd" in capsys.readouterr().err
    assert not (tmp_path / "nb").exists()
