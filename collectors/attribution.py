"""Attribute normalised flow records to weft endpoints (port, network, tenant, host), and dedup.

Who sent / received a record (`Attributor.attribute(rec) -> Attribution`):

1. The exporter's address names the exporting host: first the extra `exporter_hosts` map
   (OVS in weft's lab exports from its management address), then the hosts' tunnel IPs.
2. Record with a VNI (`tunnel_key`, e.g. sFlow of a VXLAN/Geneve frame received from the
   tunnel): the VNI names the network, so tenants never mix. Each endpoint is looked up in
   that network by MAC, then by IP, then by the exporting host's input (source) or output
   (destination) port when that port is on the same network. An address not found in the
   network is looked up by IP among the other networks of the *same tenant* (routed).
3. Record without a VNI (NetFlow/IPFIX/sFlow seen on br-int at a VM's own port, before
   encapsulation): when (exporting host, input ofport) is a bound port, that port's network
   is the context (source: MAC, IP, else the input port itself - it sent the frame;
   destination: MAC, IP, the output port, by IP within the tenant). Otherwise the source is
   searched among the networks present on the exporting host (those with a port bound
   there; all networks when the host is unknown) by MAC and IP, and the destination in the
   source's network, else in the output port's network (else that port), else in the same
   host scope. An input/output port of another tenant than the network's is never used.
   Several matches (tenants reuse CIDRs and MACs) are never guessed between: the endpoint
   stays unknown with `candidates` = how many ports matched.
   Interface numbers: Open vSwitch's NetFlow reports OpenFlow port numbers, which the
   bindings hold (`ofport_protocols`); its sFlow reports kernel ifindexes, used through the
   `ifindexes` map {(host, ifindex): port uuid} (weftd reads each NIC's ifindex from the
   host's OVSDB) for the input of frames without a VNI only (a port without a kernel
   ifindex, the tunnel, is named by its datapath port number, which can equal a NIC's
   ifindex); its IPFIX reports datapath port numbers (`ovs-appctl dpif/show`: on the
   userspace datapath NIC ofport 1 is datapath port 5), which OVSDB does not hold, so IPFIX
   interfaces are not used. Numbers are never compared across these spaces (a coincidence
   could name a port of another tenant).
4. Unknown endpoints are kept, never dropped: `Endpoint(port=None, address=<ip or mac>)`.
   `host` is still set when every candidate port is bound on one host.

Dedup rule (one flow sampled on both the sender's and the receiver's host counts once):
a record is *counted* only on the host where its source endpoint is bound (the sender's
host); when the source's host is unknown (unknown or remote-only source), only on the host
where its destination is bound; when neither host is known, or the exporter's host is not
known, it is counted wherever it is seen (no basis to drop it). Consequence: a flow whose
deciding host does not export is not counted at all (configure sampling on every host).

Attribution results are memoised per address tuple; `update(model)` swaps in a new index
atomically (safe while other threads call `attribute`).
"""
from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import NamedTuple

CACHE_MAX = 1 << 16
OFPORT_PROTOCOLS = frozenset(("netflow5", "netflow9"))   # IPFIX: datapath ports, see above


class Endpoint(NamedTuple):
    port: str | None = None      # "TENANT/NET/PORT" when known
    network: str | None = None   # "TENANT/NET"
    tenant: str | None = None    # set for known ports, and for unknowns seen within a tenant
    host: str | None = None      # where the port is bound (or all candidate ports are)
    address: str | None = None   # the raw IP or MAC of an unknown endpoint
    candidates: int = 0          # ports that matched when ambiguous (>1), else 0

    @property
    def known(self) -> bool:
        return self.port is not None

    def label(self, by: str = "vm") -> str:
        """The matrix label: port ref / network ref / tenant name, or `unknown:<ip or mac>`."""
        if self.port is None:
            return f"unknown:{self.address or '?'}"
        if by == "vm":
            return self.port
        if by == "network":
            return self.network
        if by == "tenant":
            return self.tenant
        raise ValueError(f"unknown grouping {by!r} (vm, network or tenant)")


