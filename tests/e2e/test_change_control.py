"""End to end: change control. A target with a maintenance window (a group, or a standalone
instance) starts only inside it, waiting for the opening without polling; a window that closes mid-rollout lets the target finish; an approval
gate after the canary wave waits for a person, goes on when approved (CLI), rolls every touched
target back when rejected (the AWS API with the stored token), without waiting for a window, and
when no one answers does what its settings say: roll back, or stop for a redrive that asks again.

The local AWS runs on the suite's calendar clock, 20 times the wall clock (tests/e2e/case.py), the rate at
which its Step Functions shortens Waits, so an hour's wait takes three wall minutes and a window
that opens six minutes from now opens in eighteen seconds. Every time asserted here (when a refresh
started, when a launch template version was made, when a window opened) is on that clock, as the
functions read it.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_change_control   (make e2e runs it)
"""

import json
import math
import sys
import unittest

import boto3
from botocore.exceptions import ClientError
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra/local"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from localaws import cli, clock, deploy, launcher, rollout  # noqa: E402
from tests.e2e.case import post  # noqa: E402
from tests.e2e.test_rollout import BASE_SETTINGS, Harness  # noqa: E402

CANARY_GATED = {**BASE_SETTINGS, "web": {"wave": 1, "approveAfterWave": True}}


def at(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc)


