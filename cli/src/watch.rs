//! `watch`: an execution followed live until it ends, from Step Functions' histories (the
//! execution's and its child executions') and the fleet itself: the states entered, each
//! target's steps, refresh progress with the AMIs on its instances, health verdicts with their
//! reasons, the rollback, and each target's end. Text for people (progress bars on a terminal),
//! or one JSON object per line with `--output json`.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType as E};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollout_core::gate::GateWake;
use rollout_core::model::{
    ExecutionStatus, Health, KeptRoots, Plan, PlanSummary, Released, RollbackPlan, RollbackReport,
    RollbackStatus, RollbackStep, TargetKind, TargetRollback, TargetRun, WaveOutcome, WaveStop,
};
use rollout_core::window::{WindowCheck, WindowTimes};
use serde_json::{Value, json};

use crate::args::Pace;
use crate::context::Context;
use crate::failure::{CliResult, Exit};
use crate::fleet_view::Places;
use crate::history::{
    Child, Children, Fleet, exit_of, history, outcomes, plan_from, plan_of, render_ending,
    rollback_outcome, succeeded_output,
};
use crate::output::Output;
use crate::steps::{Call, Function, call_of};
use crate::waiting::approval_gate;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The execution: its ARN, or its name as an execution of the stack's state machine.
    pub execution: String,
    #[command(flatten)]
    pub pace: Pace,
}

pub async fn run(context: &Context, out: &Output, args: WatchArgs) -> CliResult<Exit> {
    let arn = context.execution_arn(&args.execution).await?;
    follow(context, out, &arn, &args.pace).await
}

