"""CopyImage as AWS runs it, and the AMI rules a copy into another region runs into.

moto 5.2.5's CopyImage makes the copy `available` at once, ignores Encrypted, KmsKeyId,
CopyImageTags, TagSpecifications and ClientToken, copies only AMIs of the caller's own account,
and accepts any number of AMIs with the same name. Here (ec2 query protocol):

- CopyImage, called in the destination region, starts the copy `pending`; it becomes `available`
  `copy_seconds()` simulated seconds later (COPY_SECONDS, 10 minutes, unless set with
  `POST /_localaws/copy-time {"seconds"}`; the scaled clock, so `POST /_localaws/advance` ends
  it at once). While pending, DescribeImages says `pending` (and so does the `state` filter), the
  copy's snapshot is `pending`, and launches from it fail InvalidAMIID.Unavailable (images.refusal).
- The source: an AMI of the caller in SourceRegion, or one another account shares with it there
  (launch permission), as AWS allows; missing, deregistered or private to another account:
  InvalidAMIID.NotFound; not `available`: InvalidAMIID.Unavailable.
- CopyImageTags=true copies the source's user tags (not `aws:` ones, not the owner's tags of a
  shared AMI); TagSpecifications apply to the copy (`image`) and its snapshot (`snapshot`).
- Encryption, as AWS documents it: Encrypted=true encrypts the copy's snapshot with KmsKeyId, or
  without one with the account's default EBS key (`alias/aws/ebs` unless ModifyEbsDefaultKmsKeyId
  changed it); an encrypted source stays encrypted (its key in the same region, else the default
  key); EBS encryption by default encrypts too. KmsKeyId without Encrypted:
  InvalidParameterDependency; Encrypted=false of an encrypted source: InvalidRequest. AWS
  "authenticates the KMS key asynchronously": a key that does not exist in the destination region,
  is not enabled or is not a symmetric encryption key does not fail the call; the copy is
  accepted and ends `failed` (StateReason), KEY_CHECK_SECONDS after it started (or at its end).
  DescribeImages shows the snapshot's `Encrypted` (every EBS mapping) and, encrypted, `KmsKeyId`
  (the key ARN); so does DescribeSnapshots.
- ClientToken: the same token (account and region) answers the same image id; with other
  arguments, IdempotentParameterMismatch.
- CreateImage's TagSpecifications of ResourceType `snapshot` tag the image's snapshot (moto
  raises NotImplementedError for them).
- AMI names are unique per owner and region: CopyImage, CreateImage and RegisterImage of a name
  an AMI of the same owner has in that region (deregistered ones excepted) fail
  InvalidAMIName.Duplicate "AMI name <name> is already in use by AMI <id>".
- Sharing (ModifyImageAttribute launch permission) of an AMI whose snapshot is encrypted with the
  AWS managed key fails InvalidParameter, as on AWS: only customer managed keys can be shared.

Nothing here enforces KMS on launches: an account launches from an encrypted AMI whatever the
key's policy and grants say (see grants.py for the grant bookkeeping).
"""

import time

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, InvalidTaggableResourceType
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.utils import random_ami_id
from moto.kms.models import kms_backends

from . import images, state

COPY_SECONDS = 600.0  # simulated seconds a copy takes unless POST /_localaws/copy-time says otherwise
KEY_CHECK_SECONDS = 60.0  # when a copy with an unusable key fails (at the latest, at its end)
EBS_ALIAS = "alias/aws/ebs"
FAILED_REASON = {"Code": "Server.InternalError", "Message": "Copy image failed with an internal error"}


def copy_seconds() -> float:
    configured = state.sim().copy_seconds
    return COPY_SECONDS if configured is None else configured


class DuplicateName(EC2ClientError):
    def __init__(self, name: str, other: str):
        super().__init__("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other}")


class ImageUnavailable(EC2ClientError):
    def __init__(self, image_id: str, image_state: str):
        super().__init__("InvalidAMIID.Unavailable", f"AMI '{image_id}' is {image_state}, and cannot be copied")


class ParameterDependency(EC2ClientError):
    def __init__(self):
        super().__init__("InvalidParameterDependency",
                         "The parameter KmsKeyId requires the parameter Encrypted to be set.")


