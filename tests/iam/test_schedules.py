"""Every EventBridge Scheduler schedule of the template keeps what it could not start: a dead-letter
queue its execution role may write to (Scheduler writes there with that role: Scheduler User Guide,
"Configuring a schedule's dead-letter queue"), and an alarm on the queue that tells the status
topic. Run with infra/check's venv: make validate.
"""

import unittest

from policies import listed, load, symbolic


class Schedules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.resources = load()["Resources"]
        cls.schedules = {name: r["Properties"] for name, r in cls.resources.items()
                         if r["Type"] == "AWS::Scheduler::Schedule"}

    def test_the_schedules_are_found(self):
        self.assertEqual(sorted(self.schedules), ["DriftCheckSchedule", "PublicAmiCheckSchedule"])

    def test_every_schedule_has_a_dead_letter_queue_its_role_may_write(self):
        for name, schedule in self.schedules.items():
            with self.subTest(schedule=name):
                target = schedule["Target"]
                queue = symbolic(target["DeadLetterConfig"]["Arn"])
                self.assertRegex(queue, r"^\$\{\w+\.Arn\}$")
                role = symbolic(target["RoleArn"]).removeprefix("${").removesuffix(".Arn}")
                statements = [s for p in self.resources[role]["Properties"]["Policies"]
                              for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
                self.assertIn(queue, {symbolic(r) for s in statements if "sqs:SendMessage" in listed(s["Action"])
                                      for r in listed(s["Resource"])})
                # A standard queue (Scheduler refuses a FIFO one).
                props = self.resources[queue.removeprefix("${").removesuffix(".Arn}")]["Properties"]
                self.assertFalse(props.get("FifoQueue", False))

    def test_a_dead_letter_is_told(self):
        queues = {symbolic(s["Target"]["DeadLetterConfig"]["Arn"]).removeprefix("${").removesuffix(".Arn}")
                  for s in self.schedules.values()}
        for queue in queues:
            with self.subTest(queue=queue):
                alarms = [r["Properties"] for r in self.resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                          and r["Properties"].get("Namespace") == "AWS/SQS"
                          and symbolic(r["Properties"]["Dimensions"][0]["Value"]) == f"${{{queue}.QueueName}}"]
                self.assertEqual(len(alarms), 1)
                self.assertEqual(alarms[0]["MetricName"], "ApproximateNumberOfMessagesVisible")
                self.assertEqual([symbolic(a) for a in alarms[0]["AlarmActions"]], ["${StatusTopic}"])


if __name__ == "__main__":
    unittest.main()
