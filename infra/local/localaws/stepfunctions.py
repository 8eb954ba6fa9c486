"""ministack (Step Functions + Lambda + EventBridge) with the engine behaviours the rollout depends on.

1. A failed Map stops. AWS: when an iteration of an inline Map fails, the Map state fails and
   iterations not yet started never start; with MaxConcurrency 1 (our waves) a failed wave stops
   the rollout there. ministack 1.5.33 starts every remaining iteration first and raises the error
   afterwards, so a failed canary wave would still roll the later waves out. Here an iteration that
   would start after another iteration of the same Map (in the same run) failed is not run.

2. RedriveExecution, which ministack 1.5.33 lacks. AWS: a FAILED, ABORTED or TIMED_OUT Standard
   execution restarts from its unsuccessful step with the same input and ARN; successful steps are
   not rerun, and an inline Map reruns only its failed or unstarted iterations. Here every state that
   completes is written to a journal (its output and next state, per scope: the top level, or one
   Map iteration). A redrive walks the definition again from StartAt and, while the walk matches the
   journal, answers each state from it (no Lambda invoked, no Wait slept) until it reaches the state
   that did not complete, which runs for real. DescribeExecution reports redriveCount, redriveDate
   and redriveStatus; the history gains an ExecutionRedriven event, and the states answered from the
   journal add no events, as on AWS. Parallel branches are rerun whole (our state machine has none).

3. A stopped execution stops. AWS: after StopExecution (or the definition's TimeoutSeconds) no
   further state starts, Map iterations included, and the execution keeps its ABORTED / TIMED_OUT
   status. ministack 1.5.33 only checks the status between top-level states: a running inline Map
   goes on through all its iterations (every remaining wave would roll out), and a Task that fails
   after the stop turns the ABORTED execution into FAILED. Here a walk that is no longer current
   (stopped, timed out, or replaced by a redrive) starts no state, journals nothing, records no
   state event and changes no status; a state in flight at the stop finishes (a Lambda invocation
   is not interrupted, as on AWS) and its result is discarded, so a redrive reruns it.

4. Execution TimeoutSeconds, which ministack 1.5.33 ignores: when it passes, the execution ends
   TIMED_OUT (ExecutionTimedOut event, error States.Timeout). The timeout runs on the same scale
   as Wait states (SFN_WAIT_SCALE; with 0 it is not enforced), counted from the start of each walk
   (a redrive gets the full timeout again).

5. "Step Functions Execution Status Change" events (ministack emits them to its default bus on
   every status change) carry the redrive fields as DescribeExecution reports them here, and the
   error and cause of ABORTED / TIMED_OUT executions too; EventBridge delivers to a Lambda target
   through Lambda's asynchronous invocation (Event: retries, destinations), not a bare thread.

Run as `python -m localaws.stepfunctions`, with ministack's own environment variables.
"""

import contextvars
import copy
import json
import sys
import threading
from datetime import datetime, timedelta, timezone

from ministack import app
from ministack.core.responses import error_response_json, json_response, new_uuid, now_iso
from ministack.services import eventbridge, lambda_svc
from ministack.services import stepfunctions as engine

_lock = threading.Lock()

# Where the running state sits: () is the top level, each Map iteration adds (position of the Map
# state in its parent scope, the Map's retry attempt, item index). Context variables follow the
# engine into its iteration threads, which it starts with copy_context().
_scope = contextvars.ContextVar("journal_scope", default=())
_position = contextvars.ContextVar("journal_position", default=None)
_unjournaled = contextvars.ContextVar("unjournaled", default=False)
# The walk (_Run) this thread belongs to; Map iteration threads inherit it.
_walk = contextvars.ContextVar("walk", default=None)

REDRIVABLE = {"FAILED", "ABORTED", "TIMED_OUT"}
REDRIVE_PERIOD = timedelta(days=14)
HISTORY_LIMIT = 24_999


class _Run:
    """One walk of an execution's definition: the original start (number 0) or a redrive."""

    def __init__(self, number):
        self.number = number
        self.cursors = {}  # scope -> index of the next state in that scope's journal
        self.replayed_top_level = False

    def recorded(self, journal, index, name):
        """The journal entry a redrive answers the state `name` at `index` from, or None when the
        walk has left the journal or the entry was written by this very walk."""
        done = journal[index] if index < len(journal) else None
        return done if done and done["name"] == name and done["run"] < self.number else None


