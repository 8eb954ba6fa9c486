"""STS AssumeRole as AWS decides it, so that a rollout run from a central account reaches workload
accounts only through a role they trust.

moto 5.2.5 lets any role ARN be assumed: the role need not exist and its trust policy is never
read. Here AssumeRole (awsQuery, HTTP 403 `AccessDenied`, message `User: <caller arn> is not
authorized to perform: sts:AssumeRole on resource: <role arn>`) is refused unless:

- the role exists in the target account's IAM (moto's `iam_backends[account]["aws"]`);
- its trust policy (AssumeRolePolicyDocument) has an Allow statement whose Action matches
  `sts:AssumeRole` (string or list, `*`/`?` wildcards, or a NotAction that leaves it out), whose
  Principal matches the caller (`"*"`, `{"AWS": ...}` naming the caller's account id, its
  `arn:aws:iam::<account>:root`, the caller's ARN, or for an assumed-role session the role's ARN)
  and whose conditions hold; and no Deny statement matches the same way;
- with session `Tags` or `TransitiveTagKeys`, `sts:TagSession` is allowed the same way (AWS
  authorises it as an action of its own: the refusal then names `sts:TagSession`).

Conditions are evaluated as in identity policies (policy.py): `sts:ExternalId` (a missing one fails
StringEquals/StringLike as on AWS), `aws:PrincipalArn` (the caller's role for a session),
`aws:PrincipalAccount`; a key or operator the local AWS does not model fails closed. The caller's
own identity policies are checked by authorization.py (`sts:AssumeRole`, `sts:TagSession`); SCPs,
permission boundaries and session policies are not evaluated. A `{"Service": ...}` principal
matches the local Lambda assuming a function's execution role (SERVICE_HEADER).

Validation as AWS: RoleSessionName must match `[\\w+=,.@-]{2,64}`, ExternalId `[\\w+=,.@:/-]{2,1224}`,
DurationSeconds must not exceed the role's MaxSessionDuration (ValidationError, 400).

The caller is who moto says the request's access key is: the default key ("testing", or any key
moto did not issue) is `arn:aws:sts::123456789012:user/moto` in account 123456789012; ASIA keys from
an earlier AssumeRole are that session (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).

Seeding acts in an account before any role exists with moto's own `x-moto-account-id` request
header (seed.py), which selects the account for that request whatever its credentials. Nothing but
the seed should send it; it is not an AWS feature.
"""

import json
import re
import warnings
from urllib.parse import unquote

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.sts.exceptions import STSValidationError
from moto.sts.responses import TokenResponse

from .policy import Request, Resource, decide

SESSION_NAME = re.compile(r"[\w+=,.@-]*")
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]*")
ROLE_ARN = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(.+)")
# Sent only by the local AWS's own Lambda (stepfunctions.py) when it assumes a function's
# execution role, as the Lambda service does on AWS; not an AWS header.
SERVICE_HEADER = "x-localaws-service-principal"


class AccessDenied(ServiceException):
    code = "AccessDenied"

    def __init__(self, caller_arn: str, action: str, role_arn: str):
        super().__init__("AccessDenied",
                         f"User: {caller_arn} is not authorized to perform: {action} on resource: {role_arn}")


# --- policy evaluation -----------------------------------------------------------------------

