"""Auto Scaling lifecycle hooks, which moto stores (PutLifecycleHook) but never fires.

As the Auto Scaling User Guide ("Amazon EC2 Auto Scaling lifecycle hooks", "How lifecycle hooks
work", "Complete a lifecycle action") and the API reference describe them:

- A group launching an instance with an `autoscaling:EC2_INSTANCE_LAUNCHING` hook puts it in
  `Pending:Wait`, one lifecycle action (its own token) per hook, and sends the "EC2
  Instance-launch Lifecycle Action" event (events.py). CompleteLifecycleAction (by token or
  instance id) CONTINUE of every action: `Pending:Proceed`, then `InService` (a refresh's new
  instances warm up first, refresh.py). ABANDON of any: the instance is terminated and replaced,
  and the group records a `Cancelled` launch activity ("Instance failed to complete user's
  Lifecycle Action: Lifecycle Action with token <token> was abandoned: Lifecycle Action Completed
  with ABANDON Result"). A refresh's new instance is replaced by the refresh itself.
- With an `autoscaling:EC2_INSTANCE_TERMINATING` hook, an instance the group terminates (instance
  refresh, scale-in, TerminateInstanceInAutoScalingGroup) waits in `Terminating:Wait`, no longer
  counted toward capacity; CONTINUE of every action or ABANDON of any: `Terminating:Proceed`, then
  terminated.
- An action not completed within the hook's HeartbeatTimeout ends with its DefaultResult ("...
  was abandoned: Heartbeat Timeout", as the AWS Knowledge Center quotes the activity);
  RecordLifecycleActionHeartbeat restarts the timeout, never
  beyond the GlobalTimeout (100 x HeartbeatTimeout or 48 hours, whichever is smaller) from the
  start. Timeouts run on the scaled clock (state.Clock), as a refresh's warmups do.
- An action no longer found (unknown token, an instance not waiting): ValidationError "No active
  Lifecycle Action found with token <token>" / "... with instance ID <id>" (the wording as users
  report it).

Ours, where AWS documents nothing: an action keeps the timeout and default result its hook had
when it started; an instance abandoned at launch is terminated without running terminating
hooks; a group deleted while actions are open terminates their instances at once (as ForceDelete
does; moto deletes a group that still has instances, which AWS refuses without it); a global
timeout abandons with "... was abandoned: Global Timeout"; the messages of PutLifecycleHook's
refusals. Not modelled: notifications to NotificationTargetARN (only EventBridge events),
LifecycleHookSpecificationList of CreateAutoScalingGroup, warm pools, the ReplaceRootVolume
hooks, the launch rate limit AWS applies when hooks keep failing, instance lifecycle policies
(retention), and scale-in of a mixed instances group with weighted overrides
(terminated at once, as moto).
"""

import uuid
from dataclasses import dataclass

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    LifecycleHook,
    TerminateInstanceActivity,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult

from . import clock, events, fleet, state

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
RESULTS = ("CONTINUE", "ABANDON")
MAX_GLOBAL_TIMEOUT = 48 * 3600
COMPLETED = {"CONTINUE": "Lifecycle Action Completed with CONTINUE Result",
             "ABANDON": "Lifecycle Action Completed with ABANDON Result"}


@dataclass
class Action:
    token: str
    account: str
    region: str
    group: str
    hook: str
    transition: str
    instance_id: str
    default_result: str
    heartbeat: int
    deadline: float  # scaled clock
    global_deadline: float
    started: object  # calendar time, for the activity
    cause: str  # why the instance was launched, for the activity


def _actions() -> list:
    return state.sim().lifecycle_actions


def _hooks(group, transition: str) -> list:
    backend = fleet.autoscaling_backends[group.ec2_backend.account_id][group.ec2_backend.region_name]
    return [h for h in backend.lifecycle_hooks.values()
            if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition]


