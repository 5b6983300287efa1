"""bench_scale --real-hosts: the VMs' layout and the pairs it pings say what the bench claims."""
from collections import Counter

from bench.real_scale import layout, pairs


def test_layout_spreads_ten_vms_per_host_over_different_tenants_with_overlapping_addresses():
    vms = layout(100, 1000, 100)
    assert len(vms) == 1000 and len({v["name"] for v in vms}) == 1000
    per_host = Counter(v["host"] for v in vms)
    assert set(per_host.values()) == {10} and len(per_host) == 100
    for host in per_host:                    # every VM of a host belongs to another tenant
        assert len({v["tenant"] for v in vms if v["host"] == host}) == 10
    assert len({v["mac"] for v in vms}) == 1000
    shared = Counter(v["ip"] for v in vms)
    assert shared["10.0.0.10/16"] == 100     # the same address in every tenant
    for t in range(100):                     # addresses are unique within a tenant
        ips = [v["ip"] for v in vms if v["tenant"] == f"t{t}"]
        assert len(set(ips)) == len(ips) == 10
    assert Counter(tuple(v["groups"]) for v in vms) == {("default",): 900, ("web",): 100}


def test_pairs_are_allowed_denied_by_group_or_cross_tenant_as_labelled():
    vms = layout(100, 1000, 100)
    sample = pairs(vms, 400)
    assert Counter(k for k, _a, _b in sample) == {"allowed": 200, "sg-denied": 100, "cross-tenant": 100}
    assert len({(a["name"], b["name"]) for _k, a, b in sample}) == 400
    for kind, a, b in sample:
        assert a is not b and a["groups"] == ["default"]
        if kind == "allowed":
            assert a["tenant"] == b["tenant"] and b["groups"] == ["default"]
        elif kind == "sg-denied":
            assert a["tenant"] == b["tenant"] and b["groups"] == ["web"]
        else:
            assert a["tenant"] != b["tenant"] and not b["ip"].startswith("10.0.0.")
    cross = [(a["host"] == b["host"]) for k, a, b in sample if k == "cross-tenant"]
    assert 0 < sum(cross) < len(cross)       # on the same host and across hosts
