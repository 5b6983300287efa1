"""POST /v1/security-groups/T/SG/what-if: the collectors' observed traffic replayed against the group
as a change would leave it (flows/whatif.py); nothing is written."""
from __future__ import annotations

import time

from flows.whatif import changed_model, replay
from topology import validate
from topology.errors import Conflict, NotFound, WeftError
from topology.model import Rule

FIELDS = ("delete_rules", "add_rules", "since", "source")
DEFAULT_SINCE = "1h"


def _strings(value, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WeftError(f"invalid {what}: expected a list of rule ids")
    return value


def proposed_rules(group, model, bodies) -> list[Rule]:
    """The rules to add, checked as `sg rule add` checks them (nothing is allocated)."""
    if bodies is None:
        return []
    if not isinstance(bodies, list) or not all(isinstance(b, dict) for b in bodies):
        raise WeftError("invalid add_rules: expected a list of rules (objects with direction, proto, ...)")
    from controller.api import Api
    rules, seen = [], {validate.rule_identity(r) for r in group.rules}
    for i, body in enumerate(bodies):
        unknown = sorted(set(body) - set(Api.RULE_FIELDS))
        if unknown:
            raise WeftError(f"unknown field(s) in add_rules: {', '.join(unknown)} (a rule takes "
                            f"{', '.join(Api.RULE_FIELDS)})")
        if not body.get("direction"):
            raise WeftError("a rule of add_rules has no direction (ingress or egress)")
        fields = {k: body[k] for k in Api.RULE_FIELDS if body.get(k) is not None}
        if fields.get("remote_sg") is not None:
            fields["remote_sg"] = validate.group_name(fields["remote_sg"], group.tenant,
                                                      f"a rule of {group.ref}")
        fields = validate.sg_rule(**fields)
        remote = fields["remote_sg"]
        if remote is not None and remote != group.name and model.security_group(group.tenant, remote) is None:
            raise NotFound(f"no security group {group.tenant}/{remote}")
        identity = validate.rule_identity(fields)
        if identity in seen:
            raise Conflict(f"security group {group.ref} already has this rule")
        seen.add(identity)
        rules.append(Rule(uuid=f"new-{i + 1}", key=0, **fields))
    return rules


def what_if(api, tenant: str, name: str, body: dict) -> dict:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise WeftError(f"unknown field(s): {', '.join(unknown)} (a what-if takes {', '.join(FIELDS)})")
    model = api.model
    group = api._sg(tenant, name)
    deletes = _strings(body.get("delete_rules"), "delete_rules")
    ids = {r.uuid for r in group.rules}
    for rule_id in deletes:
        if rule_id not in ids:
            raise NotFound(f"security group {group.ref} has no rule {rule_id}")
    adds = proposed_rules(group, model, body.get("add_rules"))
    if not deletes and not adds:
        raise WeftError("nothing to try: give delete_rules and/or add_rules")
    since_text = body.get("since") or DEFAULT_SINCE
    source = body.get("source") or "sflow"
    if not isinstance(since_text, str) or not isinstance(source, str):
        raise WeftError("since and source are strings (e.g. \"1h\", \"sflow\")")
    since = api._since({"since": [since_text]})
    rows = api._collectors().service(source).flows(since, tenant)
    after = changed_model(model, group, deletes, adds)
    result = replay(rows, model, after, group)
    return {"security_group": group.ref, "since": since_text, "source": source,
            "window_start": since, "evaluated_at": time.time(),
            "delete_rules": deletes, "add_rules": [api._rule_view(r) for r in adds], **result}
