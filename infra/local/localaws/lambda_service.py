"""The local Lambda (ministack's) where it differs from AWS in what the rollout depends on.

1. A function runs with its execution role's credentials, as on AWS: the Lambda service assumes
the role (its trust policy must allow `lambda.amazonaws.com`) and hands the session's keys to the
function's environment. Here ministack's Lambda asks moto's STS for them (AssumeRole as the
Lambda service: accounts.SERVICE_HEADER), so every call a function makes to the fleet services is
signed by its role's session and checked against the role's policies (authorization.py).

ministack 1.5.33, without AUTH, gives every function the same fixed keys (its account id), which
moto serves as its all-powerful default identity. A role that does not exist or does not trust
Lambda fails the function's start, as AWS fails the invocation ("The role defined for the
function cannot be assumed by Lambda"). Sessions last an hour on AWS and are renewed by Lambda;
here they do not expire (moto does not check expiry).

2. A function's environment is at most 4 KB (Lambda quotas: "the total size of all environment
variables"): CreateFunction and UpdateFunctionConfiguration over it are refused with
InvalidParameterValueException, measured as the JSON of the variables as AWS's message shows it
("... exceeded the 4KB limit. String measured: {...}", from public reports). The variables only
the local AWS sets (AWS_ENDPOINT_URL_*, AMI_ROLLOUT_CLOCK) are not counted. ministack takes any size.
"""

import json
import os
import re

from ministack.core import lambda_runtime
from ministack.core.responses import error_response_json
from ministack.services import lambda_svc

from . import deploy

def execution_credentials(config: dict) -> dict:
    return deploy.assume_as_lambda(os.environ["LOCALAWS_MOTO"], config.get("Role", ""),
                                   config.get("FunctionName", "function"))


ENVIRONMENT_LIMIT = 4096
LOCAL_ONLY = re.compile(r"AWS_ENDPOINT_URL_\w+|AMI_ROLLOUT_CLOCK")
CONFIGURES = re.compile(r"/2015-03-31/functions(/[^/]+/configuration)?/?$")


def environment_refusal(method: str, path: str, body: bytes):
    """AWS's refusal of a function configuration whose environment is over 4 KB, or None."""
    if not ((method == "POST" and path.rstrip("/").endswith("/functions")) or
            (method == "PUT" and path.endswith("/configuration"))) or not CONFIGURES.search(path):
        return None
    try:
        variables = ((json.loads(body or b"{}").get("Environment") or {}).get("Variables") or {})
    except (ValueError, AttributeError):
        return None
    measured = json.dumps({k: v for k, v in variables.items() if not LOCAL_ONLY.fullmatch(k)},
                          separators=(",", ":"))
    if len(measured.encode()) <= ENVIRONMENT_LIMIT:
        return None
    return error_response_json(
        "InvalidParameterValueException",
        "Lambda was unable to configure your environment variables because the environment variables you have "
        f"provided exceeded the 4KB limit. String measured: {measured}", 400)


_original_handle_request = lambda_svc.handle_request


async def handle_request(method, path, headers, body, query_params):
    refused = environment_refusal(method, path, body)
    if refused is not None:
        return refused
    return await _original_handle_request(method, path, headers, body, query_params)


def install() -> None:
    if os.environ.get("LOCALAWS_MOTO"):
        lambda_runtime.execution_credentials = execution_credentials
        lambda_svc.execution_credentials = execution_credentials
    lambda_svc.handle_request = handle_request
