//! `approve` and `reject`: the answer to an execution's approval gate. The answer is a decision
//! written under `decisions/` in the plans bucket, which only the approver roles may write; then
//! the gate's task token (stored where only the functions and the approvers read it) wakes the
//! gate, which reads the decision: approved, the next wave starts; rejected, every target the
//! execution touched is rolled back. The token alone decides nothing.

use clap::Args;
use rollout_core::error::REJECTED;
use rollout_core::gate::GateWake;
use rollout_core::store::{ApprovalDecision, ApprovalRequest, decision_key, execution_name};
use serde_json::json;

use crate::context::Context;
use crate::failure::{CliResult, Exit, Failure, aws_failed};
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

pub async fn approve(context: &Context, out: &Output, args: ApproveArgs) -> CliResult<Exit> {
    answer(context, out, &args.execution, None).await
}

pub async fn reject(context: &Context, out: &Output, args: RejectArgs) -> CliResult<Exit> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(Failure::refused(
            "--reason is empty: say why the next wave must not go on",
        ));
    }
    answer(context, out, &args.gate.execution, Some(reason)).await
}

/// Writes the decision (`reason`: a rejection), then wakes the gate with its token. A gate woken
/// meanwhile by someone else has asked again with a new token: that one is used.
async fn answer(
    context: &Context,
    out: &Output,
    execution: &str,
    reason: Option<&str>,
) -> CliResult<Exit> {
    let (arn, mut request) = latest_gate(context, execution).await?;
    let by = caller(context).await;
    decide(context, &arn, &request, reason.is_none(), &by, reason).await?;
    let verb = if reason.is_none() {
        "approved"
    } else {
        "rejected"
    };
    let mut sent = wake(context, &request, &by, reason).await;
    for _ in 0..3 {
        if !sent.as_ref().is_err_and(spent) {
            break;
        }
        let (_, latest) = latest_gate(context, execution).await?;
        if latest.task_token == request.task_token {
            break;
        }
        request = latest;
        sent = wake(context, &request, &by, reason).await;
    }
    answered(out, &arn, &request, sent, verb)
}

/// Wakes the gate: `SendTaskSuccess`, or `SendTaskFailure` (`Rejected`) for a rejection, so the
/// history reads as the answer. The gate obeys the decision either way.
async fn wake(
    context: &Context,
    request: &ApprovalRequest,
    by: &str,
    reason: Option<&str>,
) -> CliResult<()> {
    match reason {
        None => context
            .sfn
            .send_task_success()
            .task_token(&request.task_token)
            .output(
                serde_json::to_string(&GateWake {
                    approved: true,
                    by: Some(by.to_string()),
                })
                .unwrap_or_default(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_failed("SendTaskSuccess", e)),
        Some(reason) => context
            .sfn
            .send_task_failure()
            .task_token(&request.task_token)
            .error(REJECTED)
            .cause(format!("{reason} (rejected by {by})"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_failed("SendTaskFailure", e)),
    }
}

/// A token that moves nothing any more: answered, timed out, asked again, or the execution ended.
fn spent(failure: &Failure) -> bool {
    ["TaskDoesNotExist", "TaskTimedOut", "InvalidToken"]
        .iter()
        .any(|code| failure.message.contains(code) || failure.name.contains(code))
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
    // Only the plans bucket: an approver's role reads nothing else of it (ApproverPolicy).
    let (_, clients) = context.functions_environment().await?;
    let decision = ApprovalDecision {
        approved,
        by: by.to_string(),
        reason: reason.map(str::to_string),
        decided_at: rollout_core::clock::now(),
    };
    clients
        .store()?
        .put_json(&decision_key(execution_name(arn), request.wave), &decision)
        .await?;
    Ok(())
}

/// The execution's ARN and the gate it asked last.
async fn latest_gate(context: &Context, execution: &str) -> CliResult<(String, ApprovalRequest)> {
    let arn = context.execution_arn(execution).await?;
    context.describe_execution(&arn).await?;
    let name = execution_name(&arn);
    let (_, clients) = context.functions_environment().await?;
    let latest = clients.store()?.approval_requests(name).await?.pop();
    let request = latest.ok_or_else(|| Failure {
        exit: Exit::Refused,
        ..Failure::new(
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
) -> CliResult<Exit> {
    let wave = request.wave + 1;
    if let Err(failure) = sent {
        if spent(&failure) {
            return Err(Failure {
                exit: Exit::Refused,
                detail: failure.detail,
                ..Failure::new(
                    "NoApprovalPending",
                    format!(
                        "the gate after wave {wave} of {arn} no longer waits (answered, timed out, or the execution ended)"
                    ),
                )
            });
        }
        return Err(failure);
    }
    if out.json() {
        out.value(&json!({"type": verb, "executionArn": arn, "wave": wave}));
    } else {
        println!("{verb} the gate after wave {wave} of {arn}");
        println!("  follow it: ami-rollout watch {arn}");
    }
    Ok(Exit::Done)
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
