"""Columnar decode, attribution and pre-aggregation of datagram batches (NetFlow v5, sFlow VXLAN).

A receiver hands a burst of datagrams to `Netflow5Columns.run` / `SflowColumns.run`; each
returns the datagrams it did not take (to the per-record path, in order), having:

* NetFlow v5: read the 24-byte headers of the burst as one numpy structured array (version,
  count against length), then all the records as another (the fixed 48-byte layout); the
  header stats go per (exporter, engine), a run of sequences that follow each other in one
  tracker step;
* sFlow: walked samples and records of all the datagrams at once (one numpy step per
  sample / record position, across the burst), taking only datagrams the per-record
  decoder accepts whose flow samples all carry a raw Ethernet/IPv4/UDP:4789/VXLAN/Ethernet/
  IPv4 header (the layout of `service.vxlan_key`); every other datagram (counter samples,
  other headers, anything the decoder might reject) goes to the per-record path whole;
* looked up each record's attribution in an `AttributionTable` (keys: the fields the
  attribution depends on), resolving unseen keys with the Attributor - the per-record
  path's own function;
* classified each record's service with `vecservice.codes` and summed bytes/packets per
  (attribution, service) into the bucket's running sums (`Pending.add`, a hash group-by).

`Pending.drain` turns a closed bucket's sums into the receiver's bucket model {(src, dst,
Service): [bytes, packets, first, last]} for `Aggregator.add_batch`, grouped by (src, dst,
service) and folded to the aggregator's max_keys in numpy. Sums stay exact: sFlow samples
with a frame length or sampling rate of 2**20 or more go the per-record path, and sums that
could overflow int64 are made with Python integers.
"""
from __future__ import annotations

from socket import inet_ntoa

import numpy as np

from . import vecservice
from .aggregate import OTHER, pair_tenant
from .attrtable import AttributionTable
from .keysums import KeySums
from .records import FlowRecord

MAX_EXPORTERS = 1 << 16

