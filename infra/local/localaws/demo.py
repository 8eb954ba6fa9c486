"""The main job: a rollout on the local AWS, then a rollout of a bad AMI and its automatic
rollback, both started as a user starts them, by writing the SSM parameter (the local EventBridge
bus turns the write into the template's Parameter Store Change rule's execution), and followed
live with the operator CLI's `ami-rollout watch`, as an operator would follow them against AWS.
The first waits after its canary wave for an approval (an approver reads the approvals topic and
runs `ami-rollout approve`), and one group of its second wave waits for its maintenance window.
At the end, what the status topic told its subscribers.

`--svg PATH` also saves the first rollout's watch as an SVG picture of the terminal (rich's
recording console draws it from the very text the CLI printed): the README's picture.

Exits 0 only when the first execution SUCCEEDED with every group on the golden AMI and the
second FAILED with RolloutFailed with every group back on the golden AMI.
"""

import argparse
import datetime
import json
import math
import os
import sys
import threading
import time

from . import cli, clock, deploy, launcher, rollout, seed

# The demo's configuration, passed as the SAM template would pass it: `web` is the canary wave,
# the ECS groups follow; batches of half a group; a short bake so the demo stays short.
ASG_CONFIGURATIONS = {
    "*": {"wave": 2, "minHealthyPercentage": 50, "bakeSeconds": 5},
    "web": {"wave": 1, "alarmNames": ["web-5xx"]},
    "ecs-prod-capacity": {"alarmNames": ["prod-api-errors"]},
}


# The demo's calendar runs 20 times the wall clock (clock.py), so a maintenance window a few
# minutes away opens within seconds.
CLOCK_RATE = "20"


def with_change_control(settings: dict) -> dict:
    """The demo's settings, with the canary's wave gated by an approval and the batch capacity
    given a maintenance window that opens about twenty wall-clock seconds from now."""
    lead = 20 * clock.setting()[1]
    opens = datetime.datetime.fromtimestamp(math.ceil((clock.now() + lead) / 60) * 60, datetime.timezone.utc)
    window = {"cron": f"{opens.minute} {opens.hour} * * *", "durationMinutes": 120, "timeZone": "UTC"}
    return {**settings, "web": {**settings["web"], "approveAfterWave": True},
            "ecs-batch-capacity": {**settings.get("ecs-batch-capacity", {}), "maintenanceWindow": window}}


def approve_when_asked(moto: str, sfn: str, execution: str) -> threading.Thread:
    """An approver: reads the gate's message on the approvals topic, then `ami-rollout approve`."""
    def approve():
        deadline = time.time() + 300
        while time.time() < deadline:
            told = deploy.approval_messages(sfn)
            if told:
                print("\n  [approvals topic] " + told[0].replace("\n", "\n  [approvals topic] "), flush=True)
                code, out, err = cli.run(moto, sfn, "approve", execution)
                print(f"  $ ami-rollout approve {execution.rsplit(':', 1)[-1]}\n  {(out or err).strip()}", flush=True)
                return
            time.sleep(0.5)
    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 90 - len(text)), flush=True)


def group_amis(control: str) -> dict:
    view = rollout.fleet(control)
    return {g: sorted({i["imageId"] for i in v["instances"]}) for g, v in view["groups"].items()}


def watch(moto: str, sfn: str, execution: str, svg: str | None = None) -> dict:
    """`ami-rollout watch` until the execution ends; its status and error as Step Functions says."""
    _, lines = cli.follow(moto, sfn, "watch", execution, "--interval", "0.5")
    if svg:
        save_svg(lines, svg, execution.rsplit(":", 1)[-1])
    described = deploy.clients(sfn)[1].describe_execution(executionArn=execution)
    return {"status": described["status"], "error": described.get("error")}


