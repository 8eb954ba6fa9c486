//! Baking the AMI in a pipeline's place (`{"createImageFrom": "i-..."}`): CreateImage from the
//! instance, then the state machine waits until the image is available, before the plan.
//!
//! CreateImage takes no client token. The image is named after the execution, so a retry or a
//! redrive whose CreateImage meets `InvalidAMIName.Duplicate` adopts the image the execution
//! already made instead of making a second one: the image tagged with this execution's ARN (an
//! execution of another state machine may have the same name).

use aws_sdk_ec2::types::{Filter, ImageState, ResourceType, Tag, TagSpecification};
use rollout_core::FromSdk;
use rollout_core::model::Epoch;
use rollout_core::trigger::{AmiSource, BakeFrom, Baked, Trigger};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;

/// The tag naming the execution (its ARN) that baked an AMI.
pub const BAKED_BY_TAG: &str = "ami-rollout:baked-by";

/// The AMI's name: one per execution (AMI names are unique per owner and region). Characters an
/// execution name may have and an AMI name may not become `-`.
pub fn image_name(execution: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
    let name: String = execution
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    format!("ami-rollout-{name}")
}

/// Starts the bake the trigger asks for, or adopts the image this execution already made.
pub async fn bake(
    clients: &Clients,
    execution: &str,
    execution_arn: &str,
    trigger: &Value,
    now: Epoch,
) -> StepResult<Baked> {
    let parsed = Trigger::parse(trigger)?;
    let AmiSource::Instance(from) = parsed.source else {
        return Err(StepError::invalid(
            "the bake step needs a trigger with createImageFrom",
        ));
    };
    let name = image_name(execution);
    let (image_id, started) = match create_image(clients, &from, &name, execution_arn).await? {
        Some(id) => (id, now),
        None => adopt(clients, &name, execution_arn, now).await?,
    };
    tracing::info!(image = %image_id, instance = %from.create_image_from, "baking");
    Ok(Baked {
        image_id,
        name,
        instance_id: from.create_image_from,
        started,
        timeout_minutes: from.bake_timeout_minutes,
        pending: true,
    })
}

/// CreateImage; `None` when this execution's image exists already.
async fn create_image(
    clients: &Clients,
    from: &BakeFrom,
    name: &str,
    execution_arn: &str,
) -> StepResult<Option<String>> {
    let mut tags: Vec<Tag> = from
        .image_tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    tags.push(
        Tag::builder()
            .key(BAKED_BY_TAG)
            .value(execution_arn)
            .build(),
    );
    let tagged = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let out = clients
        .ec2
        .create_image()
        .instance_id(&from.create_image_from)
        .name(name)
        .description(format!(
            "Baked by ami-rollout execution {execution_arn} from {}",
            from.create_image_from
        ))
        .no_reboot(from.no_reboot)
        .tag_specifications(tagged(ResourceType::Image))
        .tag_specifications(tagged(ResourceType::Snapshot))
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.image_id().map(str::to_string)),
        Err(err) => {
            let code = err
                .as_service_error()
                .and_then(|e| e.meta().code())
                .unwrap_or_default();
            match code {
                "InvalidAMIName.Duplicate" => Ok(None),
                "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
                    Err(StepError::invalid(format!(
                        "createImageFrom {}: no such instance in this account and region",
                        from.create_image_from
                    )))
                }
                "IncorrectState" | "IncorrectInstanceState" => Err(StepError::invalid(format!(
                    "createImageFrom {}: {}",
                    from.create_image_from,
                    err.as_service_error()
                        .and_then(|e| e.meta().message())
                        .unwrap_or("the instance cannot be imaged now")
                ))),
                _ => Err(StepError::from_sdk("CreateImage", err)),
            }
        }
    }
}

/// The image this execution made on an earlier try (its name, tagged with this execution), and
/// when it was made (the deadline counts from then).
async fn adopt(
    clients: &Clients,
    name: &str,
    execution_arn: &str,
    now: Epoch,
) -> StepResult<(String, Epoch)> {
    let out = clients
        .ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeImages", e))?;
    let Some(image) = out.images().first() else {
        return Err(StepError::AwsRequestFailed {
            operation: "CreateImage".into(),
            message: format!("the name {name} is taken, but no AMI of this account has it"),
        });
    };
    let id = image.image_id().unwrap_or_default().to_string();
    let ours = image
        .tags()
        .iter()
        .any(|t| t.key() == Some(BAKED_BY_TAG) && t.value() == Some(execution_arn));
    if !ours {
        return Err(StepError::invalid(format!(
            "the AMI name {name} is taken by {id}, which this execution did not bake: start it under another name"
        )));
    }
    let started = image
        .creation_date()
        .and_then(rollout_core::ami::parse_time)
        .unwrap_or(now);
    Ok((id, started))
}

