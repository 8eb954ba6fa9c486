"""Deploy ami-rollout to the local Step Functions, Lambda and EventBridge (ministack) and DynamoDB
(moto) the way the SAM template deploys it to AWS: seven `provided.al2023` functions whose zips hold
`bootstrap`, the same environment names, statemachine/rollout.asl.json with the same
DefinitionSubstitutions, the holds table, the plans bucket, and the EventBridge rule that sends the
state machine's ABORTED / TIMED_OUT "Step Functions Execution Status Change" events to
hold-targets. Only the functions' AWS_ENDPOINT_URL_* differ: they point at the local fleet and
DynamoDB (moto) and at the local Step Functions and S3 (ministack, whose Distributed Maps read the
plan objects from its own S3 and write the outcomes there)."""

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
    "hold-targets": "HoldTargetsFunctionArn",
    "distribute-ami": "DistributeAmiFunctionArn",
}
STATE_MACHINE = "ami-rollout"
ROLE = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/ami-rollout-local"
HOLDS_TABLE = "ami-rollout-holds"
PLANS_BUCKET = "ami-rollout-plans"
# The SAM template's HoldReleaseRule: an execution of this state machine that ends ABORTED or
# TIMED_OUT invokes hold-targets (asynchronously, with the event as is). Its dead-letter queues
# (the rule's and the function's) are not deployed here.
HOLD_RULE = "ami-rollout-hold-release"
HOLD_TARGET = "release-holds"
HOLD_STATUSES = ("ABORTED", "TIMED_OUT")
HOLD_RETRY_POLICY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


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


def _client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=launcher.REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def clients(sfn_endpoint: str):
    return _client("lambda", sfn_endpoint), _client("stepfunctions", sfn_endpoint)


def create_holds_table(moto_endpoint: str) -> None:
    """The holds table as the SAM template makes it, if missing. moto serves DynamoDB, and
    POST /_localaws/reset drops it with every other moto backend: call this after a reset."""
    dynamodb = _client("dynamodb", moto_endpoint)
    try:
        dynamodb.create_table(TableName=HOLDS_TABLE, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}])
    except dynamodb.exceptions.ResourceInUseException:
        pass


def create_plans_bucket(sfn_endpoint: str) -> None:
    """The plans bucket as the SAM template makes it, if missing (ministack serves S3)."""
    s3 = _client("s3", sfn_endpoint)
    try:
        s3.create_bucket(Bucket=PLANS_BUCKET)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass


def function_environment(moto_endpoint: str, environment: dict | None, sfn_endpoint: str) -> dict:
    variables = {f"AWS_ENDPOINT_URL_{s}": moto_endpoint for s in launcher.MOTO_SERVICES}
    variables.update({"AWS_ENDPOINT_URL_SFN": sfn_endpoint, "AWS_ENDPOINT_URL_S3": sfn_endpoint,
                      "HOLDS_TABLE": HOLDS_TABLE, "PLANS_BUCKET": PLANS_BUCKET,
                      # The template sets it from AWS::AccountId: the functions' own account.
                      "HOME_ACCOUNT_ID": launcher.MOTO_ACCOUNT,
                      "RUST_LOG": "info", **(environment or {})})
    return {"Variables": variables}


def configure(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None) -> None:
    """Changes only the functions' configuration (what a SAM parameter change does)."""
    lam, _ = clients(sfn_endpoint)
    for name in FUNCTIONS:
        lam.update_function_configuration(
            FunctionName=f"ami-rollout-{name}",
            Environment=function_environment(moto_endpoint, environment, sfn_endpoint))


def route_status_changes(sfn_endpoint: str, state_machine: str, function_arn: str, rule: str,
                         statuses=HOLD_STATUSES, target_id: str = "function",
                         retry_policy: dict | None = None) -> str:
    """An EventBridge rule on the default bus (ministack's) sending this state machine's "Step
    Functions Execution Status Change" events with one of `statuses` to the function, and the
    permission for EventBridge to invoke it. Returns the rule ARN."""
    events, lam = _client("events", sfn_endpoint), _client("lambda", sfn_endpoint)
    pattern = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
               "detail": {"status": list(statuses), "stateMachineArn": [state_machine]}}
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")["RuleArn"]
    target = {"Id": target_id, "Arn": function_arn, **({"RetryPolicy": retry_policy} if retry_policy else {})}
    events.put_targets(Rule=rule, Targets=[target])
    try:
        lam.add_permission(FunctionName=function_arn, StatementId=rule, Action="lambda:InvokeFunction",
                           Principal="events.amazonaws.com", SourceArn=rule_arn,
                           SourceAccount=rule_arn.split(":")[4])
    except lam.exceptions.ResourceConflictException:
        pass  # already there from an earlier deploy
    return rule_arn


def deploy(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None,
           profile: str = "debug") -> str:
    """Creates or updates the functions and the state machine; returns the state machine ARN.
    `profile` is the cargo profile whose binaries to deploy, or "package" for `make package`'s
    zips in dist/."""
    lam, sfn = clients(sfn_endpoint)
    create_holds_table(moto_endpoint)
    create_plans_bucket(sfn_endpoint)
    arns = {}
    for name, key in FUNCTIONS.items():
        if profile == "package":
            packaged = ROOT / "dist" / name / "bootstrap.zip"
            if not packaged.exists():
                raise SystemExit(f"deploy: {packaged} is missing; run `make package` first")
            code = packaged.read_bytes()
        else:
            binary = target_dir() / profile / name
            if not binary.exists():
                raise SystemExit(f"deploy: {binary} is missing; run `make build` first")
            code = bootstrap_zip(binary)
        function = f"ami-rollout-{name}"
        config = dict(Runtime="provided.al2023", Handler="bootstrap", Role=ROLE, Timeout=120,
                      MemorySize=512, Environment=function_environment(moto_endpoint, environment, sfn_endpoint),
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
    else:
        arn = sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=ROLE,
                                       type="STANDARD")["stateMachineArn"]
    route_status_changes(sfn_endpoint, arn, arns["HoldTargetsFunctionArn"], HOLD_RULE,
                         target_id=HOLD_TARGET, retry_policy=HOLD_RETRY_POLICY)
    return arn
