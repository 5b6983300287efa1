"""Interpreter settings weftd runs with (benchmarks of weftd's code paths use the same)."""
from __future__ import annotations

import sys

# weftd's threads hand events to each other (OpenFlow -> engine -> switch, API -> store ->
# engine); with CPython's default 5 ms switch interval a hand-off can wait that long for the
# GIL, as long as Open vSwitch itself takes to bring a port up. 0.5 ms keeps hand-offs short.
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Everything weftd sets: the switch interval, and the garbage collector's policy for a
    large long-lived heap (controller/gcpolicy.py)."""
    from controller import gcpolicy
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gcpolicy.install()
