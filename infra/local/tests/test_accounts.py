"""Several accounts and regions as a rollout from a central account sees them (localaws/accounts.py,
the cross-account part of localaws/images.py, seed.seed_reach): STS AssumeRole refused as AWS
refuses it (role, trust policy, ExternalId, TagSession, session name), AMIs shared with workload
accounts through launch permissions, and the seeded reach fleet.

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests -p 'test_accounts*'
(from the repository root). Starts its own local AWS (moto + extensions, no ministack) on a free
loopback port; LOCALAWS_PLAIN=1 runs the same against plain moto, where these tests fail.
"""

import json
import sys
import unittest
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOCAL = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LOCAL))

from localaws import deploy, seed  # noqa: E402
from localserver import LocalServerTestCase

CENTRAL, W1, W2, NO_ROLE = "123456789012", "111111111111", "222222222222", "333333333333"
REGIONS = ("us-east-1", "eu-west-1")
ROLE = "ami-rollout-workload"
EXTERNAL_ID = "local-external-id"
CONFIG = Config(retries={"max_attempts": 1})
# The caller: a role of the central stack (the workload role trusts only `role/<stack>/*`), with the
# session the local Lambda would give a function of it.
CALLER_ROLE = "ami-rollout-test-caller"
DEFAULT_CALLER = f"arn:aws:sts::{CENTRAL}:assumed-role/{CALLER_ROLE}/ami-rollout-test"


def role_arn(account, name=ROLE):
    return f"arn:aws:iam::{account}:role/{name}"


