"""Least-privilege suggestions from synthetic flow rows, proven with the packet tracer."""
import itertools

from decisions import sgsuggest
from flows.compiler import CompilerIndex, compile_all
from flows.tracer import Fabric, icmp_echo, tcp, udp
from topology.model import Binding, Host, Model, Network, Port, Rule, SecurityGroup, Tenant

HOSTS = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
# name: (mac, ip, host, ofport)
VMS = {"client": ("fa:16:3e:00:00:01", "10.0.0.10", "hv1", 1),
       "web1": ("fa:16:3e:00:00:02", "10.0.0.11", "hv1", 2),
       "web2": ("fa:16:3e:00:00:03", "10.0.0.12", "hv2", 1),
       "app1": ("fa:16:3e:00:00:04", "10.0.0.21", "hv2", 2),
       "app2": ("fa:16:3e:00:00:05", "10.0.0.22", "hv3", 1),
       "db1": ("fa:16:3e:00:00:06", "10.0.0.31", "hv3", 2),
       "idle": ("fa:16:3e:00:00:07", "10.0.0.40", "hv3", 3)}
ANY_OUT = Rule("r1", 1, "egress", "any", remote_cidr="0.0.0.0/0")
ANY_IN = Rule("r2", 2, "ingress", "any", remote_sg="default")
ANY_OUT6 = Rule("r3", 3, "egress", "any", remote_cidr="::/0", ethertype="ipv6")
ANY_IN6 = Rule("r4", 4, "ingress", "any", remote_sg="default", ethertype="ipv6")


def model(groups=None, assign=None) -> Model:
    """Tenant red, all VMs in a permissive `default` group unless `assign` says otherwise."""
    sgs = {"sg-default": SecurityGroup("sg-default", "red", "default", (ANY_OUT, ANY_IN, ANY_OUT6, ANY_IN6))}
    for name, rules in (groups or {}).items():
        sgs[f"sg-{name}"] = SecurityGroup(f"sg-{name}", "red", name, tuple(rules))
    assign = assign or {}
    return Model(
        tenants={"red": Tenant("red", "red"), "blue": Tenant("blue", "blue")},
        networks={"n": Network("n", "red", "net", "10.0.0.0/24", 1000),
                  "nb": Network("nb", "blue", "net", "10.0.0.0/24", 1001)},
        ports={**{n: Port(n, "red", "net", n, mac, (ip,), security_groups=(assign.get(n, "default"),))
                  for n, (mac, ip, _h, _o) in VMS.items()},
               "bx": Port("bx", "blue", "net", "bx", "fa:16:3e:00:01:01", ("10.0.0.99",))},
        hosts={h: Host(h, ip, "x") for h, ip in HOSTS.items()},
        bindings={n: Binding(n, h, o) for n, (_m, _i, h, o) in VMS.items()},
        security_groups=sgs)


def row(src, dst, proto, port, to_server=True, nbytes=1000):
    label = lambda v: v if v.startswith(("unknown:", "other")) or "/" in v else f"red/net/{v}"
    return {"src": label(src), "dst": label(dst), "proto": proto, "port": port,
            "to_server": to_server, "bytes": nbytes, "packets": 10}


def three_tier_rows():
    """client->web:80, web->app:8080, app->db:5432 (both directions of each, as the collectors
    report them), web2 only ever talked to app2."""
    rows = []
    for c, s, port in (("client", "web1", 80), ("client", "web2", 80), ("web1", "app1", 8080),
                       ("web2", "app2", 8080), ("app1", "db1", 5432), ("app2", "db1", 5432)):
        rows += [row(c, s, "tcp", port, True, 5000), row(s, c, "tcp", port, False, 90000)]
    return rows


def test_three_tiers_give_one_group_per_tier_named_after_it():
    s = sgsuggest.suggest(three_tier_rows(), model(), "red", prefix="ls")
    groups = {g["name"]: g["members"] for g in s["groups"]}
    assert groups == {"ls-client": ["red/net/client"], "ls-web": ["red/net/web1", "red/net/web2"],
                      "ls-app": ["red/net/app1", "red/net/app2"], "ls-db": ["red/net/db1"]}
    rules = {g["name"]: {(r["direction"], r["proto"], r["port_min"], r["port_max"], r["remote_sg"],
                          r["ethertype"]) for r in g["rules"]} for g in s["groups"]}
    assert rules["ls-web"] == {("ingress", "tcp", 80, 80, "ls-client", "ipv4"),
                               ("egress", "tcp", 8080, 8080, "ls-app", "ipv4")}
    assert rules["ls-db"] == {("ingress", "tcp", 5432, 5432, "ls-app", "ipv4")}
    assert rules["ls-client"] == {("egress", "tcp", 80, 80, "ls-web", "ipv4")}
    web = next(g for g in s["groups"] if g["name"] == "ls-web")
    assert web["covers"] == {"connections": 4, "bytes": 4 * 95000}
    assert s["unobserved_ports"] == ["red/net/idle"]
    assert s["connections"] == 6 and s["bytes"] == 6 * 95000


