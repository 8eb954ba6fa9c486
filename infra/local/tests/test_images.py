"""The local AWS enforces what AWS enforces about the AMIs a rollback relies on (localaws/images.py,
and fleet.py for Auto Scaling launches): deregistration protection, disabled AMIs, and launches from
deregistered or disabled AMIs.

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests
(from the repository root). Starts its own local AWS (moto + extensions, no ministack) on a free
loopback port, as tests/support/mod.rs does; LOCALAWS_PLAIN=1 runs the same against plain moto,
where these tests fail.
"""

import datetime
import json
import time
import unittest
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from localserver import LocalServerTestCase

REGION = "us-east-1"


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    return json.load(urllib.request.urlopen(request))


class Images(LocalServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        config = Config(retries={"max_attempts": 1})
        cls.ec2 = session.client("ec2", endpoint_url=cls.endpoint, config=config)
        cls.autoscaling = session.client("autoscaling", endpoint_url=cls.endpoint, config=config)

    def setUp(self):
        _post(f"{self.control}/reset", {})
        base = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        builder = self.ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        self.image = self.ec2.create_image(InstanceId=builder, Name="golden")["ImageId"]
        self.ec2.terminate_instances(InstanceIds=[builder])

    # --- helpers -------------------------------------------------------------------------------

    def describe(self, image_id=None, **kwargs):
        if image_id:
            kwargs["ImageIds"] = [image_id]
        return self.ec2.describe_images(**kwargs)["Images"]

    def protection(self):
        return self.describe(self.image)[0]["DeregistrationProtection"]

    def assert_error(self, code, call, *args, **kwargs):
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.response["Error"]["Code"], code, caught.exception.response["Error"])
        return caught.exception.response["Error"]["Message"]

    def launch(self, image_id):
        return self.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

    def advance(self, seconds):
        _post(f"{self.control}/advance", {"seconds": seconds})

    def group(self, name="web", desired=0):
        template = self.ec2.create_launch_template(
            LaunchTemplateName=f"{name}-template",
            LaunchTemplateData={"ImageId": self.image, "InstanceType": "t3.micro"},
        )["LaunchTemplate"]["LaunchTemplateId"]
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=4, DesiredCapacity=desired,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
            AvailabilityZones=[f"{REGION}a"])
        return name, template

    def new_version(self, template, image_id):
        return self.ec2.create_launch_template_version(
            LaunchTemplateId=template, SourceVersion="1",
            LaunchTemplateData={"ImageId": image_id})["LaunchTemplateVersion"]["VersionNumber"]

    def another_image(self, name):
        builder = self.launch(self.image)
        image_id = self.ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
        self.ec2.terminate_instances(InstanceIds=[builder])
        return image_id

    def refresh_to(self, group, template, version, **preferences):
        self.autoscaling.start_instance_refresh(
            AutoScalingGroupName=group,
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": template, "Version": str(version)}},
            Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 60, **preferences})

    def refresh_ends(self, group, statuses=("Successful", "Failed", "Cancelled", "RollbackSuccessful",
                                            "RollbackFailed")):
        """Moves the scaled clock on until the group's refresh reaches one of `statuses`."""
        for _ in range(60):
            refresh = self.autoscaling.describe_instance_refreshes(AutoScalingGroupName=group)["InstanceRefreshes"][0]
            if refresh["Status"] in statuses:
                return refresh
            self.advance(600)
            time.sleep(0.05)
        self.fail(f"the refresh did not end: {refresh}")

    def images_in(self, group):
        described = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        ids = [i["InstanceId"] for i in described["AutoScalingGroups"][0]["Instances"]]
        reservations = self.ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
        return sorted(i["ImageId"] for r in reservations for i in r["Instances"])

    # --- deregistration protection -------------------------------------------------------------

    def test_protection_shows_in_describe_images(self):
        self.assertEqual(self.protection(), "disabled")
        answer = self.ec2.enable_image_deregistration_protection(ImageId=self.image)
        self.assertEqual(answer["Return"], "enabled-without-cooldown")
        self.assertEqual(self.protection(), "enabled-without-cooldown")
        attribute = self.ec2.describe_image_attribute(ImageId=self.image, Attribute="deregistrationProtection")
        self.assertEqual(attribute["DeregistrationProtection"]["Value"], "enabled-without-cooldown")
        listed = {i["ImageId"]: i for i in self.describe(Owners=["self"])}
        self.assertEqual(listed[self.image]["DeregistrationProtection"], "enabled-without-cooldown")

    def test_a_protected_image_cannot_be_deregistered_until_protection_is_disabled(self):
        self.ec2.enable_image_deregistration_protection(ImageId=self.image)
        message = self.assert_error("OperationNotPermitted", self.ec2.deregister_image, ImageId=self.image)
        self.assertIn(self.image, message)
        self.assertEqual(self.describe(self.image)[0]["State"], "available", "still registered")
        self.assertEqual(self.ec2.disable_image_deregistration_protection(ImageId=self.image)["Return"], "disabled")
        self.assertEqual(self.protection(), "disabled")
        self.ec2.deregister_image(ImageId=self.image)
        self.assertEqual(self.describe(self.image), [])

    def test_with_cooldown_protection_lasts_24_hours_after_it_is_disabled(self):
        answer = self.ec2.enable_image_deregistration_protection(ImageId=self.image, WithCooldown=True)
        self.assertEqual(answer["Return"], "enabled-with-cooldown")
        self.assertEqual(self.protection(), "enabled-with-cooldown")
        answer = self.ec2.disable_image_deregistration_protection(ImageId=self.image)
        self.assertTrue(answer["Return"].startswith("disabled-until "), answer["Return"])
        self.assertTrue(self.protection().startswith("disabled-until "), self.protection())
        self.assert_error("OperationNotPermitted", self.ec2.deregister_image, ImageId=self.image)
        self.advance(23 * 3600)
        self.assert_error("OperationNotPermitted", self.ec2.deregister_image, ImageId=self.image)
        self.advance(3600 + 60)
        self.assertEqual(self.protection(), "disabled")
        self.ec2.deregister_image(ImageId=self.image)
        self.assertEqual(self.describe(self.image), [])

    def test_protection_of_an_unknown_or_deregistered_image(self):
        self.assert_error("InvalidAMIID.NotFound", self.ec2.enable_image_deregistration_protection,
                          ImageId="ami-0000000000000dead")
        self.ec2.deregister_image(ImageId=self.image)
        self.assert_error("InvalidAMIID.Unavailable", self.ec2.enable_image_deregistration_protection,
                          ImageId=self.image)

    # --- launches --------------------------------------------------------------------------------

    def test_run_instances_from_a_deregistered_ami_fails(self):
        self.launch(self.image)
        self.ec2.deregister_image(ImageId=self.image)
        message = self.assert_error("InvalidAMIID.NotFound", self.launch, self.image)
        self.assertEqual(message, f"The image id '[{self.image}]' does not exist")
        template = self.ec2.create_launch_template(
            LaunchTemplateName="stale", LaunchTemplateData={"ImageId": self.image})["LaunchTemplate"]["LaunchTemplateId"]
        self.assert_error("InvalidAMIID.NotFound", self.ec2.run_instances, MinCount=1, MaxCount=1,
                          LaunchTemplate={"LaunchTemplateId": template})
        running = self.ec2.describe_instances(Filters=[{"Name": "image-id", "Values": [self.image]},
                                                       {"Name": "instance-state-name", "Values": ["running"]}])
        self.assertEqual(len([i for r in running["Reservations"] for i in r["Instances"]]), 1,
                         "only the instance launched before the deregistration")

    def test_a_disabled_image_cannot_launch_until_it_is_enabled_again(self):
        self.assertTrue(self.ec2.disable_image(ImageId=self.image)["Return"])
        self.assertEqual(self.describe(self.image)[0]["State"], "disabled", "the owner sees it by id")
        self.assertNotIn(self.image, [i["ImageId"] for i in self.describe(Owners=["self"])],
                         "left out of listings by default")
        listed = {i["ImageId"]: i["State"] for i in self.describe(Owners=["self"], IncludeDisabled=True)}
        self.assertEqual(listed.get(self.image), "disabled")
        self.assert_error("InvalidAMIID.Unavailable", self.launch, self.image)
        self.assertTrue(self.ec2.enable_image(ImageId=self.image)["Return"])
        self.assertEqual(self.describe(self.image)[0]["State"], "available")
        self.assertTrue(self.launch(self.image).startswith("i-"))

    def test_a_group_launch_from_a_deregistered_ami_fails_as_a_scaling_activity(self):
        group, _ = self.group()
        self.ec2.deregister_image(ImageId=self.image)
        self.autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
        described = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        self.assertEqual(described["AutoScalingGroups"][0]["Instances"], [], "no instance was created")
        activities = self.autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
        self.assertEqual(len(activities), 1)
        self.assertEqual(activities[0]["StatusCode"], "Failed")
        self.assertEqual(activities[0]["StatusMessage"],
                         f"The image id '[{self.image}]' does not exist. Launching EC2 instance failed.")

    def test_a_group_launch_from_a_disabled_ami_fails_until_it_is_enabled(self):
        group, _ = self.group()
        self.ec2.disable_image(ImageId=self.image)
        self.autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
        activities = self.autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
        self.assertEqual([a["StatusCode"] for a in activities], ["Failed"])
        self.assertIn("is disabled", activities[0]["StatusMessage"])
        self.ec2.enable_image(ImageId=self.image)
        self.autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
        described = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        self.assertEqual([i["LaunchTemplate"]["Version"] for i in described["AutoScalingGroups"][0]["Instances"]],
                         ["1", "1"], "launches from the re-enabled AMI")

    # --- instance refresh ------------------------------------------------------------------------

    def test_a_refresh_to_a_deregistered_ami_fails_after_the_stall_timeout(self):
        group, template = self.group(desired=2)
        doomed = self.another_image("doomed")
        version = self.new_version(template, doomed)
        self.ec2.deregister_image(ImageId=doomed)
        self.refresh_to(group, template, version)
        refresh = self.refresh_ends(group)
        self.assertEqual(refresh["Status"], "Failed")
        self.assertIn(f"The image id '[{doomed}]' does not exist. Launching EC2 instance failed.",
                      refresh["StatusReason"])
        self.assertNotIn(doomed, self.images_in(group))
        activities = self.autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
        self.assertTrue(activities and all(a["StatusCode"] == "Failed" for a in activities), activities)

    def test_a_refresh_to_a_disabled_ami_rolls_back_with_auto_rollback(self):
        group, template = self.group(desired=2)
        disabled = self.another_image("disabled")
        version = self.new_version(template, disabled)
        self.ec2.disable_image(ImageId=disabled)
        self.refresh_to(group, template, version, AutoRollback=True)
        refresh = self.refresh_ends(group)
        self.assertEqual(refresh["Status"], "RollbackSuccessful", refresh)
        self.assertIn("is disabled", refresh["RollbackDetails"]["RollbackReason"])
        self.assertEqual(self.images_in(group), [self.image, self.image])

    def test_a_rollback_to_a_deregistered_ami_fails_and_protection_prevents_it(self):
        for protect in (False, True):
            with self.subTest(protect=protect):
                self.setUp()
                group, template = self.group(desired=2)
                broken = self.another_image("broken")
                _post(f"{self.control}/bad-ami", {"imageId": broken, "mode": "boot"})
                version = self.new_version(template, broken)
                if protect:
                    self.ec2.enable_image_deregistration_protection(ImageId=self.image)
                    self.assert_error("OperationNotPermitted", self.ec2.deregister_image, ImageId=self.image)
                else:
                    self.ec2.deregister_image(ImageId=self.image)  # the rollback point is gone
                self.refresh_to(group, template, version, AutoRollback=True)
                refresh = self.refresh_ends(group)
                if protect:
                    self.assertEqual(refresh["Status"], "RollbackSuccessful", refresh)
                    self.assertEqual(self.images_in(group), [self.image, self.image])
                else:
                    self.assertEqual(refresh["Status"], "RollbackFailed", refresh)
                    self.assertIn(f"The image id '[{self.image}]' does not exist", refresh["StatusReason"])
                    self.assertNotIn(broken, self.images_in(group))


