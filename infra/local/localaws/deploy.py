"""Deploy ami-rollout to the local Step Functions, Lambda, EventBridge, SNS, SQS and Pipes (ministack)
and DynamoDB (moto) the way the SAM template deploys it to AWS: seven `provided.al2023` functions
whose zips hold `bootstrap`, the same environment names, statemachine/rollout.asl.json with the same
DefinitionSubstitutions, the holds table, the plans bucket, the status topic, and the template's own
EventBridge rules (stack.py reads them): HoldReleaseRule (ABORTED / TIMED_OUT executions to
hold-targets), ExecutionStatusRule and ExecutionSucceededRule (endings to the status topic, which a queue the demo
reads is subscribed to). With `triggers`, also the rules that start rollouts (Parameter Store
Change, CloudTrail PutParameter, Image Builder Image State Change) and, when the parameters name an
Image Builder topic, its notification queue, subscription and pipe. Only the functions'
AWS_ENDPOINT_URL_* differ: they point at the local fleet and DynamoDB (moto) and at the local Step
Functions and S3 (ministack, whose Distributed Maps read the plan objects from its own S3 and write
the outcomes there). Dead-letter queues of rules and functions are not deployed."""

import functools
import io
import json
import os
import shlex
import zipfile
from pathlib import Path

import boto3

from . import clock, launcher, stack

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
# The rules' and the pipe's role (their permissions are not evaluated here; the state machine has
# the template's own, STATE_MACHINE_ROLE).
ROLE = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/ami-rollout-local"
# The state machine's role and the operators' (the CLI's) in create_roles' answer, beside the
# functions'. Locally the account's administrator may assume the operator role.
STATE_MACHINE_ROLE = "state-machine"
OPERATOR_ROLE = "operator"
OTHER_ROLES = {STATE_MACHINE_ROLE: "StateMachineRole", OPERATOR_ROLE: "OperatorRole"}
# Here the operators also answer approval gates: the deploy attaches ApproverPolicy to their role,
# as a stack listing it in ApproverRoleArns would have it attached.
ATTACHED = {OPERATOR_ROLE: ["ApproverPolicy"]}
# Roles the deploy makes in moto's IAM survive POST /_localaws/reset, as a stack's roles outlive
# any change to the fleet (control.py keeps them and their sessions).
DEPLOYMENT_TAG = {"Key": "localaws:deployment", "Value": STATE_MACHINE}
HOLDS_TABLE = "ami-rollout-holds"
PLANS_BUCKET = "ami-rollout-plans"
# The template's rules deployed with every deploy, and those that start rollouts (`triggers`).
ALWAYS_RULES = ("HoldReleaseRule", "ExecutionStatusRule", "ExecutionSucceededRule")
TRIGGER_RULES = ("ParameterChangeRule", "PutParameterCallRule", "ImageBuilderRule")
STATUS_TOPIC = "ami-rollout-status"
# Where approval gates tell the approvers, and a queue that reads it (as an email subscriber would).
APPROVAL_TOPIC = "ami-rollout-approvals"
APPROVAL_QUEUE = "ami-rollout-approvals-watch"
# Subscribed to the status topic: what an operator's e-mail would receive, for the demo to show.
STATUS_QUEUE = "ami-rollout-status-watch"
IMAGE_BUILDER_QUEUE = "ami-rollout-image-builder-notifications"
IMAGE_BUILDER_PIPE = "ami-rollout-image-builder"


def function_role(name: str) -> str:
    """The template's role of a function ("resolve-ami" -> "ResolveAmiRole")."""
    return "".join(part.capitalize() for part in name.split("-")) + "Role"


def role_name(logical: str) -> str:
    """A role's name as CloudFormation makes it, `<stack>-<logical id>-<suffix>`, without the
    random suffix. A function role is also under the template's path `/<stack>/`, which the workload
    role's trust names (`role/<central stack>/*`)."""
    return f"{STATE_MACHINE}-{logical}"


