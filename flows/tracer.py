"""A simulated multi-table OpenFlow switch, and a fabric of them joined by tunnels, to test flows.

`trace(flows, packet, in_port)` walks a packet through the tables the way Open vSwitch does:
in each table the highest-priority flow whose every match field is present in the packet and
equal (under the mask for a `(value, mask)` pair) wins; its actions apply in order; `goto`
continues in a later table; no match drops. Two different flows of the top priority matching
the same packet is an error (OpenFlow leaves the winner undefined), so tests cannot pass by luck.

Packets are dicts keyed by OXM names (`eth_src`, `arp_tpa`, `tunnel_id`, ...), values as in
matches: MACs and IPv4 addresses as strings (or ints), everything else as ints; `ip_ttl` is the
IPv4 TTL that `dec_ttl` works on. Registers `reg0`..`reg7` and `metadata` start at 0.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flows.flow import (BROADCAST, CONTROLLER, ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, IN_PORT,
                        IP_PROTO_ICMPV6, ND_NA, ND_NS, Flow)
from flows.cookies import DROP_FLAG
from flows.pipeline import TUNNEL_OFPORT

MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"})
IPV6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "ipv6_nd_target"})
IPV4_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src",
                         "tun_ipv4_dst"})
PIPELINE_FIELDS = frozenset({"in_port", "metadata", "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst",
                             "ct_state", "ct_mark", "conj_id", *(f"reg{i}" for i in range(8))})
ZERO_MAC = "00:00:00:00:00:00"
MAX_TABLE_VISITS = 255


@dataclass(frozen=True)
class Step:
    """One table a traced packet visited: the flow that took it (None: no flow matched) and
    the packet's integer-valued fields when it did; `note` says what else happened there."""
    table: int
    flow: Flow | None
    packet: dict
    note: str = ""


@dataclass(frozen=True)
class Output:
    """A packet leaving the switch: the port (IN_PORT resolved to the real one) and its fields."""
    port: int
    packet: dict
    meters: tuple = ()      # the meters it went through, in order (rates are not modelled)


# -- field values -------------------------------------------------------------------------------

