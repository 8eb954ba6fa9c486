"""EC2 Auto Scaling instance refresh, which moto lacks entirely.

Start/Describe/Cancel/RollbackInstanceRefresh with AWS's statuses, faults and fields. Instances are
really replaced, batch by batch: a batch is sized by Min/MaxHealthyPercentage (launch first when
MaxHealthyPercentage > 100 or MinHealthyPercentage = 100, else terminate first), each new instance
is Pending until its InstanceWarmup has passed, CheckpointPercentages pause for CheckpointDelay,
BakeTime holds the refresh in Baking, and on success the group takes the DesiredConfiguration.
SkipMatching leaves instances already on the desired version; ScaleInProtectedInstances and
StandbyInstances follow Refresh / Ignore / Wait. An alarm of the AlarmSpecification in ALARM fails
the refresh; so do new instances that never pass their health check (an AMI marked bad for boot)
once AWS's one-hour stall timeout has passed. With AutoRollback, or on RollbackInstanceRefresh,
the replaced instances are replaced again from the configuration saved before the refresh.
All durations run on the scaled clock (state.Clock).

Lifecycle hooks (lifecycle.py) apply to the instances a refresh launches and terminates, as the
Auto Scaling User Guide's "Lifecycle hook availability" lists them. A new instance in
`Pending:Wait` is not healthy: the batch waits for it (its hook's own timeout bounds the wait),
and its warmup starts once it proceeds. One its launch hook abandons (CONTINUE never came) is
terminated by the group and not counted as replaced: the refresh launches another in its place,
as AWS does with new instances that fail ("terminates and replaces them"); if no new instance of
the batch completes its launch within the one-hour stall timeout, the refresh fails (rolls back
with AutoRollback), its StatusReason quoting the last Cancelled scaling activity's message, which
names the abandoned action's token. AWS documents neither that wording nor whether a refresh
stops sooner; waiting the hour and retrying is the conservative reading of "If it cannot launch
any healthy instances, the instance refresh will eventually fail". Old instances with a
terminating hook wait in `Terminating:Wait`, out of the group's capacity, while the refresh goes
on.

A group with a MixedInstancesPolicy is refreshed through DesiredConfiguration.MixedInstancesPolicy:
the version comes from its LaunchTemplate.LaunchTemplateSpecification, and on success the group's
policy takes it (parts of the policy not given keep the group's values, as UpdateAutoScalingGroup
does). Instance types from overrides are not modelled (moto launches the template's type).

Strategy ReplaceRootVolume (Auto Scaling user guide, "Replace root volumes during instance
refresh"): needs a DesiredConfiguration whose MixedInstancesPolicy gives every override an
ImageId, else ValidationError. Each instance of a batch keeps its id, network interfaces and data
volumes: its root is replaced by a new one from the override's AMI (rootvolumes.root_from_image),
it reads `ReplacingRootVolume` until warmed up, then `InService`; the original roots are deleted
once the refresh succeeds. A rollback replaces the roots again, from the AMI before (fresh
roots, not the originals). Not modelled: the `:Wait`/`:Proceed` lifecycle hooks, `RootVolumeReplaced`,
and a failed replacement terminating the instance (the AMI here always fits).
"""

import copy
import datetime
import math
import uuid
from dataclasses import dataclass, field

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import AutoScalingBackend
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

from . import clock, fleet, lifecycle, rootvolumes, state

ACTIVE = ("Pending", "InProgress", "Baking", "Cancelling", "RollbackInProgress")
STALL_TIMEOUT = 3600
PROTECTED_WAIT = 3600
DEFAULT_WARMUP = 300


class InstanceRefreshInProgress(ServiceException):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(ServiceException):
    code = "ActiveInstanceRefreshNotFound"


class IrreversibleInstanceRefresh(ServiceException):
    code = "IrreversibleInstanceRefresh"


# Suspended processes that stop a refresh from replacing instances (Auto Scaling User Guide, "How
# suspended processes affect other processes").
HALTING_PROCESSES = ("Launch", "Terminate", "InstanceRefresh")


def _utcnow():
    return clock.utcnow()


