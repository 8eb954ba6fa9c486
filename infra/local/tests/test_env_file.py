"""The env file `make local-up` writes is read by the AWS SDKs and the AWS CLI as they are: every
`AWS_ENDPOINT_URL_<SERVICE>` name is one botocore (the AWS CLI's SDK) resolves for its service, so
`source infra/local/.run/env` points any client at the local AWS."""

import os
import unittest
from unittest import mock

import boto3

from localaws import launcher

# The boto3 client of each service the env file names.
CLIENTS = {"EC2": "ec2", "AUTO_SCALING": "autoscaling", "ECS": "ecs", "CLOUDWATCH": "cloudwatch",
           "SSM": "ssm", "STS": "sts", "DYNAMODB": "dynamodb", "ORGANIZATIONS": "organizations",
           "KMS": "kms", "IMAGEBUILDER": "imagebuilder", "SFN": "stepfunctions", "LAMBDA": "lambda",
           "IAM": "iam", "CLOUDWATCH_LOGS": "logs", "EVENTBRIDGE": "events", "S3": "s3", "SNS": "sns",
           "SQS": "sqs", "PIPES": "pipes"}


class EnvFile(unittest.TestCase):
    def test_every_endpoint_variable_is_the_one_botocore_reads(self):
        lines = launcher.env_lines(4566, 4567)
        variables = dict(line.split("=", 1) for line in lines)
        endpoints = {k: v for k, v in variables.items() if k.startswith("AWS_ENDPOINT_URL_")}
        self.assertEqual(set(endpoints), {f"AWS_ENDPOINT_URL_{s}" for s in CLIENTS})
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with mock.patch.dict(os.environ, {**clean, **variables}, clear=True):
            session = boto3.session.Session()
            for service, client in CLIENTS.items():
                with self.subTest(service=service):
                    url = session.client(client).meta.endpoint_url
                    self.assertEqual(url, endpoints[f"AWS_ENDPOINT_URL_{service}"])


if __name__ == "__main__":
    unittest.main()