class Attribution(NamedTuple):
    src: Endpoint
    dst: Endpoint
    host: str | None   # the exporting host, when known
    counted: bool      # False: the same flow is counted on another host (dedup rule)


UNKNOWN = Endpoint()


def _norm_mac(mac) -> str | None:
    return mac.lower() if type(mac) is str else None


def _norm_ip(ip) -> str | None:
    """The canonical text of an IP address (as the decoders print it); other text as is."""
    if type(ip) is not str:
        return None
    try:
        return inet_ntop(AF_INET, inet_pton(AF_INET, ip))
    except (OSError, ValueError):  # ValueError: embedded NUL
        pass
    try:
        return inet_ntop(AF_INET6, inet_pton(AF_INET6, ip))
    except (OSError, ValueError):
        return ip


class _Net:
    __slots__ = ("uuid", "ref", "tenant", "vni", "by_mac", "by_ip")

    def __init__(self, uuid: str, ref: str, tenant: str, vni) -> None:
        self.uuid, self.ref, self.tenant, self.vni = uuid, ref, tenant, vni
        self.by_mac: dict[str, list] = {}
        self.by_ip: dict[str, list] = {}


class _P(NamedTuple):
    uuid: str
    net: _Net
    endpoint: Endpoint


def _add(d: dict, key, value) -> None:
    if key is not None:
        d.setdefault(key, []).append(value)


