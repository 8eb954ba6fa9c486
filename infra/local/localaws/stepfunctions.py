"""ministack (Step Functions + Lambda + EventBridge + S3) with the engine behaviours the rollout depends on.

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

6. A Distributed Map as AWS runs it. Each item is a Standard child execution of a Map Run with its
   own ARN (...:execution:<name>/<Label>:<id>), record and history (ExecutionStarted, state and
   Task events, ExecutionSucceeded / Failed / Aborted), as DescribeExecution (mapRunArn),
   ListExecutions(mapRunArn) and GetExecutionHistory show it; its state machine <name>/<Label> is
   described (with its label) but not listed. At most MaxConcurrency or MaxConcurrencyPath children
   run at once (ToleratedFailureCount/PercentagePath are read too; ministack ignores the *Path
   forms). Once failed children pass the tolerated threshold (by default: any failure), the Map Run
   fails: no further child starts, the running ones are aborted (ABORTED; their walk starts no new
   state, a state in flight finishes unseen) and the state fails with
   States.ExceedToleratedFailureThreshold; a stopped or timed-out parent aborts its children and
   the Map Run likewise. DescribeMapRun counts them (aborted, failed, succeeded, pending, ...).
   ResultWriter writes AWS's files to S3 (<Prefix>/<map run id>/manifest.json, SUCCEEDED_0.json,
   FAILED_0.json, PENDING_0.json) whatever the outcome, and the Map's result is then the Map Run ARN
   and the manifest's location. The parent's history gains MapRunStarted / MapRunSucceeded /
   MapRunFailed. ministack runs every child whatever fails, reads MaxConcurrency only, writes no
   results, and gives the children no history.

7. Redriving a parent whose Distributed Map failed (or was aborted) redrives that Map Run, as AWS
   does: same Map Run ARN, its redriveCount + 1 and MapRunRedriven in the parent's history;
   succeeded children are not rerun (their output is used), unsuccessful ones are redriven (same
   ARN, their redriveCount + 1, ExecutionRedriven, resumed from the state that did not complete:
   each child is journaled as an execution of its own, 2.), never-started ones start. A redrive's
   ResultWriter manifest lists the SUCCEEDED files of every attempt and this attempt's FAILED and
   PENDING files.

8. A ResultPath needs an object to add to: on an array input (a pipe's batch) the state fails
   States.ResultPathMatchFailure, as on AWS; ministack puts the result into a new {}.

9. The bus's service events, a service's publishes to a topic, and pipes from SQS queues
   (bus.py).

10. One calendar clock (clock.py). A Wait with a Timestamp or TimestampPath waits until the
   clock reaches it, and the times ministack stamps ($$.Execution.StartTime, startDate,
   $$.State.EnteredTime) are on it, as are moto's and the functions' (AMI_ROLLOUT_CLOCK): after
   the Wait, the function that runs sees the time it waited for. ministack 1.5.33 sleeps the
   distance to the timestamp from the wall clock, times SFN_WAIT_SCALE, so a function reading the
   wall clock after the Wait could find the window it waited for still closed.

11. Callback tasks (.waitForTaskToken) as AWS runs them: TimeoutSecondsPath is read from the
   state's input (ministack reads TimeoutSeconds only, else waits 99,999 s), the timeout runs on
   the scale of Wait states, and a Lambda invocation that fails fails the task with its error
   (ministack swallows it and waits for a callback that never comes).

Run as `python -m localaws.stepfunctions`, with ministack's own environment variables.
"""

import contextvars
import copy
import json
import os
import queue
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from ministack import app
from . import clock, ministack_iam

clock.patch_ministack()
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
        tokens = [_position.set(index)]
        if state_def.get("Type") == "Parallel":
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
    # A Distributed Map's child starts from its parent's thread: it is an execution of its own,
    # walked from its own top level.
    _scope.set(())
    _position.set(None)
    _unjournaled.set(False)
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
    if event_type == "TaskScheduled" and _task_parameters.get() is not None:
        # AWS records what the task was called with (a callback task's token included).
        details["taskScheduledEventDetails"]["parameters"] = _task_parameters.get()
    return _original_add_event(execution, event_type, details)


# --- Distributed Map -------------------------------------------------------------------------------

_COUNTED = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
            "TIMED_OUT": "timedOut", "ABORTED": "aborted"}
