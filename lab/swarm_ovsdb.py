"""An in-memory OVSDB server for emulated hypervisors: one database, transactions, monitors (RFC 7047 + OVS extensions).

Pure message handling, no I/O: `Database` holds the rows of one schema (cells as the `ovs`
library's `Datum`s) and applies `transact` operations atomically (insert with named uuids,
forward references included; update, mutate, delete, wait, comment, select; garbage
collection of unreferenced rows of non-root tables; referential integrity). `Session` is one
client's JSON-RPC conversation (`ovs.jsonrpc.Message` in and out): `list_dbs`, `get_schema`,
`echo`, `transact`, `monitor` (update), `monitor_cond` (update2), `monitor_cond_since`
(update3), `monitor_cancel`, `set_db_change_aware`, and the `_Server` database that the
Python and C IDLs ask about first (a standalone server holding the database).

What it does not do: conditions in monitors are ignored (every row is sent: weftd monitors
whole tables), `lock`/`steal`, and 'wait' with a non-zero timeout is answered at once.
"""
from __future__ import annotations

import copy
import itertools
import json
import sys
import uuid as uuidlib
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ovs.db.data
    import ovs.db.error
    import ovs.db.schema
    import ovs.db.types
    import ovs.jsonrpc
    import ovs.ovsuuid

Datum = ovs.db.data.Datum
Message = ovs.jsonrpc.Message

SERVER_SCHEMA = {
    "name": "_Server", "version": "1.2.0",
    "tables": {"Database": {"columns": {
        "name": {"type": "string"},
        "model": {"type": {"key": {"type": "string",
                                   "enum": ["set", ["standalone", "clustered", "relay"]]}}},
        "connected": {"type": "boolean"},
        "leader": {"type": "boolean"},
        "schema": {"type": {"key": {"type": "string"}, "min": 0, "max": 1}},
        "cid": {"type": {"key": {"type": "uuid"}, "min": 0, "max": 1}},
        "sid": {"type": {"key": {"type": "uuid"}, "min": 0, "max": 1}},
        "index": {"type": {"key": {"type": "integer"}, "min": 0, "max": 1}}}}}}


class TxnError(Exception):
    """A transaction operation failed: `error` and `details` as RFC 7047 puts them."""

    def __init__(self, error: str, details: str = ""):
        super().__init__(f"{error}: {details}")
        self.error, self.details = error, details


def _uuid_json(value) -> list:
    return ["uuid", str(value)]


class Database:
    """The rows of one database: {table: {uuid: {column: Datum}}}, changed only by `transact`."""

    def __init__(self, schema_json: dict, cache: dict | None = None):
        """`cache`: a dict shared by databases of the same schema, to parse it once."""
        self.schema_json = schema_json
        if cache is not None and "parsed" in cache:
            self.schema = cache["parsed"]
        else:
            self.schema = ovs.db.schema.DbSchema.from_json(copy.deepcopy(schema_json))
            if cache is not None:
                cache["parsed"] = self.schema
        self.name = self.schema.name
        self.tables: dict[str, dict[uuidlib.UUID, dict[str, Datum]]] = {t: {} for t in self.schema.tables}
        self.txn_id = uuidlib.UUID(int=0)       # the last transaction's id (monitor_cond_since)
        self.listeners: list = []               # callback(changes) after every commit

    # -- reads
    def rows(self, table: str):
        return self.tables[table].items()

    def get(self, table: str, row_uuid) -> dict | None:
        return self.tables[table].get(row_uuid)

    def value(self, table: str, row_uuid, column: str):
        """A cell as plain Python (scalars, lists, dicts; uuids as uuid.UUID)."""
        datum = self.tables[table][row_uuid][column]
        return _python(datum, self.schema.tables[table].columns[column].type)

    def row_json(self, table: str, row: dict, columns=None) -> dict:
        cols = self.schema.tables[table].columns
        return {c: row[c].to_json() for c in (columns if columns is not None else cols) if c in row}

    def find(self, table: str, column: str, value) -> list:
        """Uuids of the rows whose `column` equals plain `value` (a scalar column)."""
        return [u for u, row in self.tables[table].items() if self.value(table, u, column) == value]

    # -- writes
    def transact(self, ops: list) -> tuple[list, dict]:
        """Apply `ops` atomically. Returns (results, changes); changes = {table: {uuid: (old, new)}}
        with rows as {column: Datum} (None: did not exist / deleted). On error nothing changes and
        the results end with the error object, as ovsdb-server answers."""
        work = _Work(self)
        results = []
        try:
            if not isinstance(ops, list):
                raise TxnError("syntax error", "operations must be an array")
            for op in ops:
                if not isinstance(op, dict) or "op" in op and not isinstance(op["op"], str):
                    raise TxnError("syntax error", f"bad operation {op!r}")
                if op.get("op") == "insert" and "uuid-name" in op:
                    work.symtab.setdefault(op["uuid-name"], uuidlib.uuid4())
            for op in ops:
                results.append(work.execute(op))
            work.check_references()         # a strong reference to a missing row fails
            work.collect_garbage()
            work.check_references()         # weak references to collected rows go
        except TxnError as exc:
            results.append({"error": exc.error, "details": exc.details})
            return results, {}
        except (ovs.db.error.Error, ValueError, KeyError, TypeError) as exc:
            results.append({"error": "syntax error", "details": str(exc)})
            return results, {}
        changes = work.commit()
        return results, changes


