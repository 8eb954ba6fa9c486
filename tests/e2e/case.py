"""What every end-to-end class shares: its own local AWS on free ports, on the suite's calendar
clock, with ami-rollout deployed; each scenario's run time; and, when a scenario fails, what an
operator would look at first (the tail of the histories of the executions it started, and the
local AWS's log lines written while it ran).

One clock for the whole suite (localaws/clock.py): the local AWS's calendar runs CLOCK_RATE times
the wall clock, the rate at which its Step Functions shortens Wait states, and the functions read
the same clock. A bake of 60 s, a poll of 30 s, an hour's Wait and a refresh timeout all take a
twentieth of their time on the wall, and keep their order and meaning.
"""

import json
import re
import shutil
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra/local"))

from localaws import deploy, launcher  # noqa: E402


def post(url, body):
    return json.load(urllib.request.urlopen(urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST")))

CLOCK_RATE = 20
HISTORY_TAIL = 12  # events of each execution's history shown for a failing scenario
LOG_TAIL = 40  # lines of each local AWS log shown for a failing scenario
ANSWERED = re.compile(r'"[A-Z]+ \S+ HTTP/1\.1" 2\d\d ')  # an access log line of a request that succeeded


class LocalAwsCase(unittest.TestCase):
    """A local AWS for the class's scenarios; subclasses deploy into it (`deployed`)."""

    RUN_DIR_PREFIX = "ami-rollout-e2e-"

    @classmethod
    def setUpClass(cls):
        cls.run_dir = Path(tempfile.mkdtemp(prefix=cls.RUN_DIR_PREFIX))
        state = launcher.up(cls.run_dir, clock_rate=CLOCK_RATE, quiet=True)
        cls.moto = f"http://127.0.0.1:{state['motoPort']}"
        cls.sfn = f"http://127.0.0.1:{state['sfnPort']}"
        cls.control = f"{cls.moto}/_localaws"
        cls.sfn_client = deploy.clients(cls.sfn)[1]
        try:
            cls.deployed()
        except BaseException:
            launcher.down(cls.run_dir, quiet=True)
            raise

    @classmethod
    def deployed(cls):
        """Deploys ami-rollout into the class's local AWS; sets cls.machine."""
        raise NotImplementedError

    @classmethod
    def tearDownClass(cls):
        launcher.down(cls.run_dir, quiet=True)
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    def setUp(self):
        self.started = time.time()
        self.log_offsets = {log.name: log.stat().st_size for log in self.logs()}

    def tearDown(self):
        # Each scenario's run time, for the record (timing is never asserted; pytest prints it too).
        print(f"  [{type(self).__name__}.{self._testMethodName}: {time.time() - self.started:.1f} s]",
              file=sys.stderr)

    def reset(self):
        """The local AWS as a scenario finds it: no execution of an earlier scenario still running
        (it would act on the fleet seeded next), then moto's backends and the extensions' state
        (fleet, faults, bad AMIs, alarms, clocks of refreshes and copies) emptied, and an empty
        holds table. The functions, the state machine and the rules stay deployed."""
        stopped = [e["executionArn"] for e in self.sfn_client.list_executions(
            stateMachineArn=self.machine, statusFilter="RUNNING")["executions"]]
        for arn in stopped:
            self.sfn_client.stop_execution(executionArn=arn, error="ScenarioEnded",
                                           cause="the scenario that started it ended")
        self.wait_for_releases(stopped)
        post(f"{self.control}/reset", {})
        deploy.create_holds_table(self.moto)

    def wait_for_releases(self, executions, timeout=20.0):
        """A stopped execution's holds are released by its status event, asynchronously (as on
        AWS): wait until each release has ended (its record marked, no target held by it, no AMI
        relying on it), so that none of it lands in the next scenario's table."""
        dynamodb = deploy._client("dynamodb", self.moto)
        deadline = time.time() + timeout

        def released(items, arn):
            marked = any(i["key"]["S"] == f"execution#{arn}" and "released" in i for i in items)
            held = any(i.get("holder", {}).get("S") == arn or arn in i.get("users", {}).get("SS", [])
                       for i in items)
            return marked and not held

        while executions and time.time() < deadline:
            items = dynamodb.scan(TableName=deploy.HOLDS_TABLE)["Items"]
            if all(released(items, arn) for arn in executions):
                return
            time.sleep(0.1)

    def logs(self):
        return sorted(self.run_dir.glob("*.log"))

    def diagnostics(self) -> str:
        """The executions this scenario started, each with the tail of its history, and the
        lines the local AWS logged while it ran."""
        out = []
        since = getattr(self, "started", 0)
        executions = self.sfn_client.list_executions(stateMachineArn=self.machine)["executions"]
        for e in executions:
            if e["startDate"].timestamp() < since - 1 and e["status"] != "RUNNING":
                continue
            described = self.sfn_client.describe_execution(executionArn=e["executionArn"])
            out.append(f"execution {e['executionArn']}: {described['status']} "
                       f"{described.get('error') or ''} {(described.get('cause') or '')[:600]}")
            history = self.sfn_client.get_execution_history(executionArn=e["executionArn"], maxResults=1000,
                                                            reverseOrder=True)["events"][:HISTORY_TAIL]
            for event in reversed(history):
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                said = {k: details[k] for k in ("name", "resource", "error", "cause") if k in details}
                out.append(f"  {event['id']:>4} {event['type']:<28} {json.dumps(said)[:400]}")
        for log in self.logs():
            with open(log, errors="replace") as f:
                f.seek(self.log_offsets.get(log.name, 0))
                lines = [line for line in f.read().splitlines() if not ANSWERED.search(line)][-LOG_TAIL:]
            out.append(f"--- {log.name}: its last {len(lines)} lines of this scenario (answered requests left out)")
            out += lines
        return "\n".join(out)

