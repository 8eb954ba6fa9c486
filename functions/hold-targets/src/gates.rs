//! Change control inside the state machine: a target's maintenance window, checked before its
//! change starts, and the approval gate after a wave.
//!
//! Both wait with a callback task (a task token), so what they wait for can end the wait early:
//! a target waiting for its window parks its token where the wave's stop finds it (a failure
//! elsewhere in the wave wakes it at once, and it ends as stopped); a gate's token is stored where
//! the approvers read it, but it only wakes the gate, which then reads the approvers' decision.

use rollout_core::FromSdk;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures_util::{StreamExt, TryStreamExt, stream};
use rollout_core::error::REJECTED;
use rollout_core::gate::OnApprovalTimeout;
use rollout_core::model::{Epoch, PlanSummary, Target, TargetRun};
use rollout_core::stop::{execution_key, stop_in};
use rollout_core::store::{
    ApprovalDecision, ApprovalRequest, ResultWriterDetails, approval_key, decision_key,
};
use rollout_core::window::{MaintenanceWindow, WindowCheck, WindowState, WindowTimes};
use rollout_core::{StepError, StepResult};
use serde::Serialize;

use crate::table::{HoldClients, s};
use rollout_core::store::execution_name;

/// How far ahead a target that is already running looks for its window's next opening.
const RUNNING_HORIZON_DAYS: u32 = 366;
/// A task token lives at most a year (365 days): a longer wait parks again when it times out.
const LONGEST_PARK_SECONDS: i64 = 364 * 86_400;
/// The execution record's set of the targets parked until their window opens.
const WAITERS: &str = "windowWaiters";

/// Refuses (`WaveStopped`) once another target of the wave failed, so a target waiting for its
/// window does not wait for nothing; then reads the window at `now`: open, or how long to park.
/// A target that parked before is no longer waiting: its token is forgotten first.
pub async fn check_window(
    clients: &HoldClients,
    run: &TargetRun,
    now: Epoch,
) -> StepResult<WindowCheck> {
    if let (Some(execution), Some(_)) = (&run.execution_arn, &run.target.window) {
        forget_parked_token(clients, execution, &run.target.name()).await?;
    }
    clients.fleet.ensure_wave_going(run).await?;
    let times = match &run.target.window {
        None => WindowTimes::NO_WINDOW,
        Some(planned) => window_at(&planned.window, &run.target, now)?.into(),
    };
    Ok(WindowCheck {
        times,
        wait_seconds: times
            .opens_at
            .map(|opens| (opens - now).clamp(1, LONGEST_PARK_SECONDS)),
    })
}

fn waiter_key(execution: &str, target: &str) -> String {
    format!("window-wait#{execution}#{target}")
}

/// Parks `run`'s target until its window opens: keeps its callback `token` where the wave's stop
/// finds it. Written before the name joins the record, so a stop that sees the name finds the
/// token; a stop already recorded wakes the target at once.
pub async fn wait_for_window(
    clients: &HoldClients,
    run: &TargetRun,
    token: &str,
) -> StepResult<()> {
    let execution = run
        .execution_arn
        .as_deref()
        .ok_or_else(|| StepError::invalid("waitForWindow: the run has no executionArn"))?;
    let name = run.target.name();
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.table)
        .item("key", s(waiter_key(execution, &name)))
        .item("token", s(token))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("PutItem", e))?;
    let record = clients
        .update(execution_key(execution))
        .update_expression("ADD #waiters :name")
        .expression_attribute_names("#waiters", WAITERS)
        .expression_attribute_values(":name", AttributeValue::Ss(vec![name.clone()]))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("UpdateItem", e))?;
    let stopped = record.attributes().map_or(Ok(None), stop_in)?;
    if stopped.is_some_and(|stop| stop.target_name() != name) {
        wake(clients, token).await?;
    }
    Ok(())
}

/// The wave stopped: wakes every target parked until its window, so each ends as stopped now
/// rather than at its opening. Returns how many were woken.
pub async fn wake_waiters(clients: &HoldClients, execution: &str) -> StepResult<usize> {
    let record = clients
        .get(execution_key(execution))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("GetItem", e))?;
    let names: Vec<String> = record
        .item()
        .and_then(|i| i.get(WAITERS))
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    // A few at once: Step Functions throttles SendTaskSuccess per account.
    let woken: Vec<bool> = stream::iter(names.iter().map(|name| async move {
        let item = clients
            .get(waiter_key(execution, name))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("GetItem", e))?;
        match token_in(item.item()) {
            Some(token) => wake(clients, &token).await.map(|()| true),
            None => Ok(false),
        }
    }))
    .buffer_unordered(WAKE_CONCURRENCY)
    .try_collect()
    .await?;
    Ok(woken.into_iter().filter(|w| *w).count())
}