def _wait(group, states: list, hooks: list, transition: str, cause: str = "") -> None:
    """Put the instances in the transition's wait state, one action per hook, and say so on the bus."""
    account, region = fleet._account_region(group)
    now, started = state.sim().clock.now(), clock.utcnow()
    kind, wait, origin, destination = (("launch", "Pending:Wait", "EC2", "AutoScalingGroup") if transition == LAUNCHING
                                       else ("terminate", "Terminating:Wait", "AutoScalingGroup", "EC2"))
    entries = []
    for s in states:
        s.lifecycle_state = wait
        for hook in hooks:
            action = Action(str(uuid.uuid4()), account, region, group.name, hook.name, transition, s.instance.id,
                            hook.default_result, hook.heartbeat_timeout, now + hook.heartbeat_timeout,
                            now + hook.global_timeout, started, cause)
            _actions().append(action)
            entries.append({"Source": "aws.autoscaling", "DetailType": f"EC2 Instance-{kind} Lifecycle Action",
                            "Resources": [group.arn], "Account": account, "Region": region, "Detail": {
                                "Origin": origin, "Destination": destination,
                                "LifecycleActionToken": action.token, "AutoScalingGroupName": group.name,
                                "LifecycleHookName": hook.name, "EC2InstanceId": s.instance.id,
                                "LifecycleTransition": transition,
                                **({"NotificationMetadata": hook.notification_metadata}
                                   if getattr(hook, "notification_metadata", None) else {})}})
    if entries:
        events.emit(entries)


def terminate(group, states: list) -> None:
    """The group terminates these instances: through its terminating hooks, if it has any."""
    hooks = _hooks(group, TERMINATING)
    states = [s for s in states if not s.lifecycle_state.startswith("Terminating")]
    ids = {s.instance.id for s in states}
    state.sim().lifecycle_actions = [a for a in _actions() if a.instance_id not in ids]
    if hooks:
        state.sim().warming.difference_update(ids)
        _wait(group, states, hooks, TERMINATING)
    else:
        fleet.terminate(group, states)


def _state_of(group, instance_id: str):
    return next((s for s in group.instance_states if s.instance.id == instance_id), None) if group else None


def _group_of(action: Action):
    return fleet.autoscaling_backends[action.account][action.region].autoscaling_groups.get(action.group)


def _complete(action: Action, result: str, why: str) -> None:
    """End one action; the instance moves on once it has no other open action (or at once on a
    launch ABANDON, or a terminating ABANDON, which ends the other hooks' actions too)."""
    group = _group_of(action)
    s = _state_of(group, action.instance_id)
    _actions().remove(action)
    if s is None:
        return
    others = [a for a in _actions() if a.instance_id == action.instance_id]
    if result == "ABANDON":
        state.sim().lifecycle_actions = [a for a in _actions() if a.instance_id != action.instance_id]
        if action.transition == LAUNCHING:
            _abandon_launch(group, s, action, why)
            return
    elif others:
        return
    s.lifecycle_state = "Pending:Proceed" if action.transition == LAUNCHING else "Terminating:Proceed"
    state.sim().proceeded[s.instance.id] = (action.account, action.region, group.name, state.sim().clock.now())


def _abandon_launch(group, s, action: Action, why: str) -> None:
    message = ("Instance failed to complete user's Lifecycle Action: Lifecycle Action with token "
               f"{action.token} was abandoned: {why}")
    by_refresh = s.instance.id in state.sim().warming
    fleet.record_activity(group, "Cancelled", f"Launching a new EC2 instance: {s.instance.id}", message,
                          fleet.REFRESH_CAUSE if by_refresh else action.cause, action.started,
                          {"Subnet ID": s.instance.subnet_id, "Availability Zone": s.instance.placement.zone})
    fleet.terminate(group, [s])
    if not by_refresh:  # the group replaces it; a refresh replaces its own (refresh.py)
        group.set_desired_capacity(group.desired_capacity)


