"""parliament (an IAM policy linter built on the Service Authorization Reference) over every role
and managed policy of the templates in infra/aws, rendered as CloudFormation would render them
(localaws/stack.py evaluates the intrinsic functions; each resource a policy names gets an ARN of
its type's form).

A finding is suppressed only by the resource's own `Metadata: parliament: suppress:` entry naming
the issue and the action, with why and the source of that reading. Prints every finding and exits
1 if one is not suppressed (make check); --verbose shows the suppressed ones too. A suppression that no longer matches a finding fails too.
"""

import json
import sys
from pathlib import Path

from parliament import analyze_policy_string

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra/local"))
from localaws import stack  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
# Sample values for parameters without a default.
PARAMETERS = {"CentralAccountId": "210987654321", "ExternalId": "an-external-id",
              "OperatorPrincipalArn": "arn:aws:iam::210987654321:root",
              "RolloutStateMachineArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ami-rollout",
              "RepositoryName": "app", "CodeDeployApplication": "app", "CodeDeployGroup": "builder",
              "BuilderInstanceId": "i-0123456789abcdef0"}


class Physical(dict):
    """What a reference to a resource of the template names, by the resource's type."""

    def __init__(self, resources: dict):
        super().__init__()
        self.resources = resources

    def __contains__(self, name):
        return name.split(".")[0] in self.resources

    def __getitem__(self, name):
        logical = name.split(".")[0]
        kind = self.resources[logical]["Type"]
        low = logical.lower()
        return {
            "AWS::S3::Bucket": f"arn:aws:s3:::{low}" if name.endswith(".Arn") else low,
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{low}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{low}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{low}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{low}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{low}:*",
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{low}",
            "AWS::Serverless::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{low}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{low}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{low}",
            "AWS::CodePipeline::Pipeline": low,
        }.get(kind, f"arn:aws:unknown:{REGION}:{ACCOUNT}:{low}")


def documents(template_path: Path):
    """(resource, policy name, document, suppressions) for every policy of the template."""
    raw = stack.load(template_path)
    declared = raw.get("Parameters", {})
    template = stack.Stack(Physical(raw["Resources"]), {k: v for k, v in PARAMETERS.items() if k in declared},
                           account=ACCOUNT, region=REGION, template=raw)
    for name, resource in raw["Resources"].items():
        suppress = ((resource.get("Metadata") or {}).get("parliament") or {}).get("suppress", [])
        if resource["Type"] == "AWS::IAM::Role":
            props = template.value(resource["Properties"])
            for policy in props.get("Policies", []):
                yield name, policy["PolicyName"], policy["PolicyDocument"], suppress
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            yield name, "", template.value(resource["Properties"]["PolicyDocument"]), suppress


def actions_of(finding) -> set:
    detail = finding.detail
    if isinstance(detail, list):
        return {d["action"] if isinstance(d, dict) else d for d in detail}
    return {str(detail)}


def main() -> int:
    unsuppressed, used = 0, set()
    for path in sorted((ROOT / "infra/aws").glob("*.yaml")):
        for resource, policy, document, suppress in documents(path):
            findings = analyze_policy_string(json.dumps(document), include_community_auditors=False).findings
            for finding in findings:
                for action in sorted(actions_of(finding)):
                    where = f"{path.name} {resource}{'/' + policy if policy else ''}: {finding.issue} {action}"
                    match = next((i for i, s in enumerate(suppress)
                                  if s["issue"] == finding.issue and s["action"] == action), None)
                    if match is None:
                        unsuppressed += 1
                        print(f"FINDING {where}")
                    else:
                        used.add((path.name, resource, match))
                        if "--verbose" in sys.argv:
                            print(f"suppressed {where}: {suppress[match]['why']}")
    for path in sorted((ROOT / "infra/aws").glob("*.yaml")):
        raw = stack.load(path)
        for name, resource in raw["Resources"].items():
            for i, entry in enumerate(((resource.get("Metadata") or {}).get("parliament") or {}).get("suppress", [])):
                if not entry.get("why") or not entry.get("source"):
                    unsuppressed += 1
                    print(f"FINDING {path.name} {name}: a suppression without why and source")
                if (path.name, name, i) not in used:
                    unsuppressed += 1
                    print(f"FINDING {path.name} {name}: suppression {entry} matches no finding")
    print(f"iam lint: {unsuppressed} unsuppressed finding(s)")
    return 1 if unsuppressed else 0


if __name__ == "__main__":
    sys.exit(main())
