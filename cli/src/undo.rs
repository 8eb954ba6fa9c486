//! `undo`: a successful rollout rolled back as a new execution of the state machine, so it is
//! watched, retried and redriven like any other. What it would do comes first, from resolve-ami's
//! own undo check (read only, the same the execution makes again): every target with the
//! rollback point it returns to, how it gets there, and what is refused and why. Then it asks.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use rollout_planner::undo::UndoCheck;
use serde_json::json;

use crate::args::LaunchArgs;
use crate::context::Context;
use crate::failure::{CliResult, Exit, Failure};
use crate::output::{Output, table};
use crate::targets::{kind, rollback_point};

/// The session name the operator role is assumed with in workload accounts.
const SESSION: &str = "ami-rollout-cli-undo";

#[derive(Args, Debug)]
pub struct UndoArgs {
    /// The rollout to undo: its execution name or ARN.
    pub execution: String,
    /// Leave out the targets changed since the rollout (reported) instead of refusing the undo.
    #[arg(long)]
    pub skip_changed: bool,
    /// Only show what the undo would do.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Start the undo without asking.
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

pub async fn run(context: &Context, out: &Output, args: UndoArgs) -> CliResult<Exit> {
    let arn = context.execution_arn(&args.execution).await?;
    let (_, clients) = context.as_functions().await?;
    let check = rollout_planner::undo::check(&clients, &arn, None, SESSION).await?;
    if out.json() {
        out.value(&json!({
            "type": "undoPlan",
            "plan": check.plan,
            "refused": check.refused,
            "notes": check.notes,
        }));
    } else {
        print!("{}", render(&check));
    }
    let undone = check
        .plan
        .undo
        .clone()
        .map(|u| u.execution)
        .unwrap_or_default();
    // The refusal the execution would end with, before anything is started.
    check.into_plan(args.skip_changed)?;
    if args.dry_run {
        return Ok(Exit::Done);
    }
    if !args.yes {
        confirm(&format!("Undo {undone}"))?;
    }
    let input = json!({"undo": undone, "skipChanged": args.skip_changed});
    crate::start::start(context, out, &input, args.launch).await
}

/// Asks on the terminal; without one, `--yes` is the only way to say yes.
pub fn confirm(question: &str) -> CliResult<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::refused(
            "nothing done: give --yes to go on without a terminal to confirm on",
        ));
    }
    print!("{question}? Type yes to go on: ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Failure::refused("nothing done: not confirmed"))
    }
}

pub fn render(check: &UndoCheck) -> String {
    let plan = &check.plan;
    let mut text = format!(
        "Undo of {} — nothing was changed\n{} target(s) go back from {} to their rollback points; the undo holds them as a rollout would\n",
        plan.undo.as_ref().map_or("", |u| u.execution.as_str()),
        plan.target_count,
        plan.ami.id,
    );
    let rows: Vec<[String; 4]> = plan
        .waves
        .iter()
        .flatten()
        .map(|t| {
            let name = t.name();
            let how = check.notes.iter().find(|n| n.group == name).map_or_else(
                || "as its own rollback would".to_string(),
                |n| n.reason.clone(),
            );
            [
                match &t.instance_name {
                    Some(n) => format!("{name} ({n})"),
                    None => name,
                },
                kind(t).to_string(),
                format!(
                    "{} → {} ({})",
                    t.ami.id,
                    t.rollback_point.image_id(),
                    rollback_point(t)
                ),
                how,
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push_str(&format!(
            "{}\n",
            table(&["target", "kind", "back to", "how"], rows)
        ));
    }
    let planned: Vec<String> = plan.waves.iter().flatten().map(|t| t.name()).collect();
    let untouched: Vec<[String; 2]> = check
        .notes
        .iter()
        .filter(|n| !planned.contains(&n.group))
        .map(|n| [n.group.clone(), n.reason.clone()])
        .collect();
    if !untouched.is_empty() {
        text.push_str(&format!(
            "\nLeft as they are ({}): nothing of the rollout's is on them\n{}\n",
            untouched.len(),
            table(&["target", "why"], untouched)
        ));
    }
    if !check.refused.is_empty() {
        text.push_str(&format!(
            "\nRefused ({}): changed since the rollout, or their rollback point can no longer launch\n",
            check.refused.len()
        ));
        let rows: Vec<[String; 2]> = check
            .refused
            .iter()
            .map(|s| [s.group.clone(), s.reason.clone()])
            .collect();
        text.push_str(&format!("{}\n", table(&["target", "reason"], rows)));
    }
    text
}