def _physical() -> dict:
    """What the stack's references in the roles' policies name here."""
    account, region = launcher.MOTO_ACCOUNT, launcher.REGION
    physical = {
        "PlansBucket": PLANS_BUCKET, "PlansBucket.Arn": f"arn:aws:s3:::{PLANS_BUCKET}",
        "HoldsTable.Arn": f"arn:aws:dynamodb:{region}:{account}:table/{HOLDS_TABLE}",
        "ApprovalTopic": f"arn:aws:sns:{region}:{account}:{APPROVAL_TOPIC}",
        "StatusTopic": f"arn:aws:sns:{region}:{account}:{STATUS_TOPIC}",
        # The topics are not encrypted here (fidelity table): a key ARN of the same form.
        "StatusTopicKey.Arn": f"arn:aws:kms:{region}:{account}:key/ami-rollout-status-topic",
        "HoldReleaseDeadLetterQueue.Arn": f"arn:aws:sqs:{region}:{account}:{STATE_MACHINE}-hold-release-dlq",
        "RolloutStateMachine": f"arn:aws:states:{region}:{account}:stateMachine:{STATE_MACHINE}",
        "ImageBuilderNotificationQueue.Arn": f"arn:aws:sqs:{region}:{account}:{IMAGE_BUILDER_QUEUE}",
        **{policy: f"arn:aws:iam::{account}:policy/{STATE_MACHINE}-{policy}"
           for policy in ("FleetReadPolicy", "OperatorPolicy", "ApproverPolicy")},
    }
    for name in FUNCTIONS:
        logical = function_role(name).removesuffix("Role")
        physical[f"{logical}Function.Arn"] = f"arn:aws:lambda:{region}:{account}:function:{STATE_MACHINE}-{name}"
        physical[f"{logical}Logs.Arn"] = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{STATE_MACHINE}-{name}:*"
    return physical


def create_roles(moto_endpoint: str, parameters: dict | None = None, without: dict | None = None) -> dict:
    """The functions' roles and the state machine's as the template makes them, in moto's IAM
    (the central account): the trust policy and every inline policy, with the template's references
    evaluated. Returns function name (or STATE_MACHINE_ROLE) -> role ARN. An existing role gets the
    template's policies again. `without` (name -> action) leaves out the statements of that role
    granting the action, to show what needs them."""
    parameters = {"OperatorPrincipalArn": f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:root", **(parameters or {})}
    template = stack.Stack(_physical(), parameters, region=launcher.REGION, account=launcher.MOTO_ACCOUNT,
                           name=STATE_MACHINE)
    resources = template.template["Resources"]
    iam = _client("iam", moto_endpoint)
    arns = {}
    for name in (*FUNCTIONS, *OTHER_ROLES):
        logical = OTHER_ROLES.get(name) or function_role(name)
        props = template.value(resources[logical]["Properties"])
        # A managed policy of the stack, put on the role inline: the same statements evaluated.
        attached = [ref.value for ref in resources[logical]["Properties"].get("ManagedPolicyArns", [])]
        managed = [{"PolicyName": policy, **template.value(resources[policy]["Properties"])}
                   for policy in attached + ATTACHED.get(name, [])]
        role = role_name(logical)
        trust = json.dumps(props["AssumeRolePolicyDocument"])
        try:
            arns[name] = iam.get_role(RoleName=role)["Role"]["Arn"]
            iam.update_assume_role_policy(RoleName=role, PolicyDocument=trust)
            for old in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role, PolicyName=old)
        except iam.exceptions.NoSuchEntityException:
            arns[name] = iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust, Path=props.get("Path", "/"),
                                         Tags=[DEPLOYMENT_TAG])["Role"]["Arn"]
        for policy in [*props.get("Policies", []), *managed]:
            document = dict(policy["PolicyDocument"])
            if (without or {}).get(name):
                document["Statement"] = [s for s in document["Statement"]
                                         if without[name] not in _listed(s.get("Action"))]
            if document["Statement"]:
                iam.put_role_policy(RoleName=role, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return arns


def _listed(value) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def operator_credentials(moto_endpoint: str) -> dict:
    """The operator role's session (the template's OperatorRole, which trusts the account's
    administrator here), as the environment variables the CLI reads."""
    sts = _client("sts", moto_endpoint)
    role = f"arn:aws:iam::{launcher.MOTO_ACCOUNT}:role/{role_name(OTHER_ROLES[OPERATOR_ROLE])}"
    keys = sts.assume_role(RoleArn=role, RoleSessionName="operator")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": keys["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
            "AWS_SESSION_TOKEN": keys["SessionToken"]}


