"""A minimal OpenFlow 1.4 switch over real TLS, for the identity tests: it claims a datapath id and records what the controller sends.

Run inside a lab namespace (`ip netns exec LAB-hvK python tests/ofimpostor.py ...`); standard
library only, no os-ken, so nothing of weft's own code decides what it sees. It sends HELLO,
answers FEATURES_REQUEST with the datapath id it claims, port-desc and flow-stats requests with
empty replies, echo requests, and bundle open/commit requests as an always-willing switch, so
an admitted connection goes all the way to receiving flows. It prints one JSON object:

    {"handshake": "ok" | error, "received": [OpenFlow message types in order],
     "flow_stats_requests": n, "closed_by_peer": bool, "error": str | null}

and stops when the controller closes the connection, once a bundle has been committed
(--until-flows), or after --hold seconds.
"""
from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import time

OFP_VERSION = 0x05                        # OpenFlow 1.4
HEADER = struct.Struct("!BBHI")
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY = 0, 1, 2, 3
FEATURES_REQUEST, FEATURES_REPLY = 5, 6
MULTIPART_REQUEST, MULTIPART_REPLY = 18, 19
BUNDLE_CONTROL = 33
OFPMP_FLOW, OFPMP_PORT_DESC = 1, 13
OFPBCT_OPEN_REQUEST, OFPBCT_COMMIT_REQUEST = 0, 4


def message(mtype: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(OFP_VERSION, mtype, HEADER.size + len(body), xid) + body


def answer(mtype: int, xid: int, msg: bytes, dpid: int) -> bytes | None:
    if mtype == FEATURES_REQUEST:        # datapath_id, n_buffers, n_tables, auxiliary_id, pad, capabilities, reserved
        return message(FEATURES_REPLY, xid, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0x4F, 0))
    if mtype == ECHO_REQUEST:
        return message(ECHO_REPLY, xid, msg[HEADER.size:])
    if mtype == MULTIPART_REQUEST:
        kind = struct.unpack_from("!H", msg, 8)[0]
        return message(MULTIPART_REPLY, xid, struct.pack("!HH4x", kind, 0))     # empty, last
    if mtype == BUNDLE_CONTROL:
        bundle_id, ctrl, flags = struct.unpack_from("!IHH", msg, 8)
        if ctrl in (OFPBCT_OPEN_REQUEST, OFPBCT_COMMIT_REQUEST):
            return message(BUNDLE_CONTROL, xid, struct.pack("!IHH", bundle_id, ctrl + 1, flags))
    return None


def run(args) -> dict:
    report = {"handshake": None, "received": [], "flow_stats_requests": 0,
              "closed_by_peer": False, "error": None}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(args.ca)           # the switch checks weftd's certificate, as OVS does
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    host, port = args.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=args.hold)
    try:
        sock = ctx.wrap_socket(raw)
    except (ssl.SSLError, OSError) as exc:
        report["handshake"] = f"failed: {exc}"
        report["closed_by_peer"] = True
        return report
    report["handshake"] = "ok"
    dpid = int(args.dpid, 16)
    deadline = time.monotonic() + args.hold
    buf = b""
    try:
        sock.sendall(message(HELLO, 1))
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            if not data:
                report["closed_by_peer"] = True
                break
            buf += data
            while len(buf) >= HEADER.size:
                _v, mtype, length, xid = HEADER.unpack_from(buf)
                if len(buf) < length:
                    break
                msg, buf = buf[:length], buf[length:]
                report["received"].append(mtype)
                if mtype == MULTIPART_REQUEST and struct.unpack_from("!H", msg, 8)[0] == OFPMP_FLOW:
                    report["flow_stats_requests"] += 1
                reply = answer(mtype, xid, msg, dpid)
                if reply is not None:
                    sock.sendall(reply)
                if (args.until_flows and mtype == BUNDLE_CONTROL
                        and struct.unpack_from("!H", msg, 12)[0] == OFPBCT_COMMIT_REQUEST):
                    return report
    except (ssl.SSLError, OSError) as exc:      # an alert or a reset: the controller hung up
        report["closed_by_peer"] = True
        report["error"] = str(exc)
    finally:
        sock.close()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connect", required=True, metavar="IP:PORT")
    ap.add_argument("--dpid", required=True, help="the datapath id claimed, hex")
    ap.add_argument("--ca", required=True, help="the CA that must have signed the controller's certificate")
    ap.add_argument("--cert", help="the certificate presented (none: no client certificate)")
    ap.add_argument("--key")
    ap.add_argument("--hold", type=float, default=15.0, help="give up after this many seconds")
    ap.add_argument("--until-flows", action="store_true", help="stop once a bundle is committed")
    print(json.dumps(run(ap.parse_args())))


if __name__ == "__main__":
    main()
