"""Switch admission as a pure rule: a certificate's names and a claimed datapath id -> accepted or refused, with why."""
import ssl

import pytest

from controller import identity
from controller.identity import admit, cert_names

DPID = 0x7765_0091_3E9D_C001


@pytest.mark.parametrize("owner,names,live,reason", [
    ("hv1", ("hv1",), False, identity.ACCEPTED),
    ("hv1", ("weft-node", "hv1"), False, identity.ACCEPTED),          # a SAN names it
    ("hv1", None, False, identity.ACCEPTED),                          # --insecure-openflow: no identity
    (None, ("hv1",), False, identity.UNKNOWN_DATAPATH),
    (None, None, False, identity.UNKNOWN_DATAPATH),
    ("hv1", ("hv2",), False, identity.CERTIFICATE_MISMATCH),          # another host's certificate
    ("hv1", (), False, identity.CERTIFICATE_MISMATCH),                # a certificate naming nobody
    ("hv1", ("HV1",), False, identity.CERTIFICATE_MISMATCH),          # names are exact
    ("hv1", ("hv1.example",), False, identity.CERTIFICATE_MISMATCH),
    ("hv1", ("hv1",), True, identity.DUPLICATE),
    ("hv1", None, True, identity.DUPLICATE),
    ("hv1", ("hv2",), True, identity.CERTIFICATE_MISMATCH),           # the stronger reason first
    (None, ("hv1",), True, identity.UNKNOWN_DATAPATH),
])
def test_admission(owner, names, live, reason):
    verdict = admit(DPID, owner, names, live)
    assert verdict.reason == reason
    assert verdict.ok == (reason == identity.ACCEPTED)
    assert f"{DPID:016x}" in verdict.detail


def test_refusals_say_what_was_claimed_and_what_was_presented():
    v = admit(DPID, "hv1", ("hv2",), False)
    assert "belongs to hv1" in v.detail and "names hv2" in v.detail
    assert "names nothing" in admit(DPID, "hv1", (), False).detail
    assert "no known host" in admit(DPID, None, ("hv1",), False).detail
    assert "already has a live connection" in admit(DPID, "hv1", ("hv1",), True).detail


def test_cert_names_reads_common_names_then_dns_alt_names():
    cert = {"subject": ((("organizationName", "weft"),), (("commonName", "hv1"),)),
            "subjectAltName": (("DNS", "hv1"), ("DNS", "hv1.lab"), ("IP Address", "198.19.0.11"))}
    assert cert_names(cert) == ("hv1", "hv1.lab")
    assert cert_names({"subject": ((("organizationName", "hv1"),),)}) == ()   # O= names no one
    assert cert_names(None) == () and cert_names({}) == ()
    ovs_pki = {"subject": ((("organizationName", "Open vSwitch"),),
                           (("commonName", "hv1 id:2f6b7e0c-1c1e-4f7e-9a55-0e5d1b1c2d3e"),)),
               "subjectAltName": (("DNS", "hv1 id:2f6b7e0c-1c1e-4f7e-9a55-0e5d1b1c2d3e"),)}
    assert cert_names(ovs_pki) == ("hv1",)                  # ovs-pki's default subject
    assert cert_names({"subject": ((("commonName", "hv1x id:1"),),)}) == ("hv1x",)


def test_lab_certificates_name_their_host(tmp_path):
    """The lab's CA issues what the rule expects: CN and SAN = the host, signed by the CA,
    private keys readable by their owner only; a self-signed one does not verify."""
    import os

    from lab.pki import Pki, self_signed

    pki = Pki.create(str(tmp_path / "pki"))
    key, cert = pki.issue("hv1")
    decoded = ssl._ssl._test_decode_cert(cert)
    assert cert_names(decoded) == ("hv1",)
    assert admit(DPID, "hv1", cert_names(decoded), False).ok
    assert not admit(DPID, "hv2", cert_names(decoded), False).ok
    for path in (key, pki.ca_key):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(pki.dir).st_mode & 0o777 == 0o700
    with pytest.raises(FileExistsError):
        Pki.create(pki.dir)                       # a CA is never silently replaced

    # the chain: the CA's store accepts its own certificate and refuses a self-signed one
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)                # the key is the certificate's
    _skey, scert = self_signed(str(tmp_path / "rogue"), "hv1")
    from cryptography import x509
    ca = x509.load_pem_x509_certificate(open(pki.ca_cert, "rb").read())
    good = x509.load_pem_x509_certificate(open(cert, "rb").read())
    rogue = x509.load_pem_x509_certificate(open(scert, "rb").read())
    good.verify_directly_issued_by(ca)
    with pytest.raises(Exception):
        rogue.verify_directly_issued_by(ca)