class _Index:
    """Lookup tables built once per model snapshot (read-only afterwards)."""

    def __init__(self, model, exporter_hosts: dict, ofport_protocols=OFPORT_PROTOCOLS,
                 ifindexes: dict | None = None) -> None:
        self.ofport_protocols = frozenset(ofport_protocols)
        self.by_vni: dict[int, _Net] = {}
        self.by_tenant_ip: dict[tuple, list] = {}
        self.by_host_ofport: dict[tuple, _P] = {}
        self.by_host_ifindex: dict[tuple, _P] = {}
        self.host_nets: dict[str, list] = {}
        self.all_mac: dict[str, list] = {}
        self.all_ip: dict[str, list] = {}
        self.exporter_host: dict = {}
        self.cache: dict = {}
        self.fast: dict = {}  # callers' own memo (e.g. raw-header keys), dropped with the index
        if model is not None:
            self._build(model, ifindexes or {})
        for addr, host in (exporter_hosts or {}).items():
            self.exporter_host[addr] = host
            norm = _norm_ip(addr)
            if norm is not None:
                self.exporter_host[norm] = host

    def _build(self, model, ifindexes: dict) -> None:
        nets_by_name: dict[tuple, _Net] = {}
        for net in getattr(model, "networks", {}).values():
            n = _Net(net.uuid, f"{net.tenant}/{net.name}", net.tenant, net.vni)
            nets_by_name[(net.tenant, net.name)] = n
            if net.vni is not None:
                if net.vni in self.by_vni:  # a duplicate VNI is a model error: trust neither
                    self.by_vni[net.vni] = None
                else:
                    self.by_vni[net.vni] = n
        self.by_vni = {k: v for k, v in self.by_vni.items() if v is not None}
        bindings = getattr(model, "bindings", {})
        ports: dict[str, _P] = {}
        for port in getattr(model, "ports", {}).values():
            n = nets_by_name.get((port.tenant, port.network))
            if n is None:
                continue
            b = bindings.get(port.uuid)
            ep = Endpoint(f"{port.tenant}/{port.network}/{port.name}", n.ref, port.tenant,
                          b.host if b is not None else None)
            p = _P(port.uuid, n, ep)
            ports[port.uuid] = p
            mac = _norm_mac(port.mac)
            _add(n.by_mac, mac, p)
            _add(self.all_mac, mac, p)
            for ip in port.ips or ():
                ip = _norm_ip(ip.split("/", 1)[0])
                _add(n.by_ip, ip, p)
                _add(self.all_ip, ip, p)
                _add(self.by_tenant_ip, (port.tenant, ip), p)
        for b in bindings.values():
            p = ports.get(b.port)
            if p is None:
                continue
            if b.ofport is not None:
                self.by_host_ofport[(b.host, b.ofport)] = p
            nets = self.host_nets.setdefault(b.host, [])
            if p.net not in nets:
                nets.append(p.net)
        for (host, ifindex), uuid in ifindexes.items():
            p = ports.get(uuid)
            if p is not None:
                self.by_host_ifindex[(host, ifindex)] = p
        for host in getattr(model, "hosts", {}).values():
            # a host exports from its management address when it has one, else its tunnel IP
            for addr in (getattr(host, "mgmt_ip", None), host.tunnel_ip):
                if addr:
                    self.exporter_host.setdefault(addr, host.name)
                    norm = _norm_ip(addr)
                    if norm is not None:
                        self.exporter_host.setdefault(norm, host.name)

    # ------------------------------------------------------------------ lookups

    def host_of(self, exporter) -> str | None:
        h = self.exporter_host.get(exporter)
        if h is None and type(exporter) is str:
            h = self.exporter_host.get(_norm_ip(exporter))
        return h

    @staticmethod
    def _pick(by_mac: list, by_ip: list) -> tuple[_P | None, int]:
        """One port from MAC then IP matches; (None, n) when n>1 ports stay possible."""
        if by_mac and by_ip:
            both = [p for p in by_mac if p in by_ip]
            if len(both) == 1:
                return both[0], 0
        if by_mac:
            return (by_mac[0], 0) if len(by_mac) == 1 else (None, len(by_mac))
        if by_ip:
            return (by_ip[0], 0) if len(by_ip) == 1 else (None, len(by_ip))
        return None, 0

    @staticmethod
    def _unknown(mac, ip, tenant=None, cands: list | None = None, n: int = 0) -> Endpoint:
        host = None
        if cands:
            hosts = {p.endpoint.host for p in cands}
            if len(hosts) == 1:
                host = hosts.pop()
        return Endpoint(None, None, tenant, host, ip or mac, n if n > 1 else 0)

    def in_network(self, net: _Net, mac, ip, fallback: _P | None = None,
                   routed: bool = True) -> Endpoint:
        """An endpoint of network `net` (MAC, IP, fallback port), else by IP in its tenant."""
        by_mac = net.by_mac.get(mac, ()) if mac else ()
        by_ip = net.by_ip.get(ip, ()) if ip else ()
        p, n = self._pick(by_mac, by_ip)
        if p is not None:
            return p.endpoint
        if n:
            return self._unknown(mac, ip, net.tenant, list(by_mac) or list(by_ip), n)
        if fallback is not None and fallback.net is net:
            return fallback.endpoint
        cands = ()
        if routed and ip:
            cands = self.by_tenant_ip.get((net.tenant, ip), ())
            if len(cands) == 1:
                return cands[0].endpoint
        if fallback is not None and fallback.net.tenant == net.tenant:
            return fallback.endpoint  # routed to a port of the same tenant
        return self._unknown(mac, ip, net.tenant, list(cands), len(cands))

    def in_scope(self, nets: list | None, mac, ip) -> tuple[Endpoint, _Net | None]:
        """An endpoint among `nets` (None: every network); never picks between tenants."""
        if nets is None:
            by_mac = self.all_mac.get(mac, ()) if mac else ()
            by_ip = self.all_ip.get(ip, ()) if ip else ()
        else:
            by_mac, by_ip = [], []
            for n in nets:
                if mac:
                    by_mac.extend(n.by_mac.get(mac, ()))
                if ip:
                    by_ip.extend(n.by_ip.get(ip, ()))
        p, n = self._pick(by_mac, by_ip)
        if p is not None:
            return p.endpoint, p.net
        cands = list(by_mac) or list(by_ip)
        tenants = {c.net.tenant for c in cands}
        return self._unknown(mac, ip, tenants.pop() if len(tenants) == 1 else None,
                             cands, n), None

    def resolve(self, rec) -> Attribution:
        host = self.host_of(rec.exporter)
        smac, dmac = _norm_mac(rec.src_mac), _norm_mac(rec.dst_mac)
        sip, dip = _norm_ip(rec.src_ip), _norm_ip(rec.dst_ip)
        ingress = egress = None
        if host is not None:
            if rec.protocol in self.ofport_protocols:
                if rec.in_interface is not None:
                    ingress = self.by_host_ofport.get((host, rec.in_interface))
                if rec.out_interface is not None:
                    egress = self.by_host_ofport.get((host, rec.out_interface))
            elif rec.in_interface is not None and rec.tunnel_key is None:
                # sFlow: only the input of a frame that did not come from a tunnel. OVS names
                # a port without a kernel ifindex (the tunnel) by its datapath port number,
                # which can equal a NIC's ifindex: a tunnel input, or any output (often the
                # tunnel), could name the wrong port
                ingress = self.by_host_ifindex.get((host, rec.in_interface))
        vni = rec.tunnel_key
        if vni is not None:
            net = self.by_vni.get(vni)
            if net is None:  # a VNI weft does not know: no network to search in
                src = Endpoint(address=sip or smac)
                dst = Endpoint(address=dip or dmac)
            else:
                src = self.in_network(net, smac, sip, ingress)
                dst = self.in_network(net, dmac, dip, egress)
        elif ingress is not None:
            net = ingress.net
            src = self.in_network(net, smac, sip, ingress, routed=False)
            if src.port is None:
                src = ingress.endpoint  # the frame entered from this port: it is the sender
            dst = self.in_network(net, dmac, dip, egress)
        else:
            nets = None if host is None else self.host_nets.get(host, [])
            src, snet = self.in_scope(nets, smac, sip)
            if snet is not None:
                dst = self.in_network(snet, dmac, dip, egress)
            elif egress is not None:  # the frame left by this port: its network decides
                dst = self.in_network(egress.net, dmac, dip, egress, routed=False)
            else:
                dst, _ = self.in_scope(nets, dmac, dip)
        if host is None:
            counted = True
        elif src.host is not None:
            counted = src.host == host
        elif dst.host is not None:
            counted = dst.host == host
        else:
            counted = True
        return Attribution(src, dst, host, counted)


