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
    /// An image EC2 Image Builder built: the AMIs it distributed.
    ImageBuilder(ImageBuild),
    /// An AMI the execution bakes from an instance first (distribute-ami's `bake`); once baked,
    /// the trigger carries it (`bake`) and the source is its id.
    Instance(BakeFrom),
}

/// `createImageFrom` and its options: the instance an execution bakes its AMI from.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BakeFrom {
    pub create_image_from: String,
    /// CreateImage without the reboot: crash-consistent snapshots (default: reboot).
    #[serde(default)]
    pub no_reboot: bool,
    /// Tags for the AMI and its snapshots, beside the execution's own.
    #[serde(default)]
    pub image_tags: std::collections::BTreeMap<String, String>,
    /// How long the AMI may stay pending before the execution gives up (default 60).
    #[serde(default = "default_bake_minutes")]
    pub bake_timeout_minutes: u32,
}

fn default_bake_minutes() -> u32 {
    60
}

/// The AMI the execution baked (distribute-ami's `bake` and `bakeStatus` answer it).
#[derive(serde::Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Baked {
    pub image_id: String,
    pub name: String,
    pub instance_id: String,
    /// When CreateImage was asked (the deadline counts from it).
    pub started: crate::model::Epoch,
    pub timeout_minutes: u32,
    /// Still being made: the state machine waits and asks again.
    pub pending: bool,
}

/// An image EC2 Image Builder built. Its state change event names only the image, so the pipeline
/// and the AMIs are read with GetImage; its SNS notification carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBuild {
    pub image_arn: String,
    pub pipeline: Option<String>,
    /// Every AMI the build distributed, `None` until read.
    pub amis: Option<Vec<BuiltAmi>>,
}

/// One AMI of an image build (`outputResources.amis[]`): a region, and the account it was
/// distributed to when not the building one.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BuiltAmi {
    pub region: String,
    #[serde(default)]
    pub account_id: Option<String>,
    pub image: String,
}

impl ImageBuild {
    /// The account that built the image (its ARN's).
    pub fn builder_account(&self) -> Option<&str> {
        self.image_arn.split(':').nth(4).filter(|a| !a.is_empty())
    }

    /// The AMI the build made in `region` for `account` (`None`: the building account).
    pub fn ami_in(&self, region: &str, account: Option<&str>) -> Option<&str> {
        let account = account.or(self.builder_account());
        self.amis
            .iter()
            .flatten()
            .find(|a| {
                a.region == region
                    && (a.account_id.as_deref() == account
                        || (a.account_id.is_none() && account == self.builder_account()))
            })
            .map(|a| a.image.as_str())
    }
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
    /// Settings layered over the settings document's.
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
    /// The soak: an AMI created less than this many hours ago is not rolled out yet (the
    /// execution has nothing to do). For sources nobody announces, such as AWS's public
    /// parameters, checked on a schedule.
    #[serde(default)]
    pub min_age_hours: Option<u32>,
    /// An AMI an earlier execution already planned from the same parameter is not rolled out
    /// again, whatever came of it (a schedule does not retry an AMI that was rolled back).
    #[serde(default)]
    pub skip_rolled_out: bool,
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
    #[serde(default)]
    create_image_from: Option<String>,
    #[serde(default)]
    no_reboot: Option<bool>,
    #[serde(default)]
    image_tags: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    bake_timeout_minutes: Option<u32>,
    /// Written by the bake steps: the AMI baked from `createImageFrom`.
    #[serde(default)]
    bake: Option<Baked>,
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

/// The message Image Builder publishes to its SNS topic when a build ends: the image itself.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageMessage {
    arn: String,
    state: ImageState,
    #[serde(default)]
    source_pipeline_arn: Option<String>,
    #[serde(default)]
    output_resources: Option<OutputResources>,
}

#[derive(Deserialize)]
struct OutputResources {
    #[serde(default)]
    amis: Vec<BuiltAmi>,
}