def assume_as_lambda(moto_endpoint: str, role_arn: str, session_name: str) -> dict:
    """A function's credentials as the local Lambda gives them: its role, assumed in moto's STS as
    the Lambda service (accounts.SERVICE_HEADER), as environment variables."""
    sts = _client("sts", moto_endpoint)

    def as_lambda(request, **_):
        request.headers["x-localaws-service-principal"] = "lambda.amazonaws.com"

    sts.meta.events.register("before-sign.sts.AssumeRole", as_lambda)
    keys = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
    return {"AWS_ACCESS_KEY_ID": keys["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
            "AWS_SESSION_TOKEN": keys["SessionToken"]}


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/ami-rollout/target")


def bootstrap_zip(binary: Path) -> bytes:
    """The code of a function built in the target directory: a `bootstrap` that runs the binary
    where cargo left it. The local Lambda runs the real binary either way; zipping a debug build
    (seven of 70 to 95 MB) took 18 s of every deploy and 420 MB of disk per local AWS. The release
    zips of `make package` (profile "package") are deployed as they are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, f"#!/bin/sh\nexec {shlex.quote(str(binary.resolve()))} \"$@\"\n")
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
    """The plans bucket as the SAM template makes it, if missing (ministack serves S3): versioned,
    for the settings document."""
    s3 = _client("s3", sfn_endpoint)
    try:
        s3.create_bucket(Bucket=PLANS_BUCKET)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    s3.put_bucket_versioning(Bucket=PLANS_BUCKET, VersioningConfiguration={"Status": "Enabled"})


# The settings document (crates/core/src/store.rs SETTINGS_KEY), which `ami-rollout settings put`
# writes on AWS.
SETTINGS_KEY = "settings/settings.json"
SETTINGS = "ASG_CONFIGURATIONS"


def put_settings(sfn_endpoint: str, environment: dict | None) -> dict:
    """`environment` without its per-target settings, which go into the settings document as
    `ami-rollout settings put` puts them (the tests and the demo give them as ASG_CONFIGURATIONS,
    the variable they once were; without it, the document is deleted: every target has the
    defaults, as a configuration without the variable had). Returns the rest, for the functions'
    environment."""
    environment = dict(environment or {})
    s3 = _client("s3", sfn_endpoint)
    if SETTINGS in environment:
        s3.put_object(Bucket=PLANS_BUCKET, Key=SETTINGS_KEY, Body=environment.pop(SETTINGS).encode(),
                      ContentType="application/json")
    else:
        s3.delete_object(Bucket=PLANS_BUCKET, Key=SETTINGS_KEY)
    return environment


@functools.cache
def _followed_parameters() -> str:
    """AmiParameterNames at the template's default, as the deployed functions get it."""
    return stack.load()["Parameters"]["AmiParameterNames"]["Default"]


def function_environment(moto_endpoint: str, environment: dict | None, sfn_endpoint: str) -> dict:
    variables = {f"AWS_ENDPOINT_URL_{s}": moto_endpoint for s in launcher.MOTO_SERVICES}
    variables.update({"AWS_ENDPOINT_URL_SFN": sfn_endpoint, "AWS_ENDPOINT_URL_S3": sfn_endpoint,
                      "AWS_ENDPOINT_URL_SNS": sfn_endpoint,
                      "HOLDS_TABLE": HOLDS_TABLE, "PLANS_BUCKET": PLANS_BUCKET,
                      # The template sets it from AWS::AccountId: the functions' own account.
                      "HOME_ACCOUNT_ID": launcher.MOTO_ACCOUNT,
                      "RUST_LOG": "info",
                      # The parameters the deployment follows: the template's default, unless given.
                      "FOLLOWED_PARAMETERS": _followed_parameters(),
                      **(environment or {})})
    variables.setdefault("APPROVAL_TOPIC_ARN", _topic_and_queue(sfn_endpoint, APPROVAL_TOPIC, APPROVAL_QUEUE, raw=True)[0])
    if clock.VARIABLE in os.environ:
        # The functions read "now" from the local AWS's calendar clock (clock.py).
        variables["AMI_ROLLOUT_CLOCK"] = os.environ[clock.VARIABLE]
    return {"Variables": variables}


def configure(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None) -> None:
    """Changes only the functions' configuration (what a SAM parameter change does)."""
    lam, _ = clients(sfn_endpoint)
    environment = put_settings(sfn_endpoint, environment)
    for name in FUNCTIONS:
        lam.update_function_configuration(
            FunctionName=f"ami-rollout-{name}",
            Environment=function_environment(moto_endpoint, environment, sfn_endpoint))


def _topic_and_queue(sfn_endpoint: str, topic: str, queue: str, raw: bool) -> tuple[str, str, str]:
    """A topic (made if missing) with a queue subscribed to it; (topic ARN, queue URL, queue ARN)."""
    sns, sqs = _client("sns", sfn_endpoint), _client("sqs", sfn_endpoint)
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if not any(s["Endpoint"] == queue_arn for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]):
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                      Attributes={"RawMessageDelivery": "true" if raw else "false"})
    return topic_arn, url, queue_arn


