//! The clients the function acts with, and the holds table's items as DynamoDB sees them.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use rollout_core::{Clients, StepError, StepResult};

/// The fleet clients, plus the holds table and Step Functions.
#[derive(Clone, Debug)]
pub struct HoldClients {
    pub fleet: Clients,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub table: String,
    /// Approval gates publish what they ask here (`APPROVAL_TOPIC_ARN`).
    pub sns: aws_sdk_sns::Client,
    pub approval_topic: Option<String>,
}

impl HoldClients {
    /// An UpdateItem of the item `key` of the holds table.
    pub(crate) fn update(&self, key: impl Into<String>) -> UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
    }

    /// A strongly consistent GetItem of the item `key` (a hold just written must be seen).
    pub(crate) fn get(&self, key: impl Into<String>) -> GetItemFluentBuilder {
        self.dynamodb
            .get_item()
            .table_name(&self.table)
            .key("key", s(key))
            .consistent_read(true)
    }

    /// A DeleteItem of the item `key`.
    pub(crate) fn delete(&self, key: impl Into<String>) -> DeleteItemFluentBuilder {
        self.dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("key", s(key))
    }

    pub async fn from_env() -> StepResult<Self> {
        let fleet = Clients::from_env().await?;
        let table = fleet.holds_table.clone().ok_or_else(|| {
            StepError::invalid("HOLDS_TABLE is not set: the function needs the holds table's name")
        })?;
        let conf = fleet
            .sdk_config()
            .ok_or_else(|| StepError::invalid("no AWS configuration"))?;
        let (sfn, sns) = (
            aws_sdk_sfn::Client::new(conf),
            aws_sdk_sns::Client::new(conf),
        );
        let approval_topic = rollout_core::config::environment("APPROVAL_TOPIC_ARN");
        Ok(Self {
            dynamodb: fleet.dynamodb.clone(),
            fleet,
            sfn,
            table,
            sns,
            approval_topic,
        })
    }
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn string_set(values: impl IntoIterator<Item = String>) -> AttributeValue {
    AttributeValue::Ss(values.into_iter().collect())
}

pub(crate) fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn set(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Vec<String> {
    item.and_then(|i| i.get(name))
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn is_condition_failure<E>(err: &E) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.code() == Some("ConditionalCheckFailedException")
}
