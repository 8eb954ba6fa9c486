"""Seed a realistic fleet into the local AWS through its public API (boto3), and print a JSON
manifest of what was made. Used by the tests, the demo and the benches.

The fleet: a VPC with two subnets in two AZs; three AMIs made from the ECS-optimized AL2023 image
(`current`, the `golden` candidate, and `bad`, for rollback demos); the SSM parameter
/ami/linux/prod holding the current AMI; two ECS clusters, each backed by an Auto Scaling group
through a capacity provider (prod's with managed termination protection, so its instances are
protected from scale-in), each running two services; a plain `web` group; CloudWatch alarms; and
optionally N more plain groups for scale tests. Every group is tagged ami-rollout:enabled=true
and uses a launch template pinned to version 1.

With --brownfield the same groups (and a fourth, `mixed-capacity`, with a mixed instances policy)
have a past, made through the same public API and the scaled clock as it would have happened on
AWS: an older golden AMI `previous`, five launch template versions per group, default versions
that are not what the groups run, groups on `$Latest`, `$Default` and a pinned number, and several
finished instance refreshes per group (Successful, RollbackSuccessful, Cancelled), including one
to the version each group runs now. Every instance still runs the `current` AMI at the end.

`seed_reach` makes a rollout's reach instead: a central account with the AMIs (shared with the
workload accounts) in several regions, workload accounts with tagged groups on them, and the role
the functions assume into each workload account with an ExternalId (see its docstring).
`make_copy_keys` adds the central account's customer managed KMS key per region that AMI copies
are encrypted with.
"""

import argparse
import base64
import json
import os
import sys
import urllib.request
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from . import launcher, stack

ECS_AL2023 = "ami-05fb4f257abd42992"  # moto's copy of the public ECS-optimized AL2023 AMI
TAG = {"Key": "ami-rollout:enabled", "Value": "true", "PropagateAtLaunch": False}


def clients(endpoint: str, region: str):
    kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
              aws_secret_access_key="testing")
    return {s: boto3.client(s, **kw) for s in ("ec2", "autoscaling", "ecs", "cloudwatch", "ssm")}


def _base_ami(ec2) -> str:
    """moto's ECS-optimized AL2023 AMI where its catalogue has it; elsewhere (moto's catalogue
    differs per region) an HVM x86_64 Amazon AMI of the region, so that every region's AMIs are
    HVM as on AWS (an unknown id would launch a paravirtual builder)."""
    try:
        ec2.describe_images(ImageIds=[ECS_AL2023])
        return ECS_AL2023
    except ClientError:
        images = ec2.describe_images(Owners=["amazon"], Filters=[
            {"Name": "virtualization-type", "Values": ["hvm"]}, {"Name": "architecture", "Values": ["x86_64"]}])
        return min(i["ImageId"] for i in images["Images"])