class Attributor:
    """Maps FlowRecords to (src, dst) endpoints of a model; `update(model)` to follow changes."""

    def __init__(self, model=None, exporter_hosts: dict | None = None,
                 cache_max: int = CACHE_MAX, ofport_protocols=OFPORT_PROTOCOLS,
                 ifindexes: dict | None = None) -> None:
        self.exporter_hosts = dict(exporter_hosts or {})
        self.ifindexes = dict(ifindexes or {})
        self.ofport_protocols = frozenset(ofport_protocols)
        self.cache_max = max(1, cache_max)
        self.model = model
        self._index = self._build(model)

    def _build(self, model) -> _Index:
        return _Index(model, self.exporter_hosts, self.ofport_protocols, self.ifindexes)

    def update(self, model=None, exporter_hosts: dict | None = None,
               ifindexes: dict | None = None) -> None:
        """Rebuild the lookup tables for a new model (exporter map, sFlow ifindexes); drops
        the memo."""
        if exporter_hosts is not None:
            self.exporter_hosts = dict(exporter_hosts)
        if ifindexes is not None:
            self.ifindexes = dict(ifindexes)
        self.model = model
        self._index = self._build(model)

    def host_of(self, exporter) -> str | None:
        return self._index.host_of(exporter)

    def memo(self) -> dict:
        """A dict for callers to memoise Attributions under their own keys (e.g. raw bytes
        that determine the record's addresses); replaced, so emptied, by `update`. Callers
        bound it with `cache_max` like the built-in memo."""
        return self._index.fast

    def attribute(self, rec) -> Attribution:
        idx = self._index
        key = (rec.exporter, rec.protocol, rec.tunnel_key, rec.src_mac, rec.dst_mac,
               rec.src_ip, rec.dst_ip, rec.in_interface, rec.out_interface)
        cache = idx.cache
        hit = cache.get(key)
        if hit is not None:
            return hit
        res = idx.resolve(rec)
        if len(cache) >= self.cache_max:
            cache.clear()
        cache[key] = res
        return res
