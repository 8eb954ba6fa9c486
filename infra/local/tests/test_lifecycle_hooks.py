"""Auto Scaling lifecycle hooks as the local AWS fires them (localaws/lifecycle.py, refresh.py): new
instances wait in Pending:Wait and terminating ones in Terminating:Wait until CompleteLifecycleAction
(by token or instance id) or the hook's HeartbeatTimeout (its DefaultResult); heartbeats restart the
timeout up to the GlobalTimeout; an abandoned launch is terminated, replaced and recorded as a
Cancelled scaling activity; an instance refresh waits for its new instances' hooks, succeeds when
they continue and fails (its StatusReason quoting the abandonment) when they keep abandoning.

The tokens come from the "EC2 Instance-launch Lifecycle Action" events, as on AWS: the server
sends service events to LOCALAWS_EVENTS, here a small collector in the test process. The server
runs at LOCALAWS_TIME_SCALE=1, so only POST /_localaws/advance moves time noticeably.

Run: infra/local/.venv/bin/python -m unittest discover -s infra/local/tests -p 'test_lifecycle*'
"""

import http.server
import json
import os
import threading
import unittest

import boto3
from botocore.exceptions import ClientError

from localserver import LocalServerTestCase, request

REGION = "us-east-1"
LAUNCHING, TERMINATING = "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"
ABANDONED = "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token {} was abandoned: {}"


