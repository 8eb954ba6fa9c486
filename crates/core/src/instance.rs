//! Standalone instances: EC2 instances that no Auto Scaling group, fleet or managed service owns.
//! The new AMI reaches them by replacing their root volume in place (`CreateReplaceRootVolumeTask`):
//! the instance id, data volumes, network interfaces and their addresses, tags and instance
//! profile stay. The replaced root is kept, so a rollback puts the very same volume back.

use crate::error::FromSdk;
use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, Image, Instance, InstanceStateName, ReplaceRootVolumeTask, ReplaceRootVolumeTaskState,
    ResourceType, SummaryStatus, Tag, TagSpecification,
};
use aws_smithy_types::date_time::{DateTime, Format};

use crate::aws::Clients;
use crate::error::{StepError, StepResult};
use crate::model::{Epoch, Purpose};

/// The tag that names an instance for people, and that `TARGET_INSTANCES` may name it by.
pub const NAME_TAG: &str = "Name";
/// An instance's wave (a number), like a group's `wave` setting.
pub const WAVE_TAG: &str = "ami-rollout:wave";
/// On a replacement task: the execution that asked for it.
pub const EXECUTION_TAG: &str = "ami-rollout:execution";
/// On a replacement task: `rollout` or `rollback`.
pub const PURPOSE_TAG: &str = "ami-rollout:purpose";
/// On a kept root: the instance it was the root of, so people know why it is there.
pub const REPLACED_ROOT_TAG: &str = "ami-rollout:replaced-root-of";

/// Tags that say something else owns the instance and replaces it by itself: such an instance is
/// never a standalone target, with the reason.
const OWNER_TAGS: [(&str, &str); 7] = [
    ("aws:autoscaling:groupName", "member of Auto Scaling group"),
    ("aws:ec2:fleet-id", "part of EC2 Fleet"),
    ("aws:ec2spot:fleet-request-id", "part of Spot Fleet request"),
    ("eks:nodegroup-name", "node of EKS managed node group"),
    ("karpenter.sh/nodepool", "node of Karpenter node pool"),
    ("aws:elasticmapreduce:job-flow-id", "node of EMR cluster"),
    (
        "elasticbeanstalk:environment-name",
        "instance of Elastic Beanstalk environment",
    ),
];

/// What the plan needs to know of one instance, from one DescribeInstances page and the sizes
/// of the root volumes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceFacts {
    pub id: String,
    pub state: String,
    pub image_id: String,
    pub architecture: String,
    pub virtualization_type: String,
    pub product_codes: Vec<String>,
    /// `ebs` or `instance-store`.
    pub root_device_type: String,
    pub root_device_name: String,
    pub root_volume_id: Option<String>,
    /// GiB, once read (DescribeVolumes).
    pub root_size: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

impl InstanceFacts {
    pub fn from_sdk(i: &Instance) -> Self {
        let root_device_name = i.root_device_name().unwrap_or_default().to_string();
        let root_volume_id = i
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(root_device_name.as_str()))
            .and_then(|m| m.ebs())
            .and_then(|ebs| ebs.volume_id())
            .map(str::to_string);
        Self {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            architecture: i
                .architecture()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            virtualization_type: i
                .virtualization_type()
                .map(|v| v.as_str().to_string())
                .unwrap_or_default(),
            product_codes: i
                .product_codes()
                .iter()
                .filter_map(|p| p.product_code_id().map(str::to_string))
                .collect(),
            root_device_type: i
                .root_device_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            root_device_name,
            root_volume_id,
            root_size: None,
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.tags.get(NAME_TAG).map(String::as_str)
    }

    /// Who owns the instance and replaces it by itself, if anyone: the reason it is not a
    /// standalone target. The Auto Scaling group's name comes with its reason, so a caller can
    /// tell the members of groups it rolls out anyway.
    pub fn owner(&self) -> Option<(String, Option<&str>)> {
        OWNER_TAGS.iter().find_map(|(key, what)| {
            let value = self.tags.get(*key)?;
            let group = (*key == "aws:autoscaling:groupName").then_some(value.as_str());
            Some((format!("{what} {value}"), group))
        })
    }

    /// The wave its `ami-rollout:wave` tag gives it, when the tag holds a number.
    pub fn wave_tag(&self) -> Option<u32> {
        self.tags.get(WAVE_TAG).and_then(|w| w.trim().parse().ok())
    }

