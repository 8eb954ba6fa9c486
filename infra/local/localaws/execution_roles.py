"""A function runs with its execution role's credentials, as on AWS: the Lambda service assumes
the role (its trust policy must allow `lambda.amazonaws.com`) and hands the session's keys to the
function's environment. Here ministack's Lambda asks moto's STS for them (AssumeRole as the
Lambda service: accounts.SERVICE_HEADER), so every call a function makes to the fleet services is
signed by its role's session and checked against the role's policies (authorization.py).

ministack 1.5.33, without AUTH, gives every function the same fixed keys (its account id), which
moto serves as its all-powerful default identity. A role that does not exist or does not trust
Lambda fails the function's start, as AWS fails the invocation ("The role defined for the
function cannot be assumed by Lambda"). Sessions last an hour on AWS and are renewed by Lambda;
here they do not expire (moto does not check expiry).
"""

import os

import boto3
from ministack.core import lambda_runtime
from ministack.services import lambda_svc

SERVICE_HEADER = "x-localaws-service-principal"  # accounts.SERVICE_HEADER (moto's process)


def _sts():
    client = boto3.client("sts", endpoint_url=os.environ["LOCALAWS_MOTO"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    def as_lambda(request, **_):
        request.headers[SERVICE_HEADER] = "lambda.amazonaws.com"

    client.meta.events.register("before-sign.sts.AssumeRole", as_lambda)
    return client


def execution_credentials(config: dict) -> dict:
    answer = _sts().assume_role(RoleArn=config.get("Role", ""),
                                RoleSessionName=config.get("FunctionName", "function")[:64])
    keys = answer["Credentials"]
    return {"AWS_ACCESS_KEY_ID": keys["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
            "AWS_SESSION_TOKEN": keys["SessionToken"]}


def install() -> None:
    if os.environ.get("LOCALAWS_MOTO"):
        lambda_runtime.execution_credentials = execution_credentials
        lambda_svc.execution_credentials = execution_credentials
