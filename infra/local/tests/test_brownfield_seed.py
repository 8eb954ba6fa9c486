"""The brownfield seed: the standard groups with a past, made through the public API on moto with
our extensions (no ministack, no Rust). Also the mixed-instances refresh it relies on, and that
the fresh seed is what it always was.

Run: infra/local/.venv/bin/python -m unittest discover -s infra/local/tests -v
"""

import json
import shutil
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localaws import clock, launcher, seed  # noqa: E402

FINISHED = set(seed.FINISHED)
MAIN = {"web": "web", "ecs-prod": "ecs-prod-capacity", "ecs-batch": "ecs-batch-capacity", "mixed": "mixed-capacity"}
MOTO = ""


def setUpModule():
    global MOTO, RUN_DIR
    RUN_DIR = Path(tempfile.mkdtemp(prefix="ami-rollout-brownfield-"))
    MOTO = f"http://127.0.0.1:{launcher.up(RUN_DIR, ministack=False)['motoPort']}"


def tearDownModule():
    launcher.down(RUN_DIR, quiet=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def reset():
    urllib.request.urlopen(urllib.request.Request(f"{MOTO}/_localaws/reset", data=b"{}", method="POST"))


def spec_of(desired: dict) -> dict:
    if "MixedInstancesPolicy" in desired:
        return desired["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    return desired["LaunchTemplate"]


class Brownfield(unittest.TestCase):
    """What the seed leaves behind (read only)."""

    @classmethod
    def setUpClass(cls):
        reset()
        started = time.monotonic()
        cls.fleet = seed.seed(MOTO, brownfield=True)
        cls.seeded_at = clock.utcnow()  # the local AWS stamps times on its calendar clock
        print(f"\nbrownfield seed: {time.monotonic() - started:.2f} s", file=sys.stderr)
        cls.aws = seed.clients(MOTO, launcher.REGION)
        cls.current = cls.fleet["amis"]["current"]

    def group(self, key):
        name = self.fleet["groups"][key]["name"]
        return self.aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]

    def template(self, key):
        lt = self.fleet["groups"][key]["launchTemplateId"]
        head = self.aws["ec2"].describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0]
        versions = self.aws["ec2"].describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]
        return head, {v["VersionNumber"]: v["LaunchTemplateData"]["ImageId"] for v in versions}

    def refreshes(self, key):
        return self.aws["autoscaling"].describe_instance_refreshes(
            AutoScalingGroupName=self.fleet["groups"][key]["name"])["InstanceRefreshes"]

    def test_manifest_keeps_todays_keys_and_adds_the_past(self):
        self.assertEqual(set(self.fleet["amis"]), {"previous", "current", "golden", "bad"})
        self.assertEqual(len(set(self.fleet["amis"].values())), 4)
        self.assertIs(self.fleet["brownfield"], True)
        self.assertEqual({k: g["name"] for k, g in self.fleet["groups"].items()}, MAIN)
        self.assertEqual(set(self.fleet["clusters"]), {"prod", "batch"})
        for key, g in self.fleet["groups"].items():
            self.assertIn(g["reference"], ("$Latest", "$Default", str(g["version"])), key)
            self.assertIsInstance(g["version"], int, key)

    def test_reference_styles(self):
        refs = {key: self.fleet["groups"][key]["reference"] for key in MAIN}
        self.assertEqual(refs["web"], "$Latest")
        self.assertEqual(refs["ecs-batch"], "$Default")
        self.assertTrue(refs["ecs-prod"].isdigit(), refs)
        self.assertTrue(refs["mixed"].isdigit(), refs)
        for key in ("web", "ecs-prod", "ecs-batch"):
            self.assertEqual(self.group(key)["LaunchTemplate"]["Version"], refs[key], key)

    def test_templates_have_many_versions_and_defaults_behind_the_groups(self):
        for key in MAIN:
            g = self.fleet["groups"][key]
            head, versions = self.template(key)
            with self.subTest(group=key):
                self.assertGreaterEqual(len(versions), 5)
                self.assertEqual(versions[g["version"]], self.current, "the version it runs has the current AMI")
                self.assertEqual((head["DefaultVersionNumber"], head["LatestVersionNumber"]),
                                 (g["defaultVersion"], g["latestVersion"]))
                if g["reference"] == "$Latest":
                    self.assertEqual(g["version"], head["LatestVersionNumber"])
                elif g["reference"] == "$Default":
                    self.assertEqual(g["version"], head["DefaultVersionNumber"])
                else:
                    self.assertNotIn(g["version"], (head["DefaultVersionNumber"], head["LatestVersionNumber"]))
                if key != "ecs-batch":  # on $Default, the default is what it runs
                    self.assertNotEqual(head["DefaultVersionNumber"], g["version"])
                if key != "web":  # on $Latest, nothing can come after it
                    self.assertGreater(head["LatestVersionNumber"], g["version"], "versions after the group's")
                self.assertIn(self.fleet["amis"]["previous"], versions.values())

    def test_every_instance_runs_the_current_ami_from_the_groups_version(self):
        for key in MAIN:
            g, asg = self.fleet["groups"][key], self.group(key)
            ids = [i["InstanceId"] for i in asg["Instances"]]
            images = [i["ImageId"] for r in self.aws["ec2"].describe_instances(InstanceIds=ids)["Reservations"]
                      for i in r["Instances"]]
            with self.subTest(group=key):
                self.assertEqual(len(ids), 2)
                self.assertEqual(images, [self.current] * 2)
                self.assertEqual({i["LifecycleState"] for i in asg["Instances"]}, {"InService"})
                self.assertEqual({i["LaunchTemplate"]["Version"] for i in asg["Instances"]}, {str(g["version"])})

    def test_each_group_has_a_finished_history_including_a_refresh_to_the_version_it_runs(self):
        statuses = set()
        for key in MAIN:
            g = self.fleet["groups"][key]
            refreshes = self.refreshes(key)
            with self.subTest(group=key):
                self.assertGreaterEqual(len(refreshes), 3)
                self.assertLessEqual({r["Status"] for r in refreshes}, FINISHED, "nothing active")
                specs = [spec_of(r["DesiredConfiguration"]) for r in refreshes]
                self.assertEqual({s["LaunchTemplateId"] for s in specs}, {g["launchTemplateId"]})
                self.assertGreaterEqual(len({s["Version"] for s in specs}), 3, "refreshes to several versions")
                self.assertTrue(any(r["Status"] == "Successful" and spec_of(r["DesiredConfiguration"])["Version"]
                                    == str(g["version"]) for r in refreshes), "a refresh to the version it runs")
                for r in refreshes:
                    self.assertLess(r["StartTime"], self.seeded_at)
                    self.assertLessEqual(r["EndTime"], self.seeded_at)
                self.assertEqual([(x["version"], x["status"]) for x in g["refreshes"]],
                                 [(int(spec_of(r["DesiredConfiguration"])["Version"]), r["Status"])
                                  for r in reversed(refreshes)], "the manifest lists them oldest first")
                statuses |= {r["Status"] for r in refreshes}
        self.assertLessEqual({"Successful", "RollbackSuccessful", "Cancelled"}, statuses)

    def test_mixed_group_is_a_mixed_instances_group_refreshed_through_its_policy(self):
        g, asg = self.fleet["groups"]["mixed"], self.group("mixed")
        self.assertNotIn("LaunchTemplate", asg, "AWS names a mixed group's template only in its policy")
        lt = asg["MixedInstancesPolicy"]["LaunchTemplate"]
        self.assertEqual(lt["LaunchTemplateSpecification"]["LaunchTemplateId"], g["launchTemplateId"])
        self.assertEqual(lt["LaunchTemplateSpecification"]["Version"], g["reference"])
        self.assertEqual([o["InstanceType"] for o in lt["Overrides"]], ["m7i.large", "m6i.large", "m5.large"])
        self.assertFalse(any("LaunchTemplateSpecification" in o for o in lt["Overrides"]))
        self.assertEqual(asg["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandBaseCapacity"], 2)
        self.assertIn({"Key": "ami-rollout:enabled", "Value": "true"},
                      [{"Key": t["Key"], "Value": t["Value"]} for t in asg["Tags"]])
        refreshes = self.refreshes("mixed")
        self.assertTrue(all("MixedInstancesPolicy" in r["DesiredConfiguration"] for r in refreshes))
        self.assertIn("RollbackSuccessful", [r["Status"] for r in refreshes])
        fleet = json.load(urllib.request.urlopen(f"{MOTO}/_localaws/fleet"))
        self.assertEqual(len(fleet["groups"]["mixed-capacity"]["instances"]), 2, "the control endpoint shows it")

    def test_ecs_capacity_and_parameter_are_as_after_real_rollouts(self):
        fleet = json.load(urllib.request.urlopen(f"{MOTO}/_localaws/fleet"))
        for cluster in ("prod", "batch"):
            view = fleet["clusters"][cluster]
            self.assertEqual([ci["amiId"] for ci in view["containerInstances"]], [self.current] * 2, cluster)
            self.assertEqual({s["rolloutState"] for s in view["services"]}, {"COMPLETED"}, cluster)
        self.assertEqual(fleet["badAmis"], {}, "the seed leaves no AMI marked bad")
        parameter = self.aws["ssm"].get_parameter(Name="/ami/linux/prod")["Parameter"]
        self.assertEqual((parameter["Value"], parameter["Version"]), (self.current, 2))


