"""The lab's certificate authority: a CA, and a certificate per hypervisor and for weftd, in the run directory.

`weft lab up` makes `<run-dir>/pki/`: `ca.pem` (the CA certificate every party trusts),
`ca.key`, and `NAME.key` + `NAME.pem` for weftd and each hypervisor, whose subject CN (and
DNS subjectAltName) is the name: weftd accepts a switch only when its certificate names the
host that owns its datapath id. Keys are ECDSA P-256 (a certificate costs a millisecond, so
`lab up --hosts 100` does not wait for RSA key generation, as `ovs-pki` would make it);
private keys are written mode 0600 in a 0700 directory. Outside the lab an operator brings
their own certificates (e.g. `ovs-pki`), weftd only reads files.
"""
from __future__ import annotations

import datetime
import os
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "weft lab CA"
VALIDITY = datetime.timedelta(days=365)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes, mode: int) -> None:
    """Write a file created with `mode` from the start (a key is never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "weft"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(cn: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False,
                san: bool = True) -> x509.Certificate:
    """A certificate for `cn` signed by `issuer_key` (self-signed when it is `key`)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        # one identity for both ends: a switch is a client of weftd's OpenFlow listener and its
        # ovsdb-server a server to weftd; weftd the other way round
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]),
                                            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA in `directory` that issues certificates; `files(name)` = (key path, cert path)."""

    def __init__(self, directory: str):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self._ca = None

    @classmethod
    def create(cls, directory: str, ca_name: str = CA_NAME) -> "Pki":
        """A new CA (the directory must not hold one: a lab never reuses another's keys)."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        pki = cls(directory)
        if os.path.exists(pki.ca_key):
            raise FileExistsError(f"{pki.ca_key} exists")
        key = _key()
        cert = certificate(ca_name, key, _name(ca_name), key, ca=True)
        _write(pki.ca_key, _key_pem(key), 0o600)
        _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        pki._ca = (key, cert)
        return pki

    def _authority(self):
        if self._ca is None:
            with open(self.ca_key, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
            with open(self.ca_cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            self._ca = (key, cert)
        return self._ca

    def files(self, name: str) -> tuple[str, str]:
        return os.path.join(self.dir, f"{name}.key"), os.path.join(self.dir, f"{name}.pem")

    def issue(self, name: str, *, san: bool = True) -> tuple[str, str]:
        """A key and a CA-signed certificate naming `name`; returns (key path, cert path)."""
        key_pem, cert_pem = self.issue_pem(name, san=san)
        key_path, cert_path = self.files(name)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
        return key_path, cert_path

    def issue_pem(self, name: str, *, san: bool = True) -> tuple[bytes, bytes]:
        """The same, kept in memory (PEM key, PEM certificate): nothing written here."""
        ca_key, ca_cert = self._authority()
        key = _key()
        cert = certificate(name, key, ca_cert.subject, ca_key, san=san)
        return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def self_signed(directory: str, name: str) -> tuple[str, str]:
    """A key and a certificate naming `name` that no CA signed (what an impostor could make)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = _key()
    cert = certificate(name, key, _name(name), key)
    key_path, cert_path = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, cert_path


def lab_pki_dir(lab_dir: str) -> str:
    return os.path.join(lab_dir, "pki")
