"""KMS grants as AWS keeps them: the bookkeeping a rollout does when it lets each workload
account's Auto Scaling service-linked role use the key its AMI copies are encrypted with.

moto 5.2.5 serves KMS, but its CreateGrant creates a new grant for every retry even with a Name,
crashes (HTTP 500) on a key that does not exist, takes no key of another account, accepts any
Operations; ListGrants ignores GranteePrincipal and Limit, and lists the key's bare id with no
IssuingAccount or CreationDate. Here (awsJson1_1):

- CreateGrant with a Name: a retry with the same name and the same parameters returns the
  original GrantId (and a new GrantToken that retires it too), as AWS documents; without a Name
  every call makes a new grant. GranteePrincipal may be any principal ARN, another account's
  (e.g. `arn:aws:iam::<workload>:role/aws-service-role/autoscaling.amazonaws.com/
  AWSServiceRoleForAutoScaling`); one that does not exist is InvalidArnException (keys.principal_exists:
  an account's Auto Scaling service-linked role exists once the account has a group).
- Operations outside the GrantOperation enum: ValidationException ("1 validation error detected:
  ..." as AWS words constraint failures); for a symmetric encryption key, Sign / Verify /
  GetPublicKey / GenerateMac / VerifyMac / DeriveSharedSecret: ValidationException (AWS documents
  the code; the message is ours).
- The key of a grant operation (CreateGrant, ListGrants, RevokeGrant, RetireGrant): key id or key
  ARN, as AWS documents; an alias name or ARN: InvalidArnException "Key Aliases are not supported
  for this operation." (what AWS answers a CreateGrant by alias). A key ARN of another account
  (same region) reaches that account's key ("Cross-account use: Yes" for CreateGrant, ListGrants,
  RevokeGrant, RetireGrant, DescribeKey); unknown: NotFoundException "Key '<arn>' does not exist";
  disabled: DisabledException "<arn> is disabled."; pending deletion: KMSInvalidStateException
  "<arn> is pending deletion." (the KMS key-state table).
- CreateKey without KeyUsage: ENCRYPT_DECRYPT, AWS's default (moto leaves it null).
- ListGrants: KeyId is the key ARN; IssuingAccount (`arn:aws:iam::<creating account>:root`),
  CreationDate; filters GrantId and GranteePrincipal; pages with Limit (1-100, default 50) and
  Marker/NextMarker.

Grants and key policies are evaluated by keys.py, wherever AWS asks: the KMS requests of a role
session that authorization.py has a row for (DescribeKey and the grant operations), Auto Scaling
launches and root volume replacements.
"""

import contextlib
import json
import time

from moto.core.exceptions import JsonRESTError
from moto.kms.exceptions import NotFoundException, ValidationException
from moto.kms.models import Grant, Key, KmsBackend, kms_backends
from moto.kms.responses import KmsResponse
from moto.moto_api._internal import mock_random
from moto.utilities.utils import get_partition

from . import keys

GRANT_OPERATIONS = (
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
    "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
)
NOT_FOR_SYMMETRIC = {"Sign", "Verify", "GetPublicKey", "GenerateMac", "VerifyMac", "DeriveSharedSecret"}


class KmsError(JsonRESTError):
    code = 400

    def __init__(self, kind: str, message: str):
        super().__init__(kind, message)


# --- the key's account -----------------------------------------------------------------------

def _kms_backend(self: KmsResponse):
    return getattr(self, "_localaws_kms", None) or kms_backends[self.current_account][self.region]


@contextlib.contextmanager
def _key_owner(self: KmsResponse, key_id: str | None):
    """Serve the request from the account a key ARN names (same region), as AWS does for
    operations with cross-account use."""
    target = None
    if key_id and key_id.startswith("arn:"):
        parts = key_id.split(":", 5)
        if len(parts) == 6 and parts[2] == "kms":
            region, account = parts[3], parts[4]
            if region != self.region:
                raise NotFoundException(f"Invalid arn {region}")
            if account != self.current_account:
                target = kms_backends[account][region]
    self._localaws_kms = target
    try:
        yield
    finally:
        self._localaws_kms = None


def _no_alias(key_id: str | None) -> None:
    if key_id and (key_id.startswith("alias/") or (key_id.startswith("arn:") and ":alias/" in key_id)):
        raise KmsError("InvalidArnException", "Key Aliases are not supported for this operation.")


def _usable_key(self: KmsResponse, key_id: str) -> Key:
    _no_alias(key_id)
    self._validate_key_id(key_id)  # NotFoundException, as AWS words it
    key = self.kms_backend.describe_key(key_id)
    if key.key_state == "Disabled":
        raise KmsError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state == "PendingDeletion":
        raise KmsError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
    return key


def _check_operations(key: Key, operations) -> list:
    operations = list(operations or [])
    invalid = [o for o in operations if o not in GRANT_OPERATIONS]
    if invalid:
        raise ValidationException(
            f"1 validation error detected: Value '[{', '.join(operations)}]' at 'operations' failed to satisfy "
            f"constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
            f"[{', '.join(GRANT_OPERATIONS)}]]")
    unsupported = [o for o in operations if o in NOT_FOR_SYMMETRIC]
    if unsupported and key.key_spec == "SYMMETRIC_DEFAULT":
        raise ValidationException(
            f"Grant operations {', '.join(unsupported)} are not supported by a symmetric encryption KMS key")
    return operations


