"""Hypervisor IDLs made cheap: one parsed vswitch schema shared by every host's IDL, row classes made once, no `_Server` round trips.

Measured (ovs 3.x Python IDL, this machine): an `Idl` cost 12 ms to make — 8.8 ms parsing and
checking the schema (`SchemaHelper.get_idl_schema`, run again for each IDL) and most of the rest
in `custom_index.IndexEntryClass`, which builds a `collections.namedtuple` class for each of the
9 monitored tables of each IDL. 5,000 hosts made that a minute of CPU at every weftd start. The
IDL only reads its schema (its per-IDL state lives in `IdlTable`/`IdlColumn` wrappers), so one
schema serves every host; the namedtuple classes depend only on the table's name and columns
and are made once per (name, columns) — that covers the `_Server` database too, whose schema
each IDL fetches from its server. They serve the IDL's custom indexes, which weft does not use
(a class remembers the first IDL table it was made for).
"""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.custom_index
    import ovs.db.idl

_original_entry_class = ovs.db.custom_index.IndexEntryClass
_entry_classes: dict[tuple, type] = {}


def _entry_class(table):
    key = (table.name, tuple(table.columns))
    cls = _entry_classes.get(key)
    if cls is None:
        cls = _entry_classes[key] = _original_entry_class(table)
    return cls


ovs.db.custom_index.IndexEntryClass = _entry_class


class SharedSchemaHelper(ovs.db.idl.SchemaHelper):
    """A SchemaHelper that hands every IDL the same parsed schema (see the module's docstring)."""

    def __init__(self, helper: ovs.db.idl.SchemaHelper):     # noqa: super() would parse again
        self._schema = helper.get_idl_schema()

    def get_idl_schema(self):
        return self._schema


class HostIdl(ovs.db.idl.Idl):
    """The IDL of one hypervisor's Open vSwitch database: a standalone ovsdb-server, never a
    cluster, so the `_Server` database (cluster membership and leadership) is not fetched and
    monitored first — two round trips and a schema parse per host and per reconnect, which at
    5,000 hosts was a large part of the southbound thread's cold start. It goes straight to
    `monitor_cond_since` (falling back to `monitor_cond`, then `monitor`, as the IDL does)."""

    def restart_fsm(self):
        self.sync_conditions()
        # the state the IDL is in once _Server is monitored: its next request is the data monitor
        self.state = self.IDL_S_SERVER_MONITOR_REQUESTED
        self._Idl__send_monitor_request()
