//! Sample step payloads, shared by the functions' tests and checked against `statemachine/samples`.

use crate::model::{Target, TargetRun};

/// The Map iteration's input, as `statemachine/samples/target-run.json` holds it.
pub fn target_run() -> TargetRun {
    serde_json::from_str(include_str!(
        "../../../statemachine/samples/target-run.json"
    ))
    .expect("statemachine/samples/target-run.json is a TargetRun")
}

/// The sample's target, named `group`.
pub fn target(group: &str) -> Target {
    Target {
        resource: group.into(),
        ..target_run().target
    }
}

/// A running x86_64 HVM instance with an EBS root `vol-<id>` of `root_size` GiB at `/dev/xvda`,
/// launched from `image`.
pub fn standalone_instance(
    id: &str,
    image: &str,
    root_size: i32,
) -> crate::instance::InstanceFacts {
    crate::instance::InstanceFacts {
        id: id.into(),
        state: "running".into(),
        image_id: image.into(),
        architecture: "x86_64".into(),
        virtualization_type: "hvm".into(),
        root_device_type: "ebs".into(),
        root_device_name: "/dev/xvda".into(),
        root_volume_id: Some(format!("vol-{id}")),
        root_size: Some(root_size),
        ..Default::default()
    }
}

/// An x86_64 HVM AMI whose root at `/dev/xvda` is `root_size` GiB: one such instances take.
pub fn root_image(id: &str, root_size: i32) -> aws_sdk_ec2::types::builders::ImageBuilder {
    use aws_sdk_ec2::types::{
        ArchitectureValues, BlockDeviceMapping, EbsBlockDevice, Image, VirtualizationType,
    };
    Image::builder()
        .image_id(id)
        .architecture(ArchitectureValues::X8664)
        .virtualization_type(VirtualizationType::Hvm)
        .root_device_name("/dev/xvda")
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(EbsBlockDevice::builder().volume_size(root_size).build())
                .build(),
        )
}
