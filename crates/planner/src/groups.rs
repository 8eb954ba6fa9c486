//! Auto Scaling groups as targets: found, read in batched calls, and decided.

use rollout_core::FromSdk;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::decision::Decision;
use crate::selection::Selection;
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter as AsgFilter};
use aws_sdk_ec2::types::Image;
use rollout_core::ami::describe_images;
use rollout_core::fleet::{self, GroupTemplate, group_template};
use rollout_core::launch_template::{self, Marker};
use rollout_core::model::{
    Ami, EcsCapacity, RollbackPoint, Target, TargetKind, TemplatePoint, VersionReference,
    place_name,
};
use rollout_core::refresh::recent_refreshes;
use rollout_core::settings::{OnSuspendedProcesses, RefreshSettings, RefreshStrategy, SettingsMap};
use rollout_core::{Clients, StepError, StepResult};

/// What resolve-ami learned about one group, gathered in a few batched calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupFacts {
    pub name: String,
    /// Where the group lives (`None`: home), as the plan names it.
    pub account: Option<String>,
    pub region: Option<String>,
    /// The AMI of the group's region, when not the trigger's own.
    pub ami: Option<Ami>,
    /// How the group refers to its template, or why it cannot be refreshed with rollback.
    pub template: Option<Result<GroupTemplate, String>>,
    /// The template's id and default version number.
    pub template_id: Option<String>,
    pub default_version: i64,
    /// The ImageId of the version the group runs, with that version's number.
    pub current: Option<(i64, String)>,
    /// The architecture of the current AMI, `None` when that AMI no longer exists.
    pub current_architecture: Option<String>,
    /// AMIs of the group's instances (only read when the template is already on the new AMI).
    pub instance_images: Option<Vec<String>>,
    /// Execution whose refresh to the new AMI is running on the group right now.
    pub rollout_in_progress: Option<String>,
    pub ecs: Option<EcsCapacity>,
    /// The group's tags (the workload role changes only opted-in groups).
    pub tags: BTreeMap<String, String>,
    /// Its suspended processes (`Launch`, `Terminate`, `InstanceRefresh` stop a refresh).
    pub suspended: Vec<String>,
}

impl GroupFacts {
    pub(crate) fn target_name(&self) -> String {
        place_name(self.account.as_deref(), self.region.as_deref(), &self.name)
    }
}

/// Whether a group rolls out, is skipped, or refuses the plan: its opt-in and processes, then
/// the rollback point it would go back to, then the AMI it runs.
pub(crate) fn decide(ami: &Ami, g: &GroupFacts, settings: &RefreshSettings) -> Decision {
    let ami = g.ami.as_ref().unwrap_or(ami);
    if let Some(reason) =
        rollout_core::reach::workload_opt_in_refusal(g.account.as_deref(), &g.tags)
    {
        return Decision::Refuse(reason);
    }
    if let Some(reason) = fleet::suspension_refusal(&g.name, &g.suspended) {
        return match settings.on_suspended_processes.unwrap_or_default() {
            OnSuspendedProcesses::Refuse => Decision::Refuse(reason),
            OnSuspendedProcesses::Skip => Decision::Skip(reason),
        };
    }
    let (template, point) = match rollback_point(g, settings) {
        Ok(found) => found,
        Err(refusal) => return Decision::Refuse(refusal),
    };
    if let Some(execution) = &g.rollout_in_progress {
        return Decision::Skip(format!(
            "execution {execution} is already rolling out {} to it",
            ami.id
        ));
    }
    if let Some(decision) = against_current_ami(ami, g, &point.image_id) {
        return decision;
    }
    Decision::Roll(Box::new(Target {
        kind: TargetKind::AutoScalingGroup,
        account: g.account.clone(),
        region: g.region.clone(),
        resource: g.name.clone(),
        instance_name: None,
        ami: ami.clone(),
        rollback_point: RollbackPoint::Template(point),
        mixed_instances: template.mixed_instances,
        ecs: g.ecs.clone(),
        window: None,
    }))
}

