"""Deploy ami-rollout to the local Step Functions and Lambda (ministack) the way the SAM template
deploys it to AWS: five `provided.al2023` functions whose zips hold `bootstrap`, the same
environment names, and statemachine/rollout.asl.json with the same DefinitionSubstitutions.
Only the functions' AWS_ENDPOINT_URL_* differ: they point at the local fleet (moto)."""

import io
import json
import os
import zipfile
from pathlib import Path

import boto3

from . import launcher

ROOT = launcher.HERE.parent.parent
FUNCTIONS = {
    # binary name -> the DefinitionSubstitutions key the ASL uses
    "resolve-ami": "ResolveAmiFunctionArn",
    "update-template": "UpdateTemplateFunctionArn",
    "start-refresh": "StartRefreshFunctionArn",
    "check-ecs-health": "CheckEcsHealthFunctionArn",
    "rollback": "RollbackFunctionArn",
}
STATE_MACHINE = "ami-rollout"
ROLE = "arn:aws:iam::000000000000:role/ami-rollout-local"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/ami-rollout/target")


def bootstrap_zip(binary: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, binary.read_bytes())
    return buffer.getvalue()


def clients(sfn_endpoint: str):
    kw = dict(endpoint_url=sfn_endpoint, region_name=launcher.REGION,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client("lambda", **kw), boto3.client("stepfunctions", **kw)


def function_environment(moto_endpoint: str, environment: dict | None) -> dict:
    variables = {f"AWS_ENDPOINT_URL_{s}": moto_endpoint for s in launcher.MOTO_SERVICES}
    variables.update({"RUST_LOG": "info", **(environment or {})})
    return {"Variables": variables}


def configure(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None) -> None:
    """Changes only the functions' configuration (what a SAM parameter change does)."""
    lam, _ = clients(sfn_endpoint)
    for name in FUNCTIONS:
        lam.update_function_configuration(FunctionName=f"ami-rollout-{name}",
                                          Environment=function_environment(moto_endpoint, environment))


def deploy(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None,
           profile: str = "debug") -> str:
    """Creates or updates the functions and the state machine; returns the state machine ARN."""
    lam, sfn = clients(sfn_endpoint)
    arns = {}
    for name, key in FUNCTIONS.items():
        binary = target_dir() / profile / name
        if not binary.exists():
            raise SystemExit(f"deploy: {binary} is missing; run `make build` first")
        function = f"ami-rollout-{name}"
        code = bootstrap_zip(binary)
        config = dict(Runtime="provided.al2023", Handler="bootstrap", Role=ROLE, Timeout=120,
                      MemorySize=512, Environment=function_environment(moto_endpoint, environment),
                      LoggingConfig={"LogFormat": "JSON"})
        try:
            lam.get_function(FunctionName=function)
            lam.update_function_code(FunctionName=function, ZipFile=code)
            arn = lam.update_function_configuration(FunctionName=function, **config)["FunctionArn"]
        except lam.exceptions.ResourceNotFoundException:
            arn = lam.create_function(FunctionName=function, Code={"ZipFile": code}, **config)["FunctionArn"]
        arns[key] = arn
    definition = (ROOT / "statemachine/rollout.asl.json").read_text()
    for key, arn in arns.items():
        definition = definition.replace("${" + key + "}", arn)
    existing = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == STATE_MACHINE]
    if existing:
        arn = existing[0]["stateMachineArn"]
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=ROLE)
        return arn
    return sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=ROLE,
                                    type="STANDARD")["stateMachineArn"]