class MixedRefresh(unittest.TestCase):
    """A mixed-instances group refreshed through DesiredConfiguration.MixedInstancesPolicy."""

    def setUp(self):
        reset()
        self.fleet = seed.seed(MOTO, brownfield=True)
        self.aws = seed.clients(MOTO, launcher.REGION)
        self.asg = self.aws["autoscaling"]
        self.past = seed.Past(self.aws, MOTO, 2)
        self.mixed = self.fleet["groups"]["mixed"]
        self.lt = self.mixed["launchTemplateId"]

    def group(self):
        return self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["mixed-capacity"])["AutoScalingGroups"][0]

    def images(self):
        ids = [i["InstanceId"] for i in self.group()["Instances"]]
        return sorted(i["ImageId"] for r in self.aws["ec2"].describe_instances(InstanceIds=ids)["Reservations"]
                      for i in r["Instances"])

    def desired(self, version, template=None):
        return {"MixedInstancesPolicy": {"LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": template or self.lt, "Version": str(version)},
            "Overrides": seed.OVERRIDES}}}

    def test_a_refresh_to_a_new_version_rolled_back_by_hand_leaves_the_group_as_it_was(self):
        bad = self.aws["ec2"].create_launch_template_version(
            LaunchTemplateId=self.lt, SourceVersion=str(self.mixed["version"]),
            LaunchTemplateData={"ImageId": self.fleet["amis"]["bad"]})["LaunchTemplateVersion"]["VersionNumber"]
        before = self.group()["MixedInstancesPolicy"]
        refresh_id = self.asg.start_instance_refresh(
            AutoScalingGroupName="mixed-capacity", DesiredConfiguration=self.desired(bad),
            Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 600})["InstanceRefreshId"]
        midway = self.past.play("mixed-capacity", refresh_id, until=self.past.midway, step=700)
        self.assertEqual(midway["PercentageComplete"], 50)
        self.assertIn(self.fleet["amis"]["bad"], self.images(), "half the group is on the new version")
        with self.assertRaises(ClientError) as refused:
            self.asg.update_auto_scaling_group(AutoScalingGroupName="mixed-capacity",
                                               MixedInstancesPolicy=self.desired(bad)["MixedInstancesPolicy"])
        self.assertEqual(refused.exception.response["Error"]["Code"], "ValidationError")
        self.asg.rollback_instance_refresh(AutoScalingGroupName="mixed-capacity")
        done = self.past.play("mixed-capacity", refresh_id, step=700)
        self.assertEqual(done["Status"], "RollbackSuccessful")
        self.assertEqual(done["RollbackDetails"]["PercentageCompleteOnRollback"], 50)
        self.assertEqual(self.group()["MixedInstancesPolicy"], before, "the policy keeps the saved version")
        self.assertEqual(self.images(), [self.fleet["amis"]["current"]] * 2)
        self.assertEqual({i["LaunchTemplate"]["Version"] for i in self.group()["Instances"]},
                         {str(self.mixed["version"])})

    def test_a_successful_refresh_gives_the_policy_the_new_version_and_keeps_the_rest(self):
        before = self.group()["MixedInstancesPolicy"]
        latest = self.mixed["latestVersion"]
        done = self.past.refresh("mixed-capacity", self.lt, latest, mixed=True)
        self.assertEqual(done["Status"], "Successful")
        after = self.group()["MixedInstancesPolicy"]
        self.assertEqual(after["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"], str(latest))
        self.assertEqual(after["LaunchTemplate"]["Overrides"], before["LaunchTemplate"]["Overrides"])
        self.assertEqual(after["InstancesDistribution"], before["InstancesDistribution"])
        self.assertEqual({i["LaunchTemplate"]["Version"] for i in self.group()["Instances"]}, {str(latest)})
        # An update that does not name the policy leaves it (moto alone would drop it).
        self.asg.update_auto_scaling_group(AutoScalingGroupName="mixed-capacity", MaxSize=5)
        self.assertEqual(self.group()["MixedInstancesPolicy"], after)

    def test_what_start_instance_refresh_refuses_for_a_mixed_group(self):
        web = self.fleet["groups"]["web"]["launchTemplateId"]
        both = {**self.desired(self.mixed["version"]),
                "LaunchTemplate": {"LaunchTemplateId": self.lt, "Version": str(self.mixed["version"])}}
        cases = {
            "another template in the policy": (self.desired(1, template=web), {}),
            "$Latest with AutoRollback": (self.desired("$Latest"), {"AutoRollback": True}),
            "a LaunchTemplate and a MixedInstancesPolicy": (both, {}),
            "a LaunchTemplate for a mixed group": (
                {"LaunchTemplate": {"LaunchTemplateId": self.lt, "Version": "2"}}, {}),
        }
        for name, (desired, prefs) in cases.items():
            with self.subTest(name), self.assertRaises(ClientError) as refused:
                self.asg.start_instance_refresh(AutoScalingGroupName="mixed-capacity",
                                                DesiredConfiguration=desired, Preferences=prefs)
            self.assertEqual(refused.exception.response["Error"]["Code"], "ValidationError", name)
        self.assertEqual(len(self.asg.describe_instance_refreshes(
            AutoScalingGroupName="mixed-capacity")["InstanceRefreshes"]), len(self.mixed["refreshes"]))