    /// Why its root cannot be replaced with `image`, or could not be rolled back: what AWS would
    /// refuse, said before anything changes. An architecture mismatch is told apart, as for groups.
    pub fn preflight(&self, image: &Image) -> Result<(), Refusal> {
        let image_id = image.image_id().unwrap_or("the AMI");
        if self.state != "running" {
            return Err(Refusal::Other(format!(
                "it is {}; a root volume is replaced only while the instance runs",
                self.state
            )));
        }
        if self.root_device_type != "ebs" {
            return Err(Refusal::Other(
                "its root device is an instance store; only an EBS root can be replaced".into(),
            ));
        }
        let Some(root) = &self.root_volume_id else {
            return Err(Refusal::Other(format!(
                "no EBS volume is attached at its root device {}",
                self.root_device_name
            )));
        };
        let architecture = image.architecture().map_or("", |a| a.as_str());
        if architecture != self.architecture {
            return Err(Refusal::Architecture(format!(
                "{image_id} is {architecture}, but instance {} is {}",
                self.id, self.architecture
            )));
        }
        let virtualization = image.virtualization_type().map_or("", |v| v.as_str());
        if virtualization != self.virtualization_type {
            return Err(Refusal::Other(format!(
                "{image_id} uses {virtualization} virtualization, the instance {}",
                self.virtualization_type
            )));
        }
        let mut theirs: Vec<&str> = image
            .product_codes()
            .iter()
            .filter_map(|p| p.product_code_id())
            .collect();
        let mut mine: Vec<&str> = self.product_codes.iter().map(String::as_str).collect();
        theirs.sort_unstable();
        mine.sort_unstable();
        if theirs != mine {
            return Err(Refusal::Other(format!(
                "{image_id} has product codes [{}], the instance [{}]",
                theirs.join(", "),
                mine.join(", ")
            )));
        }
        let image_root = image.root_device_name().unwrap_or_default();
        if image_root != self.root_device_name {
            return Err(Refusal::Other(format!(
                "{image_id} has its root at {image_root}, the instance at {}",
                self.root_device_name
            )));
        }
        let image_root_size = image
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(image_root))
            .and_then(|m| m.ebs())
            .and_then(|ebs| ebs.volume_size());
        if let (Some(theirs), Some(mine)) = (image_root_size, self.root_size)
            && theirs < mine
        {
            return Err(Refusal::Other(format!(
                "the root of {image_id} ({theirs} GiB) is smaller than the instance's root {root} ({mine} GiB)"
            )));
        }
        Ok(())
    }
}

/// Why an instance cannot take the AMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Architecture(String),
    Other(String),
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

/// The instances of one account and region that carry `tag` and run, or that `names` names by
/// id or Name tag (in any state but terminated, so preflight can say why one is refused), with
/// their root volumes' sizes.
pub async fn find(
    clients: &Clients,
    tag: Option<&(String, String)>,
    names: &[String],
) -> StepResult<Vec<InstanceFacts>> {
    let alive = ["pending", "running", "stopping", "stopped"];
    let (ids, name_tags): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.starts_with("i-"));
    let mut queries = Vec::new();
    if let Some((key, value)) = tag {
        queries.push(vec![
            filter(&format!("tag:{key}"), [value.as_str()]),
            filter("instance-state-name", ["running"]),
        ]);
    }
    // Filters, not InstanceIds: an id that does not exist is reported by name, not as an error.
    for chunk in ids.chunks(200) {
        queries.push(vec![
            filter("instance-id", chunk.iter().map(|s| s.as_str())),
            filter("instance-state-name", alive),
        ]);
    }
    for chunk in name_tags.chunks(200) {
        queries.push(vec![
            filter(&format!("tag:{NAME_TAG}"), chunk.iter().map(|s| s.as_str())),
            filter("instance-state-name", alive),
        ]);
    }
    let mut found: BTreeMap<String, InstanceFacts> = BTreeMap::new();
    for filters in queries {
        let mut pages = clients
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeInstances", e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let facts = InstanceFacts::from_sdk(i);
                found.insert(facts.id.clone(), facts);
            }
        }
    }
    // Instances something else owns are skipped: their roots are not worth a read (a group that
    // propagates the target tag to its instances would otherwise cost a read per member).
    let roots: Vec<String> = found
        .values()
        .filter(|f| f.owner().is_none())
        .filter_map(|f| f.root_volume_id.clone())
        .collect();
    let sizes = volume_sizes(clients, &roots).await?;
    let mut instances: Vec<InstanceFacts> = found.into_values().collect();
    for f in &mut instances {
        f.root_size = f
            .root_volume_id
            .as_ref()
            .and_then(|v| sizes.get(v).copied());
    }
    Ok(instances)
}

