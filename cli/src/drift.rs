//! `drift`: approved-AMI compliance over the reach (resolve-ami's drift check, with the deployed
//! function's configuration). Exit status 2 when any target is off the approved AMI, for CI.

use clap::Args;
use rollout_core::model::TargetKind;
use serde_json::json;

use crate::context::Context;
use crate::failure::{CliResult, Exit};
use crate::output::{Output, table};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
pub struct DriftArgs {
    /// The approved AMI (in the stack's region; the AMI of the same name and owner elsewhere).
    #[arg(
        long,
        conflicts_with = "parameter_name",
        required_unless_present = "parameter_name"
    )]
    pub ami_id: Option<String>,
    /// An SSM parameter holding the approved AMI, read in each region of the reach.
    #[arg(long)]
    pub parameter_name: Option<String>,
    /// How to write the report (`--output json` implies json).
    #[arg(long, value_enum, default_value = "table")]
    pub format: DriftFormat,
}

pub async fn run(context: &Context, out: &Output, args: DriftArgs) -> CliResult<Exit> {
    // The schedule's own reading of the approved AMI.
    let source = rollout_planner::drift::ApprovedAmi {
        ami_id: args.ami_id,
        parameter_name: args.parameter_name,
    }
    .source()?;
    let (config, clients) = context.as_functions().await?;
    let report =
        rollout_planner::drift::check(&clients, &config, &source, rollout_core::clock::now())
            .await?;
    let format = if out.json() {
        DriftFormat::Json
    } else {
        args.format
    };
    let kind = |k: TargetKind| match k {
        TargetKind::AutoScalingGroup => "group",
        TargetKind::Instance => "instance",
    };
    match format {
        DriftFormat::Json => out.value(&json!(report)),
        DriftFormat::Csv => {
            println!("target,kind,approved,amis,oldest_created,age_days");
            for d in &report.drifted {
                println!(
                    "{},{},{},{},{},{}",
                    d.target,
                    kind(d.kind),
                    d.approved.as_deref().unwrap_or(""),
                    d.amis.join(" "),
                    d.oldest_created.as_deref().unwrap_or(""),
                    d.age_days.map_or_else(String::new, |a| a.to_string())
                );
            }
        }
        DriftFormat::Table => {
            for (region, ami) in &report.approved {
                println!(
                    "approved in {region}: {}",
                    ami.as_deref().unwrap_or("none found")
                );
            }
            if report.drifted.is_empty() {
                println!(
                    "{} target(s) checked: every one is on the approved AMI",
                    report.checked
                );
            } else {
                let rows = report.drifted.iter().map(|d| {
                    [
                        d.target.clone(),
                        kind(d.kind).to_string(),
                        d.amis.join(", "),
                        d.age_days
                            .map_or_else(|| "unknown (AMI gone)".into(), |a| format!("{a} days")),
                        d.approved
                            .clone()
                            .unwrap_or_else(|| "none in region".into()),
                    ]
                });
                println!(
                    "{}",
                    table(&["target", "kind", "runs", "AMI age", "approved"], rows)
                );
                println!(
                    "{} of {} target(s) not on the approved AMI",
                    report.drifted.len(),
                    report.checked
                );
            }
        }
    }
    Ok(if report.drifted.is_empty() {
        Exit::Done
    } else {
        Exit::Drift
    })
}
