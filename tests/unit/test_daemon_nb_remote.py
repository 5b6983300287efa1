"""weftd's northbound remotes: unix: or ssl: (with weftd's certificate), tcp: only when told."""
import pytest

from controller import daemon

TLS = ["--ssl-key", "k", "--ssl-cert", "c", "--ssl-ca", "ca"]


@pytest.mark.parametrize("argv", [
    ["--nb", "unix:/run/nb.sock"],
    ["--nb", "unix:/a,unix:/b,unix:/c"],
    ["--nb", "ssl:192.0.2.1:6641,ssl:192.0.2.2:6641", *TLS],
    ["--nb", "tcp:192.0.2.1:6641", "--insecure-nb"],
    [],
])
def test_accepted(argv):
    daemon.parse_args(argv)


@pytest.mark.parametrize("argv, message", [
    (["--nb", "tcp:192.0.2.1:6641"], "is not TLS: use ssl:IP:PORT"),
    (["--nb", "unix:/a,tcp:192.0.2.1:6641"], "--insecure-nb"),
    (["--nb", "ssl:192.0.2.1:6641"], "needs --ssl-key, --ssl-cert and --ssl-ca"),
    (["--nb", "http://x"], "expected unix:PATH, ssl:IP:PORT or tcp:IP:PORT"),
    (["--insecure-nb"], "--insecure-nb is for a tcp: --nb"),
])
def test_refused_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        daemon.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
