"""The `ovs` library's Poller on select.poll instead of its select.select emulation (fds > 1023).

ovs.poller waits with select.select, kept for eventlet/gevent, which cannot patch poll: any
file descriptor above 1023 raises ValueError. weftd waits on one OVSDB session per host (and
OpenFlow sockets share the numbering), so past about a thousand hosts the southbound thread
died on it. weftd runs os-ken's native hub (plain threads, nothing monkey-patched), so the
real poll(2) is safe; the library names this very substitution as the way to do it.
"""
from __future__ import annotations

import select

import ovs.poller


def use_system_poll() -> None:
    """Make every ovs.poller.Poller created from now on wait with select.poll."""
    ovs.poller.SelectPoll = select.poll


use_system_poll()