class Execution:
    """What this module keeps per execution ARN, beside ministack's own record."""

    def __init__(self):
        self.journal = {}  # scope -> [{"name", "output", "next", "variables", "run"}]
        self.run = None
        self.redrive_count = 0
        self.redrive_date = None
        self.client_token = None


_executions = {}
_failed_maps = set()  # Maps (per execution, run, scope and attempt) that start no more iterations


def _record(arn):
    with _lock:
        return _executions.setdefault(arn, Execution())


class _Stopped(engine._ExecutionError):
    """Raised in a walk that must not go on; never becomes the execution's error (see _fail_execution)."""

    def __init__(self):
        super().__init__("ExecutionStopped", "The execution is no longer running this walk")


def _live(arn):
    """Whether this thread's walk of execution `arn` may go on: the execution is RUNNING and the
    walk is its current one (not one a redrive has replaced)."""
    execution = engine._executions.get(arn)
    if not execution or execution["status"] != "RUNNING":
        return False
    record, mine = _executions.get(arn), _walk.get()
    return record is None or mine is None or record.run is mine


# --- the journal -----------------------------------------------------------------------------------


def _journaled(handler):
    """Wraps a state handler so a completed state is journaled, and answered from the journal
    when a redrive walks past it again."""

    def run(state_def, raw_input, *rest):
        ctx = rest[-1] if rest else None
        arn = ((ctx or {}).get("Execution") or {}).get("Id")
        if arn and not _live(arn):
            raise _Stopped()
        record = _executions.get(arn)
        if record is None or record.run is None or _unjournaled.get():
            result = handler(state_def, raw_input, *rest)
            if arn and not _live(arn):
                raise _Stopped()  # stopped while the state ran: its result is discarded
            return result
        run_ = record.run
        ctx["Execution"].setdefault("RedriveCount", run_.number)
        scope, name = _scope.get(), ctx["State"]["Name"]
        with _lock:
            journal = record.journal.setdefault(scope, [])
            index = run_.cursors.get(scope, 0)
            run_.cursors[scope] = index + 1
            done = run_.recorded(journal, index, name)
            if done:
                if scope == ():
                    run_.replayed_top_level = True
                ctx.setdefault("variables", {}).clear()
                ctx["variables"].update(copy.deepcopy(done["variables"]))
                return copy.deepcopy(done["output"]), done["next"]
            del journal[index:]  # the walk left the journal (or this state never completed)
        distributed = (state_def.get("ItemProcessor") or {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
        tokens = [_position.set(index)]
        if state_def.get("Type") == "Parallel" or distributed:
            tokens.append(_unjournaled.set(True))
        try:
            output, next_name = handler(state_def, raw_input, *rest)
        finally:
            for token in reversed(tokens):
                token.var.reset(token)
        if not _live(arn):
            raise _Stopped()  # stopped while the state ran: not journaled, so a redrive reruns it
        with _lock:
            journal.append({"name": name, "output": copy.deepcopy(output), "next": next_name,
                            "variables": copy.deepcopy(ctx.get("variables", {})), "run": run_.number})
        return output, next_name

    return run


_original_sub_machine = engine._run_sub_machine


def _run_sub_machine(states, start_at, input_data, execution, ctx):
    """One Map iteration (or Parallel branch): not started once its Map has failed, and journaled
    in its own scope."""
    record = _executions.get(execution["executionArn"])
    run_ = record.run if record else None
    parent, position = _scope.get(), _position.get()
    attempt = ctx["State"].get("RetryCount", 0)
    item = ((ctx.get("Map") or {}).get("Item") or {}).get("Index")
    map_key = (id(execution), run_.number if run_ else None, id(states), parent, position, attempt)
    with _lock:
        if map_key in _failed_maps:
            raise _NotStarted("Map state already failed")
    journaled = run_ is not None and not _unjournaled.get()
    token = _scope.set(parent + ((position, attempt, item),)) if journaled else None
    try:
        return _original_sub_machine(states, start_at, input_data, execution, ctx)
    except Exception:
        with _lock:
            _failed_maps.add(map_key)
        raise
    finally:
        if token:
            _scope.reset(token)


class _NotStarted(Exception):
    """An iteration skipped because its Map already failed; the first failure is what surfaces."""


_original_run_execution = engine._run_execution


def _run_execution(exec_arn):
    """One walk of the definition; a redrive's walk answers completed states from the journal."""
    contextvars.copy_context().run(_run_walk, exec_arn)


def _run_walk(exec_arn):
    record = _record(exec_arn)
    walk = _Run(record.redrive_count)
    with _lock:
        record.run = walk
    _walk.set(walk)
    timer = _start_timeout(exec_arn, walk)
    try:
        _original_run_execution(exec_arn)
    finally:
        if timer:
            timer.cancel()


def _start_timeout(exec_arn, walk):
    """A timer for the definition's TimeoutSeconds, on the Wait states' scale; None without one."""
    execution = engine._executions.get(exec_arn) or {}
    machine = engine._state_machines.get(execution.get("stateMachineArn")) or {}
    try:
        seconds = json.loads(machine.get("definition") or "{}").get("TimeoutSeconds")
    except (ValueError, AttributeError):
        return None
    if not isinstance(seconds, (int, float)) or seconds <= 0 or engine._SFN_WAIT_SCALE <= 0:
        return None
    timer = threading.Timer(seconds * engine._SFN_WAIT_SCALE, contextvars.copy_context().run,
                            args=(_time_out, exec_arn, walk))
    timer.daemon = True
    timer.start()
    return timer


def _time_out(exec_arn, walk):
    execution, record = engine._executions.get(exec_arn), _executions.get(exec_arn)
    with _lock:
        if not execution or execution["status"] != "RUNNING" or record.run is not walk:
            return
        execution.update(status="TIMED_OUT", stopDate=now_iso(), error="States.Timeout", cause=None)
    engine._add_event(execution, "ExecutionTimedOut",
                      {"executionTimedOutEventDetails": {"error": "States.Timeout"}})
    engine._emit_execution_status_event(execution)


_original_fail_execution = engine._fail_execution


def _fail_execution(execution, error, cause):
    """A walk that is no longer live leaves the status alone: an ABORTED or TIMED_OUT execution
    stays so (ministack would turn it FAILED when the state in flight fails), and a walk replaced
    by a redrive cannot fail the redriven execution."""
    if _live(execution["executionArn"]):
        _original_fail_execution(execution, error, cause)


_original_add_event = engine._add_event


def _add_event(execution, event_type, details=None):
    """States answered from the journal leave no new Entered/Exited events, as on AWS; nor does a
    walk that is no longer live (the execution stopped, or a redrive replaced the walk)."""
    if not event_type.startswith("Execution") and not _live(execution["executionArn"]):
        return None
    record = _executions.get(execution["executionArn"])
    run_ = record.run if record else None
    if run_ and run_.number and _scope.get() == () and event_type.endswith(("StateEntered", "StateExited")):
        if event_type.endswith("StateEntered"):
            name = details["stateEnteredEventDetails"]["name"]
            with _lock:
                if run_.recorded(record.journal.get((), []), run_.cursors.get((), 0), name):
                    return None
        elif run_.replayed_top_level:
            run_.replayed_top_level = False
            return None
    return _original_add_event(execution, event_type, details)


# --- status change events --------------------------------------------------------------------------


def _emit_execution_status_event(execution):
    """ministack's "Step Functions Execution Status Change" event to the default bus, with the
    redrive fields as DescribeExecution reports them (ministack: always 0 / redrivable only when
    FAILED) and error and cause for every stopped status that has them (ministack: FAILED only)."""
    if execution.get("sync"):
        return  # Express-style executions emit no events, as on AWS
    status = execution["status"]
    record = _executions.get(execution["executionArn"]) or Execution()
    reason = _not_redrivable(execution)
    stopped = status in ("FAILED", "TIMED_OUT", "ABORTED")
    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": status,
        "startDate": engine._iso_to_epoch_ms(execution.get("startDate")),
        "stopDate": engine._iso_to_epoch_ms(execution.get("stopDate")),
        "input": execution.get("input"),
        "inputDetails": {"included": True},
        "output": execution.get("output") if status == "SUCCEEDED" else None,
        "outputDetails": {"included": True} if status == "SUCCEEDED" else None,
        "stateMachineVersionArn": None,
        "stateMachineAliasArn": None,
        "redriveCount": record.redrive_count,
        "redriveDate": engine._iso_to_epoch_ms(record.redrive_date),
        "redriveStatus": "NOT_REDRIVABLE" if reason else "REDRIVABLE",
        "redriveStatusReason": reason or f"Execution is {status} and is redrivable",
        "error": execution.get("error") if stopped else None,
        "cause": execution.get("cause") if stopped else None,
    }
    for field in ("input", "output"):
        if detail[field] is not None and len(detail[field]) > engine._STATUS_EVENT_PAYLOAD_CAP:
            detail[field], detail[f"{field}Details"] = None, {"included": False}
    try:
        eventbridge._put_events({"Entries": [{
            "Source": "aws.states", "DetailType": "Step Functions Execution Status Change",
            "Detail": json.dumps(detail), "Resources": [execution["executionArn"]]}]},
            allow_aws_source=True)
    except Exception:  # best effort, as on AWS: never fails the execution
        engine.logger.warning("status event for %s not published", execution["executionArn"], exc_info=True)


def _dispatch_to_lambda(arn, payload):
    """EventBridge invokes a Lambda target asynchronously: Lambda's Event invocation, with its
    retries and failure destinations (ministack 1.5.33 runs the function once in a thread)."""
    try:
        event = json.loads(payload)
    except (ValueError, TypeError):
        event = {"body": payload}
    func, config, name = lambda_svc._get_func_record_for_ref(arn)
    if not func or not config:
        engine.logger.warning("EventBridge -> Lambda: function %s not found", name)
        return
    lambda_svc.invoke_async_with_retry(lambda_svc._execution_record_for_config(func, config), event)


# --- the API ---------------------------------------------------------------------------------------


def _not_redrivable(execution):
    """AWS's redriveStatusReason when the execution cannot be redriven, else None."""
    status = execution["status"]
    if execution.get("sync"):
        return "Execution is an Express workflow execution and cannot be redriven"
    if status not in REDRIVABLE:
        return f"Execution is {status} and cannot be redriven"
    if len(execution["events"]) >= HISTORY_LIMIT:
        return "Execution history event limit exceeded"
    stopped = execution.get("stopDate")
    if stopped and datetime.now(timezone.utc) - datetime.fromisoformat(stopped.replace("Z", "+00:00")) > REDRIVE_PERIOD:
        return "Execution redrivable period exceeded"
    return None


def _redrive_execution(data):
    arn = data.get("executionArn", "")
    execution = engine._executions.get(arn)
    if not execution:
        return error_response_json("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'", 400)
    record = _record(arn)
    token = data.get("clientToken")
    if token and token == record.client_token and execution["status"] == "RUNNING":
        return json_response({"redriveDate": record.redrive_date})  # the same request, retried
    reason = _not_redrivable(execution)
    if reason:
        return error_response_json("ExecutionNotRedrivable", reason, 400)
    with _lock:
        record.redrive_count += 1
        record.redrive_date = now_iso()
        record.client_token = token
    execution.update(status="RUNNING", stopDate=None, output=None, error=None, cause=None)
    engine._add_event(execution, "ExecutionRedriven",
                      {"executionRedrivenEventDetails": {"redriveCount": record.redrive_count}})
    engine._emit_execution_status_event(execution)
    threading.Thread(target=contextvars.copy_context().run, args=(engine._run_execution, arn),
                     daemon=True, name=f"redrive-{new_uuid()[:8]}").start()
    return json_response({"redriveDate": record.redrive_date})


_original_describe_execution = engine._describe_execution


def _describe_execution(data):
    status, headers, body = _original_describe_execution(data)
    if status != 200:
        return status, headers, body
    described = json.loads(body)
    execution = engine._executions.get(described["executionArn"])
    record = _executions.get(described["executionArn"]) or Execution()
    reason = _not_redrivable(execution)
    described["redriveCount"] = record.redrive_count
    if record.redrive_date:
        described["redriveDate"] = record.redrive_date
    described["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
    if reason:
        described["redriveStatusReason"] = reason
    return json_response(described, status)


_original_handle_request = engine.handle_request


async def handle_request(method, path, headers, body, query_params):
    if headers.get("x-amz-target", "").endswith(".RedriveExecution"):
        try:
            data = json.loads(body) if body else {}
        except json.JSONDecodeError:
            return error_response_json("SerializationException", "Invalid JSON", 400)
        return engine._finalize_response(_redrive_execution(data))
    return await _original_handle_request(method, path, headers, body, query_params)


for _handler in ("_execute_pass", "_execute_task", "_execute_choice", "_execute_wait",
                 "_execute_parallel", "_execute_map"):
    setattr(engine, _handler, _journaled(getattr(engine, _handler)))
engine._run_sub_machine = _run_sub_machine
engine._run_execution = _run_execution
engine._fail_execution = _fail_execution
engine._add_event = _add_event
engine._emit_execution_status_event = _emit_execution_status_event
eventbridge._dispatch_to_lambda = _dispatch_to_lambda
engine._describe_execution = _describe_execution
engine.handle_request = handle_request

if __name__ == "__main__":
    sys.exit(app.main())