async fn volume_sizes(clients: &Clients, ids: &[String]) -> StepResult<BTreeMap<String, i32>> {
    let mut sizes = BTreeMap::new();
    for chunk in ids.chunks(200) {
        let mut pages = clients
            .ec2
            .describe_volumes()
            .filters(filter("volume-id", chunk.iter().map(String::as_str)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeVolumes", e))?;
            for v in page.volumes() {
                if let (Some(id), Some(size)) = (v.volume_id(), v.size()) {
                    sizes.insert(id.to_string(), size);
                }
            }
        }
    }
    Ok(sizes)
}

/// One instance, as it is now; none once it is terminated or gone.
pub async fn describe(clients: &Clients, id: &str) -> StepResult<Option<InstanceFacts>> {
    let out = clients
        .ec2
        .describe_instances()
        .filters(filter("instance-id", [id]))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeInstances", e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(InstanceFacts::from_sdk)
        .find(|f| f.state != "terminated"))
}

/// The state of a replacement task. Our own exhaustive enum (the SDK's is `#[non_exhaustive]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    InProgress,
    Succeeded,
    /// Failing or failed: the original root stays (AWS re-attaches it).
    Failed(String),
    /// The original root could not be re-attached: the instance has no root.
    FailedDetached,
}

/// A root volume replacement task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub state: TaskState,
    pub started_at: Option<Epoch>,
    pub ended_at: Option<Epoch>,
    pub execution: Option<String>,
    pub purpose: Option<String>,
}

impl Task {
    fn from_sdk(t: &ReplaceRootVolumeTask) -> Self {
        use ReplaceRootVolumeTaskState as S;
        let tag = |key: &str| {
            t.tags()
                .iter()
                .find(|tag| tag.key() == Some(key))
                .and_then(|tag| tag.value())
                .map(str::to_string)
        };
        let state = match t.task_state() {
            Some(S::Pending) => TaskState::Pending,
            Some(S::InProgress) => TaskState::InProgress,
            Some(S::Succeeded) => TaskState::Succeeded,
            Some(S::FailedDetached) => TaskState::FailedDetached,
            Some(other) => TaskState::Failed(other.as_str().to_string()),
            None => TaskState::Failed("unknown".into()),
        };
        Self {
            id: t
                .replace_root_volume_task_id()
                .unwrap_or_default()
                .to_string(),
            state,
            started_at: t.start_time().and_then(epoch),
            ended_at: t.complete_time().and_then(epoch),
            execution: tag(EXECUTION_TAG),
            purpose: tag(PURPOSE_TAG),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, TaskState::Pending | TaskState::InProgress)
    }

    pub fn is_for(&self, execution: &str, purpose: Purpose) -> bool {
        self.execution.as_deref() == Some(execution)
            && self.purpose.as_deref() == Some(purpose.as_str())
    }
}

/// EC2 reports a task's times as ISO 8601 strings.
fn epoch(text: &str) -> Option<Epoch> {
    DateTime::from_str(text, Format::DateTime)
        .ok()
        .map(|t| t.secs())
}

/// Where a new root comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource<'a> {
    /// A fresh root from an AMI (the instance then reports that AMI).
    Image(&'a str),
    /// A volume put back as it is: the root a replacement kept.
    Volume(&'a str),
}

/// The client token of `execution`'s replacement of `instance` for `purpose`: a retry or a
/// redrive gets the same task back instead of starting a second one (tokens hold 64 characters).
pub fn client_token(execution: &str, instance: &str, purpose: Purpose) -> String {
    format!(
        "ami-rollout-{}-{:016x}-{instance}",
        purpose.as_str(),
        crate::reach::fnv1a(execution)
    )
}

/// Starts replacing `instance`'s root from `source`, tagged with the execution and purpose. The
/// replaced root is kept unless `delete_replaced`.
pub async fn replace_root(
    clients: &Clients,
    instance: &str,
    source: RootSource<'_>,
    delete_replaced: bool,
    execution: &str,
    purpose: Purpose,
) -> StepResult<Task> {
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::ReplaceRootVolumeTask)
        .tags(tag(EXECUTION_TAG, &tag_value(execution)))
        .tags(tag(PURPOSE_TAG, purpose.as_str()))
        .build();
    let request = clients
        .ec2
        .create_replace_root_volume_task()
        .instance_id(instance)
        .delete_replaced_root_volume(delete_replaced)
        .client_token(client_token(execution, instance, purpose))
        .tag_specifications(tags);
    let request = match source {
        RootSource::Image(id) => request.image_id(id),
        RootSource::Volume(id) => request.volume_id(id),
    };
    let out = request
        .send()
        .await
        .map_err(|e| StepError::from_sdk("CreateReplaceRootVolumeTask", e))?;
    out.replace_root_volume_task()
        .map(Task::from_sdk)
        .ok_or_else(|| StepError::AwsRequestFailed {
            operation: "CreateReplaceRootVolumeTask".into(),
            message: format!("no task returned for {instance}"),
        })
}

