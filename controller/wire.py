"""OpenFlow 1.4 bytes for bundles, with each flow-mod serialized once and cached (os-ken is slow at it)."""
from __future__ import annotations

import struct
from collections import OrderedDict

from controller import ofencode

HEADER = struct.Struct("!BBHI")           # version, type, length, xid
BUNDLE_CTRL = struct.Struct("!IHH")       # bundle_id, type, flags
BUNDLE_ADD = struct.Struct("!IHH")        # bundle_id, pad, flags
XID = struct.Struct("!I")
OFPT_BUNDLE_CONTROL = 33
OFPT_BUNDLE_ADD_MESSAGE = 34
OFPBF_ATOMIC, OFPBF_ORDERED = 1, 2
FLAGS = OFPBF_ATOMIC | OFPBF_ORDERED


class WireCache:
    def __init__(self, size: int = 600_000):
        self.size = size
        self._cache: OrderedDict = OrderedDict()

    def flow_mod(self, datapath, item) -> bytes:
        """Serialized flow-mod (xid 0) for a Flow, or for ("delete", table, cookie)."""
        cached = self._cache.get(item)
        if cached is not None:
            self._cache.move_to_end(item)
            return cached
        if isinstance(item, tuple) and item and item[0] == "delete":
            data = ofencode.flow_delete(item[1], item[2])
        else:
            data = ofencode.flow_add(item)
        self._cache[item] = data
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return data

    def bundle_ctrl(self, datapath, bundle_id: int, ctrl_type: int, xid: int) -> bytes:
        length = HEADER.size + BUNDLE_CTRL.size
        return (HEADER.pack(datapath.ofproto.OFP_VERSION, OFPT_BUNDLE_CONTROL, length, xid)
                + BUNDLE_CTRL.pack(bundle_id, ctrl_type, FLAGS))

    def bundle_adds(self, datapath, bundle_id: int, items, first_xid: int) -> list:
        """The bundle-adds of `items` with xids first_xid, first_xid+1, ..., as pieces for one
        b"".join (the bytes of bundle_add for each, without a copy of every flow-mod)."""
        version = datapath.ofproto.OFP_VERSION
        add = BUNDLE_ADD.pack(bundle_id, 0, FLAGS)
        head, xid_of, flow_mod = HEADER.pack, XID.pack, self.flow_mod
        out = []
        xid = first_xid
        for item in items:
            inner = flow_mod(datapath, item)
            x = xid_of(xid)
            out += (head(version, OFPT_BUNDLE_ADD_MESSAGE, 16 + len(inner), xid), add,
                    inner[:4], x, inner[8:])
            xid += 1
        return out

    def bundle_add(self, datapath, bundle_id: int, item, xid: int) -> bytes:
        """A bundle-add carrying the flow-mod `item`; the inner message has the same xid, so
        an error the switch reports for it names this xid."""
        inner = bytearray(self.flow_mod(datapath, item))
        inner[4:8] = struct.pack("!I", xid)
        length = HEADER.size + BUNDLE_ADD.size + len(inner)
        return (HEADER.pack(datapath.ofproto.OFP_VERSION, OFPT_BUNDLE_ADD_MESSAGE, length, xid)
                + BUNDLE_ADD.pack(bundle_id, 0, FLAGS) + bytes(inner))
