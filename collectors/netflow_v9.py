"""NetFlow version 9 decoder (RFC 3954): template, options template and data flowsets.

`NetflowV9Decoder(cache).decode(data, exporter)` returns a `NetflowV9Packet`. Templates are
cached per (exporter, source id, template id); data flowsets whose template is not known yet
are held in the cache and come back decoded (`DataSet.late`) in the packet that brings the
template.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .errors import MalformedDatagram, as_bytes
from .templates import DataSet, FieldSpec, Template, TemplateCache

# version, count, sysUptime, unix_secs, package sequence, source id
HEADER = struct.Struct("!HHIIII")
HEADER_LEN = HEADER.size  # 20
_SET = struct.Struct("!HH")
_OPT = struct.Struct("!HHH")
TEMPLATE_SET = 0
OPTIONS_TEMPLATE_SET = 1
MIN_DATA_SET = 256


@dataclass(slots=True)
class NetflowV9Packet:
    version: int
    count: int  # records in the packet as claimed by the exporter (not enforced)
    sys_uptime: int
    unix_secs: int
    sequence: int
    source_id: int
    templates: list = field(default_factory=list)  # template ids learned or refreshed
    options_templates: list = field(default_factory=list)
    data_sets: list = field(default_factory=list)  # DataSet, including late ones
    pending_sets: int = 0  # data flowsets held for an unknown template
    unknown_sets: int = 0  # reserved flowset ids 2-255, skipped
    late_malformed: int = 0  # held sets that did not fit their template once it arrived

    @property
    def data_records(self) -> int:
        return sum(len(ds.records) for ds in self.data_sets if not ds.late)


def _all_zero(data: bytes, off: int, end: int) -> bool:
    return not any(data[off:end])


class NetflowV9Decoder:
    def __init__(self, cache: TemplateCache | None = None, clock=time.monotonic) -> None:
        self.cache = cache if cache is not None else TemplateCache()
        self.clock = clock

    def decode(self, data: bytes | bytearray | memoryview, exporter,
               now: float | None = None) -> NetflowV9Packet:
        """Decode one NetFlow v9 packet from `exporter` (any hashable, e.g. the source IP)."""
        data = as_bytes(data)
        if now is None:
            now = self.clock()
        n = len(data)
        if n < HEADER_LEN:
            raise MalformedDatagram("datagram shorter than NetFlow v9 header")
        version, count, uptime, secs, seq, source = HEADER.unpack_from(data, 0)
        if version != 9:
            raise MalformedDatagram(f"not NetFlow v9 (version {version})")
        pkt = NetflowV9Packet(version, count, uptime, secs, seq, source)
        off = HEADER_LEN
        while n - off >= 4:
            fsid, flen = _SET.unpack_from(data, off)
            if flen < 4:
                if fsid == 0 and flen == 0 and _all_zero(data, off, n):
                    break  # zero padding after the last flowset
                raise MalformedDatagram(f"flowset length {flen} < 4", off)
            end = off + flen
            if end > n:
                raise MalformedDatagram("flowset length exceeds datagram", off)
            if fsid == TEMPLATE_SET:
                self._templates(data, off + 4, end, exporter, pkt, now)
            elif fsid == OPTIONS_TEMPLATE_SET:
                self._options_templates(data, off + 4, end, exporter, pkt, now)
            elif fsid >= MIN_DATA_SET:
                self._data(data, off + 4, end, fsid, exporter, pkt, now)
            else:
                pkt.unknown_sets += 1
            off = end
        return pkt

    # ---------------------------------------------------------------- flowsets

    def _templates(self, data, off, end, exporter, pkt, now):
        while end - off >= 4:
            tid, fcount = _SET.unpack_from(data, off)
            if tid < MIN_DATA_SET:
                if _all_zero(data, off, end):
                    return  # padding
                raise MalformedDatagram(f"template id {tid} < 256", off)
            if fcount == 0:
                raise MalformedDatagram("template with no fields", off)
            off += 4
            if fcount * 4 > end - off:
                raise MalformedDatagram("template fields exceed flowset", off)
            fields = [FieldSpec(t, ln) for t, ln in
                      struct.iter_unpack("!HH", data[off:off + fcount * 4])]
            off += fcount * 4
            self._learn(Template(tid, fields, allow_variable=False), exporter, pkt, now)
            pkt.templates.append(tid)

    def _options_templates(self, data, off, end, exporter, pkt, now):
        while end - off >= 6:
            tid, scope_len, opt_len = _OPT.unpack_from(data, off)
            if tid < MIN_DATA_SET:
                if _all_zero(data, off, end):
                    return
                raise MalformedDatagram(f"options template id {tid} < 256", off)
            off += 6
            if scope_len % 4 or opt_len % 4:
                raise MalformedDatagram("options template lengths not multiples of 4", off)
            total = scope_len + opt_len
            if total == 0:
                raise MalformedDatagram("options template with no fields", off)
            if total > end - off:
                raise MalformedDatagram("options template exceeds flowset", off)
            fields = [FieldSpec(t, ln)
                      for t, ln in struct.iter_unpack("!HH", data[off:off + total])]
            off += total
            tpl = Template(tid, fields, scope_count=scope_len // 4, options=True,
                           v9_scopes=True, allow_variable=False)
            self._learn(tpl, exporter, pkt, now)
            pkt.options_templates.append(tid)

    def set_records(self, tpl: Template, data: bytes, off: int, end: int):
        """The records of one data set (collectors.templcolumns defers fixed layouts)."""
        return tpl.decode_records(data, off, end)

    def _learn(self, tpl: Template, exporter, pkt: NetflowV9Packet, now: float) -> None:
        held = self.cache.put((exporter, pkt.source_id, tpl.template_id), tpl, now)
        for _held_at, body, (uptime, secs) in held:
            try:
                records = self.set_records(tpl, body, 0, len(body))
            except MalformedDatagram:
                pkt.late_malformed += 1
                continue
            pkt.data_sets.append(DataSet(tpl.template_id, pkt.source_id, tpl.options, records,
                                         secs, uptime, late=True))

    def _data(self, data, off, end, fsid, exporter, pkt, now):
        key = (exporter, pkt.source_id, fsid)
        tpl = self.cache.get(key, now)
        if tpl is None:
            self.cache.hold(key, data[off:end], (pkt.sys_uptime, pkt.unix_secs), now)
            pkt.pending_sets += 1
            return
        pkt.data_sets.append(DataSet(fsid, pkt.source_id, tpl.options,
                                     self.set_records(tpl, data, off, end),
                                     pkt.unix_secs, pkt.sys_uptime))