def make_ami(ec2, subnet, name: str) -> str:
    builder = ec2.run_instances(ImageId=_base_ami(ec2), MinCount=1, MaxCount=1, InstanceType="t3.micro",
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


# --- brownfield: a fleet with a past -------------------------------------------------------------

FINISHED = ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")
# Past rollouts' preferences. Warmup 300 s is one real second on the default scale: long enough
# to stop a refresh at a chosen point, and the seed moves the clock on instead of waiting.
PAST_PREFS = {"MinHealthyPercentage": 50, "InstanceWarmup": 300, "SkipMatching": False,
              "ScaleInProtectedInstances": "Refresh", "StandbyInstances": "Ignore"}
STEP = 400  # simulated seconds per advance: more than a warmup, less than the one-hour stall timeout
STALL_STEP = 3700  # past the one-hour stall timeout in one advance
# Config-only versions change these, never UserData: moto stores a new version's UserData
# unparsed and then fails every launch from it (the rollout itself only ever changes ImageId).
IMDS_HOP_2 = {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}
OVERRIDES = [{"InstanceType": "m7i.large"}, {"InstanceType": "m6i.large"}, {"InstanceType": "m5.large"}]


class Past:
    """Plays a group's history through the public API, moving the scaled clock with the control
    endpoint (POST /_localaws/advance) so that refreshes finish in milliseconds of wall time."""

    def __init__(self, c, endpoint: str, instances: int):
        self.c, self.asg, self.ec2 = c, c["autoscaling"], c["ec2"]
        self.control = endpoint.rstrip("/") + "/_localaws"
        self.instances = instances

    def post(self, action: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.control}/{action}", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as answer:
            return json.load(answer)

    def version(self, template: str, source: int, description: str, **data) -> int:
        return self.ec2.create_launch_template_version(
            LaunchTemplateId=template, SourceVersion=str(source), VersionDescription=description,
            LaunchTemplateData=data)["LaunchTemplateVersion"]["VersionNumber"]

    def set_default(self, template: str, version: int) -> None:
        self.ec2.modify_launch_template(LaunchTemplateId=template, DefaultVersion=str(version))

    def point(self, group: str, template: str, reference: str) -> None:
        """Point a plain group at `reference` ($Latest, $Default or a number), as a rollout that
        restores the group's reference style does after a refresh."""
        self.asg.update_auto_scaling_group(AutoScalingGroupName=group, LaunchTemplate={
            "LaunchTemplateId": template, "Version": reference})

    def describe(self, group: str, refresh_id: str) -> dict:
        return self.asg.describe_instance_refreshes(AutoScalingGroupName=group,
                                                    InstanceRefreshIds=[refresh_id])["InstanceRefreshes"][0]

    def play(self, group: str, refresh_id: str, until=lambda r: r["Status"] in FINISHED, step: float = STEP) -> dict:
        for _ in range(200):
            refresh = self.describe(group, refresh_id)
            if until(refresh):
                return refresh
            if refresh["Status"] in FINISHED:
                raise RuntimeError(f"seed: refresh of {group} ended {refresh['Status']} early: {refresh['StatusReason']}")
            self.post("advance", {"seconds": step})
        raise RuntimeError(f"seed: refresh {refresh_id} of {group} did not get there: {refresh}")

    def start(self, group: str, template: str, version: int, mixed: bool = False, **prefs) -> str:
        spec = {"LaunchTemplateId": template, "Version": str(version)}
        if mixed:
            desired = {"MixedInstancesPolicy": {"LaunchTemplate": {"LaunchTemplateSpecification": spec,
                                                                   "Overrides": OVERRIDES}}}
        else:
            desired = {"LaunchTemplate": spec}
        return self.asg.start_instance_refresh(AutoScalingGroupName=group, DesiredConfiguration=desired,
                                               Preferences={**PAST_PREFS, **prefs})["InstanceRefreshId"]

    def refresh(self, group: str, template: str, version: int, mixed: bool = False, step: float = STEP,
                **prefs) -> dict:
        """A refresh to `version` that runs to its end."""
        return self.play(group, self.start(group, template, version, mixed, **prefs), step=step)

    def midway(self, refresh: dict) -> bool:
        """Part of the instances replaced, the rest still to go (the first batch, with one instance)."""
        return refresh["Status"] == "InProgress" and \
            refresh["PercentageComplete"] >= min(50, 100 - 100 // max(self.instances, 1))

    def rolled_back(self, group: str, template: str, version: int, mixed: bool = False) -> dict:
        """A refresh to `version` that an operator rolled back midway (RollbackInstanceRefresh)."""
        refresh_id = self.start(group, template, version, mixed, InstanceWarmup=600)
        self.play(group, refresh_id, until=self.midway, step=700)
        self.asg.rollback_instance_refresh(AutoScalingGroupName=group)
        return self.play(group, refresh_id, step=700)

    def cancelled(self, group: str, template: str, version: int) -> dict:
        """A refresh to `version` cancelled while its first batch warmed up: the new instance stays."""
        refresh_id = self.start(group, template, version, InstanceWarmup=600)
        self.play(group, refresh_id, until=lambda r: r["Status"] == "InProgress")
        self.asg.cancel_instance_refresh(AutoScalingGroupName=group)
        return self.play(group, refresh_id)

    def failed_health_checks(self, group: str, template: str, version: int, image: str) -> dict:
        """A refresh with AutoRollback to a version whose AMI never passed health checks: it failed
        after the one-hour stall timeout and rolled itself back."""
        self.post("bad-ami", {"imageId": image, "mode": "boot"})
        try:
            return self.refresh(group, template, version, step=STALL_STEP, AutoRollback=True)
        finally:
            self.post("bad-ami", {"imageId": image, "mode": None})


def brownfield_history(past: Past, groups: dict, amis: dict) -> dict:
    """Each main group's past, oldest first; returns per group the refreshes made (id, version,
    status). Versions 1 were made with the groups (AMI `previous`). Refreshes name the template by
    id and a numbered version, as the rollout does."""
    history = {key: [] for key in groups}

    def log(key, refresh):
        spec = refresh["DesiredConfiguration"].get("LaunchTemplate") or \
            refresh["DesiredConfiguration"]["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
        history[key].append({"id": refresh["InstanceRefreshId"], "version": int(spec["Version"]),
                             "status": refresh["Status"]})

    # web, on $Latest: a config change, a bad AMI rolled back by hand, the current AMI, a config fix.
    web, lt = groups["web"]["name"], groups["web"]["launchTemplateId"]
    v2 = past.version(lt, 1, "detailed monitoring", Monitoring={"Enabled": True})
    log("web", past.refresh(web, lt, v2))
    past.point(web, lt, "$Latest")
    v3 = past.version(lt, v2, "bad AMI", ImageId=amis["bad"])
    log("web", past.rolled_back(web, lt, v3))
    v4 = past.version(lt, v2, "current AMI", ImageId=amis["current"])
    log("web", past.refresh(web, lt, v4))
    past.point(web, lt, "$Latest")
    v5 = past.version(lt, v4, "IMDS hop limit 2", MetadataOptions=IMDS_HOP_2)
    log("web", past.refresh(web, lt, v5))
    past.point(web, lt, "$Latest")

    # ecs-batch-capacity, on $Default: defaults moved with each rollout; a cancelled refresh to a
    # bad AMI left one instance behind, which a second refresh to the current version replaced.
    batch, lt = groups["ecs-batch"]["name"], groups["ecs-batch"]["launchTemplateId"]
    v2 = past.version(lt, 1, "IMDS hop limit 2", MetadataOptions=IMDS_HOP_2)
    log("ecs-batch", past.refresh(batch, lt, v2))
    past.set_default(lt, v2)
    past.point(batch, lt, "$Default")
    v3 = past.version(lt, v2, "current AMI", ImageId=amis["current"])
    log("ecs-batch", past.refresh(batch, lt, v3))
    past.set_default(lt, v3)
    past.point(batch, lt, "$Default")
    v4 = past.version(lt, v3, "bad AMI", ImageId=amis["bad"])
    log("ecs-batch", past.cancelled(batch, lt, v4))
    log("ecs-batch", past.refresh(batch, lt, v3, SkipMatching=True))
    past.point(batch, lt, "$Default")
    past.version(lt, v3, "bigger instances (not rolled out)", InstanceType="m7i.xlarge")

    # ecs-prod-capacity, pinned: a config change, a bad AMI that failed its health checks and
    # rolled itself back, the current AMI; a later version never rolled out; default left behind.
    prod, lt = groups["ecs-prod"]["name"], groups["ecs-prod"]["launchTemplateId"]
    v2 = past.version(lt, 1, "IMDS hop limit 2", MetadataOptions=IMDS_HOP_2)
    log("ecs-prod", past.refresh(prod, lt, v2))
    past.set_default(lt, v2)
    v3 = past.version(lt, v2, "bad AMI", ImageId=amis["bad"])
    log("ecs-prod", past.failed_health_checks(prod, lt, v3, amis["bad"]))
    v4 = past.version(lt, v2, "current AMI", ImageId=amis["current"])
    log("ecs-prod", past.refresh(prod, lt, v4))
    past.version(lt, v4, "detailed monitoring (not rolled out)", Monitoring={"Enabled": True})

    # mixed-capacity, a mixed instances policy pinned to a number: refreshes through
    # DesiredConfiguration.MixedInstancesPolicy, one rolled back by hand.
    mixed, lt = groups["mixed"]["name"], groups["mixed"]["launchTemplateId"]
    v2 = past.version(lt, 1, "current AMI", ImageId=amis["current"])
    log("mixed", past.refresh(mixed, lt, v2, mixed=True))
    v3 = past.version(lt, v2, "bad AMI", ImageId=amis["bad"])
    log("mixed", past.rolled_back(mixed, lt, v3, mixed=True))
    v4 = past.version(lt, v2, "detailed monitoring", Monitoring={"Enabled": True})
    log("mixed", past.refresh(mixed, lt, v4, mixed=True))
    past.version(lt, v4, "bigger instances (not rolled out)", InstanceType="m7i.xlarge")
    return history


def make_mixed_group(c, name, subnets, ami, desired):
    template = c["ec2"].create_launch_template(
        LaunchTemplateName=f"{name}-lt",
        LaunchTemplateData={
            "ImageId": ami,
            "InstanceType": OVERRIDES[0]["InstanceType"],
            "MetadataOptions": {"HttpTokens": "required"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
        },
    )["LaunchTemplate"]
    c["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
                "Overrides": OVERRIDES,
            },
            "InstancesDistribution": {"OnDemandBaseCapacity": desired, "OnDemandPercentageAboveBaseCapacity": 100,
                                      "SpotAllocationStrategy": "price-capacity-optimized"},
        },
        MinSize=0, MaxSize=max(desired * 2, 2), DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(subnets), HealthCheckGracePeriod=60,
        Tags=[{**TAG, "ResourceId": name, "ResourceType": "auto-scaling-group"}],
    )
    arn = c["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    return {"name": name, "launchTemplateId": template["LaunchTemplateId"], "arn": arn}


def _describe_template(ec2, template_id: str) -> dict:
    return ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]


def _group_reference(group: dict) -> str:
    if group.get("LaunchTemplate"):
        return group["LaunchTemplate"].get("Version") or "$Default"
    return group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"].get("Version") or "$Default"


def describe_past(c, groups: dict, amis: dict, history: dict) -> dict:
    """The manifest's view of each brownfield group, checked: every instance runs `current`."""
    described = {g["AutoScalingGroupName"]: g for g in c["autoscaling"].describe_auto_scaling_groups(
        AutoScalingGroupNames=[g["name"] for g in groups.values()])["AutoScalingGroups"]}
    out = {}
    for key, group in groups.items():
        asg = described[group["name"]]
        template = _describe_template(c["ec2"], group["launchTemplateId"])
        reference = _group_reference(asg)
        version = {"$Latest": template["LatestVersionNumber"],
                   "$Default": template["DefaultVersionNumber"]}.get(reference) or int(reference)
        ids = [i["InstanceId"] for i in asg["Instances"]]
        images = {i["ImageId"] for r in c["ec2"].describe_instances(InstanceIds=ids)["Reservations"]
                  for i in r["Instances"]} if ids else set()
        if images != {amis["current"]}:
            raise RuntimeError(f"seed: brownfield group {group['name']} ends on {images}, not {amis['current']}")
        out[key] = {"name": group["name"], "launchTemplateId": group["launchTemplateId"], "reference": reference,
                    "version": version, "defaultVersion": template["DefaultVersionNumber"],
                    "latestVersion": template["LatestVersionNumber"], "refreshes": history.get(key, [])}
    return out


def network(ec2, region: str) -> tuple[str, list]:
    """A VPC with a /24 subnet in each of two AZs."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    return vpc, subnets


def main_groups(c, subnets, ami: str, instances: int) -> dict:
    """The three groups every fleet has: ECS capacity for prod (protected) and batch, and web."""
    return {
        "ecs-prod": make_group(c, "ecs-prod-capacity", subnets, ami, instances,
                               user_data="#!/bin/bash\necho ECS_CLUSTER=prod >> /etc/ecs/ecs.config\n", protected=True),
        "ecs-batch": make_group(c, "ecs-batch-capacity", subnets, ami, instances,
                                user_data="#!/bin/bash\necho ECS_CLUSTER=batch >> /etc/ecs/ecs.config\n"),
        "web": make_group(c, "web", subnets, ami, instances),
    }


def seed(endpoint: str, region: str = "us-east-1", extra_groups: int = 0, instances: int = 2,
         brownfield: bool = False) -> dict:
    if brownfield:
        return seed_brownfield(endpoint, region, extra_groups, instances)
    c = clients(endpoint, region)
    ec2 = c["ec2"]
    vpc, subnets = network(ec2, region)
    amis = {name: make_ami(ec2, subnets[0], f"ami-rollout-{name}") for name in ("current", "golden", "bad")}
    c["ssm"].put_parameter(Name="/ami/linux/prod", Value=amis["current"], Type="String", DataType="aws:ec2:image")
    groups = {
        **main_groups(c, subnets, amis["current"], instances),
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


def seed_brownfield(endpoint: str, region: str = "us-east-1", extra_groups: int = 0, instances: int = 2) -> dict:
    """The standard fleet with a past (see the module's docstring), plus `mixed-capacity`."""
    c = clients(endpoint, region)
    ec2 = c["ec2"]
    vpc, subnets = network(ec2, region)
    amis = {name: make_ami(ec2, subnets[0], f"ami-rollout-{name}") for name in ("previous", "current", "golden", "bad")}
    # The parameter held the previous golden before the current one.
    c["ssm"].put_parameter(Name="/ami/linux/prod", Value=amis["previous"], Type="String", DataType="aws:ec2:image")
    c["ssm"].put_parameter(Name="/ami/linux/prod", Value=amis["current"], Type="String", DataType="aws:ec2:image",
                           Overwrite=True)
    groups = {
        **main_groups(c, subnets, amis["previous"], instances),
        "mixed": make_mixed_group(c, "mixed-capacity", subnets, amis["previous"], 2),
    }
    past = Past(c, endpoint, instances)
    past.point("web", groups["web"]["launchTemplateId"], "$Latest")
    past.point("ecs-batch-capacity", groups["ecs-batch"]["launchTemplateId"], "$Default")
    clusters = {
        "prod": make_cluster(c, "prod", groups["ecs-prod"], True, ("api", "worker")),
        "batch": make_cluster(c, "batch", groups["ecs-batch"], False, ("ingest", "reports")),
    }
    history = brownfield_history(past, groups, amis)
    described = describe_past(c, groups, amis, history)
    alarms = []
    for name, metric in (("web-5xx", "HTTPCode_Target_5XX_Count"), ("prod-api-errors", "ErrorCount")):
        c["cloudwatch"].put_metric_alarm(AlarmName=name, MetricName=metric, Namespace="AmiRollout/Demo",
                                         Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                         ComparisonOperator="GreaterThanOrEqualToThreshold")
        alarms.append(name)
    extra = add_plain_groups(c, vpc, amis["current"], extra_groups, region)
    described.update({k: {"name": v["name"], "launchTemplateId": v["launchTemplateId"]} for k, v in extra.items()})
    return {"region": region, "vpc": vpc, "subnets": subnets, "amis": amis, "parameter": "/ami/linux/prod",
            "groups": described, "clusters": clusters, "alarms": alarms, "brownfield": True}


# --- reach: a central account rolling out into workload accounts, several regions ------------

REACH_GROUPS = ("web", "api")


def account_client(endpoint: str, service: str, region: str, account: str):
    """A boto3 client that acts in `account`: moto's `x-moto-account-id` header selects the account
    of each request whatever the credentials (the seed's way in before any role exists; it is not
    an AWS feature, and nothing but the seed sends it)."""
    client = boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
                          aws_secret_access_key="testing")

    def select(request, **_):
        request.headers["x-moto-account-id"] = account

    client.meta.events.register_first("before-sign.*.*", select)
    return client


def account_clients(endpoint: str, region: str, account: str) -> dict:
    return {s: account_client(endpoint, s, region, account) for s in ("ec2", "autoscaling", "ecs", "cloudwatch", "ssm")}


# The operator role of workload-account-role.yaml, for the CLI.
OPERATOR_ROLE = "ami-rollout-operator"
WORKLOAD_TEMPLATE = Path(__file__).resolve().parents[3] / "infra/aws/workload-account-role.yaml"


def workload_roles(iam, account: str, central: str, role_name: str, external_id: str) -> None:
    """The roles of infra/aws/workload-account-role.yaml in `account`, as that template makes them
    (its trust policies and permissions, evaluated for these parameters): the workload role the
    functions assume, and the read-only operator role, trusting the central account itself."""
    template = stack.Stack({}, {"CentralAccountId": central, "ExternalId": external_id, "RoleName": role_name,
                                "OperatorPrincipalArn": f"arn:aws:iam::{central}:root"},
                           account=account, template=stack.load(WORKLOAD_TEMPLATE))
    resources = template.template["Resources"]
    fleet_read = iam.create_policy(
        PolicyName="ami-rollout-FleetReadPolicy",
        PolicyDocument=json.dumps(template.value(resources["FleetReadPolicy"]["Properties"]["PolicyDocument"])),
    )["Policy"]["Arn"]
    template.physical["FleetReadPolicy"] = fleet_read
    for logical in ("WorkloadRole", "OperatorRole"):
        props = template.value(resources[logical]["Properties"])
        iam.create_role(RoleName=props["RoleName"], MaxSessionDuration=props["MaxSessionDuration"],
                        AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                        Description=f"ami-rollout {logical} (local seed, from workload-account-role.yaml)")
        for arn in props.get("ManagedPolicyArns", []):
            iam.attach_role_policy(RoleName=props["RoleName"], PolicyArn=arn)
        for policy in props.get("Policies", []):
            iam.put_role_policy(RoleName=props["RoleName"], PolicyName=policy["PolicyName"],
                                PolicyDocument=json.dumps(policy["PolicyDocument"]))


def seed_reach(endpoint: str, central: str = "123456789012", workloads=("111111111111", "222222222222"),
               regions=("us-east-1", "eu-west-1"), role_name: str = "ami-rollout-workload",
               external_id: str = "local-external-id", without_role=("333333333333",), golden_missing_in=(),
               instances: int = 1, past: bool = False) -> dict:
    """A rollout's reach: the central account holds the AMIs (`current`, `golden`, `bad`, the same
    names in every region, `golden` left out of the regions in `golden_missing_in`) and
    /ami/linux/prod (`current`) in every region, and shares each AMI with every workload account.
    Every workload account (`workloads` and `without_role`) has in every region a network and the
    tagged groups `web` and `api` (`instances` each, template version 1) on that region's `current`;
    with `past`, each group has a past there (`reach_history`). The accounts of `workloads` have
    the role `role_name`, trusting the central account with `external_id`, and the read-only
    operator role `OPERATOR_ROLE` the CLI assumes; the ones in `without_role` have neither. Returns the manifest (JSON-able)."""
    workloads, without_role, regions = list(workloads), list(without_role), list(regions)
    targets = workloads + [a for a in without_role if a not in workloads]
    manifest = {"central": central, "regions": regions, "roleName": role_name, "externalId": external_id,
                "amis": {}, "accounts": {a: {} for a in targets}, "withoutRole": without_role}
    for region in regions:
        c = account_clients(endpoint, region, central)
        _, subnets = network(c["ec2"], region)
        names = [n for n in ("current", "golden", "bad") if n != "golden" or region not in golden_missing_in]
        amis = {name: make_ami(c["ec2"], subnets[0], f"ami-rollout-{name}") for name in names}
        for image in amis.values():
            c["ec2"].modify_image_attribute(ImageId=image, LaunchPermission={
                "Add": [{"UserId": account} for account in targets]})
        c["ssm"].put_parameter(Name="/ami/linux/prod", Value=amis["current"], Type="String",
                               DataType="aws:ec2:image")
        manifest["amis"][region] = amis
        for account in targets:
            w = account_clients(endpoint, region, account)
            _, subnets = network(w["ec2"], region)
            groups = {name: make_group(w, name, subnets, amis["current"], instances) for name in REACH_GROUPS}
            manifest["accounts"][account][region] = {"groups": {
                k: {"name": v["name"], "launchTemplateId": v["launchTemplateId"]} for k, v in groups.items()}}
            if past:
                for name, reference in reach_history(Past(w, endpoint, instances), groups, amis).items():
                    manifest["accounts"][account][region]["groups"][name]["reference"] = reference
    for account in workloads:
        workload_roles(account_client(endpoint, "iam", regions[0], account), account, central, role_name, external_id)
    return manifest


def reach_history(past: Past, groups: dict, amis: dict) -> dict:
    """A workload group's past, played in its own account: `web` refreshed to a config change,
    then to a bad AMI rolled back by hand midway, then to another config change, and left on
    `$Latest` (version 4, the current AMI); `api` refreshed to a config change made its default
    and left on `$Default` (version 2). Returns each group's launch template reference."""
    web, lt = groups["web"]["name"], groups["web"]["launchTemplateId"]
    v2 = past.version(lt, 1, "detailed monitoring", Monitoring={"Enabled": True})
    past.refresh(web, lt, v2)
    past.point(web, lt, "$Latest")
    v3 = past.version(lt, v2, "bad AMI", ImageId=amis["bad"])
    past.rolled_back(web, lt, v3)
    v4 = past.version(lt, v2, "IMDS hop limit 2", MetadataOptions=IMDS_HOP_2)
    past.refresh(web, lt, v4)
    past.point(web, lt, "$Latest")
    api, lt = groups["api"]["name"], groups["api"]["launchTemplateId"]
    v2 = past.version(lt, 1, "IMDS hop limit 2", MetadataOptions=IMDS_HOP_2)
    past.refresh(api, lt, v2)
    past.set_default(lt, v2)
    past.point(api, lt, "$Default")
    return {"web": "$Latest", "api": "$Default"}


COPY_KEY_ALIAS = "alias/ami-rollout-copies"


def copy_key_policy(central: str, workloads) -> dict:
    """The key policy of a region's AMI-copy key: the central account administers it; the workload
    accounts may use it and create grants for AWS resources (their Auto Scaling service-linked role),
    as the EC2 user guide's cross-account policy for encrypted AMIs has it (enforced: keys.py)."""
    accounts = [f"arn:aws:iam::{account}:root" for account in workloads]
    return {"Version": "2012-10-17", "Id": "ami-rollout-copies", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{central}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow use of the key by the workload accounts", "Effect": "Allow",
         "Principal": {"AWS": accounts}, "Resource": "*",
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
         "Principal": {"AWS": accounts}, "Resource": "*",
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}}},
    ]}


