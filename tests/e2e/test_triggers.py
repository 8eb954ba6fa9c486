"""End to end: every trigger form the seeds use, each started the way AWS starts it.

A CI/CD pipeline's start is CodePipeline's Step Functions invoke action as the snippet
infra/aws/pipeline-rollout-stage.yaml configures it: its input (variables resolved as CodePipeline
resolves them), its execution name (prefix and action execution id), and its wait for the outcome.

Parameter writes reach the state machine through the local EventBridge bus, whose rules are the SAM
template's own (read from infra/aws/template.yaml, not copied); Image Builder builds emit their
state change event to the same bus and publish their notification to a topic, from which the
template's queue and pipe start the execution; the public-parameter schedule's input is the
template's. Each scenario asserts what an operator sees: which executions started, how they ended,
their "nothing to do" reason, the AMI on the group, and what the status topic said.

Only `web` is a target here (TARGET_ASGS), so a rollout is one canary group.
"""

import json
import sys
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra/local"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from localaws import deploy, stack  # noqa: E402
from tests.e2e.test_rollout import Harness, post  # noqa: E402

PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/golden-linux"
IMAGE_TOPIC = "arn:aws:sns:us-east-1:123456789012:golden-linux-builds"
PIPELINE_SNIPPET = Path(__file__).resolve().parents[2] / "infra/aws/pipeline-rollout-stage.yaml"
ECS_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
PARAMETERS = {"ImageBuilderImageName": "golden-linux", "ImageBuilderPipelineArns": PIPELINE,
              "ImageBuilderTopicArn": IMAGE_TOPIC, "PublicAmiParameter": ECS_PARAMETER}


class TriggerHarness(Harness):
    """The fleet with the template's trigger rules and pipe wired to the state machine."""

    PARAMETERS = PARAMETERS

    def setUp(self):
        # Seeding writes /ami/linux/prod: no rule may start a rollout of it.
        deploy.wire(self.sfn, self.machine, triggers=False)
        super().setUp()
        post(f"{self.control}/events-flush", {})
        deploy.wire(self.sfn, self.machine, triggers=True, parameters=self.PARAMETERS)
        deploy.status_messages(self.sfn)  # what earlier scenarios left on the status topic
        self.said = []  # what the status topic said during this scenario
        self.known = self.executions()

    def configure(self, settings=None, **env):
        super().configure(settings, TARGET_TAG="", TARGET_ASGS="web", IMAGE_BUILDER_PIPELINES=PIPELINE,
                          FOLLOWED_PARAMETERS=f"/ami/linux/prod,{ECS_PARAMETER}", **env)

    def executions(self):
        return {e["executionArn"] for e in self.sfn_client.list_executions(stateMachineArn=self.machine)["executions"]}

    def new_executions(self, count=1, settle=3.0, timeout=30):
        """The executions started since the scenario began, once `count` have (and no more came
        within `settle` seconds)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            new = self.executions() - self.known
            if len(new) >= count:
                time.sleep(settle)
                return sorted(self.executions() - self.known)
            time.sleep(0.2)
        self.fail(f"{count} execution(s) expected, {len(self.executions() - self.known)} started")

    def none_started(self, settle=4.0):
        time.sleep(settle)
        self.assertEqual(self.executions() - self.known, set(), "no execution may start")

    def described(self, execution):
        return self.sfn_client.describe_execution(executionArn=execution)

    def nothing_to_do(self, execution):
        """The reason an execution that ended with nothing to do gives, in its output."""
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        entered = [e["stateEnteredEventDetails"]["name"] for e in result["events"] if "stateEnteredEventDetails" in e]
        self.assertEqual(entered[-3:], ["Resolve AMI and plan", "Is there anything to do?", "Nothing to do"])
        return json.loads(self.described(execution)["output"])["nothingToDo"]

    def put_parameter(self, value):
        self.aws["ssm"].put_parameter(Name="/ami/linux/prod", Value=value, Type="String",
                                      DataType="aws:ec2:image", Overwrite=True)

    def build_image(self, **body):
        """A build of the pipeline finishing; it notifies our topic unless `topicArn` says otherwise."""
        return post(f"{self.control}/image-build",
                    {"name": "golden-linux", "version": "1.0.5", "pipeline": PIPELINE, "topicArn": IMAGE_TOPIC, **body})

    def wait_for_status(self, name, timeout=20):
        """The status topic's message about execution `name`, as a subscriber receives it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.said += deploy.status_messages(self.sfn)
            for message in self.said:
                if name in message:
                    return message
            time.sleep(0.5)
        self.fail(f"the status topic said nothing about {name}: {self.said}")


