//! resolve-ami: the state machine's first step. It asks the planner (`rollout-planner`) for the
//! plan of a trigger, or of an undo, and writes the plan objects to the plans bucket (and, for a
//! parameter's AMI, the record that it was planned). Every refusal happens in planning, before
//! anything in the fleet changes. On its schedule it runs the drift check instead, which puts
//! its counts to CloudWatch.

use rollout_core::config::Config;
use rollout_core::model::Epoch;
use rollout_core::store::RolledOut;
use rollout_core::{Clients, StepError, StepResult};
use rollout_planner::{drift, resolve, undo};
use serde_json::Value;

/// What the state machine passes: the execution's name (the plan objects are named after it)
/// and the trigger, as the execution received it.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub execution: String,
    /// The execution's ARN: an undo finds the rollout it undoes beside it.
    #[serde(rename = "executionArn", default)]
    pub execution_arn: Option<String>,
    pub trigger: Value,
}

/// The state machine's first step (a plan), or the scheduled drift check (`{"driftCheck": ...}`).
pub async fn handle(clients: &Clients, payload: Value) -> StepResult<Value> {
    let now = rollout_core::clock::now();
    if payload.get("driftCheck").is_some() {
        let request: drift::ScheduledCheck =
            rollout_core::error::parse_input("resolve-ami drift check", payload)?;
        to_state(&drift::scheduled(clients, &request, now).await?)
    } else {
        let request: ResolveRequest = rollout_core::error::parse_input("resolve-ami", payload)?;
        resolve_and_store(clients, &request, now).await
    }
}

/// Plans the rollout and writes the plan objects; the state carries the summary, or only why
/// there is nothing to do.
pub async fn resolve_and_store(
    clients: &Clients,
    request: &ResolveRequest,
    now: Epoch,
) -> StepResult<Value> {
    if request.execution.trim().is_empty() {
        return Err(StepError::invalid("execution is empty"));
    }
    let store = clients.store()?;
    let plan = match undo::UndoRequest::of(&request.trigger) {
        Some(asked) => {
            let asked = asked?;
            let own = request.execution_arn.as_deref().ok_or_else(|| {
                StepError::invalid("an undo needs executionArn (the state machine passes it)")
            })?;
            let undone = undo::sibling_execution_arn(own, &asked.undo)?;
            undo::check(
                clients,
                &undone,
                Some(&request.execution),
                &request.execution,
            )
            .await?
            .into_plan(asked.skip_changed)?
        }
        None => {
            let config = Config::from_env()?.with_settings(store.settings().await?);
            match resolve(clients, &config, &request.execution, &request.trigger, now)
                .await?
                .into_plan()
            {
                Ok(plan) => plan,
                Err(nothing) => {
                    tracing::info!(reason = %nothing.nothing_to_do, "nothing to do");
                    return to_state(&nothing);
                }
            }
        }
    };
    let summary = store.write_plan(&request.execution, &plan).await?;
    if let Some(name) = &plan.parameter {
        let record = RolledOut {
            execution: request.execution.clone(),
            execution_arn: request.execution_arn.clone(),
            at: now,
        };
        store
            .put_json(
                &rollout_core::store::rolled_out_key(name, &plan.ami.id),
                &record,
            )
            .await?;
    }
    tracing::info!(ami = %plan.ami.id, targets = plan.target_count, waves = plan.waves.len(), skipped = plan.skipped_count, plan = %summary.key, "planned rollout");
    to_state(&summary)
}

fn to_state(out: &impl serde::Serialize) -> StepResult<Value> {
    serde_json::to_value(out).map_err(|e| StepError::invalid(format!("resolve-ami output: {e}")))
}