/// Every replacement task of `instance`, oldest first.
pub async fn tasks(clients: &Clients, instance: &str) -> StepResult<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut pages = clients
        .ec2
        .describe_replace_root_volume_tasks()
        .filters(filter("instance-id", [instance]))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("DescribeReplaceRootVolumeTasks", e))?;
        tasks.extend(page.replace_root_volume_tasks().iter().map(Task::from_sdk));
    }
    tasks.sort_by_key(|t| t.started_at);
    Ok(tasks)
}

/// The newest task `execution` started on `instance` for `purpose`.
pub fn newest_of<'a>(tasks: &'a [Task], execution: &str, purpose: Purpose) -> Option<&'a Task> {
    tasks.iter().rev().find(|t| t.is_for(execution, purpose))
}

/// An instance's three status checks, as EC2 reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusChecks {
    /// Checks that failed (`impaired`): "instance", "system", "attached EBS".
    pub impaired: Vec<String>,
    /// Checks with no result yet (`initializing`, `insufficient-data`, or not reported).
    pub pending: Vec<String>,
    /// The instance's state when it is not `running` (`stopped`, `stopping`, `pending`, ...): EC2
    /// reports the checks of a stopped instance `not-applicable`, which is no pass.
    pub not_running: Option<String>,
}

pub async fn status_checks(clients: &Clients, instance: &str) -> StepResult<StatusChecks> {
    let out = clients
        .ec2
        .describe_instance_status()
        .instance_ids(instance)
        .include_all_instances(true)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeInstanceStatus", e))?;
    let status = out.instance_statuses().first();
    let mut checks = StatusChecks {
        not_running: status
            .and_then(|s| s.instance_state())
            .and_then(|s| s.name())
            .filter(|name| *name != &InstanceStateName::Running)
            .map(|name| name.as_str().to_string()),
        ..StatusChecks::default()
    };
    for (what, summary) in [
        (
            "instance",
            status
                .and_then(|s| s.instance_status())
                .and_then(|s| s.status()),
        ),
        (
            "system",
            status
                .and_then(|s| s.system_status())
                .and_then(|s| s.status()),
        ),
        (
            "attached EBS",
            status
                .and_then(|s| s.attached_ebs_status())
                .and_then(|s| s.status()),
        ),
    ] {
        match summary {
            Some(SummaryStatus::Ok | SummaryStatus::NotApplicable) => {}
            Some(SummaryStatus::Impaired) => checks.impaired.push(what.to_string()),
            // The attached-EBS check is newer than the others: not reported is not a failure.
            None if what == "attached EBS" => {}
            _ => checks.pending.push(what.to_string()),
        }
    }
    Ok(checks)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Tag values hold 256 characters.
fn tag_value(text: &str) -> String {
    text.chars().take(256).collect()
}

/// Marks the root about to be replaced, so the kept volume says whose root it was and for which
/// execution.
pub async fn tag_root(
    clients: &Clients,
    volume: &str,
    instance: &str,
    execution: &str,
) -> StepResult<()> {
    clients
        .ec2
        .create_tags()
        .resources(volume)
        .tags(tag(REPLACED_ROOT_TAG, instance))
        .tags(tag(EXECUTION_TAG, &tag_value(execution)))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("CreateTags", e))?;
    Ok(())
}

