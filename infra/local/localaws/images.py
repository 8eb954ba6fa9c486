"""AMIs as AWS treats the ones a rollback relies on.

moto 5.2.5 has no EnableImageDeregistrationProtection / DisableImageDeregistrationProtection,
deregisters any AMI, lists disabled AMIs like available ones and launches instances from
deregistered or disabled AMIs. Here:

- Enable/DisableImageDeregistrationProtection (ec2 query protocol). `Return` is the new state, as
  in the AWS CLI examples: `enabled-with-cooldown`, `enabled-without-cooldown`, `disabled`.
  With WithCooldown, protection stays for 24 hours (scaled clock) after it is disabled; meanwhile
  the state reads `disabled-until <end of the cooldown, wall clock>`.
- DescribeImages and DescribeImageAttribute(deregistrationProtection) show that state.
- DeregisterImage of a protected AMI fails with OperationNotPermitted (EC2's documented code for
  an operation refused by a protection, e.g. termination protection).
- DisableImage also removes the AMI's launch permissions; a disabled AMI is left out of
  DescribeImages unless IncludeDisabled is set or its id is asked for (owner only).
- RunInstances from a deregistered AMI fails with InvalidAMIID.NotFound, from a disabled AMI with
  InvalidAMIID.Unavailable, and so from an AMI that is still `pending` (a copy in progress,
  copies.py) or `failed` ("AMI '<id>' is pending, and cannot be run"). `refusal` / `launchable`
  give the same answer to the other extensions: fleet.py uses them for Auto Scaling launches
  (which fail as scaling activities instead).

AMI ids moto never knew are still accepted by RunInstances, as in moto (MOTO_ENABLE_AMI_VALIDATION).

AMIs shared across accounts. moto keeps AMIs per account and region, so an AMI shared with another
account (ModifyImageAttribute LaunchPermission UserId, or group `all`) stays invisible there. Here:

- DescribeImages in account B, region R also answers the AMIs other accounts own in R whose launch
  permissions name B or `all`, by id (ImageIds) and in listings, honouring Owners (owner id,
  `self`), ExecutableUsers and Filters. Such an AMI is shown as B sees it on AWS: the owner's
  OwnerId, no tags (tags are the owner's, per account), `Public` only for group `all`.
- `refusal`: a launch in B from an AMI of another account of R that is not shared with B fails
  InvalidAMIID.NotFound (as a private AMI of another account does on AWS); a shared one launches,
  unless it is disabled or deregistered in its owner's account (the refusals above).
"""

import datetime

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, UnvailableAMIIdError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.utils import generic_filter
from moto.ec2.responses.amis import AmisResponse

from . import clock, state

COOLDOWN = 24 * 3600  # simulated seconds protection stays after disabling, with WithCooldown


class OperationNotPermitted(EC2ClientError):
    def __init__(self, message: str):
        super().__init__("OperationNotPermitted", message)


class ImageDisabled(EC2ClientError):
    def __init__(self, image_id: str):
        super().__init__(
            "InvalidAMIID.Unavailable",
            f"The image id '[{image_id}]' is disabled and cannot be used to launch instances")


class ImageNotReady(EC2ClientError):
    """A launch from an AMI still being made (a CopyImage in progress) or whose making failed."""

    def __init__(self, image_id: str, image_state: str):
        super().__init__("InvalidAMIID.Unavailable", f"AMI '{image_id}' is {image_state}, and cannot be run")


def _state_refusal(ami: Ami) -> EC2ClientError | None:
    if ami.state == "disabled":
        return ImageDisabled(ami.id)
    if ami.state in ("pending", "failed"):
        return ImageNotReady(ami.id, ami.state)
    return None


# --- shared answers --------------------------------------------------------------------------

def _key(account, region, image_id):
    return (account, region, image_id)


def _wall(simulated: float) -> str:
    """The calendar time (clock.py) at which the scaled clock reaches `simulated` (AWS's timestamp
    form)."""
    durations = state.sim().clock
    wall_seconds = (simulated - durations.now()) / durations.scale
    at = clock.utcnow() + datetime.timedelta(seconds=wall_seconds * clock.setting()[1])
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _cooldown_until(record) -> float | None:
    until = (record or {}).get("cooldown_until")
    return until if until is not None and state.sim().clock.now() < until else None


