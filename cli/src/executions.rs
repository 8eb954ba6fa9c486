//! The `list`, `status` and `redrive` commands.

use clap::Args;
use serde_json::{Value, json};

use crate::context::Context;
use crate::failure::{CliResult, Exit, Failure, aws_failed};
use rollout_core::model::ExecutionStatus;
use rollout_core::trigger::Trigger;

use rollout_core::store::execution_name;

use crate::args::Pace;
use crate::history::{
    Children, Fleet, exit_of, history, not_redrivable, outcomes, plan_of, render_ending,
};
use crate::output::{Output, table};
use crate::waiting::{approval_gate, window_waits};

#[derive(Args, Debug)]
pub struct ExecutionArg {
    /// The execution: its ARN, or its name as an execution of the stack's state machine.
    pub execution: String,
}

#[derive(Args, Debug)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub execution: ExecutionArg,
    /// Follow the execution until it ends, as `watch` does.
    #[arg(long = "watch")]
    pub launch_watch: bool,
    #[command(flatten)]
    pub pace: Pace,
}

/// The statuses `list --status` takes (Step Functions' own names).
const STATUSES: [&str; 6] = [
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
];

#[derive(Args, Debug)]
pub struct ListArgs {
    /// How many executions, newest first.
    #[arg(long, default_value_t = 20)]
    pub max: i32,
    /// Only executions with this status.
    #[arg(long, ignore_case = true, value_parser = clap::builder::PossibleValuesParser::new(STATUSES))]
    pub status: Option<String>,
}

pub async fn list(context: &Context, out: &Output, args: ListArgs) -> CliResult<Exit> {
    let machine = context.state_machine_arn().await?;
    let status = args
        .status
        .as_deref()
        .map(|s| aws_sdk_sfn::types::ExecutionStatus::from(s.to_ascii_uppercase().as_str()));
    let listed = context
        .sfn
        .list_executions()
        .state_machine_arn(&machine)
        .set_status_filter(status)
        .max_results(args.max.clamp(1, 1000))
        .send()
        .await
        .map_err(|e| aws_failed("ListExecutions", e))?;
    let mut rows: Vec<Value> = Vec::new();
    for e in listed.executions() {
        // What it rolls out and how it ended are in the execution itself: its input, its error.
        let described = context.describe_execution(e.execution_arn()).await?;
        let input: Value = described
            .input()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        let (kind, what) = match input.get("undo").and_then(Value::as_str) {
            Some(undone) => ("undo", format!("undo of {undone}")),
            None => (
                "rollout",
                Trigger::parse(&input).map_or_else(|_| "?".into(), |t| t.description),
            ),
        };
        let seconds = e.stop_date().map(|s| s.secs() - e.start_date().secs());
        rows.push(json!({
            "name": e.name(),
            "executionArn": e.execution_arn(),
            "kind": kind,
            "what": what,
            "status": e.status().as_str(),
            "error": described.error(),
            "startDate": e.start_date().to_string(),
            "stopDate": e.stop_date().map(|d| d.to_string()),
            "seconds": seconds,
            "redriveCount": e.redrive_count(),
        }));
    }
    if out.json() {
        out.value(&rows);
        return Ok(Exit::Done);
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    println!(
        "{}",
        table(
            &[
                "execution",
                "kind",
                "what",
                "status",
                "started",
                "took",
                "error"
            ],
            rows.iter().map(|r| [
                text(r, "name"),
                text(r, "kind"),
                text(r, "what"),
                text(r, "status"),
                text(r, "startDate"),
                r["seconds"]
                    .as_i64()
                    .map_or_else(|| "-".into(), |s| format!("{s} s")),
                text(r, "error"),
            ])
        )
    );
    Ok(Exit::Done)
}

pub async fn status(context: &Context, out: &Output, args: ExecutionArg) -> CliResult<Exit> {
    let arn = context.execution_arn(&args.execution).await?;
    let described = context.describe_execution(&arn).await?;
    let events = history(&context.sfn, &arn).await?;
    let plan = plan_of(context, &events).await?;
    let mut children = Children::default();
    children.poll(&context.sfn, &arn).await?;
    // A running execution is shown on the fleet as it is now; a past one as it left it.
    let fleet = match ExecutionStatus::parse(described.status().as_str()) {
        ExecutionStatus::Running => Fleet::Now,
        _ => Fleet::AsLeft,
    };
    let lines = outcomes(
        context,
        plan.as_ref().and_then(|(_, p)| p.as_ref()),
        &children,
        fleet,
    )
    .await;
    let (mut json, mut text) = render_ending(&described, &lines, out.paint);
    if let Some(gate) = approval_gate(context, &arn, &events).await {
        let (gate_json, gate_text) = crate::waiting::describe(&gate);
        json["waitingFor"]["approval"] = gate_json;
        text.push_str(&format!("  {gate_text}\n"));
    }
    let windows = window_waits(&children);
    if !windows.is_empty() {
        let iso = |at: Option<i64>| at.map(rollout_core::time::iso_time);
        json["waitingFor"]["windows"] = windows
            .iter()
            .map(|(target, opens)| json!({"target": target, "opensAt": iso(*opens)}))
            .collect();
        for (target, opens) in &windows {
            text.push_str(&format!(
                "  {target} waits for its maintenance window, which opens {}\n",
                iso(*opens).unwrap_or_else(|| "(not read)".into())
            ));
        }
    }
    if out.json() {
        out.value(&json);
    } else {
        print!("{text}");
    }
    Ok(exit_of(ExecutionStatus::parse(described.status().as_str())))
}

/// Redrives an execution that stopped for it, after checking that a redrive would help.
pub async fn redrive(context: &Context, out: &Output, args: RedriveArgs) -> CliResult<Exit> {
    let arn = context.execution_arn(&args.execution.execution).await?;
    let described = context.describe_execution(&arn).await?;
    let status = ExecutionStatus::parse(described.status().as_str());
    if let Some(why) = not_redrivable(status, described.error()) {
        return Err(Failure {
            exit: Exit::Refused,
            ..Failure::new("NotRedrivable", format!("{} {why}", execution_name(&arn)))
        });
    }
    context
        .sfn
        .redrive_execution()
        .execution_arn(&arn)
        .send()
        .await
        .map_err(|e| Failure {
            exit: Exit::Refused,
            ..aws_failed("RedriveExecution", e)
        })?;
    if out.json() {
        out.value(&json!({"type": "redriven", "executionArn": arn}));
    } else {
        println!("redriven {arn}: it resumes from the step that did not complete");
        if !args.launch_watch {
            println!("  follow it: ami-rollout watch {arn}");
        }
    }
    if args.launch_watch {
        return crate::watch::follow(context, out, &arn, &args.pace).await;
    }
    Ok(Exit::Done)
}