class ParameterTriggers(TriggerHarness):
    def test_a_parameter_write_starts_the_rollout_through_the_bus(self):
        self.put_parameter(self.golden)
        [execution] = self.new_executions()
        event = json.loads(self.described(execution)["input"])
        self.assertEqual((event["source"], event["detail-type"]), ("aws.ssm", "Parameter Store Change"))
        self.assertEqual(event["detail"]["name"], "/ami/linux/prod")
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", self.golden)
        self.assert_untouched(set(self.groups) - {"web"})
        said = self.wait_for_status(execution.rsplit(":", 1)[-1])
        self.assertIn("ended SUCCEEDED", said)


class BrownfieldParameterTriggers(ParameterTriggers):
    """The same write on a fleet with a past: web has refreshes, template versions and a
    `$Latest`/`$Default` reference of its own, asserted kept by assert_rolled_out."""

    BROWNFIELD = True


class CloudTrailTriggers(TriggerHarness):
    """With the template's CloudTrail rule enabled, one write starts two executions (both rules
    match it, as on AWS): they overlap, and the second leaves the group to the first."""

    PARAMETERS = {**PARAMETERS, "CloudTrailParameterRule": "ENABLED"}

    def test_a_cloudtrail_put_parameter_call_starts_one_too_and_the_group_rolls_out_once(self):
        self.put_parameter(self.golden)
        executions = self.new_executions(count=2)
        self.assertEqual(len(executions), 2, executions)
        kinds = sorted(json.loads(self.described(e)["input"])["detail-type"] for e in executions)
        self.assertEqual(kinds, ["AWS API Call via CloudTrail", "Parameter Store Change"])
        [trail] = [e for e in executions if json.loads(self.described(e)["input"])["detail-type"].startswith("AWS API")]
        call = json.loads(self.described(trail)["input"])["detail"]
        self.assertEqual((call["eventName"], call["requestParameters"]["name"]), ("PutParameter", "/ami/linux/prod"))
        results = self.watch_all(executions)
        self.assertEqual([r["status"] for r in results], ["SUCCEEDED", "SUCCEEDED"], [r["log"] for r in results])
        self.assert_rolled_out("web", self.golden)  # one new version, one refresh


class ImageBuilderTriggers(TriggerHarness):
    def test_an_image_of_the_configured_pipeline_rolls_out_its_ami_of_the_region(self):
        image = self.build_image(regions=["us-east-1", "eu-west-1"])
        # One build, two ways in: its state change event (the rule) and its notification (the pipe).
        executions = self.new_executions(count=2)
        inputs = [json.loads(self.described(e)["input"]) for e in executions]
        [event] = [i for i in inputs if isinstance(i, dict)]
        self.assertEqual((event["detail-type"], event["resources"]), ("EC2 Image Builder Image State Change", [image["arn"]]))
        [batch] = [i for i in inputs if isinstance(i, list)]
        self.assertEqual((len(batch), batch[0]["eventSource"]), (1, "aws:sqs"))
        self.assertEqual(json.loads(batch[0]["body"])["arn"], image["arn"])
        results = [self.watch(e) for e in executions]
        self.assertEqual([r["status"] for r in results], ["SUCCEEDED", "SUCCEEDED"], [r["log"] for r in results])
        [home] = [a["image"] for a in image["outputResources"]["amis"] if a["region"] == "us-east-1"]
        self.assert_rolled_out("web", home)

    def test_an_image_of_another_name_starts_nothing(self):
        # Another image's pipeline notifies its own topic, if any: only its event reaches the bus.
        self.build_image(name="other-linux", pipeline=None, topicArn=None)
        self.none_started()
        self.assert_untouched()

    def test_an_image_of_another_pipeline_or_only_for_other_regions_has_nothing_to_do(self):
        other = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/someone-elses"
        image = self.build_image(pipeline=other)
        reasons = [self.nothing_to_do(e) for e in self.new_executions(count=2)]
        for reason in reasons:
            self.assertIn(f"was built by {other}, which is not a configured pipeline ({PIPELINE})", reason)
        self.known = self.executions()
        image = self.build_image(regions=["eu-west-1", "ap-south-1"])
        reasons = [self.nothing_to_do(e) for e in self.new_executions(count=2)]
        for reason in reasons:
            self.assertIn(f"image {image['arn']} made AMIs only in ap-south-1, eu-west-1, none in this rollout's "
                          "regions (us-east-1)", reason)
        self.assert_untouched()


