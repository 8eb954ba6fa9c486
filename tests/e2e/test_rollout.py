"""End to end: the real state machine on local Step Functions (ministack) runs the real debug
binaries against the local fleet (moto + extensions). Each scenario asserts what an operator sees:
the execution's status, Error and Cause, the AMIs on the instances, the launch template versions,
how each group refers to its template, the template's default.

Every rollout and rollback scenario runs twice: on a fresh fleet (one template version, no refresh
history) and on a brownfield one (groups refreshed before, to the version they run too; many
versions; $Latest, $Default and pinned references; a mixed-instances group), because rules about
"a refresh to version N" or "our versions" must hold on fleets with a past. Executions that truly
overlap, and the holds and AMI protection between them, run on the brownfield fleet.

Run: make e2e (pytest-xdist over E2E_WORKERS), or one class:
infra/local/.venv/bin/python -m pytest tests/e2e/test_rollout.py::FreshFleet
Needs the debug binaries (make build). One local AWS serves each class's scenarios (tests/e2e/case.py);
each scenario starts from a reset, freshly seeded fleet.
"""

import json
import sys
import threading
import time
import unittest
import urllib.request
from datetime import timedelta
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.case import LocalAwsCase, post  # noqa: E402  (it puts infra/local on the path)
from localaws import clock, deploy, launcher, rollout, seed  # noqa: E402

BASE_SETTINGS = {"*": {"wave": 2, "minHealthyPercentage": 50, "bakeSeconds": 3}, "web": {"wave": 1}}
WAVE = ["Is there a wave left?", "Pick the wave", "Roll out the wave", "How did the wave go?", "Did a target fail?",
        "Is an approval due?", "Go to the next wave"]
# Two waves (web first, then the rest), then the end.
RUNBOOK = (["Is the input a batch from a pipe?", "Is an AMI to be baked first?", "Resolve AMI and plan",
            "Is there anything to do?", "Take hold of the targets", "Is this an undo?",
            "Does a region need a copy of the AMI?", "Start with the first wave"] + WAVE * 2
           + ["Is there a wave left?", "Release held targets", "How did the rollout end?", "Delete the replaced roots",
              "Rollout succeeded"])
# A child execution stopped by AWS not answering fails its Map Run: AWS's own error for the parent.
MAP_RUN_FAILED = "States.ExceedToleratedFailureThreshold"
HOLD_TAG = "ami-rollout:held-by"


