"""End to end across accounts and regions: the central account (the local AWS's own, where the
state machine and functions run) rolls its golden AMI out to workload accounts through their
workload role, in two regions, each region on its own copy of the AMI (the same name, shared with
the workload accounts). What an operator sees: the execution's status, Error and Cause, the AMI on
every instance of every account and region, the launch template versions.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_reach   (make e2e runs it)
"""

import json
import re
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.case import LocalAwsCase, post  # noqa: E402  (it puts infra/local on the path)
from localaws import cli, deploy, rollout, seed  # noqa: E402

CANARY, SECOND, THIRD = "111111111111", "222222222222", "444444444444"
NO_ROLE = "333333333333"
REGIONS = ("us-east-1", "eu-west-1")
EXTERNAL_ID = "local-external-id"
SETTINGS = {"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}, "api": {"alarmNames": ["api-errors"]}}


class Reach(LocalAwsCase):
    """A local AWS with ami-rollout deployed in the central account, reaching three workload
    accounts in two regions; a fourth workload account has no workload role."""

    ACCOUNTS = (CANARY, SECOND, THIRD)
    GOLDEN_MISSING_IN = ()
    PAST = False  # each group with a past (seed.reach_history)

    RUN_DIR_PREFIX = "ami-rollout-e2e-reach-"

    @classmethod
    def deployed(cls):
        cls.machine = deploy.deploy(cls.sfn, cls.moto, cls.environment(cls.ACCOUNTS))

    @staticmethod
    def environment(accounts):
        return {"ASG_CONFIGURATIONS": json.dumps(SETTINGS), "TARGET_ACCOUNTS": ",".join(accounts),
                "TARGET_REGIONS": ",".join(REGIONS), "WORKLOAD_EXTERNAL_ID": EXTERNAL_ID}

    def setUp(self):
        super().setUp()
        self.reset()
        self.fleet = seed.seed_reach(self.moto, workloads=self.ACCOUNTS, regions=REGIONS,
                                     external_id=EXTERNAL_ID, without_role=(NO_ROLE,),
                                     golden_missing_in=self.GOLDEN_MISSING_IN, past=self.PAST)
        deploy.configure(self.sfn, self.moto, self.environment(self.ACCOUNTS))

    # --- what the operator sees ----------------------------------------------------------------

    def places(self, accounts=None):
        return [(a, r) for a in (accounts or self.fleet["accounts"]) for r in REGIONS]

    def ami(self, name, region):
        return self.fleet["amis"][region][name]

    def amis_on(self, account, region):
        """Each group's instance AMIs in one account and region."""
        view = rollout.fleet(self.control, account, region)["groups"]
        return {g: sorted(i["imageId"] for i in v["instances"]) for g, v in view.items()}

    def versions(self, account, region):
        ec2 = seed.account_client(self.moto, "ec2", region, account)
        return {g: [v["LaunchTemplateData"]["ImageId"] for v in ec2.describe_launch_template_versions(
                    LaunchTemplateId=spec["launchTemplateId"])["LaunchTemplateVersions"]]
                for g, spec in self.fleet["accounts"][account][region]["groups"].items()}

    def alarm_on_api(self, account, region):
        """The alarm the settings give `api`, in ALARM in one account and region."""
        cloudwatch = seed.account_client(self.moto, "cloudwatch", region, account)
        cloudwatch.put_metric_alarm(AlarmName="api-errors", MetricName="Errors", Namespace="Demo", Statistic="Sum",
                                    Period=60, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanOrEqualToThreshold")
        cloudwatch.set_alarm_state(AlarmName="api-errors", StateValue="ALARM", StateReason="5xx")

    def rollout_failing_in_the_second_account(self, region):
        """The canary account, then the second, whose `api` alarm in `region` is in ALARM: the
        execution ends RolloutFailed naming that target."""
        self.alarm_on_api(SECOND, region)
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 4,
                                   "waves": [[f"account:{CANARY}"], [f"account:{SECOND}"]]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertTrue(result["cause"].startswith(f"TargetUnhealthy: {SECOND}/{region}/api: unhealthy"),
                        result["cause"])
        return result

    def run_rollout(self, payload):
        lines = []
        execution = rollout.start(self.sfn, self.machine, payload)
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300)
        result["log"] = "\n".join(lines)
        return result

    def assert_on(self, accounts, name):
        for account, region in self.places(accounts):
            for group, images in self.amis_on(account, region).items():
                self.assertEqual(images, [self.ami(name, region)], f"{account}/{region}/{group}")

    def assert_untouched(self):
        self.assert_on(None, "current")
        for account, region in self.places():
            for group, versions in self.versions(account, region).items():
                self.assertEqual(len(versions), 1, f"{account}/{region}/{group}: no new template version")


class AcrossAccounts(Reach):

    def test_a_canary_account_first_then_every_account_and_region_on_its_regions_ami(self):
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 12,
                                   "waves": [[f"account:{CANARY}"]]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_on(self.ACCOUNTS, "golden")
        self.assert_on([NO_ROLE], "current")  # not in the reach
        # Wave 1 is the canary account (both regions), wave 2 everything else; every group got
        # one new version with its own region's AMI.
        first_wave = {c["group"] for c in result["children"].values() if c["wave"] == 0}
        self.assertEqual(first_wave, {f"{CANARY}/{r}/{g}" for r in REGIONS for g in ("api", "web")}, result["log"])
        self.assertEqual(len(result["children"]), 2 * len(self.places(self.ACCOUNTS)))
        for account, region in self.places(self.ACCOUNTS):
            for group, versions in self.versions(account, region).items():
                self.assertEqual(versions[1:], [self.ami("golden", region)], f"{account}/{region}/{group}")

    def test_concurrency_is_capped_per_account_region_each_in_its_own_lane(self):
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 1})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_on(self.ACCOUNTS, "golden")
        # One Map Run per account-region (a lane), each at most one target at a time.
        lanes = {}
        for child in result["children"].values():
            lanes.setdefault(child["mapRun"], set()).add(child["group"].rsplit("/", 1)[0])
        self.assertEqual(sorted(tuple(places) for places in lanes.values()),
                         sorted((f"{a}/{r}",) for a, r in self.places(self.ACCOUNTS)), result["log"])
        sfn = rollout._client("stepfunctions", self.sfn)
        for map_run in lanes:
            self.assertEqual(sfn.describe_map_run(mapRunArn=map_run)["maxConcurrency"], 1)
        # What AWS shows: in each account-region, one refresh ended before the next started.
        for account, region in self.places(self.ACCOUNTS):
            autoscaling = seed.account_client(self.moto, "autoscaling", region, account)
            spans = sorted((r["StartTime"], r["EndTime"])
                           for group in self.fleet["accounts"][account][region]["groups"]
                           for r in autoscaling.describe_instance_refreshes(
                               AutoScalingGroupName=group)["InstanceRefreshes"])
            self.assertEqual(len(spans), 2, f"{account}/{region}")
            self.assertLessEqual(spans[0][1], spans[1][0], f"{account}/{region}: refreshes overlapped")

    def test_a_failure_in_the_second_account_rolls_back_every_touched_target_in_both(self):
        result = self.rollout_failing_in_the_second_account("us-east-1")
        self.assertIn("alarm api-errors is in ALARM", result["cause"])
        # The canary account was rolled out, then rolled back with the second; the third was never touched.
        rolled_back = result["cause"].split("rolled back: ", 1)[1]
        for account, region in self.places([CANARY, SECOND]):
            for group in ("api", "web"):
                self.assertIn(f"{account}/{region}/{group} (back on version 1", rolled_back)
        self.assertNotIn(THIRD, rolled_back)
        self.assert_on([CANARY, SECOND, THIRD], "current")
        for account, region in self.places([THIRD]):
            for group, versions in self.versions(account, region).items():
                self.assertEqual(len(versions), 1, f"{account}/{region}/{group}")

    def test_an_account_without_the_workload_role_is_refused_before_anything_changes(self):
        deploy.configure(self.sfn, self.moto, self.environment(self.ACCOUNTS + (NO_ROLE,)))
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1")})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"account {NO_ROLE}", result["cause"])
        self.assertIn("AccessDenied", result["cause"])
        self.assert_untouched()

    def test_an_account_the_regions_ami_is_not_shared_with_is_refused_before_anything_changes(self):
        central = seed.account_client(self.moto, "ec2", "eu-west-1", self.fleet["central"])
        central.modify_image_attribute(ImageId=self.ami("golden", "eu-west-1"),
                                       LaunchPermission={"Remove": [{"UserId": THIRD}]})
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1")})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"account {THIRD}", result["cause"])
        self.assertIn(f"cannot see {self.ami('golden', 'eu-west-1')}", result["cause"])
        self.assert_untouched()

    def test_the_cli_reads_every_account_through_the_read_only_operator_role(self):
        golden = self.ami("golden", "us-east-1")
        code, out, err = cli.run(self.moto, self.sfn, "--output", "json", "drift", "--ami-id", golden)
        self.assertEqual(code, 6, err)
        report = json.loads(out)
        self.assertEqual(sorted(d["target"] for d in report["drifted"]),
                         sorted(f"{a}/{r}/{g}" for a, r in self.places(self.ACCOUNTS) for g in ("api", "web")))
        # The CLI enters workload accounts as the operator, not with the functions' role.
        code, out, err = cli.run(self.moto, self.sfn, "--operator-role", "no-such-role", "drift", "--ami-id", golden)
        self.assertEqual(code, 3, out + err)
        self.assertIn(f"account {CANARY}", err)
        self.assert_untouched()

    def test_a_manual_start_narrows_the_reach(self):
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "accounts": [SECOND],
                                   "regions": ["eu-west-1"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group, images in self.amis_on(SECOND, "eu-west-1").items():
            self.assertEqual(images, [self.ami("golden", "eu-west-1")], group)
        for account, region in self.places():
            if (account, region) != (SECOND, "eu-west-1"):
                for group, images in self.amis_on(account, region).items():
                    self.assertEqual(images, [self.ami("current", region)], f"{account}/{region}/{group}")


    def test_a_group_chosen_by_name_that_the_workload_role_may_not_change_is_refused_before_anything_changes(self):
        group = self.fleet["accounts"][SECOND]["eu-west-1"]["groups"]["web"]["name"]
        seed.account_client(self.moto, "autoscaling", "eu-west-1", SECOND).delete_tags(Tags=[
            {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "ami-rollout:enabled"}])
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "targets": [group],
                                   "accounts": [SECOND], "regions": ["eu-west-1"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"{SECOND}/eu-west-1/{group}", result["cause"])
        self.assertIn("not tagged ami-rollout:enabled=true", result["cause"])
        for name, images in self.amis_on(SECOND, "eu-west-1").items():
            self.assertEqual(images, [self.ami("current", "eu-west-1")], name)

    def test_a_workload_role_without_the_refresh_statement_refuses_it_there_and_changes_nothing_after(self):
        # The workload role is workload-account-role.yaml's; here its refresh statement is taken
        # out in one account, and the rollout is refused there as AWS would refuse it.
        iam = seed.account_client(self.moto, "iam", REGIONS[0], SECOND)
        role = self.fleet["roleName"]
        policy = iam.get_role_policy(RoleName=role, PolicyName="roll-out-and-back")["PolicyDocument"]
        policy["Statement"] = [s for s in policy["Statement"] if "autoscaling:StartInstanceRefresh" not in s["Action"]]
        iam.put_role_policy(RoleName=role, PolicyName="roll-out-and-back", PolicyDocument=json.dumps(policy))
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "accounts": [SECOND],
                                   "regions": ["eu-west-1"]})
        self.assertEqual(result["status"], "FAILED", result["log"])
        self.assertIn(f"assumed-role/{role}/", result["log"])
        self.assertIn("is not authorized to perform: autoscaling:StartInstanceRefresh", result["log"])
        for group, images in self.amis_on(SECOND, "eu-west-1").items():
            self.assertEqual(images, [self.ami("current", "eu-west-1")], group)


