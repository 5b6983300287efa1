"""NetFlow v9 / IPFIX templates as numpy layouts: one big-endian structured dtype per record shape.

A template whose fields are all fixed-length has one shape; `fixed_layout(tpl)` compiles
its dtype once and keeps it on the Template (`Template.layouts`; a re-sent template is a
new object, so it gets a new dtype). A data set of it is then `np.frombuffer` over its
whole records (trailing bytes too short for a record are padding, as in
`Template.decode_records`).

A template with variable-length fields (IPFIX length 65535; every template Open vSwitch
sends has some: interfaceName/Description, the VMware tunnel key) has one shape per
combination of concrete lengths. `set_layout(tpl, data, off, end)` reads the lengths of a
set's first record, compiles (once) that shape's dtype, and takes the set only when every
record of it has the same length prefixes (one numpy comparison) and its tail is too short
for another record: the per-record loop would then read exactly these records, so both
paths agree. Sets of any other shape stay with the per-record loop.

The dtype holds only the fields normalise reads for aggregation ("roles": counters,
protocol and ports, interfaces, tunnel key, MACs, IPs), at their offsets; values are as
`Template.decode_records` gives them: an unsigned integer of any length (0-8 bytes here),
a MAC only when 6 bytes long, an IPv4 / IPv6 address only when 4 / 16 bytes long.
"""
from __future__ import annotations

import struct

import numpy as np

from . import ie
from .templates import VARIABLE_LENGTH, Template

MAX_SHAPES = 64          # variable-length shapes compiled per template, at most
_U16 = struct.Struct("!H")

# role -> the record name it reads (normalise.template_record's first choice comes first)
UINT_ROLES = {"l2octets": "layer2OctetDeltaCount", "octets": "octetDeltaCount",
              "packets": "packetDeltaCount", "proto": "protocolIdentifier",
              "sport": "sourceTransportPort", "dport": "destinationTransportPort",
              "in_if": "ingressInterface", "out_if": "egressInterface",
              "tunnel_key": "tunnel_key"}
ADDR_ROLES = {"smac": ("sourceMacAddress", ie.MAC, 6), "dmac": ("destinationMacAddress", ie.MAC, 6),
              "sip4": ("sourceIPv4Address", ie.IPV4, 4),
              "sip6": ("sourceIPv6Address", ie.IPV6, 16),
              "dip4": ("destinationIPv4Address", ie.IPV4, 4),
              "dip6": ("destinationIPv6Address", ie.IPV6, 16)}
_FORMATS = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}


class Layout:
    """One record shape of a template: size, dtype of the roles present, prefix checks."""

    __slots__ = ("size", "dtype", "roles", "zero", "vector", "checks", "key")

    def __init__(self, tpl: Template, shape: tuple) -> None:
        """`shape`: per field (value length, length-prefix bytes: 0 fixed, 1 or 3)."""
        at: dict[str, tuple[int, int]] = {}          # record name -> (offset, length)
        cols, vals = [], []
        off = 0
        for f, name, (length, prefix) in zip(tpl.fields, tpl.field_names, shape):
            if prefix:
                enc = bytes([length]) if prefix == 1 else b"\xff" + _U16.pack(length)
                cols.extend(range(off, off + prefix))
                vals.extend(enc)
                off += prefix
            if name is not None and name not in at:
                at[name] = (off, length)
            off += length
        self.size = off
        self.checks = tuple(zip(cols, vals))   # (offset in the record, byte) of the prefixes
        self.roles: dict[str, int] = {}     # role -> length (its dtype field is the role)
        self.zero: set = set()              # UINT roles of length 0 (value 0)
        self.vector = not tpl.options       # options records are only counted
        names, formats, offsets = [], [], []
        for role, name in UINT_ROLES.items():
            if name in at:
                o, length = at[name]
                if length > 8:
                    self.vector = False     # Python integers past 64 bits: per record
                elif length == 0:
                    self.zero.add(role)
                else:
                    self.roles[role] = length
                    names.append(role)
                    formats.append(_FORMATS.get(length, ("u1", (length,))))
                    offsets.append(o)
        for role, (name, kind, want) in ADDR_ROLES.items():
            if name in at and at[name][1] == want:
                o, length = at[name]
                self.roles[role] = length
                names.append(role)
                formats.append(">u4" if length == 4 else ("u1", (length,)))
                offsets.append(o)
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                               "itemsize": max(self.size, 1)})
        # layouts read alike (every exporter's copy of one template): one array for all
        self.key = (self.dtype, frozenset(self.zero), self.vector)

    def uint(self, rows: np.ndarray, role: str) -> np.ndarray | None:
        """A UINT role's values as uint64 (None when the template has no such field)."""
        if role in self.zero:
            return np.zeros(len(rows), dtype=np.uint64)
        length = self.roles.get(role)
        if length is None:
            return None
        col = rows[role]
        if length in _FORMATS:
            return col.astype(np.uint64)
        return _join_bytes(col)

    def words(self, rows: np.ndarray, role: str) -> np.ndarray | None:
        """An address role as uint64 words: (n,) for MAC / IPv4, (n, 2) for IPv6."""
        length = self.roles.get(role)
        if length is None:
            return None
        col = rows[role]
        if length == 4:
            return col.astype(np.uint64)
        if length == 6:
            return _join_bytes(col)
        return np.ascontiguousarray(col).view(">u8").astype(np.uint64).reshape(len(rows), 2)