class Harness(LocalAwsCase):
    """A local AWS with ami-rollout deployed, and what an operator looks at."""

    BROWNFIELD = False
    EXTRA_GROUPS = 0  # plain groups of one instance each, beside the three main ones

    @classmethod
    def deployed(cls):
        cls.machine = deploy.deploy(cls.sfn, cls.moto, {"ASG_CONFIGURATIONS": json.dumps(BASE_SETTINGS)})

    def setUp(self):
        super().setUp()
        self.reset()
        self.fleet = seed.seed(self.moto, brownfield=self.BROWNFIELD, extra_groups=self.EXTRA_GROUPS)
        self.current, self.golden, self.bad = (self.fleet["amis"][k] for k in ("current", "golden", "bad"))
        self.aws = seed.clients(self.moto, launcher.REGION)
        self.templates = {g["name"]: g["launchTemplateId"] for g in self.fleet["groups"].values()}
        self.groups = sorted(self.templates)
        # The fleet's past, to tell this execution's work from what was there before.
        self.past = {g: {"versions": self.versions(g), "refreshes": len(self.refreshes(g)),
                         "reference": self.reference(g), "default": self.default_version(g)}
                     for g in self.groups}
        self.configure()

    def configure(self, settings=None, **env):
        env = {"ASG_CONFIGURATIONS": json.dumps(settings or BASE_SETTINGS), **env}
        deploy.configure(self.sfn, self.moto, env)

    # --- what the operator sees ----------------------------------------------------------------

    def run_rollout(self, payload=None, ami=None):
        lines = []
        if payload is None:
            execution, _ = rollout.start_from_parameter_change(
                self.sfn, self.moto, self.machine, "/ami/linux/prod", ami or self.golden)
        else:
            execution = rollout.start(self.sfn, self.machine, payload)
        return self.watch(execution, lines)

    def watch(self, execution, lines=None, **kw):
        lines = [] if lines is None else lines
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300, **kw)
        result["log"] = "\n".join(lines)
        result["arn"] = execution
        return result

    def watch_all(self, executions):
        """Follows executions that run at once, each to its end, in the order given."""
        results = [None] * len(executions)

        def follow(i):
            results[i] = self.watch(executions[i])
        threads = [threading.Thread(target=follow, args=(i,)) for i in range(len(executions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def amis(self, group):
        view = rollout.fleet(self.control)["groups"][group]
        return sorted(i["imageId"] for i in view["instances"])

    def refreshes(self, group):
        """The group's refreshes, newest first."""
        return rollout.fleet(self.control)["groups"][group]["refreshes"]

    def new_refreshes(self, group):
        """The refreshes started since the fleet was seeded, newest first."""
        refreshes = self.refreshes(group)
        return refreshes[:len(refreshes) - self.past[group]["refreshes"]]

    def versions(self, group):
        out = self.aws["ec2"].describe_launch_template_versions(LaunchTemplateId=self.templates[group])
        return sorted((v["VersionNumber"], v["LaunchTemplateData"]["ImageId"]) for v in out["LaunchTemplateVersions"])

    def new_versions(self, group):
        return [v for v in self.versions(group) if v not in self.past[group]["versions"]]

    def reference(self, group):
        """The version the group names: `$Latest`, `$Default` or a number."""
        g = self.aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        spec = g.get("LaunchTemplate") or g["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
        return spec["Version"]

    def default_version(self, group):
        return self.aws["ec2"].describe_launch_templates(
            LaunchTemplateIds=[self.templates[group]])["LaunchTemplates"][0]["DefaultVersionNumber"]

    def hold_tag(self, group):
        tags = self.aws["autoscaling"].describe_tags(Filters=[
            {"Name": "auto-scaling-group", "Values": [group]}, {"Name": "key", "Values": [HOLD_TAG]}])["Tags"]
        return tags[0]["Value"] if tags else None

    def protection(self, image):
        images = self.aws["ec2"].describe_images(ImageIds=[image])["Images"]
        return images[0].get("DeregistrationProtection", "disabled")

    def clear_faults(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.control}/faults", method="DELETE"))

    def wait_for(self, what, condition, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            time.sleep(0.1)
        self.fail(f"timed out waiting for {what}")

    @staticmethod
    def functions_run(events):
        """The functions the state machine invoked in these history events."""
        return {e["taskScheduledEventDetails"]["resource"].rsplit(":", 1)[-1]
                for e in events if e["type"] == "TaskScheduled"}

    def rerun_by_redrive(self, stopped, result, seen):
        """The functions a redrive invoked: in the parent after `seen` events, in each child after
        its own redrive, and in children the stopped execution did not have."""
        run = self.functions_run(result["events"][seen:])
        for arn, child in result["children"].items():
            events = child["events"]
            redriven = [i for i, e in enumerate(events) if e["type"] == "ExecutionRedriven"]
            if redriven:
                run |= self.functions_run(events[redriven[-1]:])
            elif arn not in stopped["children"]:
                run |= self.functions_run(events)
        return run

    @staticmethod
    def outcomes(result, label="target-rollout"):
        """Each group of the waves' children (or the rollback's) and how its child ended: its
        output's `outcome`, or its status when it did not succeed."""
        ended = {}
        for child in result["children"].values():
            if f"/{label}:" not in child["mapRun"]:
                continue
            done = [e for e in child["events"] if e["type"] == "ExecutionSucceeded"]
            output = json.loads(done[-1]["executionSucceededEventDetails"]["output"]) if done else {}
            ended[child["group"]] = output.get("outcome", child["status"])
        return ended

    def failed_child(self, result):
        """The one child execution that failed, as DescribeExecution shows it."""
        [arn] = [a for a, c in result["children"].items() if c["status"] == "FAILED"]
        return self.sfn_client.describe_execution(executionArn=arn)

    def assert_untouched(self, groups=None):
        for group in groups or self.groups:
            self.assertEqual(self.amis(group), [self.current] * 2, group)
            self.assertEqual(self.new_versions(group), [], group)
            self.assertEqual(self.new_refreshes(group), [], group)
            self.assertEqual(self.reference(group), self.past[group]["reference"], group)

    def assert_back_as_before(self, group):
        """On the earlier AMI, with the reference style and template default it had."""
        self.assertEqual(self.amis(group), [self.current] * 2, group)
        self.assertEqual(self.reference(group), self.past[group]["reference"], group)
        self.assertEqual(self.default_version(group), self.past[group]["default"], group)
        if self.past[group]["reference"] == "$Latest":
            self.assertEqual(self.new_versions(group), [], f"{group}: $Latest resolves to the rollback point again")

    def assert_rolled_out(self, group, ami):
        """On `ami` through exactly one new version and one refresh; the reference style kept."""
        self.assertEqual(self.amis(group), [ami] * 2, group)
        [(version, image)] = self.new_versions(group)
        self.assertEqual(image, ami, group)
        self.assertEqual([r["Status"] for r in self.new_refreshes(group)], ["Successful"], group)
        style = self.past[group]["reference"]
        if style == "$Default":
            self.assertEqual((self.reference(group), self.default_version(group)), ("$Default", version), group)
        else:
            self.assertEqual(self.reference(group), "$Latest" if style == "$Latest" else str(version), group)


class Scenarios:
    """Rollouts and rollbacks, run on the fresh and on the brownfield fleet."""

    def test_happy_path_canary_wave_first_then_the_rest(self):
        result = self.run_rollout()
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)
        canary_end = self.new_refreshes("web")[0]["EndTime"]
        for group in set(self.groups) - {"web"}:
            self.assertGreater(self.new_refreshes(group)[0]["StartTime"], canary_end, "wave 2 starts after wave 1")
        entered = [e["stateEnteredEventDetails"]["name"] for e in result["events"] if "stateEnteredEventDetails" in e]
        self.assertEqual(entered, RUNBOOK, "the history reads as the runbook")
        for group in self.groups:
            self.assertIsNone(self.hold_tag(group), f"{group}: released at the end")
        self.assertEqual(self.protection(self.current), "disabled", "protection restored at the end")

    def test_bad_ami_fails_the_canary_rolls_back_natively_and_stops_later_waves(self):
        post(f"{self.control}/bad-ami", {"imageId": self.bad, "mode": "boot"})
        result = self.run_rollout(ami=self.bad)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("RollbackSuccessful", result["cause"])
        self.assertIn("web", result["cause"])
        self.assert_back_as_before("web")
        self.assertEqual(self.new_refreshes("web")[0]["Status"], "RollbackSuccessful")
        self.assert_untouched(set(self.groups) - {"web"})
        self.assertIsNone(self.hold_tag("web"), "released after the rollback")

    def test_ecs_services_failing_on_the_new_ami_roll_the_group_back(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "ecs"})
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["ecs-batch-capacity"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("Essential container in task exited", result["cause"])
        self.assert_back_as_before("ecs-batch-capacity")
        statuses = [r["Status"] for r in self.new_refreshes("ecs-batch-capacity")]
        self.assertEqual(statuses, ["Successful", "Successful"], "the refresh out and the refresh back")

    def test_an_alarm_in_the_bake_window_rolls_back_a_successful_refresh(self):
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 60, "alarmNames": ["web-5xx"]}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        self.wait_for("the refresh to succeed", lambda: [r["Status"] for r in self.new_refreshes("web")] == ["Successful"])
        post(f"{self.control}/alarm", {"name": "web-5xx", "state": "ALARM"})
        result = self.watch(execution)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("web-5xx", result["cause"])
        self.assert_back_as_before("web")
        statuses = [r["Status"] for r in self.new_refreshes("web")]
        self.assertEqual(statuses, ["Successful", "Successful"], "one refresh out, one back: never an old one adopted")

    def test_wave_scope_rolls_back_only_the_wave_that_failed_even_at_its_first_step(self):
        # The canary wave rolls out; every group of the next wave is refused its template version.
        post(f"{self.control}/faults", {"operation": "CreateLaunchTemplateVersion", "code": "UnauthorizedOperation",
                                         "status": 403, "count": 100, "after": 1})
        result = self.run_rollout(payload={"amiId": self.golden, "rollbackScope": "wave"})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("UnauthorizedOperation", result["cause"])
        self.assertNotRegex(result["cause"], r"rolled back: .*\bweb\b", "the canary wave stays rolled out")
        self.assert_rolled_out("web", self.golden)
        self.assert_untouched(set(self.groups) - {"web"})

    def test_throttling_and_server_errors_are_retried_to_success(self):
        for fault in (("DescribeImages", "RequestLimitExceeded", 503, 2),
                      ("CreateLaunchTemplateVersion", "InternalError", 500, 1),
                      ("StartInstanceRefresh", "Throttling", 400, 1),
                      ("DescribeInstanceRefreshes", "Throttling", 400, 3)):
            post(f"{self.control}/faults", dict(zip(("operation", "code", "status", "count"), fault)))
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)

    def test_aws_not_answering_stops_in_place_and_a_redrive_completes_the_rollout(self):
        # Only check-ecs-health reads alarms: the failure lands after the version and the refresh.
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3, "alarmNames": ["web-5xx"]}},
                       AWS_MAX_ATTEMPTS="1")
        post(f"{self.control}/faults", {"operation": "DescribeAlarms", "code": "Throttling", "count": 100})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        lines = []
        stopped = self.watch(execution, lines)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", MAP_RUN_FAILED), stopped["log"])
        child = self.failed_child(stopped)
        self.assertEqual(child["error"], "AwsThrottled", stopped["log"])
        self.assertIn("DescribeAlarms", child["cause"])
        self.assertIn("redrive", child["cause"])
        self.assertEqual(json.loads(child["input"])["target"]["group"], "web")
        self.assertEqual([image for _, image in self.new_versions("web")], [self.golden], "nothing rolled back")
        self.assertEqual(len(self.new_refreshes("web")), 1)
        self.assertEqual(self.sfn_client.describe_execution(executionArn=execution)["redriveStatus"], "REDRIVABLE")
        self.assertEqual(self.hold_tag("web"), execution, "a holder stopped for a redrive keeps its hold")

        self.clear_faults()
        seen = rollout.redrive(self.sfn, execution)
        result = self.watch(execution, lines, since=seen)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)
        described = self.sfn_client.describe_execution(executionArn=execution)
        self.assertEqual((described["redriveCount"], described["redriveStatus"]), (1, "NOT_REDRIVABLE"))
        after = result["events"][seen:]
        self.assertEqual(after[0]["type"], "ExecutionRedriven")
        rerun = self.rerun_by_redrive(stopped, result, seen)
        self.assertNotIn("ami-rollout-resolve-ami", rerun, "completed steps are not rerun")
        self.assertNotIn("ami-rollout-start-refresh", rerun, "completed steps are not rerun")
        self.assertIn("ami-rollout-check-ecs-health", rerun)
        with self.assertRaises(self.sfn_client.exceptions.ExecutionNotRedrivable):
            self.sfn_client.redrive_execution(executionArn=execution)
        self.assertIsNone(self.hold_tag("web"))

    def test_a_rollback_interrupted_by_aws_stops_and_a_redrive_finishes_it(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "ecs"})
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}}, AWS_MAX_ATTEMPTS="1")
        # The rollout's own refresh goes through; the rollback's refresh back is throttled.
        post(f"{self.control}/faults", {"operation": "StartInstanceRefresh", "code": "Throttling",
                                         "count": 100, "after": 1})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["ecs-batch-capacity"]})
        lines = []
        stopped = self.watch(execution, lines)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", MAP_RUN_FAILED), stopped["log"])
        child = self.failed_child(stopped)
        self.assertEqual(child["error"], "AwsThrottled", stopped["log"])
        self.assertIn("StartInstanceRefresh", child["cause"])
        self.assertIn("target-rollback", child["executionArn"], "a child of the rollback's Map Run")
        self.assertEqual(self.amis("ecs-batch-capacity"), [self.golden] * 2, "the rollback had not started")

        self.clear_faults()
        seen = rollout.redrive(self.sfn, execution)
        result = self.watch(execution, lines, since=seen)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("Essential container in task exited", result["cause"])
        self.assert_back_as_before("ecs-batch-capacity")
        statuses = [r["Status"] for r in self.new_refreshes("ecs-batch-capacity")]
        self.assertEqual(statuses, ["Successful", "Successful"], "one refresh out, one back")
        self.assertEqual(self.rerun_by_redrive(stopped, result, seen),
                         {"ami-rollout-rollback", "ami-rollout-hold-targets"},
                         "only the rollback (and the release after it) runs again")

    def test_the_same_trigger_twice_rolls_out_once(self):
        first = self.run_rollout()
        self.assertEqual(first["status"], "SUCCEEDED", first["log"])
        event = rollout.parameter_store_change("/ami/linux/prod")
        second = self.run_rollout(payload=event)
        self.assertEqual(second["status"], "SUCCEEDED", second["log"])
        self.assertIn("already", second["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)

    def test_excluded_and_already_current_groups_are_untouched_and_reported(self):
        self.configure(EXCLUDED_ASGS="ecs-batch-capacity")
        first = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(first["status"], "SUCCEEDED", first["log"])
        result = self.run_rollout()
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertRegex(result["log"], r"skipped web: .*already")
        self.assertRegex(result["log"], r"skipped ecs-batch-capacity: .*exclu")
        self.assert_rolled_out("web", self.golden)
        self.assert_untouched(["ecs-batch-capacity"])
        self.assert_rolled_out("ecs-prod-capacity", self.golden)

    def test_an_event_for_a_parameter_the_deployment_does_not_follow_has_nothing_to_do(self):
        # A second rule, a replay or a hand start naming another parameter: the functions know
        # which parameters the deployment follows (AmiParameterNames), not only the rule.
        self.aws["ssm"].put_parameter(Name="/ami/linux/other", Value=self.golden, Type="String",
                                      DataType="aws:ec2:image")
        event = {"version": "0", "id": "e", "detail-type": "Parameter Store Change", "source": "aws.ssm",
                 "account": "123456789012", "time": "2026-12-07T00:00:00Z", "region": "us-east-1",
                 "resources": ["arn:aws:ssm:us-east-1:123456789012:parameter/ami/linux/other"],
                 "detail": {"operation": "Update", "name": "/ami/linux/other", "type": "String"}}
        for payload in (event, {"parameterName": "/ami/linux/other"}):
            with self.subTest(payload=payload):
                result = self.run_rollout(payload=payload)
                self.assertEqual(result["status"], "SUCCEEDED", result["log"])
                self.assertIn("/ami/linux/other is not one this deployment follows", result["log"])
        self.assert_untouched()

    def test_bad_trigger_input_fails_with_its_name_and_changes_nothing(self):
        cases = [
            ({"detail-type": "Parameter Store Change", "source": "aws.ssm", "detail": {}}, "InvalidInput"),
            ({"amiId": "ami-0123456789abcdef0"}, "AmiNotUsable"),
        ]
        for payload, error in cases:
            with self.subTest(payload=payload):
                result = self.run_rollout(payload=payload)
                self.assertEqual((result["status"], result["error"]), ("FAILED", error), result["log"])
                self.assertTrue(result["cause"])
        self.assert_untouched()


class FreshFleet(Scenarios, Harness):
    BROWNFIELD = False

    def test_a_mixed_instances_group_whose_overrides_carry_their_own_template_is_refused(self):
        """Its own scenario, not part of the brownfield fleet: one refusal fails every plan."""
        ec2, autoscaling = self.aws["ec2"], self.aws["autoscaling"]
        arm = ec2.create_launch_template(LaunchTemplateName="graviton-lt", LaunchTemplateData={
            "ImageId": self.current, "InstanceType": "m7g.large"})["LaunchTemplate"]["LaunchTemplateId"]
        x86 = ec2.create_launch_template(LaunchTemplateName="mixed-own-lt", LaunchTemplateData={
            "ImageId": self.current, "InstanceType": "m7i.large"})["LaunchTemplate"]["LaunchTemplateId"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="mixed-own", MinSize=0, MaxSize=2, DesiredCapacity=0,
            VPCZoneIdentifier=",".join(self.fleet["subnets"]),
            MixedInstancesPolicy={"LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": x86, "Version": "1"},
                "Overrides": [{"InstanceType": "m7i.large"},
                              {"InstanceType": "m7g.large",
                               "LaunchTemplateSpecification": {"LaunchTemplateId": arm, "Version": "1"}}]}},
            Tags=[{"Key": "ami-rollout:enabled", "Value": "true", "PropagateAtLaunch": False,
                   "ResourceId": "mixed-own", "ResourceType": "auto-scaling-group"}])
        result = self.run_rollout(payload={"amiId": self.golden})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn("mixed-own", result["cause"])
        self.assertIn("their own launch template", result["cause"])
        self.assert_untouched()
        for template in (arm, x86):
            versions = ec2.describe_launch_template_versions(LaunchTemplateId=template)["LaunchTemplateVersions"]
            self.assertEqual(len(versions), 1, "nothing changed on the refused group's templates")


    def test_a_deprecated_ami_is_refused_with_its_date_and_nothing_changes(self):
        # Deprecated two calendar minutes from now (EC2 rounds to the minute), then waited out.
        at = clock.utcnow() + timedelta(minutes=2)
        self.aws["ec2"].enable_image_deprecation(ImageId=self.golden, DeprecateAt=at)
        [image] = self.aws["ec2"].describe_images(ImageIds=[self.golden], IncludeDeprecated=True)["Images"]
        time.sleep(clock.wall_seconds(150))
        result = self.run_rollout()
        self.assertEqual((result["status"], result["error"]), ("FAILED", "AmiNotUsable"), result["log"])
        self.assertIn(f"it was deprecated at {image['DeprecationTime']}", result["cause"])
        self.assert_untouched()

    def test_a_group_with_launch_suspended_is_refused_by_name_and_nothing_changes(self):
        # On AWS "InstanceRefresh does not replace instances" while Launch is suspended: the
        # refresh would sit until its timeout, naming nothing. Preflight names the group and
        # the process instead.
        self.aws["autoscaling"].suspend_processes(AutoScalingGroupName="web", ScalingProcesses=["Launch", "AZRebalance"])
        result = self.run_rollout()
        self.assertEqual((result["status"], result["error"]), ("FAILED", "PreflightFailed"), result["log"])
        self.assertIn("web", result["cause"])
        self.assertIn("its Launch process is suspended", result["cause"])
        self.assertIn("--scaling-processes Launch", result["cause"])
        self.assert_untouched()

    def test_a_reset_leaves_nothing_of_the_scenario_before(self):
        """Scenarios share a local AWS: what one leaves (an execution still running and holding a
        group, a fault, a bad AMI, an alarm in ALARM, a changed group) is gone for the next."""
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 600, "alarmNames": ["web-5xx"]}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        self.wait_for("the refresh", lambda: self.new_refreshes("web"))
        post(f"{self.control}/faults", {"operation": "DescribeImages", "code": "Throttling", "count": 100})
        post(f"{self.control}/bad-ami", {"imageId": self.current, "mode": "boot"})
        post(f"{self.control}/alarm", {"name": "web-5xx", "state": "ALARM"})
        self.setUp()  # what the next scenario starts from
        self.assertEqual(self.sfn_client.describe_execution(executionArn=execution)["status"], "ABORTED")
        self.assertEqual(post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": None}), {"badAmis": {}})
        self.aws["ec2"].describe_images(ImageIds=[self.golden])  # no fault left to refuse it
        [alarm] = self.aws["cloudwatch"].describe_alarms(AlarmNames=["web-5xx"])["MetricAlarms"]
        self.assertNotEqual(alarm["StateValue"], "ALARM")
        holds = deploy._client("dynamodb", self.moto).scan(TableName=deploy.HOLDS_TABLE)["Items"]
        self.assertEqual(holds, [])
        time.sleep(2)  # the aborted execution, had it gone on, would have acted by now
        self.assert_untouched()
        for group in self.groups:
            self.assertIsNone(self.hold_tag(group), group)
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])


