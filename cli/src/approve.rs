//! `approve` and `reject`: the answer to an execution's approval gate. The answer is a decision
//! written under `decisions/` in the plans bucket, which only the approver roles may write; then
//! the gate's task token (stored where only the functions and the approvers read it) wakes the
//! gate, which reads the decision: approved, the next wave starts; rejected, every target the
//! execution touched is rolled back. The token alone decides nothing.

use clap::Args;
use rollout_core::change_control::REJECTED;
use rollout_core::store::{ApprovalDecision, ApprovalRequest, decision_key};
use serde_json::json;

use crate::context::{CliResult, Context, Failure, aws_failed};
use crate::output::Output;

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The execution waiting at its gate: its name or ARN.
    pub execution: String,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    #[command(flatten)]
    pub gate: ApproveArgs,
    /// Why, for the execution's history and the rollback's cause.
    #[arg(long)]
    pub reason: String,
}

pub async fn approve(context: &Context, out: &Output, args: ApproveArgs) -> CliResult<u8> {
    let (arn, request) = latest_gate(context, &args.execution).await?;
    let by = caller(context).await;
    decide(context, &arn, &request, true, &by, None).await?;
    let output = json!({"approved": true, "by": by});
    let sent = context
        .sfn
        .send_task_success()
        .task_token(&request.task_token)
        .output(output.to_string())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_failed("SendTaskSuccess", e));
    answered(out, &arn, &request, sent, "approved")
}

pub async fn reject(context: &Context, out: &Output, args: RejectArgs) -> CliResult<u8> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(Failure::refused(
            "--reason is empty: say why the next wave must not go on",
        ));
    }
    let (arn, request) = latest_gate(context, &args.gate.execution).await?;
    let by = caller(context).await;
    decide(context, &arn, &request, false, &by, Some(reason)).await?;
    let sent = context
        .sfn
        .send_task_failure()
        .task_token(&request.task_token)
        .error(REJECTED)
        .cause(format!("{reason} (rejected by {by})"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_failed("SendTaskFailure", e));
    answered(out, &arn, &request, sent, "rejected")
}

/// Writes the approver's decision, which the woken gate obeys.
async fn decide(
    context: &Context,
    arn: &str,
    request: &ApprovalRequest,
    approved: bool,
    by: &str,
    reason: Option<&str>,
) -> CliResult<()> {
    let name = arn.rsplit(':').next().unwrap_or(arn);
    let (_, clients) = context.as_functions().await?;
    let decision = ApprovalDecision {
        approved,
        by: by.to_string(),
        reason: reason.map(str::to_string),
        decided_at: rollout_core::clock::now(),
    };
    clients
        .store()?
        .put_json(&decision_key(name, request.wave), &decision)
        .await?;
    Ok(())
}

/// The execution's ARN and the gate it asked last.
async fn latest_gate(context: &Context, execution: &str) -> CliResult<(String, ApprovalRequest)> {
    let arn = context.execution_arn(execution).await?;
    let name = arn.rsplit(':').next().unwrap_or(&arn);
    let (_, clients) = context.as_functions().await?;
    let latest = clients.store()?.approval_requests(name).await?.pop();
    let request = latest.ok_or_else(|| {
        Failure::new(
            "NoApprovalPending",
            format!("{name} has asked for no approval"),
        )
    })?;
    Ok((arn, request))
}

fn answered(
    out: &Output,
    arn: &str,
    request: &ApprovalRequest,
    sent: CliResult<()>,
    verb: &str,
) -> CliResult<u8> {
    let wave = request.wave + 1;
    if let Err(failure) = sent {
        // A spent token: answered already, timed out, or the execution ended.
        if ["TaskDoesNotExist", "TaskTimedOut", "InvalidToken"]
            .iter()
            .any(|code| failure.message.contains(code) || failure.name.contains(code))
        {
            return Err(Failure::new(
                "NoApprovalPending",
                format!(
                    "the gate after wave {wave} of {arn} no longer waits (answered, timed out, or the execution ended): {}",
                    failure.message
                ),
            ));
        }
        return Err(failure);
    }
    if out.json() {
        out.value(&json!({"type": verb, "executionArn": arn, "wave": wave}));
    } else {
        println!("{verb} the gate after wave {wave} of {arn}");
        println!("  follow it: ami-rollout watch {arn}");
    }
    Ok(0)
}

/// Who answers, for the history: the caller's ARN, or "the operator" when STS does not say.
async fn caller(context: &Context) -> String {
    context
        .clients()
        .sts
        .get_caller_identity()
        .send()
        .await
        .ok()
        .and_then(|id| id.arn().map(str::to_string))
        .unwrap_or_else(|| "the operator".into())
}