def to_int(field: str, value) -> int:
    """A match or packet value as an integer (MACs and IPv4 addresses parsed by field name)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a field value")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            if field in MAC_FIELDS:
                parts = value.split(":")
                if len(parts) == 6 and all(len(p) == 2 for p in parts):
                    return int("".join(parts), 16)
            elif field in IPV4_FIELDS:
                parts = [int(p) for p in value.split(".")]
                if len(parts) == 4 and all(0 <= p <= 255 for p in parts):
                    return parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
            elif field in IPV6_FIELDS:
                return int(ipaddress.IPv6Address(value))
        except ValueError:
            pass
    raise ValueError(f"{field}: cannot read {value!r} as a value of this field")


def to_text(field: str, value: int):
    """The readable form of an integer field value (the inverse of to_int)."""
    if field in MAC_FIELDS:
        return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -1, -8))
    if field in IPV4_FIELDS:
        return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
    if field in IPV6_FIELDS:
        return str(ipaddress.IPv6Address(value))
    return value


def _compile_match(match: tuple) -> tuple:
    out = []
    for field, value in match:
        if isinstance(value, tuple):
            mask = to_int(field, value[1])
            out.append((field, to_int(field, value[0]) & mask, mask))
        else:
            out.append((field, to_int(field, value), None))
    return tuple(out)


def _matches(compiled: tuple, pkt: dict) -> bool:
    for field, value, mask in compiled:
        have = pkt.get(field)
        if have is None:
            return False
        if mask is None:
            if have != value:
                return False
        elif have & mask != value:
            return False
    return True


# -- one switch ---------------------------------------------------------------------------------

class Switch:
    """One bridge's flow tables, ready to trace many packets."""

    def __init__(self, flows: Iterable[Flow]):
        tables: dict[int, list] = {}
        for flow in flows:
            tables.setdefault(flow.table, []).append((flow.priority, _compile_match(flow.match), flow))
        for entries in tables.values():
            entries.sort(key=lambda e: -e[0])
        self.tables = tables
        self.conntrack: dict[int, dict[tuple, int]] = {}   # zone -> {connection tuple: ct_mark}
        self.nat: dict[int, dict[tuple, tuple]] = {}        # zone -> {original tuple: translated}

    def lookup(self, table: int, pkt: dict) -> Flow | None:
        """The flow of `table` that takes this (integer-valued) packet, or None (a miss).

        Conjunctive flows follow OVS: at a priority where no ordinary flow matches, a
        conjunction whose every clause has a matching flow sets conj_id, and the flow
        matching that conj_id takes the packet."""
        entries = self.tables.get(table, ())
        for priority in sorted({e[0] for e in entries}, reverse=True):
            winner, clauses = None, {}
            for prio, compiled, flow in entries:
                if prio != priority or not _matches(compiled, pkt):
                    continue
                conj = [a for a in flow.actions if a[0] == "conjunction"]
                if conj:
                    for _k, cid, clause, n in conj:
                        clauses.setdefault((cid, n), set()).add(clause)
                elif "conj_id" in dict(flow.match):
                    continue
                elif winner is None:
                    winner = flow
                elif (flow.match, flow.actions) != (winner.match, winner.actions):
                    raise ValueError(f"table {table}: two flows of priority {priority} take the "
                                     f"packet: {winner.match!r} and {flow.match!r}")
            if winner is not None:
                return winner
            for (cid, n), seen in sorted(clauses.items()):
                if len(seen) == n:
                    for _prio, compiled, flow in entries:
                        if dict(flow.match).get("conj_id") == cid and _matches(compiled, {**pkt, "conj_id": cid}):
                            return flow
        return None

    def _conn(self, pkt: dict) -> tuple:
        l4 = (pkt.get("tcp_src", pkt.get("udp_src", 0)), pkt.get("tcp_dst", pkt.get("udp_dst", 0)))
        if "ipv6_src" in pkt:
            return (pkt.get("ipv6_src"), pkt.get("ipv6_dst"), pkt.get("ip_proto"), *l4)
        return (pkt.get("ipv4_src"), pkt.get("ipv4_dst"), pkt.get("ip_proto"), *l4)

    def _ct(self, pkt: dict, commit: bool, zone: int, mark) -> None:
        """A small conntrack: new / established (either direction) per zone, with a mark."""
        table = self.conntrack.setdefault(zone, {})
        conn = self._conn(pkt)
        rev = (conn[1], conn[0], conn[2], conn[4], conn[3])
        if conn in table or rev in table:
            state, key = 0x22 | (0x08 if rev in table else 0), conn if conn in table else rev
            pkt["ct_mark"] = table[key]
        else:
            state, key = 0x21, conn
            pkt["ct_mark"] = 0
        pkt["ct_state"] = state
        if commit and key not in table:
            table[key] = mark or 0
            pkt["ct_mark"] = table[key]

    def _ct_nat(self, pkt: dict, commit: bool, zone: int, nat) -> None:
        """Conntrack with NAT, as OVS does it: a committed connection keeps its translation for
        both directions; `nat` (("src"|"dst", ip)) applies only when a new one is committed."""
        table = self.nat.setdefault(zone, {})
        conn = self._conn(pkt)

        def rev(c):
            return (c[1], c[0], c[2], c[4], c[3])
        replies = {rev(tr): orig for orig, tr in table.items()}
        if conn in table:
            pkt["ct_state"], new = 0x22, table[conn]
        elif conn in replies:
            pkt["ct_state"], new = 0x2A, rev(replies[conn])
        else:
            pkt["ct_state"], new = 0x21, conn
            if commit:
                if nat is not None:
                    kind, ip = nat
                    value = to_int("ipv4_src", ip)
                    new = (value, conn[1], *conn[2:]) if kind == "src" else (conn[0], value, *conn[2:])
                table[conn] = new
        pkt["ct_mark"] = 0
        pkt["ipv4_src"], pkt["ipv4_dst"] = new[0], new[1]

    def trace(self, packet: Mapping, in_port: int, steps: list | None = None) -> list[Output]:
        """Where the packet goes. With `steps`, each table visited is appended to it as a
        Step (the table, the flow that took the packet or None for a miss without a flow,
        the packet's fields as that flow saw them, and a note such as "ttl-expired").

        A drop flow (its cookie names a drop reason, flows/drops.py) drops the packet: the
        sample it sends to the controller is not a delivery."""
        pkt = {field: to_int(field, value) for field, value in packet.items()}
        pkt.update({f"reg{i}": 0 for i in range(8)}, metadata=0, in_port=in_port)
        outputs: list[Output] = []
        meters: list[int] = []
        table, visits = 0, 0
        while table is not None:
            visits += 1
            if visits > MAX_TABLE_VISITS:
                raise ValueError(f"packet visited {MAX_TABLE_VISITS} tables: a goto loop")
            flow = self.lookup(table, pkt)
            if steps is not None:
                steps.append(Step(table, flow, dict(pkt)))
            if flow is None or flow.cookie >> 56 & DROP_FLAG:
                break
            table = None
            for action in flow.actions:
                kind = action[0]
                if kind == "output":
                    port = action[1]
                    if port == IN_PORT:
                        outputs.append(_output(pkt["in_port"], pkt, meters))
                    elif port != pkt["in_port"]:
                        outputs.append(_output(port, pkt, meters))
                elif kind == "set_field":
                    pkt[action[1]] = to_int(action[1], action[2])
                elif kind == "move":
                    _, src, dst, n_bits = action
                    if src not in pkt:
                        raise ValueError(f"move from {src}, which the packet does not have")
                    mask = (1 << n_bits) - 1
                    pkt[dst] = (pkt.get(dst, 0) & ~mask) | (pkt[src] & mask)
                elif kind == "dec_ttl":
                    if "ip_ttl" not in pkt:
                        raise ValueError("dec_ttl on a packet without ip_ttl")
                    pkt["ip_ttl"] -= 1
                    if pkt["ip_ttl"] <= 0:
                        if steps is not None:
                            steps[-1] = Step(steps[-1].table, flow, steps[-1].packet, "ttl-expired")
                        return outputs
                elif kind == "meter":
                    meters.append(action[1])     # which meter, not its rate
                elif kind == "sample":
                    pass                    # sampling is not modelled
                elif kind == "ct":
                    _k, commit, zone, ct_table, mark = action
                    self._ct(pkt, commit, zone, mark)
                    if ct_table is not None:
                        table = ct_table
                        break
                elif kind == "ct_nat":
                    _k, commit, zone, ct_table, nat = action
                    self._ct_nat(pkt, commit, zone, nat)
                    if ct_table is not None:
                        table = ct_table
                        break
                elif kind == "controller":
                    outputs.append(_output(CONTROLLER, pkt, meters))
                elif kind == "goto":
                    table = action[1]
                else:
                    raise ValueError(f"unknown action {action!r}")
        return outputs


