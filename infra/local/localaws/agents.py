"""ECS agents of standalone instances, whose container instance identity lives on the root volume,
and container instances that drain.

moto registers a container instance when asked and never changes it again, and its DRAINING
status moves no task. On AWS the agent keeps its container instance ARN in its data directory on
the root volume (/var/lib/ecs/data) and connects as that container instance at every start, or
registers a new one when it has none. Here, for an instance that no Auto Scaling group owns and
that registered in a cluster (RegisterContainerInstance), the identity is a file on its root
volume (the volume content of rootvolumes.py):

- while the instance runs, is not rebooting and boots its root's AMI, its agent is connected as the
  container instance that file names; a root without the file (a fresh root from an AMI)
  registers a new container instance in the same cluster (the user data that wrote ECS_CLUSTER
  runs again on a new root), with the AMI the instance reports, and the file is written;
- every other container instance of the instance is disconnected, and all of them are while it
  reboots;
- a root whose file names a container instance that was deregistered connects as nothing: the
  agent's re-registration with an inactive container instance fails, and it does not register a
  new one until its data directory is cleared.

Draining: a container instance set DRAINING keeps its service tasks for DRAIN_SECONDS (ECS starts
their replacements elsewhere first), then runs only the tasks no service started, which ECS never
drains. runningTasksCount counts both: each ACTIVE, connected container instance runs its share of
the cluster's EC2 service tasks, plus its RUNNING tasks that no service started (StartTask,
RunTask).
"""

from moto.ecs.models import EC2ContainerServiceBackend

from . import fleet, rootvolumes, state

IDENTITY_FILE = "/var/lib/ecs/data/ecs_agent_data.json"
DRAIN_SECONDS = 120.0

_original_register = EC2ContainerServiceBackend.register_container_instance
_original_update_state = EC2ContainerServiceBackend.update_container_instances_state


def _instance(backend, instance_id: str):
    try:
        return fleet.ec2(backend.account_id, backend.region_name).get_instance(instance_id)
    except Exception:  # noqa: BLE001 (moto raises its own not-found error types)
        return None


def _standalone(backend, instance_id: str):
    """The EC2 instance, when no Auto Scaling group owns it."""
    instance = _instance(backend, instance_id)
    if instance is None:
        return None
    tags = {t["key"]: t["value"] for t in instance.get_tags()}
    owned = "aws:autoscaling:groupName" in tags or any(
        s.instance.id == instance_id
        for group in fleet.autoscaling_backends[backend.account_id][backend.region_name].autoscaling_groups.values()
        for s in group.instance_states)
    return None if owned else instance


def _root_files(instance) -> dict | None:
    _, root = rootvolumes.root_volume(instance)
    return None if root is None else state.sim().volume_files.setdefault(root.volume_id, {})


def _register(self, cluster_str, ec2_instance_id):
    ci = _original_register(self, cluster_str, ec2_instance_id)
    instance = _standalone(self, ec2_instance_id)
    files = _root_files(instance) if instance is not None else None
    if files is not None:
        state.sim().agent_clusters[(self.account_id, self.region_name, ec2_instance_id)] = ci.cluster_name
        files[IDENTITY_FILE] = ci.id
    return ci


def _update_state(self, cluster_str, list_container_instance_ids, status):
    updated, failures = _original_update_state(self, cluster_str, list_container_instance_ids, status)
    sim = state.sim()
    for ci in updated:
        key = (self.account_id, self.region_name, ci.container_instance_arn)
        if ci.status == "DRAINING":
            sim.drains.setdefault(key, sim.clock.now())
        else:
            sim.drains.pop(key, None)
    return updated, failures


def _up(instance) -> bool:
    return (instance.state == "running" and not rootvolumes.rebooting(instance)
            and fleet.boots(rootvolumes.booted_image(instance)))


def _connect(backend, cluster: str, instance_id: str) -> None:
    """The instance's agent, as its root and its state allow."""
    by_id = backend.container_instances.setdefault(cluster, {})
    instance = _instance(backend, instance_id)
    connected_as = None
    if instance is not None and _up(instance):
        files = _root_files(instance)
        if files is not None and IDENTITY_FILE not in files:
            ci = _original_register(backend, cluster, instance_id)
            files[IDENTITY_FILE] = ci.id
        connected_as = files.get(IDENTITY_FILE) if files is not None else None
    for ci in by_id.values():
        if ci.ec2_instance_id == instance_id:
            ci.agent_connected = ci.id == connected_as


def _service_tasks(backend, cluster, hosts: list) -> dict:
    """Each host's share of the cluster's EC2 service tasks, spread evenly in ARN order."""
    share = {ci.container_instance_arn: 0 for ci in hosts}
    ordered = sorted(share)
    for service in backend.services.values():
        if service.cluster_name != cluster.name or service.status != "ACTIVE" or service.launch_type == "FARGATE":
            continue
        for i in range(service.desired_count or 0):
            if ordered:
                share[ordered[i % len(ordered)]] += 1
    return share


def _count_tasks(backend, account, region) -> None:
    sim, now = state.sim(), state.sim().clock.now()
    for cluster in list(backend.clusters.values()):
        instances = list(backend.container_instances.get(cluster.name, {}).values())
        hosts = [ci for ci in instances if ci.status == "ACTIVE" and ci.agent_connected]
        share = _service_tasks(backend, cluster, hosts)
        unmanaged = {}
        for task in backend.tasks.get(cluster.name, {}).values():
            if task.last_status == "RUNNING" and not (task.group or "").startswith("service:"):
                unmanaged[task.container_instance_arn] = unmanaged.get(task.container_instance_arn, 0) + 1
        for ci in instances:
            arn = ci.container_instance_arn
            since = sim.drains.get((account, region, arn))
            if ci.status == "DRAINING" and since is not None and now - since < DRAIN_SECONDS:
                continue  # its service tasks still run while their replacements start elsewhere
            ci.running_tasks_count = share.get(arn, 0) + unmanaged.get(arn, 0)


def tick() -> None:
    for (account, region, instance_id), cluster in list(state.sim().agent_clusters.items()):
        backend = fleet.ecs(account, region)
        if cluster in backend.clusters:
            _connect(backend, cluster, instance_id)
    for account, region in {(a, r) for a, r, _ in state.sim().agent_clusters}:
        _count_tasks(fleet.ecs(account, region), account, region)


def install() -> None:
    EC2ContainerServiceBackend.register_container_instance = _register
    EC2ContainerServiceBackend.update_container_instances_state = _update_state