@dataclass
class Refresh:
    id: str
    group: str
    preferences: dict
    desired: dict | None
    target_version: int  # the version the instances are being moved to
    saved_version: int  # the group's version before the refresh (rollback target)
    saved_spec: dict  # the group's launch template spec before the refresh, as given
    saved_mixed: dict | None = None  # the group's mixed instances policy before the refresh
    status: str = "Pending"
    reason: str = ""
    start_time: datetime.datetime = field(default_factory=_utcnow)
    end_time: datetime.datetime | None = None
    pending: list = field(default_factory=list)  # instance ids still to replace
    total: int = 0
    batch: list = field(default_factory=list)  # new instance ids warming up
    batch_old: list = field(default_factory=list)  # old ids to terminate once the batch is healthy
    batch_started: float = 0.0
    waiting_since: float | None = None
    checkpoint_until: float | None = None
    checkpoints_passed: set = field(default_factory=set)
    bake_until: float | None = None
    rollback: dict | None = None
    launch_failed_since: float | None = None  # EC2 refuses the launches (deregistered/disabled AMI)
    strategy: str = "Rolling"
    abandoned: str = ""  # the last launch of this batch a lifecycle hook abandoned: its activity's message
    replaced_roots: list = field(default_factory=list)  # ReplaceRootVolume: volume ids, deleted on success

    @property
    def rolling_back(self) -> bool:
        return self.rollback is not None

    def percentage(self) -> int:
        if self.total == 0:
            return 100
        return int(100 * (self.total - self.to_update()) / self.total)

    def to_update(self) -> int:
        return len(self.pending) + len(self.batch)

    def view(self) -> dict:
        percentage = self.percentage() if self.status not in ("Successful", "RollbackSuccessful") else 100
        out = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group,
            "Status": self.status,
            "StatusReason": self.reason,
            "StartTime": self.start_time,
            "PercentageComplete": percentage,
            "InstancesToUpdate": 0 if percentage == 100 else self.to_update(),
            "ProgressDetails": {"LivePoolProgress": {
                "PercentageComplete": percentage,
                "InstancesToUpdate": 0 if percentage == 100 else self.to_update()}},
            "Preferences": self.preferences,
            "Strategy": self.strategy,
        }
        if self.end_time:
            out["EndTime"] = self.end_time
        if self.desired:
            out["DesiredConfiguration"] = self.desired
        if self.rollback:
            out["RollbackDetails"] = self.rollback
        return out


def _records(account, region, group):
    return state.sim().refreshes.setdefault((account, region, group), [])


def active(account, region, group) -> Refresh | None:
    return next((r for r in _records(account, region, group) if r.status in ACTIVE), None)


