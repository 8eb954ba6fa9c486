"""KMS as one question, asked wherever AWS asks it: may this principal use this key for these
operations, by the key's policy, its grants and the principal's own policies?

AWS's rules (KMS Developer Guide, "Determining access to a KMS key", "Allowing users in other
accounts to use a KMS key", "Grants in AWS KMS"):

- The key must be Enabled (a disabled key or one pending deletion refuses every use).
- A grant whose grantee principal is the caller (a role session is named by its role) and whose
  operations include the operation allows it, alone.
- The key policy: a statement naming the principal itself (its role ARN, or `"*"`) allows it
  alone in the key's account. A statement naming its account (`<id>` or `arn:...:root`) delegates
  to that account's IAM: the principal's identity policies must allow it too. For a principal of
  another account both sides must allow, whatever the statement names. A Deny in either applies.

Asked by: every KMS request of a role session (authorization.py); an Auto Scaling launch from an
AMI whose snapshot is encrypted, for the account's Auto Scaling service-linked role, whose AWS
managed policy (AutoScalingServiceRolePolicy) grants no KMS action, so only a grant or a key
policy naming it lets it (Auto Scaling User Guide, "Required AWS KMS key policy for use with
encrypted volumes"); a root volume replacement from such an AMI, for the caller, through EC2
(`kms:ViaService`, `kms:GrantIsForAWSResource` set as EC2 sets them).
"""

import json
from dataclasses import dataclass, field

from moto.iam.models import iam_backends

from . import copies, state
from .policy import Request, Resource, decide

PARTITION = "aws"
# What a principal needs on a key to create an EBS volume from a snapshot encrypted under it (EBS
# User Guide, "Permissions for IAM users": CreateGrant, Decrypt, DescribeKey,
# GenerateDataKeyWithoutPlaintext, ReEncrypt*).
VOLUME_OPERATIONS = ("CreateGrant", "Decrypt", "DescribeKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
                     "ReEncryptTo")
# kms:GrantIsForAWSResource is set on these only (KMS Developer Guide, condition keys).
GRANT_MANAGEMENT = ("CreateGrant", "ListGrants", "RevokeGrant")
AUTOSCALING_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


@dataclass
class Principal:
    """Who uses the key: the ARN grants and key policies name (a session's role), its account, and
    its identity policies (None: not checked, the account's administrator)."""

    arn: str
    account: str
    identity: list | None = field(default=None)
    shown: str = ""  # how a refusal names it (a session's ARN); default: `arn`


def autoscaling_role(account: str) -> Principal:
    return Principal(f"arn:{PARTITION}:iam::{account}:{AUTOSCALING_ROLE}", account, [])


def find(key_ref: str, account: str, region: str):
    """The key a key id, key ARN or alias names, seen from `account` in `region` (None: unknown).
    A key ARN names its own region."""
    if key_ref.startswith("arn:"):
        parts = key_ref.split(":", 5)
        if len(parts) == 6:
            region = parts[3]
    return copies.find_key(account, region, key_ref)


def _names(statement: dict) -> list:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if not isinstance(principal, dict):
        return []
    named = principal.get("AWS", [])
    return [named] if isinstance(named, str) else list(named)


def _policy(key) -> dict:
    document = key.policy
    return json.loads(document) if isinstance(document, str) else (document or {})


def _key_policy(key, principal: Principal, request: Request) -> tuple[bool, bool, bool]:
    """(denied, allowed naming the principal, allowed naming its account) by the key policy."""
    statements = _policy(key).get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    itself = {"*", principal.arn}
    account = {principal.account, f"arn:{PARTITION}:iam::{principal.account}:root"}
    direct = [s for s in statements if itself & set(_names(s))]
    delegated = [s for s in statements if account & set(_names(s))]
    denies = [s for s in direct + delegated if s.get("Effect") == "Deny"]
    if decide([{"Statement": denies}], request).explicit:
        return True, False, False

    def allows(chosen: list) -> bool:
        return decide([{"Statement": [s for s in chosen if s.get("Effect") == "Allow"]}], request).allowed

    return False, allows(direct), allows(delegated)


def _granted(key, principal: Principal, operation: str) -> bool:
    return any(g.grantee_principal == principal.arn and operation in (g.operations or []) for g in key.grants.values())


