"""IAM for what ministack serves (Step Functions, S3, SNS, SQS, Lambda, EventBridge): the same
policies, sessions and evaluation as for moto's services (authorization.py), asked of moto, where
the roles and their sessions live (POST /_localaws/authorize).

- A request signed with a role session's keys (the functions, and anyone holding a session moto's
  STS issued) is authorized before ministack serves it: its IAM action and resource ARN as
  ministack's own AUTH mode derives them from the request (`ministack.core.iam_actions`, built from
  botocore's models and the Service Authorization Reference), with its S3 condition keys. Other
  keys (the account's administrator: the seed, the tests, the demo) are not checked, as in moto.
- The state machine acts as its role (the `roleArn` it was created with), where Step Functions
  calls other services for it: a Task's Lambda invoke (`lambda:InvokeFunction` on the function),
  a Distributed Map's ItemReader of a JSON object (`s3:GetObject`; a `listObjectsV2` reader, which
  the rollout does not use, is not checked), ResultWriter (`s3:PutObject`) and its child
  executions (`states:StartExecution` on the state machine). A refusal fails the state as AWS
  reports it: `Lambda.AWSLambdaException` for an invoke (from public reports: "... is not
  authorized to perform: lambda:InvokeFunction ..."), `States.ItemReaderFailed`,
  `States.ResultWriterFailed` (the ASL errors AWS documents for those), `States.Runtime` for a
  child execution that cannot be started (ours: AWS does not document it).

Resource policies (the bucket's, the topic's, the queue's) are not evaluated.
"""

import asyncio
import contextvars
import json
import logging
import os
import urllib.request

from ministack import app

log = logging.getLogger("localaws.ministack_iam")
# The role of the state machine whose execution is acting (set per Task and Map state).
acting_role = contextvars.ContextVar("acting_role", default=None)


def ask(question: dict) -> dict:
    """moto's answer: {"allowed": true} or {"allowed": false, "message": ...}. When moto cannot
    answer, the request is refused (fails closed) with a message that says so."""
    request = urllib.request.Request(f"{os.environ['LOCALAWS_MOTO']}/_localaws/authorize",
                                     data=json.dumps(question).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)
    except (OSError, ValueError) as failure:
        log.error("IAM: moto did not answer for %s: %s; refused", question.get("action"), failure)
        return {"allowed": False, "explicit": False, "principal": question.get("roleArn") or "(a role session)",
                "message": f"the local AWS could not decide {question.get('action')} ({failure}): refused"}


def refusal_for_role(role_arn: str | None, action: str, resource: str) -> str | None:
    """Why the role may not perform `action` on `resource` (None: it may, or no role acts)."""
    if not role_arn:
        return None
    answer = ask({"roleArn": role_arn, "action": action, "resource": resource})
    return None if answer["allowed"] else answer["message"]


def _request_refusal(method, path, headers, body, query_params, request_id):
    from ministack.core import iam_actions
    from ministack.core.responses import get_account_id

    access_key = app.extract_access_key_id(headers, query_params) or ""
    if not access_key.startswith("ASIA"):
        return None  # not a role session: the administrator, unchecked
    routing = app._routing_params(method, path, headers, body, query_params)
    service = app.detect_service(method, path, headers, routing)
    action = iam_actions.extract_iam_action(service, method, path, headers, body, routing)
    if action is None:
        return None
    region = app.extract_region(headers)
    resource = iam_actions.extract_resource_arn(service, method, path, headers, body, routing, region,
                                                get_account_id())
    if resource == "*" and action.startswith("states:"):
        resource = _named_in_body(body) or resource
    context = iam_actions.s3_service_context(action, query_params, path, headers) if service == "s3" else {}
    answer = ask({"accessKey": access_key, "action": action, "resource": resource, "region": region,
                  "context": {k.lower(): v for k, v in (context or {}).items()}})
    if answer["allowed"]:
        return None
    log.info("IAM: refused %s on %s: %s", action, resource, answer["message"])
    return iam_actions.access_denied_response(service, action, answer["principal"], request_id, headers=headers,
                                              resource_arn=resource, explicit_deny=answer.get("explicit", False),
                                              message=answer["message"])


def _named_in_body(body: bytes) -> str | None:
    """The resource a Step Functions request names (ministack's extraction leaves "*" for some,
    e.g. ListExecutions, which the SAR authorizes on the state machine or Map Run it lists)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return None
    return next((request[k] for k in ("executionArn", "mapRunArn", "stateMachineArn")
                 if isinstance(request, dict) and isinstance(request.get(k), str)), None)


def install(engine) -> None:
    """Checks every request of a role session, and the state machine's own calls (`engine`:
    ministack's Step Functions module, as localaws.stepfunctions patched it)."""
    original_dispatch = app._dispatch_service_request

    async def dispatch(method, path, headers, body, query_params, request_id):
        # Asked off the event loop: moto may be waiting on ministack meanwhile (an events flush).
        refused = await asyncio.to_thread(_request_refusal, method, path, headers, body, query_params, request_id)
        if refused is not None:
            return refused
        return await original_dispatch(method, path, headers, body, query_params, request_id)

    app._dispatch_service_request = dispatch

    original_call_lambda = engine._call_lambda

    def call_lambda(func_ref, event):
        from ministack.services import lambda_svc

        _, config, _ = lambda_svc._get_func_record_for_ref(func_ref)
        if config:
            why = refusal_for_role(acting_role.get(), "lambda:InvokeFunction", config.get("FunctionArn", func_ref))
            if why:
                raise engine._ExecutionError("Lambda.AWSLambdaException", why)
        return original_call_lambda(func_ref, event)

    engine._call_lambda = call_lambda

    original_read_items = engine._read_map_items

    def read_map_items(reader, effective, ctx):
        params = engine._resolve_params_obj(reader.get("Parameters") or reader.get("Arguments") or {}, effective, ctx)
        if not reader.get("Resource", "").endswith("s3:listObjectsV2"):
            why = refusal_for_role(acting_role.get(), "s3:GetObject",
                                   f"arn:aws:s3:::{params.get('Bucket')}/{params.get('Key')}")
            if why:
                raise engine._ExecutionError("States.ItemReaderFailed", why)
        return original_read_items(reader, effective, ctx)

    engine._read_map_items = read_map_items


def role_of(execution: dict, engine) -> str | None:
    """The role a state machine's execution acts as (a Map Run's child: its state machine's)."""
    machine = (execution.get("stateMachineArn") or "").split("/", 1)[0]
    return (engine._state_machines.get(machine) or {}).get("roleArn")
