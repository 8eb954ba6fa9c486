"""Notifications arrive: every AWS service that publishes to an SNS topic of the template is let in
by the topic's policy and, the topic being encrypted, by its KMS key's policy.

AWS refuses such a publish silently (the rule's FailedInvocations, the alarm's history), so no
local run shows it; this static check must. The publishers are derived from the template: a rule
with a target on the topic publishes as events.amazonaws.com, an alarm with the topic among its
actions as cloudwatch.amazonaws.com. What AWS documents (SNS developer guide, "Enable compatibility
between event sources from AWS services and encrypted topics"):
- the AWS managed aws/sns key's policy cannot be changed, so no AWS service can publish to a topic
  it encrypts: the key must be a customer managed key whose policy lets the service use it;
- aws:SourceAccount / aws:SourceArn / aws:SourceOrgID in the key policy are "not supported for
  EventBridge-to-encrypted topics": EventBridge's requests to KMS are modelled without them, so a
  key statement conditioned on them does not let EventBridge in (and nothing would arrive).
The checker is itself tested: on the template before the fix and on broken variants of this one.
Run with infra/check's venv: make validate.
"""

import copy
import json
import re
import unittest
from dataclasses import dataclass
from pathlib import Path

from policies import ACCOUNT, admits, listed, load, symbolic

BEFORE_FIX = Path(__file__).resolve().parent / "fixtures/template-before-notification-fix.yaml"
EVENTS, CLOUDWATCH = "events.amazonaws.com", "cloudwatch.amazonaws.com"
# What SNS asks KMS for on a publisher's behalf (the key policy grants kms:GenerateDataKey*).
KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
ALARM_ACTIONS = ("AlarmActions", "OKActions", "InsufficientDataActions")
AWS_MANAGED_ALIAS = re.compile(r"(^|:)alias/aws/")
# The detail of a Step Functions "Execution Status Change" event (EventBridge event reference).
EXECUTION_DETAIL = {"executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate", "input",
                    "inputDetails", "output", "outputDetails", "error", "cause"}


@dataclass(frozen=True)
class Publisher:
    service: str
    name: str  # logical id
    arns: frozenset  # the symbolic forms of its ARN