class _Work:
    """One transaction in progress: copy-on-write rows, the named-uuid symbol table."""

    def __init__(self, db: Database):
        self.db = db
        self.symtab: dict[str, uuidlib.UUID] = {}
        self.new: dict[str, dict] = {}          # table -> {uuid: row or None (deleted)}

    # rows as the transaction sees them
    def _rows(self, table: str):
        base = self.db.tables[table]
        mine = self.new.get(table, {})
        for u, row in base.items():
            if u not in mine:
                yield u, row
        for u, row in mine.items():
            if row is not None:
                yield u, row

    def _row(self, table: str, u):
        mine = self.new.get(table, {})
        if u in mine:
            return mine[u]
        return self.db.tables[table].get(u)

    def _writable(self, table: str, u) -> dict:
        mine = self.new.setdefault(table, {})
        if u not in mine:
            mine[u] = dict(self.db.tables[table][u])
        return mine[u]

    def _table(self, op: dict):
        name = op.get("table")
        table = self.db.schema.tables.get(name)
        if table is None:
            raise TxnError("unknown table", f"no table named {name!r}")
        return table

    def _datum(self, table, column: str, value) -> Datum:
        col = table.columns.get(column)
        if col is None:
            raise TxnError("unknown column", f"{table.name} has no column {column!r}")
        try:
            return Datum.from_json(col.type, value, self.symtab)
        except ovs.db.error.Error as exc:
            raise TxnError("syntax error", f"{table.name}.{column}: {exc}") from None

    def _where(self, table, where) -> list:
        matched = []
        conds = []
        for cond in where or []:
            column, func, value = cond
            if column == "_uuid":
                target = ovs.ovsuuid.from_json(value, self.symtab)
                conds.append(("_uuid", func, target))
            else:
                conds.append((column, func, self._datum(table, column, value)))
        if len(conds) == 1 and conds[0][0] == "_uuid" and conds[0][1] == "==":
            row = self._row(table.name, conds[0][2])
            return [(conds[0][2], row)] if row is not None else []
        for u, row in self._rows(table.name):
            if all(_test(u if c == "_uuid" else row[c], f, v) for c, f, v in conds):
                matched.append((u, row))
        return matched

    def execute(self, op: dict) -> dict:
        kind = op.get("op")
        if kind == "comment" or kind == "assert":
            return {}
        table = self._table(op)
        if kind == "insert":
            u = self.symtab.get(op.get("uuid-name")) if "uuid-name" in op else None
            if "uuid" in op:
                u = uuidlib.UUID(op["uuid"])
            u = u or uuidlib.uuid4()
            if self._row(table.name, u) is not None:
                raise TxnError("duplicate uuid", str(u))
            row = {c: _default(col.type) for c, col in table.columns.items()}
            for column, value in (op.get("row") or {}).items():
                row[column] = self._datum(table, column, value)
            row["_uuid"] = _uuid_datum(u)
            row["_version"] = _uuid_datum(uuidlib.uuid4())
            self.new.setdefault(table.name, {})[u] = row
            return {"uuid": _uuid_json(u)}
        if kind == "select":
            cols = op.get("columns")
            rows = [{**self.db.row_json(table.name, row, cols), **({"_uuid": _uuid_json(u)}
                     if cols is None or "_uuid" in cols else {})} for u, row in self._where(table, op.get("where"))]
            return {"rows": rows}
        if kind == "update":
            matched = self._where(table, op.get("where"))
            values = {c: self._datum(table, c, v) for c, v in (op.get("row") or {}).items()}
            for c in values:
                if not table.columns[c].mutable:
                    raise TxnError("constraint violation", f"column {c} is immutable")
            for u, _row in matched:
                w = self._writable(table.name, u)
                w.update(values)
                w["_version"] = _uuid_datum(uuidlib.uuid4())
            return {"count": len(matched)}
        if kind == "mutate":
            matched = self._where(table, op.get("where"))
            for u, _row in matched:
                w = self._writable(table.name, u)
                for column, mutator, value in op.get("mutations", []):
                    w[column] = _mutate(table, column, w[column], mutator, value, self.symtab)
                w["_version"] = _uuid_datum(uuidlib.uuid4())
            return {"count": len(matched)}
        if kind == "delete":
            matched = self._where(table, op.get("where"))
            for u, _row in matched:
                self.new.setdefault(table.name, {})[u] = None
            return {"count": len(matched)}
        if kind == "wait":
            matched = self._where(table, op.get("where"))
            cols = op.get("columns") or []
            got = sorted(json.dumps({c: row[c].to_json() for c in cols}, sort_keys=True) for _u, row in matched)
            want = sorted(json.dumps({c: self._datum(table, c, r[c]).to_json() for c in cols}, sort_keys=True)
                          for r in op.get("rows", []))
            equal = got == want
            if equal != (op.get("until") == "=="):
                raise TxnError("timed out", f"wait on {table.name} not satisfied")
            return {}
        raise TxnError("syntax error", f"unknown operation {kind!r}")

    def _refs(self, row: dict, table, strong_only: bool):
        for column, col in table.columns.items():
            for base in (col.type.key, col.type.value):
                if base is None or base.type != ovs.db.types.UuidType or not base.ref_table_name:
                    continue
                if strong_only and base.ref_type != "strong":
                    continue
                datum = row[column]
                for k, v in datum.values.items():
                    atom = k if base is col.type.key else v
                    if atom is not None:
                        yield base.ref_table_name, atom.value

    def collect_garbage(self) -> None:
        """Delete rows of non-root tables that no strong reference reaches (what ovsdb-server does)."""
        schema = self.db.schema.tables
        if all(t.is_root for t in schema.values()):
            return
        while True:
            referenced = set()
            for tname, table in schema.items():
                for _u, row in self._rows(tname):
                    for ref_table, ref in self._refs(row, table, True):
                        referenced.add((ref_table, ref))
            dropped = False
            for tname, table in schema.items():
                if table.is_root:
                    continue
                for u, _row in list(self._rows(tname)):
                    if (tname, u) not in referenced:
                        self.new.setdefault(tname, {})[u] = None
                        dropped = True
            if not dropped:
                return

    def check_references(self) -> None:
        """Strong references must name existing rows; weak ones to missing rows are dropped."""
        schema = self.db.schema.tables
        for tname, table in schema.items():
            for u, row in list(self._rows(tname)):
                for column, col in table.columns.items():
                    for which, base in (("key", col.type.key), ("value", col.type.value)):
                        if base is None or base.type != ovs.db.types.UuidType or not base.ref_table_name:
                            continue
                        datum = row[column]
                        gone = [k for k, v in datum.values.items()
                                if (k if which == "key" else v) is not None
                                and self._row(base.ref_table_name, (k if which == "key" else v).value) is None]
                        if not gone:
                            continue
                        if base.ref_type == "strong":
                            raise TxnError("referential integrity violation",
                                           f"{tname} {u} column {column} refers to a missing "
                                           f"{base.ref_table_name} row")
                        w = self._writable(tname, u)
                        values = {k: v for k, v in w[column].values.items() if k not in gone}
                        w[column] = Datum(col.type, values)

    def commit(self) -> dict:
        changes: dict[str, dict] = {}
        for tname, rows in self.new.items():
            base = self.db.tables[tname]
            for u, row in rows.items():
                old = base.get(u)
                if row is None:
                    if old is not None:
                        del base[u]
                        changes.setdefault(tname, {})[u] = (old, None)
                    continue
                if old is not None and all(old[c] == row[c] for c in row if c != "_version"):
                    continue                # written but unchanged
                base[u] = row
                changes.setdefault(tname, {})[u] = (old, row)
        if changes:
            self.db.txn_id = uuidlib.uuid4()
            for listener in list(self.db.listeners):
                listener(changes)
        return changes