class PublicParameterTriggers(TriggerHarness):
    def schedule_input(self):
        """What the template's schedule starts the state machine with."""
        template = stack.Stack({"RolloutStateMachine": self.machine}, self.PARAMETERS)
        schedule = template.resources("AWS::Scheduler::Schedule")["PublicAmiCheckSchedule"]
        return json.loads(template.value(schedule["Properties"]["Target"]["Input"]))

    def scheduled_check(self):
        """A run of the schedule: StartExecution with its input, as Scheduler starts it."""
        return self.sfn_client.start_execution(stateMachineArn=self.machine,
                                               input=json.dumps(self.schedule_input()))["executionArn"]

    def publish(self, hours_ago):
        created = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return post(f"{self.control}/public-parameter", {"name": ECS_PARAMETER, "creationDate": created})

    def test_the_schedule_waits_out_the_soak_then_rolls_out_once(self):
        self.assertEqual(self.schedule_input(), {"parameterName": ECS_PARAMETER, "minAgeHours": 72, "skipRolledOut": True})
        young = self.publish(hours_ago=10)
        quiet = self.scheduled_check()
        reason = self.nothing_to_do(quiet)
        self.assertIn(f"{young['imageId']} was created 10 h ago, under the soak of 72 h", reason)
        self.assert_untouched()

        ready = self.publish(hours_ago=100)
        first = self.scheduled_check()
        result = self.watch(first)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assert_rolled_out("web", ready["imageId"])
        # Told of the rollout, cleanly; not of the check that found nothing to do before it.
        said = self.wait_for_status(first.rsplit(":", 1)[-1])
        self.assertIn("ended SUCCEEDED.", said)
        self.assertNotIn("Error", said)
        self.assertFalse([m for m in self.said if quiet.rsplit(":", 1)[-1] in m], self.said)

        reason = self.nothing_to_do(self.scheduled_check())
        self.assertIn(f"{ready['imageId']} from {ECS_PARAMETER} was already rolled out by execution "
                      f"{first.rsplit(':', 1)[-1]}", reason)

    def test_a_check_refused_by_a_hold_does_not_count_as_rolled_out(self):
        ready = self.publish(hours_ago=100)
        # Another rollout holds web (for another AMI) while the check runs.
        other = self.sfn_client.start_execution(stateMachineArn=self.machine, input=json.dumps(
            {"amiId": self.golden, "settings": {"web": {"bakeSeconds": 30}}}))["executionArn"]
        self.wait_for("the other rollout to hold web", lambda: self.hold_tag("web") == other)
        held = self.watch(self.scheduled_check())
        self.assertEqual((held["status"], held["error"]), ("FAILED", "TargetHeld"), held["log"])
        self.assertEqual(self.watch(other)["status"], "SUCCEEDED")
        # The next check rolls the AMI out: the refused one changed nothing.
        result = self.watch(self.scheduled_check())
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertEqual(self.amis("web"), [ready["imageId"]] * 2)

    def test_aws_refuses_writes_under_aws_and_the_bus_hears_nothing(self):
        with self.assertRaises(Exception) as refused:
            self.aws["ssm"].put_parameter(Name=ECS_PARAMETER, Value=self.golden, Type="String", Overwrite=True)
        self.assertIn("AccessDenied", str(refused.exception))
        self.publish(hours_ago=100)
        self.none_started()