class _Collector(http.server.BaseHTTPRequestHandler):
    """Takes the server's service events (POST /_localaws/events, PutEvents entries)."""
    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.extend(body["Entries"])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class LifecycleHooks(LocalServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        threading.Thread(target=cls.collector.serve_forever, daemon=True).start()
        saved = {k: os.environ.get(k) for k in ("LOCALAWS_EVENTS", "LOCALAWS_TIME_SCALE")}
        os.environ.update(LOCALAWS_EVENTS=f"http://127.0.0.1:{cls.collector.server_port}", LOCALAWS_TIME_SCALE="1")
        try:
            super().setUpClass()
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.collector.shutdown()

    def setUp(self):
        request(f"{self.control}/reset", {})
        _Collector.received.clear()
        client = lambda service: boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,  # noqa: E731
                                              aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ec2, self.asg = client("ec2"), client("autoscaling")
        ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.template = self.ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
            "ImageId": ami, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        self.ec2.create_launch_template_version(LaunchTemplateId=self.template, SourceVersion="1",
                                                LaunchTemplateData={"ImageId": ami})
        self.asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=0, MaxSize=6, DesiredCapacity=2,
                                           AvailabilityZones=[f"{REGION}a"],
                                           LaunchTemplate={"LaunchTemplateId": self.template, "Version": "1"})
        self.original = set(self.instances())

    # --- helpers -----------------------------------------------------------------------------------

    def hook(self, name="ready", transition=LAUNCHING, **kwargs):
        self.asg.put_lifecycle_hook(AutoScalingGroupName="web", LifecycleHookName=name,
                                    LifecycleTransition=transition, **kwargs)

    def instances(self) -> dict:
        """Instance id -> lifecycle state."""
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"]
        return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}

    def in_state(self, lifecycle: str) -> list:
        return sorted(i for i, s in self.instances().items() if s == lifecycle)

    def actions(self, transition=LAUNCHING) -> list:
        """The lifecycle action events the group sent so far, oldest first."""
        request(f"{self.control}/events-flush", {})
        kind = "launch" if transition == LAUNCHING else "terminate"
        return [json.loads(e["Detail"]) for e in _Collector.received
                if e["Source"] == "aws.autoscaling" and e["DetailType"] == f"EC2 Instance-{kind} Lifecycle Action"]

    def advance(self, seconds):
        request(f"{self.control}/advance", {"seconds": seconds})
        self.asg.describe_auto_scaling_groups()  # a request: the simulation moves on

    def ec2_state(self, instance_id) -> str:
        [reservation] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservation["Instances"][0]["State"]["Name"]

    def complete(self, result="CONTINUE", **which):
        self.asg.complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="ready",
                                           LifecycleActionResult=result, **which)

    def activities(self) -> list:
        return self.asg.describe_scaling_activities(AutoScalingGroupName="web")["Activities"]

    def refresh(self) -> dict:
        return self.asg.describe_instance_refreshes(AutoScalingGroupName="web")["InstanceRefreshes"][0]

    def start_refresh(self, **preferences):
        self.asg.start_instance_refresh(AutoScalingGroupName="web", DesiredConfiguration={
            "LaunchTemplate": {"LaunchTemplateId": self.template, "Version": "2"}},
            Preferences={"InstanceWarmup": 60, "MinHealthyPercentage": 50, **preferences})

    def scale_out(self) -> str:
        """One more instance; the one the launch hook holds."""
        self.asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=3)
        [waiting] = self.in_state("Pending:Wait")
        return waiting

    # --- the hooks ---------------------------------------------------------------------------------

    def test_describe_lifecycle_hooks_shows_what_was_put_and_the_global_timeout(self):
        self.hook(HeartbeatTimeout=300, DefaultResult="CONTINUE", NotificationMetadata="m")
        self.hook(HeartbeatTimeout=120)  # an update changes only what it gives
        self.hook("drain", TERMINATING, HeartbeatTimeout=7200)
        hooks = {h["LifecycleHookName"]: h for h in
                 self.asg.describe_lifecycle_hooks(AutoScalingGroupName="web")["LifecycleHooks"]}
        ready, drain = hooks["ready"], hooks["drain"]
        self.assertEqual((ready["LifecycleTransition"], ready["HeartbeatTimeout"], ready["DefaultResult"],
                          ready["NotificationMetadata"], ready["GlobalTimeout"]),
                         (LAUNCHING, 120, "CONTINUE", "m", 12000))  # 100 x HeartbeatTimeout
        self.assertEqual((drain["DefaultResult"], drain["GlobalTimeout"]), ("ABANDON", 172800))  # 48 h at most
        self.assertNotIn("RoleARN", ready)  # none was given (moto made one up)
        with self.assertRaises(ClientError) as refused:
            self.hook("quick", HeartbeatTimeout=10)
        self.assertEqual(refused.exception.response["Error"]["Code"], "ValidationError")

    def test_a_launch_hook_holds_the_new_instance_until_continue_by_token(self):
        self.hook()
        waiting = self.scale_out()
        self.advance(600)
        self.assertEqual(self.instances()[waiting], "Pending:Wait")
        self.asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=3)
        self.assertEqual(len(self.instances()), 3, "a waiting instance counts toward the capacity")
        [event] = self.actions()
        self.assertEqual((event["EC2InstanceId"], event["LifecycleHookName"], event["LifecycleTransition"]),
                         (waiting, "ready", LAUNCHING))
        self.complete(LifecycleActionToken=event["LifecycleActionToken"])
        self.assertEqual(self.instances()[waiting], "InService")
        self.assertEqual(self.activities(), [], "no failure recorded")

    def test_continue_by_instance_id(self):
        self.hook()
        waiting = self.scale_out()
        self.complete(InstanceId=waiting)
        self.assertEqual(self.instances()[waiting], "InService")

    def test_every_launch_hook_must_continue(self):
        self.hook()
        self.hook("second")
        waiting = self.scale_out()
        self.complete(InstanceId=waiting)
        self.assertEqual(self.instances()[waiting], "Pending:Wait", "the second hook still holds it")
        self.asg.complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="second",
                                           LifecycleActionResult="CONTINUE", InstanceId=waiting)
        self.assertEqual(self.instances()[waiting], "InService")

    def test_abandon_terminates_and_replaces_the_instance_and_records_a_cancelled_activity(self):
        self.hook()
        waiting = self.scale_out()
        [event] = self.actions()
        self.complete("ABANDON", InstanceId=waiting)
        instances = self.instances()
        self.assertNotIn(waiting, instances)
        self.assertEqual(self.ec2_state(waiting), "terminated")
        [replacement] = self.in_state("Pending:Wait")
        self.assertNotEqual(replacement, waiting)
        self.assertEqual(len(instances), 3)
        [activity] = self.activities()
        message = ABANDONED.format(event["LifecycleActionToken"], "Lifecycle Action Completed with ABANDON Result")
        self.assertEqual((activity["StatusCode"], activity["StatusMessage"], activity["Description"]),
                         ("Cancelled", message, f"Launching a new EC2 instance: {waiting}.  Status Reason: {message}"))
        self.assertRegex(activity["Cause"], r"^At \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ an instance was started in response "
                                            r"to a difference between desired and actual capacity, increasing the "
                                            r"capacity from 2 to 3\.$")

    def test_heartbeat_timeout_takes_the_default_result_continue(self):
        self.hook(HeartbeatTimeout=60, DefaultResult="CONTINUE")
        waiting = self.scale_out()
        self.advance(50)
        self.assertEqual(self.instances()[waiting], "Pending:Wait")
        self.advance(20)
        self.assertEqual(self.instances()[waiting], "InService")

    def test_heartbeat_timeout_takes_the_default_result_abandon(self):
        self.hook(HeartbeatTimeout=60)  # DefaultResult ABANDON
        waiting = self.scale_out()
        [event] = self.actions()
        self.advance(70)
        self.assertNotIn(waiting, self.instances())
        self.assertEqual([a["StatusMessage"] for a in self.activities()],
                         [ABANDONED.format(event["LifecycleActionToken"], "Heartbeat Timeout")])

    def test_a_heartbeat_restarts_the_timeout(self):
        self.hook(HeartbeatTimeout=100, DefaultResult="CONTINUE")
        waiting = self.scale_out()
        self.advance(80)
        self.asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="web", LifecycleHookName="ready",
                                                   InstanceId=waiting)
        self.advance(80)  # 160 s after the launch, 80 after the heartbeat
        self.assertEqual(self.instances()[waiting], "Pending:Wait")
        self.advance(30)
        self.assertEqual(self.instances()[waiting], "InService")

    def test_heartbeats_stop_at_the_global_timeout(self):
        self.hook(HeartbeatTimeout=30)  # GlobalTimeout 3000 s; DefaultResult ABANDON
        waiting = self.scale_out()
        [event] = self.actions()
        waited = 0
        while waiting in self.instances():
            self.asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="web", LifecycleHookName="ready",
                                                       LifecycleActionToken=event["LifecycleActionToken"])
            self.advance(25)
            waited += 25
            self.assertLess(waited, 3100)
        self.assertGreaterEqual(waited, 3000)
        self.assertEqual(self.activities()[0]["StatusMessage"],
                         ABANDONED.format(event["LifecycleActionToken"], "Global Timeout"))

    def test_a_terminating_hook_holds_the_instance_until_complete(self):
        self.hook("drain", TERMINATING)
        victim = sorted(self.original)[0]
        self.asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
        instances = self.instances()
        self.assertEqual(instances[victim], "Terminating:Wait")
        self.assertEqual(self.ec2_state(victim), "running")
        self.assertEqual(sorted(s for i, s in instances.items() if i != victim), ["InService", "InService"],
                         "the replacement is launched at once")
        [event] = self.actions(TERMINATING)
        self.assertEqual((event["EC2InstanceId"], event["LifecycleHookName"]), (victim, "drain"))
        self.asg.complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="drain",
                                           LifecycleActionResult="ABANDON", InstanceId=victim)
        self.assertNotIn(victim, self.instances())
        self.assertEqual(self.ec2_state(victim), "terminated", "ABANDON terminates too")

    def test_scale_in_waits_for_the_terminating_hook_then_continue_terminates(self):
        self.hook("drain", TERMINATING)
        self.asg.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
        [victim] = self.in_state("Terminating:Wait")
        self.assertEqual(len(self.in_state("InService")), 1)
        self.asg.complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="drain",
                                           LifecycleActionResult="CONTINUE", InstanceId=victim)
        self.assertEqual(list(self.instances().values()), ["InService"])
        self.assertEqual(self.ec2_state(victim), "terminated")

    def test_a_deleted_group_takes_its_hooks_and_waiting_instances_with_it(self):
        self.hook()
        waiting = self.scale_out()
        self.asg.delete_auto_scaling_group(AutoScalingGroupName="web", ForceDelete=True)
        self.assertEqual({self.ec2_state(i) for i in self.original | {waiting}}, {"terminated"})
        self.asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=0, MaxSize=2, DesiredCapacity=1,
                                           AvailabilityZones=[f"{REGION}a"],
                                           LaunchTemplate={"LaunchTemplateId": self.template, "Version": "1"})
        self.assertEqual(self.asg.describe_lifecycle_hooks(AutoScalingGroupName="web")["LifecycleHooks"], [])
        self.assertEqual(list(self.instances().values()), ["InService"])

    def test_completing_an_action_that_is_not_there_is_a_validation_error(self):
        self.hook()
        nope = "00000000-0000-0000-0000-000000000000"
        for call, which, message in (
                (self.complete, {"LifecycleActionToken": nope}, f"No active Lifecycle Action found with token {nope}"),
                (self.complete, {"InstanceId": sorted(self.original)[0]},
                 f"No active Lifecycle Action found with instance ID {sorted(self.original)[0]}"),
                (lambda **w: self.asg.record_lifecycle_action_heartbeat(
                    AutoScalingGroupName="web", LifecycleHookName="ready", **w), {"LifecycleActionToken": nope},
                 f"No active Lifecycle Action found with token {nope}")):
            with self.subTest(which=which):
                with self.assertRaises(ClientError) as refused:
                    call(**which)
                error = refused.exception.response["Error"]
                self.assertEqual((error["Code"], error["Message"]), ("ValidationError", message))

    # --- an instance refresh meets them ------------------------------------------------------------

    def test_a_refresh_waits_for_the_launch_hook_and_succeeds_once_it_continues(self):
        self.hook(HeartbeatTimeout=7200)
        self.start_refresh()
        self.advance(5000)  # beyond the one-hour stall timeout: waiting on a hook is not a failure
        refresh = self.refresh()
        self.assertEqual((refresh["Status"], refresh["PercentageComplete"]), ("InProgress", 0))
        self.assertIn("Pending:Wait", refresh["StatusReason"])
        answered = set()
        for _ in range(10):
            for event in self.actions():
                if event["LifecycleActionToken"] not in answered:
                    answered.add(event["LifecycleActionToken"])
                    self.complete(LifecycleActionToken=event["LifecycleActionToken"])
            self.advance(60)
            if self.refresh()["Status"] == "Successful":
                break
        self.assertEqual(self.refresh()["Status"], "Successful")
        self.assertTrue(set(self.instances()).isdisjoint(self.original))
        self.assertEqual(set(self.instances().values()), {"InService"})

    def test_a_refresh_succeeds_when_the_hook_times_out_with_continue(self):
        self.hook(DefaultResult="CONTINUE")  # HeartbeatTimeout 3600
        self.start_refresh()
        for _ in range(6):
            self.advance(3600)
        self.assertEqual(self.refresh()["Status"], "Successful")

    def test_a_launch_first_refresh_keeps_the_old_instances_while_the_new_ones_wait(self):
        self.hook()
        self.start_refresh(MinHealthyPercentage=100, MaxHealthyPercentage=200)
        waiting = self.in_state("Pending:Wait")
        self.assertEqual((len(waiting), set(self.in_state("InService"))), (2, self.original))
        for instance_id in waiting:
            self.complete(InstanceId=instance_id)
        self.advance(60)
        self.assertEqual(self.refresh()["Status"], "Successful")
        self.assertEqual(sorted(self.instances()), waiting)

    def test_a_refresh_sends_old_instances_through_the_terminating_hook(self):
        self.hook("drain", TERMINATING)
        self.start_refresh(InstanceWarmup=0)
        for _ in range(5):
            self.advance(60)
        self.assertEqual(self.refresh()["Status"], "Successful")
        self.assertEqual(set(self.in_state("Terminating:Wait")), self.original, "old ones wait for their hook")
        self.assertEqual(len(self.in_state("InService")), 2)
        for instance_id in self.original:
            self.asg.complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="drain",
                                               LifecycleActionResult="CONTINUE", InstanceId=instance_id)
        self.assertEqual(len(self.instances()), 2)
        self.assertEqual({self.ec2_state(i) for i in self.original}, {"terminated"})

    def test_an_abandoned_replacement_is_not_counted_and_is_launched_again(self):
        self.hook()
        self.start_refresh()
        [first] = self.in_state("Pending:Wait")  # MinHealthyPercentage 50 of 2: one at a time
        self.complete("ABANDON", InstanceId=first)
        [again] = self.in_state("Pending:Wait")
        self.assertNotEqual(again, first)
        refresh = self.refresh()
        self.assertEqual((refresh["Status"], refresh["PercentageComplete"], refresh["InstancesToUpdate"]),
                         ("InProgress", 0, 2))
        self.assertIn(self.activities()[0]["StatusMessage"], refresh["StatusReason"], "the evidence, while it runs")
        self.complete(InstanceId=again)
        self.advance(60)
        self.assertEqual(self.refresh()["PercentageComplete"], 50)

    def test_a_refresh_whose_launch_hook_keeps_abandoning_fails_quoting_the_activity(self):
        self.hook(HeartbeatTimeout=300)  # DefaultResult ABANDON; nobody answers
        self.start_refresh()
        for _ in range(15):
            self.advance(300)
            if self.refresh()["Status"] != "InProgress":
                break
        refresh = self.refresh()
        self.assertEqual(refresh["Status"], "Failed")
        last = self.activities()[0]
        self.assertEqual(last["StatusCode"], "Cancelled")
        self.assertEqual(refresh["StatusReason"], "Instance refresh failed: new instances did not complete their "
                                                  f"launch within 3600 seconds. {last['StatusMessage']}")
        self.assertTrue(last["StatusMessage"].endswith("was abandoned: Heartbeat Timeout"))
        tokens = {e["LifecycleActionToken"]: e["LifecycleHookName"] for e in self.actions()}
        abandoned = last["StatusMessage"].split("token ")[1].split(" ")[0]
        self.assertEqual(tokens[abandoned], "ready", "the event names the hook of the abandoned token")
        self.assertGreater(sum(a["StatusCode"] == "Cancelled" for a in self.activities()), 1, "launched again")
        self.assertEqual(len(self.original & set(self.instances())), 1, "the old instance not yet replaced stays")

    def test_with_auto_rollback_the_abandoned_refresh_rolls_back(self):
        self.hook(HeartbeatTimeout=300)
        self.start_refresh(AutoRollback=True)
        for _ in range(15):
            self.advance(300)
            if self.refresh()["Status"] != "InProgress":
                break
        refresh = self.refresh()
        self.assertEqual(refresh["Status"], "RollbackInProgress")
        self.assertIn("was abandoned: Heartbeat Timeout", refresh["RollbackDetails"]["RollbackReason"])


if __name__ == "__main__":
    unittest.main()