def tick() -> None:
    now = state.sim().clock.now()
    for action in list(_actions()):
        # (an earlier ABANDON of this tick may have ended the instance's other actions)
        if now >= min(action.deadline, action.global_deadline) and action in _actions():
            why = "Global Timeout" if action.deadline >= action.global_deadline else "Heartbeat Timeout"
            _complete(action, action.default_result, why)
    for instance_id, (account, region, name, _) in list(state.sim().proceeded.items()):
        group = fleet.autoscaling_backends[account][region].autoscaling_groups.get(name)
        s = _state_of(group, instance_id)
        if s is not None and instance_id in state.sim().warming:
            continue  # the refresh puts it in service after its warmup, and reads when it proceeded
        del state.sim().proceeded[instance_id]
        if s is not None and s.lifecycle_state == "Pending:Proceed":
            s.lifecycle_state = "InService"
        elif s is not None and s.lifecycle_state == "Terminating:Proceed":
            fleet.terminate(group, [s])


def proceeded_at(instance_id: str) -> float | None:
    """When the instance left Pending:Wait (scaled clock), if it had to wait."""
    found = state.sim().proceeded.get(instance_id)
    return found[3] if found else None


def abandonment(group, instance_id: str) -> str | None:
    """The StatusMessage of the Cancelled activity of the instance's abandoned launch, if any."""
    records = state.sim().activities.get((*fleet._account_region(group), group.name)) or []
    prefix = f"Launching a new EC2 instance: {instance_id}."
    return next((a["StatusMessage"] for _, a in records
                 if a["StatusCode"] == "Cancelled" and a["Description"].startswith(prefix)), None)


# --- moto's launches and terminations ------------------------------------------------------------

_previous_replace = None
_original_set_desired = FakeAutoScalingGroup.set_desired_capacity
_original_terminate_instance = AutoScalingBackend.terminate_instance
_original_delete_group = AutoScalingBackend.delete_auto_scaling_group


def _replace(self, count_needed, propagated_tags):
    before = {s.instance.id for s in self.instance_states}
    current = len(self.active_instances())
    _previous_replace(self, count_needed, propagated_tags)
    hooks = _hooks(self, LAUNCHING)
    fresh = [s for s in self.instance_states if s.instance.id not in before]
    if hooks and fresh:
        _wait(self, fresh, hooks, LAUNCHING, fleet.capacity_cause(current, len(fresh)))


def _weighted(group) -> bool:
    overrides = ((group.mixed_instances_policy or {}).get("LaunchTemplate") or {}).get("Overrides") or []
    return bool(overrides) and str(overrides[0].get("WeightedCapacity") or "1") != "1"


def _set_desired_capacity(self, new_capacity):
    """Scale-in: moto terminates the first unprotected instances at once; with a terminating hook
    they wait first (then moto finds nothing more to remove)."""
    active = self.active_instances()
    excess = len(active) - (self.min_size if new_capacity is None else new_capacity)
    if excess > 0 and not _weighted(self) and _hooks(self, TERMINATING):
        terminate(self, [s for s in active if not s.protected_from_scale_in][:excess])
    _original_set_desired(self, new_capacity)


def _terminate_instance(self, instance_id, should_decrement):
    """TerminateInstanceInAutoScalingGroup through the terminating hooks: the instance waits, and
    the group launches its replacement at once unless the capacity is decremented."""
    found = next(((g, s) for g in self.autoscaling_groups.values() for s in g.instance_states
                  if s.instance.id == instance_id), None)
    if found is None or not _hooks(found[0], TERMINATING):
        return _original_terminate_instance(self, instance_id, should_decrement)
    group, s = found
    original_size = group.desired_capacity
    terminate(group, [s])
    if should_decrement:
        group.desired_capacity -= 1
    group.set_desired_capacity(group.desired_capacity)
    return TerminateInstanceActivity(s.instance, original_size)