/// The group's template and the version a rollback would restore, or why there is none that
/// native rollback could go back to.
fn rollback_point<'a>(
    g: &'a GroupFacts,
    settings: &RefreshSettings,
) -> Result<(&'a GroupTemplate, TemplatePoint), String> {
    let template = match &g.template {
        Some(Ok(t)) => t,
        Some(Err(reason)) => return Err(reason.clone()),
        None => return Err("its launch template could not be read".into()),
    };
    if settings.replaces_roots() && (!template.mixed_instances || template.overrides == 0) {
        return Err(format!(
            "its refreshStrategy is {}, which AWS allows only for a group with a \
             mixed instances policy whose instance type overrides each name the AMI; give it one, \
             or use Rolling",
            RefreshStrategy::ReplaceRootVolume
        ));
    }
    let Some(template_id) = g.template_id.clone() else {
        let named = template.name.as_deref().or(template.id.as_deref());
        return Err(format!(
            "its launch template {} does not exist",
            named.unwrap_or("?")
        ));
    };
    let Some((version, image_id)) = g.current.clone() else {
        return Err(format!(
            "version {} of launch template {template_id} does not exist",
            template.version
        ));
    };
    if image_id.starts_with("resolve:ssm:") {
        return Err(format!(
            "launch template {template_id} version {version} takes its ImageId from {image_id}; native rollback does not support SSM parameters"
        ));
    }
    let point = TemplatePoint {
        launch_template_id: template_id,
        version,
        image_id,
        reference: VersionReference::parse(&template.version),
        default_version: g.default_version,
    };
    Ok((template, point))
}

/// A group already on `ami` everywhere is skipped; one whose current AMI is gone, or of another
/// architecture, refuses the plan.
fn against_current_ami(ami: &Ami, g: &GroupFacts, image_id: &str) -> Option<Decision> {
    if image_id == ami.id {
        let all_on = g
            .instance_images
            .as_ref()
            .is_some_and(|imgs| imgs.iter().all(|i| *i == ami.id));
        return all_on.then(|| Decision::Skip(format!("already on {}", ami.id)));
    }
    match &g.current_architecture {
        None => Some(Decision::Refuse(format!(
            "its current AMI {image_id} no longer exists, so a rollback could not launch it"
        ))),
        Some(arch) if *arch != ami.architecture => Some(Decision::WrongArchitecture(format!(
            "{} is {}, but group {} runs {arch} ({image_id})",
            ami.id,
            ami.architecture,
            g.target_name()
        ))),
        Some(_) => None,
    }
}