def state_refusal(key) -> str | None:
    """Why `key` can be used for nothing, or None (KMS Developer Guide, "Key states")."""
    if key.key_state == "Enabled":
        return None
    return f"{key.arn} is {'pending deletion' if key.key_state == 'PendingDeletion' else 'disabled'}."


def _aws_managed_allows(key, principal: Principal, request: Request) -> bool:
    """An AWS managed key (aws/ebs) has a policy AWS writes: every principal of the key's account
    may use it through the service it is for (KMS Developer Guide, "AWS managed keys"; moto gives
    it a root-only default policy instead)."""
    context = request.context
    via = str(context.get("kms:viaservice", ""))
    return principal.account == key.arn.split(":")[4] and (not via or via.startswith("ec2."))


def refusal(principal: Principal, key, operations, context: dict | None = None) -> str | None:
    """Why `principal` may not perform each of `operations` ("Decrypt", ...) on `key` by the
    policies and grants, or None. The key's state is state_refusal's. An explicit Deny, in the key
    policy or the principal's own policies, wins over every Allow and every grant."""
    key_account = key.arn.split(":")[4]
    shown = principal.shown or principal.arn
    for operation in operations:
        keys = {k: v for k, v in (context or {}).items()
                if k != "kms:grantisforawsresource" or operation in GRANT_MANAGEMENT}
        request = Request(f"kms:{operation}", [Resource(key.arn)],
                          {"aws:principalarn": principal.arn, "aws:principalaccount": principal.account,
                           "aws:securetransport": "true", **keys})
        denied, direct, delegated = _key_policy(key, principal, request)
        own = decide(principal.identity, request) if principal.identity is not None else None
        if denied or (own is not None and own.explicit):
            side = "resource-based" if denied else "identity-based"
            return (f"User: {shown} is not authorized to perform: kms:{operation} on resource: {key.arn} "
                    f"with an explicit deny in a {side} policy")
        if _granted(key, principal, operation) or (copies.aws_managed(key.arn)
                                                   and _aws_managed_allows(key, principal, request)):
            continue
        identity = own is None or own.allowed
        same_account = principal.account == key_account
        if (same_account and direct) or ((direct or delegated) and identity):
            continue
        side = "resource-based" if identity else "identity-based"
        return (f"User: {shown} is not authorized to perform: kms:{operation} on resource: {key.arn} "
                f"because no {side} policy allows the kms:{operation} action")
    return None


def principal_exists(arn: str) -> bool:
    """Whether a principal ARN names something that exists: an account root, a role or user of
    moto's IAM, or an account's Auto Scaling service-linked role, which AWS makes the first time the
    account uses Auto Scaling (here: once the account made a group, in any region, or made the role).
    An ARN that is not IAM's is left to the caller (True)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam":
        return True  # not a principal ARN this model knows: left to the caller
    account, resource = parts[4], parts[5]
    if resource == "root":
        return True
    iam = dict.get(dict.get(iam_backends, account) or {}, PARTITION)
    in_iam = iam is not None and (any(r.arn == arn for r in iam.roles.values())
                                  or any(u.arn == arn for u in iam.users.values()))
    return in_iam or (resource == AUTOSCALING_ROLE and account in state.sim().autoscaling_accounts)


def snapshot_key(image):
    """The key the image's root snapshot is encrypted with (None: not encrypted, or unknown)."""
    snapshot = getattr(image, "ebs_snapshot", None)
    if snapshot is None or not snapshot.encrypted or not snapshot.kms_key_id:
        return None
    backend = image.ec2_backend
    return find(snapshot.kms_key_id, backend.account_id, backend.region_name)


def volume_refusal(principal: Principal, image, region: str) -> str | None:
    """Why EC2 cannot build a volume from `image`'s encrypted snapshot for `principal` (None: it
    can, or the snapshot is not encrypted with a key of this model)."""
    key = snapshot_key(image) if image is not None else None
    if key is None:
        return None
    context = {"kms:viaservice": f"ec2.{region}.amazonaws.com", "kms:grantisforawsresource": "true",
               "kms:calleraccount": principal.account}
    return state_refusal(key) or refusal(principal, key, VOLUME_OPERATIONS, context)
