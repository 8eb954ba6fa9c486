//! Who holds a target. hold-targets takes a hold for each target before its execution changes
//! anything (the holds table's `target#<kind>#<account>#<region>#<name>` item, whose `holder` is
//! the execution's ARN) and releases them when the execution ends, however it ends. A step changes
//! a target only while its own execution holds it: a redriven execution whose holds were released
//! (it had been stopped) leaves its targets alone, whoever holds them now.

use crate::error::FromSdk;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{StepError, StepResult};
use crate::model::{Target, TargetKind, TargetRun};

/// The kind part of a standalone instance's hold key.
pub const INSTANCE_KEY_KIND: &str = "instance";

/// The account and region an execution ARN names
/// (`arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>`).
pub fn execution_home(execution: &str) -> StepResult<(String, String)> {
    let parts: Vec<&str> = execution.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "states", region, account, "execution", _, name]
            if !region.is_empty() && !account.is_empty() && !name.is_empty() =>
        {
            Ok((account.to_string(), region.to_string()))
        }
        _ => Err(StepError::invalid(format!(
            "{execution:?} is not a Step Functions execution ARN"
        ))),
    }
}

/// The hold key of `target`: its own account and region, or the execution's (`account`,
/// `region`) for a target that names none.
pub fn target_key(account: &str, region: &str, target: &Target) -> String {
    let kind = match target.kind {
        TargetKind::AutoScalingGroup => "asg",
        TargetKind::Instance => INSTANCE_KEY_KIND,
    };
    format!(
        "target#{kind}#{}#{}#{}",
        target.account.as_deref().unwrap_or(account),
        target.region.as_deref().unwrap_or(region),
        target.resource
    )
}

/// Why `run`'s execution may not change its target now (`None`: it holds it, or the run is not
/// one of a state machine's, with no execution ARN).
pub async fn refusal(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    run: &TargetRun,
) -> StepResult<Option<StepError>> {
    let Some(execution) = run.execution_arn.as_deref() else {
        return Ok(None);
    };
    let (account, region) = execution_home(execution)?;
    let item = dynamodb
        .get_item()
        .table_name(table)
        .key(
            "key",
            AttributeValue::S(target_key(&account, &region, &run.target)),
        )
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("GetItem", e))?;
    let text = |name: &str| {
        item.item()
            .and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    Ok(match text("holder") {
        Some(holder) if holder == execution => None,
        Some(holder) => Some(StepError::TargetHeld {
            group: run.target.name(),
            holder,
            holder_ami: text("ami").unwrap_or_default(),
        }),
        None => Some(StepError::HoldReleased {
            group: run.target.name(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_arn_names_its_account_and_region() {
        assert_eq!(
            execution_home("arn:aws:states:eu-west-1:123456789012:execution:ami-rollout:e1")
                .unwrap(),
            ("123456789012".into(), "eu-west-1".into())
        );
        assert_eq!(execution_home("e1").unwrap_err().name(), "InvalidInput");
    }

    #[test]
    fn a_target_key_names_where_the_target_lives() {
        let mut target = crate::samples::target_run().target;
        target.resource = "web".into();
        target.account = None;
        target.region = None;
        assert_eq!(target_key("1", "r", &target), "target#asg#1#r#web");
        target.account = Some("2".into());
        target.kind = TargetKind::Instance;
        assert_eq!(target_key("1", "r", &target), "target#instance#2#r#web");
    }
}
