"""Per-port QoS: parse and check rates (kbit/mbit/gbit or bits/s), bursts, a packet rate and DSCP."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from topology.errors import WeftError

RATE_FIELDS = ("egress_rate", "egress_burst", "ingress_rate", "ingress_burst")
FIELDS = RATE_FIELDS + ("pps", "dscp")
MAX_KBIT = 0xFFFFFFFF                 # an OpenFlow meter band's rate and burst are 32-bit (kbit/s, kbit)
MAX_PPS = 0xFFFFFFFF
_UNITS = {"": 1, "bit": 1, "kbit": 1000, "mbit": 1000 ** 2, "gbit": 1000 ** 3}
_RATE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]*)")


@dataclass(frozen=True)
class QoS:
    """A port's limits, each in the unit a meter counts: rates in kbit/s, bursts in kbit, packets
    per second (both directions, each), DSCP 0-63 on what the port sends. None: not limited."""
    egress_rate: int | None = None
    egress_burst: int | None = None
    ingress_rate: int | None = None
    ingress_burst: int | None = None
    pps: int | None = None
    dscp: int | None = None

    def as_map(self) -> dict[str, int]:
        """The set values by name (the store's column, the API's view)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def view(self) -> dict:
        """The API's view: each value as stored plus the rates as text ("50mbit")."""
        out = dict(self.as_map())
        for name in RATE_FIELDS:
            if name in out:
                out[f"{name}_text"] = kbit_text(out[name])
        return out


def from_map(values: dict | None) -> QoS | None:
    """The QoS of a store row's column (None when empty)."""
    if not values:
        return None
    return QoS(**{k: int(v) for k, v in values.items() if k in FIELDS})


def kbit_text(kbit: int) -> str:
    for unit, size in (("gbit", 10 ** 6), ("mbit", 10 ** 3)):
        if kbit % size == 0:
            return f"{kbit // size}{unit}"
    return f"{kbit}kbit"


def rate(value, what: str) -> int:
    """A rate or burst as whole kbit (or kbit/s): "100mbit", "1.5gbit", "800kbit", a bare number
    of bits (a string of digits or a JSON integer). WeftError says what is wrong."""
    hint = (f"invalid {what} {value!r}: give a positive rate like 100mbit, 1.5gbit, 800kbit or a "
            f"number of bits per second")
    if isinstance(value, bool):
        raise WeftError(hint)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        raise WeftError(hint)
    m = _RATE_RE.fullmatch(text)
    if m is None or m.group(2) not in _UNITS:
        raise WeftError(hint)
    number, unit = m.group(1), _UNITS[m.group(2)]
    whole, _, frac = number.partition(".")
    bits_num = int(whole + frac) * unit            # exact: no float rounding
    bits, rest = divmod(bits_num, 10 ** len(frac))
    if rest or bits == 0:
        raise WeftError(hint if bits == 0 else f"invalid {what} {value!r}: not a whole number of bits")
    kbit, rest = divmod(bits, 1000)
    if rest:
        raise WeftError(f"invalid {what} {value!r}: meters count whole kbit/s (1kbit = 1000 bits), "
                        f"so give a multiple of 1000 bits")
    if kbit > MAX_KBIT:
        raise WeftError(f"invalid {what} {value!r}: at most {kbit_text(MAX_KBIT)}")
    return kbit


def whole(value, what: str, low: int, high: int, unit: str) -> int:
    """An integer from low to high (a JSON integer or a string of ASCII digits)."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WeftError(f"invalid {what} {value!r}: give {unit} as a whole number from {low} to {high}")
    return value


def parse(body) -> QoS | None:
    """A port's QoS from the API's `qos` object ({egress_rate, egress_burst, ingress_rate,
    ingress_burst, pps, dscp}; rates as text or bits/s), or None for null/{} (no QoS)."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise WeftError(f"invalid qos {body!r}: give an object with egress_rate, egress_burst, "
                        f"ingress_rate, ingress_burst, pps and/or dscp, or null for none")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise WeftError(f"unknown qos field(s): {', '.join(map(str, unknown))} (qos takes "
                        f"{', '.join(FIELDS)})")
    values = {k: v for k, v in body.items() if v is not None}
    if not values:
        return None
    out = {}
    for name in RATE_FIELDS:
        if name in values:
            out[name] = rate(values[name], name.replace("_", " "))
    for direction in ("egress", "ingress"):
        if f"{direction}_burst" in out and f"{direction}_rate" not in out:
            raise WeftError(f"an {direction} burst needs an {direction} rate: give --{direction}-rate "
                            f"({direction}_rate) too")
    if "pps" in values:
        out["pps"] = whole(values["pps"], "pps", 1, MAX_PPS, "packets per second")
    if "dscp" in values:
        out["dscp"] = whole(values["dscp"], "dscp", 0, 63, "DSCP (a 6-bit code point)")
    return QoS(**out)


class _Keep:
    """The `qos` of an update that does not touch the port's QoS."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()
