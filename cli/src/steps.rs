//! Which step of the state machine a history event is the outcome of: the function its Task
//! called and the `action` the state machine asked of it, both read from the event that
//! scheduled it. Outputs are then read as that step's type, never guessed from their keys.

use aws_sdk_sfn::types::HistoryEvent;
use serde_json::Value;

/// The stack's functions (named `<stack>-<function>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    ResolveAmi,
    UpdateTemplate,
    StartRefresh,
    CheckEcsHealth,
    Rollback,
    HoldTargets,
    DistributeAmi,
}

impl Function {
    const ALL: [(Function, &'static str); 7] = [
        (Function::ResolveAmi, "resolve-ami"),
        (Function::UpdateTemplate, "update-template"),
        (Function::StartRefresh, "start-refresh"),
        (Function::CheckEcsHealth, "check-ecs-health"),
        (Function::Rollback, "rollback"),
        (Function::HoldTargets, "hold-targets"),
        (Function::DistributeAmi, "distribute-ami"),
    ];

    /// The function a deployed name (or ARN) is: `ami-rollout-hold-targets` is `HoldTargets`.
    pub fn of(name: &str) -> Option<Self> {
        let name = name.rsplit(':').next().unwrap_or(name);
        Self::ALL
            .iter()
            .find(|(_, step)| name == *step || name.ends_with(&format!("-{step}")))
            .map(|(function, _)| *function)
    }
}

/// A Task's call: the function, and the action its payload names (every step but resolve-ami's
/// plan and the health check takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub function: Function,
    pub action: Option<String>,
}

impl Call {
    pub fn is(&self, function: Function, action: &str) -> bool {
        self.function == function && self.action.as_deref() == Some(action)
    }
}

/// The call whose outcome is `events[index]`: the nearest scheduling event before it. A Task
/// with a function's ARN as its Resource schedules a Lambda function with its input; the
/// `lambda:invoke` integration schedules a task whose parameters name the function and carry
/// the payload.
pub fn call_of(events: &[HistoryEvent], index: usize) -> Option<Call> {
    events[..index].iter().rev().find_map(|e| {
        if let Some(d) = e.lambda_function_scheduled_event_details() {
            let input = d.input().and_then(|i| serde_json::from_str(i).ok());
            return call(d.resource(), input.as_ref());
        }
        let d = e.task_scheduled_event_details()?;
        let parameters: Option<Value> = serde_json::from_str(d.parameters()).ok();
        let function = parameters
            .as_ref()
            .and_then(|p| p.get("FunctionName"))
            .and_then(Value::as_str)
            .unwrap_or(d.resource());
        let payload = parameters.as_ref().map(|p| p.get("Payload").unwrap_or(p));
        call(function, payload)
    })
}

fn call(function: &str, payload: Option<&Value>) -> Option<Call> {
    Some(Call {
        function: Function::of(function)?,
        action: payload
            .and_then(|p| p.get("action"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployed_name_or_arn_is_its_function() {
        assert_eq!(
            Function::of("ami-rollout-hold-targets"),
            Some(Function::HoldTargets)
        );
        assert_eq!(
            Function::of("arn:aws:lambda:us-east-1:1:function:prod-rollback"),
            Some(Function::Rollback)
        );
        assert_eq!(Function::of("resolve-ami"), Some(Function::ResolveAmi));
        assert_eq!(Function::of("something-else"), None);
    }
}
