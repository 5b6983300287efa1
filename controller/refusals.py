"""Refused switch connections: counted by reason, logged once per peer and reason, the last few kept for /v1/status."""
from __future__ import annotations

import collections
import logging
import time

from controller.identity import REFUSALS

LOG = logging.getLogger("controller.engine")
RECENT = 20                 # refusals shown in /v1/status
LOGGED_KEYS = 4096          # (reason, peer, what) remembered to log each once; the oldest forgotten


class Refusals:
    """Owned by the engine loop (record) and read through Engine.call (view)."""

    def __init__(self, metrics=None):
        self.metrics = metrics
        self.counts = dict.fromkeys(REFUSALS, 0)
        self.recent: collections.deque = collections.deque(maxlen=RECENT)
        self._logged: collections.OrderedDict = collections.OrderedDict()

    def record(self, reason: str, address, detail: str, dpid: int | None = None) -> None:
        """One refused connection: counted always, logged at WARNING the first time this peer
        address is refused for this reason and datapath id (a switch that keeps reconnecting
        with a bad certificate fills no log), at DEBUG after that."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.switch_refusals.labels(reason).inc()
        peer = address[0] if isinstance(address, (tuple, list)) and address else str(address)
        self.recent.append({"reason": reason, "peer": addr_text(address), "time": time.time(),
                            "datapath_id": None if dpid is None else f"{dpid:016x}", "detail": detail})
        key = (reason, peer, dpid)
        if key in self._logged:
            self._logged[key] += 1
            LOG.debug("switch connection from %s refused again (%s): %s", addr_text(address), reason, detail)
            return
        self._logged[key] = 1
        while len(self._logged) > LOGGED_KEYS:
            self._logged.popitem(last=False)
        LOG.warning("switch connection from %s refused (%s): %s; disconnected, no flows sent "
                    "(further refusals of this peer for this reason are only counted)",
                    addr_text(address), reason, detail)

    def view(self) -> dict:
        return {"total": sum(self.counts.values()), "by_reason": dict(self.counts),
                "recent": list(self.recent)}


def addr_text(address) -> str:
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
