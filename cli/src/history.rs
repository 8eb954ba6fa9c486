//! Executions as Step Functions keeps them: their histories, the child executions of their
//! Distributed Maps (a wave's lanes, one per account-region, each with a Map Run of one child per
//! target), the plan an execution made, and what became of each target.

use std::collections::{HashMap, HashSet};

use aws_sdk_sfn::types::HistoryEvent;
use rollout_core::model::{
    ExecutionStatus, Health, Plan, PlanSummary, RollbackStatus, Target, TargetRollback,
};
use serde::Serialize;
use serde_json::Value;

use crate::context::Context;
use crate::failure::{CliResult, Exit, aws_failed};
use crate::fleet_view::Places;
use crate::output::{Paint, table};
use crate::steps::{Function, call_of};

/// Every event of an execution's history, oldest first.
pub async fn history(sfn: &aws_sdk_sfn::Client, arn: &str) -> CliResult<Vec<HistoryEvent>> {
    let mut events = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_failed("GetExecutionHistory", e))?;
        events.extend(page.events().iter().cloned());
    }
    Ok(events)
}

/// A step's JSON output, from its succeeded event (a Task calling a function by ARN, or by the
/// `lambda:invoke` integration).
pub fn succeeded_output(event: &HistoryEvent) -> Option<Value> {
    let text = event
        .task_succeeded_event_details()
        .and_then(|d| d.output())
        .or_else(|| {
            event
                .lambda_function_succeeded_event_details()
                .and_then(|d| d.output())
        })?;
    let value: Value = serde_json::from_str(text).ok()?;
    // The lambda:invoke integration wraps the function's result in `Payload`.
    Some(match value.get("Payload") {
        Some(payload) if value.get("StatusCode").is_some() => payload.clone(),
        _ => value,
    })
}

/// One target's child execution.
#[derive(Debug, Clone)]
pub struct Child {
    pub target: Target,
    pub wave: Option<usize>,
    /// A child of the rollback's Map Run (else of a wave's).
    pub rollback: bool,
    pub status: ExecutionStatus,
    pub started: Option<aws_smithy_types::DateTime>,
    pub stopped: Option<aws_smithy_types::DateTime>,
    pub events: Vec<HistoryEvent>,
    /// How many of `events` have been handed out by `Children::poll`.
    pub shown: usize,
}

impl Child {
    pub fn output(&self) -> Option<Value> {
        self.events.iter().rev().find_map(|e| {
            e.execution_succeeded_event_details()
                .and_then(|d| d.output())
                .and_then(|o| serde_json::from_str(o).ok())
        })
    }

    /// The last health verdict its checks gave.
    pub fn health(&self) -> Option<Health> {
        self.events.iter().rev().find_map(|e| {
            succeeded_output(e)?
                .get("health")
                .and_then(|h| serde_json::from_value(h.clone()).ok())
        })
    }
}

/// The child executions of an execution, found through its Map Runs and those of its lanes.
#[derive(Default)]
pub struct Children {
    pub known: HashMap<String, Child>,
    /// In the order they were found.
    pub order: Vec<String>,
    lanes: HashSet<String>,
}