_DEFAULTS = {"integer": 0, "real": 0.0, "boolean": False, "string": "", "uuid": uuidlib.UUID(int=0)}


def _default(kind) -> Datum:
    """A column's default value (the `ovs` library's Datum.default wraps an Atom in an Atom)."""
    if kind.n_min == 0:
        return Datum(kind, {})
    key = ovs.db.data.Atom(kind.key.type, _DEFAULTS[kind.key.type.name])
    value = ovs.db.data.Atom(kind.value.type, _DEFAULTS[kind.value.type.name]) if kind.value else None
    return Datum(kind, {key: value})


def _uuid_datum(u) -> Datum:
    t = ovs.db.types.Type(ovs.db.types.BaseType(ovs.db.types.UuidType))
    return Datum(t, {ovs.db.data.Atom(ovs.db.types.UuidType, u): None})


def _test(cell, func: str, value) -> bool:
    if isinstance(cell, uuidlib.UUID):
        return (cell == value) == (func in ("==", "includes"))
    if func == "==":
        return cell == value
    if func == "!=":
        return cell != value
    if func == "includes":
        return all(k in cell.values and cell.values[k] == v for k, v in value.values.items())
    if func == "excludes":
        return all(k not in cell.values or cell.values[k] != v for k, v in value.values.items())
    a, b = cell.as_scalar(), value.as_scalar()
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[func]


