"""Each function's timeout covers twice its worst case at AWS's latencies, and the docs' table
says what the template sets (docs/numbers.md, "Function timeouts"). The local AWS answers in a few ms, so no
local run can show a timeout that is too short on AWS; this arithmetic must.

Latencies assumed (per call, with its share of SDK retries): 200 ms for a control-plane call (EC2,
Auto Scaling, ECS, KMS, CloudWatch, SSM; another region's endpoint included), 1 s for an AssumeRole
(a new session and its first connections), 50 ms for the stack's own bucket, 20 ms for its table.
Sizes: MAX_TARGETS (5,000) targets over 100 account-regions in 10 waves, an ECS cluster at its
services quota (5,000), 1,000 container instances behind a group. Calls are counted as if made
one after the other. Run with infra/check's venv: make validate.
"""

import math
import re
import unittest
from pathlib import Path

from policies import load

NUMBERS = Path(__file__).resolve().parents[2] / "docs/numbers.md"
LATENCY = {"aws": 0.2, "assume": 1.0, "s3": 0.05, "dynamodb": 0.02}
TARGETS, ACCOUNT_REGIONS, WAVES, SERVICES, CONTAINER_INSTANCES = 5_000, 100, 10, 5_000, 1_000
LANES = WAVES * ACCOUNT_REGIONS * 2  # a lane: one account-region and kind (groups, instances) of a wave

# The worst case of each function's one invocation, in calls of each kind.
WORST_CASE = {
    # Planning: per account-region a session, two DescribeImages, DescribeInstances, ListClusters,
    # the key's DescribeKey and ListGrants; pages of 100 groups and of 100 template heads; the
    # plan, each wave and each lane written once.
    "resolve-ami": {"assume": ACCOUNT_REGIONS, "aws": ACCOUNT_REGIONS * 6 + 2 * math.ceil(TARGETS / 100) + ACCOUNT_REGIONS,
                    "s3": 1 + WAVES + LANES},
    # One poll of a group: its refresh, the group, its alarms, the container instances (list and
    # describe, 100 a page), the services (100 a page listed, 10 a call described), and each
    # service's stopped tasks (listed and described: two rounds, made at once).
    "check-ecs-health": {"assume": 1, "aws": 3 + 2 * math.ceil(CONTAINER_INSTANCES / 100)
                         + math.ceil(SERVICES / 100) + math.ceil(SERVICES / 10) + 2},
    # One target: the hold and the wave's stop, the group, its template, a version made, the
    # refresh or root replacement with an ECS drain.
    "update-template": {"assume": 1, "aws": 10, "dynamodb": 2},
    "start-refresh": {"assume": 1, "aws": 15, "dynamodb": 2},
    # Planning the rollback or summing it up reads every lane's results (the Map Run's manifest
    # and its results file); rolling one target back is a few calls.
    "rollback": {"s3": 2 * LANES + WAVES, "aws": 20, "assume": 1},
    # A copy into each region (CopyImage, tags, launch permission and a key grant per account,
    # the availability read), in the home account.
    "distribute-ami": {"aws": ACCOUNT_REGIONS * 5},
    # Takes every hold of the plan in one call: a conditional write and its record per target, the
    # hold tag on 20 groups a call, a session per account-region.
    "hold-targets": {"dynamodb": 2 * TARGETS, "aws": math.ceil(TARGETS / 20), "assume": ACCOUNT_REGIONS},
}
LAMBDA_MAX = 900


def worst_seconds(calls: dict) -> float:
    return sum(LATENCY[kind] * count for kind, count in calls.items())


class Timeouts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template = load()
        default = template["Globals"]["Function"]["Timeout"]
        cls.timeouts = {r["Properties"]["FunctionName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"):
                        r["Properties"].get("Timeout", default)
                        for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"}

    def test_every_function_is_sized(self):
        self.assertEqual(sorted(self.timeouts), sorted(WORST_CASE))

    def test_each_timeout_is_twice_the_worst_case_and_within_lambdas_limit(self):
        for name, calls in WORST_CASE.items():
            with self.subTest(function=name):
                needed = 2 * worst_seconds(calls)
                self.assertLessEqual(needed, LAMBDA_MAX, "page the work: it cannot fit one invocation")
                self.assertGreaterEqual(self.timeouts[name], needed)
                self.assertLessEqual(self.timeouts[name], LAMBDA_MAX)

    def test_the_readme_says_what_the_template_sets(self):
        text = NUMBERS.read_text()
        section = text[text.index("### Function timeouts"):]
        section = section[:section.index("\n#")]
        rows = dict(re.findall(r"^\| (\S+) \|.*\| (\d+) s \|$", section, re.MULTILINE))
        self.assertEqual({name: int(seconds) for name, seconds in rows.items()}, self.timeouts)
        for name, calls in WORST_CASE.items():
            self.assertIn(f"| {name} | {round(worst_seconds(calls))} s |", section, name)


if __name__ == "__main__":
    unittest.main()