def _delete_group(self, group_name, *args, **kwargs):
    """A group's hooks and open actions go with it (moto kept hooks for a later group of the same
    name); its instances terminate without hooks, all of them, as with ForceDelete (moto left
    those not InService running)."""
    group = self.autoscaling_groups.get(group_name)
    for key in [k for k, h in self.lifecycle_hooks.items() if h.auto_scaling_group_name == group_name]:
        del self.lifecycle_hooks[key]
    answer = _original_delete_group(self, group_name, *args, **kwargs)
    state.sim().lifecycle_actions = [a for a in _actions() if (a.account, a.region, a.group) != (
        self.account_id, self.region_name, group_name)]
    fleet.terminate(group, list(group.instance_states))
    return answer


# --- the API -------------------------------------------------------------------------------------

def put_lifecycle_hook(self: AutoScalingResponse):
    """PutLifecycleHook: creates the hook, or updates the fields given (moto reset the others)."""
    backend = self.autoscaling_backend
    group = fleet.named_group(backend, self._get_param("AutoScalingGroupName"))
    name = self._get_param("LifecycleHookName")
    hook = backend.lifecycle_hooks.get(f"{group.name}_{name}")
    given = self._get_int_param("HeartbeatTimeout")
    transition = self._get_param("LifecycleTransition") or (hook.lifecycle_transition if hook else None)
    timeout = given if given is not None else (hook.heartbeat_timeout if hook else 3600)
    result = self._get_param("DefaultResult") or (hook.default_result if hook else "ABANDON")
    if transition not in (LAUNCHING, TERMINATING):
        raise ValidationError(f"Invalid LifecycleTransition: {transition}. Valid values are {LAUNCHING}, {TERMINATING}.")
    if not 30 <= timeout <= 7200:
        raise ValidationError(f"HeartbeatTimeout {timeout} is not between 30 and 7200 seconds.")
    if result not in RESULTS:
        raise ValidationError(f"Invalid DefaultResult: {result}. Valid values are CONTINUE and ABANDON.")
    new = LifecycleHook(name, group.name, transition, timeout, result)
    new.global_timeout = min(100 * timeout, MAX_GLOBAL_TIMEOUT)
    for attribute, param in (("notification_metadata", "NotificationMetadata"),
                             ("notification_target_arn", "NotificationTargetARN"), ("role_arn", "RoleARN")):
        setattr(new, attribute, self._get_param(param) or (getattr(hook, attribute, None) if hook else None))
    backend.lifecycle_hooks[f"{group.name}_{name}"] = new
    return EmptyResult()


def _find(response: AutoScalingResponse) -> Action:
    token, instance_id = response._get_param("LifecycleActionToken"), response._get_param("InstanceId")
    if not token and not instance_id:
        raise ValidationError("Either LifecycleActionToken or InstanceId must be specified.")
    found = next((a for a in _actions() if (a.account, a.region, a.group, a.hook) == (
        response.current_account, response.region, response._get_param("AutoScalingGroupName"),
        response._get_param("LifecycleHookName"))
        and (not token or a.token == token) and (not instance_id or a.instance_id == instance_id)), None)
    if found is None:
        raise ValidationError(f"No active Lifecycle Action found with token {token}" if token
                              else f"No active Lifecycle Action found with instance ID {instance_id}")
    return found


def complete_lifecycle_action(self: AutoScalingResponse):
    result = self._get_param("LifecycleActionResult")
    if result not in RESULTS:
        raise ValidationError(f"Invalid LifecycleActionResult: {result}. Valid values are CONTINUE and ABANDON.")
    _complete(_find(self), result, COMPLETED[result])
    return EmptyResult()


def record_lifecycle_action_heartbeat(self: AutoScalingResponse):
    action = _find(self)
    action.deadline = min(state.sim().clock.now() + action.heartbeat, action.global_deadline)
    return EmptyResult()


def install() -> None:
    global _previous_replace
    _previous_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances  # fleet's
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace
    FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity
    AutoScalingBackend.terminate_instance = _terminate_instance
    AutoScalingBackend.delete_auto_scaling_group = _delete_group
    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
