"""The underlay MTU setting: what VMs are given, and bad values refused with a clear error."""
import pytest

from controller import daemon
from controller.dhcp_service import lease_for
from flows.pipeline import check_underlay_mtu, vm_mtu
from topology.model import Model, Network, Port, Tenant


@pytest.mark.parametrize("tunnel, underlay, expect", [
    ("vxlan", 1500, 1450), ("geneve", 1500, 1400), ("vxlan", 9000, 8950), ("geneve", 9000, 8900)])
def test_vm_mtu_is_the_underlay_less_the_encapsulation(tunnel, underlay, expect):
    assert vm_mtu(tunnel, underlay) == expect


@pytest.mark.parametrize("bad", [1279, 9217, 0, -1, "9000", 9000.0, True, None])
def test_bad_underlay_mtu_is_refused(bad):
    with pytest.raises(ValueError, match="underlay MTU must be an integer from 1280 to 9216"):
        check_underlay_mtu(bad)


def test_weftd_takes_the_underlay_mtu_and_refuses_a_bad_one(capsys):
    assert daemon.parse_args(["--underlay-mtu", "9000"]).underlay_mtu == 9000
    assert daemon.parse_args([]).underlay_mtu == 1500
    for bad, says in (("100", "from 1280 to 9216"), ("jumbo", "not an integer: 'jumbo'")):
        with pytest.raises(SystemExit):
            daemon.parse_args(["--underlay-mtu", bad])
        assert says in capsys.readouterr().err


def test_dhcp_gives_the_mtu_of_the_underlay():
    net = Network("n", "t", "net", "10.0.0.0/24", 1000)
    port = Port("p", "t", "net", "p", "02:00:00:00:00:01", ("10.0.0.5",))
    model = Model({"t": Tenant("t", "t")}, {"n": net}, {"p": port}, {}, {})
    assert lease_for(model, port, "vxlan").mtu == 1450
    assert lease_for(model, port, "vxlan", 9000).mtu == 8950
    assert lease_for(model, port, "geneve", 9000).mtu == 8900