def _listed(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principal_matches(statement: dict, caller: dict) -> bool:
    principal = statement.get("Principal")
    if principal is None:
        return False  # NotPrincipal is not evaluated (AWS discourages it in trust policies)
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    if caller.get("service"):
        return caller["service"] in _listed(principal.get("Service"))
    for named in _listed(principal.get("AWS")):
        if named == "*" or named in caller["principals"]:
            return True
    return False


def _statements(document) -> list:
    if isinstance(document, str):
        text = document
        try:
            document = json.loads(text)
        except ValueError:
            document = json.loads(unquote(text))
    return [s for s in _listed((document or {}).get("Statement")) if isinstance(s, dict)]


def allowed(document, action: str, caller: dict, context: dict) -> bool:
    """Whether the trust policy `document` lets `caller` perform `action` on the role: the
    statements naming the caller, evaluated as identity policies are (policy.py)."""
    statements = [s for s in _statements(document) if _principal_matches(s, caller)]
    context = {"aws:principalarn": caller.get("role") or caller["arn"], "aws:principalaccount": caller.get("account"),
               **context}
    return decide([{"Statement": statements}], Request(action, [Resource("*")], context)).allowed


# --- AssumeRole --------------------------------------------------------------------------------

def _caller(response: TokenResponse) -> dict:
    """The caller as moto resolves the request's credentials: its ARN and the principal names a
    trust policy may use for it. The local AWS's Lambda assumes a function's execution role as
    the Lambda service (SERVICE_HEADER)."""
    service = response.headers.get(SERVICE_HEADER)
    if service:
        return {"arn": service, "service": service, "principals": set()}
    user_id, arn, account = response.backend.get_caller_identity(response.get_access_key(), response.region)
    partition = response.partition
    principals = {account, f"arn:{partition}:iam::{account}:root", arn}
    session = response.backend.get_assumed_role_from_access_key(response.get_access_key())
    if session is not None:
        principals.add(session.role_arn)  # a trust policy names the role, not its sessions
    return {"arn": arn, "account": account, "principals": principals,
            "role": session.role_arn if session is not None else None}


def _check(field: str, value, low: int, high: int, pattern, shown: str) -> None:
    """AWS's ValidationError for a parameter outside its length bounds or pattern."""
    if value is None:
        return
    prefix = f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
    if len(value) < low or len(value) > high:
        bound = f"greater than or equal to {low}" if len(value) < low else f"less than or equal to {high}"
        raise STSValidationError(f"{prefix}Member must have length {bound}")
    if not pattern.fullmatch(value):
        raise STSValidationError(f"{prefix}Member must satisfy regular expression pattern: {shown}")


def _validate(response: TokenResponse) -> None:
    _check("roleSessionName", response._get_param("RoleSessionName"), 2, 64, SESSION_NAME, r"[\w+=,.@-]*")
    _check("externalId", response._get_param("ExternalId"), 2, 1224, EXTERNAL_ID, r"[\w+=,.@:\/-]*")


def refusal(response: TokenResponse) -> ServiceException | None:
    """Why AWS refuses this AssumeRole call, or None if it is allowed."""
    _validate(response)
    role_arn = response._get_param("RoleArn") or ""
    caller = _caller(response)
    match = ROLE_ARN.fullmatch(role_arn)
    if not match:
        return AccessDenied(caller["arn"], "sts:AssumeRole", role_arn)
    partition, account, _ = match.groups()
    backend = iam_backends[account][partition]
    role = next((r for r in backend.roles.values() if r.arn == role_arn), None)
    if role is None:
        return AccessDenied(caller["arn"], "sts:AssumeRole", role_arn)
    context = {"sts:externalid": response._get_param("ExternalId")}
    if not allowed(role.assume_role_policy_document, "sts:AssumeRole", caller, context):
        return AccessDenied(caller["arn"], "sts:AssumeRole", role_arn)
    if (response._get_param("Tags") or response._get_param("TransitiveTagKeys")) and \
            not allowed(role.assume_role_policy_document, "sts:TagSession", caller, context):
        return AccessDenied(caller["arn"], "sts:TagSession", role_arn)
    duration = response._get_int_param("DurationSeconds", 3600)
    maximum = int(role.max_session_duration or 3600)
    if duration > maximum:
        raise STSValidationError(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    return None


_original_assume_role = TokenResponse.assume_role


def assume_role(self: TokenResponse):
    error = refusal(self)
    if error is not None:
        # moto serialises a ServiceException with the model's status (400 for shapes STS does not
        # model); AWS answers AccessDenied with 403.
        with warnings.catch_warnings():  # "AccessDenied does not match an error shape" (STS models none)
            warnings.simplefilter("ignore")
            _, headers, body = self.serialized(ActionResult(error))
        headers["status"] = 403
        return body, headers
    return _original_assume_role(self)


def install() -> None:
    TokenResponse.assume_role = assume_role
