"""Durations as people write them (30s, 90m, 36h, 7d, 2w) and the flow-history retention's bounds."""
from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
RETENTION_MIN = 3600            # history is kept in hour partitions
RETENTION_MAX = 3650 * 86400
DEFAULT_RETENTION = "7d"


def parse_duration(text) -> int | None:
    """Seconds of "N<unit>" (s, m, h, d, w; ASCII digits), None when it is not one."""
    if not isinstance(text, str):
        return None
    m = _DURATION.fullmatch(text)
    return int(m.group(1)) * UNITS[m.group(2)] if m else None


def retention_seconds(text) -> int:
    """The flow-history retention in seconds; ValueError with a one-line reason when bad."""
    seconds = parse_duration(text)
    if seconds is None or not RETENTION_MIN <= seconds <= RETENTION_MAX:
        raise ValueError(f"retention must be a duration from 1h to 3650d such as 36h, 7d or 2w "
                         f"(got {text!r})")
    return seconds
