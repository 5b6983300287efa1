"""Logging to the systemd journal with structured fields (WEFT_HOST, WEFT_PORT, WEFT_TENANT).

A log call names what it is about with `extra=fields(host=..., port=...)`; on a terminal or in
a file that changes nothing, in the journal each becomes a field of its own, so that
`journalctl -u weftd WEFT_HOST=hv3` lists what weftd did about one hypervisor. The handler
speaks journald's native protocol (datagrams of KEY=VALUE fields on
/run/systemd/journal/socket, documented as stable) by hand for the same reason as
`controller/sdnotify.py`: systemd-python needs a C build against libsystemd.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import traceback

JOURNAL_SOCKET = "/run/systemd/journal/socket"
FIELDS_ATTR = "weft_fields"
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def fields(host: str | None = None, port: str | None = None, tenant: str | None = None) -> dict:
    """`extra=` for a log call: the hypervisor, the port (TENANT/NET/PORT; its tenant follows)."""
    found = {}
    if host:
        found["WEFT_HOST"] = host
    if port:
        found["WEFT_PORT"] = port
        tenant = tenant or port.split("/", 1)[0]
    if tenant:
        found["WEFT_TENANT"] = tenant
    return {FIELDS_ATTR: found}


def _field(key: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" not in data:
        return key.encode() + b"=" + data + b"\n"
    return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


class JournalHandler(logging.Handler):
    """One datagram per record: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, LOGGER, THREAD_NAME,
    CODE_FILE/LINE/FUNC, and the record's WEFT_* fields."""

    def __init__(self, identifier: str = "weftd", path: str = JOURNAL_SOCKET):
        super().__init__()
        self.identifier, self.path = identifier, path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            parts = {"MESSAGE": message, "PRIORITY": str(PRIORITY.get(record.levelno, 6)),
                     "SYSLOG_IDENTIFIER": self.identifier, "LOGGER": record.name,
                     "THREAD_NAME": record.threadName or "", "CODE_FILE": record.pathname,
                     "CODE_LINE": str(record.lineno), "CODE_FUNC": record.funcName,
                     **getattr(record, FIELDS_ATTR, {})}
            self.sock.sendto(b"".join(_field(k, str(v)) for k, v in parts.items()), self.path)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def stderr_is_journal() -> bool:
    """systemd connected our stderr to the journal ($JOURNAL_STREAM names its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino) and os.path.exists(JOURNAL_SOCKET)