/// The volume's state (`available`, `in-use`, ...), or none once it is deleted.
pub async fn volume_state(clients: &Clients, volume: &str) -> StepResult<Option<String>> {
    let out = clients
        .ec2
        .describe_volumes()
        .filters(filter("volume-id", [volume]))
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeVolumes", e))?;
    Ok(out
        .volumes()
        .first()
        .and_then(|v| v.state())
        .map(|s| s.as_str().to_string()))
}

/// Deletes a kept root once nothing needs it; a volume already gone is fine, one attached again
/// (put back by hand) is left alone. True when it was deleted now.
pub async fn delete_kept_root(clients: &Clients, volume: &str) -> StepResult<bool> {
    if volume_state(clients, volume).await?.as_deref() != Some("available") {
        return Ok(false);
    }
    match clients.ec2.delete_volume().volume_id(volume).send().await {
        Ok(_) => Ok(true),
        Err(e) => match StepError::from_sdk("DeleteVolume", e) {
            StepError::AwsRequestFailed { message, .. }
                if message.starts_with("InvalidVolume.NotFound") =>
            {
                Ok(false)
            }
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{ArchitectureValues, ProductCode, VirtualizationType};

    fn instance() -> InstanceFacts {
        crate::samples::standalone_instance("i-0123456789abcdef0", "ami-00000000000000001", 20)
    }

    fn image(size: i32) -> aws_sdk_ec2::types::builders::ImageBuilder {
        crate::samples::root_image("ami-00000000000000002", size)
    }

    #[test]
    fn an_instance_the_ami_fits_passes_preflight() {
        assert_eq!(instance().preflight(&image(20).build()), Ok(()));
        assert_eq!(instance().preflight(&image(30).build()), Ok(()));
    }

    #[test]
    fn preflight_refuses_what_aws_would_refuse_with_the_reason() {
        let refused = |i: InstanceFacts, image: Image| match i.preflight(&image) {
            Err(Refusal::Other(reason)) => reason,
            other => panic!("{other:?}"),
        };
        let stopped = InstanceFacts {
            state: "stopped".into(),
            ..instance()
        };
        assert!(refused(stopped, image(20).build()).contains("it is stopped"));
        let store = InstanceFacts {
            root_device_type: "instance-store".into(),
            ..instance()
        };
        assert!(refused(store, image(20).build()).contains("instance store"));
        let paravirtual = image(20)
            .virtualization_type(VirtualizationType::Paravirtual)
            .build();
        assert!(refused(instance(), paravirtual).contains("paravirtual virtualization"));
        let marketplace = image(20)
            .product_codes(ProductCode::builder().product_code_id("abc123").build())
            .build();
        assert!(refused(instance(), marketplace).contains("product codes [abc123]"));
        assert!(refused(instance(), image(8).build()).contains("(8 GiB) is smaller"));
        let elsewhere = image(20).root_device_name("/dev/sda1").build();
        assert!(refused(instance(), elsewhere).contains("root at /dev/sda1"));
        let arm = image(20).architecture(ArchitectureValues::Arm64).build();
        assert!(matches!(
            instance().preflight(&arm),
            Err(Refusal::Architecture(reason)) if reason.contains("arm64")
        ));
    }

    #[test]
    fn an_owned_instance_says_who_owns_it() {
        let mut member = instance();
        member
            .tags
            .insert("aws:autoscaling:groupName".into(), "web".into());
        assert_eq!(
            member.owner(),
            Some(("member of Auto Scaling group web".to_string(), Some("web")))
        );
        let mut spot = instance();
        spot.tags
            .insert("aws:ec2spot:fleet-request-id".into(), "sfr-1".into());
        assert_eq!(
            spot.owner(),
            Some(("part of Spot Fleet request sfr-1".to_string(), None))
        );
        assert_eq!(instance().owner(), None);
    }

    #[test]
    fn client_tokens_fit_and_differ_by_execution_and_purpose() {
        let token = client_token(&"x".repeat(80), "i-0123456789abcdef0", Purpose::Rollback);
        assert!(token.len() <= 64, "{token}");
        assert_ne!(
            client_token("a", "i-1", Purpose::Rollout),
            client_token("b", "i-1", Purpose::Rollout)
        );
        assert_ne!(
            client_token("a", "i-1", Purpose::Rollout),
            client_token("a", "i-1", Purpose::Rollback)
        );
    }

    #[test]
    fn task_times_are_read_as_ec2_writes_them() {
        assert_eq!(epoch("2026-12-02T10:00:00.000Z"), Some(1_796_205_600));
        assert_eq!(epoch("soon"), None);
    }
}
