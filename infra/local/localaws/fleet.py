"""Group instances and their ECS container instances.

moto launches group instances straight to InService and reports every instance's launch template
version as the template's default. Here each instance remembers the version it was launched
from, instances a refresh launches go through Pending and warmup, and an instance that runs in a
group linked to an ECS cluster (capacity provider, or ECS_CLUSTER in its user data) registers as a
container instance with the real `ecs.ami-id` attribute once it is InService, and is deregistered
when it terminates. An instance on an AMI marked bad for boot never passes its health check and so
never registers.

A launch from an AMI that EC2 refuses (deregistered or disabled, see images.py) creates no
instance: as on AWS, the group records a Failed scaling activity with EC2's error ("... Launching
EC2 instance failed."), served by DescribeScalingActivities, and `launch` returns no instances.

An instance counts toward the group's capacity from its launch (Pending, Pending:Wait, ...) until
it starts terminating or enters Standby; moto counts InService ones only, and so launched extra
instances for those still launching whenever the desired capacity was set.
"""

import base64
import json
import logging
import re
import uuid

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    autoscaling_backends,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.cloudwatch.models import cloudwatch_backends
from moto.ec2.models import ec2_backends
from moto.ecs.models import ecs_backends

from . import clock, images, keys, state

log = logging.getLogger("localaws.fleet")

# A launch that keeps failing is retried; one Failed activity per group per simulated minute.
FAILED_LAUNCH_EVERY = 60
KEEP_ACTIVITIES = 100

_original_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances


def regions():
    """(account, region) pairs that hold Auto Scaling state."""
    for account, by_region in list(autoscaling_backends.items()):
        for region in list(by_region.keys()):
            yield account, region


def ec2(account, region):
    return ec2_backends[account][region]


def ecs(account, region):
    return ecs_backends[account][region]


def cloudwatch(account, region):
    return cloudwatch_backends[account][region]


def version_number(group, version=None) -> int | None:
    template = group.ec2_launch_template
    if template is None:
        return None
    return template.get_version(version or group.launch_template_version).number


def _account_region(group) -> tuple:
    return group.ec2_backend.account_id, group.ec2_backend.region_name


def _image_of(group, version=None) -> str | None:
    if group.ec2_launch_template is not None:
        return group.ec2_launch_template.get_version(version or group.launch_template_version).image_id
    return group.launch_config.image_id if group.launch_config else None


def refusal(group, version=None) -> str | None:
    """Why EC2 refuses to launch the group's instances from `version` of its template (default: the
    group's version), as the failed scaling activity's StatusMessage puts it; None if it launches."""
    account, region = _account_region(group)
    image_id = _image_of(group, version)
    error = images.refusal(account, region, image_id)
    if error:
        return f"{error.message}. Launching EC2 instance failed."
    # Auto Scaling builds the volumes as its service-linked role: without the key of an encrypted
    # snapshot the instance is terminated at once (Auto Scaling troubleshooting guide, "Client.
    # InternalError: Client error on launch").
    why = keys.volume_refusal(keys.autoscaling_role(account), images.find(account, region, image_id), region)
    if why:
        log.info("Auto Scaling launch refused: %s", why)
        return ("Instance became unhealthy while waiting for instance to be in InService state. "
                "Termination Reason: Client.InternalError: Client error on launch")
    return None


def _utcnow():
    return clock.utcnow()


REFRESH_CAUSE = "an instance was launched in response to an instance refresh."


def capacity_cause(current: int, count: int) -> str:
    """Why a group launched `count` instances when it had `current` (an activity's Cause)."""
    return ("an instance was started in response to a difference between desired and actual capacity, "
            f"increasing the capacity from {current} to {current + count}.")


def record_activity(group, status: str, description: str, message: str, cause: str, started, details: dict) -> None:
    """Add a finished scaling activity to what DescribeScalingActivities answers, newest first
    (`cause` follows "At <started> ", as AWS writes it)."""
    account, region = _account_region(group)
    records = state.sim().activities.setdefault((account, region, group.name), [])
    records.insert(0, (state.sim().clock.now(), {
        "ActivityId": str(uuid.uuid4()),
        "AutoScalingGroupName": group.name,
        "AutoScalingGroupARN": group.arn,
        "Description": f"{description}.  Status Reason: {message}",
        "Cause": f"At {started:%Y-%m-%dT%H:%M:%SZ} {cause}",
        "StartTime": started,
        "EndTime": _utcnow(),
        "StatusCode": status,
        "StatusMessage": message,
        "Progress": 100,
        "Details": json.dumps({k: v for k, v in details.items() if v}),
    }))
    del records[KEEP_ACTIVITIES:]


