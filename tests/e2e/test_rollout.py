"""End to end: the real state machine on local Step Functions (ministack) runs the real debug
binaries against the local fleet (moto + extensions). Each scenario asserts what an operator sees:
the execution's status, Error and Cause, the AMIs on the instances, the launch template versions.

Run: infra/local/.venv/bin/python -m unittest discover -s tests/e2e -t .   (make e2e does it)
Needs the debug binaries (make build). One local AWS serves all scenarios; each scenario
starts from a reset, freshly seeded fleet.
"""

import json
import sys
import tempfile
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra/local"))

from localaws import deploy, launcher, rollout, seed  # noqa: E402

BASE_SETTINGS = {"*": {"wave": 2, "minHealthyPercentage": 50, "bakeSeconds": 3}, "web": {"wave": 1}}
RUNBOOK = ["Resolve AMI and plan", "Roll out waves in order", "Rollout succeeded"]


def post(url, body):
    return json.load(urllib.request.urlopen(urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST")))


class Rollout(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_dir = Path(tempfile.mkdtemp(prefix="ami-rollout-e2e-"))
        state = launcher.up(cls.run_dir)
        cls.moto = f"http://127.0.0.1:{state['motoPort']}"
        cls.sfn = f"http://127.0.0.1:{state['sfnPort']}"
        cls.control = f"{cls.moto}/_localaws"
        cls.machine = deploy.deploy(cls.sfn, cls.moto, {"ASG_CONFIGURATIONS": json.dumps(BASE_SETTINGS)})

    @classmethod
    def tearDownClass(cls):
        launcher.down(cls.run_dir, quiet=True)

    def setUp(self):
        post(f"{self.control}/reset", {})
        self.fleet = seed.seed(self.moto)
        self.current, self.golden, self.bad = (self.fleet["amis"][k] for k in ("current", "golden", "bad"))
        self.aws = seed.clients(self.moto, launcher.REGION)
        self.configure()

    def configure(self, settings=None, **env):
        env = {"ASG_CONFIGURATIONS": json.dumps(settings or BASE_SETTINGS), **env}
        deploy.configure(self.sfn, self.moto, env)

    # --- helpers -------------------------------------------------------------------------------

    def run_rollout(self, payload=None, ami=None):
        lines = []
        if payload is None:
            execution, _ = rollout.start_from_parameter_change(
                self.sfn, self.moto, self.machine, "/ami/linux/prod", ami or self.golden)
        else:
            execution = rollout.start(self.sfn, self.machine, payload)
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300)
        result["log"] = "\n".join(lines)
        return result

    def amis(self, group):
        view = rollout.fleet(self.control)["groups"][group]
        return sorted(i["imageId"] for i in view["instances"])

    def refreshes(self, group):
        return rollout.fleet(self.control)["groups"][group]["refreshes"]

    def versions(self, group):
        template = self.fleet["groups"][{"web": "web", "ecs-prod-capacity": "ecs-prod",
                                         "ecs-batch-capacity": "ecs-batch"}[group]]["launchTemplateId"]
        out = self.aws["ec2"].describe_launch_template_versions(LaunchTemplateId=template)
        return sorted((v["VersionNumber"], v["LaunchTemplateData"]["ImageId"]) for v in out["LaunchTemplateVersions"])

    def clear_faults(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.control}/faults", method="DELETE"))

    @staticmethod
    def functions_run(events):
        """The functions the state machine invoked in these history events."""
        return {e["taskScheduledEventDetails"]["resource"].rsplit(":", 1)[-1]
                for e in events if e["type"] == "TaskScheduled"}

    def assert_untouched(self, groups=("web", "ecs-prod-capacity", "ecs-batch-capacity")):
        for group in groups:
            self.assertEqual(self.amis(group), [self.current] * 2, group)
            self.assertEqual(self.versions(group), [(1, self.current)], group)
            self.assertEqual(self.refreshes(group), [], group)

    # --- scenarios -----------------------------------------------------------------------------

    def test_happy_path_canary_wave_first_then_the_rest(self):
        result = self.run_rollout()
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in ("web", "ecs-prod-capacity", "ecs-batch-capacity"):
            self.assertEqual(self.amis(group), [self.golden] * 2, group)
            self.assertEqual(self.versions(group), [(1, self.current), (2, self.golden)], group)
            self.assertEqual(len(self.refreshes(group)), 1, group)
        canary_end = self.refreshes("web")[0]["EndTime"]
        for group in ("ecs-prod-capacity", "ecs-batch-capacity"):
            self.assertGreater(self.refreshes(group)[0]["StartTime"], canary_end, "wave 2 starts after wave 1")
        entered = [e["stateEnteredEventDetails"]["name"] for e in result["events"] if "stateEnteredEventDetails" in e]
        self.assertEqual(entered, RUNBOOK, "the history reads as the runbook")

    def test_bad_ami_fails_the_canary_rolls_back_natively_and_stops_later_waves(self):
        post(f"{self.control}/bad-ami", {"imageId": self.bad, "mode": "boot"})
        result = self.run_rollout(ami=self.bad)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("RollbackSuccessful", result["cause"])
        self.assertIn("web", result["cause"])
        self.assertEqual(self.amis("web"), [self.current] * 2)
        self.assertEqual(self.refreshes("web")[0]["Status"], "RollbackSuccessful")
        self.assert_untouched(("ecs-prod-capacity", "ecs-batch-capacity"))

    def test_ecs_services_failing_on_the_new_ami_roll_the_group_back(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "ecs"})
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["ecs-batch-capacity"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("Essential container in task exited", result["cause"])
        self.assertEqual(self.amis("ecs-batch-capacity"), [self.current] * 2)
        statuses = [r["Status"] for r in self.refreshes("ecs-batch-capacity")]
        self.assertEqual(statuses, ["Successful", "Successful"], "the refresh back to the rollback point")

    def test_an_alarm_in_the_bake_window_rolls_back_a_successful_refresh(self):
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 60, "alarmNames": ["web-5xx"]}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        for _ in range(600):
            refreshes = self.refreshes("web")
            if refreshes and refreshes[0]["Status"] == "Successful":
                break
            __import__("time").sleep(0.1)
        post(f"{self.control}/alarm", {"name": "web-5xx", "state": "ALARM"})
        lines = []
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), "\n".join(lines))
        self.assertIn("web-5xx", result["cause"])
        self.assertEqual(self.amis("web"), [self.current] * 2)

    def test_throttling_and_server_errors_are_retried_to_success(self):
        for fault in (("DescribeImages", "RequestLimitExceeded", 503, 2),
                      ("CreateLaunchTemplateVersion", "InternalError", 500, 1),
                      ("StartInstanceRefresh", "Throttling", 400, 1),
                      ("DescribeInstanceRefreshes", "Throttling", 400, 3)):
            post(f"{self.control}/faults", dict(zip(("operation", "code", "status", "count"), fault)))
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertEqual(self.versions("web"), [(1, self.current), (2, self.golden)], "no duplicate version")
        self.assertEqual(len(self.refreshes("web")), 1, "no second refresh")
        self.assertEqual(self.amis("web"), [self.golden] * 2)

    def test_aws_not_answering_stops_in_place_and_a_redrive_completes_the_rollout(self):
        # Only check-ecs-health reads alarms: the failure lands after the version and the refresh.
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3, "alarmNames": ["web-5xx"]}},
                       AWS_MAX_ATTEMPTS="1")
        post(f"{self.control}/faults", {"operation": "DescribeAlarms", "code": "Throttling", "count": 100})
        sfn = deploy.clients(self.sfn)[1]
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        lines = []
        stopped = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", "AwsThrottled"), "\n".join(lines))
        self.assertIn("DescribeAlarms", stopped["cause"])
        self.assertIn("redrive", stopped["cause"])
        self.assertEqual(self.versions("web"), [(1, self.current), (2, self.golden)], "nothing rolled back")
        self.assertEqual(len(self.refreshes("web")), 1)
        self.assertEqual(sfn.describe_execution(executionArn=execution)["redriveStatus"], "REDRIVABLE")

        self.clear_faults()
        seen = rollout.redrive(self.sfn, execution)
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300, since=seen)
        self.assertEqual(result["status"], "SUCCEEDED", "\n".join(lines))
        self.assertEqual(self.versions("web"), [(1, self.current), (2, self.golden)], "no duplicate version")
        self.assertEqual(len(self.refreshes("web")), 1, "no second refresh")
        self.assertEqual(self.amis("web"), [self.golden] * 2)
        described = sfn.describe_execution(executionArn=execution)
        self.assertEqual((described["redriveCount"], described["redriveStatus"]), (1, "NOT_REDRIVABLE"))
        after = result["events"][seen:]
        self.assertEqual(after[0]["type"], "ExecutionRedriven")
        rerun = self.functions_run(after)
        self.assertNotIn("ami-rollout-resolve-ami", rerun, "completed steps are not rerun")
        self.assertNotIn("ami-rollout-start-refresh", rerun, "completed steps are not rerun")
        self.assertIn("ami-rollout-check-ecs-health", rerun)
        with self.assertRaises(sfn.exceptions.ExecutionNotRedrivable):
            sfn.redrive_execution(executionArn=execution)

    def test_a_rollback_interrupted_by_aws_stops_and_a_redrive_finishes_it(self):
        post(f"{self.control}/bad-ami", {"imageId": self.golden, "mode": "ecs"})
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}}, AWS_MAX_ATTEMPTS="1")
        # The rollout's own refresh goes through; the rollback's refresh back is throttled.
        post(f"{self.control}/faults", {"operation": "StartInstanceRefresh", "code": "Throttling",
                                         "count": 100, "after": 1})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["ecs-batch-capacity"]})
        lines = []
        stopped = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", "AwsThrottled"), "\n".join(lines))
        self.assertIn("StartInstanceRefresh", stopped["cause"])
        self.assertEqual(self.amis("ecs-batch-capacity"), [self.golden] * 2, "the rollback had not started")

        self.clear_faults()
        seen = rollout.redrive(self.sfn, execution)
        result = rollout.watch(self.sfn, self.control, execution, out=lines.append, timeout=300, since=seen)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), "\n".join(lines))
        self.assertIn("Essential container in task exited", result["cause"])
        self.assertEqual(self.amis("ecs-batch-capacity"), [self.current] * 2)
        statuses = [r["Status"] for r in self.refreshes("ecs-batch-capacity")]
        self.assertEqual(statuses, ["Successful", "Successful"], "one refresh out, one back")
        self.assertEqual(self.functions_run(result["events"][seen:]), {"ami-rollout-rollback"},
                         "only the rollback runs again")

    def test_the_same_trigger_twice_rolls_out_once(self):
        first = self.run_rollout()
        self.assertEqual(first["status"], "SUCCEEDED", first["log"])
        event = rollout.parameter_store_change("/ami/linux/prod")
        second = self.run_rollout(payload=event)
        self.assertEqual(second["status"], "SUCCEEDED", second["log"])
        self.assertIn("already", second["log"])
        for group in ("web", "ecs-prod-capacity", "ecs-batch-capacity"):
            self.assertEqual(len(self.refreshes(group)), 1, group)
            self.assertEqual(self.versions(group), [(1, self.current), (2, self.golden)], group)

    def test_excluded_and_already_current_groups_are_untouched_and_reported(self):
        self.configure(EXCLUDED_ASGS="ecs-batch-capacity")
        first = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(first["status"], "SUCCEEDED", first["log"])
        result = self.run_rollout()
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertRegex(result["log"], r"skipped web: .*already")
        self.assertRegex(result["log"], r"skipped ecs-batch-capacity: .*exclu")
        self.assertEqual(len(self.refreshes("web")), 1)
        self.assert_untouched(("ecs-batch-capacity",))
        self.assertEqual(self.amis("ecs-prod-capacity"), [self.golden] * 2)

    def test_bad_trigger_input_fails_with_its_name_and_changes_nothing(self):
        cases = [
            ({"parameterName": "/ami/does/not/exist"}, "InvalidInput"),
            ({"detail-type": "Parameter Store Change", "source": "aws.ssm", "detail": {}}, "InvalidInput"),
            ({"amiId": "ami-0123456789abcdef0"}, "AmiNotUsable"),
        ]
        for payload, error in cases:
            with self.subTest(payload=payload):
                result = self.run_rollout(payload=payload)
                self.assertEqual((result["status"], result["error"]), ("FAILED", error), result["log"])
                self.assertTrue(result["cause"])
        self.assert_untouched()


if __name__ == "__main__":
    unittest.main()