/// Parked targets woken at once by a wave's stop.
const WAKE_CONCURRENCY: usize = 10;

/// The execution has ended: forgets every token it parked (a park's item, by target name).
pub async fn forget_parked(
    clients: &HoldClients,
    execution: &str,
    record: Option<&HashMap<String, AttributeValue>>,
) -> StepResult<()> {
    let names = record
        .and_then(|r| r.get(WAITERS))
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    for name in names {
        clients
            .delete(waiter_key(execution, &name))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DeleteItem", e))?;
    }
    Ok(())
}

fn token_in(item: Option<&HashMap<String, AttributeValue>>) -> Option<String> {
    item?.get("token")?.as_s().ok().cloned()
}

/// Ends a parked target's wait (it then reads the wave's stop). A token already spent (the
/// window opened meanwhile, or the execution ended) has nothing to wake.
async fn wake(clients: &HoldClients, token: &str) -> StepResult<()> {
    match clients
        .sfn
        .send_task_success()
        .task_token(token)
        .output(r#"{"woken":"the wave stopped"}"#)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_task_does_not_exist() || e.is_task_timed_out() || e.is_invalid_token()
            }) =>
        {
            Ok(())
        }
        Err(err) => Err(StepError::from_sdk("SendTaskSuccess", err)),
    }
}

/// The target is no longer parked: forgets its token.
async fn forget_parked_token(clients: &HoldClients, execution: &str, name: &str) -> StepResult<()> {
    clients
        .update(execution_key(execution))
        .update_expression("DELETE #waiters :name")
        .expression_attribute_names("#waiters", WAITERS)
        .expression_attribute_values(":name", AttributeValue::Ss(vec![name.to_string()]))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("UpdateItem", e))?;
    clients
        .delete(waiter_key(execution, name))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DeleteItem", e))?;
    Ok(())
}

fn window_at(window: &MaintenanceWindow, target: &Target, now: Epoch) -> StepResult<WindowState> {
    match window.state_at(now, RUNNING_HORIZON_DAYS)? {
        WindowState::Closed { opens_at: None } => Err(StepError::invalid(format!(
            "{}: its maintenance window ({} in {}) does not open within a year",
            target.name(),
            window.cron,
            window.time_zone
        ))),
        state => Ok(state),
    }
}

/// What the gate was asked: the wave just finished, where its children's outcomes are, and the
/// token that moves the execution on.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskApproval {
    pub execution: String,
    pub token: String,
    pub wave: usize,
    pub plan: Box<PlanSummary>,
    #[serde(default)]
    pub wave_results: Option<ResultWriterDetails>,
    /// `$$.Execution.RedriveCount`: a redrive asks anew, with a new deadline.
    #[serde(default)]
    pub redrive_count: u32,
    /// `$$.Execution.StartTime`: a request or decision left by an earlier execution of the same
    /// name is not this one's.
    #[serde(with = "rollout_core::model::iso_epoch")]
    pub execution_start_time: Epoch,
}

/// Woken with no decision this many times, a gate stops listening to its token and reads the
/// decision at its deadline: each wake costs about 13 history events, and a token is readable by
/// whoever reads the history.
pub const MAX_WAKES: u32 = 20;

