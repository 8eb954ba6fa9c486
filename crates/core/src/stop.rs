//! The wave's stop signal. A target that fails records why in its execution's record (the holds
//! table's `execution#<arn>` item), first failure wins; every step of every other target reads
//! it before it changes anything, so once one target of a wave has failed no other target starts
//! a change, and the targets still polling end early. The wave's Distributed Map then ends and
//! the parent reads the signal to decide on the rollback.

use crate::error::FromSdk;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{StepError, StepResult};
use crate::model::{TargetRun, WaveStop};

/// The holds table's key of an execution's record.
pub fn execution_key(execution_arn: &str) -> String {
    format!("execution#{execution_arn}")
}

const ATTRIBUTE: &str = "waveStop";

/// The holds table, where the signal lives.
#[derive(Clone, Debug)]
pub struct StopSignal {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl StopSignal {
    /// Records `stop` unless another target's is already there; returns the one in force.
    pub async fn raise(&self, execution_arn: &str, stop: &WaveStop) -> StepResult<WaveStop> {
        let text = serde_json::to_string(stop)
            .map_err(|e| StepError::invalid(format!("wave stop: {e}")))?;
        let raised = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(execution_key(execution_arn)))
            .update_expression("SET #stop = :stop")
            .condition_expression("attribute_not_exists(#stop)")
            .expression_attribute_names("#stop", ATTRIBUTE)
            .expression_attribute_values(":stop", AttributeValue::S(text))
            .send()
            .await;
        match raised {
            Ok(_) => Ok(stop.clone()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(self
                    .read(execution_arn)
                    .await?
                    .unwrap_or_else(|| stop.clone()))
            }
            Err(err) => Err(StepError::from_sdk("UpdateItem", err)),
        }
    }

    /// The stop recorded for the execution, if a target has failed.
    pub async fn read(&self, execution_arn: &str) -> StepResult<Option<WaveStop>> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(execution_key(execution_arn)))
            .projection_expression("#stop")
            .expression_attribute_names("#stop", ATTRIBUTE)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::from_sdk("GetItem", e))?;
        item.item().map_or(Ok(None), stop_in)
    }

    /// Refuses (`WaveStopped`) to go on with `run` once another target has failed.
    pub async fn ensure_going(&self, run: &TargetRun) -> StepResult<()> {
        let Some(execution_arn) = &run.execution_arn else {
            return Ok(());
        };
        match self.read(execution_arn).await? {
            Some(stop) if stop.target_name() != run.target.name() => Err(StepError::WaveStopped {
                group: run.target.name(),
                failed: stop.target_name(),
                reason: stop.failure.describe(),
            }),
            _ => Ok(()),
        }
    }
}

/// The stop an execution's record holds, if a target has failed.
pub fn stop_in(
    record: &std::collections::HashMap<String, AttributeValue>,
) -> StepResult<Option<WaveStop>> {
    let Some(text) = record.get(ATTRIBUTE).and_then(|v| v.as_s().ok()) else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| StepError::invalid(format!("the recorded wave stop is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::mock::{Rules, mock};
    use crate::model::CaughtError;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;

    const EXECUTION: &str = "arn:aws:states:eu-west-1:1:execution:ami-rollout:e";

    fn stop(group: &str) -> WaveStop {
        WaveStop {
            group: group.into(),
            account: None,
            region: None,
            wave: 1,
            failure: CaughtError {
                error: "TargetUnhealthy".into(),
                cause: format!(
                    r#"{{"errorType":"TargetUnhealthy","errorMessage":"{group}: alarm"}}"#
                ),
            },
        }
    }

    fn recorded(group: &'static str) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.consistent_read() == Some(true)
                    && r.key()
                        .and_then(|k| k.get("key"))
                        .is_some_and(|k| k.as_s().is_ok_and(|k| k.starts_with("execution#")))
            })
            .then_output(move || {
                GetItemOutput::builder()
                    .item(
                        ATTRIBUTE,
                        AttributeValue::S(serde_json::to_string(&stop(group)).unwrap()),
                    )
                    .build()
            })
    }

    #[tokio::test]
    async fn the_first_failure_of_a_wave_wins() {
        let lost = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(#stop)"))
            .then_error(|| {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder().build(),
                )
            });
        let first = recorded("a");
        let signal = Rules {
            dynamodb: vec![&lost, &first],
            ..Default::default()
        }
        .clients()
        .stop_signal()
        .unwrap();
        let in_force = signal.raise(EXECUTION, &stop("b")).await.unwrap();
        assert_eq!(in_force.group, "a", "b's failure came second");

        let won = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let signal = Rules {
            dynamodb: vec![&won],
            ..Default::default()
        }
        .clients()
        .stop_signal()
        .unwrap();
        assert_eq!(
            signal.raise(EXECUTION, &stop("b")).await.unwrap().group,
            "b"
        );
    }

    /// The hold item of any target, naming `holder`.
    fn hold(holder: &'static str) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.key()
                    .and_then(|k| k.get("key"))
                    .is_some_and(|k| k.as_s().is_ok_and(|k| k.starts_with("target#")))
            })
            .then_output(move || {
                GetItemOutput::builder()
                    .item("holder", AttributeValue::S(holder.into()))
                    .item("ami", AttributeValue::S("ami-2".into()))
                    .build()
            })
    }

    #[tokio::test]
    async fn once_a_target_failed_the_others_of_its_execution_stop_and_it_goes_on() {
        let failed = recorded("a");
        // Its execution holds its target (the hold's item names it).
        let held = hold(EXECUTION);
        let clients = Rules {
            dynamodb: vec![&failed, &held],
            ..Default::default()
        }
        .clients();
        let mut run = crate::samples::target_run();
        run.execution_arn = Some(EXECUTION.into());
        run.target.resource = "b".into();
        let err = clients.ensure_wave_going(&run).await.unwrap_err();
        assert_eq!(err.name(), "WaveStopped");
        assert_eq!(
            err.to_string(),
            "b: stopped, because a failed in this wave (TargetUnhealthy: a: alarm)"
        );
        run.target.resource = "a".into();
        clients.ensure_wave_going(&run).await.unwrap();
        // Held by another execution now (this one was stopped, its holds released, then
        // redriven): refused, nothing changed.
        let other = hold("arn:aws:states:eu-west-1:1:execution:ami-rollout:b");
        let elsewhere = Rules {
            dynamodb: vec![&failed, &other],
            ..Default::default()
        }
        .clients();
        let err = elsewhere.ensure_wave_going(&run).await.unwrap_err();
        assert_eq!(err.name(), "TargetHeld");
        assert!(err.to_string().contains("ami-rollout:b"), "{err}");
        // Outside the state machine's Map (no execution ARN) there is no wave to stop.
        run.execution_arn = None;
        run.target.resource = "b".into();
        Rules::default()
            .clients()
            .ensure_wave_going(&run)
            .await
            .unwrap();
    }
}
