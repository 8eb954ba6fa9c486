//! `start`: a manual start built from flags (or given whole), planned first with the very planner
//! the execution's first step runs (what `plan` shows), then started as an execution of the
//! stack's state machine; a refusal starts nothing.

use clap::Args;
use serde_json::{Value, json};

use crate::args::{LaunchArgs, TriggerArgs};
use crate::context::Context;
use crate::failure::{CliResult, Exit, aws_failed};
use crate::output::Output;

/// The session name the operator role is assumed with in workload accounts to check a start.
const PLAN_SESSION: &str = "ami-rollout-cli-start";

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub trigger: TriggerArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

pub async fn run(context: &Context, out: &Output, args: StartArgs) -> CliResult<Exit> {
    let input = args.trigger.input()?;
    // The checks `plan` makes, with the very planner the execution's first step runs: a start it
    // refuses is never started, and a trigger with nothing to do starts nothing.
    if let Some(undo) = rollout_planner::undo::UndoRequest::of(&input) {
        let (_, clients) = context.as_functions().await?;
        let machine = context.state_machine_arn().await?;
        let own = machine.replacen(":stateMachine:", ":execution:", 1) + ":start";
        let undo = undo?;
        let undone = rollout_planner::undo::sibling_execution_arn(&own, &undo.undo)?;
        rollout_planner::undo::check(&clients, &undone, None, PLAN_SESSION)
            .await?
            .into_plan(undo.skip_changed)?;
    } else {
        let resolved = crate::plan::planned(context, &input, PLAN_SESSION).await?;
        if let Err(nothing) = resolved.into_plan() {
            if out.json() {
                out.value(&json!({"type": "nothingToDo", "reason": nothing.nothing_to_do}));
            } else {
                println!(
                    "{}: nothing to do: {} (nothing started)",
                    nothing.trigger, nothing.nothing_to_do
                );
            }
            return Ok(Exit::Done);
        }
    }
    start(context, out, &input, args.launch).await
}

/// Starts an execution of the stack's state machine with `input`, says where to follow it, and
/// follows it when asked.
pub async fn start(
    context: &Context,
    out: &Output,
    input: &Value,
    launch: LaunchArgs,
) -> CliResult<Exit> {
    let machine = context.state_machine_arn().await?;
    let started = context
        .sfn
        .start_execution()
        .state_machine_arn(&machine)
        .input(input.to_string())
        .set_name(launch.name)
        .send()
        .await
        .map_err(|e| aws_failed("StartExecution", e))?;
    let arn = started.execution_arn().to_string();
    let console = context.console_link(&arn);
    if out.json() {
        out.value(&json!({"type": "started", "executionArn": arn, "console": console}));
    } else {
        println!("started {arn}");
        println!("  console: {console}");
        println!("  follow it: ami-rollout watch {arn}");
    }
    if launch.watch {
        return crate::watch::follow(context, out, &arn, &launch.pace).await;
    }
    Ok(Exit::Done)
}
