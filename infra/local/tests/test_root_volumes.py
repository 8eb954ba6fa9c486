"""Root volume replacement as AWS runs it (localaws/rootvolumes.py): the task's states and rules,
what stays on the instance, the replaced root kept for a rollback, status checks, volume content.

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests -p 'test_root_volumes*'
(from the repository root). Starts its own local AWS (moto + extensions, no ministack);
LOCALAWS_PLAIN=1 runs the same against plain moto, where these tests fail.
"""

import sys
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOCAL = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LOCAL))

from localaws import seed  # noqa: E402
from localserver import LocalServerTestCase, request  # noqa: E402

BASE = seed.ECS_AL2023


class RootVolumes(LocalServerTestCase):
    def setUp(self):
        request(f"{self.control}/reset", {})
        self.ec2 = boto3.client("ec2", endpoint_url=self.endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing",
                                config=Config(retries={"max_attempts": 1}))
        _, subnets = seed.network(self.ec2, "us-east-1")
        self.subnet = subnets[0]
        self.old_ami = self.make_ami("old")
        self.new_ami = self.make_ami("new")
        self.instance = self.ec2.run_instances(ImageId=self.old_ami, MinCount=1, MaxCount=1,
                                               SubnetId=self.subnet)["Instances"][0]
        self.id = self.instance["InstanceId"]
        zone = self.instance["Placement"]["AvailabilityZone"]
        self.data = self.ec2.create_volume(Size=50, AvailabilityZone=zone)["VolumeId"]
        self.ec2.attach_volume(VolumeId=self.data, InstanceId=self.id, Device="/dev/sdf")
        self.root = self.root_volume()
        self.write(self.root, "/etc/hostname", "build-host")
        self.write(self.data, "/data/db", "rows")

    # --- helpers -------------------------------------------------------------------------------

    def make_ami(self, name):
        builder = self.ec2.run_instances(ImageId=BASE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        image = self.ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
        self.ec2.terminate_instances(InstanceIds=[builder])
        return image

    def described(self):
        return self.ec2.describe_instances(InstanceIds=[self.id])["Reservations"][0]["Instances"][0]

    def root_volume(self):
        instance = self.described()
        return next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                    if m["DeviceName"] == instance["RootDeviceName"])

    def write(self, volume, path, content):
        request(f"{self.control}/volume-files", {"volumeId": volume, "path": path, "content": content})

    def files(self, volume):
        return request(f"{self.control}/volume-files?volumeId={volume}", method="GET")["files"]

    def advance(self, seconds):
        request(f"{self.control}/advance", {"seconds": seconds})

    def task(self, task_id):
        return self.ec2.describe_replace_root_volume_tasks(
            ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"][0]

    def replace(self, **source):
        return self.ec2.create_replace_root_volume_task(InstanceId=self.id, **source)["ReplaceRootVolumeTask"]

    def run_to_end(self, task_id):
        for _ in range(10):
            task = self.task(task_id)
            if task["TaskState"] in ("succeeded", "failed"):
                return task
            self.advance(30)
        self.fail(f"{task_id} did not end: {task}")

    def status(self):
        [status] = self.ec2.describe_instance_status(InstanceIds=[self.id])["InstanceStatuses"]
        return status["InstanceStatus"]["Status"], status["SystemStatus"]["Status"]

    def refused(self, code, **source):
        with self.assertRaises(ClientError) as caught:
            self.replace(**source)
        self.assertEqual(caught.exception.response["Error"]["Code"], code)

    # --- the tests -----------------------------------------------------------------------------

    def test_a_new_ami_replaces_the_root_and_keeps_the_rest_of_the_instance(self):
        before = self.described()
        task = self.replace(ImageId=self.new_ami)
        self.assertEqual((task["TaskState"], task["ImageId"], task["DeleteReplacedRootVolume"]),
                         ("pending", self.new_ami, False))
        self.assertTrue(task["ReplaceRootVolumeTaskId"].startswith("replacevol-"))
        self.advance(20)
        self.assertEqual(self.task(task["ReplaceRootVolumeTaskId"])["TaskState"], "in-progress")
        self.assertEqual(self.status()[0], "initializing", "the instance reboots")
        done = self.run_to_end(task["ReplaceRootVolumeTaskId"])
        self.assertEqual(done["TaskState"], "succeeded")
        self.assertIn("CompleteTime", done)
        after = self.described()
        self.assertEqual(after["ImageId"], self.new_ami)
        self.assertEqual((after["InstanceId"], after["PrivateIpAddress"], after["State"]["Name"]),
                         (before["InstanceId"], before["PrivateIpAddress"], "running"))
        new_root = self.root_volume()
        self.assertNotEqual(new_root, self.root)
        self.assertEqual(self.files(new_root), {}, "a root from the AMI starts as the AMI has it")
        devices = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in after["BlockDeviceMappings"]}
        self.assertEqual(devices["/dev/sdf"], self.data)
        self.assertEqual(self.files(self.data), {"/data/db": "rows"})
        # The replaced root is kept, detached, with what was on it.
        [old] = self.ec2.describe_volumes(VolumeIds=[self.root])["Volumes"]
        self.assertEqual(old["State"], "available")
        self.assertEqual(self.files(self.root), {"/etc/hostname": "build-host"})
        self.assertEqual(self.status(), ("ok", "ok"))

    def test_the_kept_root_goes_back_exactly_and_a_deleted_one_is_gone(self):
        first = self.run_to_end(self.replace(ImageId=self.new_ami)["ReplaceRootVolumeTaskId"])
        self.assertEqual(first["TaskState"], "succeeded")
        replaced_by_ami = self.root_volume()
        back = self.run_to_end(self.replace(VolumeId=self.root, DeleteReplacedRootVolume=True)["ReplaceRootVolumeTaskId"])
        self.assertEqual(back["TaskState"], "succeeded")
        self.assertEqual(self.root_volume(), self.root)
        self.assertEqual(self.files(self.root_volume()), {"/etc/hostname": "build-host"})
        with self.assertRaises(ClientError) as gone:
            self.ec2.describe_volumes(VolumeIds=[replaced_by_ami])
        self.assertEqual(gone.exception.response["Error"]["Code"], "InvalidVolume.NotFound")

    def test_a_snapshot_of_the_root_restores_what_was_on_it(self):
        snapshot = self.ec2.create_snapshot(VolumeId=self.root)["SnapshotId"]
        self.write(self.root, "/etc/hostname", "changed after the snapshot")
        done = self.run_to_end(self.replace(SnapshotId=snapshot)["ReplaceRootVolumeTaskId"])
        self.assertEqual((done["TaskState"], done["SnapshotId"]), ("succeeded", snapshot))
        self.assertEqual(self.files(self.root_volume()), {"/etc/hostname": "build-host"})
        self.assertEqual(self.described()["ImageId"], self.old_ami, "only an AMI changes the reported AMI")

    def test_a_bad_ami_fails_the_task_or_the_status_checks(self):
        request(f"{self.control}/bad-ami", {"imageId": self.new_ami, "mode": "root"})
        failed = self.run_to_end(self.replace(ImageId=self.new_ami)["ReplaceRootVolumeTaskId"])
        self.assertEqual(failed["TaskState"], "failed")
        self.assertEqual(self.root_volume(), self.root, "the original root stays attached")
        self.assertEqual(self.described()["ImageId"], self.old_ami)
        request(f"{self.control}/bad-ami", {"imageId": self.new_ami, "mode": "boot"})
        done = self.run_to_end(self.replace(ImageId=self.new_ami)["ReplaceRootVolumeTaskId"])
        self.assertEqual(done["TaskState"], "succeeded")
        self.assertEqual(self.status(), ("impaired", "ok"))

    def test_what_aws_refuses_is_refused(self):
        self.refused("InvalidParameterCombination", ImageId=self.new_ami, SnapshotId="snap-0123456789abcdef0")
        other = self.ec2.run_instances(ImageId=self.old_ami, MinCount=1, MaxCount=1)["Instances"][0]
        foreign = self.ec2.create_snapshot(VolumeId=next(
            m["Ebs"]["VolumeId"] for m in other["BlockDeviceMappings"]))["SnapshotId"]
        self.refused("InvalidParameterValue", SnapshotId=foreign)
        self.refused("InvalidParameterValue", VolumeId=self.data)  # attached: not available
        task = self.replace(ImageId=self.new_ami)
        self.refused("IncorrectState", ImageId=self.new_ami)
        self.run_to_end(task["ReplaceRootVolumeTaskId"])
        self.ec2.stop_instances(InstanceIds=[self.id])
        self.refused("IncorrectInstanceState", ImageId=self.new_ami)
        with self.assertRaises(ClientError) as unknown:
            self.task("replacevol-0123456789abcdef0")
        self.assertEqual(unknown.exception.response["Error"]["Code"], "InvalidReplaceRootVolumeTaskId.NotFound")

    def test_a_client_token_answers_the_same_task_and_tasks_filter_by_instance(self):
        first = self.ec2.create_replace_root_volume_task(InstanceId=self.id, ImageId=self.new_ami,
                                                         ClientToken="rollout-1")["ReplaceRootVolumeTask"]
        again = self.ec2.create_replace_root_volume_task(InstanceId=self.id, ImageId=self.new_ami,
                                                         ClientToken="rollout-1")["ReplaceRootVolumeTask"]
        self.assertEqual(first["ReplaceRootVolumeTaskId"], again["ReplaceRootVolumeTaskId"])
        listed = self.ec2.describe_replace_root_volume_tasks(
            Filters=[{"Name": "instance-id", "Values": [self.id]}])["ReplaceRootVolumeTasks"]
        self.assertEqual([t["ReplaceRootVolumeTaskId"] for t in listed], [first["ReplaceRootVolumeTaskId"]])
        self.assertEqual(self.ec2.describe_replace_root_volume_tasks(
            Filters=[{"Name": "instance-id", "Values": ["i-0123456789abcdef0"]}])["ReplaceRootVolumeTasks"], [])


