"""Each function's role, and the state machine's, holds what its steps need, and the local AWS proves
it: with one statement of a role left out, the step that needs it is refused as AWS refuses it
(whether moto or ministack serves the call), and the rollout ends failed (or rolled back) naming
the action. The roles are the template's (deploy.create_roles); every other scenario runs with all
of their statements."""

import unittest

from tests.e2e.test_rollout import Harness, post
from localaws import deploy, rollout  # noqa: E402  (test_rollout puts infra/local on the path)


class LeastPrivilege(Harness):
    def tearDown(self):
        deploy.create_roles(self.moto)  # every statement back for the next scenario
        super().tearDown()

    def without(self, function, action):
        deploy.create_roles(self.moto, without={function: action})

    def assert_refused(self, result, action):
        said = result["log"] + (result.get("cause") or "")
        self.assertEqual(result["status"], "FAILED", result["log"])
        self.assertIn(f"is not authorized to perform: {action}", said)

    def test_resolve_ami_without_reading_images_refuses_before_anything_changes(self):
        self.without("resolve-ami", "ec2:DescribeImages")
        result = self.run_rollout()
        self.assert_refused(result, "ec2:DescribeImages")
        self.assertIn("UnauthorizedOperation", result["cause"])
        self.assert_untouched()

    def test_update_template_without_writing_versions_changes_nothing(self):
        self.without("update-template", "ec2:CreateLaunchTemplateVersion")
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assert_refused(result, "ec2:CreateLaunchTemplateVersion")
        self.assert_untouched(["web"])

    def test_start_refresh_without_starting_refreshes_is_refused(self):
        self.without("start-refresh", "autoscaling:StartInstanceRefresh")
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["web"]})
        self.assert_refused(result, "autoscaling:StartInstanceRefresh")
        self.assertEqual(self.new_refreshes("web"), [])

    def test_the_health_check_without_listing_services_rolls_an_ecs_group_back(self):
        # What the first deploy would have done to every ECS target before ListServices was
        # granted on "*": the check is refused and the group goes back.
        self.without("check-ecs-health", "ecs:ListServices")
        result = self.run_rollout(payload={"amiId": self.golden, "targets": ["ecs-batch-capacity"]})
        self.assert_refused(result, "ecs:ListServices")
        self.assert_back_as_before("ecs-batch-capacity")

    def test_the_rollback_without_refreshing_back_fails_naming_the_action(self):
        # An alarm after a successful refresh: going back is a refresh of the rollback's own.
        self.without("rollback", "autoscaling:StartInstanceRefresh")
        self.configure({"*": {"minHealthyPercentage": 50, "bakeSeconds": 60, "alarmNames": ["web-5xx"]}})
        execution = rollout.start(self.sfn, self.machine, {"amiId": self.golden, "targets": ["web"]})
        self.wait_for("the refresh to succeed", lambda: [r["Status"] for r in self.new_refreshes("web")] == ["Successful"])
        post(f"{self.control}/alarm", {"name": "web-5xx", "state": "ALARM"})
        result = self.watch(execution)
        self.assert_refused(result, "autoscaling:StartInstanceRefresh")
        self.assertEqual([r["Status"] for r in self.new_refreshes("web")], ["Successful"], "nothing went back")

    def test_hold_targets_without_writing_holds_takes_nothing(self):
        self.without("hold-targets", "dynamodb:UpdateItem")
        result = self.run_rollout()
        self.assert_refused(result, "dynamodb:UpdateItem")
        self.assert_untouched()

    def test_resolve_ami_without_writing_the_plan_refuses_before_anything_changes(self):
        # S3 is served by ministack: the function's session is checked there too.
        self.without("resolve-ami", "s3:PutObject")
        result = self.run_rollout()
        self.assert_refused(result, "s3:PutObject")
        self.assertIn("AccessDenied", result["cause"])
        self.assert_untouched()

    def test_the_state_machine_without_invoking_the_functions_starts_nothing(self):
        self.without(deploy.STATE_MACHINE_ROLE, "lambda:InvokeFunction")
        result = self.run_rollout()
        self.assertEqual(result["error"], "Lambda.AWSLambdaException", result["log"])
        self.assert_refused(result, "lambda:InvokeFunction")
        self.assert_untouched()

    def test_the_state_machine_without_starting_its_children_rolls_out_no_wave(self):
        self.without(deploy.STATE_MACHINE_ROLE, "states:StartExecution")
        result = self.run_rollout()
        self.assert_refused(result, "states:StartExecution")
        self.assert_untouched()

    def test_the_state_machine_without_reading_the_waves_rolls_out_no_wave(self):
        self.without(deploy.STATE_MACHINE_ROLE, "s3:GetObject")
        result = self.run_rollout()
        self.assert_refused(result, "s3:GetObject")
        self.assertIn("States.ItemReaderFailed", result["log"])
        self.assert_untouched()


if __name__ == "__main__":
    unittest.main()
