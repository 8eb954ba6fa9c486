"""AMI copies into other regions as AWS makes them (localaws/copies.py), the KMS grants a rollout
gives workload accounts on the copies' key (localaws/grants.py), and seed.make_copy_keys.

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests -p 'test_copies*'
(from the repository root). Starts its own local AWS (moto + extensions, no ministack) on a free
loopback port; LOCALAWS_PLAIN=1 runs the same against plain moto, where these tests fail.
"""

import json
import sys
import unittest
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOCAL = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LOCAL))

from localaws import launcher, seed  # noqa: E402
from localserver import LocalServerTestCase, request

CENTRAL, WORKLOAD = "123456789012", "111111111111"
HOME, AWAY = "us-east-1", "eu-west-1"
BASE = seed.ECS_AL2023
DAY = 86400.0  # the copy time the tests set: long enough that real time never ends a copy
AUTOSCALING_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
GRANT_OPERATIONS = ["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                    "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant"]


class Copies(LocalServerTestCase):
    def setUp(self):
        request(f"{self.control}/reset", {})
        request(f"{self.control}/copy-time", {"seconds": DAY})
        self.home = self.client("ec2", HOME)
        self.away = self.client("ec2", AWAY)
        self.source = self.make_ami(self.home, "golden", {"Name": "golden", "team": "platform"})

    # --- helpers -------------------------------------------------------------------------------

    def client(self, service, region, account=CENTRAL):
        return seed.account_client(self.endpoint, service, region, account) if account != CENTRAL else \
            boto3.client(service, endpoint_url=self.endpoint, region_name=region, aws_access_key_id="testing",
                         aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))

    def make_ami(self, ec2, name, tags=None):
        builder = ec2.run_instances(ImageId=BASE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        specs = [{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        image = ec2.create_image(InstanceId=builder, Name=name, TagSpecifications=specs)["ImageId"]
        ec2.terminate_instances(InstanceIds=[builder])
        return image

    def copy(self, ec2=None, **kwargs):
        args = {"SourceRegion": HOME, "SourceImageId": self.source, "Name": "golden", **kwargs}
        return (ec2 or self.away).copy_image(**args)["ImageId"]

    def image(self, image_id, ec2=None):
        return (ec2 or self.away).describe_images(ImageIds=[image_id])["Images"][0]

    def advance(self, seconds):
        request(f"{self.control}/advance", {"seconds": seconds})

    def finish_copies(self):
        self.advance(DAY)

    def key(self, region=AWAY, **kwargs):
        return self.client("kms", region).create_key(Description="copies", **kwargs)["KeyMetadata"]

    def assert_error(self, code, call, *args, **kwargs):
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.response["Error"]["Code"], code, caught.exception.response["Error"])
        return caught.exception.response["Error"]["Message"]

    def ebs(self, image):
        return [m["Ebs"] for m in image["BlockDeviceMappings"] if "Ebs" in m]

    def group(self, account, region, image_id, desired=1):
        """A group of `account` in `region` launching `image_id`; its scaling activities and instances.
        An account's first group also makes its Auto Scaling service-linked role, as on AWS."""
        ec2, asg = self.client("ec2", region, account), self.client("autoscaling", region, account)
        template = ec2.create_launch_template(LaunchTemplateName=f"web-{len(asg.describe_auto_scaling_groups()['AutoScalingGroups'])}",
                                              LaunchTemplateData={"ImageId": image_id, "InstanceType": "t3.micro"})
        name = template["LaunchTemplate"]["LaunchTemplateName"]
        asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=2, DesiredCapacity=desired,
                                      AvailabilityZones=[f"{region}a"],
                                      LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"],
                                                      "Version": "1"})
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return asg.describe_scaling_activities(AutoScalingGroupName=name)["Activities"], group["Instances"]

    def uses_auto_scaling(self, account, region):
        self.group(account, region, BASE, desired=0)

    # --- timing --------------------------------------------------------------------------------

    def test_a_copy_is_pending_until_its_copy_time_has_passed_on_the_scaled_clock(self):
        self.assertEqual(request(f"{self.control}/copy-time", method="GET"), {"copySeconds": DAY})
        copy = self.copy()
        described = self.image(copy)
        self.assertEqual((described["State"], described["Name"], described["OwnerId"]),
                         ("pending", "golden", CENTRAL))
        self.assertEqual((described["SourceImageId"], described["SourceImageRegion"]), (self.source, HOME))
        pending = self.away.describe_images(Owners=["self"], Filters=[{"Name": "state", "Values": ["pending"]}])
        self.assertEqual([i["ImageId"] for i in pending["Images"]], [copy])
        [snapshot] = self.away.describe_snapshots(SnapshotIds=[self.ebs(described)[0]["SnapshotId"]])["Snapshots"]
        self.assertEqual(snapshot["State"], "pending")
        self.advance(DAY / 2)
        self.assertEqual(self.image(copy)["State"], "pending", "half way")
        self.advance(DAY / 2)
        self.assertEqual(self.image(copy)["State"], "available")
        [snapshot] = self.away.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"]
        self.assertEqual(snapshot["State"], "completed")
        self.away.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig={"Delay": 0, "MaxAttempts": 1})

    def test_the_copy_time_defaults_to_ten_minutes_and_a_copy_keeps_the_time_it_started_with(self):
        self.assertEqual(request(f"{self.control}/copy-time", {"seconds": None}), {"copySeconds": 600.0})
        copy = self.copy()
        request(f"{self.control}/copy-time", {"seconds": DAY})
        self.advance(601)
        self.assertEqual(self.image(copy)["State"], "available")

    def test_a_launch_from_a_pending_copy_is_refused_until_it_is_available(self):
        copy = self.copy()
        message = self.assert_error("InvalidAMIID.Unavailable", self.away.run_instances,
                                    ImageId=copy, MinCount=1, MaxCount=1)
        self.assertEqual(message, f"AMI '{copy}' is pending, and cannot be run")
        # An Auto Scaling launch fails the same way, as a scaling activity.
        asg = self.client("autoscaling", AWAY)
        template = self.away.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
            "ImageId": copy, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=0, MaxSize=2, DesiredCapacity=1,
                                      LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
                                      AvailabilityZones=[f"{AWAY}a"])
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        self.assertEqual(group["Instances"], [])
        [activity] = asg.describe_scaling_activities(AutoScalingGroupName="web")["Activities"]
        self.assertEqual((activity["StatusCode"], activity["StatusMessage"]),
                         ("Failed", f"AMI '{copy}' is pending, and cannot be run. Launching EC2 instance failed."))
        self.finish_copies()
        self.assertTrue(self.away.run_instances(ImageId=copy, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"])

    # --- tags ----------------------------------------------------------------------------------

    def test_copy_image_tags_copies_the_source_tags_and_tag_specifications_apply(self):
        copy = self.copy(CopyImageTags=True, TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "copied-by", "Value": "ami-rollout"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "for", "Value": "golden"}]}])
        described = self.image(copy)
        self.assertEqual({t["Key"]: t["Value"] for t in described["Tags"]},
                         {"Name": "golden", "team": "platform", "copied-by": "ami-rollout"})
        [snapshot] = self.away.describe_snapshots(SnapshotIds=[self.ebs(described)[0]["SnapshotId"]])["Snapshots"]
        self.assertEqual(snapshot["Tags"], [{"Key": "for", "Value": "golden"}])
        self.assertEqual(self.away.describe_images(Filters=[{"Name": "tag:team", "Values": ["platform"]}])["Images"][0]
                         ["ImageId"], copy)

    def test_without_copy_image_tags_no_tag_is_copied(self):
        copy = self.copy(Name="golden-untagged")
        self.assertEqual(self.image(copy).get("Tags", []), [])

    # --- encryption ----------------------------------------------------------------------------

    def test_an_encrypted_copy_shows_its_key_in_describe_images_and_describe_snapshots(self):
        key = self.key()
        copy = self.copy(Encrypted=True, KmsKeyId=key["Arn"])
        [ebs] = self.ebs(self.image(copy))
        self.assertEqual((ebs["Encrypted"], ebs["KmsKeyId"]), (True, key["Arn"]))
        [snapshot] = self.away.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"]
        self.assertEqual((snapshot["Encrypted"], snapshot["KmsKeyId"]), (True, key["Arn"]))
        self.finish_copies()
        self.assertEqual(self.image(copy)["State"], "available")
        [ebs] = self.ebs(self.image(copy))
        self.assertEqual(ebs["KmsKeyId"], key["Arn"], "still shown once available")

    def test_the_key_may_be_named_by_id_alias_or_alias_arn_and_is_shown_as_its_arn(self):
        key = self.key()
        self.client("kms", AWAY).create_alias(AliasName="alias/copies", TargetKeyId=key["KeyId"])
        for name, ident in (("by-id", key["KeyId"]), ("by-alias", "alias/copies"),
                            ("by-alias-arn", f"arn:aws:kms:{AWAY}:{CENTRAL}:alias/copies")):
            copy = self.copy(Name=name, Encrypted=True, KmsKeyId=ident)
            self.assertEqual(self.ebs(self.image(copy))[0]["KmsKeyId"], key["Arn"], name)

    def test_encrypted_without_a_key_uses_the_default_ebs_key(self):
        copy = self.copy(Encrypted=True)
        ebs_key = self.client("kms", AWAY).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
        [ebs] = self.ebs(self.image(copy))
        self.assertEqual((ebs["Encrypted"], ebs["KmsKeyId"]), (True, ebs_key["Arn"]))

    def test_an_unencrypted_copy_says_so_and_an_encrypted_source_stays_encrypted(self):
        plain = self.copy(Name="plain")
        [ebs] = self.ebs(self.image(plain))
        self.assertIs(ebs["Encrypted"], False)
        self.assertNotIn("KmsKeyId", ebs)
        key = self.key(region=HOME)
        encrypted = self.copy(self.home, Name="golden-encrypted", Encrypted=True, KmsKeyId=key["Arn"])
        self.advance(DAY)
        # Copied on without encryption parameters: still encrypted (the default key of the region);
        # asking for an unencrypted copy of it is refused.
        onward = self.copy(SourceImageId=encrypted, Name="golden-onward")
        self.assertIs(self.ebs(self.image(onward))[0]["Encrypted"], True)
        message = self.assert_error("InvalidRequest", self.copy, SourceImageId=encrypted, Name="golden-clear",
                                    Encrypted=False)
        self.assertIn("Creating unencrypted copy from an encrypted snapshot is not supported", message)

    def test_a_key_without_encrypted_is_refused(self):
        key = self.key()
        message = self.assert_error("InvalidParameterDependency", self.copy, KmsKeyId=key["Arn"])
        self.assertEqual(message, "The parameter KmsKeyId requires the parameter Encrypted to be set.")

    def test_a_key_missing_from_the_destination_region_fails_the_copy_not_the_call(self):
        home_key = self.key(region=HOME)
        disabled = self.key()
        self.client("kms", AWAY).disable_key(KeyId=disabled["KeyId"])
        copies = {
            "unknown": self.copy(Name="unknown-key", Encrypted=True,
                                 KmsKeyId=f"arn:aws:kms:{AWAY}:{CENTRAL}:key/00000000-0000-0000-0000-000000000000"),
            "other-region": self.copy(Name="home-key", Encrypted=True, KmsKeyId=home_key["Arn"]),
            "alias": self.copy(Name="no-alias", Encrypted=True, KmsKeyId="alias/nothing-here"),
            "disabled": self.copy(Name="disabled-key", Encrypted=True, KmsKeyId=disabled["Arn"]),
        }
        for what, copy in copies.items():
            self.assertEqual(self.image(copy)["State"], "pending", what)
        self.advance(61)
        for what, copy in copies.items():
            described = self.image(copy)
            self.assertEqual(described["State"], "failed", what)
            self.assertEqual(described["StateReason"]["Message"], "Copy image failed with an internal error", what)
            self.assert_error("InvalidAMIID.Unavailable", self.away.run_instances, ImageId=copy, MinCount=1,
                              MaxCount=1)

    def test_a_key_disabled_while_the_copy_runs_fails_it_at_its_end(self):
        key = self.key()
        copy = self.copy(Encrypted=True, KmsKeyId=key["Arn"])
        self.advance(61)
        self.assertEqual(self.image(copy)["State"], "pending")
        self.client("kms", AWAY).disable_key(KeyId=key["KeyId"])
        self.finish_copies()
        self.assertEqual(self.image(copy)["State"], "failed")

    # --- idempotence and names ------------------------------------------------------------------

    def test_the_same_client_token_returns_the_same_copy(self):
        key = self.key()
        args = dict(Encrypted=True, KmsKeyId=key["Arn"], CopyImageTags=True, ClientToken="execution-1#eu-west-1")
        first = self.copy(**args)
        self.assertEqual(self.copy(**args), first)
        self.finish_copies()
        self.assertEqual(self.copy(**args), first, "also once the copy is available")
        named = self.away.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["golden"]}])
        self.assertEqual([i["ImageId"] for i in named["Images"]], [first])
        self.assert_error("IdempotentParameterMismatch", self.copy, **{**args, "Description": "other"})
        # The token is per region: the same token in the home region is another request.
        home_args = {k: v for k, v in args.items() if k != "KmsKeyId"}
        self.assertNotEqual(self.copy(self.home, **home_args, Name="golden-home"), first)

    def test_an_ami_name_is_unique_per_owner_and_region(self):
        copy = self.copy()
        message = self.assert_error("InvalidAMIName.Duplicate", self.copy)
        self.assertEqual(message, f"AMI name golden is already in use by AMI {copy}")
        self.assert_error("InvalidAMIName.Duplicate", self.copy, ClientToken="another-token")
        # CreateImage and RegisterImage too, in the source's region.
        builder = self.home.run_instances(ImageId=BASE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        self.assert_error("InvalidAMIName.Duplicate", self.home.create_image, InstanceId=builder, Name="golden")
        self.assert_error("InvalidAMIName.Duplicate", self.home.register_image, Name="golden")
        # Another account may use the name in the same region; a deregistered AMI frees it.
        workload = self.client("ec2", AWAY, WORKLOAD)
        self.assertTrue(self.make_ami(workload, "golden"))
        self.away.deregister_image(ImageId=copy)
        self.assertNotEqual(self.copy(), copy)

    # --- sources --------------------------------------------------------------------------------

    def test_a_missing_or_deregistered_source_is_not_found(self):
        self.assert_error("InvalidAMIID.NotFound", self.copy, SourceImageId="ami-0123456789abcdef0")
        self.assert_error("InvalidAMIID.NotFound", self.copy, SourceRegion=AWAY, Name="wrong-region")
        self.home.deregister_image(ImageId=self.source)
        self.assert_error("InvalidAMIID.NotFound", self.copy)

    def test_an_ami_shared_with_the_account_can_be_copied_without_the_owners_tags(self):
        workload = self.client("ec2", AWAY, WORKLOAD)
        self.assert_error("InvalidAMIID.NotFound", self.copy, workload)
        self.home.modify_image_attribute(ImageId=self.source, LaunchPermission={"Add": [{"UserId": WORKLOAD}]})
        copy = self.copy(workload, CopyImageTags=True)
        described = self.image(copy, workload)
        self.assertEqual((described["OwnerId"], described.get("Tags", [])), (WORKLOAD, []))

    # --- sharing the copy -----------------------------------------------------------------------

    def test_a_copy_encrypted_with_the_aws_managed_key_cannot_be_shared(self):
        managed = self.copy(Encrypted=True)
        own_key = self.copy(Name="golden-cmk", Encrypted=True, KmsKeyId=self.key()["Arn"])
        self.finish_copies()
        message = self.assert_error("InvalidParameter", self.away.modify_image_attribute, ImageId=managed,
                                    LaunchPermission={"Add": [{"UserId": WORKLOAD}]})
        self.assertIn("Snapshots encrypted with the AWS Managed CMK", message)
        self.away.modify_image_attribute(ImageId=own_key, LaunchPermission={"Add": [{"UserId": WORKLOAD}]})
        shared = self.client("ec2", AWAY, WORKLOAD).describe_images(ImageIds=[own_key])["Images"]
        self.assertEqual([i["ImageId"] for i in shared], [own_key])

    # --- KMS grants -----------------------------------------------------------------------------

    def test_a_grant_to_another_accounts_auto_scaling_role_is_listed_with_its_operations(self):
        key = self.key()
        self.uses_auto_scaling(WORKLOAD, AWAY)
        kms = self.client("kms", AWAY)
        grantee = f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}"
        created = kms.create_grant(KeyId=key["Arn"], GranteePrincipal=grantee, Operations=GRANT_OPERATIONS,
                                   Name=f"ami-rollout-{WORKLOAD}")
        [grant] = kms.list_grants(KeyId=key["KeyId"])["Grants"]
        self.assertEqual((grant["GrantId"], grant["GranteePrincipal"], grant["KeyId"], grant["Name"]),
                         (created["GrantId"], grantee, key["Arn"], f"ami-rollout-{WORKLOAD}"))
        self.assertEqual(sorted(grant["Operations"]), sorted(GRANT_OPERATIONS))
        self.assertEqual(grant["IssuingAccount"], f"arn:aws:iam::{CENTRAL}:root")
        self.assertIn("CreationDate", grant)
        # The same name and parameters again (a retry): the same grant, a new token.
        again = kms.create_grant(KeyId=key["Arn"], GranteePrincipal=grantee, Operations=GRANT_OPERATIONS,
                                 Name=f"ami-rollout-{WORKLOAD}")
        self.assertEqual(again["GrantId"], created["GrantId"])
        self.assertNotEqual(again["GrantToken"], created["GrantToken"])
        self.assertEqual(len(kms.list_grants(KeyId=key["Arn"])["Grants"]), 1)
        # Filters: grantee; the workload account lists it through the key ARN (cross-account use).
        self.assertEqual(kms.list_grants(KeyId=key["Arn"], GranteePrincipal="arn:aws:iam::1:root")["Grants"], [])
        theirs = self.client("kms", AWAY, WORKLOAD).list_grants(KeyId=key["Arn"])["Grants"]
        self.assertEqual([g["GrantId"] for g in theirs], [created["GrantId"]])

    def test_a_grant_made_by_the_workload_account_on_the_central_key(self):
        key = self.key()
        self.uses_auto_scaling(WORKLOAD, AWAY)
        theirs = self.client("kms", AWAY, WORKLOAD)
        theirs.create_grant(KeyId=key["Arn"], GranteePrincipal=f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}",
                            Operations=["Decrypt", "CreateGrant"])
        [grant] = self.client("kms", AWAY).list_grants(KeyId=key["KeyId"])["Grants"]
        self.assertEqual(grant["IssuingAccount"], f"arn:aws:iam::{WORKLOAD}:root")

    def test_grant_errors_are_awss(self):
        key = self.key()
        kms = self.client("kms", AWAY)
        grantee = f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}"
        missing = f"arn:aws:kms:{AWAY}:{CENTRAL}:key/00000000-0000-0000-0000-000000000000"
        message = self.assert_error("NotFoundException", kms.create_grant, KeyId=missing, GranteePrincipal=grantee,
                                    Operations=["Decrypt"])
        self.assertEqual(message, f"Key '{missing}' does not exist")
        self.assert_error("NotFoundException", kms.list_grants, KeyId=missing)
        kms.create_alias(AliasName="alias/copies", TargetKeyId=key["KeyId"])
        self.assertEqual(self.assert_error("InvalidArnException", kms.create_grant, KeyId="alias/copies",
                                           GranteePrincipal=grantee, Operations=["Decrypt"]),
                         "Key Aliases are not supported for this operation.")
        self.assert_error("ValidationException", kms.create_grant, KeyId=key["Arn"], GranteePrincipal=grantee,
                          Operations=["Decrypt", "Launch"])
        self.assert_error("ValidationException", kms.create_grant, KeyId=key["Arn"], GranteePrincipal=grantee,
                          Operations=["Sign"])
        kms.disable_key(KeyId=key["KeyId"])
        self.assertEqual(self.assert_error("DisabledException", kms.create_grant, KeyId=key["Arn"],
                                           GranteePrincipal=grantee, Operations=["Decrypt"]),
                         f"{key['Arn']} is disabled.")

    def test_a_grant_to_an_auto_scaling_role_an_account_does_not_have_yet_is_refused(self):
        key, grantee = self.key(), f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}"
        kms = self.client("kms", AWAY)
        message = self.assert_error("InvalidArnException", kms.create_grant, KeyId=key["Arn"],
                                    GranteePrincipal=grantee, Operations=["Decrypt"])
        self.assertIn(grantee, message)
        self.uses_auto_scaling(WORKLOAD, HOME)  # the role is global: a group in any region makes it
        kms.create_grant(KeyId=key["Arn"], GranteePrincipal=grantee, Operations=["Decrypt"])

    # --- keys in use (keys.py) -------------------------------------------------------------------

    def encrypted_for(self, account, key_policy_accounts=(WORKLOAD,)):
        """An AMI of the central account in AWAY encrypted under a key whose policy lets
        `key_policy_accounts` use it, shared with `account`; (image id, key ARN)."""
        request(f"{self.control}/copy-time", {"seconds": 1})
        key = self.key(Policy=json.dumps(seed.copy_key_policy(CENTRAL, key_policy_accounts)))
        image = self.copy(Encrypted=True, KmsKeyId=key["Arn"])
        self.finish_copies()
        self.away.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": account}]})
        return image, key["Arn"]

    def test_auto_scaling_launches_from_an_encrypted_ami_only_with_a_grant_for_its_service_linked_role(self):
        image, key = self.encrypted_for(WORKLOAD)
        # The key policy lets the workload account use the key, but its Auto Scaling role's own
        # policy has no KMS action: the instance is terminated at launch.
        activities, instances = self.group(WORKLOAD, AWAY, image)
        self.assertEqual(instances, [])
        self.assertEqual(activities[0]["StatusCode"], "Failed")
        self.assertIn("Client.InternalError: Client error on launch", activities[0]["StatusMessage"])
        self.client("kms", AWAY).create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}",
                                              Operations=GRANT_OPERATIONS)
        _, instances = self.group(WORKLOAD, AWAY, image)
        self.assertEqual(len(instances), 1)

    def test_a_grant_without_decrypt_does_not_let_auto_scaling_launch(self):
        image, key = self.encrypted_for(WORKLOAD)
        self.uses_auto_scaling(WORKLOAD, AWAY)
        self.client("kms", AWAY).create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}",
                                              Operations=["DescribeKey", "CreateGrant"])
        _, instances = self.group(WORKLOAD, AWAY, image)
        self.assertEqual(instances, [])

    def test_a_disabled_key_stops_every_launch_from_its_amis(self):
        image, key = self.encrypted_for(WORKLOAD)
        self.uses_auto_scaling(WORKLOAD, AWAY)
        self.client("kms", AWAY).create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{WORKLOAD}:{AUTOSCALING_ROLE}",
                                              Operations=GRANT_OPERATIONS)
        self.client("kms", AWAY).disable_key(KeyId=key.rsplit("/", 1)[-1])
        activities, instances = self.group(WORKLOAD, AWAY, image)
        self.assertEqual(instances, [])
        self.assertIn("Client error on launch", activities[0]["StatusMessage"])

    # --- seed and launcher ----------------------------------------------------------------------

    def test_make_copy_keys_makes_one_aliased_key_per_region_for_the_workload_accounts(self):
        keys = seed.make_copy_keys(self.endpoint, CENTRAL, (HOME, AWAY))
        self.assertEqual(set(keys), {HOME, AWAY})
        for region, arn in keys.items():
            self.assertTrue(arn.startswith(f"arn:aws:kms:{region}:{CENTRAL}:key/"), arn)
            kms = self.client("kms", region)
            metadata = kms.describe_key(KeyId=seed.COPY_KEY_ALIAS)["KeyMetadata"]
            self.assertEqual((metadata["Arn"], metadata["KeySpec"], metadata["KeyUsage"], metadata["KeyManager"]),
                             (arn, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "CUSTOMER"))
            policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
            principals = {p for s in policy["Statement"] for p in (
                s["Principal"]["AWS"] if isinstance(s["Principal"]["AWS"], list) else [s["Principal"]["AWS"]])}
            self.assertIn(f"arn:aws:iam::{WORKLOAD}:root", principals)
        self.assertEqual(seed.make_copy_keys(self.endpoint, CENTRAL, (HOME, AWAY)), keys, "idempotent")
        # What a rollout does with it: copy with the alias, shown as the key's ARN.
        copy = self.copy(Encrypted=True, KmsKeyId=seed.COPY_KEY_ALIAS)
        self.assertEqual(self.ebs(self.image(copy))[0]["KmsKeyId"], keys[AWAY])

    def test_the_launcher_points_kms_at_moto(self):
        self.assertIn("KMS", launcher.MOTO_SERVICES)
        self.assertIn("AWS_ENDPOINT_URL_KMS=http://127.0.0.1:4566", launcher.env_lines(4566, None))


if __name__ == "__main__":
    unittest.main()
