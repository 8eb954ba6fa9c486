"""End to end: standalone instances beside the groups, and groups whose refresh replaces only the
roots (`refreshStrategy: ReplaceRootVolume`). Their root volume is replaced in place with
the new AMI (CreateReplaceRootVolumeTask): each keeps its id, private IP, data volume and what is
on it; instances excluded or inside a group are left as they are and reported; a bad AMI brings
each replaced instance back onto its very own previous root.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_instances (make e2e runs it).
The bastion has a past: its root was replaced by hand before, so a finished task and a kept root
that are not the rollout's are there to be ignored.
"""

import json
import unittest
import urllib.parse
import urllib.request

from tests.e2e.test_rollout import BASE_SETTINGS, Harness, post
from localaws import cli, rollout, seed  # noqa: E402  (test_rollout puts infra/local on the path)

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
        # The bastion has a past: its root was replaced by hand before (same AMI, root kept), so
        # it has a finished task and a kept root that are not this rollout's.
        bastion = self.instances["bastion"]
        task = ec2.create_replace_root_volume_task(InstanceId=bastion["id"], ImageId=self.current)
        self.run_task_to_end(task["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"])
        bastion["past_root"], bastion["root"] = bastion["root"], self.root_of(bastion["id"])
        self.write(bastion["root"], "/etc/hostname", "bastion")
        # An ECS container instance outside any group: drained before its reboot.
        node = ec2.run_instances(ImageId=self.current, MinCount=1, MaxCount=1, SubnetId=self.fleet["subnets"][0],
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [TARGET_TAG]}])
        self.ecs_node = node["Instances"][0]["InstanceId"]
        self.ecs_node_arn = self.aws["ecs"].register_container_instance(
            cluster="prod", instanceIdentityDocument=json.dumps({"instanceId": self.ecs_node}))[
            "containerInstance"]["containerInstanceArn"]
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

    def run_task_to_end(self, task_id):
        for _ in range(20):
            task = self.aws["ec2"].describe_replace_root_volume_tasks(
                ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"][0]
            if task["TaskState"] in ("succeeded", "failed"):
                return task
            post(f"{self.control}/advance", {"seconds": 30})
        self.fail(f"{task_id} did not end")

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
        # The ECS node was drained, got its new root, and came back as a new container instance
        # on the new AMI; the one of its replaced root went with that root.
        self.assertEqual(self.described(self.ecs_node)["ImageId"], self.golden)
        (live,) = self.container_instances(self.ecs_node)
        self.assertNotEqual(live["containerInstanceArn"], self.ecs_node_arn)
        self.assertEqual((live["status"], live["agentConnected"], self.ami_attribute(live)),
                         ("ACTIVE", True, self.golden))
        self.assertIn("Replace the root volume", result["log"])
        for group in self.groups:
            self.assertEqual(set(self.amis(group)), {self.golden}, group)

    def test_an_undo_puts_a_kept_root_back_and_gives_a_fresh_root_where_it_was_deleted(self):
        bastion, build = self.instances["bastion"], self.instances["build-host"]
        self.configure({**BASE_SETTINGS, bastion["id"]: {"keepReplacedRoot": True}}, EXCLUDED_INSTANCES="scratch")
        rolled = self.run_rollout()
        self.assertEqual(rolled["status"], "SUCCEEDED", rolled["log"])
        self.assertTrue(self.volume_exists(bastion["root"]))
        self.assertFalse(self.volume_exists(build["root"]))
        rolled_root = self.root_of(build["id"])

        name = rolled["arn"].rsplit(":", 1)[-1]
        # What the operator is shown before anything happens: how each instance gets back.
        code, out, err = cli.run(self.moto, self.sfn, "undo", name, "--dry-run")
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"its previous root {build['root']} is gone: it gets a fresh root from {self.current}", out)
        result = self.watch(rollout.start(self.sfn, self.machine, {"undo": name}))
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for instance in (bastion, build):
            self.assertEqual(self.described(instance["id"])["PrivateIpAddress"], instance["ip"])
            self.assertEqual(self.attached(instance["id"])["/dev/sdf"], instance["data"])
        # The kept root is back, with what was on it (EC2 goes on reporting the AMI of the last
        # replacement from an image); the deleted one is replaced by a fresh root from the old AMI.
        self.assertEqual(self.root_of(bastion["id"]), bastion["root"])
        self.assertEqual(self.files(bastion["root"]), {"/etc/hostname": "bastion"})
        self.assertNotIn(self.root_of(build["id"]), (build["root"], rolled_root))
        self.assertEqual(self.described(build["id"])["ImageId"], self.current)
        # The ECS node is back on the old AMI as one ACTIVE container instance.
        self.assertEqual(self.described(self.ecs_node)["ImageId"], self.current)
        (live,) = self.container_instances(self.ecs_node)
        self.assertEqual((live["status"], live["agentConnected"], self.ami_attribute(live)),
                         ("ACTIVE", True, self.current))
        self.assert_untouched_instance("scratch")
        for group in self.groups:
            self.assertEqual(set(self.amis(group)), {self.current}, group)

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
        # The root from before the instance's past replacement was not this rollout's to touch.
        self.assertTrue(self.volume_exists(bastion["past_root"]))
        # Later waves never started.
        self.assert_untouched_instance("build-host")
        self.assert_untouched_instance("scratch")
        for group in self.groups:
            self.assertEqual(set(self.amis(group)), {self.current}, group)

    def test_a_replacement_that_fails_changes_no_root_and_the_rollout_rolls_back(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "root"})
        bastion = self.instances["bastion"]
        self.aws["ec2"].create_tags(Resources=[bastion["id"]], Tags=[{"Key": "ami-rollout:wave", "Value": "0"}])
        result = self.run_rollout()
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("root volume replacement", result["cause"])
        self.assertIn("its root was never replaced", result["cause"])
        self.assert_untouched_instance("bastion")
        self.assertEqual(self.files(bastion["root"]), {"/etc/hostname": "bastion"})
        self.assert_untouched_instance("build-host")

    def test_an_instance_stopped_during_its_bake_fails_its_target_and_keeps_its_previous_root(self):
        # An operator stops the bastion once its new root is in: EC2 reports a stopped instance's
        # checks "not-applicable", which is no pass. The rollout never succeeds, and the root kept
        # for going back is never deleted.
        bastion = self.instances["bastion"]
        self.aws["ec2"].create_tags(Resources=[bastion["id"]], Tags=[{"Key": "ami-rollout:wave", "Value": "0"}])
        self.configure({"*": {**BASE_SETTINGS["*"], "bakeSeconds": 1800}, "web": {"wave": 1}},
                       EXCLUDED_INSTANCES="scratch")
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden})
        self.wait_for("the bastion's new root", lambda: self.described(bastion["id"])["ImageId"] == self.golden)
        self.aws["ec2"].stop_instances(InstanceIds=[bastion["id"]])
        result = self.watch(execution)
        self.assertEqual(result["status"], "FAILED", result["log"])
        self.assertIn(f"instance {bastion['id']} is stopped", result["log"])
        self.assertTrue(self.volume_exists(bastion["root"]), "the previous root is kept")
        self.assertEqual(self.files(bastion["root"]), {"/etc/hostname": "bastion"})
        self.assert_untouched_instance("build-host")

    def test_an_instance_stopped_during_its_replacement_never_succeeds_and_keeps_its_previous_root(self):
        bastion = self.instances["bastion"]
        self.aws["ec2"].create_tags(Resources=[bastion["id"]], Tags=[{"Key": "ami-rollout:wave", "Value": "0"}])
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden})

        def replacing():
            tasks = self.aws["ec2"].describe_replace_root_volume_tasks(
                Filters=[{"Name": "instance-id", "Values": [bastion["id"]]}])["ReplaceRootVolumeTasks"]
            return [t for t in tasks if t["TaskState"] in ("pending", "in-progress")]

        self.wait_for("the bastion's replacement", replacing)
        self.aws["ec2"].stop_instances(InstanceIds=[bastion["id"]])
        result = self.watch(execution)
        self.assertEqual(result["status"], "FAILED", result["log"])
        self.assertTrue(self.volume_exists(bastion["root"]), "the previous root is never deleted")
        self.assertEqual(self.files(bastion["root"]), {"/etc/hostname": "bastion"})

    def test_an_instance_that_cannot_take_the_ami_is_refused_by_name_and_nothing_changes(self):
        build_host = self.instances["build-host"]
        self.aws["ec2"].stop_instances(InstanceIds=[build_host["id"]])
        result = self.run_rollout(payload={"amiId": self.golden, "instances": ["build-host", "bastion"],
                                           "targets": ["web"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"{build_host['id']}: preflight refused the rollout: it is stopped", result["cause"])
        self.assert_untouched_instance("bastion")
        self.assertEqual(self.root_of(build_host["id"]), build_host["root"])
        self.assertEqual(set(self.amis("web")), {self.current})

    def test_an_instance_another_execution_holds_for_another_ami_refuses_the_second(self):
        bastion = self.instances["bastion"]
        first = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "instances": ["bastion"]})
        self.wait_for("the bastion's hold", lambda: self.hold_on(bastion["id"]) is not None)
        second = self.run_rollout(payload={"amiId": self.bad, "instances": ["bastion"]})
        self.assertEqual((second["status"], second["error"]), ("FAILED", "TargetHeld"), second["log"])
        self.assertIn(bastion["id"], second["cause"])
        done = self.watch(first)
        self.assertEqual(done["status"], "SUCCEEDED", done["log"])
        self.assertEqual(self.described(bastion["id"])["ImageId"], self.golden)
        self.assertIsNone(self.hold_on(bastion["id"]), "released when the holder ended")

    def test_a_container_instance_that_fails_on_the_new_ami_is_back_as_it_was_and_active(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "ecs"})
        result = self.run_rollout(payload={"amiId": self.golden, "instances": [self.ecs_node]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("task failed", result["cause"])
        self.assertIn(f"container instance {self.ecs_node_arn} is ACTIVE again", result["cause"])
        # Its own previous identity is back, connected and ACTIVE; the new root's is deregistered.
        (back,) = self.container_instances(self.ecs_node)
        self.assertEqual((back["containerInstanceArn"], back["status"], back["agentConnected"]),
                         (self.ecs_node_arn, "ACTIVE", True))

    def test_a_container_instance_whose_tasks_never_leave_fails_with_nothing_replaced(self):
        ecs = self.aws["ecs"]
        definition = ecs.list_task_definitions()["taskDefinitionArns"][0]
        ecs.start_task(cluster="prod", taskDefinition=definition, containerInstances=[self.ecs_node_arn])
        self.configure({**BASE_SETTINGS, self.ecs_node: {"drainTimeoutSeconds": 5}})
        result = self.run_rollout(payload={"amiId": self.golden, "instances": [self.ecs_node]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("after it was set DRAINING (drainTimeoutSeconds 5)", result["cause"])
        self.assertEqual(self.described(self.ecs_node)["ImageId"], self.current)
        (node,) = self.container_instances(self.ecs_node)
        self.assertEqual((node["containerInstanceArn"], node["status"]), (self.ecs_node_arn, "ACTIVE"))

    def container_instances(self, instance_id):
        ecs = self.aws["ecs"]
        arns = ecs.list_container_instances(cluster="prod")["containerInstanceArns"]
        described = ecs.describe_container_instances(cluster="prod", containerInstances=arns)["containerInstances"]
        return [c for c in described if c["ec2InstanceId"] == instance_id]

    @staticmethod
    def ami_attribute(container_instance):
        return next(a.get("value") for a in container_instance["attributes"] if a["name"] == "ecs.ami-id")

    def hold_on(self, instance_id):
        tags = self.described(instance_id).get("Tags", [])
        return next((t["Value"] for t in tags if t["Key"] == "ami-rollout:held-by"), None)


class StatefulGroups(Harness):
    """The standard fleet plus `stateful`, a mixed instances group of two instances whose refresh
    strategy is ReplaceRootVolume: its instances keep their ids; only their roots change."""

    def setUp(self):
        super().setUp()
        seed.make_mixed_group(self.aws, "stateful", self.fleet["subnets"], self.current, 2)
        self.before = self.instance_ids()
        self.configure({**BASE_SETTINGS, "stateful": {"refreshStrategy": "ReplaceRootVolume"}})

    def instance_ids(self):
        group = self.aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["stateful"])
        return sorted(i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"])

    def test_the_roots_are_replaced_and_every_instance_keeps_its_id(self):
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["stateful"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertEqual(self.instance_ids(), self.before)
        self.assertEqual(set(self.amis("stateful")), {self.golden})

    def test_a_bad_ami_gives_each_instance_a_fresh_root_from_the_ami_before(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "boot"})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["stateful"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertEqual(self.instance_ids(), self.before)
        self.assertEqual(set(self.amis("stateful")), {self.current})

    def test_a_group_without_a_mixed_instances_policy_is_refused_before_anything_changes(self):
        self.configure({**BASE_SETTINGS, "web": {"refreshStrategy": "ReplaceRootVolume"}})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn("mixed instances policy", result["cause"])
        self.assertEqual(set(self.amis("web")), {self.current})


if __name__ == "__main__":
    unittest.main()
