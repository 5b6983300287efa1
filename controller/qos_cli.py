"""The `weft port create|update` QoS flags (--egress-rate, --ingress-rate, --pps, --dscp, --no-qos)."""
from __future__ import annotations

from topology.errors import WeftError

FLAGS = (("egress_rate", "RATE", "limit what the port sends: 100mbit, 1.5gbit, 800kbit or bits/s"),
         ("egress_burst", "SIZE", "bucket size of the egress limit (default: 80%% of the rate)"),
         ("ingress_rate", "RATE", "limit what the port receives (same units)"),
         ("ingress_burst", "SIZE", "bucket size of the ingress limit (default: 80%% of the rate)"),
         ("pps", "N", "limit packets per second, each direction"),
         ("dscp", "N", "DSCP (0-63) set on the IPv4/IPv6 packets the port sends (and their tunnel)"))


def add_flags(parser, removable: bool) -> None:
    """QoS flags on `port create` (removable False) or `port update` (with --no-qos)."""
    for name, metavar, text in FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), dest="qos_" + name, metavar=metavar, help=text)
    if removable:
        parser.add_argument("--no-qos", action="store_true",
                            help="remove the port's QoS (the QoS flags given replace it as a whole)")


def body(args) -> dict | None:
    """The API's `qos` object from the flags; None when no QoS flag was given; {} for --no-qos
    (port update sends it as null: remove the port's QoS)."""
    given = {name: getattr(args, "qos_" + name) for name, _m, _t in FLAGS
             if getattr(args, "qos_" + name, None) is not None}
    if getattr(args, "no_qos", False):
        if given:
            raise WeftError("--no-qos removes the port's QoS: give it alone, without "
                            + ", ".join("--" + n.replace("_", "-") for n in given))
        return {}
    return given or None


def text(qos: dict | None) -> str:
    """One line saying a port's QoS ("none" without)."""
    if not qos:
        return "none"
    parts = []
    for direction in ("egress", "ingress"):
        if f"{direction}_rate" in qos:
            burst = f" burst {qos[direction + '_burst_text']}" if f"{direction}_burst" in qos else ""
            parts.append(f"{direction} {qos[direction + '_rate_text']}{burst}")
    if "pps" in qos:
        parts.append(f"{qos['pps']} pps")
    if "dscp" in qos:
        parts.append(f"dscp {qos['dscp']}")
    return ", ".join(parts)