_NO_LIMIT = 10_000  # AWS runs up to 10,000 children of a Distributed Map at once


class MapRun:
    """One Map Run, beside ministack's record of it (engine._map_runs, what DescribeMapRun answers)."""

    def __init__(self, record, walk, machine, inputs, writer, tolerance):
        self.record = record
        self.walk = walk            # number of the parent's walk that last ran it (a later walk redrives it)
        self.machine = machine      # the children's state machine, <name>/<Label>
        self.inputs = inputs        # each child's input, in item order
        self.children = [None] * len(inputs)  # child execution ARNs; None: never started
        self.writer = writer        # ResultWriter's Bucket and Prefix, resolved; None without one
        self.tolerance = tolerance  # the tolerated-failure fields the state sets
        self.succeeded_files = []   # SUCCEEDED result files of every attempt (the manifest lists them all)
        self.written = set()        # children already in one of them
        self.results_written = 0


# The latest Map Run of each Distributed Map state an execution entered: (parent ARN, journal scope,
# position of the state in it, state name) -> MapRun. A redrive walking into the same state finds it.
_map_run_by_state = {}


def _run_distributed_map(state_def, raw_input, effective, iterator, execution, ctx):
    """A Distributed Map as AWS runs it: each item a child execution (Standard) of a Map Run, at most
    MaxConcurrency(Path) at once; once the failures pass the tolerated threshold the Map Run fails,
    starts no more children and aborts the running ones; ResultWriter exports the results to S3; a
    redrive of the parent redrives the failed Map Run. ministack runs every child whatever fails,
    ignores MaxConcurrencyPath and ResultWriter, and has children with no history of their own."""
    parent = execution["executionArn"]
    if not _live(parent):
        raise _Stopped()  # e.g. a Retry of the Map state after a stop
    ministack_iam.acting_role.set(ministack_iam.role_of(execution, engine))
    record = _executions.get(parent)
    walk = record.run.number if record and record.run else 0
    key = (parent, _scope.get(), _position.get(), ctx["State"]["Name"])
    mr = _map_run_by_state.get(key)
    if mr and mr.walk < walk and mr.record["status"] in ("FAILED", "ABORTED"):
        indices = _redrive_map_run(mr, execution, walk)
    else:
        mr = _new_map_run(state_def, effective, iterator, execution, ctx, walk)
        with _lock:
            _map_run_by_state[key] = mr
        indices = list(range(len(mr.children)))
    # A Map Run's children are executions of the state machine itself (IAM: StartExecution on it,
    # the Step Functions Developer Guide's Distributed Map policy), whatever label the Map Run has.
    why = ministack_iam.refusal_for_role(ministack_iam.acting_role.get(), "states:StartExecution",
                                         mr.machine.split("/", 1)[0])
    if why:
        raise engine._ExecutionError("States.Runtime", why)
    outcome = _drive(mr, parent, indices)
    mr.record.update(status=outcome, stopDate=now_iso())
    if mr.writer:
        prefix = "/".join(p for p in ((mr.writer.get("Prefix") or "").strip("/"), "*") if p)
        why = ministack_iam.refusal_for_role(ministack_iam.acting_role.get(), "s3:PutObject",
                                             f"arn:aws:s3:::{mr.writer.get('Bucket')}/{prefix}")
        if why:
            raise engine._ExecutionError("States.ResultWriterFailed", why)
    details = _write_results(mr) if mr.writer else None
    _count(mr)
    if outcome == "ABORTED":
        raise _Stopped()
    if outcome == "FAILED":
        error, cause = "States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"
        engine._add_event(execution, "MapRunFailed", {"mapRunFailedEventDetails": {"error": error, "cause": cause}})
        raise engine._ExecutionError(error, cause)
    engine._add_event(execution, "MapRunSucceeded")
    if details:
        result = {"MapRunArn": mr.record["mapRunArn"], "ResultWriterDetails": details}
    else:  # AWS returns a failed (tolerated) child's whole record, as a ResultWriter would write it
        result = [json.loads(engine._executions[arn]["output"]) if engine._executions[arn]["status"] == "SUCCEEDED"
                  else _result_entry(engine._executions[arn]) for arn in mr.children]
    output = engine._apply_result_path(state_def, raw_input, engine._apply_result_selector(state_def, result))
    return engine._apply_output_path(state_def, output, ctx), engine._next_or_end(state_def)


