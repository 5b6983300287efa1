"""Templates for NetFlow v9 / IPFIX: compiled record decoders and a bounded template cache.

A `Template` is compiled once when it arrives: all-fixed-length templates become one
precompiled `struct.Struct` plus a few converters, so a data record costs one `unpack_from`.
Templates with variable-length fields (IPFIX length 65535) use a per-field loop. (The
columnar path compiles a template's numpy dtype on first use, `collectors.templdtype`, and
keeps it in `Template.layouts`: a re-sent template is a new object, so a new dtype.)

`TemplateCache` keys templates by (exporter, observation domain / source id, template id),
refreshes them when re-sent, expires them after `timeout` seconds without refresh, honours
withdrawal, and holds data sets that arrive before their template (bounded per key, in total
bytes and by age) so they can be decoded when the template shows up.
"""
from __future__ import annotations

import struct
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from socket import AF_INET6, inet_ntoa, inet_ntop

from . import ie
from .errors import MalformedDatagram

VARIABLE_LENGTH = 0xFFFF
HELD_OVERHEAD = 64  # bytes accounted per held data set on top of its body (bounds key count)

_UINT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_FLOAT_CODES = {4: "f", 8: "d"}
_U16 = struct.Struct("!H")
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    ie_id: int
    length: int
    pen: int = 0  # enterprise number; 0 for IANA elements


@dataclass(slots=True)
class DataSet:
    """Decoded records of one data set (or of one held set decoded late)."""

    template_id: int
    domain: int  # IPFIX observation domain id / NetFlow v9 source id
    options: bool  # records described by an options template
    records: list
    export_time: int  # header export time / unix_secs (seconds)
    sys_uptime: int | None = None  # NetFlow v9 header sysUptime (ms); None for IPFIX
    late: bool = False  # held until its template arrived


# ------------------------------------------------------------------ value converters


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _ntop6(b: bytes) -> str:
    return inet_ntop(AF_INET6, b)


def _mac(b: bytes) -> str:
    return b.hex(":")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _var_converter(kind: str):
    """Converter for a value whose length is only known per record (never raises)."""
    if kind == ie.UINT:
        return _int
    if kind == ie.IPV4:
        return lambda b: inet_ntoa(b) if len(b) == 4 else b
    if kind == ie.IPV6:
        return lambda b: _ntop6(b) if len(b) == 16 else b
    if kind == ie.MAC:
        return lambda b: b.hex(":") if len(b) == 6 else b
    if kind == ie.FLOAT:
        return lambda b: (_F32.unpack(b)[0] if len(b) == 4 else
                          _F64.unpack(b)[0] if len(b) == 8 else b)
    if kind == ie.STRING:
        return _text
    return None  # OCTETS: keep the bytes


def _fixed_code(kind: str, length: int):
    """(struct code, converter or None) for a fixed-length field."""
    if kind == ie.PADDING:
        return f"{length}x", None
    if kind == ie.UINT:
        code = _UINT_CODES.get(length)
        return (code, None) if code else (f"{length}s", _int)
    if kind == ie.FLOAT and length in _FLOAT_CODES:
        return _FLOAT_CODES[length], None
    if kind == ie.IPV4 and length == 4:
        return "4s", inet_ntoa
    if kind == ie.IPV6 and length == 16:
        return "16s", _ntop6
    if kind == ie.MAC and length == 6:
        return "6s", _mac
    if kind == ie.STRING:
        return f"{length}s", _text
    return f"{length}s", None  # octets, or a typed element with an unusable length


