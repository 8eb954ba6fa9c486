"""The operator CLI `ami-rollout` (the debug build) run as a user runs it against the local AWS:
with only the standard AWS variables set (the credentials of a session of the template's
operator role), the endpoint ones pointing here, never the control endpoint. The demo's timeline is its `watch`; the end-to-end tests drive every command this way."""

import os
import subprocess

from . import clock, deploy, launcher


def binary():
    return deploy.target_dir() / "debug" / "ami-rollout"


def environment(moto: str, sfn: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AMI_ROLLOUT_"))}
    env.update({f"AWS_ENDPOINT_URL_{s}": moto for s in launcher.MOTO_SERVICES})
    env.update({f"AWS_ENDPOINT_URL_{s}": sfn for s in launcher.MINISTACK_SERVICES})
    # As an operator runs it: with the template's operator role (its policies are enforced).
    env.update(AWS_REGION=launcher.REGION, **deploy.operator_credentials(moto))
    if clock.VARIABLE in os.environ:
        # The local AWS's calendar clock, which the CLI reads "now" from as the functions do.
        env["AMI_ROLLOUT_CLOCK"] = os.environ[clock.VARIABLE]
    return env


def run(moto: str, sfn: str, *args, timeout: float = 300):
    """Runs one command to its end: the exit status, standard output and standard error."""
    done = subprocess.run([str(binary()), *args], env=environment(moto, sfn), capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def follow(moto: str, sfn: str, *args, out=print) -> tuple[int, list[str]]:
    """Runs one command, showing each line of its output as it comes (a watch is live). Returns
    the exit status and the lines."""
    lines = []
    with subprocess.Popen([str(binary()), *args], env=environment(moto, sfn), stdout=subprocess.PIPE,
                          text=True, bufsize=1) as process:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            out(line)
    return process.returncode, lines
