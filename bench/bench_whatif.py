"""Time the policy what-if (flows/whatif.py) on a tenant of 1,000 ports in 10 groups replaying
20,000 observed connection rows: median of 5 runs, with the machine's load. No peer has a
what-if (OVN, Cilium/Hubble: none replays observed traffic against a proposed policy)."""
import argparse
import os
import random
import statistics
import time

from flows.whatif import changed_model, replay
from topology.model import Model, Network, Port, Rule, SecurityGroup, Tenant


def model(ports: int, groups: int, seed: int = 1):
    names = [f"g{i}" for i in range(groups)]
    keys = iter(range(1, 10 ** 6))

    def rule(direction, proto, port=None, sg=None, cidr=None):
        k = next(keys)
        return Rule(f"r{k}", k, direction, proto, port, port, None, cidr, sg)

    sgs = {n: SecurityGroup(n, "red", n, (rule("ingress", "tcp", 80, sg=names[(i + 1) % groups]),
                                          rule("ingress", "tcp", 443, cidr="10.0.0.0/16"),
                                          rule("egress", "any", cidr="0.0.0.0/0"),
                                          rule("ingress", "icmp", sg=n)))
           for i, n in enumerate(names)}
    recs = {f"p{i}": Port(f"p{i}", "red", "net", f"p{i}", f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
                          (f"10.0.{i // 250}.{i % 250 + 2}",), security_groups=(names[i % groups],))
            for i in range(ports)}
    return Model(tenants={"red": Tenant("red", "red")},
                 networks={"n": Network("n", "red", "net", "10.0.0.0/16", 1000)},
                 ports=recs, security_groups=sgs), sgs


def rows(n: int, ports: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(range(ports), 2)
        proto, port = rng.choice([("tcp", 80), ("tcp", 443), ("icmp", None), ("udp", 53)])
        out.append({"src": f"red/net/p{a}", "dst": f"red/net/p{b}", "proto": proto, "port": port,
                    "to_server": True, "bytes": 1000, "packets": 3, "first_seen": 1.0, "last_seen": 2.0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    before, sgs = model(args.ports, args.groups)
    observed = rows(args.rows, args.ports)
    group = sgs["g3"]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        after = changed_model(before, group, delete_ids=[group.rules[0].uuid])
        result = replay(observed, before, after, group)
        times.append(time.perf_counter() - t0)
    print(f"whatif ports={args.ports} rows={args.rows} connections={result['connections']} "
          f"blocked={len(result['blocked'])} median_ms={statistics.median(times) * 1000:.0f} "
          f"min_ms={min(times) * 1000:.0f} load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