def _mutate(table, column: str, datum: Datum, mutator: str, value, symtab) -> Datum:
    col = table.columns.get(column)
    if col is None:
        raise TxnError("unknown column", f"{table.name} has no column {column!r}")
    kind = col.type
    values = dict(datum.values)
    if mutator in ("insert", "delete"):
        if kind.is_map() and mutator == "delete":
            # a set of keys, or a map of key/value pairs that must match
            try:
                arg = Datum.from_json(ovs.db.types.Type(kind.key, None, 0, _UNLIMITED),
                                      value, symtab)
                for k in arg.values:
                    values.pop(k, None)
            except ovs.db.error.Error:
                arg = Datum.from_json(ovs.db.types.Type(kind.key, kind.value, 0, _UNLIMITED),
                                      value, symtab)
                for k, v in arg.values.items():
                    if values.get(k) == v:
                        del values[k]
        else:
            arg = Datum.from_json(ovs.db.types.Type(kind.key, kind.value, 0, _UNLIMITED),
                                  value, symtab)
            for k, v in arg.values.items():
                if mutator == "insert":
                    if k not in values:
                        values[k] = v
                else:
                    values.pop(k, None)
        result = Datum(kind, values)
        if len(values) > kind.n_max or len(values) < kind.n_min:
            raise TxnError("constraint violation", f"{table.name}.{column}: {len(values)} elements")
        return result
    if mutator in ("+=", "-=", "*=", "/=", "%="):
        arg = Datum.from_json(ovs.db.types.Type(kind.key), value, symtab).as_scalar()
        out = {}
        for k, v in values.items():
            x = k.value
            x = {"+=": x + arg, "-=": x - arg, "*=": x * arg, "/=": x // arg if kind.key.type ==
                 ovs.db.types.IntegerType else x / arg, "%=": x % arg}[mutator]
            out[ovs.db.data.Atom(kind.key.type, x)] = v
        return Datum(kind, out)
    raise TxnError("syntax error", f"unknown mutator {mutator!r}")


