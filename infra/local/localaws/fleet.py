"""Group instances and their ECS container instances.

moto launches group instances straight to InService and reports every instance's launch template
version as the template's default. Here each instance remembers the version it was launched
from, instances a refresh launches go through Pending and warmup, and an instance that runs in a
group linked to an ECS cluster (capacity provider, or ECS_CLUSTER in its user data) registers as a
container instance with the real `ecs.ami-id` attribute once it is InService, and is deregistered
when it terminates. An instance on an AMI marked bad for boot never passes its health check and so
never registers.
"""

import base64
import re

from moto.autoscaling.models import (
    FakeAutoScalingGroup,
    InstanceState,
    autoscaling_backends,
)
from moto.cloudwatch.models import cloudwatch_backends
from moto.ec2.models import ec2_backends
from moto.ecs.models import ecs_backends

from . import state

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


def _recording_replace(self, count_needed, propagated_tags):
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


def launch(group, version: int, count: int) -> list:
    """Launch `count` instances from `version` of the group's template; they start Pending."""
    saved = group.launch_template_version
    group.launch_template_version = str(version)
    try:
        before = {s.instance.id for s in group.instance_states}
        _recording_replace(group, count, group.get_propagated_tags())
    finally:
        group.launch_template_version = saved
    fresh = [s for s in group.instance_states if s.instance.id not in before]
    for s in fresh:
        s.lifecycle_state = "Pending"
    return fresh


def terminate(group, states: list) -> None:
    ids = [s.instance.id for s in states]
    group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
    if ids:
        group.ec2_backend.terminate_instances(ids)


def boots(image_id: str) -> bool:
    return state.sim().bad_amis.get(image_id) != "boot"


def cluster_of(account, region, group) -> str | None:
    backend = ecs(account, region)
    for provider in backend.capacity_providers.values():
        asg = provider.auto_scaling_group_provider.get("autoScalingGroupArn", "")
        if asg in (group.arn, group.name) or asg.endswith(f"autoScalingGroupName/{group.name}"):
            for cluster in backend.clusters.values():
                if provider.name in (cluster.capacity_providers or []):
                    return cluster.name
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
    live = {}
    for group in autoscaling_backends[account][region].autoscaling_groups.values():
        cluster = cluster_of(account, region, group)
        if cluster and cluster in backend.clusters:
            for s in group.instance_states:
                if s.lifecycle_state == "InService" and s.instance.state == "running" and boots(s.instance.image_id):
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


def install() -> None:
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _recording_replace
    InstanceState.launch_template = property(_instance_launch_template)