def _output(port: int, pkt: dict, meters=()) -> Output:
    return Output(port, {field: to_text(field, value) for field, value in pkt.items()}, tuple(meters))


def trace(flows: Iterable[Flow], packet: Mapping, in_port: int) -> list[Output]:
    """Where one switch holding `flows` sends `packet` arriving on `in_port`."""
    return Switch(flows).trace(packet, in_port)


# -- hosts joined by tunnels --------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """A packet leaving a host's bridge on a port other than the tunnel (as the receiver sees it),
    or on the tunnel toward an address no host has (then with its tunnel fields)."""
    host: str
    port: int
    packet: dict
    meters: tuple = ()      # (host, meter id) of every meter it went through, in order


class Fabric:
    """Several switches whose tunnel port is a full mesh, like weft's hypervisors.

    An Output on `tunnel_port` carrying `tun_ipv4_dst` X and `tunnel_id` K arrives at the host
    whose tunnel IP is X, on `tunnel_port`, with `tunnel_id` K and fresh registers. weft sends a
    packet through the tunnel at most once, so by default a second crossing raises ValueError.
    """

    def __init__(self, host_flows: Mapping[str, Iterable[Flow]], tunnel_ips: Mapping[str, str],
                 tunnel_port: int = TUNNEL_OFPORT, max_hops: int = 1):
        self.switches = {host: Switch(flows) for host, flows in host_flows.items()}
        self.tunnel_ips = dict(tunnel_ips)
        self.host_by_ip = {ip: host for host, ip in self.tunnel_ips.items()}
        self.tunnel_port, self.max_hops = tunnel_port, max_hops

    def send(self, host: str, packet: Mapping, in_port: int) -> list[Delivery]:
        """Every delivery caused by `packet` entering `host`'s bridge on `in_port`."""
        return self._run([(host, dict(packet), in_port, 0, ())])

    def from_tunnel(self, host: str, packet: Mapping, tunnel_id: int,
                    tun_ipv4_src: str | None = None) -> list[Delivery]:
        """Inject a packet arriving at `host` from the tunnel with key `tunnel_id`."""
        wire = {k: v for k, v in packet.items() if k not in PIPELINE_FIELDS}
        wire.update(tunnel_id=tunnel_id, tun_ipv4_dst=self.tunnel_ips[host])
        if tun_ipv4_src is not None:
            wire["tun_ipv4_src"] = tun_ipv4_src
        return self._run([(host, wire, self.tunnel_port, 1, ())])

    def _run(self, queue: list) -> list[Delivery]:
        deliveries = []
        while queue:
            host, packet, in_port, hops, metered = queue.pop(0)
            if host not in self.switches:
                raise ValueError(f"no switch for host {host}")
            for out in self.switches[host].trace(packet, in_port):
                meters = metered + tuple((host, m) for m in out.meters)
                if out.port != self.tunnel_port:
                    seen = out.packet if out.port == CONTROLLER else _on_the_wire(out.packet)
                    deliveries.append(Delivery(host, out.port, seen, meters))
                    continue
                target = self.host_by_ip.get(out.packet.get("tun_ipv4_dst"))
                if target is None or "tunnel_id" not in out.packet:
                    deliveries.append(Delivery(host, out.port, out.packet, meters))
                    continue
                if hops + 1 > self.max_hops:
                    raise ValueError(f"{host} sent a packet that came from the tunnel back into it "
                                     f"(toward {target}): a tunnel loop")
                wire = _on_the_wire(out.packet)
                wire.update(tunnel_id=out.packet["tunnel_id"],
                            tun_ipv4_dst=out.packet["tun_ipv4_dst"])
                if host in self.tunnel_ips:
                    wire["tun_ipv4_src"] = self.tunnel_ips[host]
                queue.append((target, wire, self.tunnel_port, hops + 1, meters))
        return deliveries