def route_rules(sfn_endpoint: str, template: stack.Stack, names) -> dict:
    """Puts the template's rules `names` (those whose condition holds) on the local bus with their
    pattern, state and targets, and lets EventBridge invoke the functions among the targets.
    Returns rule name -> ARN."""
    events, lam = _client("events", sfn_endpoint), _client("lambda", sfn_endpoint)
    rules = template.resources("AWS::Events::Rule")
    arns = {}
    for name in names:
        if name not in rules:
            continue
        # Dead-letter queues are not deployed here.
        raw = dict(rules[name]["Properties"])
        raw["Targets"] = [{k: v for k, v in t.items() if k != "DeadLetterConfig"} for t in raw["Targets"]]
        props = template.value(raw)
        arn = events.put_rule(Name=name, EventPattern=json.dumps(props["EventPattern"]),
                              State=props.get("State", "ENABLED"), Description=props.get("Description", ""))["RuleArn"]
        targets = props["Targets"]
        events.put_targets(Rule=name, Targets=targets)
        for target in targets:
            if ":function:" not in target["Arn"]:
                continue
            try:
                lam.add_permission(FunctionName=target["Arn"], StatementId=name, Action="lambda:InvokeFunction",
                                   Principal="events.amazonaws.com", SourceArn=arn, SourceAccount=arn.split(":")[4])
            except lam.exceptions.ResourceConflictException:
                pass  # already there from an earlier deploy
        arns[name] = arn
    return arns


def deploy_image_builder_pipe(sfn_endpoint: str, template: stack.Stack) -> str | None:
    """The template's Image Builder notification path, when ImageBuilderTopicArn is set: the topic
    (Image Builder's, made here), the queue subscribed to it as the template subscribes it, and the
    pipe from the queue to the state machine with the template's source and target parameters."""
    pipes = template.resources("AWS::Pipes::Pipe")
    if "ImageBuilderPipe" not in pipes:
        return None
    subscription = template.resources("AWS::SNS::Subscription")["ImageBuilderNotificationSubscription"]["Properties"]
    topic = template.value(subscription["TopicArn"]).rsplit(":", 1)[-1]
    _, _, queue_arn = _topic_and_queue(sfn_endpoint, topic, IMAGE_BUILDER_QUEUE,
                                       template.value(subscription["RawMessageDelivery"]))
    template.physical["ImageBuilderNotificationQueue.Arn"] = queue_arn
    template.physical["ImageBuilderPipeRole.Arn"] = ROLE
    props = template.value(pipes["ImageBuilderPipe"]["Properties"])
    client = _client("pipes", sfn_endpoint)
    try:
        client.delete_pipe(Name=IMAGE_BUILDER_PIPE)
    except client.exceptions.NotFoundException:
        pass
    client.create_pipe(Name=IMAGE_BUILDER_PIPE, **props)
    return queue_arn


