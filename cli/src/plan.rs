//! `plan`: the dry run. It runs resolve-ami's own planning (its library, with the configuration
//! of the deployed function) and writes nothing: the plan objects, the holds, the AMI copies and
//! the protection of rollback-point AMIs are what the execution would write, and are only said.

use clap::Args;
use rollout_core::model::Plan;
use rollout_core::window::WindowTimes;
use rollout_planner::Resolved;
use serde_json::{Value, json};

use crate::args::TriggerArgs;
use crate::context::Context;
use crate::failure::{CliResult, Exit};
use crate::output::{Output, table};
use crate::targets::{kind, rollback_point};

/// The session name the operator role is assumed with in workload accounts.
const SESSION: &str = "ami-rollout-cli-plan";

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub trigger: TriggerArgs,
}

/// The plan of `input` as the execution's first step would make it, with the deployed
/// functions' configuration; workload accounts are entered as the operator (`session`).
pub async fn planned(context: &Context, input: &Value, session: &str) -> CliResult<Resolved> {
    let (config, clients) = context.as_functions().await?;
    let now = rollout_core::clock::now();
    Ok(rollout_planner::resolve(&clients, &config, session, input, now).await?)
}

pub async fn run(context: &Context, out: &Output, args: PlanArgs) -> CliResult<Exit> {
    let input = args.trigger.input()?;
    let plan = match planned(context, &input, SESSION).await?.into_plan() {
        Ok(plan) => plan,
        Err(nothing) => {
            if out.json() {
                out.value(&json!(nothing));
            } else {
                println!(
                    "{}: nothing to do: {}",
                    nothing.trigger, nothing.nothing_to_do
                );
            }
            return Ok(Exit::Done);
        }
    };
    let writes = would_write(&plan);
    if out.json() {
        out.value(&json!({"plan": plan, "wouldWrite": writes}));
    } else {
        print!("{}", render(&plan, &writes));
    }
    Ok(Exit::Done)
}

/// What the execution would write before its first wave, in the order it would.
pub fn would_write(plan: &Plan) -> Vec<String> {
    let mut writes = vec![format!(
        "would hold {} target(s) for the execution (tag ami-rollout:held-by) and protect their rollback-point AMIs from deregistration",
        plan.target_count
    )];
    for copy in &plan.copies {
        let key = copy.kms_key_id.as_deref().map_or_else(
            || "the region's default EBS key".to_string(),
            str::to_string,
        );
        let shared = match copy.accounts.as_slice() {
            [] => String::new(),
            accounts => format!(", shared with {}", accounts.join(", ")),
        };
        writes.push(format!(
            "would copy {} from {} to {} (encrypted with {key}{shared})",
            copy.source.id, copy.source_region, copy.region
        ));
    }
    writes
}

pub fn render(plan: &Plan, writes: &[String]) -> String {
    let mut text = format!(
        "Plan of the {} — nothing was changed\nAMI {} ({}, {}, owner {})\n",
        plan.trigger, plan.ami.id, plan.ami.name, plan.ami.architecture, plan.ami.owner_id
    );
    for (region, ami) in &plan.regional_amis {
        text.push_str(&format!("  in {region}: {} ({})\n", ami.id, ami.name));
    }
    text.push_str("\nBefore the first wave:\n");
    for write in writes {
        text.push_str(&format!("  {write}\n"));
    }
    for (index, wave) in plan.waves.iter().enumerate() {
        text.push_str(&format!(
            "\nWave {} — {} target(s); at most {} group(s) and {} instance(s) at once per account-region\n",
            index + 1,
            wave.len(),
            plan.max_concurrency,
            plan.instance_concurrency
        ));
        let rows = wave.iter().map(|t| {
            let name = match &t.instance_name {
                Some(n) => format!("{} ({n})", t.name()),
                None => t.name(),
            };
            [
                name,
                kind(t).to_string(),
                format!("{} → {}", t.rollback_point.image_id(), t.ami.id),
                rollback_point(t),
                t.window
                    .as_ref()
                    .map_or(WindowTimes::NO_WINDOW, |w| w.times)
                    .describe(),
            ]
        });
        let rows: Vec<[String; 5]> = rows.collect();
        text.push_str(&format!(
            "{}\n",
            table(
                &[
                    "target",
                    "kind",
                    "AMI",
                    "rollback point",
                    "maintenance window"
                ],
                rows
            )
        ));
        if let Some(gate) = plan.approvals.get(&index) {
            text.push_str(&format!(
                "Then it waits for an approval (asked by {}), at most {} min; unanswered, {}.\n",
                gate.asked_by.join(", "),
                gate.timeout_seconds / 60,
                match gate.on_timeout {
                    rollout_core::gate::OnApprovalTimeout::Stop => "it stops for a redrive",
                    rollout_core::gate::OnApprovalTimeout::Rollback =>
                        "every touched target is rolled back",
                }
            ));
        }
    }
    if !plan.notes.is_empty() {
        text.push_str("\nWorth knowing:\n");
        let rows: Vec<[String; 2]> = plan
            .notes
            .iter()
            .map(|n| [n.target.clone(), n.note.clone()])
            .collect();
        text.push_str(&format!("{}\n", table(&["target", "note"], rows)));
    }
    if !plan.skipped.is_empty() {
        text.push_str(&format!("\nSkipped ({}):\n", plan.skipped_count));
        let rows: Vec<[String; 2]> = plan
            .skipped
            .iter()
            .map(|s| [s.group.clone(), s.reason.clone()])
            .collect();
        text.push_str(&format!("{}\n", table(&["target", "reason"], rows)));
    }
    text.push_str(&format!(
        "\nOn failure, the rollback brings back every target {} touched.\n",
        match plan.rollback_scope {
            rollout_core::model::RollbackScope::Execution => "the execution",
            rollout_core::model::RollbackScope::Wave => "the failed wave",
        }
    ));
    text
}