/// Stores the token and tells the approvers. The token only wakes the gate (`SendTaskSuccess` or
/// `SendTaskFailure`, by anyone who may call them), which then reads the approvers' decision
/// (`read_decision`); woken without one, it asks again with a new token, keeping its deadline and
/// telling no one again.
pub async fn ask_approval(
    clients: &HoldClients,
    ask: &AskApproval,
    now: Epoch,
) -> StepResult<ApprovalAsked> {
    let store = clients.fleet.store()?;
    let name = execution_name(&ask.execution);
    let key = approval_key(name, ask.wave);
    let asked: Option<ApprovalRequest> = store.find_json(&store.bucket, &key).await?;
    let this_run = |a: &ApprovalRequest| {
        a.redrive_count == ask.redrive_count && a.execution_start_time == ask.execution_start_time
    };
    if let Some(mut asked) = asked.filter(this_run) {
        asked.task_token = ask.token.clone();
        asked.wakes += 1;
        store.put_json(&key, &asked).await?;
        tracing::info!(execution = %ask.execution, wave = ask.wave, wakes = asked.wakes, "asked again, woken with no decision");
        return Ok(ApprovalAsked {
            key,
            answer_by: rollout_core::aws::iso_time(asked.answer_by),
        });
    }
    let plan = &ask.plan;
    let (finished, next) = match (plan.waves.get(ask.wave), plan.waves.get(ask.wave + 1)) {
        (Some(finished), Some(next)) => (finished, next),
        _ => {
            return Err(StepError::invalid(format!(
                "askApproval: the plan has no wave {} followed by another",
                ask.wave
            )));
        }
    };
    let gate = finished.approval.clone().ok_or_else(|| {
        StepError::invalid(format!(
            "askApproval: wave {} has no approval gate",
            ask.wave
        ))
    })?;
    let outcomes = match &ask.wave_results {
        Some(written) => store
            .lane_results(written)
            .await?
            .iter()
            .filter_map(|r| r.output_as::<Outcome>())
            .collect(),
        None => Vec::new(),
    };
    let finished_targets = store.wave_targets(plan, finished).await?;
    let next_targets = store.wave_targets(plan, next).await?;
    let request = ApprovalRequest {
        execution_arn: ask.execution.clone(),
        wave: ask.wave,
        task_token: ask.token.clone(),
        asked_at: now,
        answer_by: now + gate.timeout_seconds,
        on_timeout: gate.on_timeout,
        message: Briefing {
            ask,
            location: format!("s3://{}/{key}", store.bucket),
            bucket: &store.bucket,
            finished: &finished_targets,
            outcomes: &outcomes,
            next: &next_targets,
            answer_by: now + gate.timeout_seconds,
            on_timeout: gate.on_timeout,
        }
        .message(),
        redrive_count: ask.redrive_count,
        execution_start_time: ask.execution_start_time,
        wakes: 0,
    };
    // Told before the request is stored: a retry after a failed store tells them again, where
    // the other order could leave a stored request no one was told of.
    match &clients.approval_topic {
        Some(topic) => {
            clients
                .sns
                .publish()
                .topic_arn(topic)
                .subject(subject(name, ask.wave))
                .message(&request.message)
                .send()
                .await
                .map_err(|e| StepError::from_sdk("Publish", e))?;
        }
        None => tracing::warn!(
            execution = %ask.execution,
            "APPROVAL_TOPIC_ARN is not set: the approval request is only in s3://{}/{key}",
            store.bucket
        ),
    }
    store.put_json(&key, &request).await?;
    tracing::info!(execution = %ask.execution, wave = ask.wave, key = %key, "asked for approval");
    Ok(ApprovalAsked {
        key,
        answer_by: rollout_core::aws::iso_time(request.answer_by),
    })
}

/// Which gate to read, when woken or timed out.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadDecision {
    pub execution: String,
    pub wave: usize,
    /// `$$.Execution.RedriveCount`.
    #[serde(default)]
    pub redrive_count: u32,
    /// `$$.Execution.StartTime`: only a decision made since counts.
    #[serde(with = "rollout_core::model::iso_epoch")]
    pub execution_start_time: Epoch,
}

/// What the gate does next.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    Approved,
    Rejected,
    /// No decision yet: ask again, for `waitSeconds`.
    Waiting,
    /// No decision yet, and woken too often: wait `waitSeconds` without a token, then read again.
    WaitOut,
    /// No decision in time, and the gate's settings roll back.
    TimedOut,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GateState {
    pub decision: Decision,
    /// How long the gate still waits (at least 1 s: a callback task's timeout).
    pub wait_seconds: i64,
    /// A rejection, as the wave's failure: `Rejected` and the approver's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<rollout_core::model::CaughtError>,
}

/// The gate obeys only a decision an approver wrote (`decisions/`, which only the approver roles
/// may write): a token sent by anyone else wakes it to find none, and it waits on to its
/// deadline. Past the deadline with no decision it times out as its settings say; a gate that
/// stopped (`ApprovalTimedOut`) and was redriven asks again for its whole timeout.
pub async fn read_decision(
    clients: &HoldClients,
    read: &ReadDecision,
    now: Epoch,
) -> StepResult<GateState> {
    let store = clients.fleet.store()?;
    let name = execution_name(&read.execution);
    let request: ApprovalRequest = store
        .get_json(&store.bucket, &approval_key(name, read.wave))
        .await?;
    let decision: Option<ApprovalDecision> = store
        .find_json(&store.bucket, &decision_key(name, read.wave))
        .await?;
    if let Some(decision) = &decision {
        tracing::info!(execution = %read.execution, wave = read.wave, approved = decision.approved, by = %decision.by, "decided");
    }
    // A decision older than this execution is another execution's (one of the same name).
    let decision = decision.filter(|d| d.decided_at >= read.execution_start_time);
    gate_state(&request, decision, read.redrive_count, now)
}

