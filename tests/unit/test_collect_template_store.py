"""NetFlow v9 / IPFIX templates survive a collector restart (collectors.template_store).

The IPFIX datagrams are Open vSwitch's own (tests/data/collectors/ovs-ipfix.bin, captured in
the lab): its template sets, then - after the collector restarted - its data sets only.
"""
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from collectors.ipfix import IpfixDecoder
from collectors.netflow_v9 import NetflowV9Decoder
from collectors.service import CollectorService
from collectors.template_store import TemplateStore
from collectors.templates import FieldSpec, Template, TemplateCache

DATA = Path(__file__).resolve().parent.parent / "data" / "collectors"


def ovs_ipfix() -> list[bytes]:
    blob = (DATA / "ovs-ipfix.bin").read_bytes()
    out, off = [], 0
    while off < len(blob):
        (n,) = struct.unpack_from("!I", blob, off)
        out.append(blob[off + 4:off + 4 + n])
        off += 4 + n
    return out


def split(datagrams):
    """(datagrams carrying templates only, datagrams carrying data sets only) of the capture."""
    dec = IpfixDecoder()
    templates, data = [], []
    for d in datagrams:
        m = dec.decode(d, "x")
        if m.templates or m.options_templates:
            assert not m.data_sets and not m.pending_sets
            templates.append(d)
        elif m.data_sets:
            data.append(d)
    return templates, data


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def send(svc, datagrams):
    port = svc.addresses["ipfix"][1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))


def ipfix_counts(svc):
    st = svc.status()["protocols"]["ipfix"]
    return st["datagrams"], st["flows"], st["pending_sets"]


def run(template_dir, datagrams):
    """A collector (IPFIX on an ephemeral loopback port) fed `datagrams`; its counters."""
    svc = CollectorService(None, sflow=None, ipfix=("127.0.0.1", 0), template_dir=template_dir)
    with svc:
        send(svc, datagrams)
        wait_for(lambda: ipfix_counts(svc)[0] == len(datagrams))
        svc.flush()
        return ipfix_counts(svc), svc.matrix(), svc.status()["protocols"]["ipfix"]["templates"]


def test_ipfix_data_decodes_right_after_a_restart_without_a_template_resend(tmp_path):
    templates, data = split(ovs_ipfix()[:22])
    assert templates and data
    (_, flows, _), _, learned = run(str(tmp_path), templates)       # run 1: templates only
    assert flows == 0 and learned >= 30
    saved = sorted((tmp_path / "ipfix").iterdir())
    assert [p.name for p in saved] == ["127.0.0.1_0.json", "127.0.0.1_1.json"]  # per domain
    (_, flows, pending), rows, loaded = run(str(tmp_path), data)   # run 2: data only
    assert loaded == learned
    assert pending == 0 and flows == sum(len(ds.records) for d in data       # flow records:
                                         for ds in _decoded(templates, d) if not ds.options)
    assert flows > 0 and rows and sum(r["bytes"] for r in rows) > 0


def test_without_the_store_the_same_data_waits_for_its_template(tmp_path):
    """The control: a collector with no saved templates holds the data sets, decodes none."""
    templates, data = split(ovs_ipfix()[:22])
    (_, flows, pending), rows, _ = run(None, data)
    assert flows == 0 and pending == len(data) and rows == []


def _decoded(templates, datagram):
    dec = IpfixDecoder()
    for t in templates:
        dec.decode(t, "127.0.0.1")
    return dec.decode(datagram, "127.0.0.1").data_sets


def _tpl(tid, *ies):
    return Template(tid, [FieldSpec(ie, 4) for ie in ies])


def test_a_resent_template_replaces_the_saved_one_and_a_withdrawn_one_goes(tmp_path):
    cache = TemplateCache()
    store = TemplateStore(str(tmp_path), "ipfix")
    store.attach(cache)
    cache.put(("10.0.0.1", 7, 300), _tpl(300, 8, 12))
    cache.put(("10.0.0.1", 7, 301), _tpl(301, 8))
    writes = store.writes
    cache.put(("10.0.0.1", 7, 300), _tpl(300, 8, 12))       # a refresh: same fields, no write
    assert store.writes == writes
    cache.put(("10.0.0.1", 7, 300), _tpl(300, 27, 28, 2))   # the exporter changed it
    saved = json.loads(Path(store.path("10.0.0.1", 7)).read_text())
    assert {t["id"]: [f[0] for f in t["fields"]] for t in saved["templates"]} == \
        {300: [27, 28, 2], 301: [8]}
    cache.withdraw(("10.0.0.1", 7, 301))
    again = TemplateCache()
    assert TemplateStore(str(tmp_path), "ipfix").attach(again) == 1
    assert [f.ie_id for f in again.get(("10.0.0.1", 7, 300)).fields] == [27, 28, 2]
    assert again.get(("10.0.0.1", 7, 301)) is None
    cache.withdraw(("10.0.0.1", 7, 300))
    assert not os.path.exists(store.path("10.0.0.1", 7))   # the domain has none left