/// Follows `arn` until it ends; returns the exit status its outcome stands for.
pub async fn follow(context: &Context, out: &Output, arn: &str, pace: &Pace) -> CliResult<Exit> {
    let mut timeline = Timeline::new(out);
    let mut children = Children::default();
    let mut places = Places::new(context.clients());
    let mut seen = 0;
    let interval = Duration::from_secs_f64(pace.interval.max(0.05));
    loop {
        let described = context.describe_execution(arn).await?;
        timeline.started = described.start_date().as_secs_f64();
        let events = history(&context.sfn, arn).await?;
        let mut new: Vec<(aws_smithy_types::DateTime, Option<String>, usize)> = (seen..events
            .len())
            .map(|i| (events[i].timestamp, None, i))
            .collect();
        for (child, i) in children.poll(&context.sfn, arn).await? {
            new.push((children.known[&child].events[i].timestamp, Some(child), i));
        }
        new.sort_by_key(|(at, _, _)| (at.secs(), at.subsec_nanos()));
        for (at, child, i) in new {
            timeline.at = timeline.at.max(at.as_secs_f64());
            match child {
                None => timeline.event(context, &events, i, None).await,
                Some(arn) => {
                    let child = &children.known[&arn];
                    timeline.event(context, &child.events, i, Some(child)).await;
                }
            }
        }
        seen = events.len();
        timeline.progress(&mut places, &children).await;
        timeline.gate(context, arn, &events).await;
        if ExecutionStatus::parse(described.status().as_str()) != ExecutionStatus::Running {
            return timeline.end(context, &described, &events, &children).await;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The text and JSON lines of a watch, each said once.
struct Timeline<'a> {
    out: &'a Output,
    /// When the execution started, and the time of the event being told (both Step Functions'
    /// timestamps): a line says how far into the execution it happened, whenever it is read.
    started: f64,
    at: f64,
    plan: Option<Plan>,
    verdicts: HashMap<String, (String, Vec<String>)>,
    steps: HashSet<(String, String)>,
    progress_seen: HashMap<String, (String, i32, Vec<String>)>,
    /// Progress bars, on a terminal in text mode only.
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
}

impl<'a> Timeline<'a> {
    fn new(out: &'a Output) -> Self {
        let bars = (!out.json() && std::io::stdout().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                HashMap::new(),
            )
        });
        Self {
            out,
            started: 0.0,
            at: 0.0,
            plan: None,
            verdicts: HashMap::new(),
            steps: HashSet::new(),
            progress_seen: HashMap::new(),
            bars,
        }
    }

    /// One line: `kind` and `fields` in JSON, `text` for people.
    fn say(&self, kind: &str, fields: Value, text: impl AsRef<str>) {
        let at = (self.at - self.started).max(0.0);
        if self.out.json() {
            let mut line = json!({"type": kind, "at": (at * 10.0).round() / 10.0});
            if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
                line.extend(fields);
            }
            self.out.value(&line);
            return;
        }
        let text = format!("{at:6.1}s  {}", text.as_ref());
        match &self.bars {
            Some((multi, _)) => multi.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    async fn event(
        &mut self,
        context: &Context,
        events: &[HistoryEvent],
        index: usize,
        child: Option<&Child>,
    ) {
        let e = &events[index];
        let who = child.map(|c| c.target.name());
        let phase = match child {
            Some(c) if c.rollback => "rollback",
            _ => "rollout",
        };
        match e.r#type() {
            E::TaskStateEntered
            | E::ChoiceStateEntered
            | E::PassStateEntered
            | E::WaitStateEntered
            | E::MapStateEntered
            | E::FailStateEntered
            | E::SucceedStateEntered
                if child.is_none() =>
            {
                let name = e
                    .state_entered_event_details()
                    .map_or("", |d| d.name())
                    .to_string();
                self.say("state", json!({"name": name}), format!("▶ {name}"));
            }
            E::TaskSucceeded | E::LambdaFunctionSucceeded => {
                let (Some(call), Some(output)) = (call_of(events, index), succeeded_output(e))
                else {
                    return;
                };
                self.step_output(context, &call, output, child).await;
            }
            E::TaskFailed | E::LambdaFunctionFailed => {
                let (error, cause) = e
                    .task_failed_event_details()
                    .map(|d| (d.error(), d.cause()))
                    .or_else(|| {
                        e.lambda_function_failed_event_details()
                            .map(|d| (d.error(), d.cause()))
                    })
                    .unwrap_or_default();
                let (error, cause) = (error.unwrap_or_default(), cause.unwrap_or_default());
                let cause = rollout_core::model::CaughtError {
                    error: error.into(),
                    cause: cause.into(),
                }
                .message();
                let prefix = who.as_ref().map_or_else(String::new, |w| format!("{w}: "));
                let short: String = cause.chars().take(400).collect();
                self.say(
                    "stepFailed",
                    json!({"target": who, "error": error, "cause": cause}),
                    format!("✗ {prefix}{error}: {short}"),
                );
            }
            E::MapRunStarted => {
                let run = e
                    .map_run_started_event_details()
                    .and_then(|d| d.map_run_arn())
                    .unwrap_or_default();
                let label = run.rsplit('/').next().unwrap_or(run);
                let label = label.split(':').next().unwrap_or(label);
                let per = if label.ends_with("-lanes") {
                    "account-region, each a Map Run of its targets"
                } else {
                    "target"
                };
                self.say(
                    "mapRun",
                    json!({"mapRunArn": run, "label": label}),
                    format!("  Map Run {label}: one child execution per {per}"),
                );
            }
            E::ExecutionRedriven => {
                let count = e
                    .execution_redriven_event_details()
                    .and_then(|d| d.redrive_count())
                    .unwrap_or(0);
                let of = who
                    .as_ref()
                    .map_or_else(|| "execution".into(), |w| format!("{w}: child"));
                self.say(
                    "redriven",
                    json!({"target": who, "redriveCount": count}),
                    format!("↻ {of} redriven (redrive {count}): resuming from the step that did not complete"),
                );
            }
            E::ExecutionSucceeded
            | E::ExecutionFailed
            | E::ExecutionAborted
            | E::ExecutionTimedOut => {
                let Some(child) = child else { return };
                self.target_end(child, phase, e);
            }
            _ => {}
        }
    }

    /// A child execution ended (`ended`, its event): what became of its target. Told from the
    /// event itself, not the child as it is now: a child redriven since ends again later.
    fn target_end(&mut self, child: &Child, phase: &str, ended: &HistoryEvent) {
        let name = child.target.name();
        if let Some((_, bars)) = &mut self.bars
            && let Some(bar) = bars.remove(&name)
        {
            bar.finish();
        }
        let output = ended
            .execution_succeeded_event_details()
            .and_then(|d| d.output())
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null);
        let field = |k: &str| output.get(k).and_then(Value::as_str).map(str::to_string);
        let status = match ended.r#type() {
            E::ExecutionSucceeded => ExecutionStatus::Succeeded,
            E::ExecutionAborted => ExecutionStatus::Aborted,
            E::ExecutionTimedOut => ExecutionStatus::TimedOut,
            _ => ExecutionStatus::Failed,
        };
        let outcome = match phase {
            "rollback" => match serde_json::from_value::<TargetRollback>(output.clone()) {
                Ok(back) => rollback_outcome(back.status).to_string(),
                Err(_) => status.as_str().to_ascii_lowercase(),
            },
            _ => match field("outcome").as_deref() {
                Some("rolledOut") => "rolled out".into(),
                Some(other) => other.to_string(),
                None => status.as_str().to_ascii_lowercase(),
            },
        };
        // A child that failed says why in its event; one that ended with a failed outcome, in it.
        let failed = ended.execution_failed_event_details().map(|d| {
            (
                d.error().unwrap_or_default().to_string(),
                d.cause().unwrap_or_default().to_string(),
            )
        });
        let reason = field("action").or_else(|| {
            field("error")
                .map(|error| (error, field("cause").unwrap_or_default()))
                .or(failed)
                .map(|(error, cause)| rollout_core::model::CaughtError { error, cause }.describe())
        });
        let painted = match outcome.as_str() {
            "rolled out" | "untouched" => self.out.paint.good(&outcome),
            "rolled back" | "stopped" => self.out.paint.going(&outcome),
            _ => self.out.paint.bad(&outcome),
        };
        let text = format!(
            "■ {name}: {phase} child ended {status}: {painted}{}",
            reason
                .as_ref()
                .map_or_else(String::new, |r| format!(" — {r}"))
        );
        self.say(
            "targetEnd",
            json!({"target": name, "phase": phase, "status": status, "outcome": outcome, "reason": reason}),
            text,
        );
    }

    /// What a step's output says, read as that step's type (the call names the step).
    async fn step_output(
        &mut self,
        context: &Context,
        call: &Call,
        output: Value,
        child: Option<&Child>,
    ) {
        use Function as F;
        match (call.function, call.action.as_deref()) {
            (F::HoldTargets, Some("askApproval")) => {
                if let Ok(wake) = serde_json::from_value::<GateWake>(output)
                    && wake.approved
                {
                    let by = wake.by.unwrap_or_default();
                    self.say(
                        "approved",
                        json!({"by": by}),
                        format!("  approved by {by}: the next wave starts"),
                    );
                }
            }
            (F::ResolveAmi, _) => {
                if let Some(reason) = output.get("nothingToDo").and_then(Value::as_str) {
                    self.say(
                        "nothingToDo",
                        json!({"reason": reason}),
                        format!("  nothing to do: {reason}"),
                    );
                } else if let Ok(summary) = serde_json::from_value::<PlanSummary>(output) {
                    self.plan_line(context, &summary).await;
                }
            }
            (F::HoldTargets, Some("take")) => {
                if let Ok(held) = serde_json::from_value::<PlanSummary>(output) {
                    self.say(
                        "held",
                        json!({"targets": held.target_count}),
                        format!("  held {} target(s) for this execution", held.target_count),
                    );
                }
            }
            (F::HoldTargets, Some("checkWindow")) => {
                if let (Ok(check), Some(child)) =
                    (serde_json::from_value::<WindowCheck>(output), child)
                {
                    self.window_line(&check.times, child);
                }
            }
            (F::HoldTargets, Some("stopWave")) => {
                if let Ok(stop) = serde_json::from_value::<WaveStop>(output) {
                    let name = stop_name(&stop);
                    self.say(
                        "waveStopping",
                        json!({"target": name}),
                        format!("  {name} failed: the wave stops"),
                    );
                }
            }
            (F::HoldTargets, Some("waveOutcome")) => {
                if let Ok(outcome) = serde_json::from_value::<WaveOutcome>(output) {
                    let failed_at = outcome.stop.as_ref().map(stop_name);
                    let text = match &failed_at {
                        Some(name) => format!("failed at {name}"),
                        None => "every target rolled out".into(),
                    };
                    self.say(
                        "waveEnd",
                        json!({"failedAt": failed_at}),
                        format!("  wave outcome: {text}"),
                    );
                }
            }
            (F::HoldTargets, Some("release")) => {
                if let Ok(released) = serde_json::from_value::<Released>(output) {
                    let count = released.targets.len();
                    self.say(
                        "released",
                        json!({"targets": count}),
                        format!("  released {count} target(s)"),
                    );
                }
            }
            (F::Rollback, Some("converge")) => {
                if let (Ok(step), Some(child)) =
                    (serde_json::from_value::<RollbackStep>(output), child)
                {
                    self.rollback_line(&step.target, child);
                }
            }
            (F::Rollback, Some("summarize")) => {
                if let Ok(r) = serde_json::from_value::<RollbackReport>(output) {
                    self.say(
                        "rollbackReport",
                        json!({"rolledBack": r.rolled_back, "notRolledBack": r.not_rolled_back, "untouched": r.untouched}),
                        format!(
                            "  rollback: {} rolled back, {} not, {} untouched",
                            r.rolled_back, r.not_rolled_back, r.untouched
                        ),
                    );
                }
            }
            (F::Rollback, Some("deleteKeptRoots")) => {
                if let Ok(roots) = serde_json::from_value::<KeptRoots>(output)
                    && (!roots.deleted.is_empty() || !roots.kept.is_empty())
                {
                    self.say(
                        "replacedRoots",
                        json!({"deleted": roots.deleted, "kept": roots.kept}),
                        format!(
                            "  replaced roots deleted: {}; kept: {}",
                            roots.deleted.join(", "),
                            roots.kept.join(", ")
                        ),
                    );
                }
            }
            (F::Rollback, Some("plan" | "planUndo")) => {
                if let Ok(plan) = serde_json::from_value::<RollbackPlan>(output) {
                    self.say(
                        "rollbackPlanned",
                        json!({"targets": plan.targets}),
                        format!("  rollback of {} target(s) in scope", plan.targets),
                    );
                }
            }
            (F::DistributeAmi, Some("copy")) => {
                if let Ok(plan) = serde_json::from_value::<PlanSummary>(output) {
                    for copy in &plan.copies {
                        self.say(
                            "copy",
                            json!({"region": copy.region, "imageId": copy.image_id}),
                            format!(
                                "  AMI copy to {}{}",
                                copy.region,
                                copy.image_id
                                    .as_deref()
                                    .map_or_else(String::new, |id| format!(": {id}"))
                            ),
                        );
                    }
                }
            }
            (F::UpdateTemplate | F::StartRefresh | F::CheckEcsHealth, _) => {
                if let (Ok(run), Some(child)) = (serde_json::from_value::<TargetRun>(output), child)
                {
                    self.target_step(call, &run, child);
                }
            }
            _ => {}
        }
    }

    /// Where a target's maintenance window stands.
    fn window_line(&mut self, times: &WindowTimes, child: &Child) {
        let name = child.target.name();
        let iso = |at: Option<i64>| at.map(rollout_core::time::iso_time);
        let (kind, text) = match times.open {
            true => (
                "windowOpen",
                format!(
                    "inside its maintenance window (until {})",
                    iso(times.closes_at).unwrap_or_default()
                ),
            ),
            false => (
                "windowWait",
                format!(
                    "waits for its maintenance window, which opens {}",
                    iso(times.opens_at).unwrap_or_default()
                ),
            ),
        };
        self.say(
            kind,
            json!({"target": name, "opensAt": iso(times.opens_at), "closesAt": iso(times.closes_at)}),
            format!("  {name}: {text}"),
        );
    }

    /// A step of a target's rollback, once per distinct action.
    fn rollback_line(&mut self, back: &TargetRollback, child: &Child) {
        let name = child.target.name();
        if !self.steps.insert((name.clone(), back.action.clone())) {
            return;
        }
        let done = back.status.is_over() && back.status != RollbackStatus::Failed;
        self.say(
            "rollback",
            json!({"target": name, "action": back.action, "done": done}),
            format!(
                "  ↩ {name}: {}{}",
                back.action,
                if done { " (done)" } else { "" }
            ),
        );
    }

    /// A step of a target's rollout: its health verdict when it changes, else the step's name once.
    fn target_step(&mut self, call: &Call, run: &TargetRun, child: &Child) {
        let name = child.target.name();
        if call.function == Function::CheckEcsHealth
            && let Some(health) = &run.health
        {
            self.verdict_line(&name, health, child);
            return;
        }
        let instance = child.target.kind == TargetKind::Instance;
        let (step, detail) = if call.is(Function::UpdateTemplate, "restoreReference") {
            (
                "Restore launch template reference".to_string(),
                String::new(),
            )
        } else if call.function == Function::UpdateTemplate {
            (
                "Create launch template version".to_string(),
                run.new_version
                    .map_or_else(String::new, |v| format!(" → version {v}")),
            )
        } else if call.function == Function::StartRefresh && instance {
            match (&run.refresh, &run.drain) {
                (None, Some(drain)) => (
                    "Drain the container instance".to_string(),
                    format!(": {} task(s) still running", drain.running_tasks),
                ),
                _ => ("Replace the root volume".to_string(), String::new()),
            }
        } else if call.function == Function::StartRefresh {
            ("Start instance refresh".to_string(), String::new())
        } else {
            return;
        };
        let first = self.steps.insert((name.clone(), step.clone()));
        if first || step.starts_with("Drain") {
            self.say(
                "step",
                json!({"target": name, "step": step, "detail": detail.trim_start_matches([':', ' ', '→'])}),
                format!("  {name}: {step}{detail}"),
            );
        }
    }

    /// A target's health verdict, when it changed.
    fn verdict_line(&mut self, name: &str, health: &Health, child: &Child) {
        let verdict = serde_json::to_value(health.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", health.verdict));
        let key = (verdict.clone(), health.reasons.clone());
        if self.verdicts.get(name) == Some(&key) {
            return;
        }
        self.verdicts.insert(name.to_string(), key);
        if child.target.kind == TargetKind::Instance {
            self.bar(name, health.percentage, &health.refresh_status, &[]);
        }
        let reasons = health.reasons.join("; ");
        self.say(
            "verdict",
            json!({"target": name, "verdict": verdict, "refreshStatus": health.refresh_status,
                   "percentage": health.percentage, "reasons": health.reasons}),
            format!(
                "  {name}: {verdict} ({} {}%){}",
                health.refresh_status,
                health.percentage,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" — {reasons}")
                }
            ),
        );
    }

    async fn plan_line(&mut self, context: &Context, summary: &PlanSummary) {
        let sizes: Vec<usize> = summary.waves.iter().map(|w| w.targets).collect();
        let plan = plan_from(context, summary).await;
        let waves: Option<Vec<Vec<String>>> = plan.as_ref().map(|p| {
            p.waves
                .iter()
                .map(|w| w.iter().map(|t| t.name()).collect())
                .collect()
        });
        let skipped: Vec<Value> = plan.as_ref().map_or_else(Vec::new, |p| {
            p.skipped
                .iter()
                .map(|s| json!({"target": s.group, "reason": s.reason}))
                .collect()
        });
        self.say(
            "plan",
            json!({"ami": summary.ami.id, "targets": summary.target_count, "waves": waves,
                   "skipped": skipped, "plan": format!("s3://{}/{}", summary.bucket, summary.key)}),
            format!(
                "  plan: {} ({}) for {} target(s), waves of {sizes:?}; s3://{}/{}",
                summary.ami.id, summary.ami.name, summary.target_count, summary.bucket, summary.key
            ),
        );
        if !self.out.json() {
            if let Some(waves) = waves.filter(|_| summary.target_count <= 20) {
                self.say("", Value::Null, format!("  waves: {waves:?}"));
            }
            for s in skipped.iter().take(20) {
                self.say(
                    "",
                    Value::Null,
                    format!(
                        "  skipped {}: {}",
                        s["target"].as_str().unwrap_or(""),
                        s["reason"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        self.plan = plan;
    }

    /// The approval gate the execution is parked at, said once per gate.
    async fn gate(&mut self, context: &Context, arn: &str, events: &[HistoryEvent]) {
        let Some(gate) = approval_gate(context, arn, events).await else {
            return;
        };
        if self
            .steps
            .insert(("(gate)".into(), format!("{}-{}", gate.wave, gate.asked_at)))
        {
            let (json, text) = crate::waiting::describe(&gate);
            self.say("approvalWait", json, format!("  {text}"));
        }
    }

    /// Progress of every group being refreshed, with the AMIs on its instances, when it changed.
    async fn progress(&mut self, places: &mut Places, children: &Children) {
        for arn in &children.order {
            let child = &children.known[arn];
            if child.rollback || child.status != ExecutionStatus::Running {
                continue;
            }
            if child.target.kind != TargetKind::AutoScalingGroup {
                continue;
            }
            let Some(refresh) = refresh_of(child) else {
                continue;
            };
            let Ok(now) = places.now(&child.target, Some(&refresh)).await else {
                continue;
            };
            let Some(info) = now.refresh else { continue };
            self.bar(
                &child.target.name(),
                info.percentage,
                info.status.as_str(),
                &now.amis,
            );
        }
    }

    fn bar(&mut self, name: &str, percentage: i32, status: &str, amis: &[String]) {
        let key = (status.to_string(), percentage, amis.to_vec());
        if self.progress_seen.get(name) == Some(&key) {
            return;
        }
        self.progress_seen.insert(name.to_string(), key);
        let amis_text = if amis.is_empty() {
            String::new()
        } else {
            format!(" AMIs {}", amis.join(", "))
        };
        if let Some((multi, bars)) = &mut self.bars {
            let bar = bars.entry(name.to_string()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(100));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:<22} {bar:24} {pos:>3}% {msg}")
                        .expect("a valid template")
                        .progress_chars("█▉·"),
                );
                bar.set_prefix(name.to_string());
                bar
            });
            bar.set_position(percentage.clamp(0, 100) as u64);
            bar.set_message(format!("{status}{amis_text}"));
            return;
        }
        let filled = (percentage.clamp(0, 100) as usize) * 20 / 100;
        self.say(
            "progress",
            json!({"target": name, "percentage": percentage, "status": status, "amis": amis}),
            format!(
                "  {name:<20} {}{} {percentage:3}% {status:<18}{amis_text}",
                "█".repeat(filled),
                "·".repeat(20 - filled)
            ),
        );
    }

    async fn end(
        &mut self,
        context: &Context,
        described: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
        events: &[HistoryEvent],
        children: &Children,
    ) -> CliResult<Exit> {
        if let Some((multi, bars)) = self.bars.take() {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
            multi.clear().ok();
        }
        if self.plan.is_none() {
            self.plan = plan_of(context, events).await?.and_then(|(_, p)| p);
        }
        let lines = outcomes(context, self.plan.as_ref(), children, Fleet::Now).await;
        let (json, text) = render_ending(described, &lines, self.out.paint);
        if self.out.json() {
            self.say("end", json, "");
        } else {
            print!("\n{text}");
        }
        Ok(exit_of(ExecutionStatus::parse(described.status().as_str())))
    }
}

/// The refresh a group's rollout child started, from its last step output that names one.
fn refresh_of(child: &Child) -> Option<String> {
    child.events.iter().rev().find_map(|e| {
        succeeded_output(e)?
            .get("refresh")?
            .get("id")?
            .as_str()
            .map(str::to_string)
    })
}

/// A target as the plan names it, from a JSON object with `group`, `account`, `region`.
/// The failed target a wave stop names.
fn stop_name(stop: &WaveStop) -> String {
    rollout_core::model::place_name(stop.account.as_deref(), stop.region.as_deref(), &stop.group)
}