class UnencryptedCopy(EC2ClientError):
    def __init__(self, snapshot_id: str):
        super().__init__("InvalidRequest", f"Snapshot {snapshot_id} is encrypted. Creating unencrypted copy "
                                           "from an encrypted snapshot is not supported.")


class TokenMismatch(EC2ClientError):
    def __init__(self):
        super().__init__("IdempotentParameterMismatch",
                         "The request uses the same client token as a previous, but non-identical request. "
                         "Do not reuse a client token with different requests, unless the requests are identical.")


class ManagedKeyNotShareable(EC2ClientError):
    def __init__(self):
        super().__init__("InvalidParameter",
                         "Snapshots encrypted with the AWS Managed CMK can\u2019t be shared. Specify another snapshot.")


# --- AMI names -------------------------------------------------------------------------------

def name_holder(backend, name: str | None, owner: str) -> str | None:
    """The id of the AMI of `owner` in `backend`'s region named `name`, if any."""
    if not name:
        return None
    for ami in list(backend.amis.values()):
        if ami.name == name and ami.owner_id == owner:
            return ami.id
    return None


def _check_name(backend, name) -> None:
    other = name_holder(backend, name, backend.account_id)
    if other:
        raise DuplicateName(name, other)


_original_create_image = AmiBackend.create_image
_original_register_image = AmiBackend.register_image


def _create_image(self: AmiBackend, instance_id, name, description, tag_specifications):
    """CreateImage with the name rule, and TagSpecifications of `snapshot` too (moto refuses
    them): AWS tags the snapshots the image is made of."""
    _check_name(self, name)
    snapshot_tags = [t for spec in tag_specifications or [] if spec.get("ResourceType") == "snapshot"
                     for t in spec.get("Tags", [])]
    others = [spec for spec in tag_specifications or [] if spec.get("ResourceType") != "snapshot"]
    image = _original_create_image(self, instance_id, name, description, others)
    for tag in snapshot_tags:
        image.ebs_snapshot.add_tag(tag["Key"], tag["Value"])
    return image


def _register_image(self: AmiBackend, name=None, description=None):
    _check_name(self, name)
    return _original_register_image(self, name, description)


# --- KMS keys as EBS sees them ---------------------------------------------------------------

def _parse_key(account: str, region: str, ident: str):
    """(account, region, kind, value) of a key id, key ARN, alias name or alias ARN."""
    if ident.startswith("arn:"):
        parts = ident.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms":
            return None
        _, _, _, key_region, key_account, resource = parts
        kind, _, value = resource.partition("/")
        if kind == "alias":
            return key_account, key_region, "alias", "alias/" + value
        if kind == "key":
            return key_account, key_region, "key", value
        return None
    if ident.startswith("alias/"):
        return account, region, "alias", ident
    return account, region, "key", ident


def find_key(account: str, region: str, ident: str):
    """The KMS key `ident` names for a caller of `account` in `region`, or None. Only keys of
    `region` count (EBS: "The specified KMS key must exist in the destination Region")."""
    parsed = _parse_key(account, region, ident or "")
    if parsed is None:
        return None
    key_account, key_region, kind, value = parsed
    if key_region != region:
        return None
    if kind == "alias" and value.startswith("alias/aws/") and key_account != account:
        return None  # AWS managed keys are never usable by another account
    backend = dict.get(dict.get(kms_backends, key_account) or {}, key_region)
    if backend is None:
        if key_account != account:
            return None  # that account never touched KMS in this region: no such key
        backend = kms_backends[key_account][key_region]
    if kind == "alias":
        value = backend.get_key_id_from_alias(value)
        if value is None:
            return None
    return backend.keys.get(value)


def usable(key) -> bool:
    return key is not None and key.key_state == "Enabled" and key.key_usage in (None, "ENCRYPT_DECRYPT") \
        and key.key_spec == "SYMMETRIC_DEFAULT"


def aws_managed(key_arn: str | None) -> bool:
    """Whether `key_arn` is an AWS managed key (aws/ebs and the like)."""
    if not key_arn:
        return False
    parsed = _parse_key("", "", key_arn)
    if parsed is None:
        return False
    account, region, _, key_id = parsed
    backend = dict.get(dict.get(kms_backends, account) or {}, region)
    key = backend.keys.get(key_id) if backend else None
    return key is not None and (key.key_manager == "AWS" or any(a.startswith("alias/aws/") for a in key.aliases))


