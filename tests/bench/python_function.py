"""The Python/boto3 baseline of the cold-start bench (DESIGN §8): a Lambda function written the
usual Python way, making the same AWS calls as our Rust function of the same name for the same
event (the bench checks the call counts match). It runs under awslambdaric, AWS's Python runtime
interface client: `python -m awslambdaric python_function.handler`. `BENCH_FUNCTION` picks
resolve-ami or check-ecs-health.

Like the Rust functions it builds its clients at init (all seven services), then answers.
"""

import json
import os

import boto3

SERVICES = ("ec2", "autoscaling", "ecs", "cloudwatch", "ssm", "s3", "dynamodb")
clients = {s: boto3.client(s) for s in SERVICES}


def resolve_ami(request):
    """Plan one rollout: the AMI, the named groups, their templates' rollback points, ECS links;
    then write the plan to S3 (one object per wave, one for the whole plan)."""
    ec2, asg, ecs = clients["ec2"], clients["autoscaling"], clients["ecs"]
    event, prefix = request["trigger"], f"plans/{request['execution']}/"
    # The settings document, as the Rust planner reads it.
    json.load(clients["s3"].get_object(Bucket=os.environ["PLANS_BUCKET"], Key="settings/settings.json")["Body"])
    ami = ec2.describe_images(ImageIds=[event["amiId"]])["Images"][0]
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=event["targets"])["AutoScalingGroups"]
    # Like the Rust planner: $Latest and $Default of every template in one call.
    heads = ec2.describe_launch_template_versions(Versions=["$Latest", "$Default"], MaxResults=200)
    versions = {(v["LaunchTemplateId"], str(v["VersionNumber"])): v for v in heads["LaunchTemplateVersions"]}
    points = [versions[(g["LaunchTemplate"]["LaunchTemplateId"], g["LaunchTemplate"]["Version"])] for g in groups]
    ec2.describe_images(ImageIds=sorted({v["LaunchTemplateData"]["ImageId"] for v in points}))
    cluster_arns = ecs.list_clusters()["clusterArns"]
    clusters = ecs.describe_clusters(clusters=cluster_arns)["clusters"]
    providers = ecs.describe_capacity_providers(
        capacityProviders=[p for c in clusters for p in c.get("capacityProviders", [])])["capacityProviders"]
    by_group = {p["autoScalingGroupProvider"]["autoScalingGroupArn"]: p["name"] for p in providers}
    plan = {"ami": {"id": ami["ImageId"], "name": ami.get("Name")},
            "waves": [[{"group": g["AutoScalingGroupName"],
                        "rollbackPoint": {"launchTemplateId": v["LaunchTemplateId"], "version": v["VersionNumber"],
                                          "imageId": v["LaunchTemplateData"]["ImageId"]},
                        "capacityProvider": by_group.get(g["AutoScalingGroupARN"])}
                       for g, v in zip(groups, points)]]}
    bucket = os.environ["PLANS_BUCKET"]
    for i, wave in enumerate(plan["waves"]):
        clients["s3"].put_object(Bucket=bucket, Key=f"{prefix}wave-{i:03}.json", Body=json.dumps(wave))
    clients["s3"].put_object(Bucket=bucket, Key=f"{prefix}plan.json", Body=json.dumps(plan))
    return {"ami": plan["ami"], "bucket": bucket, "key": f"{prefix}plan.json",
            "waves": [{"index": i, "key": f"{prefix}wave-{i:03}.json", "targets": len(w)}
                      for i, w in enumerate(plan["waves"])]}


def check_ecs_health(event):
    """One health verdict: the refresh, the alarms, then the instances and the ECS services."""
    ec2, asg, ecs, cw = clients["ec2"], clients["autoscaling"], clients["ecs"], clients["cloudwatch"]
    target, settings = event["target"], event["settings"].get("*", {})
    group, cluster = target["group"], target["ecs"]["cluster"]
    refresh = asg.describe_instance_refreshes(AutoScalingGroupName=group,
                                              InstanceRefreshIds=[event["refresh"]["id"]])["InstanceRefreshes"][0]
    alarms = cw.describe_alarms(AlarmNames=settings.get("alarmNames", []), StateValue="ALARM")["MetricAlarms"]
    if refresh["Status"] != "Successful" or alarms:
        return {"verdict": "IN_PROGRESS", "percentage": refresh.get("PercentageComplete", 0)}
    instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    reservations = ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in instances])["Reservations"]
    on_new_ami = all(i["ImageId"] == event["ami"]["id"] for r in reservations for i in r["Instances"])
    arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    container_instances = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
    services = ecs.describe_services(cluster=cluster, services=ecs.list_services(cluster=cluster)["serviceArns"])["services"]
    # Like the Rust check: each service's stopped tasks (described only when there are some).
    stopped = {s["serviceName"]: ecs.list_tasks(cluster=cluster, serviceName=s["serviceName"],
                                                desiredStatus="STOPPED")["taskArns"] for s in services}
    failed = [t for arns in stopped.values() if arns
              for t in ecs.describe_tasks(cluster=cluster, tasks=arns[:100])["tasks"]
              if t.get("stopCode") in ("TaskFailedToStart", "EssentialContainerExited")]
    steady = all(s["runningCount"] == s["desiredCount"] for s in services)
    healthy = on_new_ami and steady and not failed and all(c["agentConnected"] for c in container_instances)
    return {"verdict": "HEALTHY" if healthy else "VERIFYING", "failedTasks": len(failed)}


HANDLERS = {"resolve-ami": resolve_ami, "check-ecs-health": check_ecs_health, "none": lambda event: {}}


def handler(event, context):
    return HANDLERS[os.environ["BENCH_FUNCTION"]](event)