if __name__ == "__main__":
    unittest.main()


class Deprecation(LocalServerTestCase):
    """EnableImageDeprecation / DisableImageDeprecation (moto lacks them), on a calendar clock
    running 600 times the wall clock so a deprecation time comes within the test."""

    @classmethod
    def setUpClass(cls):
        import os
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from localaws import clock

        cls.clock = clock
        os.environ[clock.VARIABLE] = clock.make(600)  # the server's calendar, and this process's
        super().setUpClass()
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        cls.ec2 = session.client("ec2", endpoint_url=cls.endpoint, config=Config(retries={"max_attempts": 1}))

    @classmethod
    def tearDownClass(cls):
        import os

        os.environ.pop(cls.clock.VARIABLE, None)
        super().tearDownClass()

    def test_a_deprecated_ami_is_left_out_unless_asked_for_and_its_owner_sees_it(self):
        from localaws import seed

        base = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        builder = self.ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        image = self.ec2.create_image(InstanceId=builder, Name="to-deprecate")["ImageId"]
        workload = "111111111111"
        self.ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": workload}]})
        theirs = seed.account_client(self.endpoint, "ec2", REGION, workload)
        past = self.clock.utcnow() - datetime.timedelta(hours=1)
        with self.assertRaises(ClientError) as refused:
            self.ec2.enable_image_deprecation(ImageId=image, DeprecateAt=past)
        self.assertEqual(refused.exception.response["Error"]["Code"], "InvalidParameterValue")
        at = self.clock.utcnow() + datetime.timedelta(minutes=30)  # 3 s of wall time: room under load
        self.assertTrue(self.ec2.enable_image_deprecation(ImageId=image, DeprecateAt=at)["Return"])
        [mine] = self.ec2.describe_images(ImageIds=[image])["Images"]
        self.assertTrue(mine["DeprecationTime"].endswith(":00.000Z"), mine["DeprecationTime"])  # to the minute
        self.assertEqual(len(theirs.describe_images(ImageIds=[image])["Images"]), 1, "not deprecated yet")
        time.sleep(self.clock.wall_seconds(32 * 60))
        self.assertEqual(theirs.describe_images(ImageIds=[image])["Images"], [])
        self.assertEqual(len(theirs.describe_images(ImageIds=[image], IncludeDeprecated=True)["Images"]), 1)
        self.assertEqual(len(self.ec2.describe_images(ImageIds=[image])["Images"]), 1, "the owner sees it")
        self.ec2.disable_image_deprecation(ImageId=image)
        self.assertNotIn("DeprecationTime", self.ec2.describe_images(ImageIds=[image])["Images"][0])
        self.assertEqual(len(theirs.describe_images(ImageIds=[image])["Images"]), 1)
