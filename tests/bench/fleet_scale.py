"""The fleet-scale row of DESIGN §8: N groups rolled out end to end on the local AWS, one
execution tree (the parent, a Distributed Map per wave, one child execution per group).

Reports the wall time, the largest history of any execution (as the local engine recorded it,
and as AWS would: each state entered counts the events AWS records for its type, see
tests/history_model.rs), the largest state that passed between two states, AWS calls per group
per poll, and how many child executions ran. Timing is reported, never asserted in a test.

  infra/local/.venv/bin/python tests/bench/fleet_scale.py --groups 50 [--profile debug]

`make bench` runs it with 1,000 groups on the release binaries of `make package`.
"""

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "infra/local"))

from localaws import deploy, launcher, rollout, seed  # noqa: E402

HISTORY_BAR = 2_500  # events: a tenth of AWS's 25,000 per execution
STATE_BAR = 64 * 1024  # bytes
# The per-group settings of the run: a short bake keeps the local run short; the model test
# covers AWS's 30-minute refresh with a 5-minute bake.
SETTINGS = {"*": {"minHealthyPercentage": 0, "bakeSeconds": 3}}


def state_types(definition: dict) -> dict:
    """Every state's name -> type, the Distributed Maps' children included."""
    types = {}
    for name, state in definition["States"].items():
        types[name] = state["Type"]
        if "ItemProcessor" in state:
            types.update(state_types(state["ItemProcessor"]))
    return types


def aws_events(history: list, types: dict) -> int:
    """What AWS would record for the states this history entered (no retries): a Lambda task 5
    events, a Distributed Map 4 (its children's are in their own histories), any other state 2,
    plus the execution's start and end."""
    per_type = {"Task": 5, "Map": 4}
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return 2 + sum(per_type.get(types[name], 2) for name in entered)


def largest_state(history: list) -> int:
    return max((len(e["stateExitedEventDetails"].get("output") or "")
                for e in history if "stateExitedEventDetails" in e), default=0)


def run(groups: int, concurrency: int, profile: str = "package", out=print) -> tuple[dict, list]:
    work = Path(tempfile.mkdtemp(prefix="ami-rollout-fleet-"))
    state = launcher.up(work / "run")
    failures = []
    try:
        moto, sfn_endpoint = f"http://127.0.0.1:{state['motoPort']}", f"http://127.0.0.1:{state['sfnPort']}"
        control = f"{moto}/_localaws"
        started = time.monotonic()
        fleet = seed.seed(moto, extra_groups=groups - 3)
        out(f"  seeded {groups:,} groups in {time.monotonic() - started:.0f} s")
        machine = deploy.deploy(sfn_endpoint, moto, {"ASG_CONFIGURATIONS": json.dumps(SETTINGS)}, profile=profile)
        sfn = rollout._client("stepfunctions", sfn_endpoint)
        urllib.request.urlopen(urllib.request.Request(f"{control}/calls", method="DELETE"))
        started = time.monotonic()
        execution = rollout.start(sfn_endpoint, machine, {"amiId": fleet["amis"]["golden"],
                                                          "maxConcurrency": concurrency})
        while (status := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            time.sleep(2)
        wall = time.monotonic() - started
        calls = json.load(urllib.request.urlopen(f"{control}/calls"))
        if status["status"] != "SUCCEEDED":
            failures.append(f"fleet scale: the rollout ended {status['status']}: {status.get('cause')}")

        types = state_types(json.loads((ROOT / "statemachine/rollout.asl.json").read_text()))
        # The targets' children and the lanes' (one per account-region and wave) that run them.
        tree = rollout.Children(sfn, execution)
        tree.poll()
        histories = {"parent": rollout._history(sfn, execution)}
        histories.update({arn: child["events"] for arn, child in tree.known.items()})
        histories.update({arn: rollout._history(sfn, arn) for arn in tree.lanes})
        children = len(tree.known)
        local = max(len(h) for h in histories.values())
        aws = {arn: aws_events(h, types) for arn, h in histories.items()}
        largest = max(largest_state(h) for h in histories.values())
        polls = sum(1 for h in histories.values() for e in h
                    if e["type"] == "TaskScheduled"
                    and e["taskScheduledEventDetails"]["resource"].endswith("check-ecs-health"))
        autoscaling = sum(n for op, n in calls.items() if op in (
            "DescribeAutoScalingGroups", "DescribeInstanceRefreshes"))
        describes = sum(n for op, n in calls.items() if op.startswith(("Describe", "List", "Get")))
        row = {"groups": groups, "maxConcurrency": concurrency, "status": status["status"], "wallSeconds": round(wall),
               "childExecutions": children, "laneExecutions": len(tree.lanes), "largestHistoryLocal": local,
               "largestHistoryAws": max(aws.values()), "parentHistoryAws": aws["parent"],
               "largestStateBytes": largest, "polls": polls,
               "describeCallsPerGroupPerPoll": round(describes / max(polls, 1), 1),
               "autoScalingCallsPerGroupPerPoll": round(autoscaling / max(polls, 1), 1)}
        out(f"  {groups:,} groups, {concurrency} at a time: {status['status']} in {wall:.0f} s; "
            f"{children:,} child executions in {len(tree.lanes)} lanes")
        out(f"  largest history: {local} events here, {row['largestHistoryAws']} as AWS counts "
            f"(the parent: {aws['parent']}); largest state {largest:,} bytes")
        out(f"  {polls:,} polls; {row['describeCallsPerGroupPerPoll']} describe calls per group per poll "
            f"(all the run's describes over the polls), {row['autoScalingCallsPerGroupPerPoll']} of them Auto Scaling")
        if row["largestHistoryAws"] > HISTORY_BAR:
            failures.append(f"fleet scale: a history of {row['largestHistoryAws']} events")
        if largest > STATE_BAR:
            failures.append(f"fleet scale: a state of {largest:,} bytes")
        if children != groups:
            failures.append(f"fleet scale: {children} child executions for {groups} groups")
        return row, failures
    finally:
        launcher.down(work / "run", quiet=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", default="debug",
                        help="which build of the functions to deploy: a cargo profile, or package (make package's zips)")
    args = parser.parse_args()
    row, failures = run(args.groups, args.concurrency, args.profile)
    print(json.dumps(row))
    for failure in failures:
        print(f"missed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