def protection(account, region, image_id) -> str:
    """The AMI's DeregistrationProtection as DescribeImages shows it."""
    record = state.sim().image_protection.get(_key(account, region, image_id))
    if record and record["enabled"]:
        return "enabled-with-cooldown" if record["cooldown"] else "enabled-without-cooldown"
    until = _cooldown_until(record)
    return f"disabled-until {_wall(until)}" if until is not None else "disabled"


def protected(account, region, image_id) -> bool:
    record = state.sim().image_protection.get(_key(account, region, image_id))
    return bool(record) and (record["enabled"] or _cooldown_until(record) is not None)


def made_like_public(account: str, region: str, name: str, description: str, **attributes) -> Ami:
    """An AMI in `account`'s EC2 of `region` made from moto's public ECS-optimized AL2023 image (so
    the fleet launches it like the seeded AMIs), with the given Ami attributes (tags, owner, ...)."""
    from moto.ec2.utils import random_ami_id

    from . import seed

    ec2 = ec2_backends[account][region]
    image = Ami(ec2, random_ami_id(), source_ami=ec2.amis.get(seed.ECS_AL2023), name=name,
                description=description, **attributes)
    ec2.amis[image.id] = image
    return image


# --- AMIs of other accounts ------------------------------------------------------------------

def _other_backends(account, region):
    """(account, EC2 backend) of every other account that has EC2 state in `region`; looked up
    without creating backends (moto makes one, with its public AMIs, on first access)."""
    for other, by_region in list(dict.items(ec2_backends)):
        if other == account:
            continue
        backend = dict.get(by_region, region)
        if backend is not None:
            yield other, backend


def shared_with(ami: Ami, account: str) -> bool:
    return any(p.get("Group") == "all" or p.get("UserId") == account for p in ami.launch_permissions)


def foreign(account, region, image_id):
    """Where `image_id` lives if another account of `region` made it: (its backend, the Ami, or
    None if it was deregistered there); None if no other account knows it."""
    for other, backend in _other_backends(account, region):
        ami = backend.amis.get(image_id)
        if ami is not None and ami.owner_id == other:
            return backend, ami
        if image_id in backend.deleted_amis:
            return backend, None
    return None


def find(account, region, image_id) -> Ami | None:
    """The AMI `image_id` names for `account` in `region`: its own, or another account's (its
    owner's record, with the snapshots); None if unknown or deregistered."""
    if not image_id:
        return None
    ami = ec2_backends[account][region].amis.get(image_id)
    if ami is not None:
        return ami
    elsewhere = foreign(account, region, image_id)
    return elsewhere[1] if elsewhere is not None else None


class SharedImage(Ami):
    """Another account's AMI as an account it is shared with sees it: no tags (they are the
    owner's). A copy of the Ami's attributes, made per request."""

    def __init__(self, ami: Ami):  # pylint: disable=super-init-not-called
        self.__dict__.update(ami.__dict__)

    def get_tags(self) -> list:
        return []


def shared_images(account, region) -> list:
    """The AMIs other accounts own in `region` that `account` may launch (launch permission)."""
    found = {}
    for other, backend in _other_backends(account, region):
        for ami in list(backend.amis.values()):
            if ami.owner_id == other and ami.id not in found and shared_with(ami, account):
                found[ami.id] = SharedImage(ami)
    return list(found.values())


def _select_shared(images, account, filters, exec_users, owners) -> list:
    """DescribeImages' Owners, ExecutableUsers and Filters over shared images (never owned by
    `account`)."""
    if exec_users:
        users = {account if u == "self" else u for u in exec_users}
        images = [i for i in images if i.is_public or any(p.get("UserId") in users for p in i.launch_permissions)]
    if owners:
        wanted = {account if o == "self" else o for o in owners}
        images = [i for i in images if i.owner_id in wanted or (i.owner_alias and i.owner_alias in wanted)]
    return generic_filter(filters, images) if filters else images


