//! What started an execution: a manual start, or an event exactly as EventBridge delivers it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{StepError, StepResult};
use crate::model::RollbackScope;
use crate::settings::SettingsMap;

/// Where the AMI to roll out comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiSource {
    Id(String),
    /// An SSM parameter holding the AMI id, at a given version when the event names one.
    Parameter {
        name: String,
        version: Option<i64>,
    },
    /// The AMI EC2 Image Builder made for this image (it tags the AMI `Ec2ImageBuilderArn`).
    ImageBuilder {
        image_arn: String,
    },
}

/// Choices a manual start may make for this execution only.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    /// Roll out exactly these groups (instead of the configured selection).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Roll out exactly these standalone instances, by id or Name tag (instead of the configured
    /// selection). With `targets` or `instances` given, only what they name is rolled out.
    #[serde(default)]
    pub instances: Option<Vec<String>>,
    /// Select groups by this tag, `key=value` (instead of `TARGET_TAG`).
    #[serde(default)]
    pub target_tag: Option<String>,
    /// More groups to leave out, on top of `EXCLUDED_ASGS`.
    #[serde(default)]
    pub excluded_asgs: Vec<String>,
    /// More instances to leave out, on top of `EXCLUDED_INSTANCES`.
    #[serde(default)]
    pub excluded_instances: Vec<String>,
    /// Explicit waves of group names, in order; groups not named run in a last wave.
    #[serde(default)]
    pub waves: Option<Vec<Vec<String>>>,
    /// Settings layered over `ASG_CONFIGURATIONS`.
    #[serde(default)]
    pub settings: Option<SettingsMap>,
    #[serde(default)]
    pub rollback_scope: Option<RollbackScope>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Standalone instances of one account-region replaced at once (`INSTANCE_MAX_CONCURRENCY`).
    #[serde(default)]
    pub instance_max_concurrency: Option<u32>,
    /// Only these of the configured accounts.
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Only these of the configured regions.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub source: AmiSource,
    pub overrides: Overrides,
    /// A few words for the plan and the logs.
    pub description: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManualStart {
    #[serde(default)]
    ami_id: Option<String>,
    #[serde(default)]
    parameter_name: Option<String>,
    #[serde(flatten)]
    overrides: Overrides,
}

#[derive(Deserialize)]
struct ParameterChange {
    name: String,
    #[serde(default)]
    operation: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailCall {
    event_name: String,
    #[serde(default)]
    request_parameters: Option<Value>,
    #[serde(default)]
    response_elements: Option<Value>,
}

#[derive(Deserialize)]
struct ImageStateChange {
    state: ImageState,
}

#[derive(Deserialize)]
struct ImageState {
    status: String,
}

impl Trigger {
    /// Reads a trigger: a manual start (`amiId` or `parameterName`, plus overrides) or one of the
    /// EventBridge events the SAM template routes here.
    pub fn parse(input: &Value) -> StepResult<Self> {
        if !input.is_object() {
            return Err(StepError::invalid(format!(
                "the execution input must be a JSON object, got {input}"
            )));
        }
        if input.get("detail-type").is_some() {
            return Self::from_event(input);
        }
        let manual: ManualStart = serde_json::from_value(input.clone()).map_err(|e| {
            StepError::invalid(format!("manual start: {e}; expected {{\"amiId\": \"ami-...\"}} or {{\"parameterName\": \"/ami/...\"}} with optional overrides"))
        })?;
        let (source, description) = match (manual.ami_id, manual.parameter_name) {
            (Some(id), None) => (AmiSource::Id(id.clone()), format!("manual start with {id}")),
            (None, Some(name)) => {
                let description = format!("manual start from parameter {name}");
                (
                    AmiSource::Parameter {
                        name: validate_parameter_name(name)?,
                        version: None,
                    },
                    description,
                )
            }
            (Some(_), Some(_)) => {
                return Err(StepError::invalid(
                    "give either amiId or parameterName, not both",
                ));
            }
            (None, None) => {
                return Err(StepError::invalid(
                    "manual start needs amiId or parameterName",
                ));
            }
        };
        Ok(Self {
            source,
            overrides: manual.overrides,
            description,
        })
    }

