"""A private local AWS (moto + our extensions, no ministack) for one test class: started on a
free loopback port before its tests, stopped after. LOCALAWS_PLAIN=1 starts plain moto instead,
to show which tests the extensions make pass."""

import json
import os
import subprocess
import sys
import unittest
import urllib.request
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[1]


def lambda_role(moto_endpoint: str, name: str = "test") -> str:
    """A role the local Lambda may assume for a test's functions (it assumes each function's role
    in moto's STS, as Lambda does: the role must exist and trust lambda.amazonaws.com), allowed
    everything: these tests are about the engine, not IAM. Tagged as deployed, it outlives
    POST /_localaws/reset as the functions using it do."""
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        Tags=[{"Key": "localaws:deployment", "Value": "tests"}])["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return arn


def request(url, body=None, method="POST"):
    """A call to the control endpoint: JSON in, JSON out."""
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method)) as answer:
        return json.load(answer)


class LocalServerTestCase(unittest.TestCase):
    endpoint: str
    control: str

    @classmethod
    def setUpClass(cls):
        command = [sys.executable, "-m", "localaws.server", "--port", "0", "--parent-pid", str(os.getpid())]
        if os.environ.get("LOCALAWS_PLAIN") == "1":
            command.append("--plain")
        cls.server = subprocess.Popen(command, cwd=LOCAL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = cls.server.stdout.readline().split()
        if len(first) != 2 or first[0] != "listening":
            cls.server.kill()
            raise RuntimeError("the local AWS did not start")
        cls.endpoint = f"http://127.0.0.1:{first[1]}"
        cls.control = f"{cls.endpoint}/_localaws"

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        cls.server.stdout.close()
