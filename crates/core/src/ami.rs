//! Finding the AMI a trigger points at and deciding whether it may be rolled out.

use crate::error::FromSdk;
use aws_sdk_ec2::types::{Filter, Image, ImageState};
use aws_smithy_types::date_time::Format;

use crate::aws::Clients;
use crate::error::{StepError, StepResult};
use crate::model::{Ami, Epoch};
use crate::trigger::AmiSource;

pub use crate::model::validate_ami_id;

/// A time as EC2 writes an image's (`2026-12-02T10:00:00.000Z`), in epoch seconds.
pub fn parse_time(text: &str) -> Option<Epoch> {
    aws_smithy_types::DateTime::from_str(text, Format::DateTime)
        .ok()
        .map(|t| t.secs())
}

/// Decides whether `image` may be rolled out: it must be available, not deprecated, and owned by
/// an allowed account (when a list is configured).
pub fn usable_ami(image: &Image, allowed_owners: &[String], now: Epoch) -> StepResult<Ami> {
    let id = image.image_id().unwrap_or_default().to_string();
    let refuse = |reason: String| {
        Err(StepError::AmiNotUsable {
            ami: id.clone(),
            reason,
        })
    };
    match image.state() {
        Some(ImageState::Available) => {}
        Some(state) => return refuse(format!("its state is {state}, not available")),
        None => return refuse("AWS reported no state for it".into()),
    }
    if let Some(deprecated) = image.deprecation_time()
        && parse_time(deprecated).is_some_and(|at| at <= now)
    {
        return refuse(format!("it was deprecated at {deprecated}"));
    }
    let owner = image.owner_id().unwrap_or_default();
    if !allowed_owners.is_empty() && !allowed_owners.iter().any(|o| o == owner) {
        return refuse(format!(
            "its owner {owner} is not in ALLOWED_AMI_OWNERS ({})",
            allowed_owners.join(", ")
        ));
    }
    Ok(Ami {
        id: id.clone(),
        name: image.name().unwrap_or_default().to_string(),
        architecture: image
            .architecture()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        owner_id: owner.to_string(),
    })
}

/// Describes AMIs by id, deprecated and disabled ones included (so they can be named in a refusal).
pub async fn describe_images(clients: &Clients, ids: &[String]) -> StepResult<Vec<Image>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = clients
        .ec2
        .describe_images()
        .set_image_ids(Some(ids.to_vec()))
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.images().to_vec()),
        // EC2 fails the whole call for one unknown id; callers treat "absent" as "not found".
        Err(err)
            if err
                .as_service_error()
                .and_then(|e| aws_smithy_types::error::metadata::ProvideErrorMetadata::code(e))
                .is_some_and(|c| c.starts_with("InvalidAMIID")) =>
        {
            Ok(Vec::new())
        }
        Err(err) => Err(StepError::from_sdk("DescribeImages", err)),
    }
}

/// Why `image` (`None`: EC2 does not know it) can no longer launch instances, or `None` when it
/// can. Deregistered and disabled AMIs fail every launch; deprecated ones still launch by id.
pub fn launch_refusal(image: Option<&Image>) -> Option<String> {
    match image.and_then(Image::state) {
        None => Some("is deregistered (EC2 no longer knows it)".into()),
        Some(ImageState::Available) => None,
        Some(state) => Some(format!("is {state}")),
    }
}

/// Whether the AMI `id` can still launch instances: `Some(reason)` when it cannot.
pub async fn cannot_launch(clients: &Clients, id: &str) -> StepResult<Option<String>> {
    let images = describe_images(clients, &[id.to_string()]).await?;
    Ok(launch_refusal(images.first()))
}

/// Turns the trigger's AMI source into an AMI id: reads the SSM parameter, or takes the AMI the
/// Image Builder build made in this region (the build read beforehand, `ImageBuild::amis`).
pub async fn resolve_source(clients: &Clients, source: &AmiSource) -> StepResult<String> {
    let id = match source {
        AmiSource::Id(id) => id.clone(),
        AmiSource::Parameter { name, version } => {
            let selector = version.map_or_else(|| name.clone(), |v| format!("{name}:{v}"));
            parameter_ami(clients, &selector).await?.ok_or_else(|| {
                StepError::invalid(format!("SSM parameter {selector} does not exist"))
            })?
        }
        AmiSource::Instance(from) => {
            return Err(StepError::invalid(format!(
                "the AMI is still to be baked from {}: the execution bakes it first (plan with its amiId once made)",
                from.create_image_from
            )));
        }
        AmiSource::ImageBuilder(build) => build
            .ami_in(&clients.region, None)
            .ok_or_else(|| {
                StepError::invalid(format!(
                    "image {} has no AMI in {}, where the rollout validates its AMI",
                    build.image_arn, clients.region
                ))
            })?
            .to_string(),
    };
    validate_ami_id(&id)?;
    Ok(id)
}

