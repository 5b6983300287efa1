"""IPFIX decoder (RFC 7011): template, options template and data sets, with withdrawal.

`IpfixDecoder(cache).decode(data, exporter)` returns an `IpfixMessage`. Field specifiers may
carry an enterprise number (high bit of the element id) and variable lengths (65535, with a
1- or 3-byte length prefix in the data). A template record with field count 0 withdraws that
template; template id 2 (template set) / 3 (options template set) withdraws all of that kind
for the observation domain.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .errors import MalformedDatagram, as_bytes
from .templates import DataSet, FieldSpec, Template, TemplateCache

HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, observation domain
HEADER_LEN = HEADER.size  # 16
_SET = struct.Struct("!HH")
_FIELD = struct.Struct("!HH")
_PEN = struct.Struct("!I")
_U16 = struct.Struct("!H")
TEMPLATE_SET = 2
OPTIONS_TEMPLATE_SET = 3
MIN_DATA_SET = 256


@dataclass(slots=True)
class IpfixMessage:
    version: int
    length: int
    export_time: int
    sequence: int
    domain: int
    templates: list = field(default_factory=list)  # template ids learned or refreshed
    options_templates: list = field(default_factory=list)
    withdrawn: list = field(default_factory=list)  # template ids withdrawn (2/3 = all)
    data_sets: list = field(default_factory=list)  # DataSet, including late ones
    pending_sets: int = 0  # data sets held for an unknown template
    unknown_sets: int = 0  # reserved set ids, skipped
    late_malformed: int = 0

    @property
    def data_records(self) -> int:
        """Data records carried by this message (exact only when pending_sets == 0)."""
        return sum(len(ds.records) for ds in self.data_sets if not ds.late)


def _all_zero(data: bytes, off: int, end: int) -> bool:
    return not any(data[off:end])


class IpfixDecoder:
    def __init__(self, cache: TemplateCache | None = None, clock=time.monotonic) -> None:
        self.cache = cache if cache is not None else TemplateCache()
        self.clock = clock

    def decode(self, data: bytes | bytearray | memoryview, exporter,
               now: float | None = None) -> IpfixMessage:
        """Decode one IPFIX message from `exporter` (any hashable, e.g. the source IP)."""
        data = as_bytes(data)
        if now is None:
            now = self.clock()
        if len(data) < HEADER_LEN:
            raise MalformedDatagram("datagram shorter than IPFIX header")
        version, length, export_time, seq, domain = HEADER.unpack_from(data, 0)
        if version != 10:
            raise MalformedDatagram(f"not IPFIX (version {version})")
        if length < HEADER_LEN:
            raise MalformedDatagram(f"message length {length} < header")
        if length > len(data):
            raise MalformedDatagram(f"message length {length} exceeds datagram of {len(data)}")
        n = length  # bytes past the message length are not part of it
        msg = IpfixMessage(version, length, export_time, seq, domain)
        off = HEADER_LEN
        while off < n:
            if n - off < 4:
                raise MalformedDatagram("truncated set header", off)
            set_id, set_len = _SET.unpack_from(data, off)
            if set_len < 4:
                raise MalformedDatagram(f"set length {set_len} < 4", off)
            end = off + set_len
            if end > n:
                raise MalformedDatagram("set length exceeds message", off)
            if set_id == TEMPLATE_SET:
                self._templates(data, off + 4, end, exporter, msg, now, False)
            elif set_id == OPTIONS_TEMPLATE_SET:
                self._templates(data, off + 4, end, exporter, msg, now, True)
            elif set_id >= MIN_DATA_SET:
                self._data(data, off + 4, end, set_id, exporter, msg, now)
            else:
                msg.unknown_sets += 1
            off = end
        return msg

    # ---------------------------------------------------------------- sets

    def _templates(self, data, off, end, exporter, msg, now, options):
        set_id = OPTIONS_TEMPLATE_SET if options else TEMPLATE_SET
        while end - off >= 4:
            tid, fcount = _SET.unpack_from(data, off)
            if fcount == 0:  # withdrawal
                if tid == set_id:
                    self.cache.withdraw_all(exporter, msg.domain, options)
                elif tid >= MIN_DATA_SET:
                    self.cache.withdraw((exporter, msg.domain, tid))
                elif tid == 0 and _all_zero(data, off, end):
                    return  # padding
                else:
                    raise MalformedDatagram(f"bad withdrawal template id {tid}", off)
                msg.withdrawn.append(tid)
                off += 4
                continue
            if tid < MIN_DATA_SET:
                raise MalformedDatagram(f"template id {tid} < 256", off)
            off += 4
            scope_count = 0
            if options:
                if end - off < 2:
                    raise MalformedDatagram("truncated options template header", off)
                scope_count = _U16.unpack_from(data, off)[0]
                off += 2
                if scope_count == 0 or scope_count > fcount:
                    raise MalformedDatagram(f"bad scope field count {scope_count}", off - 2)
            if fcount * 4 > end - off:
                raise MalformedDatagram("template fields exceed set", off)
            fields = []
            for _ in range(fcount):
                if end - off < 4:
                    raise MalformedDatagram("template fields exceed set", off)
                ie_id, length = _FIELD.unpack_from(data, off)
                off += 4
                pen = 0
                if ie_id & 0x8000:
                    if end - off < 4:
                        raise MalformedDatagram("truncated enterprise number", off)
                    pen = _PEN.unpack_from(data, off)[0]
                    off += 4
                    ie_id &= 0x7FFF
                fields.append(FieldSpec(ie_id, length, pen))
            tpl = Template(tid, fields, scope_count=scope_count, options=options)
            self._learn(tpl, exporter, msg, now)
            (msg.options_templates if options else msg.templates).append(tid)

    def set_records(self, tpl: Template, data: bytes, off: int, end: int):
        """The records of one data set (collectors.templcolumns defers fixed layouts)."""
        return tpl.decode_records(data, off, end)

    def _learn(self, tpl: Template, exporter, msg: IpfixMessage, now: float) -> None:
        held = self.cache.put((exporter, msg.domain, tpl.template_id), tpl, now)
        for _held_at, body, export_time in held:
            try:
                records = self.set_records(tpl, body, 0, len(body))
            except MalformedDatagram:
                msg.late_malformed += 1
                continue
            msg.data_sets.append(DataSet(tpl.template_id, msg.domain, tpl.options, records,
                                         export_time, None, late=True))

    def _data(self, data, off, end, set_id, exporter, msg, now):
        key = (exporter, msg.domain, set_id)
        tpl = self.cache.get(key, now)
        if tpl is None:
            self.cache.hold(key, data[off:end], msg.export_time, now)
            msg.pending_sets += 1
            return
        msg.data_sets.append(DataSet(set_id, msg.domain, tpl.options,
                                     self.set_records(tpl, data, off, end), msg.export_time))