/// One record of an SQS batch as an EventBridge Pipe hands it to its target.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueRecord {
    event_source: String,
    body: String,
}

#[derive(Deserialize)]
struct ImageState {
    status: String,
}

impl Trigger {
    /// Reads a trigger: a manual start (`amiId` or `parameterName`, plus overrides) or one of the
    /// EventBridge events the SAM template routes here.
    pub fn parse(input: &Value) -> StepResult<Self> {
        // The state machine wraps a pipe's batch (a state is an object); the CLI may pass it bare.
        if let Some(batch) = input.get("pipeBatch") {
            return Self::from_queue(batch);
        }
        if input.is_array() {
            return Self::from_queue(input);
        }
        if !input.is_object() {
            return Err(StepError::invalid(format!(
                "the execution input must be a JSON object, got {input}"
            )));
        }
        if input.get("detail-type").is_some() {
            return Self::from_event(input);
        }
        let manual: ManualStart = serde_json::from_value(input.clone()).map_err(|e| {
            StepError::invalid(format!("manual start: {e}; expected {{\"amiId\": \"ami-...\"}}, {{\"parameterName\": \"/ami/...\"}} or {{\"createImageFrom\": \"i-...\"}} with optional overrides"))
        })?;
        let bake_options = manual.no_reboot.is_some()
            || manual.image_tags.is_some()
            || manual.bake_timeout_minutes.is_some();
        if bake_options && manual.create_image_from.is_none() {
            return Err(StepError::invalid(
                "noReboot, imageTags and bakeTimeoutMinutes go with createImageFrom",
            ));
        }
        let (source, description) = match (
            manual.ami_id,
            manual.parameter_name,
            manual.create_image_from,
        ) {
            (Some(id), None, None) => {
                (AmiSource::Id(id.clone()), format!("manual start with {id}"))
            }
            (None, Some(name), None) => {
                let description = format!("manual start from parameter {name}");
                (
                    AmiSource::Parameter {
                        name: validate_parameter_name(name)?,
                        version: None,
                    },
                    description,
                )
            }
            (None, None, Some(instance)) => {
                let from = BakeFrom {
                    create_image_from: validate_instance_id(instance)?,
                    no_reboot: manual.no_reboot.unwrap_or(false),
                    image_tags: manual.image_tags.unwrap_or_default(),
                    bake_timeout_minutes: validate_bake_minutes(
                        manual
                            .bake_timeout_minutes
                            .unwrap_or_else(default_bake_minutes),
                    )?,
                };
                match manual.bake {
                    Some(baked)
                        if baked.instance_id == from.create_image_from && !baked.pending =>
                    {
                        let description = format!(
                            "manual start with {} baked from {}",
                            baked.image_id, baked.instance_id
                        );
                        (AmiSource::Id(baked.image_id), description)
                    }
                    Some(baked) => {
                        return Err(StepError::invalid(format!(
                            "bake {} is of {} (pending: {}), not a finished bake of {}",
                            baked.image_id,
                            baked.instance_id,
                            baked.pending,
                            from.create_image_from
                        )));
                    }
                    None => {
                        let description =
                            format!("manual start baking an AMI from {}", from.create_image_from);
                        (AmiSource::Instance(from), description)
                    }
                }
            }
            (None, None, None) => {
                return Err(StepError::invalid(
                    "manual start needs amiId, parameterName or createImageFrom",
                ));
            }
            _ => {
                return Err(StepError::invalid(
                    "give one of amiId, parameterName and createImageFrom, not several",
                ));
            }
        };
        Ok(Self {
            source,
            overrides: manual.overrides,
            description,
        })
    }