/// The AMI id an SSM parameter holds, `None` when the parameter does not exist.
async fn parameter_ami(clients: &Clients, selector: &str) -> StepResult<Option<String>> {
    let out = clients.ssm.get_parameter().name(selector).send().await;
    let out = match out {
        Ok(out) => out,
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_parameter_not_found() || e.is_parameter_version_not_found()
            }) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(StepError::from_sdk("GetParameter", err)),
    };
    let value = out
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .trim()
        .to_string();
    validate_ami_id(&value).map_err(|_| {
        StepError::invalid(format!(
            "SSM parameter {selector} holds {value:?}, which is not an AMI id"
        ))
    })?;
    Ok(Some(value))
}

/// The AMI that stands for `ami` in the clients' region (another region than `ami`'s), or `None`.
/// In order: the Image Builder build's AMI for that region, the AMI the SSM parameter of the same name
/// holds there, an AMI of the same name from the same owner there (AMI names are unique per owner
/// and region).
pub async fn find_regional(
    clients: &Clients,
    source: &AmiSource,
    ami: &Ami,
) -> StepResult<Option<Image>> {
    match source {
        AmiSource::ImageBuilder(build) => {
            if let Some(id) = build.ami_in(&clients.region, None)
                && let Some(image) = describe_images(clients, &[id.to_string()])
                    .await?
                    .into_iter()
                    .next()
            {
                return Ok(Some(image));
            }
        }
        AmiSource::Parameter { name, .. } => {
            if let Some(id) = parameter_ami(clients, name).await?
                && let Some(image) = describe_images(clients, &[id]).await?.into_iter().next()
            {
                return Ok(Some(image));
            }
        }
        AmiSource::Id(_) | AmiSource::Instance(_) => {}
    }
    let out = clients
        .ec2
        .describe_images()
        .owners(&ami.owner_id)
        .filters(Filter::builder().name("name").values(&ami.name).build())
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeImages", e))?;
    Ok(out.images().first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::ArchitectureValues;

    fn image(state: ImageState) -> aws_sdk_ec2::types::builders::ImageBuilder {
        Image::builder()
            .image_id("ami-0123456789abcdef0")
            .name("golden")
            .state(state)
            .owner_id("111122223333")
            .architecture(ArchitectureValues::X8664)
    }

    const NOW: Epoch = 1_800_000_000;

    #[test]
    fn available_image_is_usable() {
        let ami = usable_ami(&image(ImageState::Available).build(), &[], NOW).unwrap();
        assert_eq!(
            (
                ami.id.as_str(),
                ami.architecture.as_str(),
                ami.owner_id.as_str()
            ),
            ("ami-0123456789abcdef0", "x86_64", "111122223333")
        );
    }

    #[test]
    fn unusable_images_are_refused_with_the_reason() {
        let past = "2026-01-01T00:00:00.000Z";
        let future = "2099-01-01T00:00:00.000Z";
        let owners = vec!["999988887777".to_string()];
        let cases: Vec<(Image, &[String], Option<&str>)> = vec![
            (
                image(ImageState::Pending).build(),
                &[],
                Some("state is pending"),
            ),
            (
                image(ImageState::Disabled).build(),
                &[],
                Some("state is disabled"),
            ),
            (
                image(ImageState::Deregistered).build(),
                &[],
                Some("state is deregistered"),
            ),
            (
                image(ImageState::Failed).build(),
                &[],
                Some("state is failed"),
            ),
            (
                image(ImageState::Available).deprecation_time(past).build(),
                &[],
                Some("deprecated at 2026-01-01"),
            ),
            (
                image(ImageState::Available)
                    .deprecation_time(future)
                    .build(),
                &[],
                None,
            ),
            (
                image(ImageState::Available).build(),
                &owners,
                Some("owner 111122223333 is not in ALLOWED_AMI_OWNERS"),
            ),
            (
                image(ImageState::Available)
                    .owner_id("999988887777")
                    .build(),
                &owners,
                None,
            ),
        ];
        for (img, owners, expected) in cases {
            let result = usable_ami(&img, owners, NOW);
            match expected {
                None => assert!(result.is_ok(), "{img:?}: {result:?}"),
                Some(reason) => {
                    let err = result.unwrap_err();
                    assert_eq!(err.name(), "AmiNotUsable");
                    assert!(err.to_string().contains(reason), "{err}");
                }
            }
        }
    }

    #[test]
    fn only_available_amis_can_launch() {
        assert_eq!(
            launch_refusal(Some(&image(ImageState::Available).build())),
            None
        );
        for (image, reason) in [
            (Some(image(ImageState::Disabled).build()), "is disabled"),
            (
                Some(image(ImageState::Deregistered).build()),
                "is deregistered",
            ),
            (None, "is deregistered (EC2 no longer knows it)"),
        ] {
            assert_eq!(launch_refusal(image.as_ref()).as_deref(), Some(reason));
        }
    }

    #[test]
    fn ami_ids_are_checked_for_shape() {
        for ok in ["ami-12345678", "ami-0123456789abcdef0"] {
            assert!(validate_ami_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ami-",
            "ami-xyz12345",
            "i-0123456789abcdef0",
            "ami-0123456789abcdef",
            "resolve:ssm:/ami/linux/prod",
        ] {
            assert_eq!(
                validate_ami_id(bad).unwrap_err().name(),
                "InvalidInput",
                "{bad}"
            );
        }
    }

    mod regional {
        use super::super::*;
        use crate::aws::mock::{Rules, mock};
        use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;

        fn source_ami() -> Ami {
            Ami {
                id: "ami-0000000000000aaaa".into(),
                name: "golden-1.0.4".into(),
                architecture: "x86_64".into(),
                owner_id: "123456789012".into(),
            }
        }

        fn images(ids: &[&str]) -> DescribeImagesOutput {
            DescribeImagesOutput::builder()
                .set_images(Some(
                    ids.iter()
                        .map(|id| Image::builder().image_id(*id).build())
                        .collect(),
                ))
                .build()
        }

        fn found(image: Option<Image>) -> Option<String> {
            image.and_then(|i| i.image_id().map(str::to_string))
        }

        #[tokio::test]
        async fn the_image_builder_build_names_the_ami_of_each_region_and_account() {
            let by_id = mock!(aws_sdk_ec2::Client::describe_images)
                .match_requests(|r| r.image_ids() == ["ami-0000000000000bbbb"])
                .then_output(|| images(&["ami-0000000000000bbbb"]));
            let clients = Rules {
                ec2: vec![&by_id],
                ..Default::default()
            }
            .clients();
            let built =
                |region: &str, account: Option<&str>, image: &str| crate::trigger::BuiltAmi {
                    region: region.into(),
                    account_id: account.map(str::to_string),
                    image: image.into(),
                };
            let build = crate::trigger::ImageBuild {
                image_arn: "arn:aws:imagebuilder:eu-west-1:123456789012:image/golden/1.0.4/1"
                    .into(),
                pipeline: None,
                amis: Some(vec![
                    built("eu-west-1", None, "ami-0000000000000aaaa"),
                    built("us-east-1", Some("111122223333"), "ami-0000000000000cccc"),
                    built("us-east-1", Some("123456789012"), "ami-0000000000000bbbb"),
                ]),
            };
            assert_eq!(
                build.ami_in("us-east-1", Some("111122223333")),
                Some("ami-0000000000000cccc")
            );
            assert_eq!(
                build.ami_in("eu-west-1", None),
                Some("ami-0000000000000aaaa")
            );
            assert_eq!(build.ami_in("eu-west-1", Some("111122223333")), None);
            let source = AmiSource::ImageBuilder(build);
            let image = find_regional(&clients, &source, &source_ami())
                .await
                .unwrap();
            assert_eq!(found(image).as_deref(), Some("ami-0000000000000bbbb"));
        }

        #[tokio::test]
        async fn the_parameter_of_the_same_name_comes_before_the_name() {
            let parameter = mock!(aws_sdk_ssm::Client::get_parameter)
                .match_requests(|r| r.name() == Some("/ami/linux/prod"))
                .then_output(|| {
                    aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                        .parameter(
                            aws_sdk_ssm::types::Parameter::builder()
                                .value("ami-0000000000000cccc")
                                .build(),
                        )
                        .build()
                });
            let by_id = mock!(aws_sdk_ec2::Client::describe_images)
                .match_requests(|r| r.image_ids() == ["ami-0000000000000cccc"])
                .then_output(|| images(&["ami-0000000000000cccc"]));
            let clients = Rules {
                ssm: vec![&parameter],
                ec2: vec![&by_id],
                ..Default::default()
            }
            .clients();
            let source = AmiSource::Parameter {
                name: "/ami/linux/prod".into(),
                version: Some(7),
            };
            let image = find_regional(&clients, &source, &source_ami())
                .await
                .unwrap();
            assert_eq!(found(image).as_deref(), Some("ami-0000000000000cccc"));
        }

        #[tokio::test]
        async fn otherwise_the_same_name_from_the_same_owner_or_nothing() {
            for (there, expected) in [
                (vec!["ami-0000000000000dddd"], Some("ami-0000000000000dddd")),
                (vec![], None),
            ] {
                let by_name = mock!(aws_sdk_ec2::Client::describe_images)
                    .match_requests(|r| {
                        r.owners() == ["123456789012"]
                            && r.filters().first().map(|f| (f.name(), f.values()))
                                == Some((Some("name"), &["golden-1.0.4".to_string()][..]))
                    })
                    .then_output(move || images(&there));
                let clients = Rules {
                    ec2: vec![&by_name],
                    ..Default::default()
                }
                .clients();
                let source = AmiSource::Id("ami-0000000000000aaaa".into());
                let image = find_regional(&clients, &source, &source_ami())
                    .await
                    .unwrap();
                assert_eq!(found(image).as_deref(), expected);
            }
        }
    }
}
