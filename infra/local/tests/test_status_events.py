"""Execution status change events on the local AWS, as EventBridge delivers them on AWS: an
execution of a state machine that ends ABORTED or TIMED_OUT invokes the rule's Lambda target
asynchronously with AWS's "Step Functions Execution Status Change" event (the tests
put such a rule on ministack's EventBridge, as deploy.py puts the template's HoldReleaseRule; localaws/stepfunctions.py fixes what ministack gets
wrong around it). No Rust binaries: the target is a small python3.12 function (ministack runs it
as a local process) that appends every event it gets to a file.

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests
(from the repository root). Starts its own local AWS (moto + ministack) on free loopback ports.
"""

import io
import json
import shutil
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localaws import deploy, launcher, rollout, stack  # noqa: E402
from localserver import lambda_role  # noqa: E402

RECORDER = '''
import json, os, time

def handler(event, context):
    with open(os.environ["RECORD_TO"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    if os.environ.get("FAIL"):
        raise RuntimeError("failing on purpose")
    return event
'''
ROLE = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/test"
WAIT = 200  # simulated seconds: 10 s at the launcher's SFN_WAIT_SCALE of 0.05
DETAIL_FIELDS = {"executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate", "input",
                 "output", "inputDetails", "outputDetails", "error", "cause"}

# HoldReleaseRule's RetryPolicy, as the template gives it.
HOLD_RETRY_POLICY = stack.load()["Resources"]["HoldReleaseRule"]["Properties"]["Targets"][0]["RetryPolicy"]


def route_status_changes(sfn_endpoint: str, state_machine: str, function_arn: str, rule: str,
                         statuses=("ABORTED", "TIMED_OUT"), target_id: str = "function",
                         retry_policy: dict | None = None) -> str:
    """An EventBridge rule on the default bus (ministack's) sending this state machine's "Step
    Functions Execution Status Change" events with one of `statuses` to the function, and the
    permission for EventBridge to invoke it. Returns the rule ARN."""
    events, lam = deploy._client("events", sfn_endpoint), deploy._client("lambda", sfn_endpoint)
    pattern = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
               "detail": {"status": list(statuses), "stateMachineArn": [state_machine]}}
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")["RuleArn"]
    target = {"Id": target_id, "Arn": function_arn, **({"RetryPolicy": retry_policy} if retry_policy else {})}
    events.put_targets(Rule=rule, Targets=[target])
    try:
        lam.add_permission(FunctionName=function_arn, StatementId=rule, Action="lambda:InvokeFunction",
                           Principal="events.amazonaws.com", SourceArn=rule_arn,
                           SourceAccount=rule_arn.split(":")[4])
    except lam.exceptions.ResourceConflictException:
        pass  # already there from an earlier deploy
    return rule_arn