def _new_map_run(state_def, effective, iterator, execution, ctx, walk):
    if state_def.get("ItemReader"):
        items = engine._read_map_items(state_def["ItemReader"], effective, ctx)
    else:
        items = engine._resolve_path_or_ctx(state_def.get("ItemsPath", "$"), effective, ctx)
    items = items if isinstance(items, list) else [items]
    selector = state_def.get("ItemSelector") or state_def.get("Parameters")
    inputs = [engine._resolve_params_obj(selector, effective, {**ctx, "Map": {"Item": {"Index": i, "Value": item}}})
              if selector else item for i, item in enumerate(items)]
    # The *Path forms (ministack reads only the static fields) resolve against the state's input.
    fields = {}
    for field in ("MaxConcurrency", "ToleratedFailureCount", "ToleratedFailurePercentage"):
        if f"{field}Path" in state_def:
            fields[field] = engine._resolve_path_or_ctx(state_def[f"{field}Path"], effective, ctx)
        elif field in state_def:
            fields[field] = state_def[field]
    writer = None
    if state_def.get("ResultWriter"):
        writer = engine._resolve_params_obj(state_def["ResultWriter"].get("Parameters")
                                            or state_def["ResultWriter"].get("Arguments") or {}, effective, ctx)

    parent_machine = engine._state_machines.get(execution["stateMachineArn"]) or {}
    _, _, _, region, account, _, name = execution["stateMachineArn"].split(":")[:7]
    label = state_def.get("Label") or new_uuid()
    machine = f"arn:aws:states:{region}:{account}:stateMachine:{name}/{label}"
    # The children's state machine, which DescribeStateMachine answers with its label on AWS too.
    definition = {"StartAt": iterator.get("StartAt"), "States": iterator.get("States", {})}
    if ctx.get("QueryLanguage"):
        definition["QueryLanguage"] = ctx["QueryLanguage"]
    engine._state_machines[machine] = dict(parent_machine, stateMachineArn=machine, name=f"{name}/{label}",
                                           label=label, definition=json.dumps(definition))
    n = len(items)
    zero = dict.fromkeys(("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total",
                          "resultsWritten", "failuresNotRedrivable", "pendingRedrive"), 0)
    record = {
        "mapRunArn": f"arn:aws:states:{region}:{account}:mapRun:{name}/{label}:{new_uuid()}",
        "executionArn": execution["executionArn"], "status": "RUNNING", "startDate": now_iso(),
        "maxConcurrency": int(fields.get("MaxConcurrency") or 0),
        "toleratedFailurePercentage": float(fields.get("ToleratedFailurePercentage") or 0),
        "toleratedFailureCount": int(fields.get("ToleratedFailureCount") or 0),
        "itemCounts": dict(zero, total=n, pending=n), "executionCounts": dict(zero, total=n, pending=n),
        "redriveCount": 0, "_stateMachineArn": machine,
    }
    engine._map_runs[record["mapRunArn"]] = record
    engine._add_event(execution, "MapRunStarted", {"mapRunStartedEventDetails": {"mapRunArn": record["mapRunArn"]}})
    tolerance = {f for f in ("ToleratedFailureCount", "ToleratedFailurePercentage") if f in fields}
    return MapRun(record, walk, machine, inputs, writer, tolerance)


def _redrive_map_run(mr, execution, walk):
    """AWS: the same Map Run (same ARN, redriveCount + 1) reruns its unsuccessful children (each
    redriven: same ARN, from its failed state) and starts those never started; succeeded children are
    not rerun. Returns the items to run."""
    mr.walk = walk
    mr.record["redriveCount"] += 1
    mr.record.update(status="RUNNING", redriveDate=now_iso())
    mr.record.pop("stopDate", None)
    engine._add_event(execution, "MapRunRedriven", {"mapRunRedrivenEventDetails": {
        "mapRunArn": mr.record["mapRunArn"], "redriveCount": mr.record["redriveCount"]}})
    return [i for i, arn in enumerate(mr.children)
            if arn is None or engine._executions[arn]["status"] != "SUCCEEDED"]


