"""The functions' environment fits Lambda's 4 KB whatever the parameters: Lambda refuses a
function whose environment variables (names and values) exceed 4 KB in total (Lambda quotas).
Each variable's largest value is bounded by its parameter (MaxLength, MaxValue, AllowedValues,
AllowedPattern) or by what CloudFormation names the resource; per-target settings, which have no
bound, live in the settings document in S3 instead (store.rs, `ami-rollout settings`)."""

import re
import unittest

from policies import load

LAMBDA_ENVIRONMENT_LIMIT = 4096
STACK_NAME_MAX = 128  # CloudFormation
# What a reference to a stack resource names at most: CloudFormation names it
# `<stack>-<logical id>-<13 random characters>`, within the service's own limits.
REFERENCED = {
    "AWS::AccountId": 12,
    "PlansBucket": 63,  # S3 bucket names are at most 63 characters
    # arn:aws:sns:<region>:<account>:<stack>-ApprovalTopic-<suffix>
    "ApprovalTopic": len("arn:aws-us-gov:sns:ap-southeast-3:123456789012:") + STACK_NAME_MAX + len("-ApprovalTopic-") + 13,
    "HoldsTable": STACK_NAME_MAX + len("-HoldsTable-") + 13,
}


def largest(parameter: dict) -> int:
    if "AllowedValues" in parameter:
        return max(len(str(v)) for v in parameter["AllowedValues"])
    if parameter["Type"] == "Number":
        return len(str(parameter["MaxValue"]))
    if "MaxLength" in parameter:
        return int(parameter["MaxLength"])
    bound = re.search(r"\{\d+,(\d+)\}", parameter.get("AllowedPattern", ""))
    if bound:
        return int(bound.group(1))
    raise AssertionError(f"unbounded: {parameter}")


class FunctionEnvironment(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load()

    def bound(self, name: str, value) -> int:
        """The longest `value` can be: a reference's bound, or a join's parts and separators."""
        self.assertIsInstance(value, dict, f"{name}: only references and joins of them are bounded here")
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            if isinstance(parts, dict):  # a list parameter joined: as long as the parameter
                return self.bound(name, parts)
            return sum(self.bound(name, p) for p in parts) + len(separator) * (len(parts) - 1)
        ref = value.get("Ref")
        self.assertIsNotNone(ref, f"{name}: only references and joins of them are bounded here")
        parameters = self.template["Parameters"]
        if ref in parameters:
            return largest(parameters[ref])
        self.assertIn(ref, REFERENCED, f"{name}: how large can {ref} be?")
        return REFERENCED[ref]

    def sizes(self, function: dict) -> dict:
        """A function's variables as SAM gives them: the Globals', and its own over them."""
        variables = {**self.template["Globals"]["Function"]["Environment"]["Variables"],
                     **function["Properties"].get("Environment", {}).get("Variables", {})}
        return {name: len(name) + self.bound(name, value) for name, value in variables.items()}

    def test_every_variable_is_bounded_and_together_they_fit_4_kb(self):
        functions = {name: r for name, r in self.template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
        self.assertEqual(len(functions), 7)
        for name, function in functions.items():
            with self.subTest(function=name):
                sizes = self.sizes(function)
                # As AWS's refusal measures it: the variables as JSON ("name":"value", commas, braces).
                measured = sum(sizes.values()) + 6 * len(sizes) + 1
                self.assertLessEqual(measured, LAMBDA_ENVIRONMENT_LIMIT, sizes)

    def test_per_target_settings_are_not_in_the_environment(self):
        variables = self.template["Globals"]["Function"]["Environment"]["Variables"]
        self.assertNotIn("ASG_CONFIGURATIONS", variables)
        self.assertNotIn("AsgConfigurations", self.template["Parameters"])


if __name__ == "__main__":
    unittest.main()