# --- operations ------------------------------------------------------------------------------

def create_grant(self: KmsResponse) -> str:
    key_id = self._get_param("KeyId")
    grantee = self._get_param("GranteePrincipal")
    service_grantee = self._get_param("GranteeServicePrincipal")
    retiring = self._get_param("RetiringPrincipal")
    name = self._get_param("Name")
    constraints = self._get_param("Constraints")
    with _key_owner(self, key_id):
        key = _usable_key(self, key_id)
        operations = _check_operations(key, self._get_param("Operations"))
        if bool(grantee) == bool(service_grantee):
            raise ValidationException("You must specify either GranteePrincipal or GranteeServicePrincipal, "
                                      "but not both.")
        if grantee and not keys.principal_exists(grantee):
            # A principal that does not exist (yet) is refused (report: hashicorp/terraform-provider-aws
            # PR 3038, InvalidArnException for a role not yet made); the message is ours.
            raise KmsError("InvalidArnException", f"ARN does not refer to a valid principal: {grantee}")
        grantee = grantee or service_grantee
        for grant in key.grants.values():
            if name and grant.name == name and grant.grantee_principal == grantee \
                    and sorted(grant.operations or []) == sorted(operations) \
                    and (grant.constraints or None) == (constraints or None) \
                    and grant.retiring_principal == retiring:
                token = mock_random.get_random_hex()
                grant.localaws_tokens = getattr(grant, "localaws_tokens", {grant.token}) | {token}
                return json.dumps({"GrantId": grant.id, "GrantToken": token})
        grant = key.add_grant(name, grantee, operations, constraints=constraints, retiring_principal=retiring)
        grant.localaws_tokens = {grant.token}
        grant.localaws_key_arn = key.arn
        grant.localaws_issuer = f"arn:{get_partition(self.region)}:iam::{self.current_account}:root"
        grant.localaws_created = time.time()
        return json.dumps({"GrantId": grant.id, "GrantToken": grant.token})


def list_grants(self: KmsResponse) -> str:
    key_id = self._get_param("KeyId")
    grant_id = self._get_param("GrantId")
    grantee = self._get_param("GranteePrincipal")
    limit = self._get_param("Limit")
    marker = self._get_param("Marker")
    if limit is not None and not 1 <= int(limit) <= 100:
        raise ValidationException(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
                                  "constraint: Member must have value between 1 and 100")
    with _key_owner(self, key_id):
        _no_alias(key_id)
        self._validate_key_id(key_id)
        key = self.kms_backend.describe_key(key_id)
        grants = [g for g in key.list_grants(grant_id) if not grantee or g.grantee_principal == grantee]
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise KmsError("InvalidMarkerException", "The request was rejected because the marker that specifies "
                                                 "where pagination should next begin is not valid.")
    end = start + int(limit or 50)
    answer = {"Grants": [_grant_json(g, key) for g in grants[start:end]], "Truncated": end < len(grants)}
    if end < len(grants):
        answer["NextMarker"] = str(end)
    return json.dumps(answer)


def _grant_json(grant: Grant, key: Key) -> dict:
    entry = {
        "KeyId": getattr(grant, "localaws_key_arn", key.arn),
        "GrantId": grant.id,
        "Name": grant.name,
        "GranteePrincipal": grant.grantee_principal,
        "Operations": grant.operations,
    }
    if getattr(grant, "localaws_issuer", None):
        entry["IssuingAccount"] = grant.localaws_issuer
    if getattr(grant, "localaws_created", None):
        entry["CreationDate"] = grant.localaws_created
    if grant.retiring_principal:
        entry["RetiringPrincipal"] = grant.retiring_principal
    if grant.constraints:
        entry["Constraints"] = grant.constraints
    return entry


def _cross_account(original, aliases: bool):
    def handler(self: KmsResponse) -> str:
        key_id = self._get_param("KeyId")
        with _key_owner(self, key_id):
            if not aliases:
                _no_alias(key_id)
            if key_id:
                self._validate_key_id(key_id)
            return original(self)

    handler.__name__ = original.__name__
    return handler


_original_create_key = KmsBackend.create_key


def _create_key(self: KmsBackend, policy, key_usage, key_spec, description, tags, multi_region=False,
                origin="AWS_KMS"):
    """AWS's default KeyUsage is ENCRYPT_DECRYPT (moto leaves it null)."""
    return _original_create_key(self, policy, key_usage or "ENCRYPT_DECRYPT", key_spec, description, tags,
                                multi_region, origin)


def _retire_grant_by_token(self: Key, grant_token: str) -> None:
    self.grants = {_id: grant for _id, grant in self.grants.items()
                   if grant_token not in getattr(grant, "localaws_tokens", {grant.token})}


_originals = {}


def install() -> None:
    if not _originals:
        _originals.update(describe_key=KmsResponse.describe_key, revoke_grant=KmsResponse.revoke_grant,
                          retire_grant=KmsResponse.retire_grant)
    KmsResponse.kms_backend = property(_kms_backend)
    KmsResponse.create_grant = create_grant
    KmsResponse.list_grants = list_grants
    for name, original in _originals.items():
        setattr(KmsResponse, name, _cross_account(original, aliases=name == "describe_key"))
    Key.retire_grant_by_token = _retire_grant_by_token
    KmsBackend.create_key = _create_key
