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
headers are read for the whole burst in one numpy gather (`_simple`), and in each run of
such messages (`_segment`; no template can change within it) those whose set reads as the
template's layout are taken without the decoder's walk, per template at once (one
`TemplateCache.peek`, one numpy check of every record's length prefixes, one `Bulk` of
records) - the decoder would change nothing but the stats for them, which are kept per
(exporter, domain) in arrival order (`CollectorStats.observe_ipfix_headers` /
`observe_netflow9_headers`) between the messages it walks. (A template's freshness is
read at the burst's start: the per-record path reads the clock per datagram.)
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
        groups: dict = {}       # Layout.key -> (layout, [(Deferred, exporter, DataSet) | Bulk])
        h = _simple(batch, proto == "netflow9")
        mono = self.decoder.clock()
        ok = h["ok"]
        edges = np.flatnonzero(np.diff(np.concatenate(([False], ok, [False])).astype(np.int8)))
        pos = 0
        for a, b in list(zip(edges[0::2].tolist(), edges[1::2].tolist())) + [(len(batch), 0)]:
            for k in range(pos, a):
                self._walk(batch[k], now, groups, fallback)
            if a >= b:
                break
            # a run of simple messages: those taken at once; their stats, and the walk of
            # the others, in arrival order
            taken, counts, eid, exporters = self._segment(batch, a, b, h, mono, groups)
            inner = np.flatnonzero(np.diff(np.concatenate(([False], taken, [False]))
                                           .astype(np.int8)))
            p = 0
            for x, y in list(zip(inner[0::2].tolist(), inner[1::2].tolist())) + [(b - a, 0)]:
                for k in range(p, x):
                    self._walk(batch[a + k], now, groups, fallback)
                if x >= y:
                    break
                self._observe(h, a, x, y, eid, exporters, counts)
                p = y
            pos = b
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
            for item in sets:
                for recs in _per_record(item, proto):
                    rcv._records(proto, recs, now)

    def _walk(self, item: tuple, now: float, groups: dict, fallback) -> None:
        """One message through the decoder (what _Receiver.handle_one does around the
        per-record handler), its layout-readable sets deferred into `groups`."""
        data, src = item
        if not self.mine(data):
            fallback(data, src)
            return
        rcv, proto = self.rcv, self.proto
        try:
            msg = self.decoder.decode(data, src)
            self.observe(msg, src, self.cache)
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
            for entry in later:      # (only once the datagram went through)
                _group(groups, entry)
        except MalformedDatagram:
            rcv._malformed(data, src)
        except Exception as exc:  # a decoder bug must not kill the thread
            rcv._malformed(data, src)
            rcv._error(exc)

    def _segment(self, batch: list, a: int, b: int, h: dict, mono: float,
                 groups: dict) -> tuple:
        """Simple messages batch[a:b]: those whose set is of a known, fresh template and
        reads as its layout are taken (per template: one numpy check of every record's
        length prefixes, one gather of the records, a `Bulk` in `groups`), changing
        nothing else. (taken, record counts, exporter number per message, exporters)."""
        m = b - a
        srcs = [batch[k][1] for k in range(a, b)]
        ids: dict = {}
        eid = np.fromiter((ids.setdefault(s, len(ids)) for s in srcs), dtype=np.int64, count=m)
        exporters = list(ids)
        dom, sid = h["domain"][a:b], h["set_id"][a:b]
        key = (eid << 48) | (dom << 16) | sid          # (eid < 2**15: a burst's exporters)
        uk, first, inv = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(inv.reshape(-1), kind="stable")
        bounds = np.searchsorted(inv.reshape(-1)[order], np.arange(len(uk) + 1))
        lens, starts, buf = h["lens"][a:b], h["starts"][a:b], h["buf"]
        taken = np.zeros(m, dtype=bool)
        counts = np.zeros(m, dtype=np.int64)
        body = self.body
        for u in range(len(uk)):
            f = int(first[u])
            tpl = self.cache.peek((srcs[f], int(dom[f]), int(sid[f])), mono)
            if tpl is None or tpl.options:
                continue
            idx = order[bounds[u]:bounds[u + 1]]
            avail = lens[idx] - body
            if tpl.fixed_length is not None:
                lay = fixed_layout(tpl)
                cnt = avail // lay.size
            else:
                lay = tpl.layouts.get(LAST)
                if lay is None:         # (a template just learned: its first set's shape)
                    d0 = batch[a + int(idx[0])][0]
                    got = set_layout(tpl, d0, body, len(d0))
                    if got is None:
                        continue
                    lay = got[0]
                cnt = avail // lay.size
                good = (cnt >= 1) & (avail - cnt * lay.size < tpl.min_length)
                idx, cnt = idx[good], cnt[good]
            if not lay.vector or not len(idx):
                continue
            size = lay.size
            tot = int(cnt.sum())
            if lay.checks and tot:              # where each record starts in `buf`
                rec = np.repeat(starts[idx] + body - size * (np.cumsum(cnt) - cnt), cnt) \
                    + size * np.arange(tot)
                bad = np.zeros(tot, dtype=bool)
                for col, byte in lay.checks:    # every record's length prefixes
                    bad |= buf[rec + col] != byte
                if bad.any():
                    owner = np.repeat(np.arange(len(idx)), cnt)
                    keep = np.bincount(owner, weights=bad, minlength=len(idx)) == 0
                    idx, cnt = idx[keep], cnt[keep]
                    tot = int(cnt.sum())
            taken[idx] = True
            counts[idx] = cnt
            if tot:
                nz = cnt > 0
                ks = (idx[nz] + a).tolist()
                datas = [batch[k][0] for k in ks]
                rows = np.frombuffer(b"".join([d[body:body + c * size] for d, c in
                                               zip(datas, cnt[nz].tolist())]), dtype=lay.dtype)
                _group(groups, Bulk(tpl, lay, rows, exporters, eid[idx[nz]], cnt[nz],
                                    datas, h, ks, body))
        return taken, counts, eid, exporters

    def _observe(self, h: dict, a: int, x: int, y: int, eid, exporters, counts) -> None:
        """The stats of the taken messages batch[a+x:a+y], per (exporter, domain) in
        arrival order."""
        e, d = eid[x:y], h["domain"][a + x:a + y]
        order = np.lexsort((d, e))              # stable: arrival order within a group
        ge, gd = e[order], d[order]
        heads = np.flatnonzero(np.concatenate(([True], (ge[1:] != ge[:-1]) | (gd[1:] != gd[:-1]))))
        ends = np.append(heads[1:], len(order))
        seqs, cnts = h["seq"][a + x:a + y][order], counts[x:y][order]
        stats, cache = self.rcv.stats[self.proto], self.cache
        observe = stats.observe_ipfix_headers if self.proto == "ipfix" else \
            stats.observe_netflow9_headers
        for i, j in zip(heads.tolist(), ends.tolist()):
            src = exporters[int(ge[i])]
            observe(src, int(gd[i]), seqs[i:j], cnts[i:j], cache.count(src))

    # ---------------------------------------------------------------- vectors

    def _vectors(self, groups: dict) -> tuple[list, list]:
        """(arguments of _account per layout, groups left to the per-record path)."""
        rcv, proto = self.rcv, self.proto
        attributor = rcv.service.attributor
        t = _table(attributor, f"columnar-{proto}", _WIDTH)
        srcs = {}
        for _l, sets in groups.values():
            for item in sets:
                if type(item) is Bulk:
                    srcs.update(dict.fromkeys(item.exporters))
                else:
                    srcs[item[1]] = None
        if len(t.exporters) + len(srcs) > MAX_EXPORTERS:
            t.__init__(_WIDTH)      # renumbering: before any id of this burst is taken
        ids = {src: t.exporter_id(src) for src in srcs}
        exporters = t.exporters

        def resolve(row):
            return attributor.attribute(_record(exporters, proto, row))

        todo, slow = [], []
        for layout, sets in groups.values():
            size = layout.size
            parts, exps = [], []
            one = [item for item in sets if type(item) is not Bulk]
            if one:
                counts = np.array([r.count for r, _s, _d in one], dtype=np.int64)
                parts.append(np.frombuffer(b"".join([r.data[r.off:r.off + r.count * size]
                                                     for r, _s, _d in one]), dtype=layout.dtype))
                exps.append(np.repeat(np.array([ids[s] for _r, s, _d in one], dtype=np.uint64),
                                      counts))
            for item in sets:
                if type(item) is Bulk:
                    tid = np.array([ids[s] for s in item.exporters], dtype=np.uint64)
                    parts.append(item.rows)
                    exps.append(np.repeat(tid[item.eids], item.counts))
            rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
            exp = exps[0] if len(exps) == 1 else np.concatenate(exps)
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


def _group(groups: dict, item) -> None:
    lay = item.layout if type(item) is Bulk else item[0].layout
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


def _simple(batch: list, v9: bool) -> dict:
    """The burst's headers read at once: per message ok (simple: the protocol's version,
    one set - a data set - filling the datagram, and for IPFIX its length the datagram's),
    domain, set_id, seq, export, uptime (v9), lens and starts in `buf` (the burst joined)."""
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
    else:
        length = h["length"].astype(np.int64)
        ok = (lens >= size) & (h["version"] == 10) & (length == lens) & (set_len == length - 16)
    ok &= h["set_id"] >= 256
    return {"ok": ok, "domain": h["domain"].astype(np.int64),
            "set_id": h["set_id"].astype(np.int64), "seq": h["seq"].astype(np.int64),
            "export": h["export"], "uptime": h["uptime"] if v9 else None,
            "lens": lens, "starts": starts, "buf": buf}


class Bulk:
    """Simple messages of one template in a burst, taken at once: their records as one
    array, and what the per-record path needs should they go there."""

    __slots__ = ("tpl", "layout", "rows", "exporters", "eids", "counts", "datas", "h",
                 "where", "body")

    def __init__(self, tpl, layout, rows, exporters, eids, counts, datas, h, where,
                 body) -> None:
        self.tpl, self.layout, self.rows = tpl, layout, rows
        self.exporters, self.eids, self.counts = exporters, eids, counts
        self.datas, self.h, self.where, self.body = datas, h, where, body


def _per_record(item, proto: str):
    """FlowRecord lists of a group item, the per-record way."""
    if type(item) is not Bulk:
        r, src, ds = item
        yield [normalise.template_record(d, ds, src, proto) for d in r]
        return
    h, tpl, size = item.h, item.tpl, item.layout.size
    for data, k, e, c in zip(item.datas, item.where, item.eids.tolist(), item.counts.tolist()):
        src = item.exporters[e]
        ds = DataSet(int(h["set_id"][k]), int(h["domain"][k]), False, [],
                     int(h["export"][k]), None if h["uptime"] is None else int(h["uptime"][k]))
        yield [normalise.template_record(d, ds, src, proto)
               for d in tpl.decode_records(data, item.body, item.body + c * size)]


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