/// Reads the bake: still pending, done (available), or refused (failed, or past its deadline).
pub async fn status(clients: &Clients, baked: Baked, now: Epoch) -> StepResult<Baked> {
    let images =
        rollout_core::ami::describe_images(clients, std::slice::from_ref(&baked.image_id)).await?;
    let image = images.first();
    let refuse = |reason: String| StepError::AmiNotUsable {
        ami: baked.image_id.clone(),
        reason,
    };
    match image.and_then(|i| i.state()) {
        Some(ImageState::Available) => Ok(Baked {
            pending: false,
            ..baked
        }),
        Some(ImageState::Pending) | None if image.is_some() => {
            let deadline = baked.started + i64::from(baked.timeout_minutes) * 60;
            if now >= deadline {
                return Err(refuse(format!(
                    "baked from {}, still pending after {} minutes (bakeTimeoutMinutes)",
                    baked.instance_id, baked.timeout_minutes
                )));
            }
            Ok(baked)
        }
        None => Err(refuse(format!(
            "baked from {}, it is gone (deregistered while pending)",
            baked.instance_id
        ))),
        Some(state) => {
            let why = image
                .and_then(|i| i.state_reason())
                .and_then(|r| r.message())
                .unwrap_or("no reason given");
            Err(refuse(format!(
                "baked from {}, it ended {state}: {why}",
                baked.instance_id
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::create_image::CreateImageError;
    use aws_smithy_types::error::ErrorMetadata;
    use rollout_core::aws::mock::{Rule, Rules, mock};
    use serde_json::json;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:ami-rollout:exec-1";

    fn trigger() -> Value {
        json!({"createImageFrom": "i-0123456789abcdef0", "imageTags": {"team": "platform"}})
    }

    #[tokio::test]
    async fn the_image_is_named_after_the_execution_and_tagged_with_it() {
        let create = mock!(aws_sdk_ec2::Client::create_image)
            .match_requests(|r| {
                r.name() == Some("ami-rollout-exec-1")
                    && r.no_reboot() == Some(false)
                    && r.tag_specifications().len() == 2
                    && r.tag_specifications()[0]
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(BAKED_BY_TAG) && t.value() == Some(ARN))
            })
            .then_output(|| {
                aws_sdk_ec2::operation::create_image::CreateImageOutput::builder()
                    .image_id("ami-0000000000000aaaa")
                    .build()
            });
        let clients = Rules {
            ec2: vec![&create],
            ..Default::default()
        }
        .clients();
        let baked = bake(&clients, "exec-1", ARN, &trigger(), 100)
            .await
            .unwrap();
        assert_eq!(
            (baked.image_id.as_str(), baked.pending, baked.started),
            ("ami-0000000000000aaaa", true, 100)
        );
        assert_eq!(image_name("deploy#3,ops+1"), "ami-rollout-deploy-3-ops-1");
    }

    fn named(tag: &str) -> aws_sdk_ec2::operation::describe_images::DescribeImagesOutput {
        aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder()
            .images(
                aws_sdk_ec2::types::Image::builder()
                    .image_id("ami-0000000000000aaaa")
                    .creation_date("1970-01-01T00:00:40.000Z")
                    .tags(Tag::builder().key(BAKED_BY_TAG).value(tag).build())
                    .build(),
            )
            .build()
    }

    fn duplicate() -> Rule {
        mock!(aws_sdk_ec2::Client::create_image).then_error(|| {
            CreateImageError::generic(
                ErrorMetadata::builder()
                    .code("InvalidAMIName.Duplicate")
                    .message("AMI name ami-rollout-exec-1 is already in use by AMI ami-0000000000000aaaa")
                    .build(),
            )
        })
    }

    /// A bake whose CreateImage meets the name taken by an image tagged `baked_by`.
    async fn bake_over(baked_by: &'static str) -> StepResult<Baked> {
        let duplicate = duplicate();
        let found = mock!(aws_sdk_ec2::Client::describe_images)
            .match_requests(|r| r.owners() == ["self"])
            .then_output(move || named(baked_by));
        let clients = Rules {
            ec2: vec![&duplicate, &found],
            ..Default::default()
        }
        .clients();
        bake(&clients, "exec-1", ARN, &trigger(), 100).await
    }

    #[tokio::test]
    async fn a_retry_adopts_the_image_its_first_try_made_and_keeps_its_deadline() {
        let baked = bake_over(ARN).await.unwrap();
        assert_eq!(
            (baked.image_id.as_str(), baked.started),
            ("ami-0000000000000aaaa", 40)
        );
    }

    #[tokio::test]
    async fn an_image_of_the_same_name_another_execution_baked_is_not_adopted() {
        let err = bake_over("arn:aws:states:us-east-1:123456789012:execution:other-stack:exec-1")
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(
            err.to_string()
                .contains("which this execution did not bake"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_pending_bake_past_its_deadline_is_refused() {
        let pending = mock!(aws_sdk_ec2::Client::describe_images).then_output(|| {
            aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder()
                .images(
                    aws_sdk_ec2::types::Image::builder()
                        .image_id("ami-0000000000000aaaa")
                        .state(ImageState::Pending)
                        .build(),
                )
                .build()
        });
        let clients = Rules {
            ec2: vec![&pending],
            ..Default::default()
        }
        .clients();
        let baked = Baked {
            image_id: "ami-0000000000000aaaa".into(),
            name: "ami-rollout-exec-1".into(),
            instance_id: "i-0123456789abcdef0".into(),
            started: 0,
            timeout_minutes: 5,
            pending: true,
        };
        let still = status(&clients, baked.clone(), 299).await.unwrap();
        assert!(still.pending);
        let err = status(&clients, baked, 300).await.unwrap_err();
        assert_eq!(err.name(), "AmiNotUsable");
        assert!(
            err.to_string().contains("still pending after 5 minutes"),
            "{err}"
        );
    }
}
