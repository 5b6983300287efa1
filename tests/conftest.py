"""Shared fixtures: integration tests need root and Open vSwitch, and get a lab of their own."""
import os
import shutil
import signal

import pytest

from tests.labtools import Lab


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0 and shutil.which("ovs-vswitchd") or os.environ.get("CI"):
        return  # in CI a missing Open vSwitch must fail the run, not skip it
    skip = pytest.mark.skip(reason="integration tests need root and Open vSwitch (scripts/setup.sh)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def store(tmp_path):
    """weft's northbound store on a real ovsdb-server of the test's own, stopped afterwards."""
    from ovsdb.nbserver import ensure_local_server
    from ovsdb.nbstore import NorthboundStore

    remote = ensure_local_server(str(tmp_path / "nb"))
    s = NorthboundStore(remote)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        with open(tmp_path / "nb" / "nb.pid") as f:
            os.kill(int(f.read()), signal.SIGTERM)


@pytest.fixture(scope="session")
def lab3():
    """A 3-hypervisor lab shared by the tests that only read it or add their own VMs."""
    lab = Lab(f"t{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "3")
    try:
        yield lab
    finally:
        lab.down()