def default_key(backend) -> str:
    """The account's default KMS key for EBS in `backend`'s region (its ARN): `aws/ebs`, made on
    first use as AWS does, unless ModifyEbsDefaultKmsKeyId set another."""
    arn = backend.default_kms_key_id or backend._create_default_encryption_key()
    key = find_key(backend.account_id, backend.region_name, arn)
    if key is not None and EBS_ALIAS in key.aliases:
        key.key_manager = "AWS"
    return arn


# --- DescribeImages: encryption of the snapshots ---------------------------------------------

_original_mappings = Ami.block_device_mappings


def _block_device_mappings(self: Ami) -> list:
    mappings = _original_mappings.fget(self)
    snapshot = getattr(self, "ebs_snapshot", None)
    for mapping in mappings:
        ebs = mapping.get("Ebs")
        if ebs is None or snapshot is None or ebs.get("SnapshotId") != snapshot.id:
            continue
        ebs["Encrypted"] = bool(snapshot.encrypted)
        if snapshot.encrypted and snapshot.kms_key_id:
            ebs["KmsKeyId"] = snapshot.kms_key_id
    return mappings


# --- CopyImage -------------------------------------------------------------------------------

def _flag(response: AmisResponse, name: str):
    value = response._get_param(name)
    if value is None:
        return None
    return str(value).lower() == "true"


def _source(account: str, region: str, image_id: str):
    """The AMI to copy as `account` sees it in `region`, and whether it is its own."""
    backends = ec2_backends[account]
    if region not in backends.regions:
        raise EC2ClientError("InvalidParameterValue", f"Invalid value '{region}' for SourceRegion")
    backend = backends[region]
    if not str(image_id).startswith("ami-"):
        backend.describe_images(ami_ids=[image_id])  # InvalidAMIID.Malformed, as moto answers it
    ami = backend.amis.get(image_id)
    if ami is not None and ami.owner_id == account:
        return ami, True
    elsewhere = images.foreign(account, region, image_id)
    if elsewhere is not None and elsewhere[1] is not None and images.shared_with(elsewhere[1], account):
        return elsewhere[1], False
    if ami is not None and ami.is_public:
        return ami, False  # a public AMI (moto's Amazon catalogue)
    raise InvalidAMIIdError(image_id)


def _source_tags(ami: Ami, own: bool) -> dict:
    if not own:
        return {}
    return {t["key"]: t["value"] for t in ami.get_tags() if not t["key"].startswith("aws:")}


def _tag_specifications(specs) -> tuple[dict, dict]:
    image_tags, snapshot_tags = {}, {}
    for spec in specs or []:
        kind = spec.get("ResourceType")
        tags = {t["Key"]: t.get("Value", "") for t in spec.get("Tags", [])}
        if kind == "image":
            image_tags.update(tags)
        elif kind == "snapshot":
            snapshot_tags.update(tags)
        else:
            raise InvalidTaggableResourceType(kind)
    return image_tags, snapshot_tags