impl Children {
    /// (child ARN, index of its event) for each event new since the last poll.
    pub async fn poll(
        &mut self,
        sfn: &aws_sdk_sfn::Client,
        execution: &str,
    ) -> CliResult<Vec<(String, usize)>> {
        let mut new = Vec::new();
        let mut parents = vec![execution.to_string()];
        while let Some(parent) = parents.pop() {
            let runs = sfn
                .list_map_runs()
                .execution_arn(&parent)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| aws_failed("ListMapRuns", e))?;
            for run in runs {
                let rollback = run.map_run_arn().contains("/target-rollback:")
                    || run.map_run_arn().contains("/rollback-lanes:");
                let listed = sfn
                    .list_executions()
                    .map_run_arn(run.map_run_arn())
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| aws_failed("ListExecutions", e))?;
                for listed in listed {
                    let arn = listed.execution_arn().to_string();
                    if self.lanes.contains(&arn) {
                        parents.push(arn);
                        continue;
                    }
                    let status = ExecutionStatus::parse(listed.status().as_str());
                    if !self.known.contains_key(&arn) {
                        let described = sfn
                            .describe_execution()
                            .execution_arn(&arn)
                            .send()
                            .await
                            .map_err(|e| aws_failed("DescribeExecution", e))?;
                        let input: Value = described
                            .input()
                            .and_then(|i| serde_json::from_str(i).ok())
                            .unwrap_or(Value::Null);
                        if input.get("lane").is_some() {
                            self.lanes.insert(arn.clone());
                            parents.push(arn);
                            continue;
                        }
                        let Some(target) = input
                            .get("target")
                            .and_then(|t| serde_json::from_value::<Target>(t.clone()).ok())
                        else {
                            continue;
                        };
                        self.order.push(arn.clone());
                        self.known.insert(
                            arn.clone(),
                            Child {
                                target,
                                wave: input
                                    .get("wave")
                                    .and_then(Value::as_u64)
                                    .map(|w| w as usize),
                                rollback,
                                status: ExecutionStatus::Unknown,
                                started: Some(*listed.start_date()),
                                stopped: None,
                                events: Vec::new(),
                                shown: 0,
                            },
                        );
                    }
                    let child = self.known.get_mut(&arn).expect("known above");
                    let settled = child.status.is_ended()
                        && child.status == status
                        && child.shown == child.events.len();
                    if settled {
                        continue;
                    }
                    child.status = status;
                    child.stopped = listed.stop_date().copied();
                    child.events = history(sfn, &arn).await?;
                    new.extend((child.shown..child.events.len()).map(|i| (arn.clone(), i)));
                    child.shown = child.events.len();
                }
            }
        }
        Ok(new)
    }
}

/// The plan an execution made, read from the plans bucket (named in resolve-ami's output).
pub async fn plan_of(
    context: &Context,
    events: &[HistoryEvent],
) -> CliResult<Option<(PlanSummary, Option<Plan>)>> {
    let Some(summary) = events.iter().enumerate().find_map(|(i, e)| {
        let call = call_of(events, i)?;
        (call.function == Function::ResolveAmi)
            .then(|| succeeded_output(e))
            .flatten()
            .and_then(|o| serde_json::from_value::<PlanSummary>(o).ok())
    }) else {
        return Ok(None);
    };
    let plan = plan_from(context, &summary).await;
    Ok(Some((summary, plan)))
}

/// The whole plan a summary names, if it can still be read (the plan objects expire with the
/// bucket's lifecycle rule: then only what the state keeps is shown).
pub async fn plan_from(context: &Context, summary: &PlanSummary) -> Option<Plan> {
    let s3 = aws_sdk_s3::Client::new(&context.sdk);
    let object = s3
        .get_object()
        .bucket(&summary.bucket)
        .key(&summary.key)
        .send()
        .await
        .ok()?;
    let bytes = object.body.collect().await.ok()?.into_bytes();
    serde_json::from_slice(&bytes).ok()
}

/// One target's line of an execution's outcome.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TargetOutcome {
    pub target: String,
    pub kind: &'static str,
    pub wave: Option<usize>,
    pub ami_before: String,
    pub ami_rolled_out: String,
    /// The AMIs its instances run now (none when they could not be read, or not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amis_now: Option<Vec<String>>,
    /// The AMI the execution left it on, from its outcome (none when that is not known: a
    /// target not brought back, one still going).
    pub ami_left: Option<String>,
    pub seconds: Option<i64>,
    pub checks_passed: Option<u32>,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether an outcome reads the fleet as it is now (a live or just-ended execution), or says only
/// what the execution left (a past one: the fleet may have moved on since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fleet {
    Now,
    AsLeft,
}

