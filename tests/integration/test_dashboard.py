"""The dashboard in a real headless Chromium (DevTools protocol over a pipe): loaded from the lab's
weftd at /ui with the lab's token, it shows the hosts, the networks, the topology and, after real
traffic, a non-empty traffic matrix, without a console error; without the token it shows no data.
A screenshot is saved under the test's tmp_path (its path is printed)."""
import os
import time

import pytest

from tests.browser import Browser, chromium
from tests.labtools import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def uilab():
    lab = Lab(f"u{os.getpid() % 100000}")
    lab.down()
    try:
        lab.weft("lab", "up", "--hosts", "2")
        lab.weft("traffic", "config", "--sflow-sampling", "1")
        for tenant, vms in (("red", {"r1": ("hv1", "10.0.0.11"), "r2": ("hv2", "10.0.0.12")}),
                            ("blue", {"b1": ("hv2", "10.0.0.11"), "b2": ("hv1", "10.0.0.12")})):
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
            for vm, (host, ip) in vms.items():
                lab.weft("port", "create", f"{tenant}/net/{vm}", "--ip", ip)
                lab.weft("lab", "vm", "create", vm, "--host", host, "--port", f"{tenant}/net/{vm}")
        lab.weft("router", "create", "red/r")
        lab.weft("network", "create", "red/db", "--cidr", "10.1.0.0/24")
        lab.weft("router", "attach", "red/r", "red/net")
        lab.weft("router", "attach", "red/r", "red/db")
        for src, dst in (("r1", "10.0.0.12"), ("b1", "10.0.0.12")):
            r = lab.exec(src, "ping", "-c", "20", "-i", "0.02", "-W", "1", dst)
            assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 20          # the collectors have seen both tenants talk
        while True:
            pairs = {(m["src"], m["dst"]) for m in lab.json("traffic", "matrix", "--by", "vm")}
            if {("red/net/r1", "red/net/r2"), ("blue/net/b1", "blue/net/b2")} <= pairs:
                break
            assert time.monotonic() < deadline, pairs
            time.sleep(0.3)
        yield lab
    finally:
        lab.down()


def dashboard(lab) -> tuple[str, str]:
    services = lab.json("lab", "status")["services"]
    url = next(s["dashboard"] for s in services if s["name"] == "weftd")
    with open(os.path.join(lab.dir, "api.token")) as f:
        return url, f.read().strip()


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (scripts/setup.sh)")
def test_the_dashboard_shows_the_lab_in_a_real_browser(uilab, tmp_path):
    url, token = dashboard(uilab)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/ui/")
    with Browser(str(tmp_path / "profile")) as browser:
        page = browser.new_page()
        page.navigate(f"{url}#token={token}")
        page.wait_for("document.body.dataset.loaded === '1'", timeout=30)
        # the matrix fills once the traffic queries answered (same refresh)
        cells = page.wait_for("document.querySelectorAll('#matrix-vm td.cell[data-bytes]').length", timeout=20)
        assert cells >= 2
        text = lambda sel: page.evaluate(f"document.querySelector({sel!r}).textContent")  # noqa: E731
        hosts = text("#hosts tbody")
        assert "hv1" in hosts and "hv2" in hosts and "connected" in hosts
        networks = text("#networks tbody")
        assert all(n in networks for n in ("red/net", "blue/net", "red/db", "red/r"))
        heat = page.evaluate("Array.from(document.querySelectorAll('#matrix-vm td.cell[data-bytes]'))"
                             ".map(td => td.title)")
        assert any(t.startswith("red/net/r1 → red/net/r2") for t in heat), heat
        assert any(t.startswith("blue/net/b1 → blue/net/b2") for t in heat), heat
        assert "red" in text("#matrix-tenant") and "blue" in text("#matrix-tenant")
        assert "red/net/r1" in text("#top tbody")
        # the topology picture: one box per host, one bar per network, the router, every port
        counts = page.evaluate("['host','network','router','port'].map(k => "
                               "document.querySelectorAll('#topology svg g.' + k).length)")
        assert counts == [2, 3, 1, 4], counts
        # decisions from the observed traffic: red's suggested groups (the pings r1 -> r2 make a
        # client and a server role), and a placement table (moves, or why there are none)
        page.wait_for("document.querySelectorAll('#sg-suggest tbody td:not(.empty)').length", timeout=20)
        assert page.evaluate("document.querySelector('#suggest-tenant').value") == "blue"
        suggested = text("#sg-suggest tbody")
        assert "blue/net/b1" in suggested and "icmp" in suggested, suggested
        assert page.evaluate("document.querySelectorAll('#placement tbody tr').length") >= 1
        # drops: an empty table with a note until weftd reports them, never an error
        assert page.evaluate("document.querySelectorAll('#drops tbody tr').length") >= 1
        # the token left the address bar; the page refreshes by itself
        assert "token" not in page.evaluate("location.href")
        first = text("#state")
        page.wait_for(f"document.querySelector('#state').textContent !== {first!r}", timeout=15)
        shot = page.screenshot(str(tmp_path / "dashboard.png"))
        assert page.errors == [], page.errors
    assert os.path.getsize(shot) > 10_000
    print(f"\ndashboard screenshot: {shot}")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (scripts/setup.sh)")
