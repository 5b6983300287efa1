"""Columnar decode, attribution and pre-aggregation of NetFlow v9 / IPFIX datagram bursts.

`TemplateColumns(rcv, "ipfix" | "netflow9").run(batch, now, fallback)` walks each datagram
of a burst with the protocol's own decoder (so templates, options templates, withdrawals,
held sets and the template store behave exactly as on the per-record path, and a datagram
the decoder rejects is counted malformed the same way), but data sets whose records read
as one numpy layout (`collectors.templdtype`: every set of an all-fixed-length template,
sets of a variable-length one whose records all have the same lengths) are not turned into
dicts: they are kept as `Deferred` (a record count for the stats) and, after the walk,
read per layout in one `np.frombuffer`, normalised to normalise.template_record's
attribution fields, bytes (layer2OctetDeltaCount, else octetDeltaCount), packets and
service, looked up in an `AttributionTable` like NetFlow v5 / sFlow, and summed with the
same vectorised group-by (`columnar._account`). What cannot be vectorised - other
variable-length sets, options data (only counted), counters past int64, protocol numbers
past 255 - goes through `Template.decode_records` and normalise.template_record per record.
Datagrams of another protocol go to `fallback` (the per-record path), in order.

Most messages in steady state are a header and one data set of a known template: their
headers are read for the whole burst in one numpy gather (`_simple`), and such a message
whose set reads as the template's layout is taken without the decoder's walk - it would
change nothing but the stats, which are kept per (exporter, domain) in arrival order
(`CollectorStats.observe_ipfix_headers` / `observe_netflow9_headers`) between the
messages the decoder walks. (A template's freshness is read with `TemplateCache.peek`,
at the burst's start: the per-record path reads the clock per datagram.)
"""
from __future__ import annotations

from socket import AF_INET6, inet_ntoa, inet_ntop

import numpy as np

from . import normalise, vecservice
from .columnar import MAX_EXPORTERS, _account, _table
from .errors import MalformedDatagram
from .ipfix import IpfixDecoder
from .netflow_v9 import NetflowV9Decoder
from .records import FlowRecord
from .templates import DataSet
from .templdtype import LAST, fits, fixed_layout, set_layout

_WIDTH = 10     # key words: exporter|presence, tunnel key, src MAC, dst MAC, src IP x2,
                # dst IP x2, ingress, egress
_F_TKEY, _F_SMAC, _F_DMAC, _F_IN, _F_OUT = 1, 2, 4, 8, 16
_SIP_SHIFT, _DIP_SHIFT = 5, 7       # 2 bits each: 0 none, 1 IPv4, 2 IPv6
_INT64_MAX = np.uint64((1 << 63) - 1)


class Deferred:
    """The records of a data set left in its datagram: len() for the stats, read later."""

    __slots__ = ("tpl", "layout", "data", "off", "count")

    def __init__(self, tpl, layout, data: bytes, off: int, count: int) -> None:
        self.tpl, self.layout, self.data, self.off, self.count = tpl, layout, data, off, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):     # the per-record records (never raises: the layout was checked)
        lay = self.layout
        return iter(self.tpl.decode_records(self.data, self.off, self.off + self.count * lay.size))


def _deferring(base):
    class _Deferring(base):
        """The protocol's decoder, deferring the data sets that read as a numpy layout."""

        def set_records(self, tpl, data, off, end):
            got = set_layout(tpl, data, off, end)
            if got is None:
                return tpl.decode_records(data, off, end)
            layout, count = got
            return Deferred(tpl, layout, data, off, count)
    _Deferring.__name__ = f"Deferring{base.__name__}"
    return _Deferring


DeferringIpfixDecoder = _deferring(IpfixDecoder)
DeferringNetflowV9Decoder = _deferring(NetflowV9Decoder)


