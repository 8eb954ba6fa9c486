//! `start`: a manual start built from flags (or given whole), checked with the very checks
//! resolve-ami begins with, then started as an execution of the stack's state machine.

use clap::Args;
use serde_json::{Value, json};

use crate::args::{LaunchArgs, TriggerArgs};
use crate::context::Context;
use crate::failure::{CliResult, aws_failed};
use crate::output::Output;

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub trigger: TriggerArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

pub async fn run(context: &Context, out: &Output, args: StartArgs) -> CliResult<u8> {
    let input = args.trigger.input()?;
    let (config, _) = context.as_functions().await?;
    // The checks the execution's first step makes: a start they refuse is never started.
    rollout_planner::accept(&config, &input)?;
    start(context, out, &input, args.launch).await
}

/// Starts an execution of the stack's state machine with `input`, says where to follow it, and
/// follows it when asked.
pub async fn start(
    context: &Context,
    out: &Output,
    input: &Value,
    launch: LaunchArgs,
) -> CliResult<u8> {
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
    Ok(0)
}
