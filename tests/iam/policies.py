"""Reading the SAM template's policies statically: CloudFormation values as symbolic strings, and
whether a resource policy lets a service principal do an action in a given request context.

Values are compared symbolically: `!Ref X` is `${X}`, `!GetAtt X.Arn` is `${X.Arn}`, `!Sub` keeps
its text, so `!Sub arn:${AWS::Partition}:...:alarm:${AWS::StackName}-*` matches an alarm whose
ARN is built from `AlarmName: !Sub ${AWS::StackName}-executions-failed`. What the checker cannot
evaluate (an unknown condition operator, a value it cannot render) never counts as allowed.
"""

import fnmatch
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra/aws/template.yaml"
ACCOUNT = "${AWS::AccountId}"


def load(path: Path = TEMPLATE) -> dict:
    template, matches = decode(str(path))
    assert not matches, matches
    return template


def listed(value) -> list:
    return value if isinstance(value, list) else [value]


def symbolic(value) -> str | None:
    """A CloudFormation value as text with ${...} references, or None."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"${{{arg}}}"
        if fn == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return f"${{{parts[0]}.{parts[1]}}}"
        if fn == "Fn::Sub":
            if isinstance(arg, str):
                return str(arg)
            text, variables = arg
            for name, var in variables.items():
                rendered = symbolic(var)
                if rendered is None:
                    return None
                text = text.replace(f"${{{name}}}", rendered)
            return str(text)
    return None


def principal_matches(statement: dict, service: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return service in listed(principal.get("Service", [])) or "*" in listed(principal.get("AWS", []))
    return False


def action_matches(statement: dict, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in listed(statement.get("Action", [])))


OPERATORS = {
    "StringEquals": lambda actual, expected: actual == expected,
    "ArnEquals": lambda actual, expected: actual == expected,
    "StringLike": fnmatch.fnmatchcase,
    "ArnLike": fnmatch.fnmatchcase,
    "Bool": lambda actual, expected: actual.lower() == expected.lower(),
}


def condition_holds(condition: dict, context: dict[str, set[str]]) -> bool | None:
    """Whether a Condition block holds for a request whose condition keys are `context` (key ->
    the forms its value may take); None when the checker cannot tell."""
    context = {key.lower(): values for key, values in context.items()}
    holds = True
    for operator, tests in condition.items():
        base, if_exists = operator.removesuffix("IfExists"), operator.endswith("IfExists")
        if base not in OPERATORS and base != "Null":
            return None
        for key, expected in tests.items():
            expected = [symbolic(e) for e in listed(expected)]
            if None in expected:
                return None
            actual = context.get(key.lower())
            if base == "Null":
                ok = (actual is None) == (expected[0].lower() == "true")
            elif actual is None:
                ok = if_exists
            else:
                ok = any(OPERATORS[base](a, e) for a in actual for e in expected)
            holds = holds and ok
    return holds


def admits(policy: dict, service: str, action: str, context: dict[str, set[str]]) -> bool:
    """An Allow statement for `service` and `action` whose conditions hold, and no Deny that may
    apply."""
    allowed = False
    for statement in listed(policy.get("Statement", [])):
        if not (principal_matches(statement, service) and action_matches(statement, action)):
            continue
        holds = condition_holds(statement.get("Condition", {}), context)
        if statement["Effect"] == "Deny" and holds is not False:
            return False
        if statement["Effect"] == "Allow" and holds is True:
            allowed = True
    return allowed
