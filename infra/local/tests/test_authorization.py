"""The local AWS says no where AWS says no: a role session may do only what its role's policies
allow (authorization.py, policy.py), with the template's own roles (deploy.create_roles) and the
workload role of workload-account-role.yaml (seed.workload_roles)."""

import json
import os
import sys
import unittest
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from localserver import LocalServerTestCase, request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localaws import deploy, seed  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"


class RoleSessions(LocalServerTestCase):
    """A private local AWS, and role sessions as the local Lambda gets them."""

    def setUp(self):
        request(f"{self.control}/reset")
        self.admin = {s: self.client(s) for s in ("ec2", "autoscaling", "iam", "ecs", "sts", "kms")}

    def client(self, service, keys=None, region=REGION):
        keys = keys or {"AccessKeyId": "testing", "SecretAccessKey": "testing", "SessionToken": None}
        return boto3.client(service, endpoint_url=self.endpoint, region_name=region,
                            aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                            aws_session_token=keys["SessionToken"])

    def role(self, name, statements, trust_service="lambda.amazonaws.com"):
        iam = self.admin["iam"]
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": trust_service}, "Action": "sts:AssumeRole"}]}))
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        return f"arn:aws:iam::{ACCOUNT}:role/{name}"

    def session(self, role_arn, name="fn"):
        """The role's credentials as the local Lambda gets them: AssumeRole as the Lambda service."""
        sts = self.admin["sts"]

        def as_lambda(request, **_):
            request.headers["x-localaws-service-principal"] = "lambda.amazonaws.com"

        sts.meta.events.register("before-sign.sts.AssumeRole", as_lambda)
        try:
            return sts.assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
        finally:
            sts.meta.events.unregister("before-sign.sts.AssumeRole", as_lambda)

    def refused(self, call, code):
        with self.assertRaises(ClientError) as caught:
            call()
        self.assertEqual(caught.exception.response["Error"]["Code"], code, caught.exception.response["Error"])
        return caught.exception.response["Error"]["Message"]

    def group_with_tagging_template(self, tagged=True):
        ec2, asg = self.admin["ec2"], self.admin["autoscaling"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        data = {"ImageId": ami, "InstanceType": "t3.micro"}
        if tagged:
            data["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}]
        lt = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData=data)["LaunchTemplate"]["LaunchTemplateId"]
        asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=2, DesiredCapacity=1,
                                      LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"}, VPCZoneIdentifier=subnet,
                                      Tags=[{"Key": "ami-rollout:enabled", "Value": "true", "PropagateAtLaunch": False}])
        return lt



