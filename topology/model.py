"""The network model: plain, immutable records for tenants, networks, ports, hosts and bindings.

Everything that decides flows reads these records and nothing else, so the flow compiler
stays a pure function of the model. Objects are referenced by name from the outside
(`TENANT/NET/PORT`) and by uuid inside; every record is a frozen dataclass so a model
snapshot can be shared between threads without copying.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tenant:
    uuid: str
    name: str


@dataclass(frozen=True)
class Network:
    uuid: str
    tenant: str          # tenant name
    name: str
    cidr: str            # e.g. "10.0.0.0/24"
    vni: int             # 24-bit tunnel key, allocated by weft, unique across tenants
    gateway: str | None = None
    dhcp: bool = True
    dns: tuple[str, ...] = ()
    router: str | None = None      # name of the tenant's router this network is attached to

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Router:
    """A tenant's distributed logical router: it exists on every host where its networks are."""
    uuid: str
    tenant: str          # tenant name
    name: str
    mac: str             # the router's MAC on every attached network
    key: int             # 32-bit id, unique across tenants (the router register value)
    routes: tuple[tuple[str, str], ...] = ()   # static routes: (cidr, next hop)

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Port:
    uuid: str
    tenant: str          # tenant name
    network: str         # network name (within the tenant)
    name: str
    mac: str             # lower-case, colon separated
    ips: tuple[str, ...]
    port_security: bool = True
    security_groups: tuple[str, ...] = ()   # security group names of the same tenant

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.network}/{self.name}"



@dataclass(frozen=True)
class Rule:
    """One security-group rule (AWS/OpenStack semantics): what may start a connection."""
    uuid: str
    key: int             # 32-bit id, unique across tenants: the conntrack mark of what it admits
    direction: str       # "ingress" | "egress"
    proto: str = "any"   # "tcp" | "udp" | "icmp" | "any"
    port_min: int | None = None     # tcp/udp destination port range
    port_max: int | None = None
    icmp_type: int | None = None    # icmp only
    remote_cidr: str | None = None  # the peer's addresses ...
    remote_sg: str | None = None    # ... or the members of this group of the same tenant
    ethertype: str = "ipv4"


@dataclass(frozen=True)
class SecurityGroup:
    uuid: str
    tenant: str
    name: str
    rules: tuple[Rule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Host:
    name: str
    tunnel_ip: str
    ovsdb: str           # how to reach the host's Open vSwitch database, e.g. unix:/path/db.sock
    mgmt_ip: str | None = None   # the address its flow exporters send from, if not tunnel_ip


@dataclass(frozen=True)
class TrafficConfig:
    """What every host's br-int exports to weft's collectors (sampling 1 in N packets)."""
    sflow: bool = True
    sflow_sampling: int = 64
    sflow_polling: int = 10          # seconds between counter samples
    netflow: bool = True
    netflow_active_timeout: int = 10  # seconds
    ipfix: bool = True
    ipfix_sampling: int = 64


@dataclass(frozen=True)
class Binding:
    """Which host a port's NIC sits on, learned from that host's OVSDB."""
    port: str            # port uuid
    host: str            # host name
    ofport: int          # OpenFlow port number of the NIC on the host's br-int


@dataclass(frozen=True)
class Model:
    """A consistent snapshot of the whole model, indexed for the compiler."""
    tenants: dict[str, Tenant] = field(default_factory=dict)      # by name
    networks: dict[str, Network] = field(default_factory=dict)    # by uuid
    ports: dict[str, Port] = field(default_factory=dict)          # by uuid
    hosts: dict[str, Host] = field(default_factory=dict)          # by name
    bindings: dict[str, Binding] = field(default_factory=dict)    # by port uuid
    routers: dict[str, Router] = field(default_factory=dict)      # by uuid
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)   # by uuid
    traffic: TrafficConfig = TrafficConfig()

    def network(self, tenant: str, name: str) -> Network | None:
        return next((n for n in self.networks.values() if (n.tenant, n.name) == (tenant, name)), None)

    def network_of(self, port: Port) -> Network | None:
        return self.network(port.tenant, port.network)

    def router(self, tenant: str, name: str) -> Router | None:
        return next((r for r in self.routers.values() if (r.tenant, r.name) == (tenant, name)), None)