class WithAPast(Reach):
    """Every workload group was rolled out before: `web` on `$Latest` after three refreshes (one of
    them to a bad AMI, rolled back by hand), `api` on `$Default` after one; executions overlap."""

    PAST = True

    def group(self, account, region, group):
        autoscaling = seed.account_client(self.moto, "autoscaling", region, account)
        return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]

    def template(self, account, region, group):
        """The group's launch template reference, the template's default version and its
        versions (number -> data), as the console shows them."""
        ec2 = seed.account_client(self.moto, "ec2", region, account)
        lt = self.fleet["accounts"][account][region]["groups"][group]["launchTemplateId"]
        default = ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0]["DefaultVersionNumber"]
        versions = {v["VersionNumber"]: v["LaunchTemplateData"]
                    for v in ec2.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]}
        return self.group(account, region, group)["LaunchTemplate"]["Version"], default, versions

    def refreshes(self, account, region, group):
        autoscaling = seed.account_client(self.moto, "autoscaling", region, account)
        return autoscaling.describe_instance_refreshes(AutoScalingGroupName=group)["InstanceRefreshes"]

    def assert_as_before(self, accounts, touched=False):
        """Each group on its region's `current` AMI, with the reference and default its past left:
        web on $Latest with version 4 the latest (the rollback deleted its version, or $Latest
        would launch it), api on $Default version 2 (a rolled-back version may stay, unused)."""
        self.assert_on(accounts, "current")
        for account, region in self.places(accounts):
            reference, default, versions = self.template(account, region, "web")
            self.assertEqual((reference, max(versions)), ("$Latest", 4), f"{account}/{region}/web")
            reference, default, versions = self.template(account, region, "api")
            self.assertEqual((reference, default), ("$Default", 2), f"{account}/{region}/api")
            self.assertEqual(max(versions), 3 if touched else 2, f"{account}/{region}/api")

    def test_a_fleet_with_a_past_is_rolled_out_keeping_each_groups_reference_and_data(self):
        past = {(a, r): {g: len(self.refreshes(a, r, g)) for g in ("web", "api")} for a, r in self.places()}
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 4})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_on(self.ACCOUNTS, "golden")
        for account, region in self.places(self.ACCOUNTS):
            name = f"{account}/{region}"
            reference, _, versions = self.template(account, region, "web")
            self.assertEqual((reference, max(versions)), ("$Latest", 5), name)
            self.assertEqual(versions[5]["ImageId"], self.ami("golden", region), name)
            self.assertEqual(versions[5]["MetadataOptions"], versions[4]["MetadataOptions"], f"{name}: only the AMI changed")
            reference, default, versions = self.template(account, region, "api")
            self.assertEqual((reference, default), ("$Default", 3), name)
            self.assertEqual(versions[3]["ImageId"], self.ami("golden", region), name)
            for group in ("web", "api"):
                refreshes = self.refreshes(account, region, group)
                self.assertEqual(len(refreshes), past[(account, region)][group] + 1, f"{name}/{group}: one new refresh")
                self.assertEqual(refreshes[0]["Status"], "Successful", f"{name}/{group}")

    def test_a_failure_in_the_second_account_rolls_a_fleet_with_a_past_back_as_it_was(self):
        result = self.rollout_failing_in_the_second_account("eu-west-1")
        self.assertNotIn("not rolled back", result["cause"])
        # Both touched accounts are back as their past left them (the old refreshes were not taken
        # for the rollback's own); the third was never touched.
        self.assert_as_before([CANARY, SECOND], touched=True)
        self.assert_as_before([THIRD])

    def test_executions_in_different_accounts_overlap_and_hold_only_their_own_groups(self):
        # The same group names in two accounts, at once: two targets each, neither waits.
        payloads = [{"amiId": self.ami("golden", "us-east-1"), "accounts": [account]} for account in (CANARY, SECOND)]
        executions = [rollout.start(self.sfn, self.machine, payload) for payload in payloads]
        results = [None, None]

        def follow(i):
            results[i] = rollout.watch(self.sfn, self.control, executions[i], out=lambda _: None, timeout=300)
        threads = [threading.Thread(target=follow, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sfn = rollout._client("stepfunctions", self.sfn)
        described = [sfn.describe_execution(executionArn=e) for e in executions]
        self.assertLess(described[1]["startDate"], described[0]["stopDate"], "the two truly overlapped")
        for result in results:
            self.assertEqual(result["status"], "SUCCEEDED", result.get("cause"))
        self.assert_on([CANARY, SECOND], "golden")
        self.assert_as_before([THIRD])
        # A different AMI to every account while the first account is held: refused by name,
        # before anything changes in any account.
        holder = rollout.start(self.sfn, self.machine, {
            "amiId": self.ami("current", "us-east-1"), "accounts": [CANARY],
            "settings": {"*": {"bakeSeconds": 20}}})  # the bake runs on the wall clock here
        deadline = time.time() + 120
        while not any(t["Key"] == "ami-rollout:held-by" and t["Value"] == holder
                      for t in self.group(CANARY, "us-east-1", "web")["Tags"]):
            self.assertLess(time.time(), deadline, f"{holder} never held {CANARY}/us-east-1/web")
            time.sleep(0.5)
        other = self.run_rollout({"amiId": self.ami("bad", "us-east-1")})
        self.assertEqual((other["status"], other["error"]), ("FAILED", "TargetHeld"), other["log"])
        self.assertRegex(other["cause"], rf"{CANARY}/[a-z0-9-]+/(web|api) is held by execution {re.escape(holder)}")
        self.assertNotIn(f"{SECOND}/", other["cause"])
        self.assert_on([SECOND], "golden")
        for account, region in self.places([SECOND]):
            self.assertEqual(max(self.template(account, region, "web")[2]), 5, f"{account}/{region}: no new version")
        self.assert_as_before([THIRD])
        held = rollout.watch(self.sfn, self.control, holder, out=lambda _: None, timeout=300)
        self.assertEqual(held["status"], "SUCCEEDED", held.get("cause"))
        self.assert_on([CANARY], "current")


class AmiMissingInARegion(Reach):
    """eu-west-1 has no golden AMI: its targets are refused by name, and nothing changes anywhere."""

    GOLDEN_MISSING_IN = ("eu-west-1",)

    def test_the_regions_targets_are_refused_naming_the_region(self):
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1")})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "AmiNotUsable"), result["log"])
        self.assertIn("in eu-west-1", result["cause"])
        self.assertIn(f"{CANARY}/eu-west-1/web", result["cause"])
        self.assert_untouched()

    def test_without_its_copy_statement_distribute_ami_is_refused_and_nothing_changes(self):
        central = self.fleet["central"]
        keys = seed.make_copy_keys(self.moto, central, REGIONS, workloads=self.ACCOUNTS)
        deploy.configure(self.sfn, self.moto, {**self.environment(self.ACCOUNTS), "AMI_DISTRIBUTION": "copy",
                                               "AMI_COPY_KMS_KEYS": json.dumps({"eu-west-1": keys["eu-west-1"]})})
        deploy.create_roles(self.moto, without={"distribute-ami": "ec2:CopyImage"})
        try:
            result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 12})
        finally:
            deploy.create_roles(self.moto)
        self.assertEqual(result["status"], "FAILED", result["log"])
        self.assertIn("is not authorized to perform: ec2:CopyImage", result["log"])
        for account, region in self.places():
            for group, images in self.amis_on(account, region).items():
                self.assertEqual(images, [self.ami("current", region)], f"{account}/{region}/{group}")

    def test_with_copy_on_the_ami_is_copied_encrypted_and_shared_then_rolled_out(self):
        central = self.fleet["central"]
        keys = seed.make_copy_keys(self.moto, central, REGIONS, workloads=self.ACCOUNTS)
        deploy.configure(self.sfn, self.moto, {**self.environment(self.ACCOUNTS), "AMI_DISTRIBUTION": "copy",
                                               "AMI_COPY_KMS_KEYS": json.dumps({"eu-west-1": keys["eu-west-1"]})})
        source = self.ami("golden", "us-east-1")
        ec2 = seed.account_client(self.moto, "ec2", "eu-west-1", central)

        def copies():
            return ec2.describe_images(Owners=["self"], Filters=[
                {"Name": "name", "Values": ["ami-rollout-golden"]}])["Images"]
        # While the targets roll out to it, the copy cannot be deregistered; after, it can again.
        execution = rollout.start(self.sfn, self.machine, {"amiId": source, "maxConcurrency": 12})
        sfn, protected = rollout._client("stepfunctions", self.sfn), set()
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            protected |= {c["DeregistrationProtection"] for c in copies() if c["State"] == "available"}
            time.sleep(0.2)
        lines = []
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append)
        result["log"] = "\n".join(lines)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertTrue(any(p.startswith("enabled") for p in protected), protected)
        # One copy in eu-west-1, made by the central account: the source's name and tags, encrypted
        # with the region's configured key.
        [copy] = copies()
        self.assertEqual(copy["State"], "available")
        self.assertEqual(copy["DeregistrationProtection"], "disabled")
        volumes = [m["Ebs"] for m in copy["BlockDeviceMappings"] if "Ebs" in m]
        self.assertTrue(volumes and all(v["Encrypted"] for v in volumes), copy)
        self.assertTrue(all(v["KmsKeyId"] == keys["eu-west-1"] for v in volumes), copy)
        self.assertIn({"Key": "Name", "Value": "ami-rollout-golden"}, copy.get("Tags", []))
        # Shared with every workload account: launch permission, and a grant on the key for each
        # one's Auto Scaling service-linked role (without it their launches would fail).
        permissions = ec2.describe_image_attribute(ImageId=copy["ImageId"], Attribute="launchPermission")
        self.assertEqual({p["UserId"] for p in permissions["LaunchPermissions"]}, set(self.ACCOUNTS))
        kms = seed.account_client(self.moto, "kms", "eu-west-1", central)
        grants = kms.list_grants(KeyId=keys["eu-west-1"])["Grants"]
        role = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
        self.assertEqual({g["GranteePrincipal"] for g in grants},
                         {f"arn:aws:iam::{a}:{role}" for a in self.ACCOUNTS})
        for grant in grants:
            self.assertTrue({"Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "CreateGrant"}
                            <= set(grant["Operations"]), grant)
        # Every group on its region's AMI: the source in us-east-1, the copy in eu-west-1.
        for account in self.ACCOUNTS:
            for group, images in self.amis_on(account, "us-east-1").items():
                self.assertEqual(images, [source], f"{account}/us-east-1/{group}")
            for group, images in self.amis_on(account, "eu-west-1").items():
                self.assertEqual(images, [copy["ImageId"]], f"{account}/eu-west-1/{group}")
        self.assertIn("Wait for the copies", result["log"])

    def test_an_account_with_only_standalone_instances_gets_the_copy_without_a_grant_to_a_role_it_lacks(self):
        # An account that never used Auto Scaling has no Auto Scaling role: a grant to it would be
        # refused (InvalidArnException). Its instance's root is built by its workload role instead.
        central, lone = self.fleet["central"], "555555555555"
        seed.workload_roles(seed.account_client(self.moto, "iam", "us-east-1", lone), lone, central,
                            self.fleet["roleName"], EXTERNAL_ID)
        seed.account_client(self.moto, "ec2", "eu-west-1", central).modify_image_attribute(
            ImageId=self.ami("current", "eu-west-1"), LaunchPermission={"Add": [{"UserId": lone}]})
        instance = seed.account_client(self.moto, "ec2", "eu-west-1", lone).run_instances(
            ImageId=self.ami("current", "eu-west-1"), MinCount=1, MaxCount=1, TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "ami-rollout:enabled", "Value": "true"}]}])[
            "Instances"][0]["InstanceId"]
        accounts = self.ACCOUNTS + (lone,)
        keys = seed.make_copy_keys(self.moto, central, REGIONS, workloads=accounts)
        deploy.configure(self.sfn, self.moto, {**self.environment(accounts), "AMI_DISTRIBUTION": "copy",
                                               "AMI_COPY_KMS_KEYS": json.dumps({"eu-west-1": keys["eu-west-1"]})})
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 12})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        kms = seed.account_client(self.moto, "kms", "eu-west-1", central)
        grantees = {g["GranteePrincipal"].split(":")[4] for g in kms.list_grants(KeyId=keys["eu-west-1"])["Grants"]}
        self.assertEqual(grantees, set(self.ACCOUNTS))
        ec2 = seed.account_client(self.moto, "ec2", "eu-west-1", lone)
        [copy] = seed.account_client(self.moto, "ec2", "eu-west-1", central).describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": ["ami-rollout-golden"]}])["Images"]
        described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        self.assertEqual(described["ImageId"], copy["ImageId"])

    def test_a_copy_that_fails_ends_the_execution_with_the_holds_released_and_nothing_changed(self):
        # EC2 checks the key asynchronously: the copy starts, then fails.
        missing_key = f"arn:aws:kms:eu-west-1:{self.fleet['central']}:key/00000000-0000-0000-0000-000000000000"
        deploy.configure(self.sfn, self.moto, {**self.environment(self.ACCOUNTS), "AMI_DISTRIBUTION": "copy",
                                               "AMI_COPY_KMS_KEYS": json.dumps({"eu-west-1": missing_key})})
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1")})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "AmiNotUsable"), result["log"])
        self.assertIn("to eu-west-1 is failed", result["cause"])
        self.assertIn("Release held targets", result["log"])
        self.assert_untouched()
        for account, region in self.places(self.ACCOUNTS):
            autoscaling = seed.account_client(self.moto, "autoscaling", region, account)
            tags = autoscaling.describe_tags(Filters=[{"Name": "key", "Values": ["ami-rollout:held-by"]}])["Tags"]
            self.assertEqual(tags, [], f"{account}/{region}: the holds were released")

    def test_with_copy_on_a_shared_copy_needs_a_key_and_nothing_changes_without_one(self):
        deploy.configure(self.sfn, self.moto, {**self.environment(self.ACCOUNTS), "AMI_DISTRIBUTION": "copy"})
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1")})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "InvalidInput"), result["log"])
        self.assertIn("AMI_COPY_KMS_KEYS has no key for eu-west-1", result["cause"])
        self.assert_untouched()