def refusal(account, region, image_id) -> EC2ClientError | None:
    """The EC2 error a launch from `image_id` gets, or None if EC2 launches it."""
    if not image_id:
        return None
    backend = ec2_backends[account][region]
    ami = backend.amis.get(image_id)
    if ami is not None:
        return _state_refusal(ami)
    if image_id in backend.deleted_amis:
        # Deregistered (and, without a Recycle Bin rule, deleted at once): not found.
        return InvalidAMIIdError(image_id)
    elsewhere = foreign(account, region, image_id)
    if elsewhere is not None:
        _, ami = elsewhere
        if ami is None or not shared_with(ami, account):
            # Deregistered by its owner, or another account's private AMI: not found.
            return InvalidAMIIdError(image_id)
        return _state_refusal(ami)
    return None  # never known to moto: accepted, as moto does


def launchable(account, region, image_id) -> str | None:
    """None if instances can launch from `image_id`; otherwise EC2's refusal, "Code: message"."""
    error = refusal(account, region, image_id)
    return f"{error.code}: {error.message}" if error else None


# --- EC2 API ---------------------------------------------------------------------------------

def _image(response: AmisResponse):
    image_id = response._get_param("ImageId")
    backend = response.ec2_backend
    if image_id in backend.amis:
        return image_id
    if image_id in backend.deleted_amis:
        raise UnvailableAMIIdError(image_id)
    raise InvalidAMIIdError(image_id)


def enable_image_deregistration_protection(self: AmisResponse):
    image_id = _image(self)
    self.error_on_dryrun()
    with_cooldown = str(self._get_param("WithCooldown", False)).lower() == "true"
    records = state.sim().image_protection
    record = records.setdefault(_key(self.current_account, self.region, image_id), {"cooldown_until": None})
    record.update(enabled=True, cooldown=with_cooldown)
    return ActionResult({"Return": protection(self.current_account, self.region, image_id)})


def disable_image_deregistration_protection(self: AmisResponse):
    image_id = _image(self)
    self.error_on_dryrun()
    record = state.sim().image_protection.get(_key(self.current_account, self.region, image_id))
    if record and record["enabled"]:
        if record["cooldown"]:
            record["cooldown_until"] = state.sim().clock.now() + COOLDOWN
        record["enabled"] = False
    return ActionResult({"Return": protection(self.current_account, self.region, image_id)})


def _deregistration_protection(self: Ami) -> str:
    backend = self.ec2_backend
    return protection(backend.account_id, backend.region_name, self.id)


def describe_images(self: AmisResponse):
    self.error_on_dryrun()
    ami_ids = self._get_param("ImageIds", [])
    filters = self._filters_from_querystring()
    exec_users = self._get_param("ExecutableUsers", [])
    owners = self._get_param("Owners", [])
    shared = shared_images(self.current_account, self.region)
    if ami_ids:
        shared = [i for i in shared if i.id in ami_ids]
    asked_shared = bool(shared)
    shared = _select_shared(shared, self.current_account, filters, exec_users, owners)
    try:
        images = self.ec2_backend.describe_images(
            ami_ids=ami_ids, filters=dict(filters), exec_users=list(exec_users), owners=list(owners))
    except InvalidAMIIdError:
        if not asked_shared:
            raise
        images = []  # asked only for AMIs shared with this account
    images = images + [i for i in shared if i.id not in {own.id for own in images}]
    include_deprecated = str(self._get_param("IncludeDeprecated", False)).lower() == "true"
    # Deprecated AMIs are left out unless asked for; their owner sees them all.
    images = [i for i in images if include_deprecated or i.owner_id == self.current_account or not _deprecated(i)]
    include_disabled = str(self._get_param("IncludeDisabled", False)).lower() == "true"
    # A disabled AMI is private to its owner, and listed only when asked for (by id or flag).
    images = [i for i in images if i.state != "disabled"
              or ((include_disabled or i.id in ami_ids) and i.owner_id == self.current_account)]
    return ActionResult({"Images": images})


# --- deprecation -----------------------------------------------------------------------------

DEPRECATION_LIMIT = datetime.timedelta(days=365 * 10)  # "up to 10 years in the future"


def _deprecation_time(self: Ami) -> str | None:
    return getattr(self, "localaws_deprecation", None)


def _deprecated(ami: Ami) -> bool:
    at = _deprecation_time(ami)
    return at is not None and datetime.datetime.fromisoformat(at.replace("Z", "+00:00")) <= clock.utcnow()