/// The selected groups of one account and region, by name.
pub(crate) async fn select_groups(
    clients: &Clients,
    selection: &Selection,
) -> StepResult<BTreeMap<String, AutoScalingGroup>> {
    let mut groups: BTreeMap<String, AutoScalingGroup> = BTreeMap::new();
    for chunk in selection.names.chunks(50) {
        let out = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeAutoScalingGroups", e))?;
        for g in out.auto_scaling_groups() {
            groups.insert(
                g.auto_scaling_group_name().unwrap_or_default().to_string(),
                g.clone(),
            );
        }
    }
    if let Some((key, value)) = &selection.tag {
        let mut pages = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .filters(
                AsgFilter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .max_records(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeAutoScalingGroups", e))?;
            for g in page.auto_scaling_groups() {
                groups.insert(
                    g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    g.clone(),
                );
            }
        }
    }
    Ok(groups)
}

/// Reads templates, AMIs, instances and ECS capacity for `groups` in batched calls.
pub(crate) async fn gather_facts(
    clients: &Clients,
    groups: &[AutoScalingGroup],
    ami: &Ami,
    settings: &SettingsMap,
) -> StepResult<Vec<GroupFacts>> {
    let (templates, ecs) = tokio::try_join!(
        describe_template_heads(clients),
        ecs_capacity(clients, groups)
    )?;
    let mut facts = described(groups, &templates, &ecs, settings);
    read_current_versions(clients, &mut facts, groups, &templates, ami).await?;
    read_architectures(clients, &mut facts).await?;
    Ok(facts)
}

/// What the groups' descriptions and the template heads tell of each group.
fn described(
    groups: &[AutoScalingGroup],
    templates: &HashMap<String, TemplateHead>,
    ecs: &HashMap<String, EcsCapacity>,
    settings: &SettingsMap,
) -> Vec<GroupFacts> {
    groups
        .iter()
        .map(|g| {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let template = group_template(g);
            let head = template.as_ref().ok().and_then(|t| {
                t.id.as_ref().and_then(|id| templates.get(id)).or_else(|| {
                    t.name
                        .as_ref()
                        .and_then(|n| templates.values().find(|h| h.name == *n))
                })
            });
            let ecs = ecs
                .get(g.auto_scaling_group_arn().unwrap_or_default())
                .cloned()
                .or_else(|| {
                    settings
                        .for_group(&name)
                        .ecs_cluster
                        .map(|cluster| EcsCapacity {
                            cluster,
                            capacity_provider: None,
                            managed_termination_protection: false,
                        })
                });
            GroupFacts {
                template_id: head.map(|h| h.id.clone()),
                default_version: head.map_or(0, |h| h.default),
                ecs,
                template: Some(template),
                name,
                tags: g
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
                suspended: fleet::suspended_processes(g),
                ..Default::default()
            }
        })
        .collect()
}

/// The version each group runs, and its ImageId: from the heads, or one call per odd version;
/// a duplicate trigger's refresh running; the instances' AMIs of a group already on `ami`.
async fn read_current_versions(
    clients: &Clients,
    facts: &mut [GroupFacts],
    groups: &[AutoScalingGroup],
    templates: &HashMap<String, TemplateHead>,
    ami: &Ami,
) -> StepResult<()> {
    for (f, g) in facts.iter_mut().zip(groups) {
        let (Some(Ok(t)), Some(id)) = (&f.template, &f.template_id) else {
            continue;
        };
        let Some(head) = templates.get(id) else {
            continue;
        };
        let number = launch_template::resolve_version(&t.version, head.latest, head.default);
        let image = match head.images.get(&number) {
            Some(image) => Some(image.clone()),
            None => version_image(clients, id, number).await?,
        };
        f.current = image.map(|i| (number, i));
        // A duplicate trigger: our marker on the newest version, for this AMI, with its refresh running.
        if let Some(execution) = head.latest_marker_for(&ami.id) {
            let running = recent_refreshes(clients, &f.name)
                .await?
                .into_iter()
                .any(|r| r.is_active() && r.targets(id, head.latest));
            f.rollout_in_progress = running.then_some(execution);
        }
        if f.current
            .as_ref()
            .is_some_and(|(_, image)| *image == ami.id)
        {
            let ids = fleet::in_service_instances(g);
            f.instance_images = Some(
                fleet::instance_images(clients, &ids)
                    .await?
                    .into_values()
                    .collect(),
            );
        }
    }
    Ok(())
}

/// Architectures of the AMIs the groups run now (one call for all of them).
async fn read_architectures(clients: &Clients, facts: &mut [GroupFacts]) -> StepResult<()> {
    let current: Vec<String> = facts
        .iter()
        .filter_map(|f| f.current.as_ref().map(|(_, i)| i.clone()))
        .filter(|i| i.starts_with("ami-"))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let arch: HashMap<String, String> = describe_images(clients, &current)
        .await?
        .iter()
        .filter(|i| {
            i.state()
                .is_some_and(|s| *s == aws_sdk_ec2::types::ImageState::Available)
        })
        .filter_map(|i: &Image| {
            Some((
                i.image_id()?.to_string(),
                i.architecture()?.as_str().to_string(),
            ))
        })
        .collect();
    for f in facts.iter_mut() {
        f.current_architecture = f
            .current
            .as_ref()
            .and_then(|(_, image)| arch.get(image).cloned());
    }
    Ok(())
}

/// A launch template's latest and default versions, with their ImageIds.
#[derive(Debug, Default)]
pub(crate) struct TemplateHead {
    id: String,
    name: String,
    latest: i64,
    default: i64,
    images: HashMap<i64, String>,
    latest_description: Option<String>,
}

impl TemplateHead {
    /// The execution that made the latest version for `ami`, if ami-rollout made it.
    pub(crate) fn latest_marker_for(&self, ami: &str) -> Option<String> {
        let marker = Marker::parse(self.latest_description.as_deref()?)?;
        (self.images.get(&self.latest).map(String::as_str) == Some(ami)).then_some(marker.execution)
    }
}

/// The `$Latest` and `$Default` versions of every launch template, in a few pages (EC2 accepts
/// these two version names without a template id).
pub(crate) async fn describe_template_heads(
    clients: &Clients,
) -> StepResult<HashMap<String, TemplateHead>> {
    let mut heads: HashMap<String, TemplateHead> = HashMap::new();
    let mut pages = clients
        .ec2
        .describe_launch_template_versions()
        .versions("$Latest")
        .versions("$Default")
        .max_results(200)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("DescribeLaunchTemplateVersions", e))?;
        for v in page.launch_template_versions() {
            let (Some(id), Some(number)) = (v.launch_template_id(), v.version_number()) else {
                continue;
            };
            let head = heads.entry(id.to_string()).or_insert_with(|| TemplateHead {
                id: id.to_string(),
                ..Default::default()
            });
            head.name = v.launch_template_name().unwrap_or_default().to_string();
            if let Some(image) = v.launch_template_data().and_then(|d| d.image_id()) {
                head.images.insert(number, image.to_string());
            }
            if v.default_version() == Some(true) {
                head.default = number;
            }
            if number >= head.latest {
                head.latest = number;
                head.latest_description = v.version_description().map(str::to_string);
            }
        }
    }
    Ok(heads)
}