class EncryptedAmi(Reach):
    """The golden AMI's snapshots are encrypted under a customer managed key of the central account
    (one per region, as seed.make_copy_keys makes them). A workload account launches from it only
    if the key's policy lets the account use it and, for its groups, its Auto Scaling role has a
    grant on the key; otherwise every launch there fails (the local AWS refuses it as AWS does), so
    preflight refuses the account, naming it and the key, before anything changes."""

    ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    OPERATIONS = ["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                  "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant"]

    def sealed(self, key_users, granted):
        """The golden AMI of each region copied encrypted under that region's key (whose policy lets
        `key_users` use it), shared with every workload account, with grants to the Auto Scaling
        roles of `granted`. Returns ({region: AMI id}, {region: key ARN})."""
        central = self.fleet["central"]
        keys = seed.make_copy_keys(self.moto, central, REGIONS, workloads=key_users)
        post(f"{self.control}/copy-time", {"seconds": 1})
        amis = {}
        for region in REGIONS:
            ec2 = seed.account_client(self.moto, "ec2", region, central)
            amis[region] = ec2.copy_image(SourceImageId=self.ami("golden", region), SourceRegion=region,
                                          Name="ami-rollout-sealed", Encrypted=True, KmsKeyId=keys[region])["ImageId"]
        post(f"{self.control}/advance", {"seconds": 3600})
        for region in REGIONS:
            ec2 = seed.account_client(self.moto, "ec2", region, central)
            ec2.modify_image_attribute(ImageId=amis[region], LaunchPermission={
                "Add": [{"UserId": account} for account in self.ACCOUNTS]})
            kms = seed.account_client(self.moto, "kms", region, central)
            for account in granted:
                kms.create_grant(KeyId=keys[region], GranteePrincipal=f"arn:aws:iam::{account}:{self.ROLE}",
                                 Operations=self.OPERATIONS)
        return amis, keys

    def standalone(self, account, region="us-east-1"):
        """A standalone instance of `account` opted in with the rollout's tag, on `current`."""
        ec2 = seed.account_client(self.moto, "ec2", region, account)
        return ec2.run_instances(ImageId=self.ami("current", region), MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "ami-rollout:enabled", "Value": "true"}]}])[
            "Instances"][0]["InstanceId"]

    def test_an_account_whose_auto_scaling_role_has_no_grant_is_refused_with_the_grant_to_make(self):
        amis, keys = self.sealed(key_users=self.ACCOUNTS, granted=(CANARY, THIRD))
        result = self.run_rollout({"amiId": amis["us-east-1"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"Auto Scaling's role in account {SECOND} has no grant on the KMS key", result["cause"])
        self.assertIn(f"--grantee-principal arn:aws:iam::{SECOND}:{self.ROLE}", result["cause"])
        self.assertTrue(any(key in result["cause"] for key in keys.values()), result["cause"])
        self.assert_untouched()

    def test_an_account_whose_instances_the_keys_policy_leaves_out_is_refused_naming_account_and_key(self):
        amis, keys = self.sealed(key_users=(CANARY, SECOND), granted=self.ACCOUNTS)
        instance = self.standalone(THIRD)
        result = self.run_rollout({"amiId": amis["us-east-1"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn(f"account {THIRD} may not use the KMS key {keys['us-east-1']}", result["cause"])
        self.assertIn("root volume replacement", result["cause"])
        self.assert_untouched()
        ec2 = seed.account_client(self.moto, "ec2", "us-east-1", THIRD)
        described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        self.assertEqual(described["ImageId"], self.ami("current", "us-east-1"))

    def test_groups_launch_by_their_grant_and_instances_by_the_key_policy(self):
        # The third account is left out of the key policy: its groups launch by their grant alone.
        amis, _ = self.sealed(key_users=(CANARY, SECOND), granted=self.ACCOUNTS)
        instance = self.standalone(SECOND)
        result = self.run_rollout({"amiId": amis["us-east-1"], "maxConcurrency": 12})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for account, region in self.places(self.ACCOUNTS):
            for group, images in self.amis_on(account, region).items():
                self.assertEqual(images, [amis[region]], f"{account}/{region}/{group}")
        # The workload role had the instance's root built from the encrypted AMI through EC2.
        ec2 = seed.account_client(self.moto, "ec2", "us-east-1", SECOND)
        described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        self.assertEqual(described["ImageId"], amis["us-east-1"])


class FromAnOrganizationalUnit(Reach):
    """The accounts are those of an organizational unit (and the unit below it), listed at plan
    time from the central account, which manages the organization here."""

    def setUp(self):
        LocalAwsCase.setUp(self)
        self.reset()
        self.organization = seed.make_organization(self.moto)
        self.fleet = seed.seed_reach(self.moto, workloads=self.organization["accounts"], regions=REGIONS,
                                     external_id=EXTERNAL_ID, without_role=())
        deploy.configure(self.sfn, self.moto, {
            **self.environment(()), "TARGET_ORGANIZATIONAL_UNITS": self.organization["unit"]})

    def test_every_active_account_of_the_unit_and_the_units_below_it_is_rolled_out(self):
        result = self.run_rollout({"amiId": self.ami("golden", "us-east-1"), "maxConcurrency": 8})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        accounts = self.organization["accounts"]
        self.assert_on(accounts, "golden")
        self.assertEqual({c["group"].split("/")[0] for c in result["children"].values()}, set(accounts))


if __name__ == "__main__":
    unittest.main()
