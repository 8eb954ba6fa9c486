//! What a trigger's source says before any target is read: the Image Builder build behind an
//! image (GetImage), and whether there is anything to roll out at all. A source that names
//! nothing for this rollout (another pipeline's image, AMIs only in other regions) ends the
//! execution with "nothing to do" and the reason, not a failure.

use aws_sdk_ec2::types::Image;
use rollout_core::FromSdk;
use rollout_core::ami::parse_time;
use rollout_core::config::Config;
use rollout_core::model::Epoch;
use rollout_core::trigger::{AmiSource, BuiltAmi, ImageBuild};
use rollout_core::{Clients, StepError, StepResult};

/// Why the execution has nothing to do: it ends succeeded with this, having changed nothing.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NothingToDo {
    /// What started the execution, in a few words.
    pub trigger: String,
    pub nothing_to_do: String,
}

/// Fills in the build's pipeline and AMIs from GetImage when the trigger did not carry them (the
/// image state change event names only the image).
pub async fn read_build(
    imagebuilder: &aws_sdk_imagebuilder::Client,
    build: &mut ImageBuild,
) -> StepResult<()> {
    if build.amis.is_some() {
        return Ok(());
    }
    let out = imagebuilder
        .get_image()
        .image_build_version_arn(&build.image_arn)
        .send()
        .await;
    let out = out.map_err(|e| StepError::from_sdk("GetImage", e))?;
    let image = out.image();
    build.pipeline = image
        .and_then(|i| i.source_pipeline_arn())
        .map(str::to_string);
    build.amis = Some(
        image
            .and_then(|i| i.output_resources())
            .map(|o| o.amis())
            .unwrap_or_default()
            .iter()
            .filter_map(|ami| {
                Some(BuiltAmi {
                    region: ami.region()?.to_string(),
                    account_id: ami.account_id().map(str::to_string),
                    image: ami.image()?.to_string(),
                })
            })
            .collect(),
    );
    Ok(())
}

/// Why a trigger naming the parameter `name` is not rolled out here: the deployment follows other
/// parameters (an event of a second rule, a replay, a start by hand).
pub fn unfollowed_parameter(config: &Config, name: &str) -> Option<String> {
    let followed = &config.followed_parameters;
    (!followed.is_empty() && !followed.iter().any(|p| p == name)).then(|| {
        format!(
            "parameter {name} is not one this deployment follows ({}: FOLLOWED_PARAMETERS, from AmiParameterNames and PublicAmiParameter)",
            followed.join(", ")
        )
    })
}

/// Why the build is not rolled out here: a pipeline that is not configured, or no AMI in any of
/// `regions` (the rollout's).
pub fn ignored_build(config: &Config, build: &ImageBuild, regions: &[String]) -> Option<String> {
    let image = &build.image_arn;
    if config.image_builder_pipelines.is_empty() {
        return Some(format!(
            "image {image} is ignored: no Image Builder pipeline is configured (IMAGE_BUILDER_PIPELINES)"
        ));
    }
    let configured = config.image_builder_pipelines.join(", ");
    match &build.pipeline {
        Some(pipeline) if config.image_builder_pipelines.contains(pipeline) => {}
        Some(pipeline) => {
            return Some(format!(
                "image {image} was built by {pipeline}, which is not a configured pipeline ({configured})"
            ));
        }
        None => {
            return Some(format!(
                "image {image} was built outside a pipeline, not by a configured one ({configured})"
            ));
        }
    }
    let amis = build.amis.as_deref().unwrap_or_default();
    if regions.iter().any(|r| amis.iter().any(|a| &a.region == r)) {
        return None;
    }
    let made: std::collections::BTreeSet<&str> = amis.iter().map(|a| a.region.as_str()).collect();
    Some(match made.is_empty() {
        true => format!("image {image} made no AMI"),
        false => format!(
            "image {image} made AMIs only in {}, none in this rollout's regions ({})",
            made.into_iter().collect::<Vec<_>>().join(", "),
            regions.join(", ")
        ),
    })
}

/// The AMI an Image Builder build distributed to `account` (a workload account, not the building
/// one) in `region`: that account's targets launch it rather than the building account's.
pub fn account_ami<'a>(
    source: &'a AmiSource,
    account: Option<&str>,
    region: &str,
) -> Option<&'a str> {
    let AmiSource::ImageBuilder(build) = source else {
        return None;
    };
    let account = account.filter(|a| Some(*a) != build.builder_account())?;
    build.ami_in(region, Some(account))
}

/// Why `image` is not rolled out yet: it is younger than the soak of `min_age_hours`.
pub fn too_young(image: &Image, min_age_hours: Option<u32>, now: Epoch) -> Option<String> {
    let hours = min_age_hours?;
    let id = image.image_id().unwrap_or_default();
    let Some(created) = image.creation_date().and_then(parse_time) else {
        return Some(format!(
            "{id} has no creation date, so its soak of {hours} h cannot be told: it is not rolled out"
        ));
    };
    let ready = created + i64::from(hours) * 3600;
    (now < ready).then(|| {
        format!(
            "{id} was created {} h ago, under the soak of {hours} h: it rolls out from {}",
            (now - created).max(0) / 3600,
            rollout_core::aws::iso_time(ready)
        )
    })
}

/// Why `ami` is not rolled out again from the parameter `name`: an earlier execution planned it
/// and went on to roll it out (or back). A retry of `execution`'s own plan, and an execution that
/// ended before changing anything, do not count.
pub async fn rolled_out_before(
    clients: &Clients,
    execution: &str,
    name: &str,
    ami: &str,
) -> StepResult<Option<String>> {
    let Some(earlier) = clients.store()?.rolled_out(name, ami).await? else {
        return Ok(None);
    };
    if earlier.execution == execution {
        return Ok(None);
    }
    if let Some(arn) = &earlier.execution_arn
        && changed_nothing(clients, arn).await?
    {
        return Ok(None);
    }
    Ok(Some(format!(
        "{ami} from {name} was already rolled out by execution {} at {}",
        earlier.execution,
        rollout_core::aws::iso_time(earlier.at)
    )))
}