/// What became of every target of the execution, from its children (and the fleet now).
pub async fn outcomes(
    context: &Context,
    plan: Option<&Plan>,
    children: &Children,
    fleet: Fleet,
) -> Vec<TargetOutcome> {
    let mut places = Places::new(context.clients());
    let mut by_target: HashMap<String, (Option<&Child>, Option<&Child>)> = HashMap::new();
    for arn in &children.order {
        let child = &children.known[arn];
        let entry = by_target.entry(child.target.name()).or_default();
        if child.rollback {
            entry.1 = Some(child);
        } else {
            entry.0 = Some(child);
        }
    }
    let planned: Vec<(usize, Target)> = match plan {
        Some(plan) => plan
            .waves
            .iter()
            .enumerate()
            .flat_map(|(w, targets)| targets.iter().map(move |t| (w, t.clone())))
            .collect(),
        None => children
            .order
            .iter()
            .map(|a| &children.known[a])
            .filter(|c| !c.rollback)
            .map(|c| (c.wave.unwrap_or(0), c.target.clone()))
            .collect(),
    };
    let mut lines = Vec::new();
    for (wave, target) in planned {
        let (rollout, rollback) = by_target.get(&target.name()).copied().unwrap_or_default();
        let (outcome, reason) = outcome_of(rollout, rollback);
        let now = match fleet {
            Fleet::Now => places.now(&target, None).await.ok().map(|n| n.amis),
            Fleet::AsLeft => None,
        };
        let ami_left = match outcome.as_str() {
            "rolled out" => Some(target.ami.id.clone()),
            "rolled back" | "untouched" | "not started" | "stopped" => {
                Some(target.rollback_point.image_id().to_string())
            }
            _ => None,
        };
        let seconds = rollout.and_then(|c| Some(c.stopped?.secs() - c.started?.secs()));
        lines.push(TargetOutcome {
            target: target.name(),
            kind: crate::targets::kind(&target),
            wave: Some(wave + 1),
            ami_before: target.rollback_point.image_id().to_string(),
            ami_rolled_out: target.ami.id.clone(),
            amis_now: now,
            ami_left,
            seconds,
            checks_passed: rollout.and_then(Child::health).map(|h| h.checks_passed),
            outcome,
            reason,
        });
    }
    lines
}

/// A target's rollback in words.
pub fn rollback_outcome(status: RollbackStatus) -> &'static str {
    match status {
        RollbackStatus::Failed => "not rolled back",
        RollbackStatus::Untouched => "untouched",
        RollbackStatus::RolledBack => "rolled back",
        RollbackStatus::Rolling => "rolling back",
    }
}

