"""The numbers of DESIGN §8, measured on this machine against a private local AWS (`make bench`).

1. Zip size of each function (from `make package`).
2. Cold start: each release `bootstrap` started fresh for one invocation (process start → clients
   ready → AWS calls → response posted) and its peak memory; for resolve-ami and check-ecs-health
   also a Python/boto3 function making the same calls (python_function.py, run by awslambdaric as
   Lambda's Python runtime runs it), checked call for call.
3. Planning 1,000 groups: resolve-ami selecting 1,000 tagged groups of a freshly seeded fleet;
   describe calls, time, the state's size and the plan objects' (moto serves S3 here).
4. Planning 5,000 groups across 3 accounts x 2 regions (reach_planning.py).
5. Fleet scale: 1,000 groups rolled out end to end on the local AWS (fleet_scale.py).

Prints a table; exits 1 if a number misses its target. Timing is measured here, never asserted
in a test.
"""

import json
import statistics
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

import fleet_scale  # noqa: E402
import reach_planning  # noqa: E402
import runtime  # noqa: E402

FUNCTIONS = ("resolve-ami", "update-template", "start-refresh", "check-ecs-health", "rollback")
# Every zip `make package` builds (the cold-start rows measure the functions above).
ZIPS = (*FUNCTIONS, "hold-targets", "distribute-ami")
ZIP_LIMIT = 6_000_000  # bytes; the strict reading of "6 MB"
RUNS = 9
GROUPS = 1000
PLANS_BUCKET = "ami-rollout-plans"


class LocalAws:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.control = f"{endpoint}/_localaws"
        self.env = {f"AWS_ENDPOINT_URL_{s}": endpoint for s in (*launcher.MOTO_SERVICES, "S3")}
        self.env.update(AWS_REGION=launcher.REGION, AWS_DEFAULT_REGION=launcher.REGION,
                        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                        PLANS_BUCKET=PLANS_BUCKET)
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=launcher.REGION,
                               aws_access_key_id="testing", aws_secret_access_key="testing")

    def plans_bucket(self) -> None:
        """The plans bucket, made again after every reset (moto serves S3 here)."""
        self.s3.create_bucket(Bucket=PLANS_BUCKET)

    def object(self, key: str):
        """A plan object, parsed, and its size in bytes."""
        body = self.s3.get_object(Bucket=PLANS_BUCKET, Key=key)["Body"].read()
        return json.loads(body), len(body)

    def calls(self) -> dict:
        """AWS calls since the last look, by operation."""
        seen = json.load(urllib.request.urlopen(f"{self.control}/calls"))
        urllib.request.urlopen(urllib.request.Request(f"{self.control}/calls", method="DELETE"))
        return seen


def unpack(dist: Path, into: Path) -> dict:
    commands = {}
    for name in FUNCTIONS:
        archive = dist / name / "bootstrap.zip"
        if not archive.exists():
            sys.exit(f"bench: {archive} is missing; run `make package` first")
        zipfile.ZipFile(archive).extractall(into / name)
        (into / name / "bootstrap").chmod(0o755)
        commands[name] = [str(into / name / "bootstrap")]
    return commands


def measure(aws, command, event, env, runs=RUNS, refused=False):
    """Median time and peak memory of `runs` cold invocations, and the calls the first one made
    (the one that did the work: later ones of a mutating step find it done)."""
    aws.calls()
    results, calls = [], None
    for _ in range(runs):
        invocation = runtime.invoke_cold(command, event, {**aws.env, **env})
        if invocation.ok == refused:
            raise RuntimeError(f"{command[-1]} answered {'ok' if invocation.ok else 'an error'}: {invocation.body}")
        results.append(invocation)
        calls = calls if calls is not None else aws.calls()
    return {"seconds": statistics.median(r.seconds for r in results),
            "peakMiB": statistics.median(r.peak_rss_kib for r in results) / 1024,
            "calls": calls, "body": results[-1].body}


def until_refresh_succeeded(aws, command, run, env):
    for _ in range(600):
        out = runtime.invoke_cold(command, run, {**aws.env, **env}).body
        if out.get("health", {}).get("refreshStatus") == "Successful":
            return out
        time.sleep(0.2)
    raise TimeoutError("the refresh did not succeed")