pub(crate) async fn version_image(
    clients: &Clients,
    template_id: &str,
    version: i64,
) -> StepResult<Option<String>> {
    if version < 1 {
        return Ok(None);
    }
    let out = clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .versions(version.to_string())
        .send()
        .await;
    match out {
        Ok(out) => Ok(out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.image_id())
            .map(str::to_string)),
        Err(err)
            if err
                .as_service_error()
                .and_then(aws_smithy_types::error::metadata::ProvideErrorMetadata::code)
                .is_some_and(|c| c.starts_with("InvalidLaunchTemplate")) =>
        {
            Ok(None)
        }
        Err(err) => Err(StepError::from_sdk("DescribeLaunchTemplateVersions", err)),
    }
}

/// ECS capacity providers backed by `groups`, keyed by group ARN, with the cluster using each.
pub(crate) async fn ecs_capacity(
    clients: &Clients,
    groups: &[AutoScalingGroup],
) -> StepResult<HashMap<String, EcsCapacity>> {
    let wanted: HashSet<&str> = groups
        .iter()
        .filter_map(AutoScalingGroup::auto_scaling_group_arn)
        .collect();
    let cluster_arns = rollout_core::ecs::cluster_arns(clients).await?;
    let mut cluster_of_provider: HashMap<String, String> = HashMap::new();
    for chunk in cluster_arns.chunks(100) {
        let out = clients
            .ecs
            .describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeClusters", e))?;
        for c in out.clusters() {
            for provider in c.capacity_providers() {
                cluster_of_provider.insert(
                    provider.clone(),
                    c.cluster_name().unwrap_or_default().to_string(),
                );
            }
        }
    }
    let providers: Vec<String> = cluster_of_provider.keys().cloned().collect();
    let mut capacity = HashMap::new();
    for chunk in providers.chunks(100) {
        let out = clients
            .ecs
            .describe_capacity_providers()
            .set_capacity_providers(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeCapacityProviders", e))?;
        for p in out.capacity_providers() {
            let (Some(name), Some(asg)) = (p.name(), p.auto_scaling_group_provider()) else {
                continue;
            };
            let arn = asg.auto_scaling_group_arn();
            if !wanted.contains(arn) {
                continue;
            }
            let mtp = asg
                .managed_termination_protection()
                .is_some_and(|m| *m == aws_sdk_ecs::types::ManagedTerminationProtection::Enabled);
            capacity.insert(
                arn.to_string(),
                EcsCapacity {
                    cluster: cluster_of_provider[name].clone(),
                    capacity_provider: Some(name.to_string()),
                    managed_termination_protection: mtp,
                },
            );
        }
    }
    Ok(capacity)
}