def desired_spec(desired: dict | None) -> dict:
    """The launch template specification a desired configuration converges to: its LaunchTemplate,
    or its MixedInstancesPolicy's LaunchTemplate.LaunchTemplateSpecification."""
    if not desired:
        return {}
    if desired.get("MixedInstancesPolicy"):
        return (desired["MixedInstancesPolicy"].get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
    return desired.get("LaunchTemplate") or {}


def merge_mixed(current: dict | None, given: dict) -> dict:
    """A mixed instances policy update as AWS applies it: the parts given replace the group's
    (the launch template specification, the overrides, each instances-distribution field); the
    parts not given are not changed."""
    merged = copy.deepcopy(current or {})
    given_lt = given.get("LaunchTemplate") or {}
    if given_lt:
        lt = merged.setdefault("LaunchTemplate", {})
        for key in ("LaunchTemplateSpecification", "Overrides"):
            if key in given_lt:
                lt[key] = copy.deepcopy(given_lt[key])
    if "InstancesDistribution" in given:
        merged["InstancesDistribution"] = {**merged.get("InstancesDistribution", {}),
                                           **copy.deepcopy(given["InstancesDistribution"])}
    return _one_template_name(merged)


def _one_template_name(policy: dict) -> dict:
    """moto stores the policy's template by id and name, and then refuses its own copy (only one
    of them may be given): keep the id."""
    spec = (policy.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
    if spec.get("LaunchTemplateId"):
        spec.pop("LaunchTemplateName", None)
    return policy


def _names_template(spec: dict, template) -> bool:
    """Whether a launch template specification names `template` (by id or name, whichever given)."""
    return spec.get("LaunchTemplateId") in (None, template.id) and spec.get("LaunchTemplateName") in (None, template.name)


def _check_desired(desired: dict, group, template) -> None:
    """What StartInstanceRefresh refuses in a DesiredConfiguration, here."""
    if desired.get("LaunchTemplate") and desired.get("MixedInstancesPolicy"):
        raise ValidationError("A desired configuration specifies either a LaunchTemplate or a MixedInstancesPolicy, not both.")
    mixed = desired.get("MixedInstancesPolicy")
    if mixed is not None:
        if not group.mixed_instances_policy:
            raise ValidationError("This local AWS does not model turning a launch template group into a mixed "
                                  "instances group through a desired configuration.")
        lt = mixed.get("LaunchTemplate") or {}
        spec = lt.get("LaunchTemplateSpecification")
        if not spec:
            raise ValidationError("The mixed instances policy in the desired configuration needs "
                                  "LaunchTemplate.LaunchTemplateSpecification in this local AWS.")
        if not _names_template(spec, template):
            raise ValidationError("The launch template in the desired configuration's mixed instances policy "
                                  "is not the group's.")
        for override in lt.get("Overrides") or []:
            if override.get("LaunchTemplateSpecification"):
                raise ValidationError("This local AWS does not model instance type overrides with their own "
                                      "launch template.")
        return
    if group.mixed_instances_policy and desired.get("LaunchTemplate"):
        raise ValidationError("This local AWS does not model turning a mixed instances group into a launch "
                              "template group through a desired configuration; use a MixedInstancesPolicy.")
    if not _names_template(desired.get("LaunchTemplate") or {}, template):
        raise ValidationError("The launch template in the desired configuration is not the group's.")


def _check_replace_root(desired: dict | None) -> None:
    """What StartInstanceRefresh refuses for the ReplaceRootVolume strategy."""
    mixed = (desired or {}).get("MixedInstancesPolicy")
    if not mixed:
        raise ValidationError("The ReplaceRootVolume strategy requires a DesiredConfiguration with a "
                              "MixedInstancesPolicy.")
    overrides = (mixed.get("LaunchTemplate") or {}).get("Overrides") or []
    if not overrides or any(not o.get("ImageId") for o in overrides):
        raise ValidationError("The ReplaceRootVolume strategy requires an ImageId in every override of the "
                              "MixedInstancesPolicy.")


def _override_image(mixed: dict | None, instance) -> str | None:
    """The AMI a mixed instances policy gives the instance: its type's override, else the first."""
    overrides = ((mixed or {}).get("LaunchTemplate") or {}).get("Overrides") or []
    images = [o for o in overrides if o.get("ImageId")]
    match = next((o for o in images if o.get("InstanceType") == instance.instance_type), None)
    return (match or (images[0] if images else {})).get("ImageId")


def _root_image(rec: "Refresh", group, instance) -> str:
    """The AMI a ReplaceRootVolume refresh gives the instance's root: the desired overrides', or,
    rolling back, the one of the configuration before the refresh."""
    if rec.rolling_back:
        return _override_image(rec.saved_mixed, instance) or \
            group.ec2_launch_template.get_version(rec.saved_version).image_id
    return _override_image(rec.desired["MixedInstancesPolicy"], instance)


def _replace_roots(rec: "Refresh", group, old: list, now: float) -> None:
    """A ReplaceRootVolume batch: each instance keeps its id; its root is replaced from the AMI of
    the refresh (or, rolling back, of the configuration before it)."""
    account, region = fleet._account_region(group)
    ec2 = fleet.ec2(account, region)
    template = group.ec2_launch_template
    for s in old:
        rec.replaced_roots.append(rootvolumes.root_from_image(ec2, s.instance, _root_image(rec, group, s.instance)))
        s.lifecycle_state = "ReplacingRootVolume"
        state.sim().launched[s.instance.id] = (template.id, rec.target_version, now)
    rec.batch, rec.batch_old, rec.batch_started = [s.instance.id for s in old], [], now


def _matches(instance_id: str, template_id: str, version: int) -> bool:
    launched = state.sim().launched.get(instance_id)
    return launched is not None and launched[0] == template_id and launched[1] == version


def _selectable(group, prefs) -> list:
    """The instances this refresh is allowed to replace now."""
    out = []
    for s in group.instance_states:
        if s.lifecycle_state.startswith("Terminating"):
            continue  # on its way out already
        if s.lifecycle_state.startswith("Standby") and prefs.get("StandbyInstances", "Ignore") != "Terminate":
            continue
        if s.protected_from_scale_in and prefs.get("ScaleInProtectedInstances", "Ignore") != "Refresh":
            continue
        out.append(s)
    return out


def _blocked(group, prefs) -> bool:
    """Instances the refresh must replace but is told to wait for (Wait on protected/standby)."""
    for s in group.instance_states:
        if s.protected_from_scale_in and prefs.get("ScaleInProtectedInstances", "Ignore") == "Wait":
            return True
        if s.lifecycle_state.startswith("Standby") and prefs.get("StandbyInstances", "Ignore") == "Wait":
            return True
    return False


def _plan(rec: Refresh, group, skip_matching: bool) -> None:
    template_id = group.ec2_launch_template.id

    def matching(s) -> bool:
        if rec.strategy == "ReplaceRootVolume":  # the version stays; the AMI says what is done
            return s.instance.image_id == _root_image(rec, group, s.instance)
        return _matches(s.instance.id, template_id, rec.target_version)

    rec.pending = [s.instance.id for s in _selectable(group, rec.preferences)
                   if not (skip_matching and matching(s))]
    rec.total = len(rec.pending)
    rec.batch, rec.batch_old, rec.abandoned = [], [], ""


def start(self: AutoScalingResponse):
    name = self._get_param("AutoScalingGroupName")
    prefs = self._get_param("Preferences") or {}
    desired = self._get_param("DesiredConfiguration")
    strategy = self._get_param("Strategy") or "Rolling"
    backend = self.autoscaling_backend
    group = fleet.named_group(backend, name)
    if strategy not in ("Rolling", "ReplaceRootVolume"):
        raise ValidationError(f"Strategy {strategy} is not one of Rolling, ReplaceRootVolume.")
    if strategy == "ReplaceRootVolume":
        _check_replace_root(desired)
    if active(self.current_account, self.region, name):
        raise InstanceRefreshInProgress(
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.")
    if group.ec2_launch_template is None:
        raise ValidationError("Instance refresh requires a launch template on the group in this local AWS.")
    template = group.ec2_launch_template
    saved_version = fleet.version_number(group)
    target = saved_version
    if desired:
        _check_desired(desired, group, template)
        target = template.get_version(desired_spec(desired).get("Version") or "$Default").number
    image = template.get_version(target).image_id
    if prefs.get("AutoRollback"):
        if not desired:
            raise ValidationError("AutoRollback requires a DesiredConfiguration.")
        if str(desired_spec(desired).get("Version", "$Default")).startswith("$"):
            raise ValidationError("AutoRollback requires a numbered launch template version, not $Latest or $Default.")
        if image.startswith("resolve:ssm:"):
            raise ValidationError("AutoRollback is not supported when the launch template ImageId is a Systems Manager parameter.")
    if len(prefs.get("AlarmSpecification", {}).get("Alarms", [])) > 10:
        raise ValidationError("At most 10 alarms can be specified.")
    if group.mixed_instances_policy:
        saved_spec = copy.deepcopy(group.mixed_instances_policy["LaunchTemplate"]["LaunchTemplateSpecification"])
    else:
        saved_spec = {"LaunchTemplateId": template.id, "Version": group.provided_launch_template_version}
    rec = Refresh(
        id=str(uuid.uuid4()),
        group=name,
        preferences=prefs,
        desired=desired,
        target_version=target,
        saved_version=saved_version,
        saved_spec=saved_spec,
        saved_mixed=copy.deepcopy(group.mixed_instances_policy) or None,
        strategy=strategy,
    )
    _plan(rec, group, bool(prefs.get("SkipMatching")))
    _records(self.current_account, self.region, name).append(rec)
    return ActionResult({"InstanceRefreshId": rec.id})


def describe(self: AutoScalingResponse):
    name = self._get_param("AutoScalingGroupName")
    fleet.named_group(self.autoscaling_backend, name)
    ids = self._get_param("InstanceRefreshIds") or []
    records = [r for r in reversed(_records(self.current_account, self.region, name)) if not ids or r.id in ids]
    start_at = int(self._get_param("NextToken") or 0)
    size = self._get_int_param("MaxRecords") or 50
    page = records[start_at:start_at + size]
    result = {"InstanceRefreshes": [r.view() for r in page]}
    if start_at + size < len(records):
        result["NextToken"] = str(start_at + size)
    return ActionResult(result)


def cancel(self: AutoScalingResponse):
    name = self._get_param("AutoScalingGroupName")
    fleet.named_group(self.autoscaling_backend, name)
    rec = active(self.current_account, self.region, name)
    if rec is None or rec.status == "Cancelling":
        raise ActiveInstanceRefreshNotFound("No in progress or pending Instance Refresh found for Auto Scaling group " + name)
    rec.status, rec.reason = "Cancelling", "Cancellation requested."
    return ActionResult({"InstanceRefreshId": rec.id})


def rollback(self: AutoScalingResponse):
    name = self._get_param("AutoScalingGroupName")
    group = fleet.named_group(self.autoscaling_backend, name)
    rec = active(self.current_account, self.region, name)
    if rec is None or rec.status in ("Cancelling", "RollbackInProgress"):
        raise ActiveInstanceRefreshNotFound("No in progress or pending Instance Refresh found for Auto Scaling group " + name)
    if not rec.desired:
        raise IrreversibleInstanceRefresh("The instance refresh cannot be rolled back because it has no desired configuration.")
    version = str(desired_spec(rec.desired).get("Version", "$Default"))
    if version.startswith("$"):
        raise IrreversibleInstanceRefresh("The instance refresh cannot be rolled back because the desired configuration uses " + version + ".")
    _start_rollback(rec, group, "Rollback requested by the user.")
    return ActionResult({"InstanceRefreshId": rec.id})


def _start_rollback(rec: Refresh, group, reason: str) -> None:
    now = state.sim().clock.now()
    rec.rollback = {
        "RollbackReason": reason,
        "RollbackStartTime": _utcnow(),
        "PercentageCompleteOnRollback": rec.percentage(),
        "InstancesToUpdateOnRollback": rec.to_update(),
        "ProgressDetailsOnRollback": {"LivePoolProgress": {
            "PercentageComplete": rec.percentage(), "InstancesToUpdate": rec.to_update()}},
    }
    # New instances still warming up are dropped at once (they never served); the old ones of a
    # launch-first batch are still there and stay. Roots being replaced are replaced again.
    if rec.strategy != "ReplaceRootVolume":
        lifecycle.terminate(group, [s for s in group.instance_states if s.instance.id in rec.batch])
    rec.status, rec.reason = "RollbackInProgress", reason
    rec.target_version = rec.saved_version
    rec.checkpoint_until, rec.bake_until, rec.waiting_since = None, None, None
    _plan(rec, group, skip_matching=True)
    rec.batch_started = now


def _finish(rec: Refresh, status: str, reason: str) -> None:
    rec.status, rec.reason, rec.end_time = status, reason, _utcnow()
    state.sim().warming.difference_update(rec.batch)  # the group's own now (lifecycle.py)


def _fail(rec: Refresh, group, reason: str) -> None:
    if rec.preferences.get("AutoRollback") and not rec.rolling_back:
        _start_rollback(rec, group, reason)
    elif rec.rolling_back:
        _finish(rec, "RollbackFailed", reason)
    else:
        _finish(rec, "Failed", reason)


def _alarms_firing(account, region, names) -> list:
    backend = fleet.cloudwatch(account, region)
    return [n for n in names if n in backend.alarms and backend.alarms[n].state_value == "ALARM"]


def _batch_size(group, prefs) -> int:
    desired = group.desired_capacity or len(group.instance_states) or 1
    low = prefs.get("MinHealthyPercentage", 90)
    high = prefs.get("MaxHealthyPercentage", 100)
    if high > 100:
        return max(1, math.floor(desired * high / 100) - math.ceil(desired * low / 100))
    return max(1, desired - math.ceil(desired * low / 100))


def _launch_first(prefs) -> bool:
    return prefs.get("MaxHealthyPercentage", 100) > 100 or prefs.get("MinHealthyPercentage", 90) >= 100


def _launch(rec: Refresh, group, count: int, now: float) -> bool:
    """Launch `count` instances of the target version as the new batch. If EC2 refuses them (a
    deregistered or disabled AMI: fleet.refusal), retry on later ticks; after the stall timeout
    the refresh fails (rolls back with AutoRollback; a rollback ends RollbackFailed)."""
    fresh = fleet.launch(group, rec.target_version, count)
    if fresh:
        rec.batch, rec.batch_started, rec.launch_failed_since = [s.instance.id for s in fresh], now, None
        return True
    reason = fleet.refusal(group, rec.target_version)
    if rec.launch_failed_since is None:
        rec.launch_failed_since = now
    if now - rec.launch_failed_since > STALL_TIMEOUT:
        rec.launch_failed_since = None
        _fail(rec, group, f"Instance refresh failed: new instances could not be launched within {STALL_TIMEOUT} seconds. {reason}")
    else:
        rec.reason = f"Waiting to launch {count} instance(s): {reason}"
    return False


def _step(account, region, group, rec: Refresh, now: float) -> None:
    if rec.status not in ACTIVE:
        return  # ended by an earlier step of this tick
    prefs = rec.preferences
    if rec.status == "Pending":
        rec.status = "InProgress"
    if rec.status == "Cancelling":
        if rec.batch_old:  # launch-first batch: the group keeps its old instances
            lifecycle.terminate(group, [s for s in group.instance_states if s.instance.id in rec.batch])
        for s in group.instance_states:
            if s.instance.id in rec.batch and s.lifecycle_state != "Pending:Wait":  # that one waits on
                s.lifecycle_state = "InService"
        _finish(rec, "Cancelled", "Instance refresh cancelled.")
        rec.batch, rec.batch_old = [], []
        return
    alarms = prefs.get("AlarmSpecification", {}).get("Alarms", [])
    if not rec.rolling_back and alarms:
        firing = _alarms_firing(account, region, alarms)
        if firing:
            _fail(rec, group, f"Alarm(s) in ALARM state: {', '.join(firing)}. Instance refresh failed.")
            return
    if rec.status == "Baking":
        if now >= rec.bake_until:
            _succeed(group, rec)
        return
    halted = [p["ProcessName"] for p in group.suspended_processes if p["ProcessName"] in HALTING_PROCESSES]
    if halted:
        # "InstanceRefresh does not replace instances" while Launch is suspended (Auto Scaling
        # User Guide); Terminate and InstanceRefresh itself stop it too. It sits; the wording is ours.
        rec.reason = f"Waiting: the {', '.join(halted)} process is suspended, so no instance is replaced."
        return
    warmup = prefs.get("InstanceWarmup", group.health_check_grace_period or DEFAULT_WARMUP)
    if rec.batch:
        present = {s.instance.id: s for s in group.instance_states}
        fresh = [present[i] for i in rec.batch if i in present]
        lost = [i for i in rec.batch if i not in present]  # abandoned by a launch hook, terminated
        rec.abandoned = next(filter(None, (lifecycle.abandonment(group, i) for i in lost)), rec.abandoned)
        for s in fresh:
            # Its warmup starts once its launch hooks let it proceed.
            started = max(state.sim().launched[s.instance.id][2], lifecycle.proceeded_at(s.instance.id) or 0)
            if s.lifecycle_state != "Pending:Wait" and fleet.boots(s.instance.image_id) and now >= started + warmup:
                s.lifecycle_state = "InService"
        waiting = [s for s in fresh if s.lifecycle_state == "Pending:Wait"]
        # Time spent waiting on a hook that then let the instance proceed does not count.
        since = max([rec.batch_started] + [lifecycle.proceeded_at(s.instance.id) or 0 for s in fresh])
        if not lost and all(s.lifecycle_state == "InService" for s in fresh):
            lifecycle.terminate(group, [s for s in group.instance_states if s.instance.id in rec.batch_old])
            state.sim().warming.difference_update(rec.batch)
            rec.batch, rec.batch_old, rec.abandoned = [], [], ""
        elif now - since > STALL_TIMEOUT and (lost or not waiting):
            for s in fresh:
                if s.lifecycle_state not in ("InService", "Pending:Wait"):
                    s.health_status = "Unhealthy"
            _fail(rec, group, f"Instance refresh failed: new instances did not complete their launch within "
                  f"{STALL_TIMEOUT} seconds. {rec.abandoned}" if rec.abandoned else
                  "Instance refresh failed: new instances did not pass their health checks "
                  f"within {STALL_TIMEOUT} seconds ({fresh[0].instance.image_id}).")
            return
        elif lost:
            relaunched = fleet.launch(group, rec.target_version, len(lost))
            if relaunched:  # else EC2 refused (a Failed activity): retried on the next step
                rec.batch = [s.instance.id for s in fresh + relaunched]
            rec.reason = f"Replacing {len(lost)} new instance(s) a launch lifecycle hook abandoned. {rec.abandoned}"
            return
        elif waiting:
            rec.reason = (f"Waiting for {len(waiting)} new instance(s) to complete their launch lifecycle actions. "
                          f"For example: {waiting[0].instance.id} is in Pending:Wait. {rec.abandoned}").rstrip()
            return
        else:
            rec.reason = f"Waiting for {len(fresh)} new instance(s) to warm up and pass health checks."
            return
    present = {s.instance.id for s in group.instance_states if not s.lifecycle_state.startswith("Terminating")}
    rec.pending = [i for i in rec.pending if i in present]
    deficit = (group.desired_capacity or 0) - len(group.active_instances())
    if deficit > 0:
        # The group keeps its desired capacity: instances dropped on failure are replaced first.
        if _launch(rec, group, deficit, now):
            rec.reason = f"Launching {deficit} instance(s) to restore the desired capacity."
        return
    if not rec.pending:
        if _blocked(group, prefs) and not rec.rolling_back:
            rec.waiting_since = rec.waiting_since if rec.waiting_since is not None else now
            if now - rec.waiting_since > PROTECTED_WAIT:
                _fail(rec, group, "Instance refresh timed out waiting for scale-in protected or standby instances.")
            else:
                rec.reason = "Waiting for scale-in protected or standby instances."
            return
        bake = prefs.get("BakeTime", 0) or 0
        if not rec.rolling_back and bake and rec.bake_until is None:
            rec.status, rec.reason, rec.bake_until = "Baking", "Baking.", now + bake
            return
        _succeed(group, rec)
        return
    if not rec.rolling_back:
        done = rec.percentage()
        for point in prefs.get("CheckpointPercentages") or []:
            if done >= point and point not in rec.checkpoints_passed and point < 100:
                if rec.checkpoint_until is None:
                    rec.checkpoint_until = now + prefs.get("CheckpointDelay", 3600)
                if now < rec.checkpoint_until:
                    rec.reason = f"Waiting at checkpoint {point}%."
                    return
                rec.checkpoints_passed.add(point)
                rec.checkpoint_until = None
    size = min(_batch_size(group, prefs), len(rec.pending))
    by_id = {s.instance.id: s for s in group.instance_states}
    old = [by_id[i] for i in rec.pending[:size]]
    if rec.strategy == "ReplaceRootVolume":
        _replace_roots(rec, group, old, now)
    elif _launch_first(prefs):
        if not _launch(rec, group, size, now):
            return  # the old instances stay in service and in the plan
        rec.batch_old = [s.instance.id for s in old]
    else:
        lifecycle.terminate(group, old)
        if not _launch(rec, group, size, now):
            return  # the group is short; the deficit branch above retries the launch
    rec.pending = rec.pending[size:]
    rec.reason = f"Replacing the root volume of {size} instance(s)." if rec.strategy == "ReplaceRootVolume" \
        else f"Replacing {size} instance(s)."


def _succeed(group, rec: Refresh) -> None:
    if rec.replaced_roots:
        # AWS deletes the roots a ReplaceRootVolume refresh replaced once it has ended well.
        ec2 = fleet.ec2(*fleet._account_region(group))
        for volume in rec.replaced_roots:
            if volume in ec2.volumes:
                ec2.delete_volume(volume)
        rec.replaced_roots = []
    if rec.rolling_back:
        if rec.saved_mixed is not None:
            # The group's policy was never changed (updates are refused while the refresh runs);
            # the saved one is what it keeps.
            group.mixed_instances_policy = _one_template_name(copy.deepcopy(rec.saved_mixed))
            group._set_launch_configuration(None, {}, group.mixed_instances_policy)
        _finish(rec, "RollbackSuccessful", rec.rollback["RollbackReason"])
        return
    if rec.desired and rec.desired.get("MixedInstancesPolicy"):
        # The group's policy takes the desired one; moto's own setter normalises the template
        # specification (id, name, version) and the version new instances launch from.
        group.mixed_instances_policy = merge_mixed(group.mixed_instances_policy, rec.desired["MixedInstancesPolicy"])
        group._set_launch_configuration(None, {}, group.mixed_instances_policy)
    elif rec.desired:
        spec = rec.desired.get("LaunchTemplate") or {}
        group.launch_template_version = str(spec.get("Version") or "$Default")
        group.provided_launch_template_version = spec.get("Version")
    _finish(rec, "Successful", "")


def tick() -> None:
    now = state.sim().clock.now()
    for (account, region, name), records in list(state.sim().refreshes.items()):
        backend = fleet.autoscaling_backends[account][region]
        group = backend.autoscaling_groups.get(name)
        for rec in records:
            if rec.status in ACTIVE:
                if group is None:
                    _finish(rec, "Failed", "The Auto Scaling group was deleted.")
                    continue
                # Several steps per tick when the scaled clock has moved far (or was advanced).
                for _ in range(100):
                    before = (rec.status, len(rec.pending), len(rec.batch), rec.reason)
                    _step(account, region, group, rec, now)
                    if rec.status not in ACTIVE:
                        break  # finished: a cancelled refresh replaces nothing more
                    if (rec.status, len(rec.pending), len(rec.batch), rec.reason) == before:
                        break


_original_update = AutoScalingBackend.update_auto_scaling_group


def _update_group(self, name, *args, **kwargs):
    rec = active(self.account_id, self.region_name, name)
    if rec and rec.desired and (kwargs.get("launch_template") or kwargs.get("mixed_instances_policy")):
        raise ValidationError(
            "An active instance refresh with a desired configuration exists. All configuration "
            "options derived from the desired configuration are not available for update while "
            "the instance refresh is active.")
    group = self.autoscaling_groups.get(name)
    if group is not None and group.mixed_instances_policy:
        # AWS: parameters not given are not changed. moto would drop the group's mixed instances
        # policy on any update without one, and crash on a partial one.
        if kwargs.get("mixed_instances_policy"):
            kwargs["mixed_instances_policy"] = merge_mixed(group.mixed_instances_policy, kwargs["mixed_instances_policy"])
        elif not kwargs.get("launch_template") and not kwargs.get("launch_config_name"):
            kwargs["mixed_instances_policy"] = _one_template_name(copy.deepcopy(group.mixed_instances_policy))
    return _original_update(self, name, *args, **kwargs)


def install() -> None:
    AutoScalingResponse.start_instance_refresh = start
    AutoScalingResponse.describe_instance_refreshes = describe
    AutoScalingResponse.cancel_instance_refresh = cancel
    AutoScalingResponse.rollback_instance_refresh = rollback
    AutoScalingBackend.update_auto_scaling_group = _update_group
