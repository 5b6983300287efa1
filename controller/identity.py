"""Switch identity: may this connection speak for this datapath id? (pure; weftd's admission rule)

A switch says who it is twice: its TLS certificate (verified against weftd's CA during the
handshake) names a host, and its FEATURES_REPLY claims a datapath id, which weft derives from
the host name (`ovsdb.southbound.datapath_id`). A connection is admitted only when

1. the datapath id belongs to a host of the model (else `unknown-datapath`),
2. its certificate names that host, as subject CN or DNS subjectAltName (else
   `certificate-mismatch`; not checked when weftd runs with --insecure-openflow, where
   connections carry no identity at all), and
3. no other live connection speaks for that datapath id (else `duplicate-connection`: the
   first keeps working; a restarted switch is let in once its old connection is seen gone).

A TLS handshake that fails (no certificate, one no trusted CA signed, an expired one) never
reaches this check: the listener refuses it as `tls-handshake`.
"""
from __future__ import annotations

import dataclasses

ACCEPTED = "accepted"
TLS_HANDSHAKE = "tls-handshake"
UNKNOWN_DATAPATH = "unknown-datapath"
CERTIFICATE_MISMATCH = "certificate-mismatch"
DUPLICATE = "duplicate-connection"
REFUSALS = (TLS_HANDSHAKE, UNKNOWN_DATAPATH, CERTIFICATE_MISMATCH, DUPLICATE)


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str          # ACCEPTED or one of REFUSALS
    detail: str          # one line for the log and the status


def cert_names(peercert: dict | None) -> tuple[str, ...]:
    """The names a verified peer certificate gives (`ssl.SSLSocket.getpeercert()` form):
    subject commonNames first, then DNS subjectAltNames, without repeats. `ovs-pki req+sign
    NAME` writes "NAME id:UUID" (unless --unique): that names NAME."""
    if not peercert:
        return ()
    values = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
    values += [value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"]
    names: list[str] = []
    for value in values:
        name = value.split(" id:", 1)[0]
        if name and name not in names:
            names.append(name)
    return tuple(names)


def admit(dpid: int, owner: str | None, names: tuple[str, ...] | None, live: bool) -> Verdict:
    """Whether a connection claiming `dpid` is admitted.

    owner: the host whose datapath id `dpid` is, or None; names: what the connection's
    certificate names (`cert_names`), or None when the connection carries no identity
    (plain TCP, --insecure-openflow); live: another connection already speaks for `dpid`."""
    if owner is None:
        return Verdict(False, UNKNOWN_DATAPATH, f"datapath id {dpid:016x} belongs to no known host")
    if names is not None and owner not in names:
        shown = ", ".join(names) if names else "nothing"
        return Verdict(False, CERTIFICATE_MISMATCH,
                       f"datapath id {dpid:016x} belongs to {owner} but the certificate names {shown}")
    if live:
        return Verdict(False, DUPLICATE,
                       f"{owner} (datapath id {dpid:016x}) already has a live connection; "
                       f"the first one keeps it")
    return Verdict(True, ACCEPTED, f"{owner} (datapath id {dpid:016x})"
                   + ("" if names is None else " identified by its certificate"))