def _failed_launch(group, reason: str, cause: str) -> None:
    """Record a Failed launch activity, at most one a minute for the same reason (it is retried)."""
    records = state.sim().activities.get((*_account_region(group), group.name)) or []
    if records and records[0][1]["StatusMessage"] == reason and \
            state.sim().clock.now() - records[0][0] < FAILED_LAUNCH_EVERY:
        return
    record_activity(group, "Failed", "Launching a new EC2 instance", reason, cause, _utcnow(),
                    {"Subnet ID": (group.vpc_zone_identifier or "").split(",")[0]})


def _recording_replace(self, count_needed, propagated_tags):
    reason = refusal(self)
    if reason:
        _failed_launch(self, reason, capacity_cause(len(self.instance_states), count_needed))
        return
    before = {s.instance.id for s in self.instance_states}
    _original_replace(self, count_needed, propagated_tags)
    number = version_number(self)
    now = state.sim().clock.now()
    for s in self.instance_states:
        if s.instance.id not in before:
            state.sim().launched[s.instance.id] = (
                getattr(self.ec2_launch_template, "id", None), number, now)


def _instance_launch_template(self):
    group = self.auto_scaling_group
    if group is None or group.ec2_launch_template is None:
        return None
    _, number, _ = state.sim().launched.get(self.instance.id, (None, None, None))
    return {
        "LaunchTemplateId": group.ec2_launch_template.id,
        "LaunchTemplateName": group.ec2_launch_template.name,
        "Version": str(number or group.ec2_launch_template.default_version_number),
    }


def _group_launch_template(self):
    """A group's top-level LaunchTemplate. A group with a mixed instances policy names its template
    only inside the policy, so AWS answers none; moto's own property raises AttributeError for
    such a group (it never sets the provided version), which crashed the control endpoint."""
    if self.ec2_launch_template is None or self.mixed_instances_policy:
        return None
    return {
        "LaunchTemplateId": self.ec2_launch_template.id,
        "LaunchTemplateName": self.ec2_launch_template.name,
        "Version": getattr(self, "provided_launch_template_version", None),
    }


def launch(group, version: int, count: int) -> list:
    """Launch `count` instances for a refresh from `version` of the group's template; they start
    Pending (Pending:Wait with a launch lifecycle hook) and the refresh puts them in service.

    If EC2 refuses the launch (its AMI is deregistered or disabled), nothing is launched and the
    answer is []: the group records a Failed activity and `refusal(group, version)` says why."""
    reason = refusal(group, version)
    if reason:
        _failed_launch(group, reason, REFRESH_CAUSE)
        return []
    saved = group.launch_template_version
    group.launch_template_version = str(version)
    try:
        before = {s.instance.id for s in group.instance_states}
        # Through the class, so that the launch lifecycle hooks (lifecycle.py) apply.
        group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
    finally:
        group.launch_template_version = saved
    fresh = [s for s in group.instance_states if s.instance.id not in before]
    for s in fresh:
        if s.lifecycle_state == "InService":
            s.lifecycle_state = "Pending"
    state.sim().warming.update(s.instance.id for s in fresh)
    return fresh


def terminate(group, states: list) -> None:
    """Remove instances from the group and terminate them now (lifecycle.terminate runs the
    group's terminating hooks first)."""
    ids = [s.instance.id for s in states]
    group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
    state.sim().warming.difference_update(ids)
    if ids:
        group.ec2_backend.terminate_instances(ids)


def _active_instances(self) -> list:
    """The instances that count toward the group's capacity."""
    return [s for s in self.instance_states if not s.lifecycle_state.startswith(("Terminating", "Standby", "Detach"))]


def boots(image_id: str) -> bool:
    return state.sim().bad_amis.get(image_id) != "boot"


def _provider_clusters(backend) -> dict:
    """Each capacity provider's Auto Scaling group (ARN or name) -> the cluster it serves."""
    serving = {}
    for provider in backend.capacity_providers.values():
        asg = provider.auto_scaling_group_provider.get("autoScalingGroupArn", "")
        for cluster in backend.clusters.values():
            if provider.name in (cluster.capacity_providers or []):
                serving.setdefault(asg, cluster.name)
                break
    return serving