NF5_RECORD = np.dtype([
    ("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
    ("packets", ">u4"), ("octets", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("sport", ">u2"), ("dport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("proto", "u1"),
    ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"),
    ("dst_mask", "u1"), ("pad2", ">u2")])
assert NF5_RECORD.itemsize == 48
_NF5_HDR = np.dtype([("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"),
                     ("nsecs", ">u4"), ("sequence", ">u4"), ("engine_type", "u1"),
                     ("engine_id", "u1"), ("sampling", ">u2")])
assert _NF5_HDR.itemsize == 24


class _Pairs:
    """Numbering of the (src, dst) endpoint pairs and tenant pairs of attributions, so a
    closed bucket is grouped by (pair, service) in numpy: one Python step per attribution
    (when first drained), not one per key and bucket."""

    LIMIT = 1 << 20     # pairs remembered; more: start over (between two drains)

    def __init__(self) -> None:
        self.ids: dict = {}          # (src, dst) -> pair id
        self.pairs: list = []        # pair id -> (src, dst)
        self.tenant_ids: dict = {}   # (src tenant, dst tenant) -> tenant pair id
        self.tenants: list = []      # tenant pair id -> (src tenant, dst tenant)
        self.tenant_of: list = []    # pair id -> tenant pair id
        self.of_attrs: dict = {}     # id(attrs list) -> (attrs list, pair id per index)
        self._tenant_array = np.zeros(0, dtype=np.int64)

    def tenant_array(self) -> np.ndarray:
        """Tenant pair id per pair id, as an array."""
        if len(self._tenant_array) < len(self.tenant_of):
            self._tenant_array = np.array(self.tenant_of, dtype=np.int64)
        return self._tenant_array

    def pair_ids(self, attrs: list) -> np.ndarray:
        """Pair id per index of `attrs` (an attribution table's list; it only grows)."""
        ent = self.of_attrs.get(id(attrs))
        if ent is None or ent[0] is not attrs:
            ent = (attrs, np.zeros(0, dtype=np.int64))
        known = ent[1]
        if len(known) < len(attrs):
            ids, tids = self.ids, self.tenant_ids
            new = []
            for a in attrs[len(known):]:
                k = (a.src, a.dst)
                p = ids.get(k)
                if p is None:
                    p = ids[k] = len(self.pairs)
                    self.pairs.append(k)
                    tk = (pair_tenant(a.src), pair_tenant(a.dst))
                    t = tids.get(tk)
                    if t is None:
                        t = tids[tk] = len(self.tenants)
                        self.tenants.append(tk)
                    self.tenant_of.append(t)
                new.append(p)
            ent = (attrs, np.concatenate([known, np.array(new, dtype=np.int64)]))
        self.of_attrs[id(attrs)] = ent
        return ent[1]

    def keep_only(self, lists: list) -> None:
        """Forget the numbering of attrs lists not in `lists` (after a model change); start
        over when too many pairs were seen."""
        if len(self.pairs) > self.LIMIT:
            self.__init__()
            return
        ids = {id(a) for a in lists}
        self.of_attrs = {k: v for k, v in self.of_attrs.items() if k in ids}


_CODE_BITS = 27
_CODE_MASK = (1 << _CODE_BITS) - 1


def _group(keys: np.ndarray, nb: np.ndarray, npk: np.ndarray, first: np.ndarray,
           last: np.ndarray) -> tuple:
    """Sort-based group-by: (unique keys, sum bytes, sum packets, min first, max last);
    sums are int64, or Python integers (object arrays) when int64 could overflow (only
    hostile counts get there)."""
    order = np.argsort(keys)    # (not stable: sums, minima and maxima need no order)
    k = keys[order]
    heads = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    if nb.dtype != object and npk.dtype != object and \
            float(nb.sum(dtype=np.float64)) < 2.0 ** 62 and \
            float(npk.sum(dtype=np.float64)) < 2.0 ** 62:
        sb = np.add.reduceat(nb[order], heads)
        sp = np.add.reduceat(npk[order], heads)
    else:
        sb, sp = _exact_sums(nb[order].tolist(), npk[order].tolist(), heads.tolist(), len(k))
        sb, sp = np.array(sb, dtype=object), np.array(sp, dtype=object)
    return (k[heads], sb, sp, np.minimum.reduceat(first[order], heads),
            np.maximum.reduceat(last[order], heads))


class Pending:
    """Per-bucket sums of (attribution index, service code) -> bytes, packets, first, last.

    Kept in numpy until the bucket closes: `add` adds each burst to the bucket's running
    sums (`keysums.KeySums`, a hash group-by; one per bucket and attribution list),
    `drain` hands buckets over grouped by (src, dst, service) and folded to the
    aggregator's `max_keys` in numpy - so a bucket's Python work is per kept key (about
    max_keys), not per key seen (random traffic between 200 VMs gives ~150,000 (pair,
    service) keys a bucket)."""

    def __init__(self) -> None:
        self.parts: dict[float, dict] = {}     # start -> {id(attrs): (attrs, KeySums)}
        self.numbering = _Pairs()
        self.last_keys = 0                     # keys of the last bucket drained (a size hint)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def add(self, start: float, attrs: list, idx: np.ndarray, codes: np.ndarray,
            nbytes: np.ndarray, npkts: np.ndarray, now: float) -> None:
        if not len(idx):
            return
        parts = self.parts.setdefault(start, {})
        part = parts.get(id(attrs))
        if part is None or part[0] is not attrs:
            part = parts[id(attrs)] = (attrs, KeySums(min(self.last_keys, 1 << 20)))
        part[1].add((idx << _CODE_BITS) | (codes + 1), nbytes, npkts, now)

    def drain(self, before: float | None = None, max_keys: int | None = None) -> tuple:
        """(batch, tenant_pairs, folded) of the buckets starting before `before` (all when
        None), for `Aggregator.add_batch`: batch {bucket start: {(src, dst, Service):
        [bytes, packets, first, last]}} with at most max_keys less a tenth keys a bucket
        (the aggregator's eviction rule), other->other included, which holds the sum of
        the smaller keys; tenant_pairs {(src tenant, dst tenant): [bytes,
        packets]} over all the keys; folded: how many keys went into other->other."""
        numbering = self.numbering
        batch: dict = {}
        tenant_pairs: dict = {}
        folded = 0
        # Aggregator._evict's rule: max_keys less a tenth, other->other included
        keep = None if max_keys is None else max(1, max_keys - max_keys // 10) - 1
        used = []
        for start in [s for s in self.parts if before is None or s < before]:
            cols = []
            for attrs, sums in self.parts.pop(start).values():
                k, sb, sp, first, last = sums.columns()
                self.last_keys = len(k)
                used.append(attrs)
                pid = numbering.pair_ids(attrs)[k >> _CODE_BITS]
                cols.append(((pid << _CODE_BITS) | (k & _CODE_MASK), sb, sp, first, last))
            # several attributions (and attribution tables) can name the same pair
            keys, sb, sp, first, last = _group(*(np.concatenate([c[j] for c in cols])
                                                 for j in range(5)))
            # cumulative tenant-pair counters take every key, before any folding
            tenant_of = numbering.tenant_array()
            tk, tb, tp, _f, _l = _group(tenant_of[keys >> _CODE_BITS], sb, sp, first, last)
            for t, b, p in zip(tk.tolist(), tb.tolist(), tp.tolist()):
                e = tenant_pairs.setdefault(numbering.tenants[t], [0, 0])
                e[0] += b
                e[1] += p
            entries = batch[start] = {}
            if keep is not None and len(keys) > keep:   # top `keep` by bytes, the rest folded
                if sb.dtype == object:
                    top = np.array(sorted(range(len(sb)), key=lambda i: -sb[i])[:keep])
                elif keep:
                    top = np.argpartition(-sb, keep - 1)[:keep]
                else:
                    top = np.zeros(0, dtype=np.int64)
                rest = np.ones(len(keys), dtype=bool)
                rest[top] = False
                entries[(OTHER, OTHER, None)] = [
                    sum(sb[rest].tolist()) if sb.dtype == object else int(sb[rest].sum()),
                    sum(sp[rest].tolist()) if sp.dtype == object else int(sp[rest].sum()),
                    float(first[rest].min()), float(last[rest].max())]
                folded += int(rest.sum())
                keys, sb, sp, first, last = keys[top], sb[top], sp[top], first[top], last[top]
            pairs = numbering.pairs
            service_of = vecservice.service_of
            for key, b, p, f, la in zip(keys.tolist(), sb.tolist(), sp.tolist(),
                                        first.tolist(), last.tolist()):
                src, dst = pairs[key >> _CODE_BITS]
                entries[(src, dst, service_of((key & _CODE_MASK) - 1))] = [b, p, f, la]
        numbering.keep_only(used + [a for parts in self.parts.values() for a, _s in parts.values()])
        return batch, tenant_pairs, folded


def _exact_sums(nb: list, npk: list, heads: list, n: int) -> tuple[list, list]:
    sb, sp = [], []
    for a, b in zip(heads, heads[1:] + [n]):
        sb.append(sum(nb[a:b]))
        sp.append(sum(npk[a:b]))
    return sb, sp


class _Table:
    """The attribution table and exporter numbering of one receiver, per model index."""

    def __init__(self, width: int) -> None:
        self.table = AttributionTable(width)
        self.exporter_ids: dict = {}
        self.exporters: list = []

    def exporter_id(self, exporter) -> int:
        i = self.exporter_ids.get(exporter)
        if i is None:
            if len(self.exporters) >= MAX_EXPORTERS:  # renumbering: forget the keys too
                self.__init__(self.table.width)
            i = self.exporter_ids[exporter] = len(self.exporters)
            self.exporters.append(exporter)
        return i


def _table(attributor, name: str, width: int) -> _Table:
    memo = attributor.memo()
    t = memo.get(name)
    if t is None:
        t = memo[name] = _Table(width)
    return t


def _account(rcv, proto: str, attrs, counted_of, idx, codes, nbytes, npkts, now) -> None:
    counted = counted_of[idx]
    n = len(idx)
    c = int(counted.sum())
    f = rcv.flows[proto]
    f[0] += n
    f[1] += c
    f[2] += n - c
    if c:
        if c < n:
            idx, codes, nbytes, npkts = idx[counted], codes[counted], nbytes[counted], npkts[counted]
        bs = rcv.service.bucket_seconds
        rcv.pending.add((now // bs) * bs, attrs, idx, codes, nbytes, npkts, now)


def _nf5_split(datas: list, lens: np.ndarray) -> tuple:
    """(the 24-byte headers of a burst's datagrams as one array, records(ok, counts) -> the
    records of the datagrams `ok` (their first `counts` each) as one NF5_RECORD array: 1-D,
    or 2-D (datagram, record) read in place when every datagram is taken with one count).

    Reads one joined buffer with numpy; Python steps per datagram (slicing each) only for
    bursts whose datagrams are neither all of one length nor all 8-byte multiples. (Slicing
    and padding every datagram was ~30 % of the columnar path's CPU.)"""
    n = len(datas)
    joined = b"".join(datas)
    size = int(lens[0]) if n else 0
    if n and size >= 24 and len(joined) == n * size:       # one length: a 2-D view
        grid = np.frombuffer(joined, dtype=np.uint8).reshape(n, size)
        hdr = np.ascontiguousarray(grid[:, :24]).view(_NF5_HDR).reshape(n)

        def records(ok, counts):
            c = int(counts[0]) if len(counts) else 0
            if c and len(counts) == n and (counts == c).all():   # a strided view of `joined`
                return np.ndarray((n, c), dtype=NF5_RECORD, buffer=joined, offset=24,
                                  strides=(size, 48))
            return _nf5_gather(datas, joined, lens, ok, counts)
        return hdr, records
    # any lengths: each header read at its datagram's offset (short ones read what follows,
    # zero-padded at the end: they are never taken, lens < 24)
    starts = np.cumsum(lens) - lens
    buf = np.frombuffer(joined + bytes(24), dtype=np.uint8)
    hdr = buf[starts[:, None] + np.arange(24)].view(_NF5_HDR).reshape(n)
    return hdr, lambda ok, counts: _nf5_gather(datas, joined, lens, ok, counts, starts)


def _nf5_gather(datas, joined, lens, ok, counts, starts=None) -> np.ndarray:
    """The first `counts` records of the datagrams `ok`, as one NF5_RECORD array."""
    if starts is None:
        starts = np.cumsum(lens) - lens
    first = starts[ok] + 24
    total = int(counts.sum())
    if not (first & 7).any():      # every record 8-byte aligned in the joined buffer: 6 words each
        words = np.frombuffer(joined + bytes(-len(joined) & 7), dtype=np.uint64)
        before = np.cumsum(counts) - counts
        at = (np.repeat(first - 48 * before, counts) + 48 * np.arange(total)) >> 3
        return words[at[:, None] + np.arange(6)].view(NF5_RECORD).reshape(-1)
    taken = np.flatnonzero(ok).tolist()
    return np.frombuffer(b"".join([datas[i][24:24 + 48 * c]
                                   for i, c in zip(taken, counts.tolist())]), dtype=NF5_RECORD)


# ------------------------------------------------------------------ NetFlow v5


class Netflow5Columns:
    """NetFlow v5 datagrams of a burst -> arrays -> attributed, aggregated sums."""

    def __init__(self, rcv) -> None:
        self.rcv = rcv

    def run(self, batch: list, now: float, fallback) -> None:
        """`batch`: [(data, source address)]; `fallback(data, source)` (the per-record
        path) gets the datagrams that are not well-formed v5, in arrival order."""
        rcv = self.rcv
        attributor = rcv.service.attributor
        t = _table(attributor, "columnar-nf5", 2)
        datas = [d for d, _s in batch]
        n = len(datas)
        lens = np.fromiter(map(len, datas), dtype=np.int64, count=n)
        hdr, rec_of = _nf5_split(datas, lens)
        count = hdr["count"].astype(np.int64)
        ok = (lens >= 24) & (hdr["version"] == 5) & (24 + 48 * count <= lens)
        taken = np.flatnonzero(ok).tolist()
        if not taken:
            for d, src in batch:
                fallback(d, src)
            return
        srcs = [batch[i][1] for i in taken]
        ids = {src: t.exporter_id(src) for src in dict.fromkeys(srcs)}
        exp_of = np.array([ids[src] for src in srcs], dtype=np.int64)
        counts = count[ok]
        interval = (hdr["sampling"][ok] & 0x3FFF).astype(np.int64)
        rec = rec_of(ok, counts)      # (1-D, or 2-D (datagram, record): a view, no copy)
        if rec.size:
            u64 = np.uint64

            def field(name, dtype=np.int64):    # (astype first: contiguous, then flat)
                return rec[name].astype(dtype).reshape(-1)
            exp = np.repeat(exp_of.astype(u64), counts)
            nbytes = field("octets")
            npkts = field("packets")
            if (interval > 1).any():    # sampled: counts scaled by the interval
                scale = np.repeat(np.where(interval > 1, interval, 1), counts)
                nbytes *= scale
                npkts *= scale
            keys = np.empty((rec.size, 2), dtype=u64)
            keys[:, 0] = (field("src", u64) << u64(32)) | field("dst", u64)
            keys[:, 1] = (exp << u64(32)) | (field("input", u64) << u64(16)) | field("output", u64)
            exporters = t.exporters

            def resolve(row):
                w0, w1 = row
                r = FlowRecord(exporters[w1 >> 32], "netflow5",
                               src_ip=inet_ntoa((w0 >> 32).to_bytes(4, "big")),
                               dst_ip=inet_ntoa((w0 & 0xFFFFFFFF).to_bytes(4, "big")),
                               in_interface=(w1 >> 16) & 0xFFFF, out_interface=w1 & 0xFFFF,
                               ether_type=0x0800)
                return attributor.attribute(r)

            idx, attrs, counted = t.table.lookup(keys, resolve)
            codes = vecservice.codes(rec["proto"], rec["sport"], rec["dport"]).reshape(-1)
        # nothing above changed any state but the table: the other datagrams go per record
        # (in order; they touch no v5 sequence), the headers' stats per exporter and engine
        if len(taken) < n:
            for i in np.flatnonzero(~ok).tolist():
                fallback(*batch[i])
        self._stats(rcv.stats["netflow5"], t.exporters, exp_of, hdr[ok], counts)
        if rec.size:
            _account(rcv, "netflow5", attrs, counted, idx, codes, nbytes, npkts, now)

    @staticmethod
    def _stats(stats, exporters, exp_of, hdr, counts) -> None:
        """Each (exporter, engine)'s datagrams in arrival order, one call per group."""
        et, ei = hdr["engine_type"], hdr["engine_id"]
        order = np.lexsort((ei, et, exp_of))            # stable: arrival order in a group
        ge, gt, gi = exp_of[order], et[order], ei[order]
        heads = np.flatnonzero(np.concatenate(
            ([True], (ge[1:] != ge[:-1]) | (gt[1:] != gt[:-1]) | (gi[1:] != gi[:-1]))))
        ends = np.append(heads[1:], len(order))
        seqs, cnts = hdr["sequence"][order].astype(np.int64), counts[order]
        for h, e in zip(heads.tolist(), ends.tolist()):
            stats.observe_netflow5_headers(exporters[int(ge[h])], int(gt[h]), int(gi[h]),
                                           seqs[h:e], cnts[h:e])


# ------------------------------------------------------------------ sFlow

MAX_SAMPLES = 64      # more samples (or records) in one datagram: the per-record path
MAX_RECORDS = 16
# minimum body length of the flow records the per-record decoder checks (0: any length)
_MIN_LEN = {1: 16, 2: 24, 3: 32, 4: 56, 1001: 16, 1023: 32, 1024: 32, 1029: 4, 1030: 4}
_ROUTER = 1002
_MIN_LEN_TABLE_FMTS = np.array(sorted(_MIN_LEN), dtype=np.int64)
_MIN_LEN_TABLE = np.array([_MIN_LEN[f] for f in sorted(_MIN_LEN)], dtype=np.int64)
# header bytes the key words are read from: sip dip | dmac smac[0:2] | smac[2:6] vni 0
_KEY_COLS = np.array(list(range(76, 84)) + list(range(50, 58)) + list(range(58, 62))
                     + [46, 47, 48, 0], dtype=np.int64)
# header bytes the VXLAN layout check reads
_CHK = {c: i for i, c in enumerate((12, 13, 14, 20, 21, 23, 36, 37, 42, 62, 63, 64, 70, 71,
                                    73, 84, 85, 86, 87))}
_CHK_COLS = np.array(list(_CHK), dtype=np.int64)
# the layout of service.vxlan_key: Ethernet IPv4 (IHL 5), not a later fragment, UDP to 4789,
# VXLAN with the I flag, inner Ethernet IPv4 (IHL 5); (mask, wanted) per checked byte
_LAYOUT = {12: (0xFF, 8), 13: (0xFF, 0), 14: (0xFF, 0x45), 20: (0x1F, 0), 21: (0xFF, 0),
           23: (0xFF, 17), 36: (0xFF, 0x12), 37: (0xFF, 0xB5), 42: (0x08, 0x08),
           62: (0xFF, 8), 63: (0xFF, 0), 64: (0xFF, 0x45)}
_CHK_MASK = np.array([_LAYOUT.get(col, (0, 0))[0] for col in _CHK], dtype=np.uint8)
_CHK_WANT = np.array([_LAYOUT.get(col, (0, 0))[1] for col in _CHK], dtype=np.uint8)
_PAD = 96   # zero bytes after the batch, so fixed-offset reads never leave the buffer


def _u32(b32: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Big-endian u32 at 4-aligned byte offsets (as int64)."""
    return b32[off >> 2].astype(np.int64)


class SflowColumns:
    """sFlow datagrams of a burst whose flow samples are all VXLAN raw headers -> arrays."""

    def __init__(self, rcv) -> None:
        self.rcv = rcv

    @staticmethod
    def _run_stats(stats, names, dg_agent, sub_agent, dseq, nsamp, s_dg, stype, sindex, seq,
                   pool, a, b, first_sample) -> None:
        """Stats of the columnar datagrams [a, b) and their samples, per (agent, sub-agent)
        and per (agent, source), each in arrival order."""
        def name(u):
            t = names.get(u)
            if t is None:
                t = names[u] = inet_ntoa(int(u).to_bytes(4, "big"))
            return t
        st_of = {}
        ag, sub = dg_agent[a:b], sub_agent[a:b]
        order = np.lexsort((sub, ag))           # stable: arrival order within a group
        ga, gs = ag[order], sub[order]
        heads = np.flatnonzero(np.concatenate(([True], (ga[1:] != ga[:-1]) | (gs[1:] != gs[:-1]))))
        ends = np.append(heads[1:], len(order))
        seqs, counts = dseq[a:b][order], nsamp[a:b][order]
        for h, e in zip(heads.tolist(), ends.tolist()):
            agent = name(ga[h])
            st_of[agent] = stats.observe_sflow_headers(agent, int(gs[h]), seqs[h:e],
                                                       int(counts[h:e].sum()))
        lo, hi = first_sample[a], first_sample[b]
        if hi <= lo:
            return
        ag = dg_agent[s_dg[lo:hi]]
        ty, ix, sq, pl = stype[lo:hi], sindex[lo:hi], seq[lo:hi], pool[lo:hi]
        order = np.lexsort((ix, ty, ag))
        ga, gt, gi = ag[order], ty[order], ix[order]
        heads = np.flatnonzero(np.concatenate(
            ([True], (ga[1:] != ga[:-1]) | (gt[1:] != gt[:-1]) | (gi[1:] != gi[:-1]))))
        ends = np.append(heads[1:], len(order))
        gseq, gpool = sq[order], pl[order]
        for h, e in zip(heads.tolist(), ends.tolist()):
            agent = name(ga[h])
            stats.observe_sflow_samples(st_of[agent], agent, int(gt[h]), int(gi[h]),
                                        gseq[h:e], gpool[h:e])

    def run(self, batch: list, now: float, fallback) -> None:
        """Takes what it can of `batch` [(data, source address)]; `fallback(data, source)`
        (the per-record path) gets the others, in arrival order with the columnar ones'
        stats."""
        n = len(batch)
        lens = np.fromiter((len(d) for d, _s in batch), dtype=np.int64, count=n)
        pads = -lens & 3
        if pads.any():   # (sFlow is XDR: whole 4-byte words; a datagram that is not goes
            parts = [d + b"\0" * (-len(d) & 3) for d, _s in batch]   # per record anyway)
        else:
            parts = [d for d, _s in batch]
        parts.append(b"\0" * _PAD)
        buf = np.frombuffer(b"".join(parts), dtype=np.uint8)
        b32 = buf[:len(buf) & ~3].view(">u4")
        nd = n
        dstart = np.concatenate(([0], np.cumsum(lens + pads)[:-1]))
        dend = dstart + lens
        hw = [b32[(dstart >> 2) + k].astype(np.int64) for k in range(7)]
        dg_agent_all, sub_agent, dseq, nsamp = hw[2], hw[3], hw[4], hw[6]
        ok = ((lens >= 28) & (hw[0] == 5) & (hw[1] == 1) & (nsamp <= MAX_SAMPLES)
              & (nsamp <= (lens - 28) >> 3) & (pads == 0))
        nsamp = np.where(ok, nsamp, 0)
        # ---- samples: one step per sample position, across datagrams
        off = dstart + 28
        s_dg, s_fmt, s_body, s_end = [], [], [], []
        for k in range(int(nsamp.max()) if nd else 0):
            act = (k < nsamp) & ok
            fits = off + 8 <= dend
            ok &= ~act | (fits & ((off & 3) == 0))
            act &= ok
            ia = np.flatnonzero(act)
            if not len(ia):
                continue
            o = off[ia]
            fmt = _u32(b32, o)
            length = _u32(b32, o + 4)
            end = o + 8 + length
            good = (end <= dend[ia]) & ((fmt == 1) | (fmt == 3))
            ok[ia[~good]] = False
            s_dg.append(ia)
            s_fmt.append(fmt)
            s_body.append(o + 8)
            s_end.append(end)
            nxt = end + (-length & 3)
            off[ia] = np.minimum(nxt, dend[ia])
        if not s_dg:
            s_dg = [np.zeros(0, dtype=np.int64)] * 4
            s_fmt = s_body = s_end = s_dg
        s_dg = np.concatenate(s_dg)
        s_fmt = np.concatenate(s_fmt)
        s_body = np.concatenate(s_body)
        s_end = np.concatenate(s_end)
        # sample order: by datagram, then position (np.concatenate gave position-major)
        order = np.argsort(s_dg, kind="stable")
        s_dg, s_fmt, s_body, s_end = s_dg[order], s_fmt[order], s_body[order], s_end[order]
        keep = ok[s_dg]
        s_dg, s_fmt, s_body, s_end = s_dg[keep], s_fmt[keep], s_body[keep], s_end[keep]
        expanded = s_fmt == 3
        fixed = np.where(expanded, 44, 32)
        bad = s_body + fixed > s_end
        sb = np.minimum(s_body, len(buf) - 64)
        w = [_u32(b32, sb + 4 * j) for j in range(11)]
        seq = w[0]
        stype = np.where(expanded, w[1], w[1] >> 24)
        sindex = np.where(expanded, w[2], w[1] & 0xFFFFFF)
        rate = np.where(expanded, w[3], w[2])
        pool = np.where(expanded, w[4], w[3])
        in_f = np.where(expanded, w[6], w[5] >> 30)
        in_v = np.where(expanded, w[7], w[5] & 0x3FFFFFFF)
        out_f = np.where(expanded, w[8], w[6] >> 30)
        out_v = np.where(expanded, w[9], w[6] & 0x3FFFFFFF)
        nrec = np.where(expanded, w[10], w[7])
        sentinel = np.where(expanded, 0xFFFFFFFF, 0x3FFFFFFF)
        in_if = np.where((in_f == 0) & (in_v != sentinel), in_v, 0xFFFFFFFF)
        out_if = np.where((out_f == 0) & (out_v != sentinel), out_v, 0xFFFFFFFF)
        roff = s_body + fixed
        bad |= (nrec > MAX_RECORDS) | (nrec > (s_end - roff) >> 3)
        # ---- records: one step per record position, across samples
        ns = len(s_dg)
        raw_off = np.full(ns, -1, dtype=np.int64)    # last raw packet header: its record body
        raw_len = np.zeros(ns, dtype=np.int64)
        for r in range(int(nrec[~bad].max()) if (~bad).any() else 0):
            act = (r < nrec) & ~bad
            ia = np.flatnonzero(act)
            if not len(ia):
                break
            o = roff[ia]
            e = s_end[ia]
            fits = (o + 8 <= e) & ((o & 3) == 0)
            oc = np.where(fits, o, s_body[ia])
            fmt = _u32(b32, oc)
            length = _u32(b32, oc + 4)
            body = oc + 8
            rend = body + length
            good = fits & (rend <= e)
            pos_ = np.searchsorted(_MIN_LEN_TABLE_FMTS, fmt)
            pos_ = np.minimum(pos_, len(_MIN_LEN_TABLE_FMTS) - 1)
            known = _MIN_LEN_TABLE_FMTS[pos_] == fmt
            good &= ~known | (length >= _MIN_LEN_TABLE[pos_])
            is_raw = fmt == 1
            bc = np.minimum(body, len(buf) - 64)
            hlen = _u32(b32, bc + 12)
            good &= ~is_raw | (hlen <= length - 16)
            is_router = fmt == _ROUTER
            if is_router.any():
                atype = _u32(b32, bc)
                need = np.select([atype == 0, atype == 1, atype == 2], [12, 16, 28], -1)
                good &= ~is_router | ((need >= 0) & (length >= need))
            bad[ia[~good]] = True
            take = good & is_raw
            raw_off[ia[take]] = body[take]
            raw_len[ia[take]] = hlen[take]
            roff[ia] = np.minimum(rend + (-length & 3), e)
        # ---- the raw header of every sample must be Ethernet with the plain VXLAN layout
        has_raw = raw_off >= 0
        ro = np.where(has_raw, raw_off, s_body)
        ro = np.minimum(ro, len(buf) - 96)
        hproto = _u32(b32, ro)
        flen = _u32(b32, ro + 4)
        hoff = ro + 16
        hl = raw_len
        chk = buf[hoff[:, None] + _CHK_COLS[None, :]]
        vx = has_raw & (hproto == 1) & (hl >= 84) & ((chk & _CHK_MASK) == _CHK_WANT).all(axis=1)
        chk = chk.astype(np.int64)
        c = _CHK
        rate1 = np.where(rate == 0, 1, rate)
        nbytes = flen * rate1
        vx &= ~bad & (flen < (1 << 20)) & (rate1 < (1 << 20))   # exact int64 sums
        # a datagram is taken when all its samples are fine
        dg_ok = ok.copy()
        dg_ok[s_dg[~vx]] = False
        # also: datagrams whose every sample was dropped by an earlier failure
        counts_taken = np.bincount(s_dg, minlength=nd)
        dg_ok &= counts_taken == nsamp
        sel = dg_ok[s_dg]
        s_dg, seq, stype, sindex, pool = s_dg[sel], seq[sel], stype[sel], sindex[sel], pool[sel]
        hoff, hl, chk = hoff[sel], hl[sel], chk[sel]
        in_if, out_if, rate1, nbytes = in_if[sel], out_if[sel], rate1[sel], nbytes[sel]
        dg_agent = dg_agent_all.astype(np.uint64)
        s_agent = dg_agent[s_dg]
        rcv = self.rcv
        # ---- attribution keys: agent, VNI, MACs, IPs, interfaces
        kb = buf[hoff[:, None] + _KEY_COLS[None, :]]
        kw = np.ascontiguousarray(kb).view(">u8").astype(np.uint64)
        keys = np.empty((len(s_dg), 5), dtype=np.uint64)
        keys[:, 0] = kw[:, 0]
        keys[:, 1] = kw[:, 1]
        keys[:, 2] = kw[:, 2] & ~np.uint64(0xFF)
        keys[:, 3] = s_agent << np.uint64(32)
        keys[:, 4] = (in_if.astype(np.uint64) << np.uint64(32)) | out_if.astype(np.uint64)
        attributor = rcv.service.attributor
        t = _table(attributor, "columnar-sflow", 5)

        def resolve(row):
            w0, w1, w2, w3, w4 = row
            agent_u32 = w3 >> 32
            agent = inet_ntoa(agent_u32.to_bytes(4, "big"))
            mac = w1.to_bytes(8, "big") + (w2 >> 32).to_bytes(4, "big")
            ifin, ifout = w4 >> 32, w4 & 0xFFFFFFFF
            r = FlowRecord(agent, "sflow",
                           dst_mac=mac[0:6].hex(":"), src_mac=mac[6:12].hex(":"),
                           src_ip=inet_ntoa((w0 >> 32).to_bytes(4, "big")),
                           dst_ip=inet_ntoa((w0 & 0xFFFFFFFF).to_bytes(4, "big")),
                           in_interface=None if ifin == 0xFFFFFFFF else ifin,
                           out_interface=None if ifout == 0xFFFFFFFF else ifout,
                           tunnel_key=int((w2 >> 8) & 0xFFFFFF))
            return attributor.attribute(r)

        idx, attrs, counted = t.table.lookup(keys, resolve)
        # ---- service of the inner IPv4 packet (header at byte 64, IHL 5: ports at 84)
        proto = chk[:, c[73]]
        frag = ((chk[:, c[70]] & 0x1F) != 0) | (chk[:, c[71]] != 0)
        sport = (chk[:, c[84]] << 8) | chk[:, c[85]]
        dport = (chk[:, c[86]] << 8) | chk[:, c[87]]
        codes = vecservice.codes(proto, sport, dport, has_ports=~frag & (hl >= 88))
        # ---- nothing above changed any state but the table. Stats in arrival order: runs
        # of columnar datagrams (headers per agent, samples per source), and between them
        # the per-record datagrams
        stats = rcv.stats["sflow"]
        first_sample = np.searchsorted(s_dg, np.arange(nd + 1))
        edges = np.flatnonzero(np.diff(np.concatenate(([False], dg_ok, [False])).astype(np.int8)))
        runs = list(zip(edges[0::2].tolist(), edges[1::2].tolist()))   # [start, end) taken
        names: dict = {}
        i = 0
        for a, b in runs + [(n, n)]:
            for k in range(i, a):
                fallback(*batch[k])
            if a < b:
                self._run_stats(stats, names, dg_agent, sub_agent, dseq, nsamp, s_dg, stype,
                                sindex, seq, pool, a, b, first_sample)
            i = b
        _account(rcv, "sflow", attrs, counted, idx, codes, nbytes, rate1, now)
