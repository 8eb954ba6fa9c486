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
  InvalidAMIID.Unavailable. `refusal` / `launchable` give the same answer to the other extensions:
  fleet.py uses them for Auto Scaling launches (which fail as scaling activities instead).

AMI ids moto never knew are still accepted by RunInstances, as in moto (MOTO_ENABLE_AMI_VALIDATION).
"""

import datetime

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, UnvailableAMIIdError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.responses.amis import AmisResponse

from . import state

COOLDOWN = 24 * 3600  # simulated seconds protection stays after disabling, with WithCooldown


class OperationNotPermitted(EC2ClientError):
    def __init__(self, message: str):
        super().__init__("OperationNotPermitted", message)


class ImageDisabled(EC2ClientError):
    def __init__(self, image_id: str):
        super().__init__(
            "InvalidAMIID.Unavailable",
            f"The image id '[{image_id}]' is disabled and cannot be used to launch instances")


# --- shared answers --------------------------------------------------------------------------

def _key(account, region, image_id):
    return (account, region, image_id)


def _wall(simulated: float) -> str:
    """The wall-clock time at which the scaled clock reaches `simulated` (AWS's timestamp form)."""
    clock = state.sim().clock
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=(simulated - clock.now()) / clock.scale)
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


def refusal(account, region, image_id) -> EC2ClientError | None:
    """The EC2 error a launch from `image_id` gets, or None if EC2 launches it."""
    if not image_id:
        return None
    backend = ec2_backends[account][region]
    ami = backend.amis.get(image_id)
    if ami is not None:
        return ImageDisabled(image_id) if ami.state == "disabled" else None
    if image_id in backend.deleted_amis:
        # Deregistered (and, without a Recycle Bin rule, deleted at once): not found.
        return InvalidAMIIdError(image_id)
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
    images = self.ec2_backend.describe_images(
        ami_ids=ami_ids,
        filters=self._filters_from_querystring(),
        exec_users=self._get_param("ExecutableUsers", []),
        owners=self._get_param("Owners", []),
    )
    include_disabled = str(self._get_param("IncludeDisabled", False)).lower() == "true"
    # A disabled AMI is private to its owner, and listed only when asked for (by id or flag).
    images = [i for i in images if i.state != "disabled"
              or ((include_disabled or i.id in ami_ids) and i.owner_id == self.current_account)]
    return ActionResult({"Images": images})


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
    return _original_run_instances(self, image_id, count, user_data, security_group_names, **kwargs)


def install() -> None:
    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
    AmisResponse.describe_images = describe_images
    AmisResponse.describe_image_attribute = describe_image_attribute
    Ami.deregistration_protection = property(_deregistration_protection)
    AmiBackend.deregister_image = _deregister_image
    AmiBackend.disable_image = _disable_image
    InstanceBackend.run_instances = _run_instances