def _on_the_wire(packet: dict) -> dict:
    return {k: v for k, v in packet.items() if k not in PIPELINE_FIELDS}


# -- packets ------------------------------------------------------------------------------------

def ethernet(eth_src: str, eth_dst: str, eth_type: int, **fields) -> dict:
    return {"eth_src": eth_src, "eth_dst": eth_dst, "eth_type": eth_type, **fields}


def arp_request(eth_src: str, arp_spa: str, arp_tpa: str, *, eth_dst: str = BROADCAST,
                arp_sha: str | None = None) -> dict:
    """Who has arp_tpa? Tell arp_spa (at arp_sha, by default the sender's MAC)."""
    return ethernet(eth_src, eth_dst, ETH_TYPE_ARP, arp_op=1, arp_sha=arp_sha or eth_src,
                    arp_spa=arp_spa, arp_tha=ZERO_MAC, arp_tpa=arp_tpa)


def arp_reply(eth_src: str, eth_dst: str, arp_spa: str, arp_tpa: str) -> dict:
    return ethernet(eth_src, eth_dst, ETH_TYPE_ARP, arp_op=2, arp_sha=eth_src, arp_spa=arp_spa,
                    arp_tha=eth_dst, arp_tpa=arp_tpa)


def ipv4(eth_src: str, eth_dst: str, ipv4_src: str, ipv4_dst: str, *, ip_proto: int = 1,
         ip_ttl: int = 64, **fields) -> dict:
    return ethernet(eth_src, eth_dst, ETH_TYPE_IP, ipv4_src=ipv4_src, ipv4_dst=ipv4_dst,
                    ip_proto=ip_proto, ip_ttl=ip_ttl, **fields)