def test_the_default_groups_unused_rules_are_reported():
    s = sgsuggest.suggest(three_tier_rows(), model(), "red")
    (default,) = s["unused"]
    # IPv4 egress anywhere and ingress from default were used; IPv6 never was (no port has an
    # IPv6 address: a link-local alone does not count for the family-blind TCP rows)
    assert default["group"] == "red/default" and [r["id"] for r in default["unused"]] == ["r3", "r4"]
    tight = {"web": [Rule("w1", 10, "ingress", "tcp", 80, 80, remote_cidr="0.0.0.0/0"),
                     Rule("w2", 11, "ingress", "tcp", 22, 22, remote_cidr="0.0.0.0/0"),
                     Rule("w3", 12, "egress", "tcp", 8080, 8080, remote_sg="default")]}
    m = model(tight, {"web1": "web", "web2": "web"})
    unused = {u["group"]: [r["id"] for r in u["unused"]] for u in sgsuggest.suggest(three_tier_rows(), m, "red")["unused"]}
    assert unused["red/web"] == ["w2"]          # ssh was never used; 80 and 8080 (to default members) were


def test_external_and_other_tenant_peers_become_cidr_rules_and_noise_is_skipped():
    rows = three_tier_rows() + [
        row("unknown:203.0.113.7", "web1", "tcp", 443), row("unknown:203.0.113.9", "web2", "tcp", 443),
        row("blue/net/bx", "db1", "tcp", 5432),
        row("web1", "unknown:ff02::16", "icmpv6", None), row("web1", "unknown:fa:16:3e:00:00:09", "tcp", 1),
        row("other", "other", None, None), row("web1", "web2", None, None)]
    s = sgsuggest.suggest(rows, model(), "red")
    groups = {g["name"]: g for g in s["groups"]}
    # webs keep one group: the external peers' addresses differ but count as one "external" peer
    assert groups["suggested-web"]["members"] == ["red/net/web1", "red/net/web2"]
    cidr_rules = {(r["port_min"], r["remote_cidr"]) for r in groups["suggested-web"]["rules"] if r["remote_cidr"]}
    assert cidr_rules == {(443, "203.0.113.7/32"), (443, "203.0.113.9/32")}
    db_cidrs = {r["remote_cidr"] for r in groups["suggested-db"]["rules"] if r["remote_cidr"]}
    assert db_cidrs == {"10.0.0.99/32"}
    assert set(s["skipped"]) == {"multicast-or-link-local", "not-ip"}
    assert s["skipped"]["not-ip"]["rows"] == 3      # a MAC, the folded row, a row without protocol


def test_a_port_without_port_security_is_a_peer_by_address_not_a_member():
    m = model()
    m.ports["idle"] = Port("idle", "red", "net", "idle", "fa:16:3e:00:00:07", ("10.0.0.40",), port_security=False)
    s = sgsuggest.suggest(three_tier_rows() + [row("idle", "db1", "tcp", 5432)], m, "red")
    assert all("red/net/idle" not in g["members"] for g in s["groups"])
    db = next(g for g in s["groups"] if g["members"] == ["red/net/db1"])
    assert {(r["port_min"], r["remote_cidr"]) for r in db["rules"] if r["remote_cidr"]} == {(5432, "10.0.0.40/32")}
    assert s["unobserved_ports"] == []


def test_many_external_clients_collapse_to_their_covering_prefix_and_ports_merge_into_ranges():
    rows = [row(f"unknown:198.51.100.{i}", "web1", "tcp", 80) for i in range(1, 40, 2)]
    rows += [row("web1", "app1", "udp", p) for p in (5000, 5001, 5002, 5004)]
    s = sgsuggest.suggest(rows, model(), "red")
    web = next(g for g in s["groups"] if "red/net/web1" in g["members"])
    assert {r["remote_cidr"] for r in web["rules"] if r["remote_cidr"]} == {"198.51.100.0/26"}
    assert {(r["port_min"], r["port_max"]) for r in web["rules"] if r["proto"] == "udp"} == {(5000, 5002), (5004, 5004)}


