//! `abort`: stops a running rollout and brings back what it touched, as a new execution: an undo
//! of the aborted rollout, each target checked again where it lives first (a target the rollout
//! had not reached is left as it is, one part way goes back as the rollout's own rollback would
//! take it back).

use std::time::Duration;

use clap::Args;
use rollout_core::model::ExecutionStatus;
use rollout_core::store::execution_name;
use serde_json::json;

use crate::args::LaunchArgs;
use crate::context::Context;
use crate::failure::{CliResult, Exit, Failure, aws_failed};
use crate::output::Output;
use crate::undo::{confirm, render};

/// The session name the operator role is assumed with in workload accounts.
const SESSION: &str = "ami-rollout-cli-abort";

#[derive(Args, Debug)]
pub struct AbortArgs {
    /// The running rollout: its execution name or ARN.
    pub execution: String,
    /// Abort without asking.
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

pub async fn run(context: &Context, out: &Output, args: AbortArgs) -> CliResult<Exit> {
    let arn = context.execution_arn(&args.execution).await?;
    let name = execution_name(&arn).to_string();
    let described = context.describe_execution(&arn).await?;
    let status = ExecutionStatus::parse(described.status().as_str());
    if status != ExecutionStatus::Running {
        return Err(Failure::refused(format!(
            "{name} is {status}: only a running rollout is aborted (one that succeeded is brought back with ami-rollout undo {name})"
        )));
    }
    let input: Option<serde_json::Value> =
        described.input().and_then(|i| serde_json::from_str(i).ok());
    if input.is_some_and(|i| i.get("undo").is_some()) {
        return Err(Failure::refused(format!(
            "{name} is an undo: let it finish, or stop it with the Step Functions console"
        )));
    }
    if !args.yes {
        confirm(&format!(
            "Abort {name} and bring back every target it touched"
        ))?;
    }
    context
        .sfn
        .stop_execution()
        .execution_arn(&arn)
        .error("Aborted")
        .cause("aborted with ami-rollout abort: what it touched is brought back by an undo")
        .send()
        .await
        .map_err(|e| aws_failed("StopExecution", e))?;
    wait_until_aborted(context, &arn).await?;
    let (_, clients) = context.as_functions().await?;
    let check = rollout_planner::undo::check(&clients, &arn, None, SESSION).await?;
    if check.plan.target_count == 0 && check.refused.is_empty() {
        if out.json() {
            out.value(
                &json!({"type": "aborted", "executionArn": arn, "plan": check.plan,
                              "notes": check.notes}),
            );
        } else {
            println!("aborted {name}: it had changed no target, so there is nothing to bring back");
        }
        return Ok(Exit::Done);
    }
    if out.json() {
        out.value(
            &json!({"type": "aborted", "executionArn": arn, "plan": check.plan,
                          "refused": check.refused, "notes": check.notes}),
        );
    } else {
        println!("aborted {name}; bringing back what it touched:");
        print!("{}", render(&check));
    }
    // Targets that cannot go back (changed by someone since, a refresh of another's running)
    // are left out, named above, rather than holding the others back.
    let input = json!({"undo": name, "skipChanged": true});
    crate::start::start(context, out, &input, args.launch).await
}

/// Step Functions ends an execution a moment after StopExecution; the undo needs it ended.
async fn wait_until_aborted(context: &Context, arn: &str) -> CliResult<()> {
    for _ in 0..60 {
        let described = context.describe_execution(arn).await?;
        if ExecutionStatus::parse(described.status().as_str()).is_ended() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Failure::new(
        "StillRunning",
        format!(
            "{} did not end within 30 s of StopExecution",
            execution_name(arn)
        ),
    ))
}
