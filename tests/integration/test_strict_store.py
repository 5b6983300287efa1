"""Strict input at the store: booleans are booleans, a host is added once and updated explicitly."""
import pytest

from topology.errors import Conflict, NotFound, WeftError

pytestmark = pytest.mark.integration


def test_dhcp_must_be_a_boolean(store):
    store.create_tenant("t")
    before = store.version
    for bad in ("no", "false", 0, 1, None):
        with pytest.raises(WeftError, match="invalid dhcp"):
            store.create_network("t", "n", "10.0.0.0/24", dhcp=bad)
    assert store.version == before and not store.model.networks
    assert store.create_network("t", "n", "10.0.0.0/24", dhcp=False)["dhcp"] is False


def test_a_host_is_added_once_and_updated_explicitly(store):
    store.add_host("hv1", "192.0.2.1", "ssl:192.0.2.1:6640", mgmt_ip="198.19.0.11")
    before = store.version
    with pytest.raises(Conflict, match="already exists.*host update"):
        store.add_host("hv1", "192.0.2.9", "tcp:203.0.113.5:6640")       # the old upsert
    assert store.version == before
    (host,) = store.model.hosts.values()
    assert (host.tunnel_ip, host.ovsdb, host.mgmt_ip) == ("192.0.2.1", "ssl:192.0.2.1:6640", "198.19.0.11")
    store.update_host("hv1", tunnel_ip="192.0.2.2")
    (host,) = store.model.hosts.values()
    assert (host.tunnel_ip, host.ovsdb, host.mgmt_ip) == ("192.0.2.2", "ssl:192.0.2.1:6640", "198.19.0.11")
    store.update_host("hv1", clear_mgmt_ip=True)
    assert store.model.hosts["hv1"].mgmt_ip is None
    store.add_host("hv2", "192.0.2.3", "ssl:192.0.2.3:6640")
    with pytest.raises(Conflict, match="already used by host hv2"):
        store.update_host("hv1", tunnel_ip="192.0.2.3")
    with pytest.raises(NotFound):
        store.update_host("hv9", tunnel_ip="192.0.2.7")
    with pytest.raises(WeftError, match="nothing to update"):
        store.update_host("hv1")