def make_copy_keys(endpoint: str, central: str, regions, workloads=("111111111111", "222222222222")) -> dict:
    """A symmetric customer managed key per region in the central account, aliased
    `alias/ami-rollout-copies`, for AMI copies encrypted there; its policy lets `workloads` (by
    default seed_reach's) use it. Returns {region: key ARN}. Idempotent: a region whose alias
    exists keeps its key."""
    keys = {}
    for region in regions:
        kms = account_client(endpoint, "kms", region, central)
        aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        if aliases.get(COPY_KEY_ALIAS):
            keys[region] = kms.describe_key(KeyId=aliases[COPY_KEY_ALIAS])["KeyMetadata"]["Arn"]
            continue
        key = kms.create_key(Description=f"ami-rollout: AMI copies in {region}", KeyUsage="ENCRYPT_DECRYPT",
                             KeySpec="SYMMETRIC_DEFAULT", Policy=json.dumps(copy_key_policy(central, workloads)),
                             Tags=[{"TagKey": "ami-rollout", "TagValue": "copies"}])["KeyMetadata"]
        kms.create_alias(AliasName=COPY_KEY_ALIAS, TargetKeyId=key["KeyId"])
        keys[region] = key["Arn"]
    return keys


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="localaws seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--extra-groups", type=int, default=0, help="plain groups of one instance each")
    parser.add_argument("--instances", type=int, default=2, help="instances in each of the three main groups")
    parser.add_argument("--brownfield", action="store_true",
                        help="groups with a past: many template versions, $Latest/$Default/pinned references, "
                             "finished refreshes, and a mixed instances group")
    parser.add_argument("--manifest", type=Path, default=launcher.DEFAULT_RUN_DIR / "seed.json",
                        help="where the seed's manifest is kept; printed again when seeded already")
    args = parser.parse_args(argv)
    if not args.endpoint:
        sys.exit("seed: no endpoint; pass --endpoint or source the env file written by `localaws up`")
    # Seeding twice would make a second fleet beside the first (and fail on its names): a local
    # AWS that has the seed's groups is seeded already, and its manifest is printed again.
    autoscaling = clients(args.endpoint, args.region)["autoscaling"]
    seeded = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"]
    if seeded and args.manifest.exists():
        sys.stdout.write(args.manifest.read_text())
        return
    if seeded:
        sys.exit("seed: this local AWS is seeded already (group web exists) and its manifest is gone; "
                 "start over with `make local-down local-up local-seed`")
    manifest = seed(args.endpoint, args.region, args.extra_groups, args.instances, args.brownfield)
    text = json.dumps(manifest, indent=1) + "\n"
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    args.manifest.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()


