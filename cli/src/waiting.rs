//! What a running execution waits for: the approval gate it is parked at (which wave, since when,
//! until when, and the commands that answer it). Read from its history (the gate's task scheduled
//! and not ended) and the request the gate stored.

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType as E};
use rollout_core::gate::OnApprovalTimeout;
use rollout_core::store::{ApprovalRequest, execution_name};
use rollout_core::time::iso_time;
use serde_json::{Value, json};

use crate::context::Context;
use crate::steps::{Function, call_of};

/// The gate the execution `arn` (whose history is `events`) is parked at, if any.
pub async fn approval_gate(
    context: &Context,
    arn: &str,
    events: &[HistoryEvent],
) -> Option<ApprovalRequest> {
    let asked = events.iter().enumerate().rev().find_map(|(i, e)| {
        let scheduled = matches!(e.r#type(), E::TaskScheduled | E::LambdaFunctionScheduled);
        let gate =
            call_of(events, i + 1).is_some_and(|c| c.is(Function::HoldTargets, "askApproval"));
        (scheduled && gate).then_some(i)
    })?;
    let ended = events[asked..].iter().any(|e| {
        matches!(
            e.r#type(),
            E::TaskSucceeded | E::TaskFailed | E::TaskTimedOut | E::TaskStateExited
        )
    });
    if ended {
        return None;
    }
    let (_, clients) = context.functions_environment().await.ok()?;
    let store = clients.store().ok()?;
    store
        .approval_requests(execution_name(arn))
        .await
        .ok()?
        .pop()
}

/// The gate a parked execution waits at, as a JSON object and as lines for people.
pub fn describe(request: &ApprovalRequest) -> (Value, String) {
    let name = execution_name(&request.execution_arn);
    let wave = request.wave + 1;
    let approve = format!("ami-rollout approve {name}");
    let reject = format!("ami-rollout reject {name} --reason \"...\"");
    let then = match request.on_timeout {
        OnApprovalTimeout::Stop => "the execution stops for a redrive",
        OnApprovalTimeout::Rollback => "every target it touched is rolled back",
    };
    let json = json!({
        "wave": wave,
        "askedAt": iso_time(request.asked_at),
        "answerBy": iso_time(request.answer_by),
        "onTimeout": request.on_timeout,
        "approve": approve,
        "reject": reject,
    });
    let text = format!(
        "waiting at the approval gate after wave {wave} since {}; unanswered by {}, {then}\n  \
         approve: {approve}\n  reject:  {reject}",
        iso_time(request.asked_at),
        iso_time(request.answer_by)
    );
    (json, text)
}
