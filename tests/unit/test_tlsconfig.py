"""weftd's TLS flags and the OVSDB remote policy: refused loudly, saying what is missing."""
import pytest

from controller.tlsconfig import check_ovsdb_remote, from_flags
from topology.errors import WeftError


@pytest.fixture
def files(tmp_path):
    from lab.pki import Pki
    pki = Pki.create(str(tmp_path / "pki"))
    key, cert = pki.issue("weftd")
    other_key, _ = pki.issue("hv1")
    return {"key": key, "cert": cert, "ca": pki.ca_cert, "other_key": other_key}


def test_no_tls_material_refuses_to_start_unless_insecure_is_explicit():
    with pytest.raises(WeftError) as err:
        from_flags(None, None, None, insecure_openflow=False)
    msg = str(err.value)
    assert "--ssl-key" in msg and "--ssl-cert" in msg and "--ssl-ca" in msg and "--insecure-openflow" in msg
    assert from_flags(None, None, None, insecure_openflow=True) is None


def test_partial_or_wrong_material_is_refused_even_when_insecure(files):
    for insecure in (False, True):
        with pytest.raises(WeftError, match="missing --ssl-ca"):
            from_flags(files["key"], files["cert"], None, insecure)
    with pytest.raises(WeftError, match="no such readable file"):
        from_flags(files["key"], files["cert"], "/nonexistent/ca.pem", False)
    with pytest.raises(WeftError, match="is the key the certificate's"):
        from_flags(files["other_key"], files["cert"], files["ca"], False)
    with pytest.raises(WeftError, match="--ssl-ca"):
        from_flags(files["key"], files["cert"], files["key"], False)     # a key is no CA
    tls = from_flags(files["key"], files["cert"], files["ca"], False)
    assert (tls.key, tls.cert, tls.ca) == (files["key"], files["cert"], files["ca"])


@pytest.mark.parametrize("remote,insecure,ok", [
    ("ssl:198.19.0.11:6640", False, True),
    ("ssl:198.19.0.11:6640", True, True),
    ("tcp:198.19.0.11:6640", False, False),
    ("unix:/run/openvswitch/db.sock", False, False),
    ("tcp:198.19.0.11:6640", True, True),
    ("unix:/run/openvswitch/db.sock", True, True),
    ("pssl:6640", True, False),
    ("198.19.0.11:6640", True, False),
    ("", True, False),
    (None, False, False),
])
def test_ovsdb_remote_policy(remote, insecure, ok):
    if ok:
        check_ovsdb_remote(remote, insecure)
    else:
        with pytest.raises(WeftError):
            check_ovsdb_remote(remote, insecure)


def test_a_plain_remote_says_how_to_allow_it():
    with pytest.raises(WeftError, match=r"ssl:IP:PORT.*--insecure"):
        check_ovsdb_remote("tcp:10.0.0.1:6640", False)


@pytest.mark.parametrize("flag", ["yes", 1, "true", None])
def test_insecure_must_be_a_boolean(flag):
    with pytest.raises(WeftError, match="expected true or false"):
        check_ovsdb_remote("tcp:10.0.0.1:6640", flag)


def test_weftd_without_tls_material_exits_non_zero_saying_what_is_missing(tmp_path, capsys):
    import socket

    from controller import daemon
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc = daemon.main(["--run-dir", str(tmp_path), "--of-listen", f"127.0.0.1:{port}"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "TLS-only" in err and "--ssl-key, --ssl-cert and --ssl-ca" in err and "--insecure-openflow" in err
    assert not (tmp_path / "nb").exists()          # nothing was started
