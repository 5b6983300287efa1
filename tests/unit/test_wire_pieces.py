"""A bundle's adds assembled from pieces are byte for byte the bundle-add messages made one by one."""
from os_ken.ofproto import ofproto_v1_4 as OFP

from controller.wire import WireCache
from flows.flow import Flow


class Dp:
    ofproto = OFP


def test_pieces_equal_single_messages():
    items = [("delete", 10, 0x1234), Flow(0, 100, (("in_port", 3),), (("goto", 10),), 7),
             Flow(10, 50, (("eth_dst", "fa:16:3e:00:00:01"), ("reg6", 9)), (("output", 4),), 8),
             Flow(10, 50, (("eth_dst", "fa:16:3e:00:00:01"), ("reg6", 9)), (("output", 5),), 9)]
    one = WireCache()
    expected = b"".join(one.bundle_add(Dp, 77, item, 1000 + i) for i, item in enumerate(items))
    assert b"".join(WireCache().bundle_adds(Dp, 77, items, 1000)) == expected
    assert b"".join(one.bundle_adds(Dp, 77, items, 1000)) == expected, "from the cache too"


def test_a_flow_hashes_as_its_content():
    a = Flow(10, 50, (("reg6", 9),), (("output", 4),), 8)
    b = Flow(10, 50, (("reg6", 9),), (("output", 4),), 8)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Flow(10, 50, (("reg6", 9),), (("output", 5),), 8)
