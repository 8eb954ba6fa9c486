"""The local Lambda refuses a function environment over 4 KB, as Lambda does (lambda_service.py)."""

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localaws.lambda_service import environment_refusal  # noqa: E402


def body(variables):
    return json.dumps({"FunctionName": "f", "Environment": {"Variables": variables}}).encode()


class EnvironmentLimit(unittest.TestCase):
    def test_over_4_kb_is_refused_on_create_and_on_update(self):
        big = {"TARGET_ASGS": "x" * 4100}
        for method, path in (("POST", "/2015-03-31/functions"), ("PUT", "/2015-03-31/functions/f/configuration")):
            status, headers, answer = environment_refusal(method, path, body(big))
            self.assertEqual((status, headers["x-amzn-errortype"]), (400, "InvalidParameterValueException"), path)
            self.assertIn(b"exceeded the 4KB limit. String measured: {", answer)

    def test_up_to_4_kb_and_the_local_endpoints_are_taken(self):
        local = {f"AWS_ENDPOINT_URL_{s}": "http://127.0.0.1:55555" for s in ("EC2", "ECS", "SSM", "STS")} | {
            "AMI_ROLLOUT_CLOCK": "x" * 200}
        near = {"TARGET_ASGS": "x" * 4000}
        self.assertIsNone(environment_refusal("POST", "/2015-03-31/functions", body(near | local)))

    def test_other_requests_are_not_looked_at(self):
        self.assertIsNone(environment_refusal("POST", "/2015-03-31/functions/f/invocations", body({"A": "x" * 5000})))


if __name__ == "__main__":
    unittest.main()
