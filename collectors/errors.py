"""The one exception type every collector decoder raises, and the input check that uses it."""
from __future__ import annotations


class MalformedDatagram(ValueError):
    """A datagram is truncated, inconsistent or hostile; `reason` says why in a few words."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")


def as_bytes(data) -> bytes:
    """bytes for a bytes-like datagram; anything else is MalformedDatagram (never bytes(int))."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data)
        except (TypeError, ValueError, BufferError) as exc:
            raise MalformedDatagram(f"unusable buffer: {exc}") from exc
    raise MalformedDatagram(f"not a byte buffer: {type(data).__name__}")