/// What a gate asked by `request` does at `now`, given the approvers' `decision`, if any.
fn gate_state(
    request: &ApprovalRequest,
    decision: Option<ApprovalDecision>,
    redrive_count: u32,
    now: Epoch,
) -> StepResult<GateState> {
    let state = |decision, wait_seconds: i64| GateState {
        decision,
        wait_seconds: wait_seconds.max(1),
        failure: None,
    };
    if let Some(decision) = decision {
        if decision.approved {
            return Ok(state(Decision::Approved, 1));
        }
        let reason = decision.reason.as_deref().unwrap_or("no reason given");
        return Ok(GateState {
            failure: Some(rollout_core::model::CaughtError {
                error: REJECTED.into(),
                cause: format!("{reason} (rejected by {})", decision.by),
            }),
            ..state(Decision::Rejected, 1)
        });
    }
    if redrive_count > request.redrive_count {
        return Ok(state(
            Decision::Waiting,
            request.answer_by - request.asked_at,
        ));
    }
    let left = request.answer_by - now;
    if left > 0 && request.wakes >= MAX_WAKES {
        return Ok(state(Decision::WaitOut, left));
    }
    if left > 0 {
        return Ok(state(Decision::Waiting, left));
    }
    match request.on_timeout {
        OnApprovalTimeout::Rollback => Ok(state(Decision::TimedOut, 1)),
        OnApprovalTimeout::Stop => Err(StepError::ApprovalTimedOut(format!(
            "no approver answered the gate after wave {} of {} by {}; it keeps its holds: redrive the execution to ask again",
            request.wave + 1,
            execution_name(&request.execution_arn),
            rollout_core::aws::iso_time(request.answer_by)
        ))),
    }
}

/// Where the gate stored its request (never the token itself: the result of a callback task's
/// invocation may be logged).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAsked {
    pub key: String,
    pub answer_by: String,
}

/// A target child's result, as its last Pass state writes it.
#[derive(serde::Deserialize, Debug, Clone)]
struct Outcome {
    group: String,
    outcome: String,
}

/// SNS takes a subject of "less than 100 characters", without line breaks or control characters
/// (Publish API reference). Counted in characters: an execution name may hold non-ASCII ones.
const SUBJECT_MAX_CHARS: usize = 99;

fn subject(execution: &str, wave: usize) -> String {
    format!("ami-rollout: approve wave {} of {execution}?", wave + 2)
        .chars()
        .filter(|c| !c.is_control())
        .take(SUBJECT_MAX_CHARS)
        .collect()
}

/// What the approvers are told: what the finished wave did and its checks, what the next wave
/// will do, and how to answer (never the token).
struct Briefing<'a> {
    ask: &'a AskApproval,
    /// Where the request, token included, is stored.
    location: String,
    /// The plans bucket, where an approver writes the decision.
    bucket: &'a str,
    finished: &'a [Target],
    outcomes: &'a [Outcome],
    next: &'a [Target],
    answer_by: Epoch,
    on_timeout: OnApprovalTimeout,
}