def copy_image(self: AmisResponse):
    account, region = self.current_account, self.region
    source_region = self._get_param("SourceRegion")
    source_id = self._get_param("SourceImageId")
    name = self._get_param("Name")
    description = self._get_param("Description")
    encrypted = _flag(self, "Encrypted")
    kms_key_id = self._get_param("KmsKeyId") or None
    copy_tags = bool(_flag(self, "CopyImageTags"))
    specs = self._get_param("TagSpecifications", [])
    token = self._get_param("ClientToken")
    self.error_on_dryrun()

    sim = state.sim()
    fingerprint = repr((source_region, source_id, name, description, encrypted, kms_key_id, copy_tags, specs))
    if token:
        known = sim.copy_tokens.get((account, region, token))
        if known is not None:
            if known[1] != fingerprint:
                raise TokenMismatch()
            return ActionResult({"ImageId": known[0]})

    if kms_key_id and not encrypted:
        raise ParameterDependency()
    source, own = _source(account, source_region, source_id)
    if source.state != "available":
        raise ImageUnavailable(source_id, source.state)
    source_snapshot = getattr(source, "ebs_snapshot", None)
    source_encrypted = bool(source_snapshot is not None and source_snapshot.encrypted)
    if source_encrypted and encrypted is False:
        raise UnencryptedCopy(source_snapshot.id)
    image_tags, snapshot_tags = _tag_specifications(specs)
    backend = self.ec2_backend
    _check_name(backend, name)

    # The key: asked for, or kept from an encrypted source in the same region, or the default.
    key_arn, key_ident = None, None
    if kms_key_id:
        key_ident = kms_key_id
        key = find_key(account, region, kms_key_id)
        key_arn = key.arn if key is not None else kms_key_id
    elif source_encrypted and source_region == region and own and source_snapshot.kms_key_id:
        key_arn = key_ident = source_snapshot.kms_key_id
    elif encrypted or source_encrypted or backend.ebs_encryption_by_default:
        key_arn = key_ident = default_key(backend)

    image_id = random_ami_id()
    snapshot_description = (f"Copied for DestinationAmi {image_id} from SourceAmi {source.id} for SourceSnapshot "
                            f"{source_snapshot.id if source_snapshot else 'unknown'}. "
                            f"Task created on {int(time.time() * 1000)}.")
    ami = Ami(backend, image_id, source_ami=source, name=name, description=description, state="pending",
              root_device_name=source.root_device_name, root_device_type=source.root_device_type,
              sriov=source.sriov, boot_mode=source.boot_mode, hypervisor=source.hypervisor,
              snapshot_description=snapshot_description)
    ami.image_location = f"{account}/{name}"
    ami.source_image_id, ami.source_image_region = source.id, source_region
    snapshot = ami.ebs_snapshot
    snapshot.status = "pending"
    if key_arn:
        snapshot.encrypted, snapshot.kms_key_id = True, key_arn
    backend.amis[image_id] = ami
    tags = {**(_source_tags(source, own) if copy_tags else {}), **image_tags}
    if tags:
        backend.create_tags([image_id], tags)
    if snapshot_tags:
        backend.create_tags([snapshot.id], snapshot_tags)

    now, duration = sim.clock.now(), copy_seconds()
    sim.copies[(account, region, image_id)] = {
        "key": key_ident,
        "check_at": now + min(KEY_CHECK_SECONDS, duration) if key_ident else None,
        "ready_at": now + duration,
    }
    if token:
        sim.copy_tokens[(account, region, token)] = (image_id, fingerprint)
    return ActionResult({"ImageId": image_id})


def _fail(ami: Ami) -> None:
    ami.state = "failed"
    ami.state_reason = dict(FAILED_REASON)
    ami.ebs_snapshot.status = "error"


def tick() -> None:
    """Ends the copies whose time has come: `available`, or `failed` for an unusable key."""
    sim = state.sim()
    now = sim.clock.now()
    for (account, region, image_id), record in list(sim.copies.items()):
        backend = dict.get(dict.get(ec2_backends, account) or {}, region)
        ami = backend.amis.get(image_id) if backend is not None else None
        if ami is None or ami.state != "pending":
            sim.copies.pop((account, region, image_id), None)  # deregistered meanwhile
            continue
        if record["check_at"] is not None and now >= record["check_at"]:
            record["check_at"] = None
            if not usable(find_key(account, region, record["key"])):
                _fail(ami)
                sim.copies.pop((account, region, image_id), None)
                continue
        if now >= record["ready_at"]:
            if record["key"] and not usable(find_key(account, region, record["key"])):
                _fail(ami)
            else:
                ami.state = "available"
                ami.ebs_snapshot.status = "completed"
            sim.copies.pop((account, region, image_id), None)


# --- sharing ---------------------------------------------------------------------------------

_original_modify_image_attribute = AmiBackend.modify_image_attribute


def _modify_image_attribute(self: AmiBackend, ami_id, launch_permissions_to_add, launch_permissions_to_remove):
    ami = self.amis.get(ami_id)
    snapshot = getattr(ami, "ebs_snapshot", None)
    if launch_permissions_to_add and snapshot is not None and snapshot.encrypted and aws_managed(snapshot.kms_key_id):
        raise ManagedKeyNotShareable()
    return _original_modify_image_attribute(self, ami_id, launch_permissions_to_add, launch_permissions_to_remove)


def install() -> None:
    AmisResponse.copy_image = copy_image
    AmiBackend.create_image = _create_image
    AmiBackend.register_image = _register_image
    AmiBackend.modify_image_attribute = _modify_image_attribute
    Ami.block_device_mappings = property(_block_device_mappings)