class Authorization(RoleSessions):
    # --- the evaluation ------------------------------------------------------------------------

    def test_a_role_session_does_only_what_its_policies_allow(self):
        keys = self.session(self.role("reader", [{"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}]))
        ec2 = self.client("ec2", keys)
        ec2.describe_images(Owners=["amazon"])
        message = self.refused(lambda: ec2.describe_instances(), "UnauthorizedOperation")
        self.assertIn("assumed-role/reader/fn is not authorized to perform: ec2:DescribeInstances on resource: *",
                      message)
        asg = self.client("autoscaling", keys)
        self.refused(lambda: asg.describe_auto_scaling_groups(), "AccessDenied")
        ecs = self.client("ecs", keys)
        self.refused(lambda: ecs.list_clusters(), "AccessDeniedException")

    def test_the_administrator_is_not_checked(self):
        self.admin["ec2"].describe_instances()  # the seed's and the tests' own credentials

    def test_an_explicit_deny_wins(self):
        keys = self.session(self.role("denied", [
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:DescribeInstances", "Resource": "*"}]))
        message = self.refused(lambda: self.client("ec2", keys).describe_instances(), "UnauthorizedOperation")
        self.assertIn("explicit deny", message)

    def test_a_condition_key_the_local_aws_does_not_model_fails_closed(self):
        keys = self.session(self.role("vpc-only", [
            {"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-1"}}}]))
        self.refused(lambda: self.client("ec2", keys).describe_images(Owners=["amazon"]), "UnauthorizedOperation")
        # A Deny carrying such a key applies (AWS would send aws:SourceIp; the local AWS does not model it).
        keys = self.session(self.role("deny-by-ip", [
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:DescribeImages", "Resource": "*",
             "Condition": {"StringNotEquals": {"aws:SourceIp": "10.0.0.1"}}}]))
        self.refused(lambda: self.client("ec2", keys).describe_images(Owners=["amazon"]), "UnauthorizedOperation")
        self.client("ec2", keys).describe_instances()

    def test_resource_tags_are_read_from_the_resource(self):
        lt = self.group_with_tagging_template(tagged=False)
        keys = self.session(self.role("tagged-only", [
            {"Effect": "Allow", "Action": "autoscaling:StartInstanceRefresh", "Resource": "*",
             "Condition": {"StringEquals": {"autoscaling:ResourceTag/ami-rollout:enabled": "true"}}}]))
        asg = self.client("autoscaling", keys)
        asg.start_instance_refresh(AutoScalingGroupName="web")
        self.admin["autoscaling"].delete_tags(Tags=[{"ResourceId": "web", "ResourceType": "auto-scaling-group",
                                                     "Key": "ami-rollout:enabled"}])
        self.admin["autoscaling"].cancel_instance_refresh(AutoScalingGroupName="web")
        self.refused(lambda: asg.start_instance_refresh(AutoScalingGroupName="web"), "AccessDenied")
        self.assertTrue(lt)

    def test_a_role_lambda_may_not_assume_is_refused(self):
        arn = self.role("ec2-only", [{"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}],
                        trust_service="ec2.amazonaws.com")
        with self.assertRaises(ClientError):
            self.session(arn)

    def test_a_reset_keeps_the_deployed_roles_and_their_sessions(self):
        roles = deploy.create_roles(self.endpoint)
        keys = self.session(roles["resolve-ami"])
        request(f"{self.control}/reset")
        self.client("ec2", keys).describe_images(Owners=["amazon"])  # still the role's session
        self.assertEqual(self.admin["iam"].get_role(RoleName="ami-rollout-ResolveAmiRole")["Role"]["Arn"],
                         roles["resolve-ami"])

    # --- the template's roles (the defects a first deploy would hit) ------------------------------

    def test_the_health_check_may_list_an_ecs_services_and_its_tasks(self):
        ecs_admin = self.admin["ecs"]
        ecs_admin.create_cluster(clusterName="prod")
        keys = self.session(deploy.create_roles(self.endpoint)["check-ecs-health"])
        ecs = self.client("ecs", keys)
        ecs.list_services(cluster="prod")
        ecs.list_tasks(cluster="prod", serviceName="api", desiredStatus="STOPPED")

    def test_pin_refresh_and_restore_may_launch_from_a_template_that_tags_on_launch(self):
        lt = self.group_with_tagging_template()
        roles = deploy.create_roles(self.endpoint)
        update = self.client("autoscaling", self.session(roles["update-template"]))
        update.update_auto_scaling_group(AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateId": lt,
                                                                                     "Version": "1"})
        refresh = self.client("autoscaling", self.session(roles["start-refresh"]))
        refresh.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration={
            "LaunchTemplate": {"LaunchTemplateId": lt, "Version": "1"}})
        rollback = self.client("autoscaling", self.session(roles["rollback"]))
        rollback.cancel_instance_refresh(AutoScalingGroupName="web")
        rollback.update_auto_scaling_group(AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateId": lt,
                                                                                       "Version": "1"})

    def test_a_caller_that_may_not_tag_on_launch_may_not_use_the_template(self):
        lt = self.group_with_tagging_template()
        keys = self.session(self.role("no-tags", [
            {"Effect": "Allow", "Action": ["autoscaling:UpdateAutoScalingGroup", "ec2:RunInstances"], "Resource": "*"}]))
        message = self.refused(lambda: self.client("autoscaling", keys).update_auto_scaling_group(
            AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"}), "ValidationError")
        self.assertEqual(message, f"You are not authorized to use launch template: {lt}")

    def test_distribute_ami_may_copy_an_ami_with_its_tags(self):
        ec2 = self.admin["ec2"]
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
        source = ec2.create_image(InstanceId=instance, Name="golden", TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "team", "Value": "platform"}]}])["ImageId"]
        keys = self.session(deploy.create_roles(self.endpoint)["distribute-ami"])
        copy = self.client("ec2", keys, region="eu-west-1")
        copy.copy_image(SourceImageId=source, SourceRegion=REGION, Name="golden-copy", CopyImageTags=True)

    def test_the_workload_role_trusts_only_the_central_stacks_function_roles(self):
        workload = "111111111111"
        seed.workload_roles(seed.account_client(self.endpoint, "iam", REGION, workload), workload, ACCOUNT,
                            "ami-rollout-workload", "local-external-id")
        target = f"arn:aws:iam::{workload}:role/ami-rollout-workload"
        roles = deploy.create_roles(self.endpoint)
        sts = self.client("sts", self.session(roles["start-refresh"]))
        keys = sts.assume_role(RoleArn=target, RoleSessionName="rollout", ExternalId="local-external-id")["Credentials"]
        self.client("autoscaling", keys).describe_auto_scaling_groups()  # its managed FleetReadPolicy
        other = self.client("sts", self.session(self.role("other-stack-fn", [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}])))
        self.refused(lambda: other.assume_role(RoleArn=target, RoleSessionName="rollout", ExternalId="local-external-id"),
                     "AccessDenied")

    def test_image_builders_get_image_is_authorized_on_the_image_build_version(self):
        arn = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/golden/1.0.0/1"
        reader = self.client("imagebuilder", self.session(self.role("image-reader", [
            {"Effect": "Allow", "Action": "imagebuilder:GetImage",
             "Resource": f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/*"}])))
        self.refused(lambda: reader.get_image(imageBuildVersionArn=arn), "ResourceNotFoundException")
        nothing = self.client("imagebuilder", self.session(self.role("no-images", [
            {"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}])))
        message = self.refused(lambda: nothing.get_image(imageBuildVersionArn=arn), "ForbiddenException")
        self.assertIn(f"imagebuilder:GetImage on resource: {arn}", message)

    # --- KMS: the key policy, grants and the caller's policies (keys.py) ---------------------------

    def key(self, policy=None):
        kms = self.admin["kms"]
        return kms.create_key(**({"Policy": json.dumps(policy)} if policy else {}))["KeyMetadata"]["Arn"]

    def test_a_kms_request_needs_the_key_policy_and_the_callers_policy(self):
        delegated = self.key()  # the default key policy: the account's IAM decides
        reader = self.client("kms", self.session(self.role("kms-reader", [
            {"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}])))
        reader.describe_key(KeyId=delegated)
        nothing = self.client("kms", self.session(self.role("no-kms", [
            {"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}])))
        message = self.refused(lambda: nothing.describe_key(KeyId=delegated), "AccessDeniedException")
        self.assertIn("because no identity-based policy allows the kms:DescribeKey action", message)
        # A key policy that names neither the role nor its account: no IAM policy can open it.
        closed = self.key({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/someone-else"},
             "Action": "kms:*", "Resource": "*"}]})
        message = self.refused(lambda: reader.describe_key(KeyId=closed), "AccessDeniedException")
        self.assertIn("because no resource-based policy allows the kms:DescribeKey action", message)
        # A key policy naming the role itself is enough in the key's account.
        direct = self.key({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/no-kms"},
             "Action": "kms:DescribeKey", "Resource": "*"}]})
        nothing.describe_key(KeyId=direct)

    def test_another_accounts_key_needs_its_key_policy_and_the_workload_roles_policy(self):
        workload = "111111111111"
        seed.workload_roles(seed.account_client(self.endpoint, "iam", REGION, workload), workload, ACCOUNT,
                            "ami-rollout-workload", "local-external-id")
        sts = self.client("sts", self.session(deploy.create_roles(self.endpoint)["resolve-ami"]))
        keys = sts.assume_role(RoleArn=f"arn:aws:iam::{workload}:role/ami-rollout-workload", RoleSessionName="rollout",
                               ExternalId="local-external-id")["Credentials"]
        kms = self.client("kms", keys)
        shared = self.key(seed.copy_key_policy(ACCOUNT, [workload]))
        self.assertEqual(kms.describe_key(KeyId=shared)["KeyMetadata"]["Arn"], shared)
        other = self.key(seed.copy_key_policy(ACCOUNT, ["222222222222"]))
        message = self.refused(lambda: kms.describe_key(KeyId=other), "AccessDeniedException")
        self.assertIn("no resource-based policy", message)

    def test_a_root_replacement_from_an_encrypted_ami_needs_the_key_through_ec2(self):
        ec2 = self.admin["ec2"]
        request(f"{self.control}/copy-time", {"seconds": 1})
        base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
        plain = ec2.create_image(InstanceId=builder, Name="golden")["ImageId"]
        encrypted = ec2.copy_image(SourceImageId=plain, SourceRegion=REGION, Name="golden-encrypted", Encrypted=True,
                                   KmsKeyId=self.key())["ImageId"]
        request(f"{self.control}/advance", {"seconds": 3600})
        replace = {"Effect": "Allow", "Action": ["ec2:CreateReplaceRootVolumeTask", "ec2:DescribeReplaceRootVolumeTasks"],
                   "Resource": "*"}
        use_key = {"Effect": "Allow", "Resource": "*",
                   "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                              "kms:ReEncryptFrom", "kms:ReEncryptTo"],
                   "Condition": {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}}

        def replaced_by(role):
            instance = ec2.run_instances(ImageId=plain, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
            caller = self.client("ec2", self.session(role))
            task = caller.create_replace_root_volume_task(InstanceId=instance, ImageId=encrypted)["ReplaceRootVolumeTask"]
            for _ in range(2):  # in progress, then ended
                request(f"{self.control}/advance", {"seconds": 600})
            [task] = caller.describe_replace_root_volume_tasks(
                ReplaceRootVolumeTaskIds=[task["ReplaceRootVolumeTaskId"]])["ReplaceRootVolumeTasks"]
            return task["TaskState"]

        self.assertEqual(replaced_by(self.role("replacer", [replace])), "failed")
        self.assertEqual(replaced_by(self.role("replacer-with-key", [replace, use_key])), "succeeded")
        # The key used outside EC2 is not what that statement allows.
        kms = self.client("kms", self.session(self.role("ec2-only-key", [use_key])))
        self.refused(lambda: kms.describe_key(KeyId=self.key()), "AccessDeniedException")


class WithoutEnforcement(RoleSessions):
    """LOCALAWS_IAM=off: the local AWS serves role sessions unchecked (to see what the check finds)."""

    @classmethod
    def setUpClass(cls):
        os.environ["LOCALAWS_IAM"] = "off"
        try:
            super().setUpClass()
        finally:
            del os.environ["LOCALAWS_IAM"]

    def test_a_role_session_is_not_checked(self):
        keys = self.session(self.role("nothing", [{"Effect": "Allow", "Action": "ec2:DescribeImages",
                                                     "Resource": "*"}]))
        self.client("ec2", keys).describe_instances()


if __name__ == "__main__":
    unittest.main()
