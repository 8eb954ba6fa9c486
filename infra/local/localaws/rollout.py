"""Start a rollout the way EventBridge does and watch it like an operator would.

`start_from_parameter_change` sets the SSM parameter and starts the state machine with the
"Parameter Store Change" event AWS emits for it (the event rule passes it unchanged).
`watch` follows one execution to its end and prints a timeline: the states entered, each step a
group goes through, its refresh as a progress bar, health verdicts with their reasons, the
rollback, and a final table. It returns what a test needs to assert.
"""

import datetime
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3

from . import deploy, launcher

FIXTURE = deploy.ROOT / "tests/fixtures/parameter-store-change.json"
STEP_NAMES = {
    "resolve-ami": "Resolve AMI and plan",
    "update-template": "Create launch template version",
    "start-refresh": "Start instance refresh",
    "check-ecs-health": "Check refresh and ECS health",
    "rollback": "Roll back touched groups",
    "hold-targets": "Take hold of the targets",
}


def _client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=launcher.REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def parameter_store_change(name: str, account: str = "123456789012") -> dict:
    event = json.loads(FIXTURE.read_text())
    event.update(id=str(uuid.uuid4()), account=account,
                 time=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 resources=[f"arn:aws:ssm:{launcher.REGION}:{account}:parameter{name}"])
    event["detail"].update(name=name, operation="Update")
    return event


def start(sfn_endpoint: str, state_machine: str, payload: dict) -> str:
    return _client("stepfunctions", sfn_endpoint).start_execution(
        stateMachineArn=state_machine, input=json.dumps(payload))["executionArn"]


def redrive(sfn_endpoint: str, execution: str) -> int:
    """Redrives a failed execution; returns how many history events it had, to watch from there."""
    sfn = _client("stepfunctions", sfn_endpoint)
    seen = len(_history(sfn, execution))
    sfn.redrive_execution(executionArn=execution)
    return seen


def start_from_parameter_change(sfn_endpoint, moto_endpoint, state_machine, name, ami) -> tuple[str, dict]:
    _client("ssm", moto_endpoint).put_parameter(Name=name, Value=ami, Type="String",
                                                DataType="aws:ec2:image", Overwrite=True)
    event = parameter_store_change(name)
    return start(sfn_endpoint, state_machine, event), event


def fleet(control: str) -> dict:
    return json.load(urllib.request.urlopen(f"{control}/fleet"))


def _bar(percentage: int, width: int = 20) -> str:
    filled = width * percentage // 100
    return "█" * filled + "·" * (width - filled)