def _python(datum: Datum, kind):
    def atom(a):
        return a.value
    if kind.is_map():
        return {atom(k): atom(v) for k, v in datum.values.items()}
    if kind.is_scalar():
        return atom(next(iter(datum.values))) if datum.values else None
    if kind.is_optional():
        return atom(next(iter(datum.values))) if datum.values else None
    return sorted(atom(k) for k in datum.values)


def _diff(kind, old: Datum, new: Datum):
    """A modified cell as update2 puts it: the new value for scalars, else what differs."""
    if kind.is_scalar():
        return new.to_json()
    if kind.is_map():
        values = {}
        for k, v in new.values.items():
            if old.values.get(k, _MISSING) != v:
                values[k] = v
        for k, v in old.values.items():
            if k not in new.values:
                values[k] = v
        return ["map", [[k.to_json(), v.to_json()] for k, v in sorted(values.items())]]
    changed = set(old.values) ^ set(new.values)
    if len(changed) == 1 and kind.n_max == 1:
        return next(iter(changed)).to_json()
    return ["set", [a.to_json() for a in sorted(changed)]]


_MISSING = object()
_UNLIMITED = sys.maxsize


class Session:
    """One client's JSON-RPC conversation with a server holding `dbs`; `send` takes Messages out."""

    _ids = itertools.count(1)

    def __init__(self, dbs: dict[str, Database], send):
        self.dbs = dbs
        self.send = send
        self.monitors: dict[str, tuple] = {}    # json(monitor id) -> (db name, version, {table: cols})
        self.server_db = _server_database(dbs)
        self.id = next(self._ids)
        for db in dbs.values():
            db.listeners.append(self._changed)

    def close(self) -> None:
        for db in self.dbs.values():
            if self._changed in db.listeners:
                db.listeners.remove(self._changed)
        self.monitors.clear()

    def _db(self, name):
        if name == "_Server":
            return self.server_db
        db = self.dbs.get(name)
        if db is None:
            raise TxnError("unknown database", f"no database named {name!r}")
        return db

    def receive(self, msg: Message) -> None:
        """Handle one message from the client."""
        if msg.type == Message.T_NOTIFY and msg.method == "echo":
            return
        if msg.type != Message.T_REQUEST:
            return              # replies to our echo requests, notifications we do not use
        try:
            result = self._call(msg.method, msg.params)
        except TxnError as exc:
            self.send(Message.create_error({"error": exc.error, "details": exc.details}, msg.id))
            return
        if result is not _NO_REPLY:
            self.send(Message.create_reply(result, msg.id))

    def _call(self, method: str, params: list):
        if method == "echo":
            return params
        if method == "list_dbs":
            return sorted(self.dbs)
        if method == "get_schema":
            return self._db(params[0]).schema_json
        if method == "transact":
            results, _changes = self._db(params[0]).transact(params[1:])
            return results
        if method in ("monitor", "monitor_cond", "monitor_cond_since"):
            return self._monitor(method, params)
        if method == "monitor_cancel":
            if self.monitors.pop(json.dumps(params[0]), None) is None:
                raise TxnError("unknown monitor")
            return {}
        if method == "set_db_change_aware":
            return {}
        if method in ("lock", "steal"):
            return {"locked": True}
        if method == "unlock":
            return {}
        raise TxnError("unknown method")

    def _monitor(self, method: str, params: list):
        db = self._db(params[0])
        key = json.dumps(params[1])
        if key in self.monitors:
            raise TxnError("duplicate monitor ID")
        tables = {}
        for tname, reqs in (params[2] or {}).items():
            table = db.schema.tables.get(tname)
            if table is None:
                raise TxnError("unknown table", tname)
            reqs = reqs if isinstance(reqs, list) else [reqs]
            cols = set()
            for req in reqs:
                cols |= set(req.get("columns") or table.columns)
            tables[tname] = sorted(cols)
        version = {"monitor": 1, "monitor_cond": 2, "monitor_cond_since": 3}[method]
        self.monitors[key] = (db.name, version, tables, params[1])
        initial = self._updates(db, version, tables,
                                {t: {u: (None, row) for u, row in db.rows(t)} for t in tables}, initial=True)
        if version == 3:
            return [False, str(db.txn_id), initial]
        return initial

    def _updates(self, db: Database, version: int, tables: dict, changes: dict, initial=False) -> dict:
        out = {}
        for tname, cols in tables.items():
            rows = changes.get(tname)
            if not rows:
                continue
            schema = db.schema.tables[tname]
            tout = {}
            for u, (old, new) in rows.items():
                if version == 1:
                    entry = {}
                    if new is not None:
                        entry["new"] = db.row_json(tname, new, cols)
                    if old is not None:
                        entry["old"] = db.row_json(tname, old, cols if new is None else
                                                   [c for c in cols if old[c] != new[c]])
                    if old is not None and new is not None and not entry["old"]:
                        continue
                elif new is None:
                    entry = {"delete": None}
                elif old is None:
                    entry = {"initial" if initial else "insert": db.row_json(tname, new, cols)}
                else:
                    diff = {c: _diff(schema.columns[c].type, old[c], new[c]) for c in cols if old[c] != new[c]}
                    if not diff:
                        continue
                    entry = {"modify": diff}
                tout[str(u)] = entry
            if tout:
                out[tname] = tout
        return out

    def _changed(self, changes: dict) -> None:
        for key, (dbname, version, tables, mid) in list(self.monitors.items()):
            db = self.dbs.get(dbname)
            if db is None:
                continue
            updates = self._updates(db, version, tables, changes)
            if not updates:
                continue
            if version == 3:
                self.send(Message.create_notify("update3", [mid, str(db.txn_id), updates]))
            else:
                self.send(Message.create_notify("update" if version == 1 else "update2", [mid, updates]))


