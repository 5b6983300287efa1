"""Records each host's bindings in the northbound store, off the southbound and engine paths.

The engine already acts on bindings the moment the southbound reports them; the store keeps
them only so that a restarted weftd knows where ports were before every host has reported.
So the write is lazy: the latest bindings per host are kept, written by this thread, and
retried with backoff when the store is unavailable. Only numbered NICs are recorded.
"""
from __future__ import annotations

import logging
import threading
import time

from topology.errors import WeftError

LOG = logging.getLogger(__name__)
CHUNK = 500                     # hosts per store transaction (a cold start brings thousands)


def _names(chunk: dict) -> str:
    names = list(chunk)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class BindingRecorder:
    def __init__(self, store, max_backoff: float = 5.0, delay: float = 0.5):
        """delay: how long a change waits before it is written, so that a burst (a VM plugged,
        many VMs at start) is one write per host and the write never competes with the port-up
        it follows (the engine has acted on the bindings already)."""
        self.store = store
        self.max_backoff = max_backoff
        self.delay = delay
        self._cond = threading.Condition()
        self._latest: dict[str, dict[str, int]] = {}     # host -> {port uuid: ofport}, to write
        self._written: dict[str, dict[str, int]] = {}
        self._stop = False
        self._paused = False            # HA: a standby replica leaves the recording to the active
        self._thread = threading.Thread(target=self._loop, name="binding-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused
            self._cond.notify()

    def _sync(self, chunk: dict) -> None:
        many = getattr(self.store, "sync_bindings_of", None)
        if many is not None:
            many(chunk)
        else:                           # a store without it (tests' fakes): one host at a time
            for host, bindings in chunk.items():
                self.store.sync_bindings(host, bindings)

    def record(self, host: str, bindings: dict[str, tuple[int, str]]) -> None:
        """Any thread; returns at once. Pending NICs (ofport 0) are not recorded."""
        numbered = {p: o for p, (o, _name) in bindings.items() if o > 0}
        with self._cond:
            self._latest[host] = numbered
            self._cond.notify()

    def _loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or not self._paused and any(
                    self._written.get(h) != b for h, b in self._latest.items()), timeout=None)
                if self._stop:
                    return
            if self.delay:
                time.sleep(self.delay)
            with self._cond:
                if self._stop:
                    return
                todo = {h: b for h, b in self._latest.items() if self._written.get(h) != b}
            failed = False
            hosts = sorted(todo)
            for i in range(0, len(hosts), CHUNK):     # a few transactions, not one per host
                chunk = {h: todo[h] for h in hosts[i:i + CHUNK]}
                try:
                    self._sync(chunk)
                    with self._cond:
                        self._written.update(chunk)
                except WeftError as exc:
                    LOG.error("cannot record bindings of %s: %s (retrying)", _names(chunk), exc)
                    failed = True
                except Exception:
                    LOG.exception("recording bindings of %s failed", _names(chunk))
                    failed = True
            backoff = min(self.max_backoff, backoff * 2 or 0.1) if failed else 0.0
            if backoff:
                with self._cond:
                    self._cond.wait_for(lambda: self._stop, timeout=backoff)
