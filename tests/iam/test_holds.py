"""The template wires target holds the way DESIGN §9 says: a table of holds that outlives the
stack, the hold-targets function that the state machine calls and that EventBridge calls when an
execution is aborted or times out (with the event unchanged), and a place where a release that
failed ends up, which people are told about. Run with infra/check's venv: make validate.
"""

import re
import unittest

from policies import admits, listed, load, symbolic


class HoldsWiring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template = load()
        cls.resources, cls.globals = template["Resources"], template["Globals"]

    def test_the_holds_table(self):
        table = self.resources["HoldsTable"]
        self.assertEqual((table.get("DeletionPolicy"), table.get("UpdateReplacePolicy")), ("Retain", "Retain"))
        props = table["Properties"]
        self.assertEqual(props["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(props["KeySchema"], [{"AttributeName": "key", "KeyType": "HASH"}])
        self.assertEqual(props["AttributeDefinitions"], [{"AttributeName": "key", "AttributeType": "S"}])
        self.assertIs(props["SSESpecification"]["SSEEnabled"], True)
        self.assertIs(props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], True)

    def test_every_function_finds_the_table_and_the_plans_bucket(self):
        # Every function: the steps read the wave's stop signal from the table, resolve-ami writes
        # the plan to the bucket, hold-targets and rollback read it.
        variables = self.globals["Function"]["Environment"]["Variables"]
        self.assertEqual(symbolic(variables["HOLDS_TABLE"]), "${HoldsTable}")
        self.assertEqual(symbolic(variables["PLANS_BUCKET"]), "${PlansBucket}")
        for name, resource in self.resources.items():
            if resource["Type"] == "AWS::Serverless::Function":
                own = resource["Properties"].get("Environment", {}).get("Variables", {})
                self.assertFalse(set(own) & set(variables), f"{name} overrides the shared environment")

    def test_the_function_finds_its_zip(self):
        props = self.resources["HoldTargetsFunction"]["Properties"]
        self.assertEqual(props["CodeUri"], "../../dist/hold-targets/bootstrap.zip")
        self.assertEqual(symbolic(props["Role"]), "${HoldTargetsRole.Arn}")
        self.assertEqual(symbolic(props["LoggingConfig"]["LogGroup"]), "${HoldTargetsLogs}")

    def test_the_state_machine_may_invoke_every_function_it_is_given(self):
        given = self.resources["RolloutStateMachine"]["Properties"]["DefinitionSubstitutions"]
        self.assertEqual(symbolic(given["HoldTargetsFunctionArn"]), "${HoldTargetsFunction.Arn}")
        invokable = {symbolic(r) for policy in self.resources["StateMachineRole"]["Properties"]["Policies"]
                     for s in policy["PolicyDocument"]["Statement"] if "lambda:InvokeFunction" in listed(s["Action"])
                     for r in listed(s["Resource"])}
        self.assertEqual({symbolic(v) for k, v in given.items() if k.endswith("FunctionArn")}, invokable)

    def test_aborted_and_timed_out_executions_reach_the_function_unchanged(self):
        rule = self.resources["HoldReleaseRule"]["Properties"]
        pattern = rule["EventPattern"]
        self.assertEqual((pattern["source"], pattern["detail-type"]),
                         (["aws.states"], ["Step Functions Execution Status Change"]))
        self.assertEqual(sorted(pattern["detail"]["status"]), ["ABORTED", "TIMED_OUT"])
        self.assertEqual([symbolic(a) for a in pattern["detail"]["stateMachineArn"]], ["${RolloutStateMachine}"])
        (target,) = rule["Targets"]
        self.assertEqual(symbolic(target["Arn"]), "${HoldTargetsFunction.Arn}")
        self.assertFalse({"Input", "InputPath", "InputTransformer"} & set(target), "the event goes as is")
        self.assertTrue({"MaximumEventAgeInSeconds", "MaximumRetryAttempts"} <= set(target["RetryPolicy"]))
        permissions = [r["Properties"] for r in self.resources.values() if r["Type"] == "AWS::Lambda::Permission"
                       and symbolic(r["Properties"]["FunctionName"]) == "${HoldTargetsFunction}"]
        self.assertEqual([(p["Principal"], symbolic(p["SourceArn"])) for p in permissions],
                         [("events.amazonaws.com", "${HoldReleaseRule.Arn}")])

    def test_a_failed_release_is_kept_and_told(self):
        queue = "${HoldReleaseDeadLetterQueue.Arn}"
        target = self.resources["HoldReleaseRule"]["Properties"]["Targets"][0]
        self.assertEqual(symbolic(target["DeadLetterConfig"]["Arn"]), queue)
        function = self.resources["HoldTargetsFunction"]["Properties"]
        self.assertEqual(symbolic(function["DeadLetterQueue"]["TargetArn"]), queue)
        # EventBridge may write to the queue for this rule; the function's role may (Lambda writes
        # an asynchronous invocation's last failure with it).
        (policy,) = [r["Properties"]["PolicyDocument"] for r in self.resources.values()
                     if r["Type"] == "AWS::SQS::QueuePolicy"
                     and [symbolic(q) for q in r["Properties"]["Queues"]] == ["${HoldReleaseDeadLetterQueue}"]]
        rule = {"aws:SourceArn": {"${HoldReleaseRule.Arn}"}, "aws:SecureTransport": {"true"}}
        self.assertTrue(admits(policy, "events.amazonaws.com", "sqs:SendMessage", rule))
        other = {"aws:SourceArn": {"${ExecutionStatusRule.Arn}"}, "aws:SecureTransport": {"true"}}
        self.assertFalse(admits(policy, "events.amazonaws.com", "sqs:SendMessage", other))
        role = self.resources["HoldTargetsRole"]["Properties"]["Policies"]
        self.assertIn(queue, {symbolic(s["Resource"]) for p in role for s in p["PolicyDocument"]["Statement"]
                              if "sqs:SendMessage" in listed(s["Action"])})
        alarm = self.resources["HoldReleaseFailedAlarm"]["Properties"]
        self.assertEqual(symbolic(alarm["Dimensions"][0]["Value"]), "${HoldReleaseDeadLetterQueue.QueueName}")
        self.assertEqual([symbolic(a) for a in alarm["AlarmActions"]], ["${StatusTopic}"])

    def test_the_role_writes_only_the_hold_tag_and_reads_only_this_stacks_executions(self):
        statements = [s for p in self.resources["HoldTargetsRole"]["Properties"]["Policies"]
                      for s in p["PolicyDocument"]["Statement"]]
        (tags,) = [s for s in statements if "autoscaling:CreateOrUpdateTags" in listed(s["Action"])]
        self.assertEqual(sorted(listed(tags["Action"])), ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"])
        self.assertEqual(tags["Condition"]["ForAllValues:StringEquals"], {"aws:TagKeys": ["ami-rollout:held-by"]})
        self.assertEqual(tags["Condition"]["Null"], {"aws:TagKeys": "false"})
        (describe,) = [s for s in statements if "states:DescribeExecution" in listed(s["Action"])]
        for resource in listed(describe["Resource"]):
            self.assertRegex(symbolic(resource), re.escape(":execution:${AWS::StackName}") + r"[:/]\*$")
        (table,) = [s for s in statements if any(a.startswith("dynamodb:") for a in listed(s["Action"]))]
        self.assertEqual(symbolic(table["Resource"]), "${HoldsTable.Arn}")

    def test_the_rollback_role_may_check_its_ami(self):
        actions = {a for p in self.resources["RollbackRole"]["Properties"]["Policies"]
                   for s in p["PolicyDocument"]["Statement"] for a in listed(s["Action"])}
        self.assertIn("ec2:DescribeImages", actions)


if __name__ == "__main__":
    unittest.main()
