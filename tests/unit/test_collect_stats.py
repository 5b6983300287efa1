"""Per-exporter counters, sequence gaps/resets/reordering and effective sFlow sampling rate."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_collect_fixtures as fx  # noqa: E402

from collectors import netflow_v5, sflow  # noqa: E402
from collectors.ipfix import IpfixDecoder  # noqa: E402
from collectors.netflow_v9 import NetflowV9Decoder  # noqa: E402
from collectors.stats import GAP, LATE, OK, RESET, CollectorStats, SequenceTracker  # noqa: E402


def sflow_dg(seq, samples=(), sub_agent=0, agent="192.0.2.1"):
    return sflow.decode(fx.sflow_datagram(list(samples), agent=agent, sub_agent=sub_agent, seq=seq))


def test_sequence_tracker_gap_wrap_late_reset():
    t = SequenceTracker(max_gap=1000, reorder_window=10)
    assert t.update("k", 0xFFFFFFFE)[0] == "first"
    assert t.update("k", 0xFFFFFFFF) == (OK, 0)
    assert t.update("k", 0) == (OK, 0)  # wraps without a gap
    assert t.update("k", 4) == (GAP, 3)  # 1, 2, 3 missing
    assert t.update("k", 2) == (LATE, 1)  # one of them shows up late
    assert t.update("k", 5) == (OK, 0)  # baseline unchanged by the late one
    assert t.update("k", 5 + 5000) == (RESET, 0)  # beyond max_gap: restart, not loss
    assert t.update("k", 1) == (RESET, 0)  # far behind: restart
    assert t.update("k", 2) == (OK, 0)


def test_sequence_tracker_advance_by_records_and_unknown():
    t = SequenceTracker()
    t.update("k", 100, advance=30)
    assert t.update("k", 130, advance=5) == (OK, 0)
    assert t.update("k", 140, advance=None) == (GAP, 5)
    assert t.update("k", 999, advance=1)[0] == "first"  # unknown advance: new baseline


def test_sflow_datagram_and_flow_sample_sequences():
    st = CollectorStats()
    def fs(seq, src=(0, 3)):
        return fx.sflow_flow_sample([fx.rec_vni(True, 1)], seq=seq, source=src)

    st.observe_sflow(sflow_dg(1, [fs(10), fs(100, (0, 4))]))
    st.observe_sflow(sflow_dg(2, [fs(11), fs(101, (0, 4))]))
    # datagrams 3, 4 lost; with them flow samples 12-14 of source 3
    st.observe_sflow(sflow_dg(5, [fs(15), fs(102, (0, 4)), fx.sflow_counter_sample([])]))
    st.observe_sflow(sflow_dg(1, [], sub_agent=1))  # another sub-agent: its own sequence
    st.observe_sflow(sflow_dg(2, [], sub_agent=1))
    e = st.exporters["192.0.2.1"]
    assert (e.datagrams, e.records) == (5, 7)
    assert (e.lost_datagrams, e.lost_records, e.sequence_gaps) == (2, 3, 2)


def test_sflow_agent_restart_is_a_reset_not_loss():
    st = CollectorStats()
    for seq in (5000, 5001, 1, 2):
        st.observe_sflow(sflow_dg(seq))
    e = st.exporters["192.0.2.1"]
    assert (e.sequence_resets, e.lost_datagrams, e.sequence_gaps) == (1, 0, 0)


def test_effective_sampling_rate_from_sample_pool():
    st = CollectorStats()
    def fs(seq, pool):
        return fx.sflow_flow_sample([], seq=seq, source=(0, 9), rate=1000, pool=pool)

    st.observe_sflow(sflow_dg(1, [fs(1, 0xFFFFFF00)]))
    assert st.effective_sampling_rate("192.0.2.1", 0, 9) is None
    # the pool wraps; 4 samples later 4800 more packets were candidates
    st.observe_sflow(sflow_dg(2, [fs(5, (0xFFFFFF00 + 4 * 1200) & 0xFFFFFFFF)]))
    assert st.effective_sampling_rate("192.0.2.1", 0, 9) == 1200.0
    assert st.effective_sampling_rate("192.0.2.1", 0, 10) is None


def test_netflow5_flow_sequence_counts_flows():
    st = CollectorStats()
    for seq, n in ((100, 30), (130, 30), (190, 1), (191, 2)):  # 30 flows lost before 190
        st.observe_netflow5(netflow_v5.decode(fx.v5_packet([fx.v5_record()] * n, seq=seq)), "e")
    st.observe_netflow5(netflow_v5.decode(fx.v5_packet([fx.v5_record()], seq=7, engine_id=1)), "e")
    e = st.exporters["e"]
    assert (e.datagrams, e.records, e.lost_records, e.sequence_gaps, e.sequence_resets) == (5, 64, 30, 1, 0)


def test_netflow9_package_sequence_per_source_and_templates_known():
    st = CollectorStats()
    dec = NetflowV9Decoder()
    tpl = fx.v9_template_flowset([(256, [(2, 4)]), (257, [(1, 4)])])
    for seq, source in ((1, 0), (2, 0), (1, 5), (4, 0), (2, 5)):
        st.observe_netflow9(dec.decode(fx.v9_packet([tpl], seq=seq, source_id=source), "e"), "e", dec.cache)
    e = st.exporters["e"]
    assert (e.lost_datagrams, e.sequence_gaps, e.templates_known) == (1, 1, 4)


def test_ipfix_sequence_counts_data_records_and_pending_resets_baseline():
    st = CollectorStats()
    dec = IpfixDecoder()
    tpl = fx.ipfix_set(2, fx.ipfix_template(256, [(2, 8)]))
    recs = lambda n: fx.ipfix_set(256, struct.pack("!Q", 1) * n)  # noqa: E731
    msgs = [
        fx.ipfix_message([tpl], seq=0),  # 0 data records
        fx.ipfix_message([recs(3)], seq=0),  # records 0..2
        fx.ipfix_message([recs(2)], seq=3),  # records 3..4
        fx.ipfix_message([recs(1)], seq=9),  # 4 records lost (5..8)
        fx.ipfix_message([recs(1), fx.ipfix_set(999, b"\0" * 8)], seq=10),  # unknown count
        fx.ipfix_message([recs(1)], seq=50),  # no gap judged against an unknown baseline
        fx.ipfix_message([recs(1)], seq=51),
    ]
    for m in msgs:
        st.observe_ipfix(dec.decode(m, "e"), "e", dec.cache)
    e = st.exporters["e"]
    assert (e.records, e.lost_records, e.sequence_gaps, e.pending_sets, e.templates_known) == (9, 4, 1, 1, 1)


def test_ipfix_domains_tracked_separately():
    st = CollectorStats()
    dec = IpfixDecoder()
    st.observe_ipfix(dec.decode(fx.ipfix_message([], seq=10, domain=1), "e"), "e")
    st.observe_ipfix(dec.decode(fx.ipfix_message([], seq=500, domain=2), "e"), "e")
    st.observe_ipfix(dec.decode(fx.ipfix_message([], seq=10, domain=1), "e"), "e")
    assert st.exporters["e"].sequence_gaps == 0


def test_malformed_counts_and_snapshot():
    st = CollectorStats()
    st.malformed("x")
    st.malformed("x")
    snap = st.snapshot()
    assert snap["x"]["malformed"] == 2 and snap["x"]["datagrams"] == 2


def test_late_datagram_takes_its_loss_back():
    st = CollectorStats()
    for seq in (0, 60, 30):  # the datagram carrying flows 30-59 arrives after 60-89
        st.observe_netflow5(netflow_v5.decode(fx.v5_packet([fx.v5_record()] * 30, seq=seq)), "e")
    e = st.exporters["e"]
    assert (e.sequence_gaps, e.out_of_order, e.lost_records) == (1, 1, 0)
    for seq in (1, 3, 2):
        st.observe_sflow(sflow_dg(seq))
    e = st.exporters["192.0.2.1"]
    assert (e.sequence_gaps, e.out_of_order, e.lost_datagrams) == (1, 1, 0)


def test_tracked_keys_are_bounded():
    st = CollectorStats(max_keys=100)
    dec = IpfixDecoder()
    for domain in range(1000):  # a hostile exporter inventing observation domains
        st.observe_ipfix(dec.decode(fx.ipfix_message([], seq=domain, domain=domain), "e"), "e")
    for agent in range(300):
        st.observe_sflow(sflow_dg(1, [fx.sflow_flow_sample([], source=(0, agent))],
                                  agent=f"10.9.{agent // 256}.{agent % 256}"))
    assert len(st.sequences) <= 100 and len(st.exporters) <= 100
    assert len(st._pools) <= 100
