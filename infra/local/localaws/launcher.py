"""Start and stop the local AWS: moto with our extensions (fleet services, DynamoDB, KMS) and ministack
(Step Functions, Lambda, EventBridge, S3), each on a loopback port, plus one env file that points the
AWS SDKs at them.

  python -m localaws up [--no-ministack] [--moto-port N] [--sfn-port N]
  python -m localaws status
  python -m localaws down

Ports default to free ones. State lives in infra/local/.run (or --run-dir): the env file, a
JSON record of ports and PIDs, and each server's log. `up` when already up is harmless;
`down` stops both process groups by PID.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import clock

HERE = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = HERE / ".run"
REGION = "us-east-1"
# KMS: the keys AMI copies are encrypted with and the grants on them (bookkeeping only, see README).
# Image Builder: GetImage and builds finishing (imagebuilder.py).
MOTO_SERVICES = ("EC2", "AUTO_SCALING", "ECS", "CLOUDWATCH", "SSM", "STS", "DYNAMODB", "ORGANIZATIONS", "KMS",
                 "IMAGEBUILDER")
MOTO_ACCOUNT = "123456789012"
# One clock (clock.py): the calendar runs this many times the wall clock, and Step Functions
# shortens its Waits by as much, so a Wait and the functions reading the time agree.
DEFAULT_CLOCK_RATE = 20
# S3 is ministack's own: a Distributed Map's ItemReader and ResultWriter read and write it in-process.
# SNS, SQS and Pipes are its own too, so EventBridge rules, topics, queues and pipes deliver in-process
# (the status topic, Image Builder's notifications through their pipe).
# The `AWS_ENDPOINT_URL_<SERVICE>` names are the SDKs' service ids, upper case with underscores
# (botocore, the AWS CLI, the Rust SDK alike): EventBridge is EVENTBRIDGE, not its `events`
# endpoint prefix (test_env_file.py checks every name with botocore).
MINISTACK_SERVICES = ("SFN", "LAMBDA", "IAM", "CLOUDWATCH_LOGS", "EVENTBRIDGE", "S3", "SNS", "SQS", "PIPES")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        # A server this process started stays a zombie, which signal 0 still finds, until reaped.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # started by another process (`python -m localaws up`)
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _wait_http(url: str, what: str, proc, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"localaws: {what} exited during start-up (exit {proc.returncode}); see its log")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"localaws: {what} did not answer on {url} within {seconds:.0f} s")


def env_lines(moto_port: int, sfn_port: int | None) -> list[str]:
    moto = f"http://127.0.0.1:{moto_port}"
    lines = [f"AWS_ENDPOINT_URL_{s}={moto}" for s in MOTO_SERVICES]
    if sfn_port:
        lines += [f"AWS_ENDPOINT_URL_{s}=http://127.0.0.1:{sfn_port}" for s in MINISTACK_SERVICES]
    return lines + [
        f"AWS_REGION={REGION}",
        f"AWS_DEFAULT_REGION={REGION}",
        "AWS_ACCESS_KEY_ID=testing",
        "AWS_SECRET_ACCESS_KEY=testing",
        f"LOCALAWS_MOTO={moto}",
        f"LOCALAWS_CONTROL={moto}/_localaws",
    ] + ([f"LOCALAWS_SFN=http://127.0.0.1:{sfn_port}"] if sfn_port else []) + (
        # The functions' and the CLI's "now" (crates/core/src/clock.rs).
        [f"{clock.VARIABLE}={os.environ[clock.VARIABLE]}", f"AMI_ROLLOUT_CLOCK={os.environ[clock.VARIABLE]}"]
        if clock.VARIABLE in os.environ else [])


def read_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None


def up(run_dir: Path, moto_port: int = 0, sfn_port: int = 0, ministack: bool = True, plain: bool = False,
       clock_rate: float | None = None, quiet: bool = False) -> dict:
    """Starts the local AWS; its calendar runs `clock_rate` times the wall clock (default:
    LOCALAWS_CLOCK_RATE, else DEFAULT_CLOCK_RATE)."""
    current = read_state(run_dir)
    if current and all(_alive(p) for p in current["pids"].values()):
        print(f"localaws: already up (moto :{current['motoPort']}, ministack :{current.get('sfnPort')}); env in {run_dir / 'env'}")
        return current
    if current:
        down(run_dir, quiet=True)
    for port in (moto_port, sfn_port):
        if port and _port_taken(port):
            raise SystemExit(f"localaws: port {port} on 127.0.0.1 is taken; pick another or pass 0 for a free one")
    run_dir.mkdir(parents=True, exist_ok=True)
    pids = {}
    # One calendar clock for every process, the functions and this one (clock.py).
    rate = clock_rate if clock_rate is not None else float(os.environ.get("LOCALAWS_CLOCK_RATE", DEFAULT_CLOCK_RATE))
    os.environ[clock.VARIABLE] = clock.make(rate)
    sfn_port = (sfn_port or _free_port()) if ministack else None
    # The fleet services send their events (parameter writes, image builds) to ministack's bus.
    moto_env = dict(os.environ, **({"LOCALAWS_EVENTS": f"http://127.0.0.1:{sfn_port}"} if sfn_port else {}))
    with open(run_dir / "moto.log", "w") as moto_log:  # the child keeps its own descriptor
        moto = subprocess.Popen(
            [sys.executable, "-m", "localaws.server", "--port", str(moto_port)] + (["--plain"] if plain else []),
            cwd=HERE, env=moto_env, stdout=subprocess.PIPE, stderr=moto_log, text=True, start_new_session=True)
    first = moto.stdout.readline().split()
    moto.stdout.close()
    if len(first) != 2 or first[0] != "listening":
        raise SystemExit(f"localaws: moto failed to start; see {run_dir / 'moto.log'}")
    moto_port = int(first[1])
    pids["moto"] = moto.pid
    _wait_http(f"http://127.0.0.1:{moto_port}/moto-api/data.json", "moto", moto)
    if ministack:
        env = dict(os.environ, GATEWAY_PORT=str(sfn_port), BIND_HOST="127.0.0.1", SFN_WAIT_SCALE=os.environ.get("LOCALAWS_SFN_WAIT_SCALE", f"{1 / rate:g}"),
                   SERVICES="stepfunctions,lambda,sts,iam,logs,events,s3,sns,sqs,pipes", TMPDIR=str(run_dir),
                   # One account across services, as on AWS: moto's default account. Execution
                   # ARNs then name the account that owns the fleet's AMIs.
                   MINISTACK_ACCOUNT_ID=MOTO_ACCOUNT,
                   # Lambda assumes each function's execution role in moto's STS (lambda_service.py).
                   LOCALAWS_MOTO=f"http://127.0.0.1:{moto_port}")
        with open(run_dir / "ministack.log", "w") as stack_log:
            stack = subprocess.Popen([sys.executable, "-m", "localaws.stepfunctions"], cwd=HERE, env=env,
                                     stdout=stack_log, stderr=subprocess.STDOUT, start_new_session=True)
        pids["ministack"] = stack.pid
        _wait_http(f"http://127.0.0.1:{sfn_port}/_ministack/health", "ministack", stack)
    record = {"motoPort": moto_port, "sfnPort": sfn_port, "pids": pids, "plain": plain}
    (run_dir / "state.json").write_text(json.dumps(record))
    (run_dir / "env").write_text("".join(f"export {line}\n" for line in env_lines(moto_port, sfn_port)))
    if not quiet:
        print(f"localaws: up (moto :{moto_port}{', ministack :' + str(sfn_port) if sfn_port else ''}); "
              f"env in {run_dir / 'env'}")
    return record


def down(run_dir: Path, quiet: bool = False) -> None:
    current = read_state(run_dir)
    if not current:
        if not quiet:
            print("localaws: not running")
        return
    for name, pid in current["pids"].items():
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            continue
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    (run_dir / "state.json").unlink(missing_ok=True)
    if not quiet:
        print("localaws: stopped")


def status(run_dir: Path) -> int:
    current = read_state(run_dir)
    if not current:
        print("localaws: not running")
        return 1
    alive = {name: _alive(pid) for name, pid in current["pids"].items()}
    print(json.dumps({**current, "alive": alive}, indent=1))
    return 0 if all(alive.values()) else 1
