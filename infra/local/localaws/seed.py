"""Seed a realistic fleet into the local AWS through its public API (boto3), and print a JSON
manifest of what was made. Used by the tests, the demo and the benches.

The fleet: a VPC with two subnets in two AZs; three AMIs made from the ECS-optimized AL2023 image
(`current`, the `golden` candidate, and `bad`, for rollback demos); the SSM parameter
/ami/linux/prod holding the current AMI; two ECS clusters, each backed by an Auto Scaling group
through a capacity provider (prod's with managed termination protection, so its instances are
protected from scale-in), each running two services; a plain `web` group; CloudWatch alarms; and
optionally N more plain groups for scale tests. Every group is tagged ami-rollout:enabled=true
and uses a launch template pinned to version 1.
"""

import argparse
import base64
import json
import os
import sys

import boto3

ECS_AL2023 = "ami-05fb4f257abd42992"  # moto's copy of the public ECS-optimized AL2023 AMI
TAG = {"Key": "ami-rollout:enabled", "Value": "true", "PropagateAtLaunch": False}


def clients(endpoint: str, region: str):
    kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
              aws_secret_access_key="testing")
    return {s: boto3.client(s, **kw) for s in ("ec2", "autoscaling", "ecs", "cloudwatch", "ssm")}


def make_ami(ec2, subnet, name: str) -> str:
    builder = ec2.run_instances(ImageId=ECS_AL2023, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                SubnetId=subnet)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=builder, Name=name,
                             TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "Name", "Value": name}]}])
    ec2.terminate_instances(InstanceIds=[builder])
    return image["ImageId"]


def make_group(c, name, subnets, ami, desired, user_data="", extra_tags=(), protected=False):
    template = c["ec2"].create_launch_template(
        LaunchTemplateName=f"{name}-lt",
        LaunchTemplateData={
            "ImageId": ami,
            "InstanceType": "m7i.large",
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "MetadataOptions": {"HttpTokens": "required"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
        },
    )["LaunchTemplate"]
    c["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
        MinSize=0, MaxSize=max(desired * 2, 2), DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(subnets), HealthCheckGracePeriod=60,
        NewInstancesProtectedFromScaleIn=protected,
        Tags=[{**TAG, "ResourceId": name, "ResourceType": "auto-scaling-group"}, *extra_tags],
    )
    arn = c["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    return {"name": name, "launchTemplateId": template["LaunchTemplateId"], "arn": arn}


def make_cluster(c, cluster, group, protected: bool, services):
    provider = f"{cluster}-capacity"
    c["ecs"].create_cluster(clusterName=cluster)
    c["ecs"].create_capacity_provider(name=provider, autoScalingGroupProvider={
        "autoScalingGroupArn": group["arn"],
        "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
        "managedTerminationProtection": "ENABLED" if protected else "DISABLED",
        "managedDraining": "ENABLED",
    })
    c["ecs"].put_cluster_capacity_providers(
        cluster=cluster, capacityProviders=[provider],
        defaultCapacityProviderStrategy=[{"capacityProvider": provider, "weight": 1}])
    for service in services:
        c["ecs"].register_task_definition(family=service, containerDefinitions=[
            {"name": service, "image": f"public.ecr.aws/docker/library/{service}:latest",
             "memory": 256, "essential": True}])
        c["ecs"].create_service(cluster=cluster, serviceName=service, taskDefinition=service,
                                desiredCount=2,
                                capacityProviderStrategy=[{"capacityProvider": provider, "weight": 1}])
    return {"cluster": cluster, "capacityProvider": provider, "services": list(services)}


def add_plain_groups(c, vpc: str, ami: str, count: int, region: str = "us-east-1") -> dict:
    """`count` tagged groups of one instance each, in two /20 subnets of their own (the main
    subnets are /24s, too small for a thousand instances)."""
    if not count:
        return {}
    subnets = [c["ec2"].create_subnet(VpcId=vpc, CidrBlock=f"10.0.{16 * (i + 1)}.0/20",
                                      AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    return {name: make_group(c, name, subnets, ami, 1)
            for name in (f"fleet-{i + 1:04d}" for i in range(count))}


def seed(endpoint: str, region: str = "us-east-1", extra_groups: int = 0, instances: int = 2) -> dict:
    c = clients(endpoint, region)
    ec2 = c["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    amis = {name: make_ami(ec2, subnets[0], f"ami-rollout-{name}") for name in ("current", "golden", "bad")}
    c["ssm"].put_parameter(Name="/ami/linux/prod", Value=amis["current"], Type="String", DataType="aws:ec2:image")
    groups = {
        "ecs-prod": make_group(c, "ecs-prod-capacity", subnets, amis["current"], instances,
                               user_data="#!/bin/bash\necho ECS_CLUSTER=prod >> /etc/ecs/ecs.config\n", protected=True),
        "ecs-batch": make_group(c, "ecs-batch-capacity", subnets, amis["current"], instances,
                                user_data="#!/bin/bash\necho ECS_CLUSTER=batch >> /etc/ecs/ecs.config\n"),
        "web": make_group(c, "web", subnets, amis["current"], instances),
    }
    clusters = {
        "prod": make_cluster(c, "prod", groups["ecs-prod"], True, ("api", "worker")),
        "batch": make_cluster(c, "batch", groups["ecs-batch"], False, ("ingest", "reports")),
    }
    alarms = []
    for name, metric in (("web-5xx", "HTTPCode_Target_5XX_Count"), ("prod-api-errors", "ErrorCount")):
        c["cloudwatch"].put_metric_alarm(AlarmName=name, MetricName=metric, Namespace="AmiRollout/Demo",
                                         Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                         ComparisonOperator="GreaterThanOrEqualToThreshold")
        alarms.append(name)
    groups.update(add_plain_groups(c, vpc, amis["current"], extra_groups, region))
    return {"region": region, "vpc": vpc, "subnets": subnets, "amis": amis, "parameter": "/ami/linux/prod",
            "groups": {k: {"name": v["name"], "launchTemplateId": v["launchTemplateId"]} for k, v in groups.items()},
            "clusters": clusters, "alarms": alarms}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="localaws seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--extra-groups", type=int, default=0, help="plain groups of one instance each")
    parser.add_argument("--instances", type=int, default=2, help="instances in each of the three main groups")
    args = parser.parse_args(argv)
    if not args.endpoint:
        sys.exit("seed: no endpoint; pass --endpoint or source the env file written by `localaws up`")
    json.dump(seed(args.endpoint, args.region, args.extra_groups, args.instances), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