    /// What the SAM template's Image Builder pipe delivers: a batch of one SQS record whose body
    /// is Image Builder's SNS message (raw, or in its SNS envelope).
    fn from_queue(input: &Value) -> StepResult<Self> {
        let records: Vec<QueueRecord> = serde_json::from_value(input.clone()).map_err(|e| {
            StepError::invalid(format!(
                "an array input must be SQS records as an EventBridge Pipe delivers them: {e}"
            ))
        })?;
        let [record] = records.as_slice() else {
            return Err(StepError::invalid(format!(
                "{} SQS records in one input: the pipe's BatchSize must be 1",
                records.len()
            )));
        };
        if record.event_source != "aws:sqs" {
            return Err(StepError::invalid(format!(
                "record from {:?}, not aws:sqs",
                record.event_source
            )));
        }
        let unreadable = |e: serde_json::Error| {
            StepError::invalid(format!("the queued message is not JSON: {e}"))
        };
        let mut message: Value = serde_json::from_str(&record.body).map_err(unreadable)?;
        // The SNS envelope, for a subscription without raw delivery (the template's has it).
        if message.get("Type").and_then(Value::as_str) == Some("Notification") {
            let inner = message
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            message = serde_json::from_str(inner).map_err(unreadable)?;
        }
        let image: ImageMessage = serde_json::from_value(message).map_err(|e| {
            StepError::invalid(format!("not an Image Builder image notification: {e}"))
        })?;
        if image.state.status != "AVAILABLE" {
            return Err(StepError::invalid(format!(
                "image {} is {}, not AVAILABLE: nothing to roll out",
                image.arn, image.state.status
            )));
        }
        let description = format!("Image Builder notification of {}", image.arn);
        Ok(Self {
            source: AmiSource::ImageBuilder(ImageBuild {
                image_arn: image.arn,
                pipeline: image.source_pipeline_arn,
                amis: Some(image.output_resources.map(|o| o.amis).unwrap_or_default()),
            }),
            overrides: Overrides::default(),
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
                AmiSource::ImageBuilder(ImageBuild {
                    image_arn: arn.clone(),
                    pipeline: None,
                    amis: None,
                })
            }
            (source, kind) => {
                return Err(StepError::invalid(format!(
                    "unsupported event {kind:?} from {source:?}"
                )));
            }
        };
        let subject = match &source {
            AmiSource::Parameter { name, .. } => name,
            AmiSource::ImageBuilder(build) => &build.image_arn,
            AmiSource::Instance(from) => &from.create_image_from,
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

fn validate_instance_id(id: String) -> StepResult<String> {
    let hex = id.strip_prefix("i-").unwrap_or_default();
    if (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(StepError::invalid(format!(
            "createImageFrom {id:?} is not an instance id (i- followed by 8 or 17 hex digits)"
        )))
    }
}

fn validate_bake_minutes(minutes: u32) -> StepResult<u32> {
    if (5..=1440).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(StepError::invalid(format!(
            "bakeTimeoutMinutes {minutes} is not between 5 and 1440"
        )))
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
            matches!(t.source, AmiSource::ImageBuilder(ref build) if build.image_arn.contains(":image/golden-linux/1.0.4/1") && build.amis.is_none())
        );
    }

    /// The batch an EventBridge Pipe hands the state machine for one queued message.
    fn queued(body: String) -> Value {
        json!([{
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183"},
            "messageAttributes": {},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ami-rollout-image-builds",
            "awsRegion": "us-east-1"
        }])
    }

    #[test]
    fn image_builder_notification_through_the_pipe_carries_the_pipeline_and_every_ami() {
        let message = fixture("imagebuilder-sns-message.json").to_string();
        let envelope = json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:golden-linux-builds", "Message": message}).to_string();
        for body in [message.clone(), envelope] {
            let t = Trigger::parse(&json!({"pipeBatch": queued(body.clone())})).unwrap();
            assert_eq!(t, Trigger::parse(&queued(body)).unwrap(), "wrapped or bare");
            let AmiSource::ImageBuilder(build) = &t.source else {
                panic!("{:?}", t.source)
            };
            assert_eq!(
                build.pipeline.as_deref(),
                Some("arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/golden-linux")
            );
            assert_eq!(
                build.ami_in("us-east-1", None),
                Some("ami-0a1b2c3d4e5f60001")
            );
            assert_eq!(
                build.ami_in("eu-west-1", None),
                Some("ami-0a1b2c3d4e5f60002")
            );
            assert_eq!(
                build.ami_in("us-east-1", Some("111122223333")),
                Some("ami-0a1b2c3d4e5f60003")
            );
            assert!(t.description.starts_with("Image Builder notification of "));
        }
    }

    #[test]
    fn a_pipe_batch_that_is_not_one_image_notification_is_refused() {
        let mut failed = fixture("imagebuilder-sns-message.json");
        failed["state"] = json!({"status": "FAILED", "reason": "build failed"});
        let mut two = queued("{}".into());
        let record = two[0].clone();
        two.as_array_mut().unwrap().push(record);
        let mut kinesis = queued("{}".into());
        kinesis[0]["eventSource"] = json!("aws:kinesis");
        let cases = [
            (queued(failed.to_string()), "is FAILED, not AVAILABLE"),
            (two, "2 SQS records in one input"),
            (json!([]), "0 SQS records"),
            (kinesis, "not aws:sqs"),
            (queued("not json".into()), "not JSON"),
            (
                queued("{\"Records\": []}".into()),
                "not an Image Builder image notification",
            ),
            (
                json!([1]),
                "SQS records as an EventBridge Pipe delivers them",
            ),
        ];
        for (input, expected) in cases {
            let err = Trigger::parse(&input).unwrap_err();
            assert_eq!(err.name(), "InvalidInput", "{input}");
            assert!(err.to_string().contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn a_bake_from_an_instance_rolls_out_the_ami_once_baked() {
        let start = json!({"createImageFrom": "i-0123456789abcdef0", "imageTags": {"team": "platform"}, "targets": ["web"]});
        let t = Trigger::parse(&start).unwrap();
        let AmiSource::Instance(from) = &t.source else {
            panic!("{:?}", t.source)
        };
        assert_eq!(
            (
                from.no_reboot,
                from.bake_timeout_minutes,
                from.image_tags.len()
            ),
            (false, 60, 1)
        );
        let mut baked = start.clone();
        baked["bake"] = json!({"imageId": "ami-0123456789abcdef0", "name": "ami-rollout-x", "instanceId": "i-0123456789abcdef0", "started": 0, "timeoutMinutes": 60, "pending": false});
        let t = Trigger::parse(&baked).unwrap();
        assert_eq!(t.source, AmiSource::Id("ami-0123456789abcdef0".into()));
        assert_eq!(
            t.description,
            "manual start with ami-0123456789abcdef0 baked from i-0123456789abcdef0"
        );
        assert_eq!(
            t.overrides.targets.as_deref(),
            Some(&["web".to_string()][..])
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
            (json!("ami-0123456789abcdef0"), "must be a JSON object"),
            (json!({}), "needs amiId, parameterName or createImageFrom"),
            (
                json!({"amiId": "ami-1", "parameterName": "/x"}),
                "not several",
            ),
            (
                json!({"amiId": "ami-1", "createImageFrom": "i-0123456789abcdef0"}),
                "not several",
            ),
            (json!({"createImageFrom": "web-1"}), "is not an instance id"),
            (
                json!({"createImageFrom": "i-0123456789abcdef0", "bakeTimeoutMinutes": 2}),
                "not between 5 and 1440",
            ),
            (
                json!({"amiId": "ami-0123456789abcdef0", "noReboot": true}),
                "go with createImageFrom",
            ),
            (
                json!({"createImageFrom": "i-0123456789abcdef0", "bake": {"imageId": "ami-0123456789abcdef0", "name": "n", "instanceId": "i-0123456789abcdef1", "started": 0, "timeoutMinutes": 60, "pending": false}}),
                "not a finished bake of i-0123456789abcdef0",
            ),
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
