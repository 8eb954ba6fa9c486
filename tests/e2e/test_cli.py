"""End to end: the operator CLI `ami-rollout` (the debug binary) against the local AWS, through
the endpoint variables a user would set (never the control endpoint): `plan` shows the waves and
targets the execution then runs, `start` refuses what the function would refuse before anything
starts, `watch --output json` reports every target's end, `undo` brings a rolled-out fleet back
to its rollback points and refuses by name a target changed since, `drift` names exactly the
targets off the approved AMI and exits 6, and the scheduled check puts the same counts as metrics.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_cli   (make e2e runs it)
"""

import json
import subprocess
import sys
import unittest
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra/local"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from localaws import cli, clock, deploy, launcher, rollout  # noqa: E402
from tests.e2e.case import post  # noqa: E402
from tests.e2e.test_rollout import Harness  # noqa: E402


class OperatorCli(Harness):
    def cli(self, *args, timeout=300):
        return cli.run(self.moto, self.sfn, *args, timeout=timeout)

    def json_lines(self, text):
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def executions(self):
        return self.sfn_client.list_executions(stateMachineArn=self.machine)["executions"]

    def test_plan_shows_the_waves_the_execution_then_runs_and_watch_reports_every_target(self):
        before = len(self.executions())
        code, out, err = self.cli("--output", "json", "plan", "--ami-id", self.golden)
        self.assertEqual(code, 0, err)
        planned = [[t["group"] for t in wave] for wave in json.loads(out)["plan"]["waves"]]
        self.assertEqual(planned, [["web"], sorted(g for g in self.groups if g != "web")])
        self.assertEqual(len(self.executions()), before, "plan started nothing")
        self.assertEqual(self.amis("web"), [self.current] * len(self.amis("web")), "plan changed nothing")

        code, out, err = self.cli("--output", "json", "start", "--ami-id", self.golden, "--watch",
                                  "--interval", "0.3")
        self.assertEqual(code, 0, err)
        lines = self.json_lines(out)
        plan_line = next(line for line in lines if line["type"] == "plan")
        self.assertEqual(plan_line["waves"], planned)
        ends = {line["target"]: line for line in lines if line["type"] == "targetEnd"}
        self.assertEqual(sorted(ends), sorted(self.groups))
        self.assertTrue(all(e["outcome"] == "rolled out" for e in ends.values()), ends)
        end = lines[-1]
        self.assertEqual((end["type"], end["status"]), ("end", "SUCCEEDED"))
        self.assertEqual({t["target"]: t["amisNow"] for t in end["targets"]},
                         {g: [self.golden] for g in self.groups})
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)

    def test_start_refuses_a_malformed_start_with_the_functions_message_and_starts_nothing(self):
        settings = json.dumps({"web": {"minHealthyPercentage": 500}})
        before = len(self.executions())
        code, out, err = self.cli("start", "--ami-id", self.golden, "--settings", settings)
        self.assertEqual(code, 3, out)
        self.assertEqual(len(self.executions()), before, "nothing started")
        self.assertIn("InvalidInput", err)
        message = err.strip().split("InvalidInput: ", 1)[1]
        # The same start given to the state machine directly fails its first step with that message.
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "settings": json.loads(settings)})
        result = self.watch(execution)
        self.assertEqual(result["status"], "FAILED")
        self.assertIn(message, result["cause"])
        self.assert_untouched()

    def test_the_cli_runs_as_the_operator_role_and_is_refused_what_it_does_not_grant(self):
        # Every command runs with the template's OperatorRole: without its StartExecution
        # statement, start is refused by name and starts nothing; plan (reads only) still runs.
        deploy.create_roles(self.moto, without={deploy.OPERATOR_ROLE: "states:StartExecution"})
        try:
            before = len(self.executions())
            code, _, err = self.cli("start", "--ami-id", self.golden)
            self.assertNotEqual(code, 0)
            self.assertIn("assumed-role/ami-rollout-OperatorRole/", err)
            self.assertIn("is not authorized to perform: states:StartExecution", err)
            self.assertEqual(len(self.executions()), before, "nothing started")
            code, _, err = self.cli("plan", "--ami-id", self.golden)
            self.assertEqual(code, 0, err)
        finally:
            deploy.create_roles(self.moto)
        self.assert_untouched()

    def test_settings_are_validated_put_shown_and_the_next_plan_uses_them(self):
        bad, good = Path(self.run_dir) / "bad.json", Path(self.run_dir) / "good.json"
        bad.write_text(json.dumps({"web": {"minHealthyPercentage": 500}}))
        good.write_text(json.dumps({"*": {"wave": 2, "bakeSeconds": 5}, "api-canary": {"wave": 1}}))
        code, _, err = self.cli("settings", "validate", str(bad))
        self.assertEqual(code, 3)
        self.assertIn("minHealthyPercentage", err)
        code, _, err = self.cli("settings", "put", str(bad))
        self.assertEqual(code, 3, "refused before anything is sent")
        code, out, err = self.cli("--output", "json", "settings", "show")
        self.assertEqual((code, json.loads(out)["settings"]["web"]), (0, {"wave": 1}), err)  # still the harness's
        code, out, err = self.cli("--output", "json", "settings", "put", str(good))
        self.assertEqual(code, 0, err)
        version = json.loads(out)["version"]
        code, out, err = self.cli("--output", "json", "settings", "show")
        shown = json.loads(out)
        self.assertEqual((shown["version"], shown["settings"]["*"]["bakeSeconds"]), (version, 5), err)
        # The next plan reads them: every group in wave 2, none named in wave 1.
        code, out, err = self.cli("--output", "json", "plan", "--ami-id", self.golden)
        self.assertEqual(code, 0, err)
        self.assertEqual([[t["group"] for t in w] for w in json.loads(out)["plan"]["waves"]], [sorted(self.groups)])

    def test_drift_names_exactly_the_targets_off_the_approved_ami_and_exits_6(self):
        code, out, err = self.cli("start", "--ami-id", self.golden, "--target", "web", "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        code, out, err = self.cli("--output", "json", "drift", "--ami-id", self.golden)
        self.assertEqual(code, 6, err)
        report = json.loads(out)
        self.assertEqual(sorted(d["target"] for d in report["drifted"]), sorted(g for g in self.groups if g != "web"))
        self.assertTrue(all(d["amis"] == [self.current] and d["ageDays"] is not None for d in report["drifted"]))
        self.assertEqual(report["checked"], len(self.groups))

        code, out, err = self.cli("drift", "--ami-id", self.current, "--format", "csv")
        self.assertEqual(code, 6, err)
        self.assertEqual([row.split(",")[0] for row in out.splitlines()[1:]], ["web"])

        # The seed's parameter still holds the AMI the fleet ran before: web is the one off it.
        code, out, err = self.cli("drift", "--parameter-name", "/ami/linux/prod")
        self.assertEqual(code, 6, out + err)
        self.assertIn(f"approved in {launcher.REGION}: {self.current}", out)
        self.assertIn(f"1 of {len(self.groups)} target(s) not on the approved AMI", out)

        # The template's schedule invokes resolve-ami with the same check, which puts the counts.
        lam = deploy.clients(self.sfn)[0]
        answer = lam.invoke(FunctionName="ami-rollout-resolve-ami", Payload=json.dumps(
            {"driftCheck": {"parameterName": "/ami/linux/prod"}}).encode())
        scheduled = json.loads(answer["Payload"].read())
        self.assertEqual([d["target"] for d in scheduled["drifted"]], ["web"], scheduled)
        cloudwatch = self.aws["cloudwatch"]
        put = {}
        for metric in cloudwatch.list_metrics(Namespace="AmiRollout")["Metrics"]:
            stats = cloudwatch.get_metric_statistics(
                Namespace="AmiRollout", MetricName=metric["MetricName"], Dimensions=metric["Dimensions"],
                # The functions' calendar clock, which runs ahead of the wall clock as tests go on.
                StartTime=clock.utcnow() - timedelta(hours=1),
                EndTime=clock.utcnow() + timedelta(minutes=5), Period=3600, Statistics=["Maximum"])
            dims = tuple(sorted(d["Value"] for d in metric["Dimensions"]))
            put[(metric["MetricName"], dims)] = [p["Maximum"] for p in stats["Datapoints"]]
        self.assertEqual(put[("NonCompliantTargets", ())], [1.0], put)
        self.assertEqual(put[("CheckedTargets", ())], [float(len(self.groups))], put)

    def test_undo_brings_the_fleet_back_and_refuses_by_name_a_target_changed_since(self):
        first = f"to-undo-{uuid.uuid4().hex[:8]}"
        code, out, err = self.cli("start", "--ami-id", self.golden, "--name", first, "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        for group in self.groups:
            self.assert_rolled_out(group, self.golden)
        # Rolled out again since, by another execution: that group is no longer the first one's.
        changed = next(g for g in self.groups if g != "web")
        code, out, err = self.cli("start", "--ami-id", self.current, "--target", changed, "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        after_second = (self.reference(changed), self.versions(changed), self.amis(changed))

        before = len(self.executions())
        code, out, err = self.cli("undo", first, "--yes")
        self.assertEqual(code, 3, out + err)
        self.assertIn(f"{changed}: preflight refused the rollout", err)
        self.assertIn(f"not the one {first} made", err)
        self.assertEqual(len(self.executions()), before, "a refused undo starts nothing")

        code, out, err = self.cli("--output", "json", "undo", first, "--skip-changed", "--dry-run")
        self.assertEqual(code, 0, err)
        shown = json.loads(out)
        self.assertEqual(sorted(t["group"] for wave in shown["plan"]["waves"] for t in wave),
                         sorted(g for g in self.groups if g != changed))
        self.assertEqual([r["group"] for r in shown["refused"]], [changed])
        self.assertEqual(len(self.executions()), before, "a dry run starts nothing")

        code, out, err = self.cli("--output", "json", "undo", first, "--skip-changed", "--yes", "--watch",
                                  "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        lines = self.json_lines(out)
        self.assertEqual((lines[-1]["type"], lines[-1]["status"]), ("end", "SUCCEEDED"))
        undo = next(line["executionArn"] for line in lines if line["type"] == "started")
        for group in self.groups:
            if group == changed:
                continue
            self.assertEqual(self.amis(group), [self.current] * len(self.amis(group)), group)
            # The group and its template name what they named before the first rollout.
            self.assertEqual(self.reference(group), self.past[group]["reference"], group)
            self.assertEqual(self.default_version(group), self.past[group]["default"], group)
        self.assertEqual((self.reference(changed), self.versions(changed), self.amis(changed)), after_second,
                         "the target changed since is left as it is")

        # An undo is not undone: the AMI is rolled out again instead.
        code, out, err = self.cli("undo", undo.rsplit(":", 1)[-1], "--yes")
        self.assertEqual(code, 3, out + err)
        self.assertIn("it is itself an undo", err)

    # Issue 34: what an operator trips over.

    def run_with(self, env_changes, *args):
        """The CLI with the operator's environment changed (None removes a variable)."""
        env = cli.environment(self.moto, self.sfn)
        for key, value in env_changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        done = subprocess.run([str(cli.binary()), *args], env=env, capture_output=True, text=True,
                              timeout=120)
        return done.returncode, done.stdout, done.stderr

    def test_a_closed_pipe_ends_the_listing_quietly(self):
        code, out, err = self.cli("start", "--ami-id", self.golden, "--target", "web", "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        env = cli.environment(self.moto, self.sfn)
        shell = f"'{cli.binary()}' list | head -1; '{cli.binary()}' status \"$(\
            '{cli.binary()}' --output json list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"name\"])')\" | head -1"
        done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], env=env, capture_output=True, text=True,
                              timeout=120)
        self.assertNotIn("panicked", done.stderr)
        self.assertNotIn("Broken pipe", done.stderr)
        self.assertEqual(len(done.stdout.splitlines()), 2, done.stdout)

    def test_missing_region_credentials_or_profile_say_what_to_set_in_one_line(self):
        cases = {
            "no region": ({"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "AWS_CONFIG_FILE": "/nonexistent"},
                          ["list"], "no AWS region: pass --region"),
            "no credentials": ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
                                "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                "AWS_EC2_METADATA_DISABLED": "true"},
                               ["list"], "no AWS credentials found"),
            "unknown profile": ({"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"},
                                ["--profile", "doesnotexist", "list"], "the profile doesnotexist is in neither"),
        }
        for name, (changes, args, said) in cases.items():
            with self.subTest(name):
                code, out, err = self.run_with(changes, *args)
                self.assertEqual(code, 2, out + err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn(said, err)
        # --debug adds what the SDK said.
        code, _, err = self.run_with(cases["no credentials"][0], "--debug", "list")
        self.assertEqual(code, 2)
        self.assertIn("detail:", err)

    def test_start_refuses_what_plan_refuses_and_starts_nothing(self):
        before = len(self.executions())
        missing = "ami-0123456789abcdef0"
        code, plan_out, plan_err = self.cli("plan", "--ami-id", missing)
        self.assertEqual(code, 3, plan_out + plan_err)
        code, out, err = self.cli("start", "--ami-id", missing)
        self.assertEqual(code, 3, out + err)
        self.assertEqual(err, plan_err, "a refused start reads like plan's refusal")
        self.assertIn("AmiNotUsable", err)
        self.assertEqual(len(self.executions()), before, "nothing started")

    def test_redrive_refuses_a_rollout_that_rolled_back_and_says_what_to_do(self):
        post(f"{self.control}/bad-ami", {"imageId": self.bad, "mode": "boot"})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.bad})
        result = self.watch(execution)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "RolloutFailed"), result["log"])
        name = execution.rsplit(":", 1)[-1]
        code, out, err = self.cli("redrive", name)
        self.assertEqual(code, 3, out + err)
        self.assertIn("NotRedrivable", err)
        self.assertIn("rolled back", err)
        self.assertIn("start a new rollout", err)
        code, out, err = self.cli("status", name)
        self.assertEqual(code, 4, out + err)
        self.assertNotIn("ami-rollout redrive", out)
        # list says what each execution rolled out, of which kind, and how it ended.
        code, out, err = self.cli("--output", "json", "list")
        self.assertEqual(code, 0, err)
        row = next(r for r in json.loads(out) if r["name"] == name)
        self.assertEqual((row["kind"], row["status"], row["error"]), ("rollout", "FAILED", "RolloutFailed"))
        self.assertIn(self.bad, row["what"])
        self.assertIsNotNone(row["seconds"])
        # The fleet moves on; the past execution's status still shows what it left.
        code, out, err = self.cli("start", "--ami-id", self.golden, "--target", "web", "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        code, out, err = self.cli("--output", "json", "status", name)
        web = next(t for t in json.loads(out)["targets"] if t["target"] == "web")
        self.assertEqual((web["outcome"], web["amiLeft"]), ("rolled back", self.current))
        self.assertNotIn("amisNow", web)

    def test_unknown_executions_and_statuses_are_refused_by_name(self):
        code, out, err = self.cli("approve", "nope")
        self.assertEqual(code, 3, out + err)
        self.assertIn("NoSuchExecution: there is no execution nope", err)
        code, out, err = self.cli("status", "nope")
        self.assertEqual(code, 3, out + err)
        code, out, err = self.cli("list", "--status", "bogus")
        self.assertEqual(code, 2, out + err)
        self.assertIn("bogus", err)
        self.assertEqual(out, "")
        code, out, err = self.cli("list", "--status", "succeeded")
        self.assertEqual(code, 0, out + err)
        # The help names every command and the exit statuses; the man page comes from the same.
        code, out, err = self.cli("--help")
        self.assertEqual(code, 0, err)
        for command in ("abort", "undo", "approve", "reject", "drift", "Exit statuses:"):
            self.assertIn(command, out)
        code, out, err = self.cli("man")
        self.assertEqual(code, 0, err)
        self.assertIn(".TH ami-rollout 1", out)


    def test_abort_brings_back_what_the_rollout_touched_and_a_rerun_starts_from_the_canary(self):
        # An hour's bake (three minutes of wall clock) holds the canary wave: abort it there.
        name = f"to-abort-{uuid.uuid4().hex[:8]}"
        code, out, err = self.cli("start", "--ami-id", self.golden, "--name", name,
                                  "--settings", json.dumps({"*": {"bakeSeconds": 3600}}))
        self.assertEqual(code, 0, out + err)
        self.wait_for("the canary on the golden AMI",
                      lambda: self.amis("web") == [self.golden] * 2, timeout=180)
        code, out, err = self.cli("abort", name)
        self.assertEqual(code, 3, "no terminal and no --yes: nothing done")
        code, out, err = self.cli("--output", "json", "abort", name, "--yes", "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        lines = self.json_lines(out)
        aborted = next(line for line in lines if line["type"] == "aborted")
        self.assertEqual(sorted(t["group"] for w in aborted["plan"]["waves"] for t in w), sorted(self.groups))
        end = lines[-1]
        self.assertEqual((end["type"], end["status"]), ("end", "SUCCEEDED"))
        # The canary it had rolled out is rolled back; the wave it had not reached, untouched.
        self.assertEqual({t["target"]: t["outcome"] for t in end["targets"]},
                         {g: "rolled back" if g == "web" else "untouched" for g in self.groups})
        self.assert_back_as_before("web")
        self.assert_untouched(set(self.groups) - {"web"})
        described = self.sfn_client.describe_execution(executionArn=f"{self.machine.replace(':stateMachine:', ':execution:')}:{name}")
        self.assertEqual(described["status"], "ABORTED")
        # A rerun starts from the canary again: nothing of the aborted rollout is left on it.
        code, out, err = self.cli("--output", "json", "plan", "--ami-id", self.golden)
        self.assertEqual(code, 0, err)
        self.assertEqual([t["group"] for t in json.loads(out)["plan"]["waves"][0]], ["web"])
        # Aborting what is not running is refused, with what to do instead.
        code, out, err = self.cli("abort", name, "--yes")
        self.assertEqual(code, 3, out + err)
        self.assertIn("only a running rollout is aborted", err)

    def test_a_rollout_stopped_by_throttling_says_redrive_and_the_cli_redrives_it_to_success(self):
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 3, "alarmNames": ["web-5xx"]}},
                       AWS_MAX_ATTEMPTS="1")
        post(f"{self.control}/faults", {"operation": "DescribeAlarms", "code": "Throttling", "count": 100})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        stopped = self.watch(execution)
        self.assertEqual(stopped["status"], "FAILED", stopped["log"])
        name = execution.rsplit(":", 1)[-1]
        code, out, err = self.cli("status", name)
        self.assertEqual(code, 4, out + err)
        self.assertIn(f"nothing rolled back: once the cause is cleared, ami-rollout redrive {name}", out)
        self.clear_faults()
        code, out, err = self.cli("--output", "json", "redrive", name, "--watch", "--interval", "0.3")
        self.assertEqual(code, 0, out + err)
        lines = self.json_lines(out)
        end = lines[-1]
        self.assertEqual((end["type"], end["status"]), ("end", "SUCCEEDED"))
        # Each end of the redriven child is told as it was: first stopped, then rolled out.
        ends = [(e["status"], e["outcome"]) for e in lines if e["type"] == "targetEnd"]
        self.assertEqual(ends[-1], ("SUCCEEDED", "rolled out"), ends)
        self.assertNotIn("RUNNING", [status for status, _ in ends], ends)
        self.assert_rolled_out("web", self.golden)


if __name__ == "__main__":
    unittest.main()