class ReplaceRootVolumeRefresh(LocalServerTestCase):
    """An instance refresh with the ReplaceRootVolume strategy (localaws/refresh.py): each instance
    keeps its id and gets a new root from the override's AMI."""

    def setUp(self):
        request(f"{self.control}/reset", {})
        c = seed.clients(self.endpoint, "us-east-1")
        self.ec2, self.autoscaling = c["ec2"], c["autoscaling"]
        _, subnets = seed.network(self.ec2, "us-east-1")
        builder = RootVolumes.make_ami
        self.old_ami, self.new_ami = builder(self, "old"), builder(self, "new")
        self.group = seed.make_mixed_group(c, "stateful", subnets, self.old_ami, 2)
        self.before = self.instances()

    def instances(self):
        """Each instance's id -> (AMI, root volume id, lifecycle state)."""
        [group] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["stateful"])["AutoScalingGroups"]
        out = {}
        for i in group["Instances"]:
            [instance] = self.ec2.describe_instances(InstanceIds=[i["InstanceId"]])["Reservations"][0]["Instances"]
            root = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                        if m["DeviceName"] == instance["RootDeviceName"])
            out[i["InstanceId"]] = (instance["ImageId"], root, i["LifecycleState"])
        return out

    def start(self, overrides, **prefs):
        return self.autoscaling.start_instance_refresh(
            AutoScalingGroupName="stateful", Strategy="ReplaceRootVolume",
            DesiredConfiguration={"MixedInstancesPolicy": {"LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": self.group["launchTemplateId"], "Version": "1"},
                "Overrides": overrides}}},
            Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 60, **prefs})["InstanceRefreshId"]

    def refresh(self, refresh_id):
        return self.autoscaling.describe_instance_refreshes(
            AutoScalingGroupName="stateful", InstanceRefreshIds=[refresh_id])["InstanceRefreshes"][0]

    def play(self, refresh_id, until):
        for _ in range(40):
            r = self.refresh(refresh_id)
            if until(r):
                return r
            request(f"{self.control}/advance", {"seconds": 30})
        self.fail(f"the refresh never got there: {r}")

    def new_overrides(self):
        return [{**o, "ImageId": self.new_ami} for o in seed.OVERRIDES]

    def test_every_instance_keeps_its_id_and_gets_a_root_from_the_new_ami(self):
        refresh_id = self.start(self.new_overrides())
        seen = set()
        done = self.play(refresh_id, lambda r: seen.update(s for _, _, s in self.instances().values())
                         or r["Status"] in ("Successful", "Failed"))
        self.assertEqual((done["Status"], done["Strategy"]), ("Successful", "ReplaceRootVolume"))
        self.assertIn("ReplacingRootVolume", seen)
        after = self.instances()
        self.assertEqual(set(after), set(self.before), "the same instances")
        for instance, (image, root, lifecycle) in after.items():
            self.assertEqual((image, lifecycle), (self.new_ami, "InService"), instance)
            self.assertNotEqual(root, self.before[instance][1], instance)
        # The original roots are deleted once the refresh has succeeded.
        for _, root, _ in self.before.values():
            with self.assertRaises(ClientError):
                self.ec2.describe_volumes(VolumeIds=[root])

    def test_a_rollback_gives_fresh_roots_from_the_ami_before(self):
        refresh_id = self.start(self.new_overrides())
        self.play(refresh_id, lambda r: any(image == self.new_ami for image, _, _ in self.instances().values()))
        self.autoscaling.rollback_instance_refresh(AutoScalingGroupName="stateful")
        done = self.play(refresh_id, lambda r: r["Status"] in ("RollbackSuccessful", "RollbackFailed"))
        self.assertEqual(done["Status"], "RollbackSuccessful")
        after = self.instances()
        self.assertEqual(set(after), set(self.before))
        for instance, (image, root, _) in after.items():
            self.assertEqual(image, self.old_ami, instance)

    def test_overrides_without_an_image_are_refused(self):
        with self.assertRaises(ClientError) as refused:
            self.start(seed.OVERRIDES)
        self.assertEqual(refused.exception.response["Error"]["Code"], "ValidationError")
        self.assertIn("ImageId in every override", refused.exception.response["Error"]["Message"])
        with self.assertRaises(ClientError):
            self.autoscaling.start_instance_refresh(AutoScalingGroupName="stateful", Strategy="ReplaceRootVolume")