class TemplateColumns:
    """A burst of IPFIX or NetFlow v9 datagrams -> arrays -> attributed, aggregated sums."""

    def __init__(self, rcv, proto: str) -> None:
        self.rcv = rcv
        self.proto = proto
        cache = rcv.caches[proto]
        if proto == "ipfix":
            self.decoder = DeferringIpfixDecoder(cache)
            self.observe = rcv.stats[proto].observe_ipfix
            self.mine = lambda data: True       # the IPFIX socket: every datagram
        else:
            self.decoder = DeferringNetflowV9Decoder(cache)
            self.observe = rcv.stats[proto].observe_netflow9
            self.mine = lambda data: data[:2] == b"\x00\x09"
        self.cache = cache
        self.body = 24 if proto == "netflow9" else 20   # a simple message's set body offset
        self.vectorised = 0     # records that went the numpy way (tests and benchmarks read it)

    def run(self, batch: list, now: float, fallback) -> None:
        rcv, proto = self.rcv, self.proto
        groups: dict = {}       # Layout.key -> (layout, [(Deferred, exporter, DataSet)])
        decode, observe, cache = self.decoder.decode, self.observe, self.cache
        simple = _simple(batch, proto == "netflow9")
        mono = self.decoder.clock()
        seen: list = []         # simple messages not yet in the stats: (src, domain, seq, count)
        for i, (data, src) in enumerate(batch):
            if simple is not None and simple[0][i]:
                item = _take_simple(cache, data, src, mono, self.body,
                                    *(col[i] for col in simple[1:]))
                if item is not None:
                    seen.append(item[0])
                    if item[1] is not None:
                        _group(groups, item[1])
                    continue
            if seen:            # the stats in arrival order
                self._observe_simple(seen)
                seen = []
            if not self.mine(data):
                fallback(data, src)
                continue
            try:        # what _Receiver.handle_one does around the per-record handler
                msg = decode(data, src)
                observe(msg, src, cache)
                recs, later = [], []
                for ds in msg.data_sets:
                    if ds.options:
                        continue
                    r = ds.records
                    if type(r) is Deferred and r.layout.vector:
                        if r.count:
                            later.append((r, src, ds))
                        continue
                    recs.extend(normalise.template_record(d, ds, src, proto) for d in r)
                if recs:
                    rcv._records(proto, recs, now)
                for item in later:      # (only once the datagram went through)
                    _group(groups, item)
            except MalformedDatagram:
                rcv._malformed(data, src)
            except Exception as exc:  # a decoder bug must not kill the thread
                rcv._malformed(data, src)
                rcv._error(exc)
        if seen:
            self._observe_simple(seen)
        if not groups:
            return
        try:
            todo, slow = self._vectors(groups)
        except Exception as exc:    # nothing changed but the table: per record instead
            rcv._error(exc)
            todo, slow = [], list(groups.values())
        for args in todo:
            _account(rcv, proto, *args, now)
            self.vectorised += len(args[2])
        for _layout, sets in slow:
            for r, src, ds in sets:
                rcv._records(proto, [normalise.template_record(d, ds, src, proto) for d in r],
                             now)

    def _observe_simple(self, seen: list) -> None:
        """The stats of simple messages, per (exporter, domain) in arrival order."""
        by: dict = {}
        for src, domain, seq, count in seen:
            e = by.get((src, domain))
            if e is None:
                e = by[(src, domain)] = ([], [])
            e[0].append(seq)
            e[1].append(count)
        stats, cache = self.rcv.stats[self.proto], self.cache
        observe = stats.observe_ipfix_headers if self.proto == "ipfix" else \
            stats.observe_netflow9_headers
        for (src, domain), (seqs, counts) in by.items():
            observe(src, domain, np.array(seqs, dtype=np.int64),
                    np.array(counts, dtype=np.int64), cache.count(src))

    # ---------------------------------------------------------------- vectors

    def _vectors(self, groups: dict) -> tuple[list, list]:
        """(arguments of _account per layout, groups left to the per-record path)."""
        rcv, proto = self.rcv, self.proto
        attributor = rcv.service.attributor
        t = _table(attributor, f"columnar-{proto}", _WIDTH)
        srcs = list(dict.fromkeys(src for _l, sets in groups.values() for _r, src, _d in sets))
        if len(t.exporters) + len(srcs) > MAX_EXPORTERS:
            t.__init__(_WIDTH)      # renumbering: before any id of this burst is taken
        ids = {src: t.exporter_id(src) for src in srcs}
        exporters = t.exporters

        def resolve(row):
            return attributor.attribute(_record(exporters, proto, row))

        todo, slow = [], []
        for layout, sets in groups.values():
            counts = np.array([r.count for r, _s, _d in sets], dtype=np.int64)
            size = layout.size
            if len(sets) == 1:
                r = sets[0][0]
                rows = np.frombuffer(r.data, dtype=layout.dtype, count=r.count, offset=r.off)
            else:
                rows = np.frombuffer(b"".join([r.data[r.off:r.off + r.count * size]
                                               for r, _s, _d in sets]), dtype=layout.dtype)
            exp = np.repeat(np.array([ids[s] for _r, s, _d in sets], dtype=np.uint64), counts)
            got = self._columns(layout, rows, exp)
            if got is None:
                slow.append((layout, sets))
                continue
            keys, nbytes, npkts, codes = got
            idx, attrs, counted = t.table.lookup(keys, resolve)
            todo.append((attrs, counted, idx, codes, nbytes, npkts))
        return todo, slow

    @staticmethod
    def _columns(layout, rows, exp) -> tuple | None:
        """(keys, bytes, packets, service codes), None when not exact in int64."""
        n = len(rows)
        u64 = np.uint64
        zeros = np.zeros(n, dtype=u64)
        counts = []
        for roles in (("l2octets", "octets"), ("packets",)):
            v = None
            for role in roles:
                v = layout.uint(rows, role)
                if v is not None:
                    break
            if v is None:
                v = zeros
            if n and v.max() > _INT64_MAX:
                return None
            counts.append(v.astype(np.int64))
        proto = layout.uint(rows, "proto")
        sport, dport = layout.uint(rows, "sport"), layout.uint(rows, "dport")
        if proto is None:
            codes = np.full(n, vecservice.NONE_CODE, dtype=np.int64)
        else:
            if n and int(proto.max()) > 255:
                return None     # (codes pack a byte of protocol)
            if sport is None or dport is None:
                codes = vecservice.codes(proto, zeros, zeros, has_ports=np.zeros(n, dtype=bool))
            else:
                if n and max(int(sport.max()), int(dport.max())) >= 1 << 62:
                    return None
                codes = vecservice.codes(proto, sport.astype(np.int64), dport.astype(np.int64))
        keys = np.zeros((n, _WIDTH), dtype=u64)
        flags = 0
        for role, bit, col in (("tunnel_key", _F_TKEY, 1), ("in_if", _F_IN, 8),
                               ("out_if", _F_OUT, 9)):
            v = layout.uint(rows, role)
            if v is not None:
                flags |= bit
                keys[:, col] = v
        for role, bit, col in (("smac", _F_SMAC, 2), ("dmac", _F_DMAC, 3)):
            v = layout.words(rows, role)
            if v is not None:
                flags |= bit
                keys[:, col] = v
        for v4, v6, shift, col in (("sip4", "sip6", _SIP_SHIFT, 4), ("dip4", "dip6", _DIP_SHIFT, 6)):
            v = layout.words(rows, v4)
            if v is not None:
                flags |= 1 << shift
                keys[:, col + 1] = v
            else:
                v = layout.words(rows, v6)
                if v is not None:
                    flags |= 2 << shift
                    keys[:, col:col + 2] = v
        keys[:, 0] = (exp << u64(32)) | u64(flags)
        return keys, counts[0], counts[1], codes