impl Briefing<'_> {
    fn message(&self) -> String {
        let Briefing {
            ask,
            finished,
            outcomes,
            next,
            ..
        } = self;
        let settings = &ask.plan.settings;
        let name = execution_name(&ask.execution);
        let ami = &ask.plan.ami;
        let mut text = format!(
            "Execution {name} rolled wave {} of {} out to {} ({}) and it passed its checks.\n\n",
            ask.wave + 1,
            ask.plan.waves.len(),
            ami.id,
            ami.name
        );
        text.push_str("What the wave did:\n");
        for target in finished.iter() {
            let outcome =
                outcomes
                    .iter()
                    .find(|o| o.group == target.resource)
                    .map_or("rolled out", |o| match o.outcome.as_str() {
                        "rolledOut" => "rolled out",
                        other => other,
                    });
            let own = settings.for_group(&target.resource);
            let mut checks = vec![format!("healthy for a {} s bake", own.bake_seconds())];
            if Option::is_some(&target.ecs) {
                checks.push("ECS services steady".into());
            }
            if !own.alarm_names().is_empty() {
                checks.push(format!("alarms quiet: {}", own.alarm_names().join(", ")));
            }
            text.push_str(&format!(
                "- {} on {}: {outcome}; {}\n",
                target.name(),
                target.ami.id,
                checks.join(", ")
            ));
        }
        text.push_str(&format!(
            "\nWhat wave {} will do: roll {} target(s) out to {}:\n",
            ask.wave + 2,
            next.len(),
            ami.id
        ));
        for target in next.iter() {
            let window = target
                .window
                .as_ref()
                .map(|w| format!(" ({})", w.window.describe()))
                .unwrap_or_default();
            text.push_str(&format!("- {}{window}\n", target.name()));
        }
        let timeout = match self.on_timeout {
            OnApprovalTimeout::Stop => "the execution stops, keeping its holds, for a redrive",
            OnApprovalTimeout::Rollback => "every target the execution touched is rolled back",
        };
        text.push_str(&format!(
        "\nAnswer by {}; after that, {timeout}.\n\
         Approve: ami-rollout approve {name}\n\
         Reject (rolls back every touched target): ami-rollout reject {name} --reason \"...\"\n\
         Without the CLI: write your decision to s3://{}/{}\n  \
         ({{\"approved\": true|false, \"by\": \"<you>\", \"reason\": \"...\", \"decidedAt\": \"<ISO 8601 time>\"}}),\n\
         then wake the gate with the task token in {} (taskToken):\n  \
         aws stepfunctions send-task-success --task-token <token> --task-output '{{}}'\n\
         The gate obeys the decision; the token alone decides nothing.\n",
        rollout_core::aws::iso_time(self.answer_by),
        self.bucket,
        decision_key(name, ask.wave),
        self.location
    ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::settings::SettingsMap;
    use rollout_core::window::PlannedWindow;

    use crate::tests::EXECUTION;
    use rollout_core::samples::target;

    #[test]
    fn a_subject_is_under_100_characters_whatever_the_execution_name() {
        let name = "ü".repeat(80);
        let said = subject(&name, 0);
        assert_eq!(said.chars().count(), SUBJECT_MAX_CHARS);
        assert!(
            said.starts_with("ami-rollout: approve wave 2 of üü"),
            "{said}"
        );
        assert_eq!(
            subject("nightly\nrun", 1),
            "ami-rollout: approve wave 3 of nightlyrun?"
        );
    }

    #[test]
    fn a_window_check_says_when_to_look_again_in_the_wait_s_timestamp_form() {
        let closed = WindowTimes::from(WindowState::Closed {
            opens_at: Some(1_796_464_800),
        });
        assert_eq!(
            serde_json::to_value(closed).unwrap(),
            serde_json::json!({"open": false, "opensAt": "2026-12-05T10:00:00Z"})
        );
        let open = WindowTimes::from(WindowState::Open {
            closes_at: 1_796_464_800,
        });
        assert_eq!(
            serde_json::to_value(open).unwrap(),
            serde_json::json!({"open": true, "closesAt": "2026-12-05T10:00:00Z"})
        );
        assert_eq!(
            serde_json::to_value(WindowTimes::NO_WINDOW).unwrap(),
            serde_json::json!({"open": true})
        );
    }

    #[test]
    fn a_running_target_whose_window_never_opens_fails_with_its_name() {
        let window = MaintenanceWindow {
            cron: "0 0 30 2 *".into(),
            duration_minutes: 60,
            time_zone: "UTC".into(),
        };
        let err = window_at(&window, &target("web"), 1_796_464_800).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(
            err.to_string()
                .contains("web: its maintenance window (0 0 30 2 * in UTC)"),
            "{err}"
        );
    }

    #[test]
    fn a_gate_obeys_only_a_decision_and_keeps_its_deadline() {
        let request = ApprovalRequest {
            execution_arn: EXECUTION.into(),
            wave: 0,
            task_token: "t".into(),
            asked_at: 1_000,
            answer_by: 4_600,
            on_timeout: OnApprovalTimeout::Stop,
            message: String::new(),
            redrive_count: 0,
            execution_start_time: 900,
            wakes: 0,
        };
        let decided = |approved| {
            Some(ApprovalDecision {
                approved,
                by: "arn:aws:sts::1:assumed-role/approver/alice".into(),
                reason: (!approved).then(|| "p99 doubled".into()),
                decided_at: 2_000,
            })
        };
        // Woken with no decision (a token sent by someone else): wait on, to the same deadline.
        let woken = gate_state(&request, None, 0, 3_000).unwrap();
        assert_eq!(
            (woken.decision, woken.wait_seconds),
            (Decision::Waiting, 1_600)
        );
        assert_eq!(
            gate_state(&request, decided(true), 0, 3_000)
                .unwrap()
                .decision,
            Decision::Approved
        );
        let rejected = gate_state(&request, decided(false), 0, 3_000).unwrap();
        assert_eq!(rejected.decision, Decision::Rejected);
        let failure = rejected.failure.unwrap();
        assert_eq!(failure.error, "Rejected");
        assert_eq!(
            failure.cause,
            "p99 doubled (rejected by arn:aws:sts::1:assumed-role/approver/alice)"
        );
        // Past the deadline: a stopping gate stops for a redrive, one that rolls back times out.
        let err = gate_state(&request, None, 0, 4_600).unwrap_err();
        assert_eq!(err.name(), "ApprovalTimedOut");
        assert!(
            err.to_string()
                .contains("redrive the execution to ask again"),
            "{err}"
        );
        let rolling = ApprovalRequest {
            on_timeout: OnApprovalTimeout::Rollback,
            ..request.clone()
        };
        assert_eq!(
            gate_state(&rolling, None, 0, 5_000).unwrap().decision,
            Decision::TimedOut
        );
        // Redriven: asked again for its whole timeout.
        let again = gate_state(&request, None, 1, 9_000).unwrap();
        assert_eq!(
            (again.decision, again.wait_seconds),
            (Decision::Waiting, 3_600)
        );
        // Woken too often: it waits out its deadline without a token, then reads again.
        let pestered = ApprovalRequest {
            wakes: MAX_WAKES,
            ..request.clone()
        };
        let out = gate_state(&pestered, None, 0, 3_000).unwrap();
        assert_eq!((out.decision, out.wait_seconds), (Decision::WaitOut, 1_600));
        let approved = gate_state(&pestered, decided(true), 0, 3_000).unwrap();
        assert_eq!(approved.decision, Decision::Approved);
    }

    #[test]
    fn the_approvers_are_told_what_the_wave_did_what_comes_next_and_how_to_answer() {
        let settings = SettingsMap::parse(
            r#"{"*": {"bakeSeconds": 600}, "web": {"alarmNames": ["web-5xx"]}}"#,
        )
        .unwrap();
        let mut api = target("api");
        api.window = Some(PlannedWindow {
            window: MaintenanceWindow {
                cron: "0 2 * * 6".into(),
                duration_minutes: 240,
                time_zone: "Europe/Lisbon".into(),
            },
            times: WindowState::Closed {
                opens_at: Some(1_796_464_800),
            }
            .into(),
        });
        let ask = AskApproval {
            execution: EXECUTION.into(),
            token: "secret-token".into(),
            wave: 0,
            plan: Box::new(PlanSummary {
                settings,
                ..crate::tests::plan(&[1, 2])
            }),
            wave_results: None,
            redrive_count: 0,
            execution_start_time: 0,
        };
        let outcomes = vec![Outcome {
            group: "web".into(),
            outcome: "rolledOut".into(),
        }];
        let text = Briefing {
            ask: &ask,
            location: "s3://plans/approvals/rollout-2026-12-01/wave-000.json".into(),
            bucket: "plans",
            finished: &[target("web")],
            outcomes: &outcomes,
            next: &[api, target("worker")],
            answer_by: 1_796_464_800,
            on_timeout: OnApprovalTimeout::Rollback,
        }
        .message();
        for expected in [
            "Execution rollout-2026-12-01 rolled wave 1 of 2 out to ami-00000002",
            "- web on ",
            ": rolled out; healthy for a 600 s bake, ECS services steady, alarms quiet: web-5xx",
            "What wave 2 will do: roll 2 target(s) out",
            "- api (0 2 * * 6 in Europe/Lisbon, for 240 min)",
            "- worker\n",
            "Answer by 2026-12-05T10:00:00Z; after that, every target the execution touched is rolled back",
            "ami-rollout approve rollout-2026-12-01",
            "s3://plans/approvals/rollout-2026-12-01/wave-000.json",
            "send-task-success --task-token <token>",
            "write your decision to s3://plans/decisions/rollout-2026-12-01/wave-000.json",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert!(
            !text.contains("secret-token"),
            "the token is never in the message"
        );
    }
}
