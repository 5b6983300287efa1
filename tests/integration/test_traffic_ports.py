"""Attribution by port on the lab: two tenants with the same MAC and IP on one host stay apart.

red and blue each have a network 10.0.0.0/24 with VMs a (10.0.0.11) and b (10.0.0.12), all
four on hv1. weft keeps MACs unique, so blue's a (port security off) sends with red a's MAC:
its frames carry the same source MAC and IP as red a's. The traffic never crosses a tunnel,
so no VNI says whose it is, and MAC and IP name red's port. sFlow names the input interface
by its kernel ifindex, which weftd reads from hv1's OVSDB (Interface.ifindex) and maps to the
port: each tenant's stream must go to its own ports. (IPFIX names interfaces by datapath
port, which OVSDB does not hold: weft does not use them, see collectors.attribution.)
"""
import os
import time

import pytest

from tests.labtools import Lab

pytestmark = pytest.mark.integration

IP = {"a": "10.0.0.11", "b": "10.0.0.12"}
RED_A_MAC = "52:54:00:ab:00:01"
PACKETS = {"red": 20000, "blue": 8000}      # UDP datagrams a -> b per tenant
PAYLOAD = 1200
WIRE = PAYLOAD + 14 + 20 + 8
# paced UDP sender (1 ms pause every 10 datagrams): nothing is dropped before OVS samples it
SENDER = ("import socket,time,sys\n"
          "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
          "for i in range(int(sys.argv[1])):\n"
          "    s.sendto(b'x'*%d,('%s',9))\n"
          "    i%%10==9 and time.sleep(0.001)\n") % (PAYLOAD, IP["b"])


@pytest.fixture(scope="module")
def plab():
    lab = Lab(f"p{os.getpid() % 100000}")
    lab.down()
    lab.weft("lab", "up", "--hosts", "1")
    try:
        lab.weft("traffic", "config", "--sflow-sampling", "8")
        macs = {}
        for tenant in PACKETS:
            lab.weft("tenant", "create", tenant)
            lab.weft("network", "create", f"{tenant}/net", "--cidr", "10.0.0.0/24")
            for vm in ("a", "b"):
                extra = ["--no-port-security"] if (tenant, vm) == ("blue", "a") else []
                mac = RED_A_MAC if (tenant, vm) == ("red", "a") else None
                port = lab.json("port", "create", f"{tenant}/net/{vm}", "--ip", IP[vm],
                                *(["--mac", mac] if mac else []), *extra)
                macs[(tenant, vm)] = port["mac"]
        for tenant in PACKETS:
            for vm in ("a", "b"):
                nic_mac = RED_A_MAC if (tenant, vm) == ("blue", "a") else macs[(tenant, vm)]
                lab.weft("lab", "vm", "create", f"{tenant[0]}{vm}", "--host", "hv1",
                         "--port", f"{tenant}/net/{vm}", "--mac", nic_mac)
            # b's address is resolved statically: replies to blue a's borrowed MAC go nowhere
            r = lab.exec(f"{tenant[0]}a", "ip", "neigh", "replace", IP["b"], "lladdr",
                         macs[(tenant, "b")], "dev", "eth0")
            assert r.returncode == 0, r.stderr
        time.sleep(2)          # weftd hears of the new interfaces' ifindexes
        for tenant, n in PACKETS.items():
            r = lab.exec(f"{tenant[0]}a", "python3", "-c", SENDER, str(n), timeout=120)
            assert r.returncode == 0, r.stderr
        time.sleep(2)
        yield lab
    finally:
        lab.down()


def test_same_mac_and_ip_in_two_tenants_on_one_host_go_to_the_right_ports(plab):
    lab, source = plab, "sflow"
    rows = lab.json("traffic", "matrix", "--source", source)
    got = {(r["src"], r["dst"]): r["bytes"] for r in rows}
    for tenant, n in PACKETS.items():
        pair = (f"{tenant}/net/a", f"{tenant}/net/b")
        assert pair in got, (source, pair, rows)
        assert abs(got[pair] - n * WIRE) <= 0.15 * n * WIRE, f"{source} {pair}: {got[pair]} vs {n * WIRE}"
    crossed = [r for r in rows if r["src_tenant"] and r["dst_tenant"]
               and r["src_tenant"] != r["dst_tenant"]]
    assert not crossed, crossed
    unknown = sum(r["bytes"] for r in rows if r["src"].startswith("unknown"))
    assert unknown < 0.05 * sum(n * WIRE for n in PACKETS.values()), rows