def main() -> int:
    dist = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"
    work = Path(tempfile.mkdtemp(prefix="ami-rollout-bench-"))
    rust = unpack(dist, work)
    python = [str(HERE / ".venv/bin/python"), "-m", "awslambdaric", "python_function.handler"]
    python_env = {"PYTHONPATH": str(HERE), "LAMBDA_TASK_ROOT": str(HERE)}
    # No Step Functions here and the functions are run by hand on the wall clock: moto stamps on it too.
    state = launcher.up(work / "run", ministack=False, clock_rate=1)
    failures = []
    try:
        aws = LocalAws(f"http://127.0.0.1:{state['motoPort']}")
        fleet = seed.seed(aws.endpoint)
        aws.plans_bucket()
        settings = {"*": {"minHealthyPercentage": 50, "bakeSeconds": 3, "alarmNames": ["prod-api-errors"]}}
        aws.s3.put_object(Bucket=PLANS_BUCKET, Key="settings/settings.json", Body=json.dumps(settings))
        # Each function as deployed: its own role's session (the Python baseline runs with the same).
        roles = deploy.create_roles(aws.endpoint)
        env = {name: deploy.assume_as_lambda(aws.endpoint, arn, f"ami-rollout-{name}") for name, arn in roles.items()
               if name in deploy.FUNCTIONS}

        print("\nZip size (limit 6,000,000 bytes)")
        for name in ZIPS:
            size = (dist / name / "bootstrap.zip").stat().st_size
            print(f"  {name:<18} {size:>10,} bytes {'ok' if size <= ZIP_LIMIT else 'OVER'}")
            if size > ZIP_LIMIT:
                failures.append(f"{name} zip {size:,} bytes")

        print(f"\nCold start, median of {RUNS} (process start → response posted), peak RSS")
        trigger = {"execution": "bench", "trigger": {"amiId": fleet["amis"]["golden"], "targets": ["ecs-prod-capacity"]}}
        rows = {"resolve-ami": measure(aws, rust["resolve-ami"], trigger, env["resolve-ami"])}
        plan = rows["resolve-ami"]["body"]
        # A wave's object lists its lanes (one per account-region); a lane's, its targets.
        [lane], _ = aws.object(plan["waves"][0]["key"])
        [target], _ = aws.object(lane["key"])
        run = {"execution": "bench", "executionStartTime": "2026-01-01T00:00:00Z", "ami": plan["ami"],
               "settings": plan["settings"], "target": target}
        rows["update-template"] = measure(aws, rust["update-template"], {"action": "createVersion", "run": run}, env["update-template"])
        run = rows["update-template"]["body"]
        rows["start-refresh"] = measure(aws, rust["start-refresh"], run, env["start-refresh"])
        checked = until_refresh_succeeded(aws, rust["check-ecs-health"], rows["start-refresh"]["body"],
                                          env["check-ecs-health"])
        rows["check-ecs-health"] = measure(aws, rust["check-ecs-health"], checked, env["check-ecs-health"])
        baseline = {
            name: measure(aws, python, event, {**env[name], **python_env, "BENCH_FUNCTION": name})
            for name, event in (("resolve-ami", trigger), ("check-ecs-health", checked))
        }
        # What the language costs by itself: init (runtime, config, five clients) and one answer, no
        # AWS call (our function refuses the empty event; the Python one returns at once).
        rows["no AWS call"] = measure(aws, rust["check-ecs-health"], {}, env["check-ecs-health"], refused=True)
        baseline["no AWS call"] = measure(aws, python, {}, {**env["check-ecs-health"], **python_env,
                                                             "BENCH_FUNCTION": "none"})
        rows["rollback"] = measure(aws, rust["rollback"], {"action": "converge", "run": run}, env["rollback"])
        print(f"  {'function':<18} {'Rust':>9} {'Python':>9} {'ratio':>7} {'Rust MiB':>9} {'Py MiB':>7} {'ratio':>6}  calls")
        for name in (*FUNCTIONS, "no AWS call"):
            r, p = rows[name], baseline.get(name)
            line = f"  {name:<18} {r['seconds'] * 1000:7.0f}ms"
            if p:
                time_ratio, memory_ratio = r["seconds"] / p["seconds"], r["peakMiB"] / p["peakMiB"]
                line += (f" {p['seconds'] * 1000:7.0f}ms {time_ratio:7.3f} {r['peakMiB']:9.1f} "
                         f"{p['peakMiB']:7.1f} {memory_ratio:6.2f}")
                if r["calls"] != p["calls"]:
                    failures.append(f"{name}: Python made {p['calls']}, Rust {r['calls']}")
                if time_ratio > 0.1:
                    failures.append(f"{name}: cold start {time_ratio:.3f} of Python's (target 0.1)")
                if memory_ratio > 0.25:
                    failures.append(f"{name}: peak memory {memory_ratio:.2f} of Python's (target 0.25)")
            else:
                line += f" {'':>9} {'':>7} {r['peakMiB']:9.1f} {'':>7} {'':>6}"
            print(f"{line}  {sum(r['calls'].values())} ({', '.join(f'{k} {v}' for k, v in sorted(r['calls'].items()))})")
        for name in ("resolve-ami", "check-ecs-health"):
            n = sum(rows[name]["calls"].values())
            per_call = [(side[name]["seconds"] - side["no AWS call"]["seconds"]) / n * 1000 for side in (rows, baseline)]
            print(f"  {name}: {per_call[0]:.1f} ms per AWS call in Rust, {per_call[1]:.1f} ms in Python "
                  f"(mostly the local AWS answering; it closes the connection after every answer)")

        print(f"\nPlanning {GROUPS:,} groups on a fresh fleet (targets: at most 25 describe calls, 10 s)")
        started = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(f"{aws.control}/reset", data=b"{}", method="POST"))
        fleet = seed.seed(aws.endpoint, extra_groups=GROUPS - 3)  # the three main groups + plain ones
        aws.plans_bucket()
        aws.s3.put_object(Bucket=PLANS_BUCKET, Key="settings/settings.json", Body=json.dumps(settings))
        print(f"  seeded in {time.monotonic() - started:.0f} s")
        planned = measure(aws, rust["resolve-ami"], {"execution": "bench-1000", "trigger": {"amiId": fleet["amis"]["golden"]}},
                          env["resolve-ami"], runs=1)
        # The fleet's reads; GetObject is the settings document, in the stack's own bucket.
        describes = sum(n for op, n in planned["calls"].items()
                        if op.startswith(("Describe", "List", "Get")) and op != "GetObject")
        groups = planned["body"]["targetCount"]
        state = len(json.dumps(planned["body"]))
        objects = aws.object(planned["body"]["key"])[1]
        for wave in planned["body"]["waves"]:
            lanes, size = aws.object(wave["key"])
            objects += size + sum(aws.object(lane["key"])[1] for lane in lanes)
        print(f"  {groups:,} groups planned in {planned['seconds']:.2f} s with {describes} describe calls "
              f"({', '.join(f'{k} {v}' for k, v in sorted(planned['calls'].items()))}); "
              f"state {state:,} bytes, plan objects {objects:,} bytes")
        if describes > 25:
            failures.append(f"planning: {describes} describe calls")
        if planned["seconds"] > 10:
            failures.append(f"planning: {planned['seconds']:.1f} s")
    finally:
        launcher.down(work / "run", quiet=True)
    print(f"\nPlanning 5,000 groups across 6 account-regions (targets: at most {reach_planning.DESCRIBE_BAR} "
          f"describe calls, {reach_planning.SECONDS_BAR} s)")
    _, missed = reach_planning.run(5000, profile="package")
    failures += missed
    print(f"\nFleet scale: {GROUPS:,} groups end to end on the local AWS (release zips; histories under "
          f"{fleet_scale.HISTORY_BAR:,} events as AWS counts them, states under 64 KiB)")
    _, missed = fleet_scale.run(GROUPS, concurrency=50, profile="package")
    failures += missed
    print("\n" + ("all §8 targets met" if not failures else "missed:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