def _group(groups: dict, item: tuple) -> None:
    lay = item[0].layout
    g = groups.get(lay.key)
    if g is None:
        g = groups[lay.key] = (lay, [])
    g[1].append(item)


# A message that is its header and one data set: the common message in steady state
_SIMPLE_IPFIX = np.dtype([("version", ">u2"), ("length", ">u2"), ("export", ">u4"),
                          ("seq", ">u4"), ("domain", ">u4"), ("set_id", ">u2"),
                          ("set_len", ">u2")])
_SIMPLE_V9 = np.dtype([("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"),
                       ("export", ">u4"), ("seq", ">u4"), ("domain", ">u4"), ("set_id", ">u2"),
                       ("set_len", ">u2")])


def _simple(batch: list, v9: bool) -> tuple:
    """Per message of the burst, read at once: (simple?, domain, set id, sequence, export
    time, v9 uptime) lists; simple: the protocol's version, one set (a data set) filling
    the datagram (and, IPFIX, its length the datagram's)."""
    n = len(batch)
    dt = _SIMPLE_V9 if v9 else _SIMPLE_IPFIX
    size = dt.itemsize
    lens = np.fromiter((len(d) for d, _s in batch), dtype=np.int64, count=n)
    starts = np.cumsum(lens) - lens
    buf = np.frombuffer(b"".join([d for d, _s in batch]) + bytes(size), dtype=np.uint8)
    h = buf[starts[:, None] + np.arange(size)].view(dt).reshape(n)
    set_len = h["set_len"].astype(np.int64)
    if v9:
        ok = (lens >= size) & (h["version"] == 9) & (set_len == lens - 20)
        uptime = h["uptime"].tolist()
    else:
        length = h["length"].astype(np.int64)
        ok = (lens >= size) & (h["version"] == 10) & (length == lens) & (set_len == length - 16)
        uptime = [None] * n
    ok &= h["set_id"] >= 256
    return (ok.tolist(), h["domain"].tolist(), h["set_id"].tolist(), h["seq"].tolist(),
            h["export"].tolist(), uptime)