class Timeline:
    """Turns history events and fleet snapshots into readable lines, once each."""

    def __init__(self, out):
        self.out = out
        self.start = time.time()
        self.seen_progress = {}
        self.verdicts = {}
        self.last_health = {}
        self.steps = set()

    def line(self, text: str) -> None:
        self.out(f"{time.time() - self.start:6.1f}s  {text}")

    def event(self, e: dict) -> None:
        kind = e["type"]
        if kind.endswith("StateEntered"):
            self.line(f"▶ {e['stateEnteredEventDetails']['name']}")
        elif kind == "TaskSucceeded":
            details = e["taskSucceededEventDetails"]
            self.task_output(details["resource"].rsplit(":", 1)[-1], json.loads(details["output"]))
        elif kind in ("TaskFailed", "LambdaFunctionFailed"):
            details = next(v for k, v in e.items() if k.endswith("EventDetails"))
            self.line(f"✗ {details.get('error')}: {details.get('cause', '')[:400]}")
        elif kind == "ExecutionRedriven":
            count = e["executionRedrivenEventDetails"]["redriveCount"]
            self.line(f"↻ execution redriven (redrive {count}): resuming from the step that did not complete")
        elif kind == "ExecutionFailed":
            details = e["executionFailedEventDetails"]
            self.line(f"■ execution FAILED — {details.get('error')}")
        elif kind == "ExecutionSucceeded":
            self.line("■ execution SUCCEEDED")

    def task_output(self, function: str, output: dict) -> None:
        name = function.removeprefix("ami-rollout-")
        if name == "resolve-ami":
            waves = [[t["group"] for t in wave] for wave in output["waves"]]
            self.line(f"  plan: {output['ami']['id']} ({output['ami'].get('name', '')}) for "
                      f"{output['targetCount']} group(s) in waves {waves}")
            for skipped in output.get("skipped", []):
                self.line(f"  skipped {skipped['group']}: {skipped['reason']}")
        elif name == "hold-targets" and "waves" in output:
            self.line(f"  held {output['targetCount']} group(s) for this execution")
            for skipped in output.get("skipped", []):
                if "duplicate" in skipped["reason"]:
                    self.line(f"  left {skipped['group']} to another execution: {skipped['reason']}")
        elif name == "hold-targets":
            released = output.get("targets", [])
            protected = output.get("unprotected", [])
            self.line(f"  released {len(released)} group(s)"
                      + (f"; deregistration protection lifted from {', '.join(protected)}" if protected else ""))
        elif name == "rollback":
            for t in output.get("targets", []):
                self.line(f"  ↩ {t['group']}: {t['action']}{' (done)' if t['done'] else ''}")
        elif "target" in output:
            group = output["target"]["group"]
            health = output.get("health")
            if name == "check-ecs-health" and health:
                self.last_health[group] = health
                key = (health["verdict"], tuple(health.get("reasons", [])))
                if self.verdicts.get(group) != key:
                    self.verdicts[group] = key
                    reasons = "; ".join(health.get("reasons", []))
                    self.line(f"  {group}: {health['verdict']} ({health['refreshStatus']} "
                              f"{health['percentage']}%){' — ' + reasons if reasons else ''}")
            else:
                step = STEP_NAMES.get(name, name)
                if name == "update-template" and output.get("refresh"):
                    step = "Restore launch template reference"
                if (group, step) not in self.steps:
                    self.steps.add((group, step))
                    version = output.get("newVersion")
                    detail = f" → version {version}" if step.startswith("Create") and version else ""
                    self.line(f"  {group}: {step}{detail}")

    def progress(self, view: dict) -> None:
        for group, g in view["groups"].items():
            if not g["refreshes"]:
                continue
            r = g["refreshes"][0]
            key = (r["InstanceRefreshId"], r["Status"], r["PercentageComplete"])
            if self.seen_progress.get(group) != key:
                self.seen_progress[group] = key
                amis = sorted({i["imageId"] for i in g["instances"]})
                self.line(f"  {group:<20} {_bar(r['PercentageComplete'])} {r['PercentageComplete']:3d}% "
                          f"{r['Status']:<18} AMIs {', '.join(amis)}")


def watch(sfn_endpoint: str, control: str, execution: str, out=print, timeout: float = 600,
          since: int = 0) -> dict:
    """Follows `execution` until it stops; `since` skips history events already shown."""
    sfn = _client("stepfunctions", sfn_endpoint)
    timeline = Timeline(out)
    started = datetime.datetime.now(datetime.timezone.utc)
    before = fleet(control)
    seen = since
    deadline = time.time() + timeout
    while True:
        status = sfn.describe_execution(executionArn=execution)
        events = _history(sfn, execution)
        for e in events[seen:]:
            timeline.event(e)
        seen = len(events)
        timeline.progress(fleet(control))
        if status["status"] != "RUNNING":
            break
        if time.time() > deadline:
            raise TimeoutError(f"{execution} still running after {timeout:.0f} s")
        time.sleep(0.3)
    after = fleet(control)
    result = {"status": status["status"], "error": status.get("error"), "cause": status.get("cause"),
              "events": events, "before": before, "after": after, "health": timeline.last_health,
              "seconds": round(time.time() - timeline.start, 1), "started": started}
    summary(result, out)
    return result


def _history(sfn, execution) -> list:
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def summary(result: dict, out=print) -> None:
    out("")
    out(f"{'group':<22} {'AMI before':<23} {'AMI after':<23} {'refresh':>8} {'checks':>7}")
    for group, g in result["after"]["groups"].items():
        before = sorted({i["imageId"] for i in result["before"]["groups"].get(group, {}).get("instances", [])})
        after = sorted({i["imageId"] for i in g["instances"]})
        duration = "-"
        # Only this execution's refreshes (the group may have older ones).
        refreshes = [r for r in g["refreshes"]
                     if datetime.datetime.fromisoformat(str(r["StartTime"])) >= result["started"]]
        if refreshes and refreshes[-1].get("EndTime"):
            first, last = refreshes[-1], refreshes[0]
            start = datetime.datetime.fromisoformat(str(first["StartTime"]))
            end = datetime.datetime.fromisoformat(str(last.get("EndTime") or first["EndTime"]))
            duration = f"{(end - start).total_seconds():.1f}s"
        checks = result["health"].get(group, {}).get("checksPassed", "-")
        out(f"{group:<22} {', '.join(before):<23} {', '.join(after):<23} {duration:>8} {checks:>7}")
    out("")
    out(f"execution {result['status']} in {result['seconds']} s")
    if result["error"]:
        out(f"  Error: {result['error']}")
        out(f"  Cause: {result['cause']}")
