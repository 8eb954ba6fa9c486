"""The reach-planning row of DESIGN §8: resolve-ami planning N groups spread over 3 workload
accounts x 2 regions (6 account-regions), entered through the workload role, each region on its
own AMI. Reports the describe calls (every read: Describe*, List*, Get*) and the wall time of the
one invocation, against the goal (at most 150 describe calls, at most 30 s on the local AWS).
Timing is reported, never asserted in a test.

  infra/local/.venv/bin/python tests/bench/reach_planning.py --groups 600 [--profile debug]

`make bench` runs it with 5,000 groups on the release binary of `make package`.
"""

import argparse
import json
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "infra/local"))

import boto3  # noqa: E402
from localaws import deploy, launcher, seed  # noqa: E402

import runtime  # noqa: E402

ACCOUNTS = ("111111111111", "222222222222", "444444444444")
REGIONS = ("us-east-1", "eu-west-1")
EXTERNAL_ID = "bench-external-id"
PLANS_BUCKET = "ami-rollout-plans"
DESCRIBE_BAR, SECONDS_BAR = 150, 30


def resolve_ami(profile: str, work: Path) -> list[str]:
    """The resolve-ami binary: the release zip of `make package`, or a cargo profile's build."""
    if profile != "package":
        binary = deploy.target_dir() / profile / "resolve-ami"
        if not binary.exists():
            sys.exit(f"reach_planning: {binary} is missing; run `make build` first")
        return [str(binary)]
    archive = ROOT / "dist/resolve-ami/bootstrap.zip"
    if not archive.exists():
        sys.exit(f"reach_planning: {archive} is missing; run `make package` first")
    zipfile.ZipFile(archive).extractall(work / "resolve-ami")
    (work / "resolve-ami/bootstrap").chmod(0o755)
    return [str(work / "resolve-ami/bootstrap")]


def seed_fleet(endpoint: str, groups: int) -> dict:
    """The reach of seed_reach (web and api in every account-region), plus plain groups up to
    `groups` in all, spread evenly."""
    fleet = seed.seed_reach(endpoint, workloads=ACCOUNTS, regions=REGIONS, external_id=EXTERNAL_ID,
                            without_role=())
    places = [(a, r) for a in ACCOUNTS for r in REGIONS]
    extra = max(groups - 2 * len(places), 0)
    for i, (account, region) in enumerate(places):
        count = extra // len(places) + (1 if i < extra % len(places) else 0)
        c = seed.account_clients(endpoint, region, account)
        vpc, _ = seed.network(c["ec2"], region)
        seed.add_plain_groups(c, vpc, fleet["amis"][region]["current"], count, region)
    return fleet


def run(groups: int, profile: str = "package", out=print) -> tuple[dict, list]:
    work = Path(tempfile.mkdtemp(prefix="ami-rollout-reach-"))
    command = resolve_ami(profile, work)
    # No Step Functions here and the functions are run by hand on the wall clock: moto stamps on it too.
    state = launcher.up(work / "run", ministack=False, clock_rate=1)
    endpoint = f"http://127.0.0.1:{state['motoPort']}"
    control = f"{endpoint}/_localaws"
    failures = []
    try:
        started = time.monotonic()
        fleet = seed_fleet(endpoint, groups)
        boto3.client("s3", endpoint_url=endpoint, region_name=launcher.REGION, aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=PLANS_BUCKET)
        out(f"  seeded {groups:,} groups over {len(ACCOUNTS)} accounts x {len(REGIONS)} regions "
            f"in {time.monotonic() - started:.0f} s")
        env = {f"AWS_ENDPOINT_URL_{s}": endpoint for s in (*launcher.MOTO_SERVICES, "S3")}
        # resolve-ami as deployed: its own role, which the workload roles trust.
        role = deploy.create_roles(endpoint)["resolve-ami"]
        env.update(deploy.assume_as_lambda(endpoint, role, "ami-rollout-resolve-ami"))
        env.update(AWS_REGION=launcher.REGION, AWS_DEFAULT_REGION=launcher.REGION,
                   PLANS_BUCKET=PLANS_BUCKET, HOME_ACCOUNT_ID=fleet["central"],
                   TARGET_ACCOUNTS=",".join(ACCOUNTS), TARGET_REGIONS=",".join(REGIONS),
                   WORKLOAD_EXTERNAL_ID=EXTERNAL_ID)
        urllib.request.urlopen(urllib.request.Request(f"{control}/calls", method="DELETE"))
        event = {"execution": "bench-reach", "trigger": {"amiId": fleet["amis"][REGIONS[0]]["golden"]}}
        invocation = runtime.invoke_cold(command, event, env, timeout=600)
        calls = json.load(urllib.request.urlopen(f"{control}/calls"))
        if not invocation.ok:
            raise RuntimeError(f"resolve-ami refused the plan: {invocation.body}")
        # The fleet's reads; GetObject is the settings document, in the stack's own bucket.
        describes = sum(n for op, n in calls.items()
                        if op.startswith(("Describe", "List", "Get")) and op != "GetObject")
        planned = invocation.body["targetCount"]
        out(f"  {planned:,} groups planned across {len(ACCOUNTS) * len(REGIONS)} account-regions in "
            f"{invocation.seconds:.2f} s with {describes} describe calls "
            f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})")
        if planned != groups:
            failures.append(f"reach planning: {planned} of {groups} groups planned")
        if describes > DESCRIBE_BAR:
            failures.append(f"reach planning: {describes} describe calls (goal {DESCRIBE_BAR})")
        if invocation.seconds > SECONDS_BAR:
            failures.append(f"reach planning: {invocation.seconds:.1f} s (goal {SECONDS_BAR})")
        return {"groups": planned, "seconds": invocation.seconds, "describes": describes, "calls": calls}, failures
    finally:
        launcher.down(work / "run", quiet=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=5000)
    parser.add_argument("--profile", default="package", help='"package" (dist/ zips) or a cargo profile')
    args = parser.parse_args()
    print(f"Planning {args.groups:,} groups across 6 account-regions "
          f"(goal: at most {DESCRIBE_BAR} describe calls, {SECONDS_BAR} s)")
    _, failures = run(args.groups, args.profile)
    print("\n" + ("goal met" if not failures else "missed:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