/// A target's outcome in words, from its rollout child and its rollback child.
fn outcome_of(rollout: Option<&Child>, rollback: Option<&Child>) -> (String, Option<String>) {
    let back = rollback
        .and_then(Child::output)
        .and_then(|o| serde_json::from_value::<TargetRollback>(o).ok());
    if let Some(back) = back {
        return (rollback_outcome(back.status).into(), Some(back.action));
    }
    let Some(child) = rollout else {
        return ("not started".into(), None);
    };
    let output = child.output();
    let field = |k: &str| {
        output
            .as_ref()
            .and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (child.status, field("outcome").as_deref()) {
        (ExecutionStatus::Succeeded, Some("rolledOut")) => ("rolled out".into(), None),
        (ExecutionStatus::Succeeded, Some("failed")) => (
            "failed".into(),
            field("error").map(|e| {
                let cause = rollout_core::model::CaughtError {
                    error: e,
                    cause: field("cause").unwrap_or_default(),
                };
                cause.describe()
            }),
        ),
        (ExecutionStatus::Succeeded, Some("stopped")) => ("stopped".into(), field("cause")),
        (status, _) => (status.as_str().to_ascii_lowercase(), None),
    }
}

pub fn render_outcomes(lines: &[TargetOutcome]) -> String {
    let rows = lines.iter().map(|l| {
        let now = match (&l.amis_now, &l.ami_left) {
            (Some(now), _) => now.join(", "),
            (None, Some(left)) => left.clone(),
            (None, None) => "?".to_string(),
        };
        [
            l.target.clone(),
            l.wave.map_or_else(String::new, |w| w.to_string()),
            format!("{} → {now}", l.ami_before),
            l.seconds.map_or_else(|| "-".into(), |s| format!("{s} s")),
            l.checks_passed
                .map_or_else(|| "-".into(), |c| c.to_string()),
            match &l.reason {
                Some(r) => format!("{}: {r}", l.outcome),
                None => l.outcome.clone(),
            },
        ]
    });
    format!(
        "{}\n",
        table(
            &[
                "target",
                "wave",
                "AMI before → after",
                "duration",
                "checks",
                "outcome"
            ],
            rows
        )
    )
}

/// How an execution ended (or stands), with what became of its targets: as JSON, and as text.
pub fn render_ending(
    described: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
    lines: &[TargetOutcome],
    paint: Paint,
) -> (Value, String) {
    let status = ExecutionStatus::parse(described.status().as_str());
    let seconds = described
        .stop_date()
        .map(|s| s.secs() - described.start_date().secs());
    // An execution that stopped for a redrive says how to resume it.
    let redrive = (status.is_ended()
        && status != ExecutionStatus::Succeeded
        && not_redrivable(status, described.error()).is_none())
    .then(|| {
        format!(
            "ami-rollout redrive {}",
            rollout_core::store::execution_name(described.execution_arn())
        )
    });
    let json = serde_json::json!({
        "executionArn": described.execution_arn(),
        "status": status,
        "redrive": redrive,
        "error": described.error(),
        "cause": described.cause(),
        "seconds": seconds,
        "targets": lines,
    });
    let mut text = format!(
        "{}\nexecution {}{}\n",
        render_outcomes(lines),
        paint.status(status),
        seconds.map_or_else(String::new, |s| format!(" in {s} s"))
    );
    if let Some(command) = &redrive {
        text.push_str(&format!(
            "  it stopped where it was, nothing rolled back: once the cause is cleared, {command}\n"
        ));
    }
    if let Some(error) = described.error() {
        text.push_str(&format!("  Error: {}\n", paint.bad(error)));
        text.push_str(&format!(
            "  Cause: {}\n",
            described.cause().unwrap_or_default()
        ));
    }
    (json, text)
}

/// Why a redrive would not help an execution that ended with `status` and `error`, and what to
/// do instead; `None` when a redrive resumes it from the step that did not complete.
pub fn not_redrivable(status: ExecutionStatus, error: Option<&str>) -> Option<&'static str> {
    match status {
        ExecutionStatus::Succeeded => return Some("succeeded: there is nothing to resume"),
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
            return Some("is still running: follow it with ami-rollout watch");
        }
        _ => {}
    }
    match error? {
        "RolloutFailed" | "Rejected" => Some(
            "rolled back: every target it touched is as it was. Fix what its Cause names, then start a new rollout (ami-rollout start)",
        ),
        "RollbackFailed" => Some(
            "ended with targets its rollback could not bring back (its Cause names them): bring them back by hand, then start a new rollout",
        ),
        "TargetHeld" => Some(
            "was refused: another execution holds its targets. Start it again once that one ends",
        ),
        "InvalidInput" | "AmiNotUsable" | "TargetNotFound" | "PreflightFailed" => {
            Some("was refused before anything changed: fix its input and start it again")
        }
        _ => None,
    }
}

/// The exit status an execution's status stands for.
pub fn exit_of(status: ExecutionStatus) -> Exit {
    match status {
        ExecutionStatus::Succeeded => Exit::Done,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => Exit::Running,
        _ => Exit::RolloutFailed,
    }
}