def _drive(mr, parent, indices):
    """Runs the children at `indices` in order, at most maxConcurrency at once (read each time, so
    UpdateMapRun applies), until all end ("SUCCEEDED"), the tolerated failures are exceeded
    ("FAILED") or the parent stops ("ABORTED"). Then no more start and the running ones are aborted."""
    done = queue.Queue()
    waiting, running, failures, outcome = list(indices), set(), 0, "SUCCEEDED"
    while waiting or running:
        if not _live(parent):  # stopped, timed out
            outcome = "ABORTED"
            break
        while waiting and len(running) < (mr.record["maxConcurrency"] or _NO_LIMIT):
            index = waiting.pop(0)
            running.add(index)
            _start_child(mr, index, done)
        _count(mr, pending_redrive=sum(1 for i in waiting if mr.children[i]))
        try:
            index = done.get(timeout=0.1)
        except queue.Empty:
            continue
        running.discard(index)
        if engine._executions[mr.children[index]]["status"] != "SUCCEEDED":
            failures += 1
            if _exceeded(mr, failures):
                outcome = "FAILED"
                break
    for index in running:
        _abort(mr.children[index])
    return outcome


def _exceeded(mr, failures):
    """AWS: with neither tolerated-failure field any failure fails the Map Run; else exceeding
    either does (the percentage of all items)."""
    limits = []
    if "ToleratedFailureCount" in mr.tolerance:
        limits.append(failures > mr.record["toleratedFailureCount"])
    if "ToleratedFailurePercentage" in mr.tolerance:
        limits.append(failures * 100 > mr.record["toleratedFailurePercentage"] * len(mr.children))
    return failures > 0 and (any(limits) if limits else True)


def _start_child(mr, index, done):
    """Starts child `index` as an execution of its own: new, or its unsuccessful one redriven."""
    arn = mr.children[index]
    if arn is None:
        name, started, payload = new_uuid(), now_iso(), json.dumps(mr.inputs[index])
        arn = mr.machine.replace(":stateMachine:", ":execution:") + ":" + name
        role = (engine._state_machines.get(mr.machine) or {}).get("roleArn")
        engine._executions[arn] = {
            "executionArn": arn, "stateMachineArn": mr.machine, "name": name, "status": "RUNNING",
            "startDate": started, "stopDate": None, "input": payload, "inputDetails": {"included": True},
            "output": None, "outputDetails": {"included": True}, "mapRunArn": mr.record["mapRunArn"],
            "testCase": "", "mockAttempts": {},
            "events": [{"id": 1, "type": "ExecutionStarted", "timestamp": started,
                        "executionStartedEventDetails": {"input": payload, "roleArn": role}}],
        }
        mr.children[index] = arn
        engine._emit_execution_status_event(engine._executions[arn])
    else:
        _mark_redriven(engine._executions[arn])

    def walk():
        try:
            engine._run_execution(arn)  # the child's walk, journaled under its own ARN
        finally:
            done.put(index)

    threading.Thread(target=contextvars.copy_context().run, args=(walk,), daemon=True,
                     name=f"child-{arn[-8:]}").start()


def _abort(arn):
    """A running child aborted by its Map Run, as StopExecution would: its walk starts no further
    state and the state in flight finishes unseen."""
    engine._stop_execution({"executionArn": arn})


def _count(mr, pending_redrive=0):
    counts = dict.fromkeys(_COUNTED.values(), 0)
    for arn in mr.children:
        counts[_COUNTED.get(engine._executions[arn]["status"] if arn else "PENDING", "pending")] += 1
    counts.update(total=len(mr.children), resultsWritten=mr.results_written, failuresNotRedrivable=0,
                  pendingRedrive=pending_redrive)
    mr.record["itemCounts"], mr.record["executionCounts"] = counts, dict(counts)


def _result_entry(child):
    """A child as AWS's result files (and a failed child in the Map's output) show it."""
    reason = _not_redrivable(child)
    entry = {"ExecutionArn": child["executionArn"], "Input": child["input"], "InputDetails": {"Included": True},
             "Name": child["name"]}
    if child["status"] == "SUCCEEDED":
        entry.update(Output=child["output"], OutputDetails={"Included": True})
    else:
        entry.update(Error=child.get("error"), Cause=child.get("cause"))
    entry.update(RedriveCount=(_executions.get(child["executionArn"]) or Execution()).redrive_count,
                 RedriveStatus="NOT_REDRIVABLE" if reason else "REDRIVABLE",
                 RedriveStatusReason=reason or f"Execution is {child['status']} and is redrivable",
                 StartDate=child["startDate"], StateMachineArn=child["stateMachineArn"], Status=child["status"],
                 StopDate=child["stopDate"])
    return entry


