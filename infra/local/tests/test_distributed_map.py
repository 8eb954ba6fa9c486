"""Distributed Map on the local AWS, as AWS runs it (localaws/stepfunctions.py, "Distributed Map"):
items read from S3 by ItemReader, each a Standard child execution of a Map Run with its own history,
at most MaxConcurrencyPath at once, results exported by ResultWriter, a failed child stopping the
Map Run (no further child starts, the running ones are aborted), StopExecution aborting the
children, and a redrive of the parent redriving only the unsuccessful children of the same Map Run.
ministack (Step Functions, Lambda, S3) serves it all; no Rust binaries: the one Task is a small
python3.12 function ministack runs as a local process.

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
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localaws import deploy, launcher, rollout  # noqa: E402
from localserver import lambda_role  # noqa: E402

ROLE = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/test"
BUCKET = "rollout-runs"
# The Task of the redrive scenario: records each call (start and end), is slow or fails while the
# fault file exists.
STEP = '''
import json, os, time

def handler(event, context):
    def record(phase):
        with open(os.environ["RECORD_TO"], "a") as f:
            f.write(json.dumps({"id": event["id"], "phase": phase}) + "\\n")
    record("start")
    faulty = os.path.exists(os.environ["FAULT"])
    if faulty and event.get("slow"):
        time.sleep(4)
    if faulty and event.get("fail"):
        time.sleep(1.5)
        record("failed")
        raise RuntimeError("failing until the fault clears")
    record("end")
    return {"done": event["id"]}
'''


def distributed(processor, **fields):
    """A Distributed Map state (Standard children) with `processor` as the child workflow."""
    return {"Type": "Map", "Label": "Wave", "End": True, **fields, "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, **processor}}


def overlap(intervals):
    """The most intervals [start, end) running at one moment."""
    moments = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = current = 0
    for _, step in moments:
        current += step
        most = max(most, current)
    return most


class DistributedMap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_dir = Path(tempfile.mkdtemp(prefix="localaws-distributed-map-"))
        state = launcher.up(cls.run_dir)
        cls.endpoint = f"http://127.0.0.1:{state['sfnPort']}"
        lambda_role(f"http://127.0.0.1:{state['motoPort']}")
        cls.lam, cls.sfn = deploy.clients(cls.endpoint)
        cls.s3 = deploy._client("s3", cls.endpoint)  # as AWS_ENDPOINT_URL_S3 points the SDKs
        cls.s3.create_bucket(Bucket=BUCKET)

    @classmethod
    def tearDownClass(cls):
        launcher.down(cls.run_dir, quiet=True)
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------------

    def machine(self, state):
        definition = {"StartAt": "Wave", "States": {"Wave": state}}
        return self.sfn.create_state_machine(name=f"m-{uuid.uuid4().hex[:8]}", roleArn=ROLE,
                                             definition=json.dumps(definition))["stateMachineArn"]

    def start(self, machine, payload):
        return self.sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"]

    def until_stopped(self, execution):
        return rollout.until_stopped(self.sfn, execution, seconds=20)

    def map_run(self, execution):
        [run] = self.sfn.list_map_runs(executionArn=execution)["mapRuns"]
        return self.sfn.describe_map_run(mapRunArn=run["mapRunArn"])

    def children(self, map_run):
        """The Map Run's child executions (described), in the order of their items' ids."""
        listed = self.sfn.list_executions(mapRunArn=map_run["mapRunArn"])["executions"]
        described = [self.sfn.describe_execution(executionArn=c["executionArn"]) for c in listed]
        return sorted(described, key=lambda c: json.loads(c["input"])["id"])

    def history(self, execution):
        return self.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]

    def json_object(self, key):
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def items(self, *items):
        """Puts `items` as a JSON array object; returns its key."""
        key = f"items/{uuid.uuid4().hex[:8]}.json"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(list(items)).encode())
        return key

    def step_function(self):
        """The STEP function; returns (its ARN, the calls file, the fault file)."""
        name = f"step-{uuid.uuid4().hex[:8]}"
        calls, fault = self.run_dir / f"{name}.jsonl", self.run_dir / f"{name}.fault"
        calls.touch()
        fault.touch()
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("handler.py", STEP)
        arn = self.lam.create_function(
            FunctionName=name, Runtime="python3.12", Handler="handler.handler", Role=ROLE,
            Code={"ZipFile": code.getvalue()}, Timeout=10,
            Environment={"Variables": {"RECORD_TO": str(calls), "FAULT": str(fault)}})["FunctionArn"]
        return arn, calls, fault

    @staticmethod
    def calls(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    # A child workflow of Pass, Choice, Wait (`delay` simulated seconds, 0.05 s each here) and Fail.
    WAITING = {"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Next": "Bake"},
        "Bake": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Failing?"},
        "Failing?": {"Type": "Choice", "Default": "Done",
                     "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Fail"}]},
        "Fail": {"Type": "Fail", "Error": "TargetFailed", "Cause": "the target did not roll out"},
        "Done": {"Type": "Pass", "End": True}}}

    # --- scenarios -----------------------------------------------------------------------------

    def test_items_from_s3_run_as_child_executions_at_most_max_concurrency_at_once(self):
        key = self.items(*({"id": i, "fail": False, "delay": 10} for i in range(6)))
        machine = self.machine(distributed(
            self.WAITING,
            ItemReader={"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                        "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"}},
            MaxConcurrencyPath="$.limit",
            ResultWriter={"Resource": "arn:aws:states:::s3:putObject",
                          "Parameters": {"Bucket.$": "$.bucket", "Prefix": "results/run"}}))
        execution = self.start(machine, {"bucket": BUCKET, "key": key, "limit": 2})
        self.assertEqual(self.until_stopped(execution)["status"], "SUCCEEDED")

        run = self.map_run(execution)
        self.assertEqual(run["status"], "SUCCEEDED")
        self.assertEqual(run["maxConcurrency"], 2)
        self.assertRegex(run["mapRunArn"], rf"^{machine.replace(':stateMachine:', ':mapRun:')}/Wave:[0-9a-f-]{{36}}$")
        for counts in (run["executionCounts"], run["itemCounts"]):
            self.assertEqual({k: counts[k] for k in ("succeeded", "failed", "aborted", "pending", "running", "total",
                                                     "resultsWritten")},
                             {"succeeded": 6, "failed": 0, "aborted": 0, "pending": 0, "running": 0, "total": 6,
                              "resultsWritten": 6})

        children = self.children(run)
        self.assertEqual(len(children), 6)
        child_machine = f"{machine}/Wave"
        for i, child in enumerate(children):
            self.assertEqual((child["status"], child["mapRunArn"], child["stateMachineArn"], child["redriveCount"]),
                             ("SUCCEEDED", run["mapRunArn"], child_machine, 0))
            self.assertEqual(child["executionArn"],
                             f"{child_machine.replace(':stateMachine:', ':execution:')}:{child['name']}")
            self.assertEqual(json.loads(child["output"]), {"id": i, "fail": False, "delay": 10})
        self.assertEqual([e["type"] for e in self.history(children[0]["executionArn"])],
                         ["ExecutionStarted", "PassStateEntered", "PassStateExited", "WaitStateEntered",
                          "WaitStateExited", "ChoiceStateEntered", "ChoiceStateExited", "PassStateEntered",
                          "PassStateExited", "ExecutionSucceeded"])
        spans = []
        for child in children:
            events = self.history(child["executionArn"])
            spans.append((events[0]["timestamp"], events[-1]["timestamp"]))
        self.assertEqual(overlap(spans), 2, "two children at once, never more")

        # ResultWriter: the Map's result points at the manifest; the manifest at the results.
        output = json.loads(self.sfn.describe_execution(executionArn=execution)["output"])
        run_id = run["mapRunArn"].rsplit(":", 1)[1]
        manifest_key = f"results/run/{run_id}/manifest.json"
        self.assertEqual(output, {"MapRunArn": run["mapRunArn"],
                                  "ResultWriterDetails": {"Bucket": BUCKET, "Key": manifest_key}})
        manifest = self.json_object(manifest_key)
        succeeded_key = f"results/run/{run_id}/SUCCEEDED_0.json"
        self.assertEqual(manifest["DestinationBucket"], BUCKET)
        self.assertEqual(manifest["MapRunArn"], run["mapRunArn"])
        self.assertEqual(manifest["ResultFiles"]["FAILED"], [])
        self.assertEqual(manifest["ResultFiles"]["PENDING"], [])
        [file] = manifest["ResultFiles"]["SUCCEEDED"]
        self.assertEqual(file["Key"], succeeded_key)
        self.assertEqual(file["Size"], self.s3.head_object(Bucket=BUCKET, Key=succeeded_key)["ContentLength"])
        results = sorted(self.json_object(succeeded_key), key=lambda r: json.loads(r["Input"])["id"])
        self.assertEqual(set(results[0]), {"ExecutionArn", "Input", "InputDetails", "Name", "Output", "OutputDetails",
                                           "RedriveCount", "RedriveStatus", "RedriveStatusReason", "StartDate",
                                           "StateMachineArn", "Status", "StopDate"})
        self.assertEqual([r["ExecutionArn"] for r in results], [c["executionArn"] for c in children])
        self.assertEqual((results[0]["Status"], results[0]["InputDetails"], results[0]["RedriveStatus"]),
                         ("SUCCEEDED", {"Included": True}, "NOT_REDRIVABLE"))
        self.assertEqual(json.loads(results[5]["Output"]), {"id": 5, "fail": False, "delay": 10})
        self.assertRegex(results[0]["StartDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        # The children's state machine is AWS's labelled one: described, not listed.
        self.assertEqual(self.sfn.describe_state_machine(stateMachineArn=child_machine)["label"], "Wave")
        listed = [m["stateMachineArn"] for m in self.sfn.list_state_machines()["stateMachines"]]
        self.assertIn(machine, listed)
        self.assertNotIn(child_machine, listed)
        self.assertEqual([e["type"] for e in self.history(execution)],
                         ["ExecutionStarted", "MapStateEntered", "MapRunStarted", "MapRunSucceeded",
                          "MapStateExited", "ExecutionSucceeded"])

    def test_a_failed_child_fails_the_map_run_and_aborts_the_running_ones(self):
        # 1 fails once its Wait (0.5 s) ends, while 0 and 2 are in theirs (2 s).
        key = self.items({"id": 0, "fail": False, "delay": 40}, {"id": 1, "fail": True, "delay": 10},
                         {"id": 2, "fail": False, "delay": 40}, {"id": 3, "fail": False, "delay": 0},
                         {"id": 4, "fail": False, "delay": 0})
        machine = self.machine(distributed(
            self.WAITING, MaxConcurrency=3,
            ItemReader={"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                        "Parameters": {"Bucket": BUCKET, "Key": key}},
            ResultWriter={"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": BUCKET}}))
        execution = self.start(machine, {})
        described = self.until_stopped(execution)
        self.assertEqual((described["status"], described["error"], described["cause"]),
                         ("FAILED", "States.ExceedToleratedFailureThreshold",
                          "The specified tolerated failure threshold was exceeded"))

        run = self.map_run(execution)
        self.assertEqual(run["status"], "FAILED")
        counts = run["executionCounts"]
        self.assertEqual({k: counts[k] for k in ("succeeded", "failed", "aborted", "pending", "running", "total")},
                         {"succeeded": 0, "failed": 1, "aborted": 2, "pending": 2, "running": 0, "total": 5})
        children = self.children(run)
        self.assertEqual([json.loads(c["input"])["id"] for c in children], [0, 1, 2], "items 3 and 4 never start")
        self.assertEqual([c["status"] for c in children], ["ABORTED", "FAILED", "ABORTED"])
        self.assertEqual((children[1]["error"], children[1]["cause"]), ("TargetFailed", "the target did not roll out"))
        self.assertEqual(self.history(children[1]["executionArn"])[-2:][0]["type"], "FailStateEntered")

        time.sleep(2.5)  # past the aborted children's Wait: it ends unseen, nothing follows it
        for child in (children[0], children[2]):
            self.assertEqual([e["type"] for e in self.history(child["executionArn"])][-2:],
                             ["WaitStateEntered", "ExecutionAborted"])
            self.assertEqual(self.sfn.describe_execution(executionArn=child["executionArn"])["status"], "ABORTED")
        self.assertEqual(len(self.sfn.list_executions(mapRunArn=run["mapRunArn"])["executions"]), 3)
        self.assertEqual([e["type"] for e in self.history(execution)][-3:],
                         ["MapRunStarted", "MapRunFailed", "ExecutionFailed"])

        # The results of a failed Map Run are written too: failed and aborted, and never started.
        manifest = self.json_object(f"{run['mapRunArn'].rsplit(':', 1)[1]}/manifest.json")
        self.assertEqual(manifest["ResultFiles"]["SUCCEEDED"], [])
        failed = {r["ExecutionArn"]: r for r in self.json_object(manifest["ResultFiles"]["FAILED"][0]["Key"])}
        self.assertEqual({arn: r["Status"] for arn, r in failed.items()},
                         {c["executionArn"]: c["status"] for c in children})
        self.assertEqual((failed[children[1]["executionArn"]]["Error"], failed[children[1]["executionArn"]]["Cause"]),
                         ("TargetFailed", "the target did not roll out"))
        pending = self.json_object(manifest["ResultFiles"]["PENDING"][0]["Key"])
        self.assertEqual(sorted(json.loads(p["Input"])["id"] for p in pending), [3, 4])

    def test_tolerated_failures(self):
        items = [{"id": i, "fail": i == 1, "delay": 0} for i in range(3)]
        tolerant = self.machine(distributed(self.WAITING, ItemsPath="$.items", ToleratedFailureCount=1))
        strict = self.machine(distributed(self.WAITING, ItemsPath="$.items", ToleratedFailurePercentagePath="$.pct"))
        tolerated, exceeded = self.start(tolerant, {"items": items}), self.start(strict, {"items": items, "pct": 30})

        described = self.until_stopped(tolerated)
        self.assertEqual(described["status"], "SUCCEEDED")
        output = json.loads(described["output"])
        self.assertEqual([output[0], output[2]], [items[0], items[2]])
        self.assertEqual((output[1]["Status"], output[1]["Error"]), ("FAILED", "TargetFailed"),
                         "a tolerated failure is in the output as its whole record")
        self.assertEqual(self.map_run(tolerated)["executionCounts"]["failed"], 1)
        described = self.until_stopped(exceeded)
        self.assertEqual((described["status"], described["error"]),
                         ("FAILED", "States.ExceedToleratedFailureThreshold"), "1 of 3 is over 30 %")
        self.assertEqual(self.map_run(exceeded)["toleratedFailurePercentage"], 30)

    def test_a_redrive_reruns_only_the_unsuccessful_children_of_the_same_map_run(self):
        step, calls, fault = self.step_function()
        machine = self.machine(distributed({"StartAt": "Prepare", "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"id.$": "$.id", "fail.$": "$.fail", "slow.$": "$.slow"},
                        "Next": "Step"},
            "Step": {"Type": "Task", "Resource": step, "ResultPath": "$.step", "Next": "Done"},
            "Done": {"Type": "Pass", "End": True}}}, ItemsPath="$.items", MaxConcurrency=3))
        # 0 succeeds; 1 fails while 2 and 3 (started when 0 ended) are in their slow Task; 4 never starts.
        items = [{"id": i, "fail": i == 1, "slow": i in (2, 3)} for i in range(5)]
        execution = self.start(machine, {"items": items})
        self.assertEqual(self.until_stopped(execution)["status"], "FAILED")
        run = self.map_run(execution)
        before = {json.loads(c["input"])["id"]: c for c in self.children(run)}
        self.assertEqual({i: c["status"] for i, c in before.items()},
                         {0: "SUCCEEDED", 1: "FAILED", 2: "ABORTED", 3: "ABORTED"})
        deadline = time.time() + 10  # the aborted children's calls in flight end, unseen
        while sum(c["phase"] == "end" for c in self.calls(calls)) < 3 and time.time() < deadline:
            time.sleep(0.1)
        for i in (2, 3):
            self.assertEqual([e["type"] for e in self.history(before[i]["executionArn"])][-2:],
                             ["TaskScheduled", "ExecutionAborted"], "the call's result is discarded")
        histories = {i: self.history(c["executionArn"]) for i, c in before.items()}

        fault.unlink()  # the fault clears
        self.sfn.redrive_execution(executionArn=execution)
        described = self.until_stopped(execution)
        self.assertEqual((described["status"], described["redriveCount"]), ("SUCCEEDED", 1))
        self.assertEqual([o["step"] for o in json.loads(described["output"])], [{"done": i} for i in range(5)])

        [listed] = self.sfn.list_map_runs(executionArn=execution)["mapRuns"]
        self.assertEqual(listed["mapRunArn"], run["mapRunArn"], "the same Map Run, redriven")
        after_run = self.map_run(execution)
        self.assertEqual((after_run["status"], after_run["redriveCount"]), ("SUCCEEDED", 1))
        self.assertIn("redriveDate", after_run)
        self.assertEqual(after_run["executionCounts"]["succeeded"], 5)
        after = {json.loads(c["input"])["id"]: c for c in self.children(after_run)}
        self.assertEqual({i: c["executionArn"] for i, c in after.items() if i in before},
                         {i: c["executionArn"] for i, c in before.items()}, "redriven children keep their ARN")
        self.assertEqual({i: (c["status"], c["redriveCount"]) for i, c in after.items()},
                         {0: ("SUCCEEDED", 0), 1: ("SUCCEEDED", 1), 2: ("SUCCEEDED", 1), 3: ("SUCCEEDED", 1),
                          4: ("SUCCEEDED", 0)})
        self.assertEqual(self.history(after[0]["executionArn"]), histories[0], "the succeeded child is left alone")
        started = [c["id"] for c in self.calls(calls) if c["phase"] == "start"]
        self.assertEqual({i: started.count(i) for i in range(5)}, {0: 1, 1: 2, 2: 2, 3: 2, 4: 1})
        for i in (1, 2, 3):  # resumed from the Task: Prepare is answered from the journal
            events = self.history(after[i]["executionArn"])
            redriven = [e["type"] for e in events].index("ExecutionRedriven")
            self.assertEqual(events[:redriven], histories[i])
            self.assertEqual([e["type"] for e in events[redriven:]],
                             ["ExecutionRedriven", "TaskStateEntered", "TaskScheduled", "TaskSucceeded",
                              "TaskStateExited", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"])
        parent = [e for e in self.history(execution) if e["type"] in ("ExecutionRedriven", "MapRunRedriven")]
        self.assertEqual([e["type"] for e in parent], ["ExecutionRedriven", "MapRunRedriven"])
        self.assertEqual(parent[1]["mapRunRedrivenEventDetails"],
                         {"mapRunArn": run["mapRunArn"], "redriveCount": 1})

    def test_stopping_the_parent_aborts_its_children(self):
        machine = self.machine(distributed(self.WAITING, ItemsPath="$.items", MaxConcurrency=2))
        execution = self.start(machine, {"items": [{"id": i, "fail": False, "delay": 200} for i in range(4)]})
        deadline = time.time() + 10
        while time.time() < deadline:
            runs = self.sfn.list_map_runs(executionArn=execution)["mapRuns"]
            if runs and len(self.sfn.list_executions(mapRunArn=runs[0]["mapRunArn"], statusFilter="RUNNING")
                            ["executions"]) == 2:
                break
            time.sleep(0.1)
        self.sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped by hand")
        time.sleep(1)
        run = self.map_run(execution)
        self.assertEqual(run["status"], "ABORTED")
        self.assertEqual([c["status"] for c in self.children(run)], ["ABORTED", "ABORTED"])
        self.assertEqual((run["executionCounts"]["aborted"], run["executionCounts"]["pending"]), (2, 2))
        self.assertEqual(self.sfn.describe_execution(executionArn=execution)["status"], "ABORTED")
        self.assertEqual(self.history(execution)[-1]["type"], "ExecutionAborted")


if __name__ == "__main__":
    unittest.main()
