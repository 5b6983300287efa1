"""Progress of long work on a terminal: one line on stderr, rewritten in place, gone when done.

`Progress("lab up", total=N)` shows `lab up: 12/100 hosts built, 88 left, 4.1 s`; `step()` and
`stage()` feed it from any thread. It writes only when stderr is a terminal and the command's
output is not JSON (`enabled(output)`), so scripts, pipes and `-o json` see nothing of it; the
line is redrawn at most 10 times a second and cleared at the end, leaving the command's own
output as it was.
"""
from __future__ import annotations

import sys
import threading
import time


def enabled(output: str | None = None, stream=None) -> bool:
    stream = stream or sys.stderr
    return output != "json" and hasattr(stream, "isatty") and stream.isatty()


class Progress:
    INTERVAL = 0.1

    def __init__(self, what: str, total: int | None = None, unit: str | None = "done",
                 output: str | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.on = enabled(output, self.stream)
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._ticker = None

    def __enter__(self) -> "Progress":
        if self.on:                     # elapsed time moves even while nothing completes
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *_exc) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
        self.clear()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw(force=True)

    def step(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
        self._draw()

    def stage(self, unit: str, total: int | None = None, done: int = 0) -> None:
        """Go on with another kind of work (e.g. hosts built -> hosts in sync)."""
        with self._lock:
            self.unit, self.total, self.done = unit, total, done
        self._draw(force=True)

    def set(self, done: int) -> None:
        with self._lock:
            self.done = done
        self._draw()

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.unit is None:
            return f"{self.what}, {elapsed:.1f} s"
        if self.total is None:
            return f"{self.what}: {self.done} {self.unit}, {elapsed:.1f} s"
        return (f"{self.what}: {self.done}/{self.total} {self.unit}, {max(self.total - self.done, 0)} "
                f"left, {elapsed:.1f} s")

    def _draw(self, force: bool = False) -> None:
        if not self.on:
            return
        with self._lock:
            now = time.monotonic()
            if not force and now - self._drawn < self.INTERVAL and self.done != self.total:
                return
            self._drawn = now
            self.stream.write("\r\033[K" + self.text())
            self.stream.flush()

    def clear(self) -> None:
        if self.on:
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()
