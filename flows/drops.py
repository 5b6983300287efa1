"""Drop flows: each names its reason in its cookie and sends a metered sample of what it drops to weftd.

Every flow that drops a packet is made here (or is a table's miss, flows/pipeline.py): its
cookie's feature byte is `cookies.DROP_FLAG | reason` and its owner the object whose flow it
is (a port, a router), so `weft flows` shows why it drops, and its actions are
`pipeline.DROP_ACTIONS`: the OpenFlow drop meter (per host, `weft traffic config
--drop-sample-pps`) and a packet-in of the first DROP_SAMPLE_BYTES. The packet itself goes
nowhere. Over the meter's rate, the switch's datapath discards the sample too, so a flood of
dropped packets costs weftd at most the configured packet-ins per second and host.

Why packet-in through a meter rather than IPFIX flow sampling with the cookie as observation
point: a meter bounds samples by rate (a flood gives at most N per second) while IPFIX
sampling is a probability (a flood gives a fixed share of it, and a single blocked probe is
most likely never seen); a packet-in carries the cookie, table and pipeline registers (reg4:
the port a packet was headed to) at once, with no exporter cache or template to wait for.
"""
from __future__ import annotations

from flows import cookies
from flows.flow import Flow
from flows.pipeline import DROP_ACTIONS

REASONS = tuple(cookies.DROP_REASONS)
# reasons the trace (and the drop collector) derive, not carried by any flow's cookie
DERIVED = ("isolation", "ttl-expired")


def drop(reason: str, owner: str | None, table: int, priority: int, match: tuple) -> Flow:
    """A flow dropping what `match` selects in `table`, for `reason` (one of REASONS)."""
    if reason not in cookies.DROP_REASONS:
        raise ValueError(f"unknown drop reason {reason!r}")
    return cookies.make(f"drop:{reason}", owner, table, priority, match, DROP_ACTIONS)


def is_drop(flow: Flow) -> bool:
    return cookies.drop_reason(flow.cookie) is not None
