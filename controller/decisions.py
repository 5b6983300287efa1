"""weftd's decision endpoints: least-privilege groups and placement from the collectors' flows.

Reads the collectors directly (`CollectorService.flows()`), the store's model and the engine's
bindings, hands them to the pure `decisions` modules, and for `apply` writes through the store
(groups: one transaction) or the engine (placement: one `port migrate` per move). Every input is
checked before anything changes.
"""
from __future__ import annotations

from decisions import placement, sgsuggest
from topology import validate
from topology.errors import NotFound, WeftError

SG_SINCE, PLACEMENT_SINCE = "24h", "1h"
DEFAULT_MAX_MOVES = 10


class Decisions:
    def __init__(self, api):
        self.api = api

    def routes(self) -> list:
        return [("GET", r"/v1/suggestions/security-groups", self.sg_suggest),
                ("POST", r"/v1/suggestions/security-groups/apply", self.sg_apply),
                ("GET", r"/v1/suggestions/placement", self.placement_suggest),
                ("POST", r"/v1/suggestions/placement/apply", self.placement_apply)]

    # ---- inputs -----------------------------------------------------------------------------
    @staticmethod
    def _one(query: dict, body: dict, name: str, default=None):
        """A parameter from the JSON body (POST) or the query string (GET)."""
        if name in body:
            return body[name]
        return query.get(name, [default])[0]

    def _tenant(self, query, body, required: bool) -> str | None:
        tenant = self._one(query, body, "tenant")
        if tenant in (None, ""):
            if required:
                raise WeftError("missing tenant (e.g. tenant=red)")
            return None
        if not isinstance(tenant, str) or tenant not in self.api.model.tenants:
            raise NotFound(f"no tenant named {tenant!r}")
        return tenant

    def _since(self, query, body, default: str) -> float:
        since = self._one(query, body, "since", default)
        if not isinstance(since, str):
            raise WeftError(f"invalid --since {since!r}: expected e.g. 30s, 5m, 2h")
        return self.api._since({"since": [since]})

    def _count(self, query, body, name: str, flag: str, default):
        value = self._one(query, body, name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, str) and value.isascii() and value.isdigit())):
            raise WeftError(f"invalid {flag} {value!r}: expected a whole number of at least 1")
        value = int(value)
        if not 1 <= value <= 1_000_000:
            raise WeftError(f"invalid {flag} {value}: expected a whole number from 1 to 1000000")
        return value

    def _source(self, query, body):
        source = self._one(query, body, "source", "sflow")
        return self.api._collectors().service(source), source

    def _flag(self, query, body, name: str) -> bool:
        value = self._one(query, body, name, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
            return value.lower() in ("1", "true", "yes")
        raise WeftError(f"invalid {name} {value!r}: expected true or false")

    # ---- least-privilege security groups ------------------------------------------------------
    def _suggestion(self, query, body) -> dict:
        tenant = self._tenant(query, body, required=True)
        prefix = self._one(query, body, "prefix", "suggested")
        validate.name("group name prefix", prefix)
        since = self._since(query, body, SG_SINCE)
        service, source = self._source(query, body)
        rows = service.flows(since, tenant)
        out = sgsuggest.suggest(rows, self.api.model, tenant, prefix)
        out.update({"since": since, "source": source, "prefix": prefix})
        return out

    def sg_suggest(self, query, body):
        """GET ?tenant=T[&since=24h][&prefix=P][&source=sflow]: the suggestion (nothing changes)."""
        return self._suggestion(query, body)

    def sg_apply(self, query, body):
        """POST {tenant, prefix, assign?, since?, source?}: create the suggested groups and their
        rules (and, with assign, make each observed port a member of its group only) in one
        transaction."""
        unknown = sorted(set(body) - {"tenant", "prefix", "assign", "since", "source"})
        if unknown:
            raise WeftError(f"unknown field(s): {', '.join(unknown)} (apply takes tenant, prefix, "
                            f"assign, since, source)")
        if not body.get("prefix"):
            raise WeftError("missing prefix: the suggested groups are named PREFIX-ROLE (--apply PREFIX)")
        assign = self._flag(query, body, "assign")
        s = self._suggestion(query, body)
        if not s["groups"]:
            raise WeftError(f"no traffic of tenant {s['tenant']} observed in the window: no group to "
                            f"create (send traffic, or widen --since)")
        model = self.api.model
        members, skipped = {}, []
        if assign:
            for g in s["groups"]:
                for ref in g["members"]:
                    port = model.port_by_ref(*ref.split("/"))
                    if port is not None and port.port_security:
                        members[ref] = [g["name"]]
                    else:
                        skipped.append(ref)
        groups = [{"name": g["name"], "rules": [{k: r[k] for k in validate.RULE_FIELDS} for r in g["rules"]]}
                  for g in s["groups"]]
        done = self.api.store.create_groups(s["tenant"], groups, members)
        return {**done, "not_assigned": skipped, "suggestion": s}

    # ---- placement ----------------------------------------------------------------------------
    def _plan(self, query, body) -> dict:
        tenant = self._tenant(query, body, required=False)
        since = self._since(query, body, PLACEMENT_SINCE)
        max_moves = self._count(query, body, "max_moves", "--max-moves", DEFAULT_MAX_MOVES)
        capacity = self._count(query, body, "max_ports_per_host", "--max-ports-per-host", None)
        service, source = self._source(query, body)
        model = self.api.model
        bindings = self.api._bindings()
        host_of = {}
        for uuid, b in bindings.items():
            port = model.ports.get(uuid)
            if port is not None:
                host_of[port.ref] = b.host
        loads: dict[str, int] = {}
        for h in host_of.values():
            loads[h] = loads.get(h, 0) + 1
        if capacity is None:
            capacity = max(loads.values(), default=1)
        movable = None
        if tenant is not None:
            movable = [r for r in host_of if r.split("/", 1)[0] == tenant]
        rows = service.flows(since, tenant)
        pairs = placement.pair_bytes(rows, host_of)
        out = placement.plan(pairs, host_of, capacity, max_moves, movable, hosts=model.hosts)
        for m in out["moves"]:
            m["port"] = m.pop("vm")
        out.update({"tenant": tenant, "since": since, "source": source, "max_moves": max_moves,
                    "max_ports_per_host": capacity,
                    "objective": "bytes between VMs on different hosts over the window"})
        return out

    def placement_suggest(self, query, body):
        """GET [?tenant=T][&since=1h][&max_moves=N][&max_ports_per_host=K][&source=sflow]."""
        return self._plan(query, body)

    def placement_apply(self, query, body):
        """POST {max_moves, tenant?, since?, max_ports_per_host?, source?}: request each move as a
        live migration (`port migrate`: the destination is programmed ahead; the platform then
        moves the VM). A failure stops there and says which moves were requested."""
        unknown = sorted(set(body) - {"tenant", "since", "max_moves", "max_ports_per_host", "source"})
        if unknown:
            raise WeftError(f"unknown field(s): {', '.join(unknown)} (apply takes max_moves, tenant, "
                            f"since, max_ports_per_host, source)")
        if "max_moves" not in body:
            raise WeftError("missing max_moves (--max-moves N): how many migrations at most")
        plan = self._plan(query, body)
        model = self.api.model
        requested = []
        for m in plan["moves"]:
            port = model.port_by_ref(*m["port"].split("/"))
            try:
                if port is None:
                    raise NotFound(f"no port {m['port']}")
                view = self.api.engine.migrate(port.uuid, m["to"])
            except WeftError as exc:
                return {"plan": plan, "requested": requested,
                        "error": f"stopped at {m['port']} -> {m['to']}: {exc}"}
            requested.append({"port": m["port"], "to": m["to"], "migration": view})
        return {"plan": plan, "requested": requested, "error": None}
