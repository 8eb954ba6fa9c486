"""What AWS caps, the local AWS caps: a function's environment is at most 4 KB, so per-target
settings live in the settings document (S3, versioned) whatever their size, and each plan names
the version it was made from."""

import json
import unittest

from botocore.exceptions import ClientError

from tests.e2e.test_rollout import BASE_SETTINGS, Harness
from localaws import deploy  # noqa: E402  (test_rollout puts infra/local on the path)


class DeployLimits(Harness):
    def test_an_environment_over_4_kb_is_refused_as_lambda_refuses_it(self):
        names = ",".join(f"group-{i:04d}" for i in range(400))  # about 4.4 KB
        with self.assertRaises(ClientError) as refused:
            deploy.configure(self.sfn, self.moto, {"ASG_CONFIGURATIONS": json.dumps(BASE_SETTINGS),
                                                   "TARGET_ASGS": names})
        error = refused.exception.response["Error"]
        self.assertEqual(error["Code"], "InvalidParameterValueException")
        self.assertIn("exceeded the 4KB limit", error["Message"])

    def test_settings_of_20_kb_roll_out_and_the_plan_names_their_version(self):
        settings = dict(BASE_SETTINGS)
        for i in range(200):  # targets of other fleets, as a large organisation's document has
            settings[f"service-{i:03d}-capacity"] = {"wave": 2 + i % 5, "minHealthyPercentage": 90,
                                                     "bakeSeconds": 600, "alarmNames": [f"service-{i:03d}-5xx"]}
        text = json.dumps(settings)
        self.assertGreater(len(text), 20_000)
        self.configure(settings)
        s3 = deploy._client("s3", self.sfn)
        version = s3.head_object(Bucket=deploy.PLANS_BUCKET, Key=deploy.SETTINGS_KEY)["VersionId"]
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)
        name = result["arn"].rsplit(":", 1)[-1]
        plan = json.load(s3.get_object(Bucket=deploy.PLANS_BUCKET, Key=f"plans/{name}/plan.json")["Body"])
        self.assertEqual(plan["settingsVersion"], version)


if __name__ == "__main__":
    unittest.main()