class Accounts(LocalServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        request = urllib.request.Request(f"{cls.endpoint}/_localaws/reset", data=b"{}", method="POST")
        urllib.request.urlopen(request).close()
        cls.reach = seed.seed_reach(cls.endpoint, golden_missing_in=("eu-west-1",))
        iam = seed.account_client(cls.endpoint, "iam", "us-east-1", CENTRAL)
        # Under the central stack's path, as its function roles are (the seeded workload role
        # trusts `role/ami-rollout/*`).
        arn = iam.create_role(RoleName=CALLER_ROLE, Path="/ami-rollout/", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        iam.put_role_policy(RoleName=CALLER_ROLE, PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                                                    "Resource": "*"}]}))
        keys = deploy.assume_as_lambda(cls.endpoint, arn, "ami-rollout-test")
        cls.caller = {"AccessKeyId": keys["AWS_ACCESS_KEY_ID"], "SecretAccessKey": keys["AWS_SECRET_ACCESS_KEY"],
                      "SessionToken": keys["AWS_SESSION_TOKEN"]}

    # --- helpers -------------------------------------------------------------------------------

    def client(self, service, region="us-east-1", credentials=None):
        """A client with the default credentials (the central account) or a session's."""
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if credentials:
            keys = {"aws_access_key_id": credentials["AccessKeyId"],
                    "aws_secret_access_key": credentials["SecretAccessKey"],
                    "aws_session_token": credentials["SessionToken"]}
        return boto3.client(service, endpoint_url=self.endpoint, region_name=region, config=CONFIG, **keys)

    def assume(self, account=W1, name=ROLE, credentials=None, **kwargs):
        kwargs.setdefault("RoleSessionName", "ami-rollout-test")
        return self.client("sts", credentials=credentials or self.caller).assume_role(
            RoleArn=role_arn(account, name), **kwargs)

    def in_account(self, account, service, region):
        """The workload account's own administrator (what its role may not do, the account may)."""
        return seed.account_client(self.endpoint, service, region, account)

    def workload(self, account=W1):
        return self.assume(account, ExternalId=EXTERNAL_ID)["Credentials"]

    def refused(self, code, status, call, *args, **kwargs):
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        response = caught.exception.response
        self.assertEqual((response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]),
                         (code, status), response["Error"])
        return response["Error"]["Message"]

    def denied(self, account=W1, name=ROLE, caller=DEFAULT_CALLER, action="sts:AssumeRole", **kwargs):
        message = self.refused("AccessDenied", 403, self.assume, account, name, **kwargs)
        self.assertEqual(message, f"User: {caller} is not authorized to perform: {action} "
                                  f"on resource: {role_arn(account, name)}")

    def make_role(self, account, name, trust):
        iam = seed.account_client(self.endpoint, "iam", "us-east-1", account)
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        self.addCleanup(iam.delete_role, RoleName=name)

    def central_image(self, region="us-east-1", name="private"):
        """An AMI of the central account that is shared with nobody."""
        ec2 = self.client("ec2", region)
        base = self.reach["amis"][region]["current"]
        builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        image = ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
        ec2.terminate_instances(InstanceIds=[builder])
        return image

    def fleet(self, account, region):
        url = f"{self.endpoint}/_localaws/fleet?account={account}&region={region}"
        with urllib.request.urlopen(url) as answer:
            return json.load(answer)

    # --- AssumeRole ----------------------------------------------------------------------------

    def test_assume_role_with_the_external_id_acts_in_the_workload_account(self):
        answer = self.assume(W1, ExternalId=EXTERNAL_ID, RoleSessionName="exec-1",
                             Tags=[{"Key": "ami-rollout:execution",
                                    "Value": f"arn:aws:states:us-east-1:{CENTRAL}:execution:ami-rollout:x"}])
        self.assertTrue(answer["Credentials"]["AccessKeyId"].startswith("ASIA"))
        self.assertEqual(answer["AssumedRoleUser"]["Arn"], f"arn:aws:sts::{W1}:assumed-role/{ROLE}/exec-1")
        credentials = answer["Credentials"]
        identity = self.client("sts", credentials=credentials).get_caller_identity()
        self.assertEqual((identity["Account"], identity["Arn"]), (W1, f"arn:aws:sts::{W1}:assumed-role/{ROLE}/exec-1"))
        for region in REGIONS:
            groups = self.client("autoscaling", region, credentials).describe_auto_scaling_groups()["AutoScalingGroups"]
            self.assertEqual(sorted(g["AutoScalingGroupName"] for g in groups), ["api", "web"], region)
            self.assertEqual({g["LaunchTemplate"]["LaunchTemplateId"] for g in groups},
                             {g["launchTemplateId"] for g in self.reach["accounts"][W1][region]["groups"].values()})
        # The central account's own view is untouched: it has no groups.
        self.assertEqual(self.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"], [])

    def test_a_missing_role_is_refused(self):
        self.denied(NO_ROLE, ExternalId=EXTERNAL_ID)
        self.denied(W1, "no-such-role", ExternalId=EXTERNAL_ID)

    def test_a_wrong_or_missing_external_id_is_refused(self):
        self.denied(W1, ExternalId="wrong-external-id")
        self.denied(W1)

    def test_an_untrusted_principal_is_refused(self):
        # A session of a role in workload account 1, allowed to assume roles, is not the central
        # account that workload 2 trusts.
        self.make_role(W1, "chainer", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{CENTRAL}:root"}, "Action": "sts:AssumeRole"}]})
        iam = seed.account_client(self.endpoint, "iam", "us-east-1", W1)
        iam.put_role_policy(RoleName="chainer", PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
        self.addCleanup(iam.delete_role_policy, RoleName="chainer", PolicyName="assume")
        session = self.assume(W1, "chainer")["Credentials"]
        caller = f"arn:aws:sts::{W1}:assumed-role/chainer/ami-rollout-test"
        self.denied(W2, caller=caller, credentials=session, ExternalId=EXTERNAL_ID)
        # A role that trusts only another account refuses the central account.
        self.make_role(W2, "other-trust", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole"}]})
        self.denied(W2, "other-trust")
        # A role that trusts another role by ARN takes that role's sessions (role chaining).
        self.make_role(W2, "chained", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [role_arn(W1, "chainer")]}, "Action": "sts:AssumeRole"}]})
        chained = self.assume(W2, "chained", credentials=session)
        self.assertEqual(chained["AssumedRoleUser"]["Arn"], f"arn:aws:sts::{W2}:assumed-role/chained/ami-rollout-test")
        self.denied(W2, "chained")

    def test_session_tags_need_sts_tag_session(self):
        self.make_role(W2, "no-tags", {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{CENTRAL}:root"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]})
        tags = [{"Key": "ami-rollout:execution", "Value": "arn:aws:states:us-east-1:123456789012:execution:x:y"}]
        self.denied(W2, "no-tags", action="sts:TagSession", ExternalId=EXTERNAL_ID, Tags=tags)
        self.denied(W2, "no-tags", action="sts:TagSession", ExternalId=EXTERNAL_ID,
                    Tags=tags, TransitiveTagKeys=["ami-rollout:execution"])
        self.assume(W2, "no-tags", ExternalId=EXTERNAL_ID)  # without tags it is allowed

    def test_wildcards_account_principal_and_string_like(self):
        self.make_role(W2, "wildcards", {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": CENTRAL}, "Action": "sts:*",
            "Condition": {"StringLike": {"sts:ExternalId": "local-*"},
                          # the caller is a role of the central stack
                          "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{CENTRAL}:role/ami-rollout/*"}}}]})
        self.assume(W2, "wildcards", ExternalId="local-anything", Tags=[{"Key": "k", "Value": "v"}])
        self.denied(W2, "wildcards", ExternalId="remote-anything")
        self.make_role(W2, "denied", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"AWS": CENTRAL}, "Action": "sts:AssumeRole"}]})
        self.denied(W2, "denied")

    def test_a_bad_session_name_is_a_validation_error(self):
        # (botocore itself refuses a name shorter than 2 before sending it)
        for name in ("has space", "n" * 65, "slash/name"):
            message = self.refused("ValidationError", 400, self.assume, W1, ExternalId=EXTERNAL_ID,
                                   RoleSessionName=name)
            self.assertIn("roleSessionName", message, name)
        self.assume(W1, ExternalId=EXTERNAL_ID, RoleSessionName="ok+=,.@-_" + "n" * 55)

    def test_a_session_longer_than_the_role_allows_is_a_validation_error(self):
        self.refused("ValidationError", 400, self.assume, W1, ExternalId=EXTERNAL_ID, DurationSeconds=7200)

    # --- AMIs shared across accounts -------------------------------------------------------------

    def test_shared_amis_are_visible_in_the_workload_account_by_id_owner_and_filter(self):
        ec2 = self.in_account(W1, "ec2", "us-east-1")
        amis = self.reach["amis"]["us-east-1"]
        by_id = ec2.describe_images(ImageIds=[amis["current"], amis["golden"]])["Images"]
        self.assertEqual(sorted(i["ImageId"] for i in by_id), sorted([amis["current"], amis["golden"]]))
        for image in by_id:
            self.assertEqual(image["OwnerId"], CENTRAL)
            self.assertFalse(image["Public"])
            self.assertEqual(image.get("Tags", []), [], "the owner's tags are not the workload account's")
        owned = ec2.describe_images(Owners=[CENTRAL])["Images"]
        self.assertEqual({i["Name"]: i["ImageId"] for i in owned},
                         {f"ami-rollout-{k}": v for k, v in amis.items()})
        self.assertEqual([i["ImageId"] for i in ec2.describe_images(
            Owners=[CENTRAL], Filters=[{"Name": "name", "Values": ["ami-rollout-golden"]}])["Images"]], [amis["golden"]])
        self.assertEqual(ec2.describe_images(Owners=["self"])["Images"], [])
        shared = {i["ImageId"] for i in ec2.describe_images(ExecutableUsers=["self"])["Images"]}
        self.assertTrue(set(amis.values()) <= shared)
        # Tags are the owner's: a tag filter finds nothing in the workload account.
        self.assertEqual(ec2.describe_images(Owners=[CENTRAL], Filters=[
            {"Name": "tag:Name", "Values": ["ami-rollout-current"]}])["Images"], [])
        # The owner still sees its tags.
        mine = self.client("ec2").describe_images(ImageIds=[amis["current"]])["Images"][0]
        self.assertEqual(mine["Tags"], [{"Key": "Name", "Value": "ami-rollout-current"}])

    def test_unshared_amis_and_other_regions_are_not_visible(self):
        private = self.central_image()
        ec2 = self.in_account(W1, "ec2", "us-east-1")
        self.refused("InvalidAMIID.NotFound", 400, ec2.describe_images, ImageIds=[private])
        self.assertNotIn(private, {i["ImageId"] for i in ec2.describe_images(Owners=[CENTRAL])["Images"]})
        eu = self.in_account(W1, "ec2", "eu-west-1")
        self.refused("InvalidAMIID.NotFound", 400, eu.describe_images,
                     ImageIds=[self.reach["amis"]["us-east-1"]["current"]])
        self.assertEqual({i["Name"] for i in eu.describe_images(Owners=[CENTRAL])["Images"]},
                         {"ami-rollout-current", "ami-rollout-bad"}, "no golden in eu-west-1")

    def test_launches_in_a_workload_account_need_the_ami_shared(self):
        ec2 = self.in_account(W1, "ec2", "us-east-1")
        private = self.central_image(name="private-launch")
        message = self.refused("InvalidAMIID.NotFound", 400, ec2.run_instances, ImageId=private, MinCount=1, MaxCount=1)
        self.assertIn(private, message)
        golden = self.reach["amis"]["us-east-1"]["golden"]
        instance = ec2.run_instances(ImageId=golden, MinCount=1, MaxCount=1)["Instances"][0]
        self.assertEqual(instance["ImageId"], golden)
        # Sharing it later lets it launch; taking the permission back refuses it again.
        central = self.client("ec2")
        central.modify_image_attribute(ImageId=private, LaunchPermission={"Add": [{"UserId": W1}]})
        ec2.run_instances(ImageId=private, MinCount=1, MaxCount=1)
        central.modify_image_attribute(ImageId=private, LaunchPermission={"Remove": [{"UserId": W1}]})
        self.refused("InvalidAMIID.NotFound", 400, ec2.run_instances, ImageId=private, MinCount=1, MaxCount=1)
        # A shared AMI its owner deregistered is not found either.
        central.modify_image_attribute(ImageId=private, LaunchPermission={"Add": [{"UserId": W1}]})
        central.deregister_image(ImageId=private)
        self.refused("InvalidAMIID.NotFound", 400, ec2.run_instances, ImageId=private, MinCount=1, MaxCount=1)

    def test_a_group_in_a_workload_account_launches_from_a_shared_ami(self):
        autoscaling = self.in_account(W2, "autoscaling", "eu-west-1")
        autoscaling.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=2)
        view = self.fleet(W2, "eu-west-1")["groups"]["web"]
        self.assertEqual([i["imageId"] for i in view["instances"]], [self.reach["amis"]["eu-west-1"]["current"]] * 2)
        autoscaling.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)

    # --- the seeded reach ------------------------------------------------------------------------

    def test_seed_reach_manifest(self):
        reach = self.reach
        self.assertEqual(set(reach), {"central", "regions", "roleName", "externalId", "amis", "accounts", "withoutRole"})
        self.assertEqual((reach["central"], reach["regions"], reach["roleName"], reach["externalId"], reach["withoutRole"]),
                         (CENTRAL, list(REGIONS), ROLE, EXTERNAL_ID, [NO_ROLE]))
        self.assertEqual(set(reach["amis"]["us-east-1"]), {"current", "golden", "bad"})
        self.assertEqual(set(reach["amis"]["eu-west-1"]), {"current", "bad"})
        self.assertTrue(set(reach["amis"]["us-east-1"].values()).isdisjoint(reach["amis"]["eu-west-1"].values()))
        self.assertEqual(set(reach["accounts"]), {W1, W2, NO_ROLE})
        for account, by_region in reach["accounts"].items():
            self.assertEqual(set(by_region), set(REGIONS), account)
            for region, where in by_region.items():
                self.assertEqual({k: g["name"] for k, g in where["groups"].items()}, {"web": "web", "api": "api"})
        json.dumps(reach)

    def test_seed_reach_central_account_in_every_region(self):
        for region in REGIONS:
            c = seed.clients(self.endpoint, region)
            amis = self.reach["amis"][region]
            self.assertEqual(c["ssm"].get_parameter(Name="/ami/linux/prod")["Parameter"]["Value"], amis["current"])
            images = c["ec2"].describe_images(Owners=["self"])["Images"]
            self.assertEqual({i["Name"]: i["ImageId"] for i in images}, {f"ami-rollout-{k}": v for k, v in amis.items()})
            for image in amis.values():
                permissions = c["ec2"].describe_image_attribute(ImageId=image, Attribute="launchPermission")
                self.assertEqual(sorted(p["UserId"] for p in permissions["LaunchPermissions"]), [W1, W2, NO_ROLE])

    def test_seed_reach_fleet_view_per_account_and_region(self):
        for account in (W1, W2, NO_ROLE):
            for region in REGIONS:
                view = self.fleet(account, region)
                self.assertEqual(sorted(view["groups"]), ["api", "web"], (account, region))
                for name, group in view["groups"].items():
                    self.assertEqual(group["launchTemplate"]["Version"], "1")
                    self.assertEqual(group["launchTemplate"]["LaunchTemplateId"],
                                     self.reach["accounts"][account][region]["groups"][name]["launchTemplateId"])
                    self.assertEqual([(i["imageId"], i["lifecycle"]) for i in group["instances"]],
                                     [(self.reach["amis"][region]["current"], "InService")], (account, region, name))
        self.assertEqual(self.fleet(CENTRAL, "eu-west-1")["groups"], {})
        described = self.client("autoscaling", "eu-west-1", self.workload(W1)).describe_auto_scaling_groups(
            AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        self.assertIn({"Key": "ami-rollout:enabled", "Value": "true", "PropagateAtLaunch": False,
                       "ResourceId": "web", "ResourceType": "auto-scaling-group"}, described["Tags"])

    def test_seed_reach_roles(self):
        for account in (W1, W2):
            role = seed.account_client(self.endpoint, "iam", "us-east-1", account).get_role(RoleName=ROLE)["Role"]
            self.assertEqual(role["Arn"], role_arn(account))
            trust = role["AssumeRolePolicyDocument"]
            if isinstance(trust, str):
                trust = json.loads(trust)
            self.assertEqual(trust["Statement"][0]["Principal"], {"AWS": f"arn:aws:iam::{CENTRAL}:root"})
            self.assertEqual(trust["Statement"][0]["Condition"], {
                "StringEquals": {"sts:ExternalId": EXTERNAL_ID},
                "ArnLike": {"aws:PrincipalArn": [f"arn:aws:iam::{CENTRAL}:role/ami-rollout/*",
                                                 f"arn:aws:iam::{CENTRAL}:role/ami-rollout-*"]}})
        self.refused("NoSuchEntity", 404, seed.account_client(self.endpoint, "iam", "us-east-1", NO_ROLE).get_role,
                     RoleName=ROLE)


if __name__ == "__main__":
    unittest.main()