def _join_bytes(col: np.ndarray) -> np.ndarray:
    """(n, L) big-endian bytes -> uint64 (L <= 8)."""
    out = np.zeros(col.shape[0], dtype=np.uint64)
    for j in range(col.shape[1]):
        out = (out << np.uint64(8)) | col[:, j].astype(np.uint64)
    return out


def fixed_layout(tpl: Template) -> Layout:
    """The layout of an all-fixed-length template (compiled once, kept on it)."""
    lay = tpl.layouts.get(None)
    if lay is None:
        lay = tpl.layouts[None] = Layout(tpl, tuple((f.length, 0) for f in tpl.fields))
    return lay


def _first_shape(tpl: Template, data: bytes, off: int, end: int) -> tuple | None:
    """The shape of the variable-length record at data[off:]; None if it does not fit."""
    shape = []
    for f in tpl.fields:
        length, prefix = f.length, 0
        if length == VARIABLE_LENGTH:
            if off >= end:
                return None
            length, prefix = data[off], 1
            if length == 255:
                if off + 3 > end:
                    return None
                length, prefix = _U16.unpack_from(data, off + 1)[0], 3
            off += prefix
        if off + length > end:
            return None
        off += length
        shape.append((length, prefix))
    return tuple(shape)


def fits(lay: Layout, tpl: Template, data: bytes, off: int, end: int) -> int | None:
    """The record count when every record of data[off:end] has `lay`'s length prefixes
    (the first one's read in order: each prefix where the one before puts it) and the tail
    is too short for another record; else None."""
    size = lay.size
    count = (end - off) // size
    if not count or (end - off) - count * size >= tpl.min_length:
        return None                 # (the loop would try another record in the tail)
    stop = off + count * size
    for col, byte in lay.checks:    # a strided slice per prefix byte: the column of it
        if data[off + col:stop:size].count(byte) != count:
            return None
    return count


LAST = "last"      # Template.layouts key of the variable-length layout used last


def set_layout(tpl: Template, data: bytes, off: int, end: int) -> tuple[Layout, int] | None:
    """(layout, record count) when every record of the set data[off:end] reads as one shape
    (see the module docstring); None: the per-record loop decodes it."""
    if tpl.fixed_length is not None:
        lay = fixed_layout(tpl)
        return lay, (end - off) // lay.size
    lay = tpl.layouts.get(LAST)
    if lay is not None:             # an exporter's sets mostly share one shape
        count = fits(lay, tpl, data, off, end)
        if count is not None:
            return lay, count
    if end - off < tpl.min_length:
        return None
    shape = _first_shape(tpl, data, off, end)
    if shape is None:
        return None
    lay = tpl.layouts.get(shape)
    if lay is None:
        if len(tpl.layouts) >= MAX_SHAPES:
            return None
        lay = tpl.layouts[shape] = Layout(tpl, shape)
    count = fits(lay, tpl, data, off, end)
    if count is None:
        return None
    tpl.layouts[LAST] = lay
    return lay, count
