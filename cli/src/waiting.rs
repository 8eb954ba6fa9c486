//! What a running execution waits for: the approval gate it is parked at (which wave, since when,
//! until when, and the commands that answer it), and the targets parked until their maintenance
//! window opens. Read from the histories (a task scheduled and not ended) and what the gate and
//! the window check stored or said.

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType as E};
use rollout_core::gate::OnApprovalTimeout;
use rollout_core::model::ExecutionStatus;
use rollout_core::store::{ApprovalRequest, execution_name};
use rollout_core::time::iso_time;
use rollout_core::window::WindowCheck;
use serde_json::{Value, json};

use crate::context::Context;
use crate::history::{Children, succeeded_output};
use crate::steps::{Function, call_of};

/// The index of the last `action` of hold-targets scheduled in `events` and not ended since.
fn pending(events: &[HistoryEvent], action: &str) -> Option<usize> {
    let asked = events.iter().enumerate().rev().find_map(|(i, e)| {
        let scheduled = matches!(e.r#type(), E::TaskScheduled | E::LambdaFunctionScheduled);
        (scheduled && call_of(events, i + 1).is_some_and(|c| c.is(Function::HoldTargets, action)))
            .then_some(i)
    })?;
    let ended = events[asked..].iter().any(|e| {
        matches!(
            e.r#type(),
            E::TaskSucceeded | E::TaskFailed | E::TaskTimedOut | E::TaskStateExited
        )
    });
    (!ended).then_some(asked)
}

/// The targets of running children parked until their window opens, with when it opens (from
/// the window check that parked them).
pub fn window_waits(children: &Children) -> Vec<(String, Option<i64>)> {
    let mut parked = Vec::new();
    for child in children.order.iter().map(|a| &children.known[a]) {
        if child.rollback || child.status != ExecutionStatus::Running {
            continue;
        }
        let events = &child.events;
        let Some(at) = pending(events, "waitForWindow") else {
            continue;
        };
        let opens = events[..at].iter().enumerate().rev().find_map(|(i, e)| {
            call_of(events, i)
                .filter(|c| c.is(Function::HoldTargets, "checkWindow"))
                .and(succeeded_output(e))
                .and_then(|o| serde_json::from_value::<WindowCheck>(o).ok())
        });
        parked.push((child.target.name(), opens.and_then(|c| c.times.opens_at)));
    }
    parked
}

/// The gate the execution `arn` (whose history is `events`) is parked at, if any.
pub async fn approval_gate(
    context: &Context,
    arn: &str,
    events: &[HistoryEvent],
) -> Option<ApprovalRequest> {
    pending(events, "askApproval")?;
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