_NO_REPLY = object()


_servers: dict = {}


def _server_database(dbs: dict[str, Database]) -> Database:
    """The `_Server` database of a server holding `dbs` (static: shared by sessions alike)."""
    key = tuple(sorted((name, id(db.schema)) for name, db in dbs.items()))
    if key in _servers:
        return _servers[key]
    server = _servers[key] = Database(SERVER_SCHEMA)
    for db in dbs.values():
        server.transact([{"op": "insert", "table": "Database", "row": {
            "name": db.name, "model": "standalone", "connected": True, "leader": True,
            "schema": json.dumps(db.schema_json)}}])
    return server


class JsonStream:
    """Splits a byte stream into JSON values (OVSDB sends them back to back) and encodes Messages."""

    def __init__(self):
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data.decode()
        out = []
        pos, n = 0, len(self._buf)
        while pos < n:
            while pos < n and self._buf[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                value, end = self._decoder.raw_decode(self._buf, pos)
            except json.JSONDecodeError:
                break               # incomplete: wait for more
            pos = end
            msg = Message.from_json(value)
            if isinstance(msg, str):
                raise ValueError(f"bad JSON-RPC message: {msg}")
            out.append(msg)
        self._buf = self._buf[pos:]
        return out

    @staticmethod
    def encode(msg: Message) -> bytes:
        return json.dumps(msg.to_json(), separators=(",", ":")).encode()
