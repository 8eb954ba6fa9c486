"""ECS services that behave like a scheduler over the cluster's container instances.

moto never starts service tasks and leaves every deployment IN_PROGRESS. Here, on every tick, each
ACTIVE service placed on EC2 capacity spreads its desired tasks over the cluster's ACTIVE container
instances whose agent is connected. Tasks on an instance whose AMI is marked bad for ECS keep failing: each one stops with
stopCode EssentialContainerExited every FAILED_TASK_EVERY simulated seconds, as a STOPPED task of
the service (ListTasks serviceName/desiredStatus works) and a service event. The PRIMARY
deployment's counts follow, and its rolloutState is COMPLETED exactly when running == desired.
"""

import datetime

from moto.ecs.models import EC2ContainerServiceBackend, Task

from . import clock, fleet, state

FAILED_TASK_EVERY = 60
KEEP_EVENTS = 100


def _utcnow():
    return clock.utcnow()


def _event(service, message):
    service.events.insert(0, {"id": f"{len(service.events) + 1}", "createdAt": _utcnow(), "message": message})
    del service.events[KEEP_EVENTS:]


def _stopped_task(backend, cluster, service, instance, reason):
    definition = backend.describe_task_definition(service.task_definition)
    task = Task(cluster, definition, instance.container_instance_arn, None, backend,
                group=f"service:{service.name}", launch_type="EC2",
                started_by=service.deployments[0]["id"] if service.deployments else "")
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stop_code = "EssentialContainerExited"
    task.stopped_reason = reason
    task.started_at = task.stopping_at = task.stopped_at = _utcnow()
    task.created_at = task.started_at
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task


def _reconcile_service(backend, cluster, service, instances, now, last_failure):
    desired = service.desired_count or 0
    bad = [ci for ci in instances if state.sim().bad_amis.get(ci.attributes.get("ecs.ami-id")) == "ecs"]
    if not instances:
        failing, running = 0, 0
    else:
        failing = min(desired, -(-desired * len(bad) // len(instances))) if bad else 0
        running = desired - failing
    was_steady = service.running_count == desired and bool(service.deployments) and \
        service.deployments[0].get("rolloutState") == "COMPLETED"
    service.running_count, service.pending_count = running, desired - running
    steady = running == desired
    key = (cluster.name, service.name)
    if failing and now - last_failure.get(key, -FAILED_TASK_EVERY) >= FAILED_TASK_EVERY:
        last_failure[key] = now
        reason = "Essential container in task exited"
        for ci in bad[:failing]:
            _stopped_task(backend, cluster, service, ci, reason)
        for deployment in service.deployments[:1]:
            deployment["failedTasks"] = (deployment.get("failedTasks") or 0) + failing
        _event(service, f"(service {service.name}) is unable to consistently start tasks successfully. "
                        f"For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
        _event(service, f"(service {service.name}) has stopped {failing} running tasks: {reason} "
                        f"(AMI {bad[0].attributes.get('ecs.ami-id')}).")
    for deployment in service.deployments[:1]:
        deployment.update(runningCount=running, pendingCount=desired - running, desiredCount=desired,
                          updatedAt=_utcnow())
        deployment["rolloutState"] = "COMPLETED" if steady else "IN_PROGRESS"
        deployment["rolloutStateReason"] = (f"ECS deployment {deployment['id']} completed." if steady
                                            else f"ECS deployment {deployment['id']} in progress.")
    if steady and not was_steady:
        _event(service, f"(service {service.name}) has reached a steady state.")


def tick(account, region) -> None:
    backend = fleet.ecs(account, region)
    now = state.sim().clock.now()
    last_failure = state.sim().last_failed_task
    for cluster in list(backend.clusters.values()):
        instances = [ci for ci in backend.container_instances.get(cluster.name, {}).values()
                     if ci.status == "ACTIVE" and ci.agent_connected]
        for service in list(backend.services.values()):
            if service.cluster_name != cluster.name or service.status != "ACTIVE":
                continue
            if service.launch_type == "FARGATE":
                continue
            _reconcile_service(backend, cluster, service, instances, now, last_failure)


_original_list_tasks = EC2ContainerServiceBackend.list_tasks


def _list_tasks(self, cluster_str=None, container_instance=None, family=None, started_by=None,
                service_name=None, desiredStatus=None):
    tasks = _original_list_tasks(self, cluster_str, container_instance, family, started_by, None, desiredStatus)
    if service_name:
        tasks = [t for t in tasks if t.group == f"service:{service_name.split('/')[-1]}"]
    return tasks


def install() -> None:
    EC2ContainerServiceBackend.list_tasks = _list_tasks
