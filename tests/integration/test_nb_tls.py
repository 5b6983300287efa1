"""The northbound database over TLS: a member serving ssl: accepts weft's store with a certificate of
its CA and refuses a client whose certificate no CA signed."""
import dataclasses
import os
import signal
import socket
import subprocess
import sys

import pytest

from lab.pki import Pki, self_signed
from ovsdb import nbcluster

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_member(tmp_path):
    pki = Pki.create(str(tmp_path / "pki"))
    key, cert = pki.issue("nb")
    m = nbcluster.members(str(tmp_path / "nb"), "127.0.0.1", free_port(), count=1,
                          tls=(key, cert, pki.ca_cert))[0]
    m = dataclasses.replace(m, client=f"127.0.0.1:{free_port()}")
    assert m.raft.startswith("ssl:127.0.0.1:")
    nbcluster.create([m])
    nbcluster.start(m)
    try:
        nbcluster.wait_formed([m])
        yield m, pki
    finally:
        with open(m.pidfile) as f:
            os.kill(int(f.read()), signal.SIGTERM)


def test_the_store_speaks_tls_to_the_northbound_and_strangers_are_refused(tls_member, tmp_path):
    m, pki = tls_member
    remote = f"ssl:{m.client}"
    key, cert = pki.issue("weftd")
    # weft's own store (the `ovs` IDL) with weftd's certificate: it reads and writes
    code = (
        "import sys\n"
        "from controller.tlsconfig import TlsFiles, configure_ovsdb_client\n"
        "from ovsdb.nbstore import NorthboundStore\n"
        f"configure_ovsdb_client(TlsFiles({key!r}, {cert!r}, {pki.ca_cert!r}))\n"
        f"s = NorthboundStore({remote!r}); s.start(timeout=20)\n"
        "print(s.create_tenant('red')['name'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0 and out.stdout.strip() == "red", out.stderr
    # a client with a certificate no CA signed gets nothing, and neither does plain TCP
    bad_key, bad_cert = self_signed(str(tmp_path / "stranger"), "weftd")
    stranger = subprocess.run(["ovsdb-client", "--timeout=5", f"--private-key={bad_key}",
                               f"--certificate={bad_cert}", f"--ca-cert={pki.ca_cert}",
                               "dump", remote, nbcluster.DB_NAME, "Tenant"],
                              capture_output=True, text=True)
    assert stranger.returncode != 0 and "red" not in stranger.stdout, stranger
    plain = subprocess.run(["ovsdb-client", "--timeout=3", "dump", f"tcp:{m.client}",
                            nbcluster.DB_NAME, "Tenant"], capture_output=True, text=True)
    assert plain.returncode != 0 and "red" not in plain.stdout, plain
    # while the CA's own client reads it
    good = subprocess.run(["ovsdb-client", "--timeout=5", f"--private-key={key}", f"--certificate={cert}",
                           f"--ca-cert={pki.ca_cert}", "dump", remote, nbcluster.DB_NAME, "Tenant"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and "red" in good.stdout, good
