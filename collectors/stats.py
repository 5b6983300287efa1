"""Per-exporter counters, sequence-gap (loss) tracking and sFlow effective sampling rates.

Sequence spaces tracked (all 32-bit, wrapping):
* sFlow datagram sequence per (agent, sub-agent) - counts datagrams;
* sFlow flow-sample sequence per (agent, source id) - counts flow samples;
* NetFlow v5 flow_sequence per (exporter, engine type, engine id) - counts flows;
* NetFlow v9 package sequence per (exporter, source id) - counts packets;
* IPFIX sequence per (exporter, observation domain) - counts data records.
A jump forward of up to `max_gap` is loss; a small step back (within `reorder_window`) is a
late datagram (its units are taken back off `lost_*`); anything else is a reset (restart).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .sflow import CounterSample, FlowSample

_MOD = 1 << 32
_MASK = _MOD - 1

FIRST, OK, GAP, LATE, RESET = "first", "ok", "gap", "late", "reset"
MAX_KEYS = 1 << 16  # bound on tracked sequence spaces / sources / exporters (oldest dropped)


def _put(d: dict, key, value, limit: int) -> None:
    """d[key] = value, first dropping the oldest entry if a new key would exceed limit."""
    if key not in d and len(d) >= limit:
        del d[next(iter(d))]
    d[key] = value


@dataclass(slots=True)
class ExporterStats:
    datagrams: int = 0
    records: int = 0  # flow/counter samples (sFlow), flows (v5), data records (v9/IPFIX)
    malformed: int = 0
    sequence_gaps: int = 0  # gap events, all sequence spaces
    lost_datagrams: int = 0  # from datagram/package sequences (sFlow datagrams, v9 packets)
    lost_records: int = 0  # from record sequences (sFlow flow samples, v5 flows, IPFIX records)
    out_of_order: int = 0
    sequence_resets: int = 0
    templates_known: int = 0
    pending_sets: int = 0  # data sets seen before their template


class SequenceTracker:
    """Expected-next-value tracking for independent 32-bit sequence spaces."""

    def __init__(self, max_gap: int = 1_000_000, reorder_window: int = 1024,
                 max_keys: int = MAX_KEYS) -> None:
        self.max_gap = max_gap
        self.reorder_window = reorder_window
        self.max_keys = max(1, max_keys)
        self._expected: dict = {}

    def __len__(self) -> int:
        return len(self._expected)

    def update(self, key, seq: int, advance: int | None = 1) -> tuple[str, int]:
        """Feed one observed sequence value; returns (status, units).

        `advance` is how far this datagram moves the sequence (1 per datagram, or the number
        of records it carries); None when unknown, so the next value starts a new baseline.
        """
        expected = self._expected.get(key, -1)
        nxt = None if advance is None else (seq + advance) & _MASK
        if expected is None or expected == -1:
            _put(self._expected, key, nxt, self.max_keys)
            return FIRST, 0
        delta = (seq - expected) & _MASK
        if delta == 0:
            self._expected[key] = nxt
            return OK, 0
        if delta <= self.max_gap:
            self._expected[key] = nxt
            return GAP, delta
        if _MOD - delta <= self.reorder_window:  # a little behind: late/duplicate, keep baseline
            return LATE, advance or 0
        self._expected[key] = nxt
        return RESET, 0

    def forget(self, key) -> None:
        self._expected.pop(key, None)


class CollectorStats:
    def __init__(self, max_gap: int = 1_000_000, reorder_window: int = 1024,
                 max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max(1, max_keys)
        self.exporters: dict[object, ExporterStats] = {}
        self.sequences = SequenceTracker(max_gap, reorder_window, max_keys)
        self._pools: dict = {}  # (agent, stype, sindex) -> (seq, pool)
        self._rates: dict = {}  # (agent, stype, sindex) -> effective rate

    def exporter(self, exporter) -> ExporterStats:
        st = self.exporters.get(exporter)
        if st is None:
            st = ExporterStats()
            _put(self.exporters, exporter, st, self.max_keys)
        return st

    def malformed(self, exporter) -> None:
        st = self.exporter(exporter)
        st.datagrams += 1
        st.malformed += 1

    def _seq(self, st: ExporterStats, key, seq: int, advance: int | None, records: bool) -> None:
        status, units = self.sequences.update(key, seq, advance)
        if status == GAP:
            st.sequence_gaps += 1
            if records:
                st.lost_records += units
            else:
                st.lost_datagrams += units
        elif status == LATE:
            st.out_of_order += 1
            if records:
                st.lost_records = max(0, st.lost_records - units)
            else:
                st.lost_datagrams = max(0, st.lost_datagrams - units)
        elif status == RESET:
            st.sequence_resets += 1

    # ---------------------------------------------------------------- per protocol

    def observe_sflow(self, dgram, exporter=None) -> None:
        agent = exporter if exporter is not None else dgram.agent
        st = self.exporter(agent)
        st.datagrams += 1
        self._seq(st, ("sflow", agent, dgram.sub_agent_id), dgram.sequence, 1, False)
        for s in dgram.samples:
            t = type(s)
            if t is FlowSample:
                st.records += 1
                src = (agent, s.source_id_type, s.source_id_index)
                self._seq(st, ("sflow-flow",) + src, s.sequence, 1, True)
                self._pool(src, s.sequence, s.sample_pool)
            elif t is CounterSample:
                st.records += 1

    def _pool(self, src, seq: int, pool: int) -> None:
        last = self._pools.get(src)
        _put(self._pools, src, (seq, pool), self.max_keys)
        if last is None:
            return
        dseq = (seq - last[0]) & _MASK
        if 0 < dseq < 0x80000000:
            _put(self._rates, src, ((pool - last[1]) & _MASK) / dseq, self.max_keys)

    def effective_sampling_rate(self, agent, source_id_type: int,
                                source_id_index: int) -> float | None:
        """Packets per sample actually achieved, from sample_pool / sequence deltas."""
        return self._rates.get((agent, source_id_type, source_id_index))

    def observe_netflow5(self, pkt, exporter) -> None:
        self.observe_netflow5_header(exporter, pkt.engine_type, pkt.engine_id,
                                     pkt.flow_sequence, len(pkt.records))

    def observe_netflow5_header(self, exporter, engine_type: int, engine_id: int,
                                flow_sequence: int, count: int) -> None:
        """One NetFlow v5 datagram from its header fields (the columnar path's form)."""
        st = self.exporter(exporter)
        st.datagrams += 1
        st.records += count
        self._seq(st, ("nf5", exporter, engine_type, engine_id), flow_sequence, count, True)

    def observe_netflow5_headers(self, exporter, engine_type: int, engine_id: int, seqs,
                                 counts) -> None:
        """NetFlow v5 datagrams of one (exporter, engine) in arrival order, from their
        headers' flow sequences and record counts (numpy arrays; the columnar path's form):
        as many observe_netflow5_header calls."""
        st = self.exporter(exporter)
        st.datagrams += len(seqs)
        st.records += int(counts.sum())
        self._seq_run(st, ("nf5", exporter, engine_type, engine_id), seqs, True, counts)

    def observe_sflow_headers(self, agent, sub_agent_id: int, seqs, samples: int) -> ExporterStats:
        """Datagrams of flow samples only, of one (agent, sub-agent), in arrival order, from
        their headers (the columnar path's form; their samples follow through
        `observe_sflow_samples`)."""
        st = self.exporter(agent)
        st.datagrams += len(seqs)
        st.records += samples
        self._seq_run(st, ("sflow", agent, sub_agent_id), seqs, False)
        return st

    def observe_sflow_samples(self, st: ExporterStats, agent, stype: int, sindex: int,
                              seqs, pools) -> None:
        """The flow samples of one source, in arrival order (numpy arrays or lists), as
        observe_sflow counts them."""
        src = (agent, stype, sindex)
        self._seq_run(st, ("sflow-flow",) + src, seqs, True)
        n = len(seqs)
        if n > 1:
            self._pool(src, int(seqs[-2]), int(pools[-2]))
        self._pool(src, int(seqs[-1]), int(pools[-1]))

    def _seq_run(self, st: ExporterStats, key, seqs, records: bool, advances=None) -> None:
        """Sequence values seen in order, each advancing it by one unit (or `advances`,
        numpy): a run where every value is the one the previous announced is one tracker
        step (the same outcome as one step per value), anything else one by one."""
        n = len(seqs)
        s0 = int(seqs[0])
        steps = 1 if advances is None else advances[:-1]
        consecutive = n == 1 or bool(
            ((np.diff(np.asarray(seqs, dtype=np.int64)) & _MASK) == steps).all())
        expected = self.sequences._expected.get(key)
        late = (expected is not None and expected != -1
                and ((s0 - expected) & _MASK) > self.sequences.max_gap)
        if consecutive and not late:
            self._seq(st, key, s0, n if advances is None else int(advances.sum()), records)
            return
        if advances is None:
            for s in seqs:
                self._seq(st, key, int(s), 1, records)
            return
        for s, a in zip(seqs.tolist(), advances.tolist()):
            self._seq(st, key, s, a, records)

    def observe_netflow9(self, pkt, exporter, cache=None) -> None:
        st = self.exporter(exporter)
        st.datagrams += 1
        st.records += sum(len(ds.records) for ds in pkt.data_sets)
        st.pending_sets += pkt.pending_sets
        self._seq(st, ("nf9", exporter, pkt.source_id), pkt.sequence, 1, False)
        if cache is not None:
            st.templates_known = cache.count(exporter)

    def observe_ipfix(self, msg, exporter, cache=None) -> None:
        st = self.exporter(exporter)
        st.datagrams += 1
        st.records += sum(len(ds.records) for ds in msg.data_sets)
        st.pending_sets += msg.pending_sets
        advance = msg.data_records if msg.pending_sets == 0 else None
        self._seq(st, ("ipfix", exporter, msg.domain), msg.sequence, advance, True)
        if cache is not None:
            st.templates_known = cache.count(exporter)

    def observe_ipfix_headers(self, exporter, domain: int, seqs, counts,
                              templates_known: int) -> None:
        """IPFIX messages of one (exporter, domain) in arrival order, each one data set of
        a known template (numpy sequences and record counts; the columnar path's form): as
        many observe_ipfix calls."""
        st = self.exporter(exporter)
        st.datagrams += len(seqs)
        st.records += int(counts.sum())
        self._seq_run(st, ("ipfix", exporter, domain), seqs, True, counts)
        st.templates_known = templates_known

    def observe_netflow9_headers(self, exporter, source_id: int, seqs, counts,
                                 templates_known: int) -> None:
        """NetFlow v9 packets of one (exporter, source id) in arrival order, each one data
        flowset of a known template (the columnar path's form): as many observe_netflow9
        calls."""
        st = self.exporter(exporter)
        st.datagrams += len(seqs)
        st.records += int(counts.sum())
        self._seq_run(st, ("nf9", exporter, source_id), seqs, False)
        st.templates_known = templates_known

    def snapshot(self) -> dict:
        return {exp: asdict(st) for exp, st in self.exporters.items()}
