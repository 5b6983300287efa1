"""`services.classify` over numpy arrays: one int64 code per record, decoded to a Service once per group.

Code layout (fits 27 bits, so it packs beside an attribution index in one int64):
  -1                                   no IP protocol (Service None)
  proto << 18 | 1 << 17 | 1            a protocol without ports: Service(proto, None, True)
  proto << 18 | port << 1 | to_server  Service(proto, port, to_server)
The rule is services.classify's (tests check the two agree on every port pair class).
"""
from __future__ import annotations

import numpy as np

from .services import EPHEMERAL_START, PORTED, Service, classify

NONE_CODE = -1
_PORTLESS = (1 << 17) | 1
_PORTED = np.zeros(256, dtype=bool)
_PORTED[list(PORTED)] = True


# port -> its class (0: < 1024, 1: < EPHEMERAL_START, 2: the rest) << 16 | port. classify's
# rule is then one comparison: the destination is the server when its (class, port) is at
# most the source's, and the service port is the smaller one's port.
_RANK = np.arange(1 << 16, dtype=np.int64)
_RANK[1024:] |= 1 << 16
_RANK[EPHEMERAL_START:] += 1 << 16


def _ports16(a) -> bool:
    return a.dtype.kind == "u" and a.dtype.itemsize <= 2 or \
        (len(a) == 0 or (int(a.min()) >= 0 and int(a.max()) < 1 << 16))


def codes(proto, sport, dport, has_ports=None) -> np.ndarray:
    """Service codes for arrays of IP protocol and ports; `has_ports` False marks records
    whose transport header is absent (fragments, cut headers): portless like classify's
    None ports."""
    proto = np.asarray(proto)
    sport = np.asarray(sport)
    dport = np.asarray(dport)
    if _ports16(sport) and _ports16(dport):       # two table reads (16-bit ports: always)
        rd, rs = _RANK[dport], _RANK[sport]
        to_server = rd <= rs
        port = np.minimum(rd, rs)
        port &= 0xFFFF
    else:
        sport = sport.astype(np.int64)
        dport = dport.astype(np.int64)
        c1 = ((dport < 1024) & (sport >= 1024)) | \
            ((dport < EPHEMERAL_START) & (sport >= EPHEMERAL_START))
        c2 = ((sport < 1024) & (dport >= 1024)) | \
            ((sport < EPHEMERAL_START) & (dport >= EPHEMERAL_START))
        to_server = c1 | (~c2 & (dport <= sport))
        port = np.where(to_server, dport, sport)
    proto = proto.astype(np.int64)
    ported = _PORTED[proto & 0xFF] & (proto < 256)
    if has_ports is not None:
        ported &= has_ports
    head = proto << 18
    return np.where(ported, head | (port << 1) | to_server, head | _PORTLESS)


_DECODED: dict[int, Service | None] = {NONE_CODE: None}


def service_of(code: int) -> Service | None:
    """The Service of one code (shared objects, as classify's cache gives)."""
    s = _DECODED.get(code)
    if s is None and code != NONE_CODE:
        proto = code >> 18
        if code & (1 << 17):
            s = classify(proto, None, None)
        else:
            s = Service(proto, (code >> 1) & 0xFFFF, bool(code & 1))
        if len(_DECODED) > 300_000:
            _DECODED.clear()
            _DECODED[NONE_CODE] = None
        _DECODED[code] = s
    return s