def _write_results(mr):
    """AWS's ResultWriter export: <Prefix>/<map run id>/manifest.json and SUCCEEDED_0.json,
    FAILED_0.json (failed, timed out, aborted), PENDING_0.json (never started), each a JSON array.
    A redrive's manifest lists the SUCCEEDED files of every attempt and this attempt's FAILED and
    PENDING files; AWS does not document where a redrive's files go: here under redrive-<n>/.
    Returns the ResultWriterDetails for the Map's output."""
    from ministack.services import s3

    bucket, prefix = mr.writer.get("Bucket"), (mr.writer.get("Prefix") or "").strip("/")
    base = "/".join(p for p in (prefix, mr.record["mapRunArn"].rsplit(":", 1)[1]) if p)
    attempt = base if not mr.record["redriveCount"] else f"{base}/redrive-{mr.record['redriveCount']}"
    rows = {"SUCCEEDED": [], "FAILED": [], "PENDING": []}
    for index, arn in enumerate(mr.children):
        child = engine._executions[arn] if arn else None
        if child is None:  # what a child never started is written as: not documented
            rows["PENDING"].append({"Input": json.dumps(mr.inputs[index]), "InputDetails": {"Included": True},
                                    "Status": "PENDING"})
        elif child["status"] != "SUCCEEDED":
            rows["FAILED"].append(_result_entry(child))
        elif arn not in mr.written:
            rows["SUCCEEDED"].append(_result_entry(child))
            mr.written.add(arn)

    def put(key, document):
        body = json.dumps(document).encode()
        status, _, _ = s3._put_object(bucket, key, body, {"content-type": "application/json"})
        if status != 200:
            raise engine._ExecutionError("States.ResultWriterFailed",
                                         f"Writing s3://{bucket}/{key} failed with status {status}")
        return {"Key": key, "Size": len(body)}

    files = {status: [put(f"{attempt}/{status}_0.json", found)] if found else [] for status, found in rows.items()}
    mr.succeeded_files += files["SUCCEEDED"]
    mr.results_written = len(mr.written) + len(rows["FAILED"])
    manifest = f"{base}/manifest.json"
    put(manifest, {"DestinationBucket": bucket, "MapRunArn": mr.record["mapRunArn"],
                   "ResultFiles": {"FAILED": files["FAILED"], "PENDING": files["PENDING"],
                                   "SUCCEEDED": mr.succeeded_files}})
    return {"Bucket": bucket, "Key": manifest}


_original_list_state_machines = engine._list_state_machines


def _list_state_machines(data):
    """Without the Map Runs' child state machines (<name>/<Label>), which AWS does not list."""
    status, headers, body = _original_list_state_machines(data)
    if status != 200:
        return status, headers, body
    listed = json.loads(body)
    listed["stateMachines"] = [m for m in listed["stateMachines"] if "/" not in m["name"]]
    return json_response(listed, status)


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


def _mark_redriven(execution):
    """Records a redrive of `execution` as AWS does (count, date, status, ExecutionRedriven event,
    status change event); the caller walks it again."""
    record = _record(execution["executionArn"])
    with _lock:
        record.redrive_count += 1
        record.redrive_date = now_iso()
        # An earlier walk still in flight (a stopped state finishing) must not look live again
        # once the status is RUNNING, before the new walk takes over.
        record.run = None
    execution.update(status="RUNNING", stopDate=None, output=None, error=None, cause=None)
    engine._add_event(execution, "ExecutionRedriven",
                      {"executionRedrivenEventDetails": {"redriveCount": record.redrive_count}})
    engine._emit_execution_status_event(execution)


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
    record.client_token = token
    _mark_redriven(execution)
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
engine._run_distributed_map = _run_distributed_map
engine._list_state_machines = _list_state_machines
engine._run_execution = _run_execution
engine._fail_execution = _fail_execution
engine._add_event = _add_event
engine._emit_execution_status_event = _emit_execution_status_event
eventbridge._dispatch_to_lambda = _dispatch_to_lambda
engine._describe_execution = _describe_execution
engine.handle_request = handle_request