class BrownfieldFleet(Scenarios, Harness):
    BROWNFIELD = True

    def test_aws_not_answering_in_wave_two_and_a_redrive_reruns_only_the_children_that_had_not_succeeded(self):
        # Wave 2 runs one group at a time, in name order: ecs-batch-capacity rolls out, then
        # ecs-prod-capacity (the only group reading alarms) is throttled past every retry, and
        # mixed-capacity never starts.
        self.configure({"*": {"wave": 2, "minHealthyPercentage": 50, "bakeSeconds": 3}, "web": {"wave": 1},
                        "ecs-prod-capacity": {"alarmNames": ["prod-api-errors"]}}, AWS_MAX_ATTEMPTS="1")
        post(f"{self.control}/faults", {"operation": "DescribeAlarms", "code": "Throttling", "count": 1000})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "maxConcurrency": 1})
        lines = []
        stopped = self.watch(execution, lines)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", MAP_RUN_FAILED), stopped["log"])
        self.assertEqual(self.failed_child(stopped)["error"], "AwsThrottled")
        self.assertEqual(self.outcomes(stopped), {"web": "rolledOut", "ecs-batch-capacity": "rolledOut",
                                                  "ecs-prod-capacity": "FAILED"}, stopped["log"])
        self.assert_rolled_out("web", self.golden)
        self.assert_rolled_out("ecs-batch-capacity", self.golden)
        self.assert_untouched(["mixed-capacity"])
        self.assertEqual(self.sfn_client.describe_execution(executionArn=execution)["redriveStatus"], "REDRIVABLE")

        self.clear_faults()
        seen = rollout.redrive(self.sfn, execution)
        result = self.watch(execution, lines, since=seen)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)  # one version and one refresh each
        by_group = {c["group"]: c for c in result["children"].values()}
        for group in ("web", "ecs-batch-capacity"):
            before = next(c for c in stopped["children"].values() if c["group"] == group)
            self.assertEqual(len(by_group[group]["events"]), len(before["events"]), f"{group} was not rerun")
        redriven = [e["type"] for e in by_group["ecs-prod-capacity"]["events"]].count("ExecutionRedriven")
        self.assertEqual(redriven, 1, "the failed child is redriven, not started again")
        rerun = self.rerun_by_redrive(stopped, result, seen)
        self.assertNotIn("ami-rollout-resolve-ami", rerun)
        self.assertNotIn("ami-rollout-start-refresh", {
            f for f in self.functions_run(by_group["ecs-prod-capacity"]["events"][
                [e["type"] for e in by_group["ecs-prod-capacity"]["events"]].index("ExecutionRedriven"):])},
            "the redriven child resumes at its health check, its refresh is not started again")
        self.assertIn("ami-rollout-start-refresh", self.functions_run(by_group["mixed-capacity"]["events"]),
                      "the child that never started runs")

    def test_the_fleet_has_a_past(self):
        """What makes this fleet brownfield, as the scenarios above rely on it."""
        self.assertEqual({self.past[g]["reference"] for g in self.groups} & {"$Latest", "$Default"},
                         {"$Latest", "$Default"})
        for group in self.groups:
            self.assertGreaterEqual(self.past[group]["refreshes"], 3, group)
            self.assertGreaterEqual(len(self.past[group]["versions"]), 5, group)
        self.assertIn("mixed-capacity", self.groups)