def _take_simple(cache, data: bytes, src, mono: float, body: int, domain: int, set_id: int,
                 seq: int, export: int, uptime) -> tuple | None:
    """((src, domain, seq, count) for the stats, (Deferred, src, DataSet) or None) when a
    simple message's set (at `body`) is of a known template and reads as one numpy layout,
    changing nothing (the decoder would do no more than count it: no template, no held
    set); else None, and the decoder walks it."""
    tpl = cache.peek((src, domain, set_id), mono)
    if tpl is None or tpl.options:
        return None
    if tpl.fixed_length is not None:
        lay = fixed_layout(tpl)
        count = (len(data) - body) // lay.size
    else:
        lay = tpl.layouts.get(LAST)
        count = None if lay is None else fits(lay, tpl, data, body, len(data))
    if count is None or not lay.vector:
        return None
    if not count:
        return (src, domain, seq, 0), None
    r = Deferred(tpl, lay, data, body, count)
    return (src, domain, seq, count), (r, src, DataSet(set_id, domain, False, r, export, uptime))


def _ip(kind: int, hi: int, lo: int) -> str | None:
    if kind == 1:
        return inet_ntoa(lo.to_bytes(4, "big"))
    if kind == 2:
        return inet_ntop(AF_INET6, hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))
    return None


def _record(exporters: list, proto: str, row: tuple) -> FlowRecord:
    """The FlowRecord fields attribution reads, from one key row (as template_record sets them)."""
    w0, tkey, smac, dmac, s_hi, s_lo, d_hi, d_lo, in_if, out_if = row
    flags = w0 & 0xFFFFFFFF
    return FlowRecord(
        exporters[w0 >> 32], proto,
        tunnel_key=tkey if flags & _F_TKEY else None,
        src_mac=smac.to_bytes(6, "big").hex(":") if flags & _F_SMAC else None,
        dst_mac=dmac.to_bytes(6, "big").hex(":") if flags & _F_DMAC else None,
        src_ip=_ip((flags >> _SIP_SHIFT) & 3, s_hi, s_lo),
        dst_ip=_ip((flags >> _DIP_SHIFT) & 3, d_hi, d_lo),
        in_interface=in_if if flags & _F_IN else None,
        out_interface=out_if if flags & _F_OUT else None)


class NetflowColumns:
    """The NetFlow socket's bursts: v5 through columnar.Netflow5Columns, then v9 here."""

    def __init__(self, rcv, v5) -> None:
        self.v5 = v5
        self.v9 = TemplateColumns(rcv, "netflow9")

    def run(self, batch: list, now: float, fallback) -> None:
        rest: list = []
        self.v5.run(batch, now, lambda data, src: rest.append((data, src)))
        if rest:
            self.v9.run(rest, now, fallback)