_original_apply_result_path = engine._apply_result_path_raw


def _apply_result_path(result_path, original, result):
    """AWS: a ResultPath other than `$` (or null) needs an object input to add the result to; on
    an array (a pipe's batch) or a scalar the state fails States.ResultPathMatchFailure.
    ministack replaces such an input by {} and goes on."""
    if result_path not in (None, "$") and not isinstance(original, dict):
        raise engine._ExecutionError(
            "States.ResultPathMatchFailure",
            f"Unable to apply ReferencePath {result_path} to input {json.dumps(original)[:200]}")
    return _original_apply_result_path(result_path, original, result)


engine._apply_result_path_raw = _apply_result_path


def _sleep_until(iso_ts):
    try:
        target = datetime.fromisoformat(iso_ts.replace("Z", "+00:00")).timestamp()
    except (ValueError, TypeError, AttributeError):
        return
    left = target - clock.now()
    if left > 0 and engine._SFN_WAIT_SCALE > 0:
        time.sleep(clock.wall_seconds(left))


engine._sleep_until = _sleep_until

_original_execute_task = engine._execute_task


# The resolved parameters of the Task being scheduled, for its TaskScheduled event.
_task_parameters = contextvars.ContextVar("task_parameters", default=None)


_original_apply_parameters = engine._apply_parameters


def _apply_parameters(state_def, data, ctx=None):
    """ministack resolves a Task's parameters just before its TaskScheduled event: kept for it."""
    parameters = _original_apply_parameters(state_def, data, ctx)
    if state_def.get("Type") == "Task":
        _task_parameters.set(json.dumps(parameters))
    return parameters


engine._apply_parameters = _apply_parameters


def _execute_task(state_def, raw_input, execution, ctx):
    _task_parameters.set(None)
    ministack_iam.acting_role.set(ministack_iam.role_of(execution, engine))
    if "TimeoutSecondsPath" in state_def and isinstance(raw_input, dict):
        seconds = engine._resolve_path(state_def["TimeoutSecondsPath"], raw_input)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
            raise engine._ExecutionError(
                "States.Runtime",
                f"TimeoutSecondsPath {state_def['TimeoutSecondsPath']} does not select a positive integer")
        state_def = dict(state_def, TimeoutSeconds=seconds)
        state_def.pop("TimeoutSecondsPath")
    return _original_execute_task(state_def, raw_input, execution, ctx)


engine._execute_task = _execute_task


def _invoke_with_callback(resource, input_data, token, state_def):
    """A Lambda callback task: invoke (a failed invocation fails the task), then wait for
    SendTask* or the timeout, on the scale of Wait states."""
    clean = resource.replace(".waitForTaskToken", "")
    if "states:::lambda:invoke" not in clean:
        return _original_invoke_with_callback(resource, input_data, token, state_def)
    event = threading.Event()
    engine._task_tokens[token] = {"event": event, "result": None, "error": None, "heartbeat": None}
    function = engine._resolve_lambda_function_ref(input_data.get("FunctionName", ""), optimized=True)
    try:
        engine._call_lambda(function, input_data.get("Payload", {}))
    except engine._ExecutionError:
        engine._task_tokens.pop(token, None)
        raise
    timeout = state_def.get("TimeoutSeconds", 99999) * engine._SFN_WAIT_SCALE
    if not event.wait(timeout=timeout if engine._SFN_WAIT_SCALE > 0 else None):
        engine._task_tokens.pop(token, None)
        raise engine._ExecutionError("States.Timeout", "Task timed out waiting for callback")
    info = engine._task_tokens.pop(token, {})
    if info.get("error"):
        raise engine._ExecutionError(info["error"].get("Error", "TaskFailed"), info["error"].get("Cause", ""))
    result = info.get("result", "{}")
    return json.loads(result) if isinstance(result, str) else result


_original_invoke_with_callback = engine._invoke_with_callback
engine._invoke_with_callback = _invoke_with_callback

# The bus's service events, a service's publishes, and pipes from SQS queues (bus.py).
from . import bus  # noqa: E402
from . import lambda_service  # noqa: E402

lambda_service.install()
if os.environ.get("LOCALAWS_MOTO") and os.environ.get("LOCALAWS_IAM", "on") != "off":
    ministack_iam.install(engine)

bus.install()

if __name__ == "__main__":
    sys.exit(app.main())
