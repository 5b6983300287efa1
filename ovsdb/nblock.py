"""Electing the active weftd replica: an OVSDB lock on the northbound leader, held on a connection of its own.

Every replica asks the northbound cluster's leader for the lock `weftd_active`; the server
grants it to one and queues the others, and hands it to the next in line the moment the
holder's connection goes (kill -9 included: the socket closes). The lock lives on a
connection of its own because the `ovs` IDL asserts its lock in every transaction: the
store's writes must not depend on being the active replica (every replica serves the API).

Locks are per server in a clustered database, so the lock counts only when it comes from
the leader: this IDL is `leader_only`, and `has_lock` is trusted only while the IDL monitors
(its server check, which refuses followers, has passed on this very connection).

`on_change(active)` is called from this module's thread on every change of the verdict:
True when the lock is granted; False when the server says another replica holds it. Losing
the northbound connection is no verdict: the holder stays active (its switches keep their
master) until the lock is re-granted or another replica takes it.
"""
from __future__ import annotations

import logging
import threading
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from ovsdb.nbserver import SCHEMA
from ovsdb.nbstore import RECONNECT_MAX_MS, RECONNECT_MIN_MS

LOG = logging.getLogger("weftd.ha")
LOCK = "weftd_active"


class ActiveLock:
    def __init__(self, remote: str, on_change, name: str = LOCK):
        helper = ovs.db.idl.SchemaHelper(location=SCHEMA)
        helper.register_columns("Traffic_Config", [])        # a lock needs a connection, not data
        self.idl = ovs.db.idl.Idl(remote, helper, leader_only=True)
        reconnect = self.idl._session.reconnect
        reconnect.min_backoff, reconnect.max_backoff = RECONNECT_MIN_MS, RECONNECT_MAX_MS
        self.idl.set_lock(name)
        self.name = name
        self.on_change = on_change
        self.active: bool | None = None       # the first verdict is always reported
        self.connected = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="nb-lock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True

    def _verdict(self) -> bool | None:
        """True: we hold the lock (from the leader); False: another replica does; None: unknown."""
        idl = self.idl
        if not (idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING):
            return None
        if idl.has_lock:
            return True
        return False if idl.is_lock_contended else None

    def _loop(self) -> None:
        while not self._stop:
            self.idl.run()
            connected = self.idl._session.is_connected() and self.idl.state == self.idl.IDL_S_MONITORING
            if connected != self.connected:
                self.connected = connected
                if not connected and self.active:
                    LOG.warning("ha: lost the northbound connection that holds lock %s; staying "
                                "active until it is granted again or another replica takes over",
                                self.name)
            verdict = self._verdict()
            if verdict is not None and verdict != self.active:
                self.active = verdict
                try:
                    self.on_change(verdict)
                except Exception:
                    LOG.exception("ha: role change failed")
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(1000)
            poller.block()