def stamp(value):
    """A time AWS returned (datetime or ISO text), as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class ChangeControl(Harness):
    REJECT_WITH_CLI = False  # the brownfield run rejects with `ami-rollout reject`
    @classmethod
    def deployed(cls):
        super().deployed()
        cls.s3 = deploy._client("s3", cls.sfn)

    def setUp(self):
        super().setUp()
        deploy.approval_messages(self.sfn)  # what earlier scenarios left on the approvals topic

    def window_opening_in(self, seconds, minutes=10):
        """A daily window (UTC) that opens at the first whole minute `seconds` from now."""
        opens = math.ceil((clock.now() + seconds) / 60) * 60
        when = at(opens)
        return {"cron": f"{when.minute} {when.hour} * * *", "durationMinutes": minutes}, when

    def open_window(self):
        """A daily window open now, closing at least 30 calendar seconds from now; and its close."""
        now = at(clock.now())
        minutes = 1 if now.second < 30 else 2
        closes = now.replace(second=0, microsecond=0) + timedelta(minutes=minutes)
        return {"cron": f"{now.minute} {now.hour} * * *", "durationMinutes": minutes}, closes

    def changes_started(self, group):
        """When the group's first new launch template version was made and its first refresh began."""
        versions = self.aws["ec2"].describe_launch_template_versions(
            LaunchTemplateId=self.templates[group])["LaunchTemplateVersions"]
        made = min(stamp(v["CreateTime"]) for v in versions
                   if (v["VersionNumber"], v["LaunchTemplateData"]["ImageId"]) not in self.past[group]["versions"])
        return made, stamp(self.new_refreshes(group)[-1]["StartTime"])

    def child_states(self, result):
        return [e["stateEnteredEventDetails"]["name"] for child in result["children"].values()
                for e in child["events"] if "stateEnteredEventDetails" in e]

    def gate(self, execution, asked_after=None, token_not=None):
        """The approval request the execution stored, once it has (a newer one than
        `asked_after`, after a redrive; one with another token than `token_not`, asked again)."""
        key = f"approvals/{execution.rsplit(':', 1)[-1]}/wave-000.json"
        found = {}

        def stored():
            try:
                body = self.s3.get_object(Bucket=deploy.PLANS_BUCKET, Key=key)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                return False
            found.update(json.loads(body))
            return found["askedAt"] != asked_after and found["taskToken"] != token_not
        self.wait_for("the approval gate", stored)
        return found

    def session(self, name, statements):
        """A role of the central account with these statements, assumed: a client factory
        (service, endpoint) acting as it."""
        admin = dict(endpoint_url=self.moto, region_name=launcher.REGION, aws_access_key_id="testing",
                     aws_secret_access_key="testing")
        iam, sts = boto3.client("iam", **admin), boto3.client("sts", **admin)
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:root"}}]}
        try:
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="only-this",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        keys = sts.assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"]
        return lambda service, endpoint: boto3.client(
            service, endpoint_url=endpoint, region_name=launcher.REGION, aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"], aws_session_token=keys["SessionToken"])

    # --- maintenance windows ---------------------------------------------------------------------

    def test_a_target_outside_its_window_waits_and_starts_when_it_opens_never_before(self):
        window, opens = self.window_opening_in(360)
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 60}, "web": {"maintenanceWindow": window}})
        code, out, err = cli.run(self.moto, self.sfn, "--output", "json", "plan", "--ami-id", self.golden,
                                 "--target", "web")
        self.assertEqual(code, 0, err)
        [[planned]] = json.loads(out)["plan"]["waves"]
        self.assertEqual((planned["window"]["open"], stamp(planned["window"]["opensAt"])), (False, opens), planned)
        code, text, err = cli.run(self.moto, self.sfn, "plan", "--ami-id", self.golden, "--target", "web")
        self.assertIn(f"its window opens {opens.strftime('%Y-%m-%dT%H:%M:%SZ')}", text, text)

        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        # While it waits for the window it holds its target: an overlapping rollout is refused.
        self.wait_for("the hold", lambda: self.hold_tag("web") == execution)
        # status says what it waits for: web's window, and when it opens.
        name = execution.rsplit(":", 1)[-1]

        def parked():
            code, out, _ = cli.run(self.moto, self.sfn, "--output", "json", "status", name)
            return code == 5 and json.loads(out).get("waitingFor", {}).get("windows")
        self.wait_for("status to show the window wait", parked, timeout=15)
        [waiting] = parked()
        self.assertEqual((waiting["target"], stamp(waiting["opensAt"])), ("web", opens))
        other = self.watch(rollout.start(self.sfn, self.machine, {"amiId": self.bad, "targets": ["web"]}))
        self.assertEqual((other["status"], other["error"]), ("FAILED", "TargetHeld"), other["log"])
        self.assertEqual(self.new_versions("web"), [], "nothing changed before the window opens")
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)
        made, refreshed = self.changes_started("web")
        self.assertGreaterEqual(made, opens, "no launch template version before the window opens")
        self.assertGreaterEqual(refreshed, opens, "no refresh before the window opens")
        entered = self.child_states(result)
        self.assertEqual(entered.count("Wait for the maintenance window"), 1, "parked once, no polling")
        self.assertEqual(entered.count("Is the target inside its window?"), 2, "read before and after the park")

    def test_a_standalone_instance_waits_for_its_window_before_its_root_is_replaced(self):
        ec2 = self.aws["ec2"]
        instance = ec2.run_instances(ImageId=self.current, MinCount=1, MaxCount=1, SubnetId=self.fleet["subnets"][0],
                                     TagSpecifications=[{"ResourceType": "instance",
                                                         "Tags": [{"Key": "Name", "Value": "bastion"}]}])
        bastion = instance["Instances"][0]["InstanceId"]
        window, opens = self.window_opening_in(240)
        self.configure({"*": {"bakeSeconds": 60}, bastion: {"maintenanceWindow": window}})
        result = self.run_rollout(payload={"amiId": self.golden, "instances": [bastion]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        described = ec2.describe_instances(InstanceIds=[bastion])["Reservations"][0]["Instances"][0]
        self.assertEqual(described["ImageId"], self.golden)
        [task] = ec2.describe_replace_root_volume_tasks(
            Filters=[{"Name": "instance-id", "Values": [bastion]}])["ReplaceRootVolumeTasks"]
        self.assertGreaterEqual(stamp(task["StartTime"]), opens, "no root replaced before the window opens")
        self.assertEqual(self.child_states(result).count("Wait for the maintenance window"), 1)

    def test_a_window_that_closes_mid_rollout_lets_the_target_finish(self):
        # Open now, closing before the bake ends.
        window, closes = self.open_window()
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 300}, "web": {"maintenanceWindow": window}})
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)
        _, refreshed = self.changes_started("web")
        self.assertLess(refreshed, closes, "the refresh started inside the window")
        ended = stamp(self.sfn_client.describe_execution(executionArn=result["arn"])["stopDate"])
        self.assertGreater(ended, closes, "and the rollout went on after the window closed")
        self.assertNotIn("Wait for the maintenance window", self.child_states(result))

    def test_a_wave_failing_elsewhere_wakes_a_target_parked_a_week_for_its_window(self):
        # web waits six days for its window; the other target of its wave fails on the bad AMI.
        # The failure wakes web at once (no poll, no six days): it ends stopped, untouched.
        post(f"{self.control}/bad-ami", {"imageId": self.bad, "mode": "boot"})
        later = at(clock.now()) + timedelta(days=6)
        window = {"cron": f"{later.minute} {later.hour} {later.day} {later.month} *", "durationMinutes": 60}
        self.configure({"*": {"wave": 1, "minHealthyPercentage": 50, "bakeSeconds": 3},
                        "web": {"maintenanceWindow": window}})
        started = clock.now()
        result = self.run_rollout(payload={"amiId": self.bad, "targets": ["web", "ecs-batch-capacity"]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("ecs-batch-capacity", result["cause"])
        self.assertLess(clock.now() - started, 86_400, "ended within a day of calendar time, not at web's window")
        self.assert_untouched(["web"])
        self.assert_back_as_before("ecs-batch-capacity")
        [web] = [c for c in result["children"].values()
                 if any("Wait for the maintenance window" in json.dumps(e, default=str) for e in c["events"])]
        entered = [e["stateEnteredEventDetails"]["name"] for e in web["events"] if "stateEnteredEventDetails" in e]
        self.assertEqual(entered.count("Wait for the maintenance window"), 1)
        self.assertEqual(entered[-1], "Target stopped")

    def test_a_plan_whose_window_does_not_open_within_the_horizon_is_refused_naming_the_target(self):
        later = at(clock.now()) + timedelta(days=15)
        window = {"cron": f"0 0 {later.day} {later.month} *", "durationMinutes": 60, "timeZone": "Europe/Lisbon"}
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3}, "web": {"maintenanceWindow": window}})
        other = next(g for g in self.groups if g != "web")
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web", other]})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "InvalidInput"), result["log"])
        self.assertIn("web (7 days)", result["cause"])
        self.assertNotIn(other, result["cause"], "only the targets without a window in reach are named")
        self.assertIn("windowHorizonDays", result["cause"])
        self.assert_untouched(["web", other])

    def test_a_plan_that_could_outlive_its_plan_objects_or_a_year_is_refused_with_the_days(self):
        # Two waves behind monthly windows looked for 60 days ahead, and a 30-day gate between
        # them: the plans bucket keeps a plan 35 days (PlanRetentionDays), so a later wave or the
        # rollback could find its plan gone.
        window = {"cron": "0 0 1 * *", "durationMinutes": 600}
        self.configure({"*": {"wave": 2, "minHealthyPercentage": 50, "maintenanceWindow": window, "windowHorizonDays": 60},
                        "web": {"wave": 1, "approveAfterWave": True, "approvalTimeoutMinutes": 43200}})
        result = self.run_rollout(payload={"amiId": self.golden})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "InvalidInput"), result["log"])
        self.assertRegex(result["cause"], r"the plan could run \d+ days")
        self.assertIn("than the plans bucket keeps its plan (35 days). Raise PlanRetentionDays", result["cause"])
        self.assert_untouched()
        # A year of approvals between three waves: more than one execution may run.
        self.configure({"*": {"wave": 3, "approveAfterWave": True, "approvalTimeoutMinutes": 525600},
                        "web": {"wave": 1}, "ecs-batch-capacity": {"wave": 2}})
        result = self.run_rollout(payload={"amiId": self.golden})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "InvalidInput"), result["log"])
        self.assertIn("past a Step Functions execution's year", result["cause"])
        self.assert_untouched()

    # --- approval gates --------------------------------------------------------------------------

    def test_an_approved_gate_goes_on_to_the_next_wave(self):
        self.configure(CANARY_GATED)
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden})
        name = execution.rsplit(":", 1)[-1]
        request = self.gate(execution)
        self.assertEqual((request["wave"], request["onTimeout"]), (0, "stop"))
        [told] = deploy.approval_messages(self.sfn)
        self.assertNotIn(request["taskToken"], told, "the token is never in the message")
        self.assertIn(f"Execution {name} rolled wave 1 of 2 out to {self.golden}", told)
        self.assertIn("- web on ", told)
        for group in set(self.groups) - {"web"}:
            self.assertIn(f"- {group}", told, "the next wave's targets are named")
        self.assertIn(f"ami-rollout approve {name}", told)
        self.assertIn("send-task-success", told)
        self.assertEqual(self.amis("web"), [self.golden] * 2, "the canary rolled out")
        self.assert_untouched(set(self.groups) - {"web"})
        # While it waits, it still holds its targets: an overlapping rollout of them is refused.
        other = self.watch(rollout.start(self.sfn, self.machine, {"amiId": self.bad, "targets": ["web"]}))
        self.assertEqual((other["status"], other["error"]), ("FAILED", "TargetHeld"), other["log"])
        self.assertEqual(self.amis("web"), [self.golden] * 2)
        # What it waits for, said by status: the gate, since when, until when, what answers it.
        code, out, err = cli.run(self.moto, self.sfn, "status", name)
        self.assertEqual(code, 5, "still running: " + out + err)
        self.assertIn("waiting at the approval gate after wave 1 since ", out)
        self.assertIn(f"approve: ami-rollout approve {name}", out)
        self.assertIn(f"reject:  ami-rollout reject {name}", out)
        code, out, err = cli.run(self.moto, self.sfn, "--output", "json", "status", name)
        waiting = json.loads(out)["waitingFor"]["approval"]
        self.assertEqual((waiting["wave"], waiting["onTimeout"]), (1, "stop"))

        code, out, err = cli.run(self.moto, self.sfn, "approve", name)
        self.assertEqual(code, 0, err)
        self.assertIn("approved the gate after wave 1", out)
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)
        code, _, err = cli.run(self.moto, self.sfn, "approve", name)
        self.assertEqual(code, 3, "a spent token is refused")
        self.assertIn("NoApprovalPending", err)

    def test_a_rejected_gate_rolls_back_every_touched_target_without_waiting_for_its_window(self):
        # The canary's window closes before the rejection: its rollback does not wait for the
        # next one (a day later). Wave scope would roll back only a failed wave; a rejection
        # undoes the whole rollout.
        window, closes = self.open_window()
        self.configure({**BASE_SETTINGS, "web": {**CANARY_GATED["web"], "maintenanceWindow": window}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "rollbackScope": "wave"})
        request = self.gate(execution)
        self.wait_for("the canary's window to close", lambda: at(clock.now()) > closes)
        if self.REJECT_WITH_CLI:
            code, out, err = cli.run(self.moto, self.sfn, "reject", execution, "--reason",
                                     "p99 latency doubled on the canary")
            self.assertEqual(code, 0, err)
            self.assertIn("rejected the gate after wave 1", out)
        else:  # without the CLI: the decision written, then the stored token wakes the gate
            name = execution.rsplit(":", 1)[-1]
            decision = {"approved": False, "by": "alice", "reason": "p99 latency doubled on the canary",
                        "decidedAt": at(clock.now()).strftime("%Y-%m-%dT%H:%M:%SZ")}
            self.s3.put_object(Bucket=deploy.PLANS_BUCKET, Key=f"decisions/{name}/wave-000.json",
                               Body=json.dumps(decision).encode())
            self.sfn_client.send_task_success(taskToken=request["taskToken"], output="{}")
        result = self.watch(execution)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("Rejected: p99 latency doubled on the canary", result["cause"])
        self.assert_back_as_before("web")
        self.assert_untouched(set(self.groups) - {"web"})
        self.assertIsNone(self.hold_tag("web"), "released after the rollback")

    def test_an_unanswered_gate_rolls_back_when_its_settings_say_so(self):
        self.configure({**BASE_SETTINGS, "web": {"wave": 1, "approveAfterWave": True, "approvalTimeoutMinutes": 2,
                                                 "onApprovalTimeout": "rollback"}})
        result = self.run_rollout(payload={"amiId": self.golden})
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        self.assertIn("ApprovalTimedOut: No one answered the approval gate within 120 seconds", result["cause"])
        self.assert_back_as_before("web")
        self.assert_untouched(set(self.groups) - {"web"})

    def test_an_unanswered_gate_stops_for_a_redrive_that_asks_again(self):
        self.configure({**BASE_SETTINGS, "web": {"wave": 1, "approveAfterWave": True, "approvalTimeoutMinutes": 2}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden})
        first = self.gate(execution)
        stopped = self.watch(execution)
        self.assertEqual((stopped["status"], stopped["error"]), ("FAILED", "ApprovalTimedOut"), stopped["log"])
        self.assertIn("redrive the execution to ask again", stopped["cause"])
        self.assertEqual(self.amis("web"), [self.golden] * 2, "the canary stays on the new AMI")
        self.assertEqual(self.hold_tag("web"), execution, "and held, for the redrive")
        self.assert_untouched(set(self.groups) - {"web"})

        rollout.redrive(self.sfn, execution)
        again = self.gate(execution, asked_after=first["askedAt"])
        self.assertNotEqual(again["taskToken"], first["taskToken"])
        code, _, err = cli.run(self.moto, self.sfn, "approve", execution)
        self.assertEqual(code, 0, err)
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)


    def test_the_token_alone_neither_passes_nor_rejects_a_gate(self):
        # Someone who may read the history (where the task token is) and call SendTaskSuccess and
        # SendTaskFailure, but is not an approver: the token only wakes the gate, which finds no
        # decision and asks again. Only an approver's decision moves it.
        self.configure(CANARY_GATED)
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden})
        name = execution.rsplit(":", 1)[-1]
        first = self.gate(execution)
        reader = self.session("history-reader", [
            {"Effect": "Allow", "Action": ["states:GetExecutionHistory", "states:DescribeExecution",
                                           "states:SendTaskSuccess", "states:SendTaskFailure"], "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{deploy.PLANS_BUCKET}/*"}])
        sfn, s3 = reader("stepfunctions", self.sfn), reader("s3", self.sfn)
        history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        token = next(json.loads(e["taskScheduledEventDetails"]["parameters"])["Payload"]["token"]
                     for e in reversed(history) if "taskScheduledEventDetails" in e
                     and "askApproval" in e["taskScheduledEventDetails"]["parameters"])
        self.assertEqual(token, first["taskToken"], "the history holds the token")
        with self.assertRaises(ClientError) as refused:
            s3.put_object(Bucket=deploy.PLANS_BUCKET, Key=f"decisions/{name}/wave-000.json",
                          Body=b'{"approved": true, "by": "mallory", "decidedAt": "2026-12-07T00:00:00Z"}')
        self.assertEqual(refused.exception.response["Error"]["Code"], "AccessDenied")
        asked = first
        for answer in (lambda t: sfn.send_task_success(taskToken=t, output='{"approved": true}'),
                       lambda t: sfn.send_task_failure(taskToken=t, error="Rejected", cause="mallory says no")):
            answer(asked["taskToken"])
            asked = self.gate(execution, asked_after=None, token_not=asked["taskToken"])
            self.assertEqual(asked["askedAt"], first["askedAt"], "asked again with the same deadline")
            self.assertEqual(self.sfn_client.describe_execution(executionArn=execution)["status"], "RUNNING")
            self.assert_untouched(set(self.groups) - {"web"})
        self.assertEqual(deploy.approval_messages(self.sfn)[1:], [], "the approvers were told once")

        code, _, err = cli.run(self.moto, self.sfn, "approve", name)
        self.assertEqual(code, 0, err)
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)


class BrownfieldChangeControl(ChangeControl):
    """A window and a gate on a fleet rolled out before: many template versions, `$Latest`,
    `$Default` and pinned references, finished refreshes."""

    BROWNFIELD = True
    REJECT_WITH_CLI = True
    test_a_window_that_closes_mid_rollout_lets_the_target_finish = None
    test_a_standalone_instance_waits_for_its_window_before_its_root_is_replaced = None
    test_a_plan_whose_window_does_not_open_within_the_horizon_is_refused_naming_the_target = None
    test_an_unanswered_gate_rolls_back_when_its_settings_say_so = None
    test_an_unanswered_gate_stops_for_a_redrive_that_asks_again = None
    # About the state machine's gates and waits, not the fleet's past: once is enough.
    test_the_token_alone_neither_passes_nor_rejects_a_gate = None
    test_a_wave_failing_elsewhere_wakes_a_target_parked_a_week_for_its_window = None
    test_a_plan_that_could_outlive_its_plan_objects_or_a_year_is_refused_with_the_days = None


if __name__ == "__main__":
    unittest.main()
