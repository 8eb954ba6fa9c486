"""Suspended Auto Scaling processes as an instance refresh meets them (localaws/refresh.py): while
`Launch`, `Terminate` or `InstanceRefresh` is suspended the refresh replaces no instance (Auto
Scaling User Guide, "How suspended processes affect other processes": "InstanceRefresh does not
replace instances"), and goes on once the process is resumed.

Run: infra/local/.venv/bin/python -m unittest discover -s infra/local/tests -p 'test_suspended*'
"""

import unittest

import boto3

from localserver import LocalServerTestCase, request

REGION = "us-east-1"


class SuspendedProcesses(LocalServerTestCase):
    def setUp(self):
        request(f"{self.control}/reset", {})
        client = lambda service: boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,  # noqa: E731
                                              aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ec2, self.asg = client("ec2"), client("autoscaling")
        ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        template = self.ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
            "ImageId": ami, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        self.ec2.create_launch_template_version(LaunchTemplateId=template, SourceVersion="1",
                                                LaunchTemplateData={"ImageId": ami})
        self.asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=2, MaxSize=4, DesiredCapacity=2,
                                           AvailabilityZones=[f"{REGION}a"],
                                           LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
        self.template = template

    def instances(self):
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"]
        return sorted(i["InstanceId"] for i in group["Instances"])

    def refresh(self):
        return self.asg.describe_instance_refreshes(AutoScalingGroupName="web")["InstanceRefreshes"][0]

    def advance(self, seconds=3600):
        request(f"{self.control}/advance", {"seconds": seconds})
        self.asg.describe_auto_scaling_groups()  # a request: the simulation moves on

    def assert_sits_while_suspended(self, process):
        before = self.instances()
        self.asg.suspend_processes(AutoScalingGroupName="web", ScalingProcesses=[process])
        self.asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration={
            "LaunchTemplate": {"LaunchTemplateId": self.template, "Version": "2"}},
            Preferences={"InstanceWarmup": 0, "MinHealthyPercentage": 50})
        for _ in range(3):
            self.advance()
        self.assertEqual(self.instances(), before, "no instance replaced")
        self.assertEqual((self.refresh()["Status"], self.refresh().get("PercentageComplete", 0)), ("InProgress", 0))
        self.assertIn(process, self.refresh()["StatusReason"])
        self.asg.resume_processes(AutoScalingGroupName="web", ScalingProcesses=[process])
        for _ in range(5):
            self.advance(60)
        self.assertEqual(self.refresh()["Status"], "Successful")
        self.assertTrue(set(self.instances()).isdisjoint(before), "every instance replaced once resumed")

    def test_launch_suspended(self):
        self.assert_sits_while_suspended("Launch")

    def test_terminate_suspended(self):
        self.assert_sits_while_suspended("Terminate")

    def test_instance_refresh_suspended(self):
        self.assert_sits_while_suspended("InstanceRefresh")

    def test_other_processes_do_not_stop_a_refresh(self):
        self.asg.suspend_processes(AutoScalingGroupName="web", ScalingProcesses=["AZRebalance", "AlarmNotification"])
        self.asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration={
            "LaunchTemplate": {"LaunchTemplateId": self.template, "Version": "2"}},
            Preferences={"InstanceWarmup": 0, "MinHealthyPercentage": 50})
        for _ in range(5):
            self.advance(60)
        self.assertEqual(self.refresh()["Status"], "Successful")


if __name__ == "__main__":
    unittest.main()
