"""weftd's TLS material and policy: its key, certificate and CA checked at start, and which remotes need TLS.

One identity serves both directions: weftd's OpenFlow listener presents it to switches (and
requires theirs, signed by the CA), and weftd's southbound presents it to each host's
ovsdb-server over `ssl:` (and checks the server's against the same CA).
"""
from __future__ import annotations

import dataclasses
import os
import ssl

from topology.errors import WeftError

MIN_VERSION = ssl.TLSVersion.TLSv1_2
PLAIN_REMOTES = ("unix:", "tcp:")


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    key: str
    cert: str
    ca: str


def from_flags(key: str | None, cert: str | None, ca: str | None,
               insecure_openflow: bool) -> TlsFiles | None:
    """weftd's --ssl-key/--ssl-cert/--ssl-ca checked (None: no TLS material, only allowed with
    --insecure-openflow). Raises WeftError saying what is missing or wrong."""
    given = {"--ssl-key": key, "--ssl-cert": cert, "--ssl-ca": ca}
    missing = [flag for flag, value in given.items() if not value]
    if len(missing) == len(given):
        if insecure_openflow:
            return None
        raise WeftError("the OpenFlow listener is TLS-only: give --ssl-key, --ssl-cert and --ssl-ca "
                        "(weftd's key, its certificate and the CA that signs the switches' "
                        "certificates), or --insecure-openflow to accept switches over plain TCP "
                        "without knowing who they are")
    if missing:
        raise WeftError(f"incomplete TLS settings: missing {', '.join(missing)} "
                        f"(--ssl-key, --ssl-cert and --ssl-ca go together)")
    for flag, path in given.items():
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise WeftError(f"{flag} {path}: no such readable file")
    files = TlsFiles(key, cert, ca)
    server_context(files)        # the key must match the certificate and the CA must parse
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The OpenFlow listener's context: TLS 1.2+, a client certificate signed by the CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSION
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as exc:
        raise WeftError(f"--ssl-cert {files.cert} / --ssl-key {files.key}: {exc.strerror or exc} "
                        f"(is the key the certificate's?)") from None
    try:
        ctx.load_verify_locations(files.ca)
    except (ssl.SSLError, OSError) as exc:
        raise WeftError(f"--ssl-ca {files.ca}: not a PEM CA certificate ({exc})") from None
    return ctx


def configure_ovsdb_client(files: TlsFiles | None) -> None:
    """Give the `ovs` library weftd's key, certificate and CA for `ssl:` OVSDB remotes."""
    if files is None:
        return
    import ovs.stream
    ovs.stream.Stream.ssl_set_private_key_file(files.key)
    ovs.stream.Stream.ssl_set_certificate_file(files.cert)
    ovs.stream.Stream.ssl_set_ca_cert_file(files.ca)


def check_ovsdb_remote(remote, insecure) -> None:
    """A host's OVSDB remote must be ssl:IP:PORT; unix:/tcp: only when the caller says `insecure`."""
    if not isinstance(insecure, bool):
        raise WeftError(f"invalid insecure={insecure!r}: expected true or false")
    if not isinstance(remote, str) or not remote:
        raise WeftError("missing OVSDB remote: expected ssl:IP:PORT")
    if remote.startswith("ssl:"):
        return
    if remote.startswith(PLAIN_REMOTES):
        if insecure:
            return
        raise WeftError(f"OVSDB remote {remote!r} is not TLS: use ssl:IP:PORT (the host's "
                        f"ovsdb-server with a certificate from weftd's CA), or allow a plain "
                        f"remote explicitly with --insecure (API: \"insecure\": true)")
    raise WeftError(f"invalid OVSDB remote {remote!r}: expected ssl:IP:PORT "
                    f"(unix:PATH or tcp:IP:PORT with --insecure)")