class Template:
    """A compiled (options) template; `decode_records` turns a data set body into dicts."""

    __slots__ = ("template_id", "fields", "scope_count", "options", "names", "refreshed",
                 "fixed_length", "min_length", "_struct", "_conv", "_plan", "field_names",
                 "field_kinds", "layouts")

    def __init__(self, template_id: int, fields: list[FieldSpec] | tuple[FieldSpec, ...],
                 scope_count: int = 0, options: bool = False, v9_scopes: bool = False,
                 allow_variable: bool = True) -> None:
        self.template_id = template_id
        self.fields = tuple(fields)
        self.scope_count = scope_count
        self.options = options
        self.refreshed = 0.0
        names: list[str | None] = []
        kinds: list[str] = []
        seen: dict[str, int] = {}
        for i, f in enumerate(self.fields):
            if v9_scopes and i < scope_count:
                name = ie.V9_SCOPES.get(f.ie_id, f"scope_{f.ie_id}")
                kind = ie.UINT if f.ie_id in ie.V9_SCOPES else ie.OCTETS
            else:
                name, kind = ie.lookup(f.ie_id, f.pen)
            if kind == ie.PADDING:
                names.append(None)
            else:
                k = seen.get(name, 0) + 1
                seen[name] = k
                names.append(name if k == 1 else f"{name}_{k}")  # repeated elements
            kinds.append(kind)
        self.field_names = tuple(names)   # per field (None: padding), as the records name them
        self.field_kinds = tuple(kinds)
        self.layouts: dict = {}           # numpy layouts (collectors.templdtype), compiled once
        variable = allow_variable and any(f.length == VARIABLE_LENGTH for f in self.fields)
        if not variable:
            fmt = ["!"]
            out_names: list[str] = []
            conv: list[tuple[int, object]] = []
            for f, name, kind in zip(self.fields, names, kinds):
                code, fn = _fixed_code(kind, f.length)
                fmt.append(code)
                if name is not None:
                    if fn is not None:
                        conv.append((len(out_names), fn))
                    out_names.append(name)
            self._struct = struct.Struct("".join(fmt))
            self.fixed_length = self._struct.size
            self.min_length = self.fixed_length
            self.names = tuple(out_names)
            self._conv = tuple(conv)
            self._plan = None
        else:
            self._struct = None
            self.fixed_length = None
            self.min_length = sum(1 if f.length == VARIABLE_LENGTH else f.length
                                  for f in self.fields)
            self.names = tuple(n for n in names if n is not None)
            self._conv = ()
            self._plan = tuple(
                (name, f.length, _var_converter(kind))
                for f, name, kind in zip(self.fields, names, kinds))
        if self.min_length == 0:
            raise MalformedDatagram(f"template {template_id} describes zero-length records")

    def decode_records(self, buf: bytes, off: int, end: int) -> list[dict]:
        """Records in buf[off:end]; trailing bytes too short for a record are padding."""
        if self._plan is None:
            size = self.fixed_length
            count = (end - off) // size
            unpack = self._struct.unpack_from
            names = self.names
            conv = self._conv
            out = []
            append = out.append
            if conv:
                for i in range(count):
                    vals = list(unpack(buf, off + i * size))
                    for j, fn in conv:
                        vals[j] = fn(vals[j])
                    append(dict(zip(names, vals)))
            else:
                for i in range(count):
                    append(dict(zip(names, unpack(buf, off + i * size))))
            return out
        return self._decode_variable(buf, off, end)

    def _decode_variable(self, buf: bytes, off: int, end: int) -> list[dict]:
        out = []
        plan = self._plan
        min_len = self.min_length
        while end - off >= min_len:
            start = off
            rec = {}
            ok = True
            for name, length, fn in plan:
                if length == VARIABLE_LENGTH:
                    if off >= end:
                        ok = False
                        break
                    length = buf[off]
                    off += 1
                    if length == 255:
                        if off + 2 > end:
                            ok = False
                            break
                        length = _U16.unpack_from(buf, off)[0]
                        off += 2
                if off + length > end:
                    ok = False
                    break
                if name is not None:
                    val = buf[off:off + length]
                    rec[name] = fn(val) if fn is not None else val
                off += length
            if not ok:
                if any(buf[start:end]):
                    raise MalformedDatagram("data record overruns its set", start)
                break  # zero padding at the end of the set
            out.append(rec)
        return out


def same_template(a: Template, b: Template) -> bool:
    """Whether two templates describe records the same way."""
    return (a.fields == b.fields and a.scope_count == b.scope_count and a.options == b.options)


# ------------------------------------------------------------------ cache

Key = tuple  # (exporter, domain, template_id)