def test_saved_templates_older_than_the_timeout_are_not_loaded_and_keep_their_age(tmp_path):
    wall = [1_000_000.0]
    cache = TemplateCache(timeout=600)
    store = TemplateStore(str(tmp_path), "netflow9", clock=lambda: wall[0])
    store.attach(cache)
    cache.put(("192.0.2.9", 1, 260), Template(260, [FieldSpec(8, 4), FieldSpec(1, 4)],
                                              allow_variable=False))
    wall[0] += 400                                 # the collector was down for 400 s
    mono = [50.0]
    fresh = TemplateCache(timeout=600)
    n = TemplateStore(str(tmp_path), "netflow9", clock=lambda: wall[0],
                      monotonic=lambda: mono[0]).attach(fresh)
    assert n == 1
    assert fresh.get(("192.0.2.9", 1, 260), now=mono[0] + 199) is not None
    assert fresh.get(("192.0.2.9", 1, 260), now=mono[0] + 201) is None   # expires on time
    wall[0] += 300                                 # 700 s since it was saved: stale
    assert TemplateStore(str(tmp_path), "netflow9", clock=lambda: wall[0]).attach(
        TemplateCache(timeout=600)) == 0


def test_netflow9_templates_come_back_compiled_as_the_decoder_compiles_them(tmp_path):
    # a v9 packet: template flowset (id 0) with template 256 = IPv4 src, dst, bytes, packets
    tpl = struct.pack("!HHHHHHHHHHHH", 0, 4 + 4 + 16, 256, 4, 8, 4, 12, 4, 1, 4, 2, 4)
    header = struct.pack("!HHIIII", 9, 1, 1000, 1_700_000_000, 1, 42)
    cache = TemplateCache()
    TemplateStore(str(tmp_path), "netflow9").attach(cache)
    NetflowV9Decoder(cache).decode(header + tpl, "198.51.100.1")
    again = TemplateCache()
    assert TemplateStore(str(tmp_path), "netflow9").attach(again) == 1
    data = struct.pack("!HH", 256, 4 + 16) + socket.inet_aton("10.0.0.1") + \
        socket.inet_aton("10.0.0.2") + struct.pack("!II", 1500, 3)
    pkt = NetflowV9Decoder(again).decode(header + data, "198.51.100.1")
    assert pkt.pending_sets == 0
    [rec] = pkt.data_sets[0].records
    assert rec["sourceIPv4Address"] == "10.0.0.1" and rec["octetDeltaCount"] == 1500


@pytest.mark.parametrize("content", ["not json", "{}", json.dumps({"version": 1, "protocol": "ipfix",
                         "exporter": "x", "domain": 1, "saved_at": 1e18,
                         "templates": [{"id": 7, "fields": [[8, 4, 0]]}]})])
def test_a_damaged_file_is_skipped_not_fatal(tmp_path, content):
    (tmp_path / "ipfix").mkdir()
    (tmp_path / "ipfix" / "x_1.json").write_text(content)
    store = TemplateStore(str(tmp_path), "ipfix")
    assert store.attach(TemplateCache()) == 0 and store.skipped == 1


def test_a_burst_of_templates_is_written_once_then_once_more_after_the_interval(tmp_path):
    """Open vSwitch's ~90 templates in 18 datagrams: one write at the first, the rest at the
    next flush after min_interval, instead of a rewrite of the whole file per template."""
    templates, _ = split(ovs_ipfix()[:22])
    wall = [1_000.0]
    cache = TemplateCache()
    store = TemplateStore(str(tmp_path), "ipfix", clock=lambda: wall[0], min_interval=1.0)
    store.attach(cache)
    dec = IpfixDecoder(cache)
    for d in templates:
        dec.decode(d, "10.0.0.1")
    learned = len(cache.domain_templates("10.0.0.1", 1))
    assert learned >= 30
    assert store.writes == 2                       # the first template of each domain
    store.flush()                                  # too early: nothing more
    assert store.writes == 2
    wall[0] += 1.0
    store.flush()
    saved = json.loads(Path(store.path("10.0.0.1", 1)).read_text())
    assert len(saved["templates"]) == learned      # the whole burst is on disk
    assert store.writes == 3
    store.flush(force=True)                        # nothing left to write
    assert store.writes == 3