def save_svg(lines: list[str], path: str, title: str) -> None:
    from rich.console import Console
    from rich.text import Text
    console = Console(record=True, width=140, file=open("/dev/null", "w"), force_terminal=True)
    console.print(Text.from_ansi(f"$ ami-rollout watch {title}\n" + "\n".join(lines)))
    console.save_svg(path, title=f"ami-rollout watch {title}")
    print(f"  saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m localaws.demo")
    parser.add_argument("--svg", help="save the first rollout's watch as an SVG picture here")
    args = parser.parse_args()
    started_here = launcher.read_state(launcher.DEFAULT_RUN_DIR) is None
    t0 = time.time()
    os.environ.setdefault("LOCALAWS_CLOCK_RATE", CLOCK_RATE)
    state = launcher.up(launcher.DEFAULT_RUN_DIR)
    moto = f"http://127.0.0.1:{state['motoPort']}"
    sfn = f"http://127.0.0.1:{state['sfnPort']}"
    control = f"{moto}/_localaws"
    ok = False
    try:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{control}/reset", data=b"{}", method="POST"))
        banner("Seeding the fleet")
        fleet = seed.seed(moto)
        for key, group in fleet["groups"].items():
            print(f"  {group['name']:<20} launch template {group['launchTemplateId']} version 1, AMI {fleet['amis']['current']}")
        print(f"  SSM /ami/linux/prod = {fleet['amis']['current']}; clusters prod, batch; alarms {', '.join(fleet['alarms'])}")
        banner("Deploying the functions, the state machine, its rules and the status topic to the local AWS")
        # Seeding wrote the parameter: the rules that start rollouts come after it.
        urllib.request.urlopen(urllib.request.Request(f"{control}/events-flush", data=b"{}", method="POST"))
        machine = deploy.deploy(sfn, moto, {"ASG_CONFIGURATIONS": json.dumps(ASG_CONFIGURATIONS)}, triggers=True)
        print(f"  {machine}")
        deploy.status_messages(sfn)

        golden, bad = fleet["amis"]["golden"], fleet["amis"]["bad"]
        deploy.approval_messages(sfn)
        # The window is counted from now, so it opens while the rollout runs.
        settings = with_change_control(ASG_CONFIGURATIONS)
        deploy.configure(sfn, moto, {"ASG_CONFIGURATIONS": json.dumps(settings)})
        window = settings["ecs-batch-capacity"]["maintenanceWindow"]
        banner(f"1. aws ssm put-parameter /ami/linux/prod {golden} (golden) — Parameter Store Change → rollout")
        print(f"  the canary wave (web) waits for an approval; ecs-batch-capacity waits for its maintenance window "
              f"({window['cron']} UTC, on the demo's calendar: {clock.setting()[1]:g}x the wall clock)")
        execution = rollout.write_parameter(sfn, moto, machine, "/ami/linux/prod", golden)
        approver = approve_when_asked(moto, sfn, execution)
        first = watch(moto, sfn, execution, args.svg)
        approver.join(timeout=5)
        first_ok = first["status"] == "SUCCEEDED" and all(a == [golden] for a in group_amis(control).values())

        banner(f"2. aws ssm put-parameter /ami/linux/prod {bad} (instances on it never pass health checks)")
        urllib.request.urlopen(urllib.request.Request(
            f"{control}/bad-ami", data=json.dumps({"imageId": bad, "mode": "boot"}).encode(), method="POST"))
        execution = rollout.write_parameter(sfn, moto, machine, "/ami/linux/prod", bad)
        second = watch(moto, sfn, execution)
        second_ok = (second["status"] == "FAILED" and second["error"] == "RolloutFailed"
                     and all(a == [golden] for a in group_amis(control).values()))

        banner("What the status topic told its subscribers")
        time.sleep(1)
        for message in deploy.status_messages(sfn):
            print("  " + message.replace("\n", "\n  "))

        banner("Outcome")
        print(f"  rollout of the golden AMI: {first['status']} — {'as expected' if first_ok else 'NOT as expected'}")
        print(f"  rollout of the bad AMI:    {second['status']} {second['error'] or ''} — fleet back on "
              f"{golden}: {'as expected' if second_ok else 'NOT as expected'}")
        print(f"  demo wall time (after the build): {time.time() - t0:.0f} s")
        ok = first_ok and second_ok
    finally:
        if started_here:
            launcher.down(launcher.DEFAULT_RUN_DIR)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