def test_without_the_token_the_page_asks_for_it_and_shows_no_data(uilab, tmp_path):
    url, token = dashboard(uilab)
    with Browser(str(tmp_path / "profile")) as browser:
        page = browser.new_page()
        page.navigate(url)
        page.wait_for("!document.getElementById('login').hidden", timeout=20)
        assert page.evaluate("document.getElementById('main').hidden") is True
        assert "hv1" not in page.evaluate("document.body.textContent")
        # a wrong token is refused the same way; the right one opens it
        page.evaluate("document.getElementById('token').value = 'wrong-token-0123456789'; "
                      "document.querySelector('#login-form button').click()")
        page.wait_for("document.getElementById('login-error').textContent.includes('refused')", timeout=20)
        page.evaluate(f"document.getElementById('token').value = {token!r}; "
                      "document.querySelector('#login-form button').click()")
        page.wait_for("document.body.dataset.loaded === '1'", timeout=30)
        assert "hv1" in page.evaluate("document.querySelector('#hosts tbody').textContent")
        # the only errors are the refused requests (401), nothing from the page itself
        assert page.errors and all("401" in e for e in page.errors), page.errors


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (scripts/setup.sh)")
def test_a_tenant_token_sees_only_its_tenant(uilab, tmp_path):
    url, _admin = dashboard(uilab)
    token = uilab.json("token", "create", "--tenant", "red")
    secret = token.get("token") or token.get("secret")
    assert secret, token
    with Browser(str(tmp_path / "profile")) as browser:
        page = browser.new_page()
        page.navigate(f"{url}#token={secret}")
        page.wait_for("document.body.dataset.loaded === '1'", timeout=30)
        page.wait_for("document.querySelectorAll('#matrix-vm td.cell[data-bytes]').length", timeout=20)
        text = lambda sel: page.evaluate(f"document.querySelector({sel!r}).textContent")  # noqa: E731
        assert "red/net" in text("#networks tbody") and "blue" not in text("#networks tbody")
        assert "blue" not in text("#matrix-vm") and "red/net/r1" in text("#matrix-vm")
        assert "admin tokens" in text("#hosts tbody") and "tenant view" in text("#state")
        # the hosts stay in the picture by name (from the tenant's own ports)
        assert page.evaluate("document.querySelectorAll('#topology svg g.host').length") == 2
        page.wait_for(f"document.querySelector('#state').textContent !== {text('#state')!r}", timeout=15)
        # the hosts and status were asked once (403), not at every refresh
        assert page.errors and all("403" in e for e in page.errors) and len(page.errors) <= 2, page.errors
