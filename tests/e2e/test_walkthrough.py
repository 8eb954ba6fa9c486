"""End to end: the local AWS by hand, as infra/local/README.md ("By hand") walks through it, in a
run directory of its own: up, the env file, the seed (twice: the second prints the same manifest
and seeds nothing more), the deploy, and a rollout started and watched with `ami-rollout` using
only the env file's variables. It ends SUCCEEDED with the golden AMI on the group's instances.

Run: infra/local/.venv/bin/python -m unittest tests.e2e.test_walkthrough   (make e2e runs it)
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "infra/local"
sys.path.insert(0, str(LOCAL))

from localaws import cli  # noqa: E402


class Walkthrough(unittest.TestCase):
    def test_from_nothing_to_a_watched_rollout(self):
        run_dir = Path(tempfile.mkdtemp(prefix="walkthrough-"))
        python = [str(LOCAL / ".venv/bin/python"), "-m", "localaws"]

        def step(*args, env=None, timeout=300):
            done = subprocess.run(args, cwd=LOCAL, env=env, capture_output=True, text=True, timeout=timeout)
            self.assertEqual(done.returncode, 0, f"{args}: {done.stdout}{done.stderr}")
            return done.stdout

        step(*python, "up", "--run-dir", str(run_dir))
        try:
            # `source infra/local/.run/env`: what the operator's shell has afterwards.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALAWS_", "AMI_ROLLOUT_"))}
            for line in (run_dir / "env").read_text().splitlines():
                key, value = line.removeprefix("export ").split("=", 1)
                env[key] = value
            manifest = run_dir / "seed.json"
            seed = [*python, "seed", "--endpoint", env["LOCALAWS_MOTO"], "--manifest", str(manifest)]
            first = step(*seed, env=env)
            self.assertEqual(step(*seed, env=env), first, "a second seed prints the same and seeds nothing")
            golden = json.loads(first)["amis"]["golden"]
            step(*python, "deploy", env=env)
            done = subprocess.run([str(cli.binary()), "--output", "json", "start", "--ami-id", golden,
                                   "--target", "web", "--watch", "--interval", "0.5"],
                                  env=env, capture_output=True, text=True, timeout=600)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            end = json.loads(done.stdout.splitlines()[-1])
            self.assertEqual((end["type"], end["status"]), ("end", "SUCCEEDED"))
            self.assertEqual([t["amisNow"] for t in end["targets"]], [[golden]])
        finally:
            step(*python, "down", "--run-dir", str(run_dir))


if __name__ == "__main__":
    unittest.main()
