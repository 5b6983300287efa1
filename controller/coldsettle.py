"""A cold start's hold: each host's first bundle waits until the hosts' databases have been read, so it gets one bundle, not several."""
from __future__ import annotations

SCAN = 0.1              # s between looks at which held hosts are ready


class ColdSettle:
    """Whether the engine still holds first syncs after it started.

    What a host must hold depends on where every other host's VMs are (their bindings, read
    from each host's database). At a cold start with thousands of hosts, a host synced as
    soon as its switch is reconciled got its flows in pieces: one bundle, then another each
    time hosts sharing its networks reported their NICs (2-3 bundles a host, each one a
    compile, a plan, an encoding and a commit). Held until the reports are in, it gets one.

    The hold ends, for good, at the first of: every host of the model has reported; no
    progress for `quiet` seconds (no host reported for the first time, connected its switch
    or was newly held), so a host that is down holds the others up that long and no more;
    `limit` seconds after the start. (Counting only first reports, a 2 s pause in them on a
    machine at load 8 ended a 5,000-host cold start's hold with 2,000 hosts still to come.)
    Before that, a held host whose own report is in and whose networks have every port bound
    (its flows are then complete) is let go on its own (`ready`), so the hosts' bundles go out
    while the others still connect. It is the engine loop's own (no locking)."""

    def __init__(self, quiet: float, limit: float):
        self.quiet, self.limit = quiet, limit
        self.on = quiet > 0
        self.started: float | None = None
        self.last: float | None = None          # the last progress: a first report or a first hold
        self.held: set[str] = set()
        self.released: set[str] = set()         # let go before the end: not held again
        self.scan_at = 0.0                      # when `ready` may next look at the held hosts
        self._blocker: dict[str, str] = {}      # held host -> a port it waits for (checked first)

    def start(self, now: float) -> None:
        self.started = now

    def progress(self, now: float) -> None:
        """A host's database was read for the first time, or a switch connected."""
        if self.on:
            self.last = now

    def hold(self, host: str, now: float) -> bool:
        """Whether `host`'s sync waits (recorded, to run when the hold ends)."""
        if not self.on or host in self.released:
            return False
        if host not in self.held:
            self.held.add(host)
            self.last = now if self.last is None else max(self.last, now)
        return True

    def over(self, now: float, model_hosts, reported) -> bool:
        """Check the end conditions; True once (and ever after) the hold is over."""
        if not self.on:
            return True
        start = self.started if self.started is not None else now
        if now - start >= self.limit or (self.last is not None and now - self.last >= self.quiet) \
                or (model_hosts and not model_hosts.keys() - reported.keys()):
            self.on = False
        return not self.on

    def deadline(self) -> float | None:
        """When `over` may next turn True by time alone (None: the hold is over)."""
        if not self.on:
            return None
        start = self.started or 0.0
        due = min(start + self.limit, (self.last + self.quiet) if self.last is not None else start + self.limit)
        return min(due, self.scan_at) if self.held else due

    def ready(self, now: float, index, reported) -> list[str]:
        """The held hosts whose flows no longer wait for anyone (at most every SCAN seconds):
        they have reported, and every port of a network they hold a port of is bound.
        `index`: the compiler's index of the current model (flows/index.py).

        A host found waiting keeps the port it waits for, and the next look checks that one
        port first: a look over 5,000 held hosts costs about a millisecond, not one pass over
        every port of their networks each (16 ms a look)."""
        if not self.held or now < self.scan_at:
            return []
        self.scan_at = now + SCAN
        ports, bound = index.model.ports, index.model.bindings
        by_key, blockers = index.ports_by_key, self._blocker
        out = []
        for host in self.held:
            if host not in reported:
                continue
            blocker = blockers.get(host)
            if blocker is not None and blocker not in bound and blocker in ports:
                continue
            blocker = next((p for key in index.keys_on(host) for p in by_key.get(key, ())
                            if p not in bound), None)
            if blocker is None:
                out.append(host)
                blockers.pop(host, None)
            else:
                blockers[host] = blocker
        out.sort()
        self.held.difference_update(out)
        self.released.update(out)
        return out

    def release(self) -> list[str]:
        """The held hosts, in order, to sync now (the hold is over)."""
        held, self.held = sorted(self.held), set()
        self._blocker.clear()
        return held