def make_organization(endpoint: str, central: str = "123456789012", accounts: int = 2,
                      suspended: int = 1) -> dict:
    """An organization managed by the central account: an organizational unit `workloads` holding
    a child unit `team`, `accounts` active accounts spread over the two, and `suspended` more
    that were closed (Organizations lists them, not ACTIVE). moto chooses the account ids: seed the
    reach with the ones returned. Returns {"root", "unit", "child", "accounts", "suspended"}."""
    organizations = account_client(endpoint, "organizations", "us-east-1", central)
    organizations.create_organization(FeatureSet="ALL")
    root = organizations.list_roots()["Roots"][0]["Id"]
    unit = organizations.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    child = organizations.create_organizational_unit(ParentId=unit, Name="team")["OrganizationalUnit"]["Id"]
    made = {"root": root, "unit": unit, "child": child, "accounts": [], "suspended": []}
    for i in range(accounts + suspended):
        status = organizations.create_account(Email=f"workload-{i}@example.com", AccountName=f"workload-{i}")
        account = status["CreateAccountStatus"]["AccountId"]
        organizations.move_account(AccountId=account, SourceParentId=root,
                                   DestinationParentId=unit if i % 2 == 0 else child)
        if i < accounts:
            made["accounts"].append(account)
        else:
            organizations.close_account(AccountId=account)
            made["suspended"].append(account)
    return made