def test_roles_split_on_peer_groups_not_just_ports():
    # a and b both serve tcp/80, but a's clients are web VMs and b's are app VMs (different roles)
    rows = [row("web1", "db1", "tcp", 80), row("app1", "idle", "tcp", 80),
            row("client", "web1", "tcp", 8080), row("client", "app1", "tcp", 9090)]
    s = sgsuggest.suggest(rows, model(), "red")
    assert len(s["groups"]) == 5
    assert sorted(len(g["members"]) for g in s["groups"]) == [1, 1, 1, 1, 1]


def test_refinement_is_the_coarsest_stable_partition():
    # a ring of identical roles: every VM serves 80 to the next one -> one class
    ring = ["client", "web1", "web2", "app1"]
    rows = [row(a, b, "tcp", 80) for a, b in zip(ring, ring[1:] + ring[:1])]
    cls = sgsuggest.roles(sgsuggest._elements(sgsuggest.connections(rows, model(), "red")[0]))
    assert len(set(cls.values())) == 1
    # a directed chain: each VM's peers sit at another distance from the ends: all differ
    chain = ["client", "web1", "web2", "app1", "app2"]
    rows = [row(a, b, "tcp", 80) for a, b in zip(chain, chain[1:])]
    cls = sgsuggest.roles(sgsuggest._elements(sgsuggest.connections(rows, model(), "red")[0]))
    assert len(set(cls.values())) == 5
    # many clients of many servers (not all pairs seen): two classes
    rows = [row(c, s, "tcp", 443) for c, s in (("client", "web1"), ("web2", "app1"), ("client", "app1"),
                                               ("app2", "db1"))]
    cls = sgsuggest.roles(sgsuggest._elements(sgsuggest.connections(rows, model(), "red")[0]))
    assert cls["red/net/client"] == cls["red/net/web2"] == cls["red/net/app2"]
    assert cls["red/net/web1"] == cls["red/net/app1"] == cls["red/net/db1"] != cls["red/net/client"]


# ---- proof on the compiled flows: the suggestion admits what was seen and nothing else --------

def applied(s) -> Model:
    """The model with the suggested groups created and every observed port moved to its group."""
    groups, assign = {}, {}
    keys = itertools.count(100)
    for g in s["groups"]:
        groups[g["name"]] = [Rule(f"k{k}", k, r["direction"], r["proto"], r["port_min"], r["port_max"],
                                  None, r["remote_cidr"], r["remote_sg"], r["ethertype"])
                             for r, k in zip(g["rules"], keys)]
        for ref in g["members"]:
            assign[ref.rsplit("/", 1)[1]] = g["name"]
    return model(groups, assign)


def reach(fabric, at, src, dst, proto, port) -> bool:
    mac, ip, host, ofport = VMS[src]
    dmac, dip, *_ = VMS[dst]
    if proto == "icmp":
        pkt = icmp_echo(mac, dmac, ip, dip)
    elif proto == "tcp":
        pkt = tcp(mac, dmac, ip, dip, 40000 + port % 1000, port)
    else:
        pkt = udp(mac, dmac, ip, dip, 40000 + port % 1000, port)
    return dst in {at[(d.host, d.port)] for d in fabric.send(host, pkt, ofport)}


def test_applied_suggestion_admits_exactly_the_observed_services():
    m = applied(sgsuggest.suggest(three_tier_rows(), model(), "red"))
    fabric = Fabric(compile_all(CompilerIndex(m)), HOSTS)
    at = {(b.host, b.ofport): n for n, b in m.bindings.items()}
    observed = {("client", "web1", "tcp", 80), ("client", "web2", "tcp", 80),
                ("web1", "app1", "tcp", 8080), ("web2", "app2", "tcp", 8080),
                ("app1", "db1", "tcp", 5432), ("app2", "db1", "tcp", 5432)}
    tiers = ["client", "web1", "web2", "app1", "app2", "db1"]
    wrong = []
    for src, dst in itertools.permutations(tiers, 2):
        for proto, port in (("tcp", 80), ("tcp", 8080), ("tcp", 5432), ("tcp", 22), ("udp", 5432), ("icmp", 0)):
            want = (src, dst, proto, port) in observed or (
                # same role: web1 -> app2 is allowed too (both are in the groups that talked)
                proto == "tcp" and (src[:3], dst[:3], port) in {("cli", "web", 80), ("web", "app", 8080),
                                                               ("app", "db1", 5432)})
            if reach(fabric, at, src, dst, proto, port) != want:
                wrong.append((src, dst, proto, port, want))
    assert not wrong, wrong