def enable_image_deprecation(self: AmisResponse):
    """EC2 User Guide, "Deprecate an AMI": the owner sets when; seconds are rounded to the minute;
    not in the past, at most 10 years ahead (InvalidParameterValue, the message ours)."""
    image_id = _image(self)
    self.error_on_dryrun()
    given = str(self._get_param("DeprecateAt"))
    try:
        at = datetime.datetime.fromisoformat(given.replace("Z", "+00:00"))
    except ValueError:
        raise EC2ClientError("InvalidParameterValue", f"Invalid value '{given}' for DeprecateAt")
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.timezone.utc)
    at = (at + datetime.timedelta(seconds=30)).replace(second=0, microsecond=0)  # to the nearest minute
    now = clock.utcnow()
    if at < now.replace(second=0, microsecond=0) or at > now + DEPRECATION_LIMIT:
        raise EC2ClientError("InvalidParameterValue",
                             f"DeprecateAt {given} must be in the future and at most 10 years from now")
    self.ec2_backend.amis[image_id].localaws_deprecation = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return ActionResult({"Return": True})


def disable_image_deprecation(self: AmisResponse):
    image_id = _image(self)
    self.error_on_dryrun()
    self.ec2_backend.amis[image_id].localaws_deprecation = None
    return ActionResult({"Return": True})


_original_describe_image_attribute = AmisResponse.describe_image_attribute


def describe_image_attribute(self: AmisResponse):
    if self._get_param("Attribute") != "deregistrationProtection":
        return _original_describe_image_attribute(self)
    image_id = _image(self)
    self.error_on_dryrun()
    return ActionResult({
        "ImageId": image_id,
        "DeregistrationProtection": {"Value": protection(self.current_account, self.region, image_id)},
    })


_original_deregister = AmiBackend.deregister_image


def _deregister_image(self: AmiBackend, ami_id: str) -> None:
    if ami_id in self.amis and protected(self.account_id, self.region_name, ami_id):
        record = state.sim().image_protection[_key(self.account_id, self.region_name, ami_id)]
        if record["enabled"]:
            raise OperationNotPermitted(
                f"The image '{ami_id}' has deregistration protection enabled and cannot be "
                "deregistered. Disable deregistration protection first.")
        raise OperationNotPermitted(
            f"The image '{ami_id}' cannot be deregistered until {_wall(record['cooldown_until'])}: "
            "deregistration protection was enabled with a 24-hour cooldown.")
    _original_deregister(self, ami_id)
    state.sim().image_protection.pop(_key(self.account_id, self.region_name, ami_id), None)


_original_disable = AmiBackend.disable_image


def _disable_image(self: AmiBackend, ami_id: str) -> None:
    _original_disable(self, ami_id)
    self.amis[ami_id].launch_permissions = []  # AWS: "removes all launch permissions"


_original_run_instances = InstanceBackend.run_instances


def _run_instances(self: InstanceBackend, image_id, count, user_data, security_group_names, **kwargs):
    image = image_id
    if not image and kwargs.get("launch_template"):
        image = self._get_template_from_args(kwargs["launch_template"]).image_id
    error = refusal(self.account_id, self.region_name, image)
    if error:
        raise error
    reservation = _original_run_instances(self, image_id, count, user_data, security_group_names, **kwargs)
    shared = find(self.account_id, self.region_name, image)
    if shared is not None and shared.owner_id != self.account_id:
        # moto reads the AMI's attributes in the launching account only: from a shared AMI, as AWS
        # launches it, not moto's defaults (paravirtual, x86_64).
        for instance in reservation.instances:
            for attribute in ("platform", "virtualization_type", "architecture", "root_device_name", "kernel_id"):
                setattr(instance, attribute, getattr(shared, attribute, getattr(instance, attribute)))
    return reservation


def install() -> None:
    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
    AmisResponse.describe_images = describe_images
    AmisResponse.enable_image_deprecation = enable_image_deprecation
    AmisResponse.disable_image_deprecation = disable_image_deprecation
    Ami.deprecation_time = property(_deprecation_time)
    AmisResponse.describe_image_attribute = describe_image_attribute
    Ami.deregistration_protection = property(_deregistration_protection)
    AmiBackend.deregister_image = _deregister_image
    AmiBackend.disable_image = _disable_image
    InstanceBackend.run_instances = _run_instances
