"""CloudWatch DescribeAlarms with its filters combined, as AWS applies them (moto uses only the
first of AlarmNames / AlarmNamePrefix / StateValue it finds, so a StateValue=ALARM query by name
returned alarms in OK)."""

from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult


def describe_alarms(self):
    alarms = self.cloudwatch_backend.describe_alarms()
    names = self._get_param("AlarmNames", [])
    prefix = self._get_param("AlarmNamePrefix")
    state_value = self._get_param("StateValue")
    action_prefix = self._get_param("ActionPrefix")
    if names:
        alarms = [a for a in alarms if a.name in names]
    if prefix:
        alarms = [a for a in alarms if a.name.startswith(prefix)]
    if state_value:
        alarms = [a for a in alarms if a.state_value == state_value]
    if action_prefix:
        alarms = [a for a in alarms if any(x.startswith(action_prefix) for x in a.alarm_actions)]
    return ActionResult({
        "MetricAlarms": [a for a in alarms if a.rule is None],
        "CompositeAlarms": [a for a in alarms if a.rule is not None],
    })


def install() -> None:
    CloudWatchResponse.describe_alarms = describe_alarms