class InterferedWith(Harness):
    """People interfere: an operator stops a rollout, another starts, the first is redriven."""

    def test_a_redriven_aborted_execution_leaves_the_targets_another_execution_now_holds(self):
        # A rolls golden out to web and is stopped mid-refresh (its holds are released); an
        # operator cancels its refresh; B takes web for another AMI; A is redriven while B holds
        # web. A must change nothing of B's: its steps end TargetHeld, its rollback leaves web.
        self.configure({"*": {**BASE_SETTINGS["*"], "bakeSeconds": 300}, "web": {"wave": 1}})
        sfn = self.sfn_client
        a = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        self.wait_for("A's refresh", lambda: self.new_refreshes("web"))
        sfn.stop_execution(executionArn=a, error="Operator", cause="stopped by hand")
        self.wait_for("A's holds released", lambda: self.hold_tag("web") is None)
        self.aws["autoscaling"].cancel_instance_refresh(AutoScalingGroupName="web")
        self.wait_for("the refresh cancelled", lambda: self.new_refreshes("web")[0]["Status"] == "Cancelled")
        member = self.aws["autoscaling"].describe_auto_scaling_groups(
            AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        other = self.aws["ec2"].create_image(InstanceId=member, Name="ami-rollout-golden-2")["ImageId"]
        b = rollout.start(self.sfn, self.machine, {"amiId": other, "targets": ["web"]})
        self.wait_for("B's hold", lambda: self.hold_tag("web") == b)
        self.wait_for("B's refresh", lambda: len(self.new_refreshes("web")) == 2)
        sfn.redrive_execution(executionArn=a)
        results = self.watch_all([a, b])
        self.assertEqual(results[0]["status"], "FAILED", results[0]["log"])
        self.assertIn(f"held by execution {b}", results[0]["log"])
        self.assertEqual(results[1]["status"], "SUCCEEDED", results[1]["log"])
        # web is as B left it: on B's AMI, naming B's version, with no refresh of A's after B's.
        self.assertEqual(self.amis("web"), [other] * 2)
        newest = self.new_versions("web")[-1]
        self.assertEqual(newest[1], other)
        self.assertEqual(self.reference("web"), str(newest[0]))
        self.assertEqual(len(self.new_refreshes("web")), 2, "A started no refresh after B took web")


class LaunchHooks(Harness):
    """A group with a launch lifecycle hook: new instances wait in Pending:Wait until something
    (a validation function, on AWS) answers the hook, or its heartbeat timeout applies the
    default result."""

    def put_hook(self, default_result):
        self.aws["autoscaling"].put_lifecycle_hook(
            AutoScalingGroupName="web", LifecycleHookName="validate-boot", HeartbeatTimeout=60,
            LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", DefaultResult=default_result)

    def answer_hooks(self, rejected_ami, stop):
        """What a validation hook does: abandons new instances on `rejected_ami`, lets the others
        go on, until `stop` is set."""
        asg, ec2 = self.aws["autoscaling"], self.aws["ec2"]
        while not stop.is_set():
            [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"]
            for member in group["Instances"]:
                if member["LifecycleState"] != "Pending:Wait":
                    continue
                [reservation] = ec2.describe_instances(InstanceIds=[member["InstanceId"]])["Reservations"]
                image = reservation["Instances"][0]["ImageId"]
                try:
                    asg.complete_lifecycle_action(
                        AutoScalingGroupName="web", LifecycleHookName="validate-boot",
                        InstanceId=member["InstanceId"],
                        LifecycleActionResult="ABANDON" if image == rejected_ami else "CONTINUE")
                except ClientError:
                    pass  # answered already, or its heartbeat ran out meanwhile
            time.sleep(0.2)

    def test_a_hook_that_abandons_the_new_instances_rolls_the_group_back_naming_the_hook(self):
        self.put_hook("ABANDON")
        stop = threading.Event()
        handler = threading.Thread(target=self.answer_hooks, args=(self.golden, stop), daemon=True)
        handler.start()
        try:
            result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        finally:
            stop.set()
            handler.join()
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("launch lifecycle hook validate-boot abandoned its new instances", result["cause"])
        self.assertIn("was abandoned", result["cause"])
        self.assert_back_as_before("web")

    def test_a_hook_that_lets_instances_go_on_rolls_out(self):
        # Nobody answers: each new instance waits out the heartbeat, then goes on (CONTINUE).
        self.put_hook("CONTINUE")
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)


class WideWave(Harness):
    """One wave of eight groups, three at a time, one of which fails."""

    EXTRA_GROUPS = 8

    def test_a_failed_group_in_a_wide_wave_stops_every_later_change_and_everything_touched_is_rolled_back(self):
        wide = [f"fleet-{i:04d}" for i in range(1, 9)]
        self.aws["cloudwatch"].put_metric_alarm(
            AlarmName="fleet-0001-5xx", MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB",
            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
        post(f"{self.control}/alarm", {"name": "fleet-0001-5xx", "state": "ALARM", "reason": "5xx above 1"})
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3},
                        "fleet-0001": {"alarmNames": ["fleet-0001-5xx"]}})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": wide, "maxConcurrency": 3})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("fleet-0001", result["cause"])
        self.assertIn("fleet-0001-5xx", result["cause"])
        outcomes = self.outcomes(result)
        self.assertEqual(sorted(outcomes), wide)
        self.assertEqual(outcomes["fleet-0001"], "failed", result["log"])
        rollout_children = {c["group"]: c for c in result["children"].values() if "/target-rollout:" in c["mapRun"]}
        failed = rollout_children["fleet-0001"]
        # When fleet-0001 recorded its failure, no group started a change afterwards: every child
        # that started after that ends "stopped" with nothing changed on its group.
        stop_at = next(e["timestamp"] for e in failed["events"]
                       if e.get("stateEnteredEventDetails", {}).get("name") == "Stop the wave")
        later = [g for g, c in rollout_children.items() if c["events"][0]["timestamp"] > stop_at]
        self.assertTrue(later, "some children started after the failure (three run at a time)")
        for group in wide:
            if group in later:
                self.assertEqual(outcomes[group], "stopped", group)
                self.assertEqual(self.new_versions(group), [], f"{group} started after the failure and changed nothing")
            # Whatever was touched is back: its instances on the earlier AMI, no version of ours left.
            self.assertEqual(self.amis(group), [self.current], group)
            self.assertEqual(self.reference(group), self.past[group]["reference"], group)
        touched = [g for g in wide if self.new_refreshes(g)]
        self.assertIn("fleet-0001", touched)
        self.assertLessEqual(len(touched), 3, "only the groups running when it failed were touched")
        for group in set(self.groups) - set(wide):
            self.assertEqual(self.new_versions(group), [], group)