def arn_forms(name: str, resource: dict) -> frozenset:
    forms = {f"${{{name}.Arn}}"}
    props = resource.get("Properties", {})
    if resource["Type"] == "AWS::CloudWatch::Alarm" and symbolic(props.get("AlarmName")):
        forms.add(f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:{ACCOUNT}:alarm:{symbolic(props['AlarmName'])}")
    if resource["Type"] == "AWS::Events::Rule" and symbolic(props.get("Name")):
        forms.add(f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:{ACCOUNT}:rule/{symbolic(props['Name'])}")
    return frozenset(forms)


def publishers(resources: dict, topic: str) -> list[Publisher]:
    """The rules and alarms of the template that publish to `topic`."""
    refs = {f"${{{topic}}}"}
    found = []
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Events::Rule":
            if any(symbolic(target.get("Arn")) in refs for target in props.get("Targets", [])):
                found.append(Publisher(EVENTS, name, arn_forms(name, resource)))
        elif resource["Type"] == "AWS::CloudWatch::Alarm":
            if any(symbolic(action) in refs for key in ALARM_ACTIONS for action in listed(props.get(key, []))):
                found.append(Publisher(CLOUDWATCH, name, arn_forms(name, resource)))
    return found


def request(publisher: Publisher, to: str, secure: bool = True) -> dict[str, set[str]]:
    """The condition keys of a publisher's request to SNS (`to="topic"`) or, through SNS, to KMS
    (`to="key"`)."""
    context = {"aws:SecureTransport": {str(secure).lower()}}
    if not (to == "key" and publisher.service == EVENTS):
        context |= {"aws:SourceArn": set(publisher.arns), "aws:SourceAccount": {ACCOUNT}}
    return context


def topic_key(resources: dict, topic: str) -> tuple[str | None, str | None]:
    """(the logical id of the KMS key encrypting `topic`, a problem with its key)."""
    value = resources[topic].get("Properties", {}).get("KmsMasterKeyId")
    if value is None:
        return None, None
    text = symbolic(value)
    if text is None:
        return None, f"{topic}: cannot tell which key KmsMasterKeyId {value} is"
    if AWS_MANAGED_ALIAS.search(text):
        return None, (f"{topic} is encrypted with the AWS managed key {text}, whose policy lets no "
                      "AWS service publish to it")
    aliases = {symbolic(r["Properties"].get("AliasName")): n for n, r in resources.items()
               if r["Type"] == "AWS::KMS::Alias"}
    ref = re.fullmatch(r"\$\{(\w+)(?:\.\w+)?\}", text)
    name = ref[1] if ref and ref[1] in resources else aliases.get(text)
    if name and resources[name]["Type"] == "AWS::KMS::Alias":
        target = re.fullmatch(r"\$\{(\w+)(?:\.\w+)?\}", symbolic(resources[name]["Properties"]["TargetKeyId"]) or "")
        name = target[1] if target else None
    if name and resources.get(name, {}).get("Type") == "AWS::KMS::Key":
        return name, None
    return None, f"{topic} is encrypted with {text}, which is not a KMS key of this template"


def topic_policies(resources: dict, topic: str) -> list[str]:
    return [name for name, r in resources.items() if r["Type"] == "AWS::SNS::TopicPolicy"
            and f"${{{topic}}}" in {symbolic(t) for t in r["Properties"]["Topics"]}]


def notification_problems(template: dict) -> list[str]:
    """Every publisher a topic's policy or key policy would refuse, and every topic key that
    cannot let a service in."""
    resources = template["Resources"]
    problems = []
    for topic in [n for n, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]:
        senders = publishers(resources, topic)
        if not senders:
            continue
        key, problem = topic_key(resources, topic)
        problems += [problem] if problem else []
        policies = topic_policies(resources, topic)
        if len(policies) != 1:
            problems.append(f"{topic} has {len(policies)} topic policies {policies}; its publishers need exactly one")
        for sender in senders:
            for policy in policies[:1]:
                document = resources[policy]["Properties"]["PolicyDocument"]
                if not admits(document, sender.service, "sns:Publish", request(sender, "topic")):
                    problems.append(f"{policy} does not let {sender.service} publish to {topic} for {sender.name}")
            if key:
                document = resources[key]["Properties"]["KeyPolicy"]
                for action in KMS_ACTIONS:
                    if not admits(document, sender.service, action, request(sender, "key")):
                        problems.append(f"{key}'s key policy does not let {sender.service} {action} "
                                        f"for {sender.name} (publishing to {topic})")
    return problems


class NotificationsArrive(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load()
        cls.resources = cls.template["Resources"]
        cls.senders = {p.name: p for p in publishers(cls.resources, "StatusTopic")}

    def test_every_publisher_of_every_topic_is_let_in(self):
        self.assertEqual(notification_problems(self.template), [])

    def test_the_publishers_are_found(self):
        # Guards the derivation: the two status rules and the four alarms publish to the status topic.
        self.assertEqual({n: p.service for n, p in self.senders.items()}, {
            "ExecutionStatusRule": EVENTS, "ExecutionSucceededRule": EVENTS,
            "ExecutionsFailedAlarm": CLOUDWATCH, "HoldReleaseFailedAlarm": CLOUDWATCH,
            "DriftAlarm": CLOUDWATCH, "ScheduleFailedAlarm": CLOUDWATCH})

    def test_the_status_topic_key_is_a_customer_managed_key_of_this_template(self):
        key, problem = topic_key(self.resources, "StatusTopic")
        self.assertIsNone(problem)
        self.assertEqual(self.resources[key]["Type"], "AWS::KMS::Key")
        self.assertIs(self.resources[key]["Properties"]["EnableKeyRotation"], True)
        aliases = [r for r in self.resources.values() if r["Type"] == "AWS::KMS::Alias"
                   and symbolic(r["Properties"]["TargetKeyId"]) == f"${{{key}}}"]
        self.assertEqual(len(aliases), 1)

    def test_the_key_policy_lets_both_services_use_the_key(self):
        key, problem = topic_key(self.resources, "StatusTopic")
        self.assertIsNotNone(key, problem)
        policy = self.resources[key]["Properties"]["KeyPolicy"]
        for name in ("ExecutionStatusRule", "ExecutionsFailedAlarm"):
            sender = self.senders[name]
            for action in KMS_ACTIONS:
                self.assertTrue(admits(policy, sender.service, action, request(sender, "key")), (name, action))
        # The account administers its key (through IAM), so it can never become unmanageable.
        root = [s for s in policy["Statement"] if s["Effect"] == "Allow" and s.get("Action") == "kms:*"]
        self.assertEqual([symbolic(s["Principal"]["AWS"]) for s in root],
                         ["arn:${AWS::Partition}:iam::${AWS::AccountId}:root"])

    def test_the_topic_policy_lets_both_services_publish_over_tls_only(self):
        (policy,) = topic_policies(self.resources, "StatusTopic")
        document = self.resources[policy]["Properties"]["PolicyDocument"]
        for sender in self.senders.values():
            self.assertTrue(admits(document, sender.service, "sns:Publish", request(sender, "topic")), sender)
            self.assertFalse(admits(document, sender.service, "sns:Publish", request(sender, "topic", secure=False)),
                             sender)

    def test_an_alarm_of_another_stack_cannot_use_the_key(self):
        key, problem = topic_key(self.resources, "StatusTopic")
        self.assertIsNotNone(key, problem)
        stranger = Publisher(CLOUDWATCH, "Stranger", frozenset(
            {"arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:someone-else"}))
        self.assertFalse(admits(self.resources[key]["Properties"]["KeyPolicy"], CLOUDWATCH, "kms:Decrypt",
                                request(stranger, "key")))

    def rendered(self, rule: str, detail: dict) -> str:
        """The text a subscriber of the status topic reads for an event with this `detail`."""
        (target,) = self.resources[rule]["Properties"]["Targets"]
        self.assertIn("InputTransformer", target, "the topic would get the raw event JSON")
        transformer = target["InputTransformer"]
        paths = transformer["InputPathsMap"]
        for variable, path in paths.items():
            self.assertRegex(path, r"^\$\.detail\.\w+$", variable)
            self.assertIn(path.removeprefix("$.detail."), EXECUTION_DETAIL, variable)
        template = symbolic(transformer["InputTemplate"])
        used = set(re.findall(r"<([\w.-]+)>", template))
        self.assertEqual(used, set(paths), "every placeholder is defined and every variable used")
        # Text output: each line one JSON string (EventBridge's documented multi-line form).
        for line in template.splitlines():
            self.assertIsInstance(json.loads(line), str, line)
        text = template.replace("${AWS::StackName}", "ami-rollout").replace("${AWS::Region}", "eu-west-1")
        for variable, path in paths.items():
            text = text.replace(f"<{variable}>", detail[path.removeprefix("$.detail.")])
        return "\n".join(json.loads(line) for line in text.splitlines())

    def test_the_status_message_is_short_readable_text(self):
        arn = "arn:aws:states:eu-west-1:123456789012:execution:ami-rollout:run-1"
        link = ("Execution: https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1"
                f"#/v2/executions/details/{arn}")
        failed = {"name": "run-1", "status": "FAILED", "error": "RolloutFailed", "cause": "group web: rolled back",
                  "executionArn": arn}
        self.assertEqual(self.rendered("ExecutionStatusRule", failed), (
            "State machine ami-rollout: execution run-1 ended FAILED.\n"
            "Error: RolloutFailed\n"
            "Cause: group web: rolled back\n" + link))
        # A success has no Error and Cause to show (they would read "null").
        succeeded = {"name": "run-1", "status": "SUCCEEDED", "executionArn": arn}
        self.assertEqual(self.rendered("ExecutionSucceededRule", succeeded),
                         "State machine ami-rollout: execution run-1 ended SUCCEEDED.\n" + link)

    def test_every_ending_but_nothing_to_do_is_told_once(self):
        patterns = {rule: self.resources[rule]["Properties"]["EventPattern"]["detail"]
                    for rule in ("ExecutionStatusRule", "ExecutionSucceededRule")}
        statuses = [status for p in patterns.values() for status in p["status"]]
        self.assertEqual(sorted(statuses), ["ABORTED", "FAILED", "SUCCEEDED", "TIMED_OUT"])
        # The state machine's "Nothing to do" ends with the plan's answer as its output, which the
        # success rule leaves out.
        asl = json.loads((Path(__file__).resolve().parents[2] / "statemachine/rollout.asl.json").read_text())
        self.assertEqual(asl["States"]["Nothing to do"]["OutputPath"], "$.plan")
        self.assertEqual(patterns["ExecutionSucceededRule"]["output"], [{"anything-but": {"wildcard": '*"nothingToDo"*'}}])
        # The state machine is named after the stack, as the first line says.
        self.assertEqual(symbolic(self.resources["RolloutStateMachine"]["Properties"]["Name"]), "${AWS::StackName}")


class TheCheckCatchesBrokenShapes(unittest.TestCase):
    """The checker reports what AWS would refuse: the template before the fix, and this one
    broken in the ways that silently stop notifications."""

    def setUp(self):
        self.template = load()
        self.resources = self.template["Resources"]

    def test_the_template_before_the_fix(self):
        problems = notification_problems(load(BEFORE_FIX))
        self.assertEqual(problems, [
            "StatusTopic is encrypted with the AWS managed key alias/aws/sns, whose policy lets no AWS service "
            "publish to it",
            "StatusTopicPolicy does not let cloudwatch.amazonaws.com publish to StatusTopic for ExecutionsFailedAlarm",
        ])

    def test_source_conditions_on_eventbridge_in_the_key_policy(self):
        statement = self.key_statement(EVENTS)
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                                  "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ExecutionStatusRule", "Arn"]}}}
        self.assertEqual(notification_problems(self.template), [
            f"StatusTopicKey's key policy does not let {EVENTS} {action} for {rule} "
            "(publishing to StatusTopic)" for rule in ("ExecutionStatusRule", "ExecutionSucceededRule")
            for action in KMS_ACTIONS])

    def test_no_key_statement_for_cloudwatch(self):
        policy = self.resources["StatusTopicKey"]["Properties"]["KeyPolicy"]
        policy["Statement"].remove(self.key_statement(CLOUDWATCH))
        # Each of the four alarms, for each of the two KMS actions.
        self.assertEqual(len(notification_problems(self.template)), 8)

    def test_an_alarm_the_key_policy_does_not_name(self):
        self.resources["ExecutionsFailedAlarm"]["Properties"]["AlarmName"] = "rollouts-failed"
        self.assertEqual(notification_problems(self.template), [
            f"StatusTopicKey's key policy does not let {CLOUDWATCH} {action} for ExecutionsFailedAlarm "
            "(publishing to StatusTopic)" for action in KMS_ACTIONS])

    def test_the_aws_managed_key(self):
        self.resources["StatusTopic"]["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"
        self.assertEqual(len(notification_problems(self.template)), 1)

    def test_a_new_alarm_the_topic_policy_does_not_name(self):
        alarm = copy.deepcopy(self.resources["ExecutionsFailedAlarm"])
        alarm["Properties"]["AlarmName"] = {"Fn::Sub": "${AWS::StackName}-another"}
        alarm["Properties"]["OKActions"] = alarm["Properties"].pop("AlarmActions")
        self.resources["AnotherAlarm"] = alarm
        self.assertEqual(notification_problems(self.template), [
            f"StatusTopicPolicy does not let {CLOUDWATCH} publish to StatusTopic for AnotherAlarm"])

    def test_an_unconditional_deny(self):
        policy = self.resources["StatusTopicPolicy"]["Properties"]["PolicyDocument"]
        policy["Statement"][-1].pop("Condition")
        # One per publisher.
        self.assertEqual(len(notification_problems(self.template)), 6)

    def key_statement(self, service: str) -> dict:
        (statement,) = [s for s in self.resources["StatusTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
                        if s.get("Principal", {}).get("Service") == service]
        return statement


if __name__ == "__main__":
    unittest.main()
