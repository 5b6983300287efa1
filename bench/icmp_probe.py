"""A 1 ms ICMP echo probe: prints when the first answered request was sent and its reply came (epoch s).

`ping -i 0.002` falls back to a ~10 ms grid while its requests go unanswered, so the first reply
after a plug lands on that grid; this probe sends every millisecond for as long as it runs and
stops at the first reply, so the moment a path opens is known to within 1 ms.

Usage (as root, inside the sender's namespace, with weft's venv): icmp_probe.py DST SECONDS
Prints `SENT RECEIVED` of the first answered request, or `none none`.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import struct
import time

from controller.dhcp import inet_checksum

INTERVAL = 0.001
PAYLOAD = b"weft-probe".ljust(48, b".")


def echo_request(ident: int, seq: int) -> bytes:
    bare = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + PAYLOAD
    return struct.pack("!BBHHH", 8, 0, inet_checksum(bare), ident, seq) + PAYLOAD


def probe(dst: str, seconds: float) -> tuple[float, float] | None:
    """Send an echo request every INTERVAL until the first reply or `seconds`; (sent, received)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    seq, due, end = 0, time.time(), time.time() + seconds
    try:
        while time.time() < end:
            now = time.time()
            if now >= due:
                seq = (seq + 1) & 0xFFFF
                try:
                    sock.sendto(echo_request(ident, seq), (dst, 0))
                    sent[seq] = time.time()
                except OSError:             # no route or neighbour yet: the next one tries again
                    pass
                due = max(due + INTERVAL, now)
            ready, _, _ = select.select([sock], [], [], max(0.0, due - time.time()))
            if not ready:
                continue
            packet = sock.recv(2048)
            header = (packet[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", packet[header:header + 8])
            if kind == 0 and rid == ident and rseq in sent:
                return sent[rseq], time.time()
    finally:
        sock.close()
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dst", help="the IPv4 address to probe")
    ap.add_argument("seconds", type=float, help="how long to probe at most (0 < s <= 60)")
    args = ap.parse_args()
    try:
        ipaddress.IPv4Address(args.dst)
    except ValueError:
        ap.error(f"{args.dst!r} is not an IPv4 address")
    if not 0 < args.seconds <= 60:
        ap.error(f"seconds must be above 0 and at most 60, not {args.seconds}")
    got = probe(args.dst, args.seconds)
    print("none none" if got is None else f"{got[0]:.6f} {got[1]:.6f}", flush=True)


if __name__ == "__main__":
    main()
