"""Flow-record decoders for weft's traffic collectors (sFlow v5, NetFlow v5/v9, IPFIX)."""
