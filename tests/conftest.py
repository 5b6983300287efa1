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


@pytest.fixture
def served(store, tmp_path):
    """The real engine loop and API (uvicorn) over `store`: a unix socket (admin) and TCP on
    loopback needing a bearer token (labtools.API_TOKEN is the admin's)."""
    from controller import api as api_mod
    from controller.driver import InstantDriver
    from controller.engine import Engine
    from tests.labtools import API_KEEPALIVE_S, API_TOKEN

    driver = InstantDriver()
    engine = Engine(driver)
    driver.engine = engine
    engine.start()
    store.subscribe(engine.model_changed)
    api = api_mod.Api(store, engine)
    sock_path = str(tmp_path / "api.sock")
    servers = api_mod.serve(api, sock_path, ("127.0.0.1", 0), token=API_TOKEN,
                            keepalive_s=API_KEEPALIVE_S)
    try:
        yield {"unix": sock_path, "tcp": servers[1].address[:2]}
    finally:
        for srv in servers:
            srv.shutdown()
        engine.stop()
