"""The northbound connection's health as log lines: each loss and each recovery logged once, with what weft does."""
from __future__ import annotations

import logging
import time

LOG = logging.getLogger("weftd.nb")


class NbLink:
    """Fed the IDL's state on every turn of the store's loop; logs transitions only."""

    def __init__(self, remote: str):
        self.remote = remote
        self.up: bool | None = None
        self.server: str | None = None
        self.lost_at: float | None = None
        self.losses = 0

    def observe(self, connected: bool, server: str | None) -> None:
        if connected == self.up and (not connected or server == self.server):
            return
        now = time.monotonic()
        if connected:
            if self.up is False:
                LOG.warning("northbound: connected to %s after %.2f s without a leader; writes "
                            "accepted again", server, now - self.lost_at)
            elif self.up and server != self.server:
                LOG.warning("northbound: moved from %s to %s (the new leader)", self.server, server)
            else:
                LOG.info("northbound: connected to %s", server)
        elif self.up:
            self.losses += 1
            self.lost_at = now
            several = "," in self.remote
            LOG.warning("northbound: lost %s%s; API reads are served from the last snapshot, writes "
                        "answer 503 (retry) until %s", self.server,
                        " (the cluster leader)" if several else "",
                        "a leader is found among the other members" if several else
                        "it is reachable again (reconnecting)")
        self.up, self.server = connected, server if connected else self.server

    def view(self) -> dict:
        return {"connected": bool(self.up), "server": self.server if self.up else None,
                "losses": self.losses}
