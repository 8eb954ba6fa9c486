"""The local AWS's calendar clock and its callback tasks, as AWS runs them (localaws/clock.py,
localaws/stepfunctions.py 10 and 11): a Wait until a timestamp ends when the clock a function reads
has reached it; moto and ministack stamp times on that clock; a `lambda:invoke.waitForTaskToken`
task reads `TimeoutSecondsPath`, times out on the Wait scale, fails when its invocation fails, and
ends with what SendTaskSuccess / SendTaskFailure say. No Rust binaries: the functions are small
python3.12 ones (ministack runs them as local processes).

Run: infra/local/.venv/bin/python -m unittest discover -v -s infra/local/tests
(from the repository root). Starts its own local AWS at a calendar rate of 20.
"""

import io
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localaws import clock, deploy, launcher, rollout, seed  # noqa: E402
from localserver import lambda_role  # noqa: E402

RATE = 20
ROLE = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/test"
# Reads "now" as the functions do (origin + (wall - origin) * rate), and fails when asked to.
NOW = '''
import os, time

def handler(event, context):
    origin, rate = (float(p) for p in os.environ["AMI_ROLLOUT_CLOCK"].split(":"))
    if event.get("fail"):
        raise RuntimeError("the gate could not ask")
    return {"now": origin + (time.time() - origin) * rate}
'''


class ClockAndCallbacks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_dir = Path(tempfile.mkdtemp(prefix="localaws-clock-"))
        os.environ["LOCALAWS_CLOCK_RATE"] = str(RATE)
        try:
            state = launcher.up(cls.run_dir)
        finally:
            os.environ.pop("LOCALAWS_CLOCK_RATE")
        cls.moto = f"http://127.0.0.1:{state['motoPort']}"
        cls.sfn_endpoint = f"http://127.0.0.1:{state['sfnPort']}"
        lambda_role(cls.moto)
        cls.lam, cls.sfn = deploy.clients(cls.sfn_endpoint)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("handler.py", NOW)
        cls.function = cls.lam.create_function(
            FunctionName=f"now-{uuid.uuid4().hex[:8]}", Runtime="python3.12", Handler="handler.handler", Role=ROLE,
            Code={"ZipFile": code.getvalue()}, Timeout=10,
            Environment={"Variables": {"AMI_ROLLOUT_CLOCK": os.environ[clock.VARIABLE]}})["FunctionArn"]

    @classmethod
    def tearDownClass(cls):
        launcher.down(cls.run_dir, quiet=True)
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    def run_machine(self, states, payload=None, seconds=30):
        machine = self.sfn.create_state_machine(
            name=f"m-{uuid.uuid4().hex[:8]}", roleArn=ROLE,
            definition=json.dumps({"StartAt": next(iter(states)), "States": states}))["stateMachineArn"]
        execution = self.sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload or {}))["executionArn"]
        return execution, rollout.until_stopped(self.sfn, execution, seconds=seconds)

    def gate(self, **extra):
        return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": self.function, "Payload": {"token.$": "$$.Task.Token", "fail.$": "$.fail"}},
                "TimeoutSecondsPath": "$.timeout", "End": True, **extra}

    def test_a_function_after_a_timestamp_wait_sees_the_time_it_waited_for(self):
        until = datetime.fromtimestamp(clock.now() + 300, timezone.utc)  # five minutes: 15 s wall at 20
        started = time.time()
        _, described = self.run_machine({
            "Wait": {"Type": "Wait", "Timestamp": until.strftime("%Y-%m-%dT%H:%M:%SZ"), "Next": "Now"},
            "Now": {"Type": "Task", "Resource": self.function, "End": True}}, seconds=90)
        self.assertEqual(described["status"], "SUCCEEDED", described)
        seen = json.loads(described["output"])["now"]
        self.assertGreaterEqual(seen, until.timestamp() - 1, "the function sees the window open")
        self.assertLess(time.time() - started, 60, "on the calendar clock, not the wall's")

    def test_services_stamp_times_on_the_calendar_clock(self):
        # Once the calendar is well ahead of the wall, a wall-clock stamp is told from a calendar one.
        while clock.now() - time.time() < 120:
            time.sleep(0.5)
        before = clock.now()
        fleet = seed.clients(self.moto, launcher.REGION)
        template = fleet["ec2"].create_launch_template(
            LaunchTemplateName=f"t-{uuid.uuid4().hex[:8]}", LaunchTemplateData={"ImageId": "ami-12345678"})
        made = template["LaunchTemplate"]["CreateTime"].timestamp()
        execution, described = self.run_machine({"Done": {"Type": "Pass", "End": True}})
        self.assertLessEqual(before - 1, made)
        self.assertLessEqual(made, clock.now() + 1)
        self.assertAlmostEqual(described["startDate"].timestamp(), clock.now(), delta=RATE * 2)

    def test_a_callback_task_ends_with_what_the_answer_says(self):
        execution = self.sfn.start_execution(
            stateMachineArn=self.sfn.create_state_machine(
                name=f"m-{uuid.uuid4().hex[:8]}", roleArn=ROLE,
                definition=json.dumps({"StartAt": "Gate", "States": {"Gate": self.gate()}}))["stateMachineArn"],
            input=json.dumps({"timeout": 3600, "fail": False}))["executionArn"]
        token = None
        deadline = time.time() + 15
        while token is None and time.time() < deadline:
            for event in self.sfn.get_execution_history(executionArn=execution)["events"]:
                parameters = event.get("taskScheduledEventDetails", {}).get("parameters")
                if parameters:
                    token = json.loads(parameters)["Payload"]["token"]
            time.sleep(0.2)
        self.assertIsNotNone(token, "the token is in the task's parameters, as on AWS")
        self.sfn.send_task_failure(taskToken=token, error="Rejected", cause="not tonight")
        described = rollout.until_stopped(self.sfn, execution, seconds=15)
        self.assertEqual((described["status"], described.get("error"), described.get("cause")),
                         ("FAILED", "Rejected", "not tonight"))

    def test_a_callback_task_times_out_on_the_wait_scale_from_its_timeout_path(self):
        started = time.time()
        _, described = self.run_machine({"Gate": self.gate()}, {"timeout": 100, "fail": False})  # 5 s wall
        self.assertEqual((described["status"], described.get("error")), ("FAILED", "States.Timeout"), described)
        self.assertLess(time.time() - started, 25)

    def test_a_callback_task_whose_invocation_fails_fails_at_once(self):
        started = time.time()
        _, described = self.run_machine({"Gate": self.gate()}, {"timeout": 3600, "fail": True})
        self.assertEqual(described["status"], "FAILED", described)
        self.assertIn("the gate could not ask", described.get("cause", ""))
        self.assertLess(time.time() - started, 25, "not after the hour's timeout")


if __name__ == "__main__":
    unittest.main()
