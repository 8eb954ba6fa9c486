"""End to end: standalone instances beside the groups. Their root volume is replaced in place with
the new AMI (CreateReplaceRootVolumeTask): each keeps its id, private IP, data volume and what is
on it; instances excluded or inside a group are left as they are and reported; a bad AMI brings
each replaced instance back onto its very own previous root.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_instances (make e2e runs it).
"""

import unittest
import urllib.parse
import urllib.request
import json

from tests.e2e.test_rollout import Harness, post

TARGET_TAG = {"Key": "ami-rollout:enabled", "Value": "true"}


class StandaloneInstances(Harness):
    """The standard fleet, plus three standalone instances carrying the target tag (one of them
    excluded by Name), each with a data volume, and one instance of the web group carrying the tag
    too."""

    def setUp(self):
        super().setUp()
        ec2 = self.aws["ec2"]
        self.instances = {}
        for name in ("bastion", "build-host", "scratch"):
            launched = ec2.run_instances(
                ImageId=self.current, MinCount=1, MaxCount=1, SubnetId=self.fleet["subnets"][0],
                TagSpecifications=[{"ResourceType": "instance",
                                    "Tags": [{"Key": "Name", "Value": name}, TARGET_TAG]}])["Instances"][0]
            data = ec2.create_volume(Size=50, AvailabilityZone=launched["Placement"]["AvailabilityZone"])["VolumeId"]
            ec2.attach_volume(VolumeId=data, InstanceId=launched["InstanceId"], Device="/dev/sdf")
            instance = {"id": launched["InstanceId"], "ip": launched["PrivateIpAddress"], "data": data}
            instance["root"] = self.root_of(instance["id"])
            self.write(instance["root"], "/etc/hostname", name)
            self.write(data, "/data/db", f"{name} rows")
            self.instances[name] = instance
        web = self.aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
        self.member = web["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        ec2.create_tags(Resources=[self.member], Tags=[TARGET_TAG])
        self.configure(EXCLUDED_INSTANCES="scratch")

    # --- what the operator sees ----------------------------------------------------------------

    def described(self, instance_id):
        return self.aws["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def root_of(self, instance_id):
        instance = self.described(instance_id)
        return next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                    if m["DeviceName"] == instance["RootDeviceName"])

    def attached(self, instance_id):
        return {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in self.described(instance_id)["BlockDeviceMappings"]}

    def write(self, volume, path, content):
        post(f"{self.control}/volume-files", {"volumeId": volume, "path": path, "content": content})

    def files(self, volume):
        query = urllib.parse.urlencode({"volumeId": volume})
        return json.load(urllib.request.urlopen(f"{self.control}/volume-files?{query}"))["files"]

    def volume_exists(self, volume):
        return bool(self.aws["ec2"].describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume]}])["Volumes"])

    def assert_untouched_instance(self, name):
        instance = self.instances[name]
        self.assertEqual(self.described(instance["id"])["ImageId"], self.current, name)
        self.assertEqual(self.root_of(instance["id"]), instance["root"], name)

    # --- scenarios -----------------------------------------------------------------------------

    def test_standalone_instances_get_the_new_ami_in_place_and_the_rest_is_left_and_reported(self):
        result = self.run_rollout()
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for name in ("bastion", "build-host"):
            instance = self.instances[name]
            now = self.described(instance["id"])
            self.assertEqual((now["ImageId"], now["PrivateIpAddress"], now["State"]["Name"]),
                             (self.golden, instance["ip"], "running"), name)
            self.assertEqual(self.attached(instance["id"])["/dev/sdf"], instance["data"], name)
            self.assertEqual(self.files(instance["data"]), {"/data/db": f"{name} rows"}, name)
            self.assertNotEqual(self.root_of(instance["id"]), instance["root"], name)
            # The root kept for a rollback is deleted once the rollout succeeded.
            self.assertFalse(self.volume_exists(instance["root"]), name)
        self.assert_untouched_instance("scratch")
        # The group member's root was never replaced: its group's refresh replaced the instance.
        tasks = self.aws["ec2"].describe_replace_root_volume_tasks(
            Filters=[{"Name": "instance-id", "Values": [self.member]}])["ReplaceRootVolumeTasks"]
        self.assertEqual(tasks, [])
        self.assertIn(f"skipped {self.instances['scratch']['id']}: excluded (EXCLUDED_INSTANCES)", result["log"])
        self.assertIn(f"skipped {self.member}: member of Auto Scaling group web", result["log"])
        self.assertIn("Replace the root volume", result["log"])
        for group in self.groups:
            self.assertEqual(set(self.amis(group)), {self.golden}, group)

    def test_a_bad_ami_brings_the_replaced_instance_back_onto_its_own_previous_root(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "boot"})
        bastion = self.instances["bastion"]
        # The bastion alone in a first wave: its status checks fail on the new AMI.
        self.aws["ec2"].create_tags(Resources=[bastion["id"]], Tags=[{"Key": "ami-rollout:wave", "Value": "0"}])
        result = self.run_rollout()
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("status check", result["cause"])
        self.assertIn(f"{bastion['id']} (its previous root {bastion['root']} is back in place)", result["cause"])
        self.assertEqual(self.root_of(bastion["id"]), bastion["root"], "the very same root volume")
        self.assertEqual(self.files(bastion["root"]), {"/etc/hostname": "bastion"})
        self.assertEqual(self.attached(bastion["id"])["/dev/sdf"], bastion["data"])
        self.assertEqual(self.described(bastion["id"])["PrivateIpAddress"], bastion["ip"])
        statuses = self.aws["ec2"].describe_instance_status(InstanceIds=[bastion["id"]])["InstanceStatuses"]
        self.assertEqual(statuses[0]["InstanceStatus"]["Status"], "ok")
        # Later waves never started.
        self.assert_untouched_instance("build-host")
        self.assert_untouched_instance("scratch")
        for group in self.groups:
            self.assertEqual(set(self.amis(group)), {self.current}, group)


if __name__ == "__main__":
    unittest.main()