class Cancel(unittest.TestCase):
    """The brownfield history has a cancelled refresh; a cancelled refresh replaces nothing more."""

    def test_a_cancelled_refresh_keeps_what_it_replaced_and_replaces_nothing_more(self):
        reset()
        fleet = seed.seed(MOTO)
        aws = seed.clients(MOTO, launcher.REGION)
        lt = fleet["groups"]["web"]["launchTemplateId"]
        aws["ec2"].create_launch_template_version(LaunchTemplateId=lt, SourceVersion="1",
                                                  LaunchTemplateData={"ImageId": fleet["amis"]["golden"]})
        past = seed.Past(aws, MOTO, 2)
        done = past.cancelled("web", lt, 2)
        self.assertEqual((done["Status"], done["StatusReason"]), ("Cancelled", "Instance refresh cancelled."))
        instances = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"]
        self.assertEqual(sorted((i["LaunchTemplate"]["Version"], i["LifecycleState"]) for i in instances),
                         [("1", "InService"), ("2", "InService")], "one replaced, one left, none launching")


class Fresh(unittest.TestCase):
    """Without --brownfield the seed is what the other tests rely on."""

    def test_fresh_seed_is_unchanged(self):
        reset()
        fleet = seed.seed(MOTO)
        aws = seed.clients(MOTO, launcher.REGION)
        self.assertEqual(set(fleet), {"region", "vpc", "subnets", "amis", "parameter", "groups", "clusters", "alarms"})
        self.assertEqual(set(fleet["amis"]), {"current", "golden", "bad"})
        self.assertEqual(fleet["groups"], {k: {"name": v, "launchTemplateId": fleet["groups"][k]["launchTemplateId"]}
                                           for k, v in MAIN.items() if k != "mixed"})
        for key, g in fleet["groups"].items():
            asg = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[g["name"]])["AutoScalingGroups"][0]
            versions = aws["ec2"].describe_launch_template_versions(LaunchTemplateId=g["launchTemplateId"])
            self.assertEqual(asg["LaunchTemplate"]["Version"], "1", key)
            self.assertEqual([(v["VersionNumber"], v["LaunchTemplateData"]["ImageId"])
                              for v in versions["LaunchTemplateVersions"]], [(1, fleet["amis"]["current"])], key)
            self.assertEqual(aws["autoscaling"].describe_instance_refreshes(
                AutoScalingGroupName=g["name"])["InstanceRefreshes"], [], key)


if __name__ == "__main__":
    unittest.main()