    fn from_event(input: &Value) -> StepResult<Self> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(input.clone())
            .map_err(|e| StepError::invalid(format!("malformed EventBridge event: {e}")))?;
        let detail = |what: &str| {
            StepError::invalid(format!(
                "{} event without a usable detail: {what}",
                event.detail_type
            ))
        };
        let source = match (event.source.as_str(), event.detail_type.as_str()) {
            ("aws.ssm", "Parameter Store Change") => {
                let change: ParameterChange = serde_json::from_value(event.detail.clone())
                    .map_err(|e| detail(&e.to_string()))?;
                if change.operation == "Delete" {
                    return Err(StepError::invalid(format!(
                        "parameter {} was deleted: there is no AMI to roll out",
                        change.name
                    )));
                }
                AmiSource::Parameter {
                    name: validate_parameter_name(change.name)?,
                    version: None,
                }
            }
            ("aws.ssm", "AWS API Call via CloudTrail") => {
                let call: CloudTrailCall = serde_json::from_value(event.detail.clone())
                    .map_err(|e| detail(&e.to_string()))?;
                if call.event_name != "PutParameter" {
                    return Err(StepError::invalid(format!(
                        "CloudTrail event {} is not a PutParameter call",
                        call.event_name
                    )));
                }
                let name = call
                    .request_parameters
                    .as_ref()
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| detail("requestParameters.name"))?;
                let version = call
                    .response_elements
                    .as_ref()
                    .and_then(|r| r.get("version"))
                    .and_then(Value::as_i64);
                AmiSource::Parameter {
                    name: validate_parameter_name(name.to_string())?,
                    version,
                }
            }
            ("aws.imagebuilder", "EC2 Image Builder Image State Change") => {
                let change: ImageStateChange = serde_json::from_value(event.detail.clone())
                    .map_err(|e| detail(&e.to_string()))?;
                if change.state.status != "AVAILABLE" {
                    return Err(StepError::invalid(format!(
                        "image state is {}, not AVAILABLE: nothing to roll out",
                        change.state.status
                    )));
                }
                let arn = event
                    .resources
                    .as_deref()
                    .and_then(|r| r.first())
                    .ok_or_else(|| detail("resources[0] (the image ARN)"))?;
                AmiSource::ImageBuilder {
                    image_arn: arn.clone(),
                }
            }
            (source, kind) => {
                return Err(StepError::invalid(format!(
                    "unsupported event {kind:?} from {source:?}"
                )));
            }
        };
        let subject = match &source {
            AmiSource::Parameter { name, .. } => name,
            AmiSource::ImageBuilder { image_arn } => image_arn,
            AmiSource::Id(id) => id,
        };
        let description = format!("{} of {subject}", event.detail_type);
        Ok(Self {
            source,
            overrides: Overrides::default(),
            description,
        })
    }
}

pub fn validate_parameter_name(name: String) -> StepResult<String> {
    let valid = !name.is_empty()
        && name.len() <= 2048
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c));
    if valid {
        Ok(name)
    } else {
        Err(StepError::invalid(format!(
            "{name:?} is not a valid SSM parameter name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn parameter_store_change_event_names_the_parameter() {
        let t = Trigger::parse(&fixture("parameter-store-change.json")).unwrap();
        assert_eq!(
            t.source,
            AmiSource::Parameter {
                name: "/ami/linux/prod".into(),
                version: None
            }
        );
        assert_eq!(t.description, "Parameter Store Change of /ami/linux/prod");
    }

    #[test]
    fn cloudtrail_put_parameter_reads_the_version_written() {
        let t = Trigger::parse(&fixture("cloudtrail-put-parameter.json")).unwrap();
        assert_eq!(
            t.source,
            AmiSource::Parameter {
                name: "/ami/linux/prod".into(),
                version: Some(7)
            }
        );
    }

    #[test]
    fn image_builder_available_event_names_the_image() {
        let t = Trigger::parse(&fixture("imagebuilder-image-available.json")).unwrap();
        assert!(
            matches!(t.source, AmiSource::ImageBuilder { ref image_arn } if image_arn.contains(":image/golden-linux/1.0.4/1"))
        );
    }

    #[test]
    fn manual_start_with_overrides() {
        let t = Trigger::parse(&json!({"amiId": "ami-0123456789abcdef0", "targets": ["web"], "rollbackScope": "wave", "maxConcurrency": 2})).unwrap();
        assert_eq!(t.source, AmiSource::Id("ami-0123456789abcdef0".into()));
        assert_eq!(
            t.overrides.targets.as_deref(),
            Some(&["web".to_string()][..])
        );
        assert_eq!(t.overrides.rollback_scope, Some(RollbackScope::Wave));
    }

    #[test]
    fn bad_triggers_are_invalid_input_with_a_reason() {
        let mut failed_image = fixture("imagebuilder-image-available.json");
        failed_image["detail"]["state"]["status"] = json!("FAILED");
        let mut deleted = fixture("parameter-store-change.json");
        deleted["detail"]["operation"] = json!("Delete");
        let cases = [
            (json!([1, 2]), "must be a JSON object"),
            (json!({}), "needs amiId or parameterName"),
            (json!({"amiId": "ami-1", "parameterName": "/x"}), "not both"),
            (
                json!({"amiId": "ami-1", "target": ["web"]}),
                "unknown field `target`",
            ),
            (json!({"amiId": 42}), "manual start"),
            (
                json!({"parameterName": "bad name!"}),
                "not a valid SSM parameter name",
            ),
            (
                json!({"detail-type": "Parameter Store Change", "source": "aws.ssm", "detail": {}}),
                "without a usable detail",
            ),
            (
                json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
                "unsupported event",
            ),
            (
                json!({"detail-type": "Parameter Store Change"}),
                "malformed EventBridge event",
            ),
            (failed_image, "FAILED, not AVAILABLE"),
            (deleted, "was deleted"),
        ];
        for (input, expected) in cases {
            let err = Trigger::parse(&input).unwrap_err();
            assert_eq!(err.name(), "InvalidInput", "{input}");
            assert!(err.to_string().contains(expected), "{input}: {err}");
        }
    }
}
