"""IAM identity-policy evaluation as AWS documents it (IAM User Guide, "Policy evaluation logic"),
for one principal in one account: no SCPs, permission boundaries or session policies.

A request is an action on one or more resources, each with its tags, plus the request's own
condition keys. It is allowed when, for every resource, some Allow statement applies and no Deny
statement does. A statement applies when its Action/NotAction matches (case-insensitive
wildcards), its Resource/NotResource matches the resource's ARN (case-sensitive wildcards), and
every condition holds.

Condition keys and operators the local AWS does not model fail closed: the condition is taken as
holding in a Deny (the Deny applies) and as failing in an Allow (the Allow does not), and a line
says so in the log. Modelled keys: the global ones in GLOBAL_KEYS, every `<service>:ResourceTag/`
and `aws:ResourceTag/` key (from the resource's tags), `aws:RequestTag/`, and the service keys a
request names in its context (authorization.py builds it per operation); a key the request could
carry but does not (`ec2:CreateAction` outside a create) is absent, as on AWS.
"""

import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger("localaws.policy")

# The keys modelled: these global ones (set on every request), the tag keys (above), and the
# service keys a request of authorization.py's table sets where AWS sets them. Any other key, even
# one AWS would send, is not modelled and fails closed.
GLOBAL_KEYS = {"aws:principalarn", "aws:principalaccount", "aws:requestedregion", "aws:securetransport",
               "aws:tagkeys"}
# Keys whose presence depends on the request: absent unless the request context carries them.
SERVICE_KEYS = {"ec2:createaction", "ec2:launchtemplate", "ec2:islaunchtemplateresource", "ecs:cluster",
                "iam:passedtoservice", "cloudwatch:namespace", "sts:externalid", "kms:viaservice",
                "kms:grantisforawsresource", "kms:calleraccount"}
NEGATED = {"stringnotequals", "stringnotequalsignorecase", "stringnotlike", "arnnotequals", "arnnotlike",
           "numericnotequals"}


@dataclass(frozen=True)
class Resource:
    arn: str
    tags: dict = field(default_factory=dict)


@dataclass
class Request:
    """What is asked: `action` ("ec2:CreateTags") on `resources`, with the request's condition
    keys in `context` (lower-case names; a list for multivalued keys)."""

    action: str
    resources: list
    context: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    resource: str = ""  # the first resource refused
    explicit: bool = False  # refused by a Deny statement (else: no Allow)


def _statements(document) -> list:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _listed(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _wildcard(pattern: str, value: str, case_sensitive: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE | re.DOTALL) is not None


def _action_matches(statement: dict, action: str) -> bool:
    if "Action" in statement:
        return any(_wildcard(p, action, False) for p in _listed(statement["Action"]))
    return not any(_wildcard(p, action, False) for p in _listed(statement.get("NotAction")))


def _resource_matches(statement: dict, arn: str) -> bool:
    if "Resource" in statement:
        return any(_wildcard(p, arn, True) for p in _listed(statement["Resource"]))
    return not any(_wildcard(p, arn, True) for p in _listed(statement.get("NotResource")))


def _arn_like(value: str, pattern: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched on its own (IAM User Guide)."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(_wildcard(a, b, True) for a, b in zip(p, v))


OPERATORS = {
    "stringequals": lambda actual, expected: actual == expected,
    "stringnotequals": lambda actual, expected: actual == expected,
    "stringequalsignorecase": lambda actual, expected: actual.lower() == expected.lower(),
    "stringnotequalsignorecase": lambda actual, expected: actual.lower() == expected.lower(),
    "stringlike": lambda actual, expected: _wildcard(expected, actual, True),
    "stringnotlike": lambda actual, expected: _wildcard(expected, actual, True),
    "arnequals": _arn_like,
    "arnlike": _arn_like,
    "arnnotequals": _arn_like,
    "arnnotlike": _arn_like,
    "bool": lambda actual, expected: actual.lower() == expected.lower(),
}


def _value(key: str, request: Request, resource: Resource):
    """The key's value for this request and resource: a string, a list, None when absent, or
    NotImplemented when the local AWS does not model the key."""
    k = key.lower()
    for prefix in ("aws:resourcetag/", "ec2:resourcetag/", "autoscaling:resourcetag/", "ecs:resourcetag/",
                   "ssm:resourcetag/", "iam:resourcetag/", "kms:resourcetag/"):
        if k.startswith(prefix):
            wanted = key[len(prefix):]
            return next((v for t, v in resource.tags.items() if t == wanted), None)
    if k.startswith("aws:requesttag/"):
        return request.context.get("aws:requesttag", {}).get(key[len("aws:requesttag/"):])
    if k in request.context:
        return request.context[k]
    if k in GLOBAL_KEYS or k in SERVICE_KEYS:
        return None
    return NotImplemented


def _condition_holds(operator: str, key: str, expected, request: Request, resource: Resource,
                     effect: str) -> bool:
    actual = _value(key, request, resource)
    op = operator.lower()
    qualifier = ""
    if op.startswith(("forallvalues:", "foranyvalue:")):
        qualifier, op = op.split(":", 1)
    if_exists = op.endswith("ifexists")
    op = op.removesuffix("ifexists")
    if actual is NotImplemented or (op != "null" and op not in OPERATORS):
        log.warning("IAM: %s %s is not modelled by the local AWS; the %s statement's condition fails closed",
                    operator, key, effect)
        return effect == "Deny"
    expected = [str(e).lower() if isinstance(e, bool) else str(e) for e in _listed(expected)]
    if op == "null":
        absent = actual is None or actual == []
        return any(absent == (e.lower() == "true") for e in expected)
    values = actual if isinstance(actual, list) else [] if actual is None else [actual]
    negated = op in NEGATED
    match = OPERATORS[op]

    def one(value) -> bool:
        hit = any(match(str(value), e) for e in expected)
        return not hit if negated else hit

    if qualifier == "forallvalues":
        return all(one(v) for v in values)
    if qualifier == "foranyvalue":
        return any(one(v) for v in values)
    if not values:
        return if_exists or negated
    return any(one(v) for v in values)


def _applies(statement: dict, request: Request, resource: Resource) -> bool:
    if not _action_matches(statement, request.action) or not _resource_matches(statement, resource.arn):
        return False
    effect = statement.get("Effect")
    return all(_condition_holds(operator, key, expected, request, resource, effect)
               for operator, keys in (statement.get("Condition") or {}).items()
               for key, expected in keys.items())


def decide(documents: list, request: Request) -> Decision:
    """Whether the policy documents (dicts) allow `request`."""
    statements = [s for d in documents for s in _statements(d)]
    for resource in request.resources:
        if any(s.get("Effect") == "Deny" and _applies(s, request, resource) for s in statements):
            return Decision(False, resource.arn, explicit=True)
        if not any(s.get("Effect") == "Allow" and _applies(s, request, resource) for s in statements):
            return Decision(False, resource.arn)
    return Decision(True)