def deploy(sfn_endpoint: str, moto_endpoint: str, environment: dict | None = None,
           profile: str = "debug", triggers: bool = False, parameters: dict | None = None) -> str:
    """Creates or updates the functions and the state machine; returns the state machine ARN.
    `profile` is the cargo profile whose binaries to deploy, or "package" for `make package`'s
    zips in dist/. `triggers` deploys the template's rules that start rollouts as well, with the
    template `parameters` given (the others at their defaults)."""
    lam, sfn = clients(sfn_endpoint)
    create_holds_table(moto_endpoint)
    create_plans_bucket(sfn_endpoint)
    environment = put_settings(sfn_endpoint, environment)
    roles = create_roles(moto_endpoint, parameters)
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
        config = dict(Runtime="provided.al2023", Handler="bootstrap", Role=roles[name], Timeout=120,
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
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=roles[STATE_MACHINE_ROLE])
    else:
        arn = sfn.create_state_machine(name=STATE_MACHINE, definition=definition, roleArn=roles[STATE_MACHINE_ROLE],
                                       type="STANDARD")["stateMachineArn"]
    wire(sfn_endpoint, arn, triggers, parameters)
    return arn


def wire(sfn_endpoint: str, machine: str, triggers: bool = False, parameters: dict | None = None) -> None:
    """The template's rules (and with `triggers`, those that start rollouts and the Image Builder
    pipe) for the deployed state machine `machine`; a wiring without triggers takes them away."""
    lam = _client("lambda", sfn_endpoint)
    topic_arn, _, _ = _topic_and_queue(sfn_endpoint, STATUS_TOPIC, STATUS_QUEUE, raw=True)
    hold_targets = lam.get_function(FunctionName="ami-rollout-hold-targets")["Configuration"]["FunctionArn"]
    template = stack.Stack({"RolloutStateMachine": machine, "HoldTargetsFunction.Arn": hold_targets,
                            "StatusTopic": topic_arn, "EventsRole.Arn": ROLE}, parameters,
                           region=launcher.REGION, account=launcher.MOTO_ACCOUNT, name=STATE_MACHINE)
    if not triggers:
        remove_triggers(sfn_endpoint)
    route_rules(sfn_endpoint, template, ALWAYS_RULES + (TRIGGER_RULES if triggers else ()))
    if triggers:
        deploy_image_builder_pipe(sfn_endpoint, template)


def remove_triggers(sfn_endpoint: str) -> None:
    """Takes the rules and the pipe that start rollouts away (a deploy without `triggers`)."""
    events, pipes = _client("events", sfn_endpoint), _client("pipes", sfn_endpoint)
    for name in TRIGGER_RULES:
        if not any(r["Name"] == name for r in events.list_rules(NamePrefix=name)["Rules"]):
            continue
        ids = [t["Id"] for t in events.list_targets_by_rule(Rule=name)["Targets"]]
        if ids:
            events.remove_targets(Rule=name, Ids=ids)
        events.delete_rule(Name=name)
    try:
        pipes.delete_pipe(Name=IMAGE_BUILDER_PIPE)
    except pipes.exceptions.NotFoundException:
        pass


def approval_messages(sfn_endpoint: str) -> list[str]:
    """What the approval gates told the approvers since the last call (the topic's queue, emptied)."""
    return _drain(sfn_endpoint, APPROVAL_QUEUE)


def status_messages(sfn_endpoint: str) -> list[str]:
    """What the status topic said since the last call (its subscribed queue, emptied)."""
    return _drain(sfn_endpoint, STATUS_QUEUE)


def _drain(sfn_endpoint: str, queue: str) -> list[str]:
    sqs = _client("sqs", sfn_endpoint)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    said = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return said
        for m in messages:
            said.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def main(argv=None) -> None:
    """`python -m localaws deploy` (`make local-deploy`): the stack on the running local AWS, with
    the debug binaries `make build` made, as the end-to-end tests deploy it; prints the state
    machine's ARN."""
    import argparse
    import os
    parser = argparse.ArgumentParser(prog="localaws deploy", description=main.__doc__.split(";")[0])
    parser.add_argument("--sfn-endpoint", default=os.environ.get("LOCALAWS_SFN"))
    parser.add_argument("--moto-endpoint", default=os.environ.get("LOCALAWS_MOTO"))
    parser.add_argument("--triggers", action="store_true", help="the rules that start rollouts too")
    args = parser.parse_args(argv)
    if not (args.sfn_endpoint and args.moto_endpoint):
        raise SystemExit("deploy: no endpoints; source infra/local/.run/env (written by `make local-up`)")
    print(deploy(args.sfn_endpoint, args.moto_endpoint, triggers=args.triggers))

