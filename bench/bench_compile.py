"""Time the flow compiler at data-centre scale: index build, full compile, one port change end to end."""
import argparse
import random
import statistics
import time

from flows.compiler import affected_hosts, compile_all, compile_host
from flows.index import CompilerIndex
from flows.planner import plan
from topology.model import Binding, Host, Model, Network, Port, Tenant


class Generator:
    """A seeded model at scale: tenants with 1-3 networks on the same CIDRs, ports spread over hosts."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.ofports: dict[str, int] = {}       # host -> last ofport handed out
        self.per_net: dict[str, int] = {}       # network uuid -> ports made on it

    def model(self, hosts: int, ports: int, tenants: int) -> Model:
        host_recs = {f"hv{i:04d}": Host(f"hv{i:04d}", f"10.{100 + i // 65536}.{i // 256 % 256}."
                                        f"{i % 256}", f"tcp:192.0.2.1:{6640 + i}")
                     for i in range(hosts)}
        tenant_recs, networks = {}, {}
        vni = 1000
        for t in range(tenants):
            name = f"tenant{t:04d}"
            tenant_recs[name] = Tenant(f"t-{t}", name)
            for n in range(self.rng.randint(1, 3)):
                vni += 1
                networks[f"n-{vni}"] = Network(f"n-{vni}", name, f"net{n}", f"10.{n}.0.0/16", vni)
        return self.add_ports(Model(tenant_recs, networks, {}, host_recs, {}), ports)

    def add_ports(self, model: Model, count: int) -> Model:
        """A new snapshot with `count` more ports, each on a random network and a random host."""
        rng = self.rng
        nets, host_names = list(model.networks.values()), list(model.hosts)
        ports, bindings = dict(model.ports), dict(model.bindings)
        for _ in range(count):
            net = rng.choice(nets)
            i = self.per_net[net.uuid] = self.per_net.get(net.uuid, 0) + 1
            uuid = f"p-{len(ports) + 1:06d}-{rng.getrandbits(32):08x}"
            mac = f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"  # reused across nets
            ports[uuid] = Port(uuid, net.tenant, net.name, uuid[:12], mac,
                               (f"10.{net.cidr.split('.')[1]}.{i // 250}.{i % 250 + 2}",))
            host = rng.choice(host_names)
            self.ofports[host] = self.ofports.get(host, 0) + 1
            bindings[uuid] = Binding(uuid, host, self.ofports[host])
        return Model(model.tenants, model.networks, ports, model.hosts, bindings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--ports", type=int, default=10000)
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    gen = Generator(args.seed)
    model = gen.model(args.hosts, args.ports, args.tenants)
    print(f"model: {len(model.hosts)} hosts, {len(model.ports)} ports, {len(model.tenants)} tenants,"
          f" {len(model.networks)} networks")

    index_times, compile_times = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        index = CompilerIndex(model)
        t1 = time.perf_counter()
        flows = compile_all(index)
        t2 = time.perf_counter()
        index_times.append(t1 - t0)
        compile_times.append(t2 - t1)
    total = sum(map(len, flows.values()))
    print(f"index build:        median {statistics.median(index_times) * 1e3:8.1f} ms "
          f"(min {min(index_times) * 1e3:.1f}, {args.runs} runs)")
    print(f"full compile:       median {statistics.median(compile_times):8.2f} s  "
          f"(min {min(compile_times):.2f}, {args.runs} runs): {total} flows on "
          f"{len(flows)} hosts, {total / len(flows):.1f} per host")
    t0 = time.perf_counter()
    all_empty = all(plan([f.key for f in fl], compile_host(index, h)).empty
                       for h, fl in flows.items())
    t1 = time.perf_counter()
    print(f"plan, unchanged:   {t1 - t0:8.2f} s  for all hosts against their own flows, "
          f"empty plans: {all_empty}")

    change_ms, model_ms, hosts_touched, mods = [], [], [], []
    for _ in range(args.changes):
        t0 = time.perf_counter()
        new_model = gen.add_ports(model, 1)        # the northbound's work, timed apart
        t1 = time.perf_counter()
        new_index = index.updated(new_model)
        hosts = affected_hosts(model, new_model, index, new_index)
        plans = {}
        for host in hosts:
            desired = compile_host(new_index, host)
            plans[host] = plan([f.key for f in flows.get(host, ())], desired)
            flows[host] = desired
        t2 = time.perf_counter()
        model_ms.append((t1 - t0) * 1e3)
        change_ms.append((t2 - t1) * 1e3)
        hosts_touched.append(len(hosts))
        mods.append(sum(len(p.add) + len(p.delete) for p in plans.values()))
        model, index = new_model, new_index
    print(f"port create + bind: median {statistics.median(change_ms):8.2f} ms per change "
          f"(p90 {sorted(change_ms)[int(len(change_ms) * 0.9)]:.2f}, max {max(change_ms):.2f}; "
          f"{args.changes} changes): index update + affected_hosts + recompile + plan; "
          f"median {statistics.median(hosts_touched):.0f} hosts, "
          f"{statistics.median(mods):.0f} flow-mods")
    print(f"  (building the new model snapshot itself: median {statistics.median(model_ms):.2f} ms)")

    if compile_all(CompilerIndex(model)) != flows:
        raise SystemExit("incremental flows differ from a full compile")
    print("incremental result == full compile of the final model: yes")


if __name__ == "__main__":
    main()
