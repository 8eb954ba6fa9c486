"""The plans bucket is what the fleet-scale issue asks of it: encrypted, never public, reachable
only over TLS, and emptied after a few weeks, so a recent plan can still be read. Run with
infra/check's venv: make validate.
"""

import unittest

from policies import listed, load, symbolic


class PlansBucket(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template = load()
        cls.template = template
        cls.resources, cls.parameters = template["Resources"], template["Parameters"]
        cls.bucket = cls.resources["PlansBucket"]["Properties"]

    def test_encrypted_and_never_public(self):
        [rule] = self.bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        self.assertIn(rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"], ("AES256", "aws:kms"))
        self.assertEqual(set(self.bucket["PublicAccessBlockConfiguration"].values()), {True})
        self.assertEqual(len(self.bucket["PublicAccessBlockConfiguration"]), 4)

    def test_tls_only(self):
        policy = self.resources["PlansBucketPolicy"]["Properties"]
        self.assertEqual(symbolic(policy["Bucket"]), "${PlansBucket}")
        [deny] = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == "TlsOnly"]
        self.assertEqual((deny["Effect"], deny["Principal"], deny["Action"]), ("Deny", "*", "s3:*"))
        self.assertEqual(deny["Condition"], {"Bool": {"aws:SecureTransport": "false"}})
        self.assertEqual(sorted(symbolic(r) for r in listed(deny["Resource"])),
                         ["${PlansBucket.Arn}", "${PlansBucket.Arn}/*"])

    def test_approval_tokens_are_read_only_by_the_gate_and_the_approvers(self):
        policy = self.resources["PlansBucketPolicy"]["Properties"]["PolicyDocument"]
        [deny] = [s for s in policy["Statement"] if s.get("Sid") == "ApprovalTokensOnlyForTheGateAndTheApprovers"]
        self.assertEqual((deny["Effect"], deny["Principal"], deny["Action"]), ("Deny", "*", "s3:GetObject"))
        self.assertEqual(symbolic(deny["Resource"]), "${PlansBucket.Arn}/approvals/*")
        allowed = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::If"]
        self.assertEqual(allowed[0], "HasApprovers")
        self.assertIn("HoldTargetsRole", str(allowed[1]))
        self.assertIn("ApproverRoleArns", str(allowed[1]))
        self.assertIn("HoldTargetsRole", str(allowed[2]))
        self.assertNotIn("ApproverRoleArns", str(allowed[2]))

    def test_only_the_approvers_write_the_decisions_a_gate_obeys(self):
        # A task token is in the execution's history; the gate obeys only a decision, which no
        # one but the approvers may write, whatever else their policies allow.
        policy = self.resources["PlansBucketPolicy"]["Properties"]["PolicyDocument"]
        [deny] = [s for s in policy["Statement"] if s.get("Sid") == "DecisionsOnlyByTheApprovers"]
        self.assertEqual((deny["Effect"], deny["Principal"]), ("Deny", "*"))
        self.assertEqual(sorted(listed(deny["Action"])), ["s3:DeleteObject", "s3:PutObject"])
        self.assertEqual(symbolic(deny["Resource"]), "${PlansBucket.Arn}/decisions/*")
        has_approvers, with_approvers, without = deny["Condition"]["Fn::If"]
        self.assertEqual(has_approvers, "HasApprovers")
        self.assertEqual(list(with_approvers), ["ArnNotLike"])
        self.assertIn("ApproverRoleArns", str(with_approvers))
        self.assertNotIn("HoldTargetsRole", str(with_approvers), "the gate reads decisions, never writes one")
        self.assertEqual(without, {"Ref": "AWS::NoValue"}, "no approvers: no one decides")
        # The approvers' policy writes them; the gate's role only reads them.
        approver = self.resources["ApproverPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        self.assertIn("${PlansBucket.Arn}/decisions/*", [symbolic(s["Resource"]) for s in approver
                                                          if "s3:PutObject" in listed(s["Action"])])
        gate = [st for p in self.resources["HoldTargetsRole"]["Properties"]["Policies"]
                for st in p["PolicyDocument"]["Statement"] if "s3:PutObject" in listed(st["Action"])]
        self.assertNotIn("${PlansBucket.Arn}/decisions/*", [symbolic(r) for st in gate for r in listed(st["Resource"])])

    def test_plans_expire_after_weeks_not_days(self):
        rules = self.bucket["LifecycleConfiguration"]["Rules"]
        # Plans, outcomes, gates' requests and decisions expire; sources/ (the AMIs planned from
        # each parameter, which keep a scheduled check from rolling one out twice) is kept.
        self.assertEqual(sorted(r["Prefix"] for r in rules), ["approvals/", "decisions/", "plans/", "results/"])
        for rule in rules:
            self.assertEqual(rule["Status"], "Enabled")
            self.assertEqual(symbolic(rule["ExpirationInDays"]), "${PlanRetentionDays}")
        self.assertGreaterEqual(self.parameters["PlanRetentionDays"]["Default"], 14)

    def test_functions_reserve_no_concurrency_unless_asked(self):
        # Seven functions reserving 100 each need 800 of the account's concurrency (100 stay
        # unreserved), which new accounts do not have: a deploy would fail.
        self.assertEqual(self.parameters["FunctionConcurrency"]["Default"], "")
        reserved = self.template["Globals"]["Function"]["ReservedConcurrentExecutions"]
        self.assertIn("HasFunctionConcurrency", str(reserved))


if __name__ == "__main__":
    unittest.main()