class StatusEvents(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_dir = Path(tempfile.mkdtemp(prefix="localaws-status-events-"))
        state = launcher.up(cls.run_dir)
        cls.moto = f"http://127.0.0.1:{state['motoPort']}"
        cls.sfn_endpoint = f"http://127.0.0.1:{state['sfnPort']}"
        cls.lam, cls.sfn = deploy.clients(cls.sfn_endpoint)
        lambda_role(cls.moto)

    @classmethod
    def tearDownClass(cls):
        launcher.down(cls.run_dir, quiet=True)
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------------

    def recorder(self, **env):
        """A function recording what it is invoked with; returns (its ARN, the file)."""
        name = f"recorder-{uuid.uuid4().hex[:8]}"
        record_to = self.run_dir / f"{name}.jsonl"
        record_to.touch()
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("handler.py", RECORDER)
        arn = self.lam.create_function(
            FunctionName=name, Runtime="python3.12", Handler="handler.handler", Role=ROLE,
            Code={"ZipFile": code.getvalue()}, Timeout=10,
            Environment={"Variables": {"RECORD_TO": str(record_to), **env}})["FunctionArn"]
        return arn, record_to

    def machine(self, definition):
        return self.sfn.create_state_machine(name=f"m-{uuid.uuid4().hex[:8]}", roleArn=ROLE,
                                             definition=json.dumps(definition))["stateMachineArn"]

    def waiting_machine(self, **top):
        return self.machine({"StartAt": "Wait", **top,
                             "States": {"Wait": {"Type": "Wait", "Seconds": WAIT, "End": True}}})

    def routed(self, machine, **env):
        """A recorder as the target of a rule for `machine`'s ABORTED / TIMED_OUT events."""
        arn, record_to = self.recorder(**env)
        route_status_changes(self.sfn_endpoint, machine, arn, f"rule-{uuid.uuid4().hex[:8]}",
                                    retry_policy=HOLD_RETRY_POLICY)  # the template's
        return record_to

    @staticmethod
    def recorded(path, count=1, seconds=15):
        """The events in `path` once there are `count` of them (fewer after `seconds`)."""
        deadline = time.time() + seconds
        while True:
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if len(lines) >= count or time.time() > deadline:
                return lines
            time.sleep(0.1)

    def start(self, machine, payload=None):
        payload = json.dumps(payload or {"ami": "ami-1"})
        return self.sfn.start_execution(stateMachineArn=machine, input=payload)["executionArn"]

    def until_stopped(self, execution):
        return rollout.until_stopped(self.sfn, execution, seconds=15)

    # --- scenarios -----------------------------------------------------------------------------

    def test_a_stopped_execution_sends_the_aborted_event_to_the_function(self):
        machine = self.waiting_machine()
        record_to = self.routed(machine)
        execution = self.start(machine, {"ami": "ami-1", "targets": ["web"]})
        time.sleep(0.5)
        self.sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped by hand")

        [event] = self.recorded(record_to)
        self.assertEqual(event["source"], "aws.states")
        self.assertEqual(event["detail-type"], "Step Functions Execution Status Change")
        self.assertEqual(event["version"], "0")
        self.assertEqual(event["account"], launcher.MOTO_ACCOUNT)
        self.assertEqual(event["region"], launcher.REGION)
        self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertTrue(uuid.UUID(event["id"]))
        self.assertEqual(event["resources"], [execution])
        detail = event["detail"]
        self.assertLessEqual(DETAIL_FIELDS, set(detail))
        self.assertEqual((detail["executionArn"], detail["stateMachineArn"], detail["status"]),
                         (execution, machine, "ABORTED"))
        self.assertEqual(detail["name"], execution.rsplit(":", 1)[-1])
        self.assertEqual(json.loads(detail["input"]), {"ami": "ami-1", "targets": ["web"]})
        self.assertEqual(detail["inputDetails"], {"included": True})
        self.assertIsNone(detail["output"])
        described = self.sfn.describe_execution(executionArn=execution)
        self.assertEqual(described["status"], "ABORTED")
        self.assertEqual(detail["startDate"], int(described["startDate"].timestamp() * 1000))
        self.assertEqual(detail["stopDate"], int(described["stopDate"].timestamp() * 1000))
        self.assertEqual((detail["error"], detail["cause"]), ("Operator", "stopped by hand"))
        self.assertEqual((detail["redriveStatus"], detail["redriveCount"]), ("REDRIVABLE", 0))
        self.assertEqual(described["redriveStatus"], "REDRIVABLE")

    def test_the_rule_matches_only_its_state_machine_and_statuses(self):
        machine, other = self.waiting_machine(), self.waiting_machine()
        record_to = self.routed(machine)
        quick = self.machine({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
        route_status_changes(self.sfn_endpoint, quick, self.recorder()[0], f"rule-{uuid.uuid4().hex[:8]}")
        elsewhere = self.start(other)
        succeeded = self.start(quick)
        time.sleep(0.5)
        self.sfn.stop_execution(executionArn=elsewhere)
        self.assertEqual(self.until_stopped(succeeded)["status"], "SUCCEEDED")
        stopped = self.start(machine)
        time.sleep(0.5)
        self.sfn.stop_execution(executionArn=stopped)
        events = self.recorded(record_to, count=2, seconds=3)
        self.assertEqual([e["detail"]["executionArn"] for e in events], [stopped])

    def test_an_execution_past_its_timeout_ends_timed_out_and_sends_the_event(self):
        machine = self.waiting_machine(TimeoutSeconds=20)  # 1 s here: the Wait would take 10 s
        record_to = self.routed(machine)
        execution = self.start(machine)
        described = self.until_stopped(execution)
        self.assertEqual((described["status"], described.get("error")), ("TIMED_OUT", "States.Timeout"))
        history = [e["type"] for e in self.sfn.get_execution_history(executionArn=execution)["events"]]
        self.assertEqual(history[-1], "ExecutionTimedOut")
        [event] = self.recorded(record_to)
        self.assertEqual((event["detail"]["status"], event["detail"]["executionArn"]), ("TIMED_OUT", execution))
        self.assertEqual(event["detail"]["stopDate"], int(described["stopDate"].timestamp() * 1000))

    def test_a_stop_during_a_map_starts_no_further_wave(self):
        # Each wave's task takes 1.5 s; the stop comes while the first one runs.
        task, tasks_file = self.recorder(SLEEP="1.5")
        machine = self.machine({"StartAt": "Waves", "States": {"Waves": {
            "Type": "Map", "ItemsPath": "$.waves", "MaxConcurrency": 1,
            "ItemProcessor": {"StartAt": "Roll out", "States": {
                "Roll out": {"Type": "Task", "Resource": task, "Next": "Bake"},
                "Bake": {"Type": "Wait", "Seconds": 20, "End": True}}},
            "End": True}}})
        record_to = self.routed(machine)
        execution = self.start(machine, {"waves": [1, 2, 3]})
        self.assertEqual(len(self.recorded(tasks_file)), 1)
        self.sfn.stop_execution(executionArn=execution)
        time.sleep(6)  # ministack alone runs the other two waves by now
        self.assertEqual(self.recorded(tasks_file, seconds=0), [1], "no wave starts after the stop")
        self.assertEqual(self.sfn.describe_execution(executionArn=execution)["status"], "ABORTED")
        history = [e["type"] for e in self.sfn.get_execution_history(executionArn=execution)["events"]]
        self.assertEqual(history[-1], "ExecutionAborted", "no state event after the stop")
        self.assertEqual([e["detail"]["status"] for e in self.recorded(record_to, count=2, seconds=1)], ["ABORTED"])

    def test_a_task_failing_after_the_stop_leaves_the_execution_aborted(self):
        task, tasks_file = self.recorder(SLEEP="1.5", FAIL="1")
        machine = self.machine({"StartAt": "Roll out", "States": {
            "Roll out": {"Type": "Task", "Resource": task, "End": True}}})
        execution = self.start(machine)
        self.assertEqual(len(self.recorded(tasks_file)), 1)
        self.sfn.stop_execution(executionArn=execution)
        time.sleep(3)  # the task has failed by now; ministack alone turns the execution FAILED
        self.assertEqual(self.sfn.describe_execution(executionArn=execution)["status"], "ABORTED")
        history = [e["type"] for e in self.sfn.get_execution_history(executionArn=execution)["events"]]
        self.assertEqual(history[-1], "ExecutionAborted")

    def test_a_redrive_after_a_stop_reruns_the_state_the_stop_interrupted(self):
        first, first_file = self.recorder()
        slow, slow_file = self.recorder(SLEEP="1.5")
        machine = self.machine({"StartAt": "Plan", "States": {
            "Plan": {"Type": "Task", "Resource": first, "ResultPath": "$.plan", "Next": "Roll out"},
            "Roll out": {"Type": "Task", "Resource": slow, "End": True}}})
        execution = self.start(machine)
        self.assertEqual(len(self.recorded(slow_file)), 1)
        self.sfn.stop_execution(executionArn=execution)
        time.sleep(2)  # the interrupted task has finished by now; its result is discarded
        self.sfn.redrive_execution(executionArn=execution)
        described = self.until_stopped(execution)
        self.assertEqual((described["status"], described["redriveCount"]), ("SUCCEEDED", 1))
        self.assertEqual(len(self.recorded(first_file, seconds=0)), 1, "a completed state is not rerun")
        self.assertEqual(len(self.recorded(slow_file, seconds=0)), 2, "the interrupted state is")

    def test_the_function_is_invoked_asynchronously_with_lambdas_retries(self):
        machine = self.waiting_machine()
        record_to = self.routed(machine, FAIL="1")
        execution = self.start(machine)
        time.sleep(0.5)
        self.sfn.stop_execution(executionArn=execution)
        attempts = self.recorded(record_to, count=3, seconds=15)
        self.assertEqual(len(attempts), 3, "the first attempt and Lambda's two async retries")
        self.assertEqual({e["id"] for e in attempts}, {attempts[0]["id"]}, "the same event each time")

    def test_the_holds_table_comes_back_after_a_reset(self):
        dynamodb = deploy._client("dynamodb", self.moto)
        deploy.create_holds_table(self.moto)
        deploy.create_holds_table(self.moto)  # idempotent
        urllib.request.urlopen(urllib.request.Request(f"{self.moto}/_localaws/reset", data=b"{}", method="POST"))
        self.assertNotIn(deploy.HOLDS_TABLE, dynamodb.list_tables()["TableNames"])
        deploy.create_holds_table(self.moto)
        table = dynamodb.describe_table(TableName=deploy.HOLDS_TABLE)["Table"]
        self.assertEqual(table["KeySchema"], [{"AttributeName": "key", "KeyType": "HASH"}])
        self.assertEqual(table["AttributeDefinitions"], [{"AttributeName": "key", "AttributeType": "S"}])
        self.assertEqual(table["BillingModeSummary"]["BillingMode"], "PAY_PER_REQUEST")


if __name__ == "__main__":
    unittest.main()