class TemplateCache:
    """Templates per (exporter, domain, template id), plus data held for unknown templates."""

    def __init__(self, timeout: float = 1800.0, *, max_templates: int = 100_000,
                 pending_max_age: float = 60.0, pending_max_sets: int = 16,
                 pending_max_bytes: int = 16 << 20) -> None:
        self.timeout = timeout
        self.max_templates = max(1, max_templates)
        self.pending_max_age = pending_max_age
        self.pending_max_sets = pending_max_sets
        self.pending_max_bytes = pending_max_bytes
        self._templates: OrderedDict[Key, Template] = OrderedDict()  # oldest refresh first
        self._per_exporter: dict[object, int] = {}
        self._by_domain: dict[tuple, dict[int, None]] = {}
        # key -> deque of (held_at, body bytes, context); OrderedDict gives age order of keys
        self._pending: OrderedDict[Key, deque] = OrderedDict()
        self._pending_bytes = 0
        # on_change(exporter, domain, changed): a domain's templates were learned, refreshed
        # (changed=False) or removed; collectors.template_store persists them with it
        self.on_change = None
        # counters
        self.expired = 0
        self.evicted = 0
        self.withdrawn = 0
        self.pending_dropped = 0

    # -- templates

    def __len__(self) -> int:
        return len(self._templates)

    def count(self, exporter=None) -> int:
        if exporter is None:
            return len(self._templates)
        return self._per_exporter.get(exporter, 0)

    def get(self, key: Key, now: float | None = None) -> Template | None:
        tpl = self._templates.get(key)
        if tpl is not None:
            if now is None:
                now = time.monotonic()
            if now - tpl.refreshed > self.timeout:
                self._remove(key)
                self.expired += 1
                return None
        return tpl

    def peek(self, key: Key, now: float) -> Template | None:
        """The template if known and fresh, changing nothing (`get` removes an expired one)."""
        tpl = self._templates.get(key)
        if tpl is None or now - tpl.refreshed > self.timeout:
            return None
        return tpl

    def put(self, key: Key, template: Template, now: float | None = None) -> list:
        """Store/refresh a template; returns the held (held_at, body, context) for its key."""
        if now is None:
            now = time.monotonic()
        template.refreshed = now
        templates = self._templates
        old = templates.get(key)
        if old is not None:
            templates[key] = template
            templates.move_to_end(key)
        else:
            while len(templates) >= self.max_templates:
                old = next(iter(templates))
                self._remove(old)
                self.evicted += 1
            templates[key] = template
            exporter, domain, tid = key
            self._per_exporter[exporter] = self._per_exporter.get(exporter, 0) + 1
            self._by_domain.setdefault((exporter, domain), {})[tid] = None
        if self.on_change is not None:
            self.on_change(key[0], key[1], old is None or not same_template(old, template))
        return self._take_pending(key, now)

    def domain_templates(self, exporter, domain) -> list[Template]:
        """The templates of one (exporter, observation domain)."""
        return [self._templates[(exporter, domain, tid)]
                for tid in self._by_domain.get((exporter, domain), ())]

    def withdraw(self, key: Key) -> bool:
        if key in self._templates:
            self._remove(key)
            self.withdrawn += 1
            return True
        return False

    def withdraw_all(self, exporter, domain, options: bool) -> int:
        """Withdraw every data (options=False) or options (True) template of a domain."""
        tids = self._by_domain.get((exporter, domain))
        if not tids:
            return 0
        gone = [tid for tid in tids
                if self._templates[(exporter, domain, tid)].options == options]
        for tid in gone:
            self._remove((exporter, domain, tid))
        self.withdrawn += len(gone)
        return len(gone)

    def expire(self, now: float | None = None) -> int:
        """Drop templates not refreshed within `timeout` and held data older than its max age."""
        if now is None:
            now = time.monotonic()
        n = 0
        templates = self._templates
        while templates:
            key = next(iter(templates))
            if now - templates[key].refreshed <= self.timeout:
                break
            self._remove(key)
            n += 1
        self.expired += n
        for key in list(self._pending):
            self._prune(key, now)
        return n

    def _remove(self, key: Key) -> None:
        del self._templates[key]
        exporter, domain, tid = key
        left = self._per_exporter[exporter] - 1
        if left:
            self._per_exporter[exporter] = left
        else:
            del self._per_exporter[exporter]
        tids = self._by_domain[(exporter, domain)]
        del tids[tid]
        if not tids:
            del self._by_domain[(exporter, domain)]
        if self.on_change is not None:
            self.on_change(exporter, domain, True)

    # -- data held until its template arrives

    @property
    def pending_sets(self) -> int:
        return sum(len(q) for q in self._pending.values())

    @property
    def pending_bytes(self) -> int:
        """Accounted size of held data: body bytes plus HELD_OVERHEAD per held set."""
        return self._pending_bytes

    def hold(self, key: Key, body: bytes, context, now: float | None = None) -> bool:
        """Keep a data set body for a template not (yet) known; False if not kept."""
        if now is None:
            now = time.monotonic()
        if not body:
            return False  # an empty set has nothing to decode later
        cost = len(body) + HELD_OVERHEAD
        if cost > self.pending_max_bytes or self.pending_max_sets <= 0:
            self.pending_dropped += 1
            return False
        if key in self._pending:
            self._prune(key, now)
        q = self._pending.get(key)
        if q is None:
            q = self._pending[key] = deque()
        while len(q) >= self.pending_max_sets:
            self._drop_oldest(q)
        q.append((now, body, context))
        self._pending_bytes += cost
        while self._pending_bytes > self.pending_max_bytes:  # oldest keys' sets go first
            oldest = next(iter(self._pending))
            oq = self._pending[oldest]
            self._drop_oldest(oq)
            if not oq:
                del self._pending[oldest]
        return bool(self._pending.get(key))

    def _drop_oldest(self, q: deque) -> None:
        self._pending_bytes -= len(q.popleft()[1]) + HELD_OVERHEAD
        self.pending_dropped += 1

    def _prune(self, key: Key, now: float) -> None:
        q = self._pending[key]
        while q and now - q[0][0] > self.pending_max_age:
            self._drop_oldest(q)
        if not q:
            del self._pending[key]

    def _take_pending(self, key: Key, now: float) -> list:
        if key not in self._pending:
            return []
        self._prune(key, now)
        q = self._pending.pop(key, None)
        if not q:
            return []
        for item in q:
            self._pending_bytes -= len(item[1]) + HELD_OVERHEAD
        return list(q)