def udp(eth_src: str, eth_dst: str, ipv4_src: str, ipv4_dst: str, udp_src: int, udp_dst: int,
        **fields) -> dict:
    return ipv4(eth_src, eth_dst, ipv4_src, ipv4_dst, ip_proto=17, udp_src=udp_src,
                udp_dst=udp_dst, **fields)


def tcp(eth_src: str, eth_dst: str, ipv4_src: str, ipv4_dst: str, tcp_src: int, tcp_dst: int,
        **fields) -> dict:
    return ipv4(eth_src, eth_dst, ipv4_src, ipv4_dst, ip_proto=6, tcp_src=tcp_src,
                tcp_dst=tcp_dst, **fields)


def icmp_echo(eth_src: str, eth_dst: str, ipv4_src: str, ipv4_dst: str, **fields) -> dict:
    return ipv4(eth_src, eth_dst, ipv4_src, ipv4_dst, ip_proto=1, icmpv4_type=8, icmpv4_code=0,
                **fields)


def ipv6(eth_src: str, eth_dst: str, ipv6_src: str | None = None, ipv6_dst: str | None = None,
         **fields) -> dict:
    """An IPv6 frame (without addresses: what a port sends that is not really IPv6)."""
    if ipv6_src is not None:
        fields.update(ipv6_src=ipv6_src, ipv6_dst=ipv6_dst)
    return ethernet(eth_src, eth_dst, ETH_TYPE_IPV6, **fields)


def icmpv6(eth_src: str, eth_dst: str, ipv6_src: str, ipv6_dst: str, icmpv6_type: int = 128,
           **fields) -> dict:
    """ICMPv6 (an echo request by default)."""
    return ipv6(eth_src, eth_dst, ipv6_src, ipv6_dst, ip_proto=IP_PROTO_ICMPV6,
                icmpv6_type=icmpv6_type, icmpv6_code=0, **fields)


def neighbour_solicitation(eth_src: str, ipv6_src: str, target: str, *, eth_dst: str | None = None,
                           ipv6_dst: str | None = None) -> dict:
    """Who has `target`? Sent to its solicited-node group unless told otherwise; the source
    link-layer option carries eth_src (none when the source is ::, as in DAD)."""
    from topology.addresses import multicast_mac, solicited_node
    group = solicited_node(target)
    return icmpv6(eth_src, eth_dst or multicast_mac(group), ipv6_src, ipv6_dst or group, ND_NS,
                  ipv6_nd_target=target,
                  ipv6_nd_sll=ZERO_MAC if ipv6_src == "::" else eth_src)


def neighbour_advertisement(eth_src: str, eth_dst: str, ipv6_src: str, ipv6_dst: str, target: str,
                            tll: str | None = None) -> dict:
    return icmpv6(eth_src, eth_dst, ipv6_src, ipv6_dst, ND_NA, ipv6_nd_target=target,
                  ipv6_nd_tll=tll or ZERO_MAC)