class PipelineStarts(TriggerHarness):
    """CodePipeline's Step Functions action, and baking the AMI in the pipeline's place."""

    def builder(self):
        """The instance the pipeline deployed the application to, on the golden AMI."""
        return self.aws["ec2"].run_instances(ImageId=self.golden, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                             SubnetId=self.fleet["subnets"][0])["Instances"][0]["InstanceId"]

    def pipeline_action(self, instance):
        """The snippet's rollout action: its configuration with the template's values filled in."""
        template = stack.Stack({}, {"RolloutStateMachineArn": self.machine, "RepositoryName": "app",
                                    "CodeDeployApplication": "app", "CodeDeployGroup": "builder",
                                    "BuilderInstanceId": instance}, template=stack.load(PIPELINE_SNIPPET))
        [stage] = [s for s in template.template["Resources"]["Pipeline"]["Properties"]["Stages"] if s["Name"] == "RollOut"]
        [action] = stage["Actions"]
        return {k: template.value(v) for k, v in action["Configuration"].items()}

    def run_action(self, configuration, pipeline_execution):
        """What CodePipeline does: resolve the variables, start <prefix>-<action execution id>, and
        follow DescribeExecution until the execution ends."""
        action_execution = str(uuid.uuid4())
        payload = configuration["Input"].replace("#{codepipeline.PipelineExecutionId}", pipeline_execution)
        execution = self.sfn_client.start_execution(
            stateMachineArn=configuration["StateMachineArn"], input=payload,
            name=f"{configuration['ExecutionNamePrefix']}-{action_execution}")["executionArn"]
        return execution, self.watch(execution)

    def image(self, image_id):
        [image] = self.aws["ec2"].describe_images(ImageIds=[image_id])["Images"]
        return image

    def test_a_pipeline_stage_bakes_the_ami_from_its_builder_and_waits_for_the_rollout(self):
        instance = self.builder()
        configuration = self.pipeline_action(instance)
        self.assertEqual((configuration["InputType"], configuration["ExecutionNamePrefix"]), ("Literal", "pipeline"))
        execution, result = self.run_action(configuration, pipeline_execution="5e1f0c7a-8a0e-4c1b-9d2e-1b7f2f9e0c11")
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        name = execution.rsplit(":", 1)[-1]
        self.assertTrue(name.startswith("pipeline-"))
        entered = [e["stateEnteredEventDetails"]["name"] for e in result["events"] if "stateEnteredEventDetails" in e]
        self.assertEqual(entered[:6], ["Is the input a batch from a pipe?", "Is an AMI to be baked first?",
                                       "Bake the AMI from the instance", "Wait for the baked AMI",
                                       "Is the baked AMI available?", "Is the bake still pending?"])
        baked = json.loads(self.sfn_client.describe_execution(executionArn=execution)["output"])["bake"]
        image = self.image(baked["imageId"])
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        self.assertEqual(image["Name"], f"ami-rollout-{name}")
        self.assertEqual(tags["ami-rollout:baked-by"], execution)
        self.assertEqual(tags["pipeline-execution"], "5e1f0c7a-8a0e-4c1b-9d2e-1b7f2f9e0c11")
        self.assert_rolled_out("web", baked["imageId"])
        self.assert_untouched(set(self.groups) - {"web"})

    def test_a_bake_retried_adopts_the_image_it_already_made(self):
        instance = self.builder()
        name = f"bake-{uuid.uuid4().hex[:8]}"
        # The first try's CreateImage went through; its answer was lost, so the step runs again.
        arn = self.machine.replace(":stateMachine:", ":execution:") + f":{name}"
        made = self.aws["ec2"].create_image(InstanceId=instance, Name=f"ami-rollout-{name}", TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "ami-rollout:baked-by", "Value": arn}]}])["ImageId"]
        execution = self.sfn_client.start_execution(stateMachineArn=self.machine, name=name,
                                                    input=json.dumps({"createImageFrom": instance}))["executionArn"]
        result = self.watch(execution)
        self.assertEqual(result["status"], "SUCCEEDED", result["log"])
        self.assertEqual(json.loads(self.described(execution)["output"])["bake"]["imageId"], made)
        named = self.aws["ec2"].describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"ami-rollout-{name}"]}])
        self.assertEqual([i["ImageId"] for i in named["Images"]], [made], "no second image")
        self.assert_rolled_out("web", made)

    def test_a_bake_from_an_instance_that_does_not_exist_fails_with_nothing_changed(self):
        execution = self.sfn_client.start_execution(stateMachineArn=self.machine,
                                                    input=json.dumps({"createImageFrom": "i-0123456789abcdef0"}))["executionArn"]
        result = self.watch(execution)
        self.assertEqual((result["status"], result["error"]), ("FAILED", "InvalidInput"), result["log"])
        self.assertIn("createImageFrom i-0123456789abcdef0: no such instance", result["cause"])
        self.assert_untouched()


if __name__ == "__main__":
    unittest.main()