class Overlapping(Harness):
    """Executions that truly overlap, on a fleet with a past: holds and AMI protection."""

    BROWNFIELD = True
    LONG_BAKE = {"*": {"minHealthyPercentage": 50, "bakeSeconds": 20}}

    def start(self, ami, targets=("web",)):
        return rollout.start(self.sfn, self.machine, {"amiId": ami, "targets": list(targets)})

    def wait_held(self, group, execution):
        self.wait_for(f"{execution} to hold {group}", lambda: self.hold_tag(group) == execution)

    def stop_a_holder_for_a_redrive(self):
        """An execution of the golden AMI to web that AWS stops answering after its refresh
        started: it ends FAILED, redrivable, holding web. The fault is cleared again."""
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3, "alarmNames": ["web-5xx"]}},
                       AWS_MAX_ATTEMPTS="1")
        post(f"{self.control}/faults", {"operation": "DescribeAlarms", "code": "Throttling", "count": 100})
        holder = self.watch(self.start(self.golden))
        self.assertEqual((holder["status"], holder["error"]), ("FAILED", MAP_RUN_FAILED), holder["log"])
        self.assertEqual(self.failed_child(holder)["error"], "AwsThrottled")
        self.clear_faults()
        return holder

    def test_the_same_ami_started_twice_at_once_rolls_out_once(self):
        # One Parameter Store write, delivered twice (EventBridge delivers at least once).
        self.aws["ssm"].put_parameter(Name="/ami/linux/prod", Value=self.golden, Type="String",
                                      DataType="aws:ec2:image", Overwrite=True)
        event = rollout.parameter_store_change("/ami/linux/prod")
        executions = [rollout.start(self.sfn, self.machine, event) for _ in range(2)]
        results = self.watch_all(executions)
        described = [self.sfn_client.describe_execution(executionArn=e) for e in executions]
        self.assertLess(described[1]["startDate"], described[0]["stopDate"], "the two truly overlapped")
        for result in results:
            self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)
            self.assertIsNone(self.hold_tag(group))
        logs = "\n".join(r["log"] for r in results)
        self.assertRegex(logs, r"another execution|already", "the later one said it left the groups to the first")
        self.assertEqual(self.protection(self.current), "disabled", "protection restored when the last one ended")

    def test_a_different_ami_while_a_group_is_held_changes_nothing_on_it(self):
        self.configure(self.LONG_BAKE)
        holder = self.start(self.golden)
        self.wait_held("web", holder)
        other = self.watch(self.start(self.bad))
        self.assertEqual((other["status"], other["error"]), ("FAILED", "TargetHeld"), other["log"])
        self.assertIn("web", other["cause"])
        self.assertIn(holder.rsplit(":", 1)[-1], other["cause"], "the Cause names the holder")
        self.assertNotIn(self.bad, [image for _, image in self.new_versions("web")], "no version for the other AMI")
        self.assertEqual(self.hold_tag("web"), holder)
        first = self.watch(holder)
        self.assertEqual(first["status"], "SUCCEEDED", first["log"])
        self.assert_rolled_out("web", self.golden)
        # Once the holder has ended, a new execution plans from where the group is now.
        second = self.watch(self.start(self.bad))
        self.assertEqual(second["status"], "SUCCEEDED", second["log"])
        self.assertEqual(self.amis("web"), [self.bad] * 2)

    def test_two_undos_of_one_rollout_at_once_bring_it_back_once(self):
        rolled = self.watch(self.start(self.golden))
        self.assertEqual(rolled["status"], "SUCCEEDED", rolled["log"])
        name = rolled["arn"].rsplit(":", 1)[-1]
        results = self.watch_all([rollout.start(self.sfn, self.machine, {"undo": name}) for _ in range(2)])
        ends = sorted((r["status"], r["error"]) for r in results)
        # The later one is left out as a duplicate, or refused once the first is changing web.
        self.assertIn(ends, [[("SUCCEEDED", None)] * 2, [("FAILED", "PreflightFailed"), ("SUCCEEDED", None)]],
                      "\n".join(r["log"] for r in results))
        self.assertEqual(self.amis("web"), [self.current] * 2)
        self.assertEqual((self.reference("web"), self.default_version("web")),
                         (self.past["web"]["reference"], self.past["web"]["default"]))
        # The rollout's refresh and one refresh back, not two.
        self.assertEqual([r["Status"] for r in self.new_refreshes("web")], ["Successful"] * 2)
        self.assertIsNone(self.hold_tag("web"))

    def test_an_undo_is_refused_while_another_rollout_changes_its_target(self):
        rolled = self.watch(self.start(self.golden))
        self.assertEqual(rolled["status"], "SUCCEEDED", rolled["log"])
        self.configure(self.LONG_BAKE)
        other = self.start(self.bad)
        self.wait_held("web", other)
        undo = self.watch(rollout.start(self.sfn, self.machine, {"undo": rolled["arn"].rsplit(":", 1)[-1]}))
        self.assertEqual(undo["status"], "FAILED", undo["log"])
        self.assertIn(undo["error"], ("PreflightFailed", "TargetHeld"), undo["log"])
        self.assertIn("web", undo["cause"])
        done = self.watch(other)
        self.assertEqual(done["status"], "SUCCEEDED", done["log"])
        self.assertEqual(self.amis("web"), [self.bad] * 2, "the other rollout went on untouched")

    def test_an_aborted_holders_groups_are_released(self):
        self.configure(self.LONG_BAKE)
        holder = self.start(self.golden)
        self.wait_held("web", holder)
        self.wait_for("the bake window", lambda: [r["Status"] for r in self.new_refreshes("web")] == ["Successful"])
        self.assertTrue(self.protection(self.current).startswith("enabled"))
        self.sfn_client.stop_execution(executionArn=holder, error="Operator", cause="stopped by hand")
        self.wait_for("the status-change rule to release web", lambda: self.hold_tag("web") is None)
        self.wait_for("the protection to be lifted", lambda: self.protection(self.current) == "disabled")
        after = self.run_rollout(payload={"amiId": self.bad, "targets": ["web"]})
        self.assertEqual(after["status"], "SUCCEEDED", after["log"])
        self.assertEqual(self.amis("web"), [self.bad] * 2)

    def test_a_holder_stopped_for_a_redrive_keeps_its_groups(self):
        holder = self.stop_a_holder_for_a_redrive()
        other = self.watch(self.start(self.bad))
        self.assertEqual((other["status"], other["error"]), ("FAILED", "TargetHeld"), other["log"])
        self.assertIn(holder["arn"].rsplit(":", 1)[-1], other["cause"])
        self.assertEqual(self.hold_tag("web"), holder["arn"])
        seen = rollout.redrive(self.sfn, holder["arn"])
        resumed = self.watch(holder["arn"], since=seen)
        self.assertEqual(resumed["status"], "SUCCEEDED", resumed["log"])
        self.assert_rolled_out("web", self.golden)
        self.assertIsNone(self.hold_tag("web"))

    def test_an_operator_releases_a_stopped_holder_by_hand(self):
        holder = self.stop_a_holder_for_a_redrive()
        self.wait_for("the holder's refresh to end", lambda: self.new_refreshes("web")[0]["Status"] == "Successful")
        # The troubleshooting guide's command (docs/troubleshooting.md): invoke hold-targets with a release of that execution.
        lam = deploy.clients(self.sfn)[0]
        answer = lam.invoke(FunctionName="ami-rollout-hold-targets", Payload=json.dumps(
            {"action": "release", "execution": holder["arn"]}).encode())
        released = json.loads(answer["Payload"].read())
        self.assertEqual(released["targets"], ["web"], released)
        self.assertIsNone(self.hold_tag("web"))
        self.assertEqual(self.protection(self.current), "disabled")
        after = self.watch(self.start(self.bad))
        self.assertEqual(after["status"], "SUCCEEDED", after["log"])
        self.assertEqual(self.amis("web"), [self.bad] * 2)

    def test_the_rollback_point_cannot_vanish_and_a_rollback_onto_a_vanished_one_fails_fast(self):
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 60, "alarmNames": ["web-5xx"]}})
        execution = self.start(self.golden)
        self.wait_for("the refresh to succeed", lambda: [r["Status"] for r in self.new_refreshes("web")] == ["Successful"])
        self.assertTrue(self.protection(self.current).startswith("enabled"), "protected while the rollout runs")
        with self.assertRaises(ClientError) as refused:
            self.aws["ec2"].deregister_image(ImageId=self.current)
        self.assertEqual(refused.exception.response["Error"]["Code"], "OperationNotPermitted")
        # An operator lifts the protection by hand and deregisters the AMI; then the alarm fires.
        self.aws["ec2"].disable_image_deregistration_protection(ImageId=self.current)
        self.aws["ec2"].deregister_image(ImageId=self.current)
        post(f"{self.control}/alarm", {"name": "web-5xx", "state": "ALARM"})
        result = self.watch(execution)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RollbackFailed"), result["log"])
        self.assertIn(self.current, result["cause"])
        self.assertIn("web", result["cause"])
        self.assertNotIn("rolled back: web", result["cause"], "never reported as rolled back")
        self.assertEqual(self.amis("web"), [self.golden] * 2, "no refresh back onto an AMI that cannot launch")


if __name__ == "__main__":
    unittest.main()