/// Errors an execution ends with after its plan but before any target changed.
const NOTHING_CHANGED: [&str; 2] = ["TargetHeld", "AmiNotUsable"];

/// Whether the execution `arn` ended failed before any target changed (another execution held
/// one, or the AMI could not be copied into a region).
async fn changed_nothing(clients: &Clients, arn: &str) -> StepResult<bool> {
    let Some(conf) = clients.sdk_config() else {
        return Ok(false);
    };
    let sfn = aws_sdk_sfn::Client::new(conf);
    match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => Ok(*out.status() == aws_sdk_sfn::types::ExecutionStatus::Failed
            && out.error().is_some_and(|e| NOTHING_CHANGED.contains(&e))),
        // Gone (Step Functions keeps closed executions for 90 days): it counts.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            Ok(false)
        }
        Err(err) => Err(StepError::from_sdk("DescribeExecution", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/golden-linux";

    fn config(pipelines: &str) -> Config {
        Config::from_lookup(|name| (name == "IMAGE_BUILDER_PIPELINES").then(|| pipelines.into()))
            .unwrap()
    }

    fn build(pipeline: Option<&str>, regions: &[&str]) -> ImageBuild {
        ImageBuild {
            image_arn: "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-linux/1.0.4/1"
                .into(),
            pipeline: pipeline.map(str::to_string),
            amis: Some(
                regions
                    .iter()
                    .map(|r| BuiltAmi {
                        region: r.to_string(),
                        account_id: None,
                        image: "ami-0123456789abcdef0".into(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_configured_pipelines_image_in_a_rollout_region_rolls_out() {
        let regions = ["us-east-1".to_string()];
        assert_eq!(
            ignored_build(
                &config(PIPELINE),
                &build(Some(PIPELINE), &["us-east-1"]),
                &regions
            ),
            None
        );
    }

    #[test]
    fn other_pipelines_other_regions_and_no_configuration_are_ignored_with_the_reason() {
        let regions = ["us-east-1".to_string(), "eu-west-1".to_string()];
        let other = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/other";
        let cases = [
            (
                config(""),
                build(Some(PIPELINE), &["us-east-1"]),
                "no Image Builder pipeline is configured",
            ),
            (
                config(PIPELINE),
                build(Some(other), &["us-east-1"]),
                "built by arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/other, which is not a configured pipeline",
            ),
            (
                config(PIPELINE),
                build(None, &["us-east-1"]),
                "built outside a pipeline",
            ),
            (
                config(PIPELINE),
                build(Some(PIPELINE), &["ap-south-1", "sa-east-1"]),
                "made AMIs only in ap-south-1, sa-east-1, none in this rollout's regions (us-east-1, eu-west-1)",
            ),
            (config(PIPELINE), build(Some(PIPELINE), &[]), "made no AMI"),
        ];
        for (config, build, expected) in cases {
            let reason = ignored_build(&config, &build, &regions).expect(expected);
            assert!(reason.contains(expected), "{reason}");
        }
    }

    #[test]
    fn a_workload_account_launches_the_ami_distributed_to_it_when_there_is_one() {
        let mut build = build(Some(PIPELINE), &["us-east-1"]);
        build.amis.as_mut().unwrap().push(BuiltAmi {
            region: "us-east-1".into(),
            account_id: Some("111111111111".into()),
            image: "ami-0000000000000aaaa".into(),
        });
        let source = AmiSource::ImageBuilder(build);
        assert_eq!(
            account_ami(&source, Some("111111111111"), "us-east-1"),
            Some("ami-0000000000000aaaa")
        );
        // Another account has none of its own (it launches the shared one); the home account's
        // is the trigger's AMI already; another source names none.
        assert_eq!(
            account_ami(&source, Some("222222222222"), "us-east-1"),
            None
        );
        assert_eq!(
            account_ami(&source, Some("123456789012"), "us-east-1"),
            None
        );
        assert_eq!(account_ami(&source, None, "us-east-1"), None);
        assert_eq!(
            account_ami(
                &AmiSource::Id("ami-0123456789abcdef0".into()),
                Some("111111111111"),
                "us-east-1"
            ),
            None
        );
    }

    #[test]
    fn an_ami_younger_than_its_soak_waits() {
        let created = "2026-12-01T00:00:00.000Z";
        let at = parse_time(created).unwrap();
        let image = Image::builder()
            .image_id("ami-0123456789abcdef0")
            .creation_date(created)
            .build();
        assert_eq!(too_young(&image, None, at), None);
        let young = too_young(&image, Some(72), at + 10 * 3600).unwrap();
        assert!(
            young.contains(
                "created 10 h ago, under the soak of 72 h: it rolls out from 2026-12-04T00:00:00Z"
            ),
            "{young}"
        );
        assert_eq!(too_young(&image, Some(72), at + 72 * 3600), None);
        let undated = Image::builder().image_id("ami-0123456789abcdef0").build();
        assert!(
            too_young(&undated, Some(1), at)
                .unwrap()
                .contains("no creation date")
        );
    }

    #[test]
    fn a_malformed_pipeline_setting_is_refused() {
        let err = Config::from_lookup(|name| {
            (name == "IMAGE_BUILDER_PIPELINES").then(|| "golden-linux".into())
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("not an Image Builder pipeline ARN"),
            "{err}"
        );
    }
}