def cluster_of(group, backend, serving: dict) -> str | None:
    """The cluster the group's instances join: through a capacity provider of the cluster, or
    the ECS_CLUSTER line of its user data. `serving` is `_provider_clusters(backend)`."""
    for asg, cluster in serving.items():
        if asg in (group.arn, group.name) or asg.endswith(f"autoScalingGroupName/{group.name}"):
            return cluster
    user_data = group.user_data or ""
    try:
        text = base64.b64decode(user_data).decode(errors="ignore")
    except (ValueError, TypeError):
        text = str(user_data)
    found = re.search(r"ECS_CLUSTER=([A-Za-z0-9_-]+)", text)
    return found.group(1) if found else None


def managed_draining(account, region, group) -> bool:
    for provider in ecs(account, region).capacity_providers.values():
        asg = provider.auto_scaling_group_provider.get("autoScalingGroupArn", "")
        if asg in (group.arn, group.name) or asg.endswith(f"autoScalingGroupName/{group.name}"):
            return provider.auto_scaling_group_provider.get("managedDraining", "ENABLED") == "ENABLED"
    return False


def reconcile_container_instances(account, region) -> None:
    backend = ecs(account, region)
    if not backend.clusters and not any(backend.container_instances.values()):
        return  # no cluster to join and none to leave (this runs before every request)
    serving = _provider_clusters(backend)
    live = {}
    for group in autoscaling_backends[account][region].autoscaling_groups.values():
        # The agent stays connected while a terminating lifecycle hook holds the instance.
        running = [s for s in group.instance_states if s.instance.state == "running"
                   and (s.lifecycle_state == "InService" or s.lifecycle_state.startswith("Terminating"))]
        cluster = cluster_of(group, backend, serving) if running else None
        if cluster and cluster in backend.clusters:
            for s in running:
                if boots(s.instance.image_id):
                    live[s.instance.id] = cluster
    registered = {}
    for cluster, by_id in list(backend.container_instances.items()):
        if cluster == "orphaned":
            continue
        for ci_id, ci in list(by_id.items()):
            if live.get(ci.ec2_instance_id) == cluster:
                registered[ci.ec2_instance_id] = ci
            elif ci.ec2_instance_id in state.sim().launched:
                # Its instance left the group or terminated: the agent disconnects, ECS deregisters.
                del by_id[ci_id]
                backend.clusters[cluster].registered_container_instances_count -= 1
    for instance_id, cluster in live.items():
        if instance_id not in registered:
            backend.register_container_instance(cluster, instance_id)


def describe_scaling_activities(self: AutoScalingResponse):
    """The activities recorded here (failed launches, launches a lifecycle hook abandoned), newest
    first, with AWS's filters and paging. moto records none; successful launches and terminations
    are not recorded either."""
    name = self._get_param("AutoScalingGroupName")
    ids = self._get_param("ActivityIds") or []
    found = [
        (at, activity)
        for (account, region, group), records in state.sim().activities.items()
        if (account, region) == (self.current_account, self.region) and (not name or group == name)
        for at, activity in records
        if not ids or activity["ActivityId"] in ids
    ]
    found.sort(key=lambda item: item[0], reverse=True)
    start = int(self._get_param("NextToken") or 0)
    size = self._get_int_param("MaxRecords") or 100
    result = {"Activities": [activity for _, activity in found[start:start + size]]}
    if start + size < len(found):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


_original_create_group = AutoScalingBackend.create_auto_scaling_group


def _create_auto_scaling_group(self: AutoScalingBackend, *args, **kwargs):
    """The account's first group makes its Auto Scaling service-linked role (AWS User Guide,
    "Service-linked roles for Amazon EC2 Auto Scaling"): recorded for keys.role_exists."""
    group = _original_create_group(self, *args, **kwargs)
    state.sim().autoscaling_accounts.add(self.account_id)
    return group


def named_group(backend: AutoScalingBackend, name: str):
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def install() -> None:
    FakeAutoScalingGroup.active_instances = _active_instances
    AutoScalingBackend.create_auto_scaling_group = _create_auto_scaling_group
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _recording_replace
    InstanceState.launch_template = property(_instance_launch_template)
    FakeAutoScalingGroup.launch_template = property(_group_launch_template)
    AutoScalingResponse.describe_scaling_activities = describe_scaling_activities
