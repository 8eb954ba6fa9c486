"""Start a rollout the way EventBridge does and watch it like an operator would.

`write_parameter` sets the SSM parameter as a user would and returns the execution the local bus
started for it (the template's rule, the event AWS emits). `start_from_parameter_change` sets the
parameter and starts the state machine itself with that event, where no trigger rule is deployed.
`watch` follows one execution to its end and prints a timeline: the states entered, each wave's
child executions (one per group: AWS names them, so each is shown by the group its input names),
each step a group goes through, its refresh as a progress bar, health verdicts with their reasons,
the rollback, and a final table. It returns what a test needs to assert.
"""

import datetime
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3

from . import clock, deploy, launcher

FIXTURE = deploy.ROOT / "tests/fixtures/parameter-store-change.json"
STEP_NAMES = {
    "resolve-ami": "Resolve AMI and plan",
    "update-template": "Create launch template version",
    "start-refresh": "Start instance refresh",
    "check-ecs-health": "Check refresh and ECS health",
    "rollback": "Roll back the target",
    "hold-targets": "Take hold of the targets",
}


def _client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=launcher.REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def parameter_store_change(name: str, account: str = "123456789012") -> dict:
    event = json.loads(FIXTURE.read_text())
    event.update(id=str(uuid.uuid4()), account=account,
                 time=clock.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
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


def write_parameter(sfn_endpoint, moto_endpoint, state_machine, name, ami, timeout: float = 30) -> str:
    """Writes the parameter; the execution the Parameter Store Change rule started for it."""
    sfn = _client("stepfunctions", sfn_endpoint)
    known = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=state_machine)["executions"]}
    _client("ssm", moto_endpoint).put_parameter(Name=name, Value=ami, Type="String",
                                                DataType="aws:ec2:image", Overwrite=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in sfn.list_executions(stateMachineArn=state_machine)["executions"]:
            if e["executionArn"] not in known:
                return e["executionArn"]
        time.sleep(0.2)
    raise TimeoutError(f"no execution started within {timeout:.0f} s of writing {name}: is the rule deployed?")


def fleet(control: str, account: str | None = None, region: str | None = None) -> dict:
    """The fleet view of one account and region (default: moto's own)."""
    query = "&".join(f"{k}={v}" for k, v in (("account", account), ("region", region)) if v)
    return json.load(urllib.request.urlopen(f"{control}/fleet" + (f"?{query}" if query else "")))


def target_name(target: dict) -> str:
    """A target as the plan names it: its group, after its account and region when it has them."""
    return "/".join(p for p in (target.get("account"), target.get("region"), target.get("group")) if p)


def _bar(percentage: int, width: int = 20) -> str:
    filled = width * percentage // 100
    return "█" * filled + "·" * (width - filled)


class Timeline:
    """Turns history events and fleet snapshots into readable lines, once each."""

    def __init__(self, out, s3=None):
        self.out = out
        self.s3 = s3  # where the plan objects are, to name the groups
        self.start = time.time()
        self.seen_progress = {}
        self.verdicts = {}
        self.last_health = {}
        self.steps = set()

    def line(self, text: str) -> None:
        self.out(f"{time.time() - self.start:6.1f}s  {text}")

    def event(self, e: dict, child: str | None = None) -> None:
        """One history event; `child` names the group of the child execution it belongs to."""
        kind = e["type"]
        if kind.endswith("StateEntered") and child is None:
            self.line(f"▶ {e['stateEnteredEventDetails']['name']}")
        elif kind == "TaskSucceeded":
            details = e["taskSucceededEventDetails"]
            self.task_output(details["resource"].rsplit(":", 1)[-1], json.loads(details["output"]))
        elif kind in ("TaskFailed", "LambdaFunctionFailed"):
            details = next(v for k, v in e.items() if k.endswith("EventDetails"))
            who = f"{child}: " if child else ""
            self.line(f"✗ {who}{details.get('error')}: {details.get('cause', '')[:400]}")
        elif kind == "MapRunStarted":
            # arn:…:mapRun:<state machine>/<Label>:<id>
            label_and_id = e.get("mapRunStartedEventDetails", {}).get("mapRunArn", "").split("/")[-1]
            per = "account-region, each a Map Run of its targets" if label_and_id.split(":")[0].endswith("-lanes") \
                else "target"
            self.line(f"  Map Run {label_and_id.replace(':', ' ')}: one child execution per {per}")
        elif kind == "ExecutionRedriven":
            count = e["executionRedrivenEventDetails"]["redriveCount"]
            who = f"{child}: child" if child else "execution"
            self.line(f"↻ {who} redriven (redrive {count}): resuming from the step that did not complete")
        elif kind == "ExecutionFailed":
            details = e["executionFailedEventDetails"]
            who = f"{child}: child execution" if child else "execution"
            self.line(f"■ {who} FAILED — {details.get('error')}")
        elif kind == "ExecutionAborted" and child:
            self.line(f"■ {child}: child execution ABORTED")
        elif kind == "ExecutionSucceeded" and child is None:
            self.line("■ execution SUCCEEDED")
        elif kind == "ExecutionSucceeded":
            output = json.loads(e.get("executionSucceededEventDetails", {}).get("output") or "{}")
            outcome = output.get("outcome") or ("rolled back" if output.get("done") else "not rolled back"
                                                if output.get("failed") else "")
            self.line(f"  {child}: child execution ended: {outcome}")

    def task_output(self, function: str, output: dict) -> None:
        name = function.removeprefix("ami-rollout-")
        if name == "resolve-ami" and "nothingToDo" in output:
            self.line(f"  nothing to do: {output['nothingToDo']}")
        elif name == "resolve-ami":
            sizes = [w["targets"] for w in output["waves"]]
            self.line(f"  plan: {output['ami']['id']} ({output['ami'].get('name', '')}) for "
                      f"{output['targetCount']} group(s), waves of {sizes}; s3://{output['bucket']}/{output['key']}")
            plan = self.plan_object(output["bucket"], output["key"])
            if plan and plan["targetCount"] <= 20:
                self.line(f"  waves: {[[target_name(t) for t in wave] for wave in plan['waves']]}")
            shown = plan["skipped"][:20] if plan else []
            for skipped in shown:
                self.line(f"  skipped {skipped['group']}: {skipped['reason']}")
            if not shown:
                for reason, count in output.get("skippedByReason", {}).items():
                    self.line(f"  skipped {count}: {reason}")
        elif name == "hold-targets" and "waves" in output:
            self.line(f"  held {output['targetCount']} group(s) for this execution")
            for reason, count in output.get("skippedByReason", {}).items():
                if "duplicate" in reason:
                    self.line(f"  left {count} group(s) to another execution: {reason}")
        elif name == "hold-targets" and "failure" in output:
            self.line(f"  {target_name(output)} failed: the wave stops")
        elif name == "hold-targets" and "failed" in output:
            stop = output.get("stop")
            self.line(f"  wave outcome: {'failed at ' + target_name(stop) if stop else 'every target rolled out'}")
        elif name == "hold-targets":
            released = output.get("targets", [])
            protected = output.get("unprotected", [])
            self.line(f"  released {len(released)} group(s)"
                      + (f"; deregistration protection lifted from {', '.join(protected)}" if protected else ""))
        elif name == "rollback" and "complete" in output:
            t = output["target"]
            self.line(f"  ↩ {t['group']}: {t['action']}{' (done)' if t['done'] else ''}")
        elif name == "rollback" and "cause" in output:
            self.line(f"  rollback: {output['rolledBack']} rolled back, {output['notRolledBack']} not, "
                      f"{output['untouched']} untouched")
        elif name == "rollback" and "deleted" in output:
            if output["deleted"]:
                self.line(f"  replaced roots deleted: {', '.join(output['deleted'])}")
            if output["kept"]:
                self.line(f"  replaced roots kept (keepReplacedRoot): {', '.join(output['kept'])}")
        elif name == "rollback":
            self.line(f"  rollback of {output['targets']} target(s) in scope")
        elif "target" in output:
            group = target_name(output["target"])
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
                if name == "start-refresh" and output["target"].get("kind") == "instance":
                    step = "Replace the root volume"
                if (group, step) not in self.steps:
                    self.steps.add((group, step))
                    version = output.get("newVersion")
                    detail = f" → version {version}" if step.startswith("Create") and version else ""
                    self.line(f"  {group}: {step}{detail}")

    def plan_object(self, bucket: str, key: str) -> dict | None:
        if self.s3 is None:
            return None
        try:
            return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:  # the timeline is for reading: a missing object only shows less
            return None

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


class Children:
    """The target child executions of an execution's Distributed Maps (a wave's lanes, one per
    account-region, each run their targets as a Distributed Map of their own), each named by the
    target its input names, with the history events not yet shown."""

    def __init__(self, sfn, execution):
        self.sfn, self.execution = sfn, execution
        self.known = {}  # child ARN -> {"group", "wave", "events", "shown", "status", "mapRun"}
        self.lanes = {}  # lane child ARN -> its input

    def poll(self) -> list:
        """(group, event) pairs new since the last poll, in each child's order."""
        new, parents = [], [self.execution]
        while parents:
            for run in self.sfn.list_map_runs(executionArn=parents.pop(0))["mapRuns"]:
                for child in _pages(self.sfn.list_executions, "executions", mapRunArn=run["mapRunArn"]):
                    arn = child["executionArn"]
                    if arn in self.lanes:
                        parents.append(arn)
                        continue
                    seen = self.known.get(arn)
                    if seen is None:
                        described = json.loads(self.sfn.describe_execution(executionArn=arn).get("input") or "{}")
                        if "lane" in described:
                            self.lanes[arn] = described
                            parents.append(arn)
                            continue
                        target = described.get("target", {})
                        seen = self.known[arn] = {"group": target_name(target) or arn.rsplit(":", 1)[-1],
                                                  "wave": described.get("wave"), "events": [], "shown": 0,
                                                  "status": None, "mapRun": run["mapRunArn"]}
                    if seen["status"] in ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT") \
                            and seen["status"] == child["status"] and seen["shown"] == len(seen["events"]):
                        continue
                    seen["status"] = child["status"]
                    seen["events"] = _history(self.sfn, arn)
                    new += [(seen["group"], e) for e in seen["events"][seen["shown"]:]]
                    seen["shown"] = len(seen["events"])
        return new


def watch(sfn_endpoint: str, control: str, execution: str, out=print, timeout: float = 600,
          since: int = 0) -> dict:
    """Follows `execution` and its child executions until it stops; `since` skips the parent's
    history events already shown."""
    sfn = _client("stepfunctions", sfn_endpoint)
    timeline = Timeline(out, _client("s3", sfn_endpoint))
    children = Children(sfn, execution)
    started = clock.utcnow()
    before = fleet(control)
    seen = since
    deadline = time.time() + timeout
    while True:
        status = sfn.describe_execution(executionArn=execution)
        events = _history(sfn, execution)
        # The parent's and the children's new events, in the order they happened.
        new = [(e["timestamp"], None, e) for e in events[seen:]] + \
              [(e["timestamp"], group, e) for group, e in children.poll()]
        for _, group, e in sorted(new, key=lambda n: n[0]):
            timeline.event(e, child=group)
        seen = len(events)
        timeline.progress(fleet(control))
        if status["status"] != "RUNNING":
            break
        if time.time() > deadline:
            raise TimeoutError(f"{execution} still running after {timeout:.0f} s")
        time.sleep(0.3)
    after = fleet(control)
    result = {"status": status["status"], "error": status.get("error"), "cause": status.get("cause"),
              "events": events, "children": children.known, "before": before, "after": after,
              "health": timeline.last_health, "seconds": round(time.time() - timeline.start, 1),
              "started": started}
    summary(result, out)
    return result


def until_stopped(sfn, execution: str, seconds: float = 20) -> dict:
    """DescribeExecution of `execution` once it is no longer RUNNING (or after `seconds`)."""
    deadline = time.time() + seconds
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or time.time() > deadline:
            return described
        time.sleep(0.1)


def _pages(call, key, **kwargs) -> list:
    items, token = [], None
    while True:
        page = call(**kwargs, **({"nextToken": token} if token else {}))
        items += page[key]
        token = page.get("nextToken")
        if not token:
            return items


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
