//! Auto Scaling groups and their launch templates: how a group refers to its template, how to
//! point it (or a refresh) at a version, and how to read what its instances run.

use crate::error::FromSdk;
use std::collections::HashMap;

use aws_sdk_autoscaling::types::{
    AutoScalingGroup, DesiredConfiguration, LaunchTemplateSpecification, MixedInstancesPolicy,
};

use crate::aws::Clients;
use crate::error::{StepError, StepResult};

/// How a group names its launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTemplate {
    pub id: Option<String>,
    pub name: Option<String>,
    /// `$Latest`, `$Default` or a number, as the group carries it.
    pub version: String,
    pub mixed_instances: bool,
    /// The instance type overrides of its mixed instances policy.
    pub overrides: usize,
}

/// The launch template of `group`, or why the group cannot be refreshed with native rollback.
pub fn group_template(group: &AutoScalingGroup) -> Result<GroupTemplate, String> {
    if let Some(lc) = group.launch_configuration_name() {
        return Err(format!(
            "uses launch configuration {lc}; native rollback needs a launch template (migrate the group first)"
        ));
    }
    let (spec, mixed_instances, overrides) = match (
        group.launch_template(),
        group.mixed_instances_policy(),
    ) {
        (Some(spec), _) => (spec, false, 0),
        (None, Some(policy)) => {
            let lt = policy
                .launch_template()
                .ok_or("has a mixed instances policy without a launch template")?;
            if let Some(own) = lt
                .overrides()
                .iter()
                .find_map(|o| o.launch_template_specification())
            {
                let name = own
                    .launch_template_id()
                    .or(own.launch_template_name())
                    .unwrap_or("?");
                return Err(format!(
                    "has instance type overrides with their own launch template ({name}); roll those templates out separately"
                ));
            }
            (
                lt.launch_template_specification().ok_or(
                    "has a mixed instances policy without a launch template specification",
                )?,
                true,
                lt.overrides().len(),
            )
        }
        (None, None) => return Err("has no launch template".into()),
    };
    Ok(GroupTemplate {
        id: spec.launch_template_id().map(str::to_string),
        name: spec.launch_template_name().map(str::to_string),
        version: spec.version().unwrap_or("$Default").to_string(),
        mixed_instances,
        overrides,
    })
}

fn spec(template_id: &str, version: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version(version)
        .build()
}

/// The group's mixed instances policy with only the launch template version changed.
fn mixed_policy_at(
    policy: &MixedInstancesPolicy,
    template_id: &str,
    version: &str,
) -> MixedInstancesPolicy {
    let mut policy = policy.clone();
    if let Some(lt) = policy.launch_template.as_mut() {
        lt.launch_template_specification = Some(spec(template_id, version));
    }
    policy
}

/// What a refresh should converge `group` to: the template at `version`, keeping any mixed
/// instances policy as it is. With `root_image` (the `ReplaceRootVolume` strategy, which AWS
/// requires to name the AMI in every override of the policy), each override carries that AMI.
pub fn desired_configuration(
    group: &AutoScalingGroup,
    template_id: &str,
    version: i64,
    root_image: Option<&str>,
) -> DesiredConfiguration {
    let version = version.to_string();
    match group.mixed_instances_policy() {
        Some(policy) if group.launch_template().is_none() => {
            let mut policy = mixed_policy_at(policy, template_id, &version);
            if let (Some(image), Some(lt)) = (root_image, policy.launch_template.as_mut()) {
                for o in lt.overrides.iter_mut().flatten() {
                    o.image_id = Some(image.to_string());
                }
            }
            DesiredConfiguration::builder()
                .mixed_instances_policy(policy)
                .build()
        }
        _ => DesiredConfiguration::builder()
            .launch_template(spec(template_id, &version))
            .build(),
    }
}

/// Points `group` at `version` (`$Latest`, `$Default` or a number) of its template. This changes
/// what new instances launch with, never the running ones.
pub async fn set_group_version(
    clients: &Clients,
    group: &AutoScalingGroup,
    template_id: &str,
    version: &str,
) -> StepResult<()> {
    let name = group.auto_scaling_group_name().unwrap_or_default();
    let request = clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(name);
    let request = match group.mixed_instances_policy() {
        Some(policy) if group.launch_template().is_none() => {
            request.mixed_instances_policy(mixed_policy_at(policy, template_id, version))
        }
        _ => request.launch_template(spec(template_id, version)),
    };
    request
        .send()
        .await
        .map_err(|e| StepError::from_sdk("UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// The version string the group currently carries for its template.
pub fn group_version(group: &AutoScalingGroup) -> Option<String> {
    group_template(group).ok().map(|t| t.version)
}

pub async fn describe_group(clients: &Clients, name: &str) -> StepResult<AutoScalingGroup> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeAutoScalingGroups", e))?;
    out.auto_scaling_groups().first().cloned().ok_or_else(|| {
        StepError::TargetNotFound(format!("Auto Scaling group {name} does not exist"))
    })
}

/// The group's launch lifecycle hooks, by name: what holds a new instance in `Pending:Wait`, and
/// what abandons it. A scaling activity or refresh names only the action's token, never the hook.
pub async fn launch_hooks(clients: &Clients, group: &str) -> StepResult<Vec<String>> {
    let out = clients
        .autoscaling
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeLifecycleHooks", e))?;
    Ok(out
        .lifecycle_hooks()
        .iter()
        .filter(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_LAUNCHING"))
        .filter_map(|h| h.lifecycle_hook_name().map(str::to_string))
        .collect())
}

/// The newest scaling activity of `group` since `since` whose launch a lifecycle action
/// abandoned, as Auto Scaling words it ("Instance failed to complete user's Lifecycle Action:
/// Lifecycle Action with token ... was abandoned: ...").
pub async fn abandoned_launch(
    clients: &Clients,
    group: &str,
    since: crate::model::Epoch,
) -> StepResult<Option<String>> {
    let out = clients
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(20)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeScalingActivities", e))?;
    Ok(out
        .activities()
        .iter()
        .filter(|a| a.start_time().is_some_and(|t| t.secs() >= since))
        .filter_map(|a| a.status_message())
        .find(|m| abandoned_by_a_hook(m))
        .map(str::to_string))
}

/// Whether Auto Scaling's words say a lifecycle action abandoned an instance.
pub fn abandoned_by_a_hook(reason: &str) -> bool {
    reason.contains("Lifecycle Action") && reason.contains("abandoned")
}

/// The AMI each running or pending instance was launched from, by instance id.
pub async fn instance_images(
    clients: &Clients,
    instance_ids: &[String],
) -> StepResult<HashMap<String, String>> {
    let mut images = HashMap::new();
    // EC2 documents no hard limit on InstanceIds; 200 keeps each request comfortably small.
    for chunk in instance_ids.chunks(200) {
        let mut pages = clients
            .ec2
            .describe_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("DescribeInstances", e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), Some(image)) = (instance.instance_id(), instance.image_id()) {
                    images.insert(id.to_string(), image.to_string());
                }
            }
        }
    }
    Ok(images)
}

/// The processes whose suspension stops an instance refresh: while `Launch` is suspended
/// "InstanceRefresh does not replace instances", and `Terminate` or `InstanceRefresh` itself
/// suspended stop it too (Auto Scaling User Guide, "How suspended processes affect other
/// processes"). AWS suspends processes itself after a day of failed launches.
pub const REFRESH_STOPPERS: [&str; 3] = ["Launch", "Terminate", "InstanceRefresh"];

/// The names of the group's suspended processes.
pub fn suspended_processes(group: &AutoScalingGroup) -> Vec<String> {
    group
        .suspended_processes()
        .iter()
        .filter_map(|p| p.process_name().map(str::to_string))
        .collect()
}

/// Why a group with these processes suspended cannot be refreshed (`None`: it can be).
pub fn suspension_refusal(group: &str, suspended: &[String]) -> Option<String> {
    let stoppers: Vec<&str> = REFRESH_STOPPERS
        .into_iter()
        .filter(|p| suspended.iter().any(|s| s == p))
        .collect();
    if stoppers.is_empty() {
        return None;
    }
    Some(format!(
        "its {} process{} suspended, so an instance refresh would replace none of its instances: resume {} (aws autoscaling resume-processes --auto-scaling-group-name {group} --scaling-processes {}) or leave the group out",
        stoppers.join(" and "),
        if stoppers.len() == 1 { " is" } else { "es are" },
        if stoppers.len() == 1 { "it" } else { "them" },
        stoppers.join(" ")
    ))
}

/// Suspended processes that let a refresh run but change how it goes, and how.
const REFRESH_CHANGERS: [(&str, &str); 3] = [
    (
        "HealthCheck",
        "Auto Scaling marks no instance unhealthy, so one that fails its checks stays in service (this rollout's own health check still reads it)",
    ),
    (
        "ReplaceUnhealthy",
        "an instance marked unhealthy is not replaced",
    ),
    (
        "AZRebalance",
        "the zones are not rebalanced after the refresh",
    ),
];

/// What the plan says of a group refreshed with these processes suspended (`None`: nothing).
pub fn suspension_note(suspended: &[String]) -> Option<String> {
    let notes: Vec<String> = REFRESH_CHANGERS
        .into_iter()
        .filter(|(p, _)| suspended.iter().any(|s| s == p))
        .map(|(process, effect)| format!("{process} is suspended: {effect}"))
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Ids of the group's instances that count toward its capacity (not terminating, not in standby).
pub fn in_service_instances(group: &AutoScalingGroup) -> Vec<String> {
    use aws_sdk_autoscaling::types::LifecycleState as S;
    group
        .instances()
        .iter()
        .filter(|i| {
            matches!(
                i.lifecycle_state(),
                Some(S::InService | S::Pending | S::PendingWait | S::PendingProceed)
            )
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{
        InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
    };

    fn group() -> aws_sdk_autoscaling::types::builders::AutoScalingGroupBuilder {
        AutoScalingGroup::builder().auto_scaling_group_name("web")
    }

    fn mixed(overrides: Vec<LaunchTemplateOverrides>) -> MixedInstancesPolicy {
        MixedInstancesPolicy::builder()
            .launch_template(
                LaunchTemplate::builder()
                    .launch_template_specification(spec("lt-1", "$Latest"))
                    .set_overrides(Some(overrides))
                    .build(),
            )
            .instances_distribution(
                InstancesDistribution::builder()
                    .on_demand_base_capacity(1)
                    .build(),
            )
            .build()
    }

    #[test]
    fn template_is_read_from_the_group_or_its_mixed_policy() {
        let plain = group_template(&group().launch_template(spec("lt-1", "3")).build()).unwrap();
        assert_eq!(
            (
                plain.id.as_deref(),
                plain.version.as_str(),
                plain.mixed_instances
            ),
            (Some("lt-1"), "3", false)
        );
        let mixed = group_template(
            &group()
                .mixed_instances_policy(mixed(vec![
                    LaunchTemplateOverrides::builder()
                        .instance_type("m7i.large")
                        .build(),
                ]))
                .build(),
        )
        .unwrap();
        assert_eq!(
            (mixed.version.as_str(), mixed.mixed_instances),
            ("$Latest", true)
        );
    }

    #[test]
    fn groups_that_cannot_be_rolled_back_natively_are_refused_with_a_reason() {
        let own_template = LaunchTemplateOverrides::builder()
            .instance_type("m7g.large")
            .launch_template_specification(spec("lt-arm", "1"))
            .build();
        for (g, expected) in [
            (
                group().launch_configuration_name("old-lc").build(),
                "launch configuration old-lc",
            ),
            (group().build(), "no launch template"),
            (
                group()
                    .mixed_instances_policy(mixed(vec![own_template]))
                    .build(),
                "their own launch template (lt-arm)",
            ),
            (
                group()
                    .mixed_instances_policy(MixedInstancesPolicy::builder().build())
                    .build(),
                "without a launch template",
            ),
        ] {
            let reason = group_template(&g).unwrap_err();
            assert!(reason.contains(expected), "{reason}");
        }
    }

    #[test]
    fn desired_configuration_keeps_the_mixed_policy_and_changes_only_the_version() {
        let g = group()
            .mixed_instances_policy(mixed(vec![
                LaunchTemplateOverrides::builder()
                    .instance_type("m7i.large")
                    .build(),
            ]))
            .build();
        let desired = desired_configuration(&g, "lt-1", 4, None);
        let policy = desired.mixed_instances_policy().unwrap();
        let lt = policy.launch_template().unwrap();
        assert_eq!(
            lt.launch_template_specification().unwrap().version(),
            Some("4")
        );
        assert_eq!(lt.overrides()[0].instance_type(), Some("m7i.large"));
        assert_eq!(
            policy
                .instances_distribution()
                .unwrap()
                .on_demand_base_capacity(),
            Some(1)
        );
        assert!(desired.launch_template().is_none());

        let plain = desired_configuration(
            &group().launch_template(spec("lt-1", "$Latest")).build(),
            "lt-1",
            4,
            None,
        );
        assert_eq!(plain.launch_template().unwrap().version(), Some("4"));
        let roots = desired_configuration(&g, "lt-1", 4, Some("ami-new"));
        let lt = roots
            .mixed_instances_policy()
            .unwrap()
            .launch_template()
            .unwrap();
        assert_eq!(lt.overrides()[0].image_id(), Some("ami-new"));
    }

    #[test]
    fn a_group_with_a_refresh_stopping_process_suspended_is_refused_naming_it() {
        assert_eq!(suspension_refusal("web", &["AZRebalance".into()]), None);
        assert_eq!(
            suspension_note(&["Launch".into(), "AlarmNotification".into()]),
            None
        );
        let note = suspension_note(&["AZRebalance".into(), "HealthCheck".into()]).unwrap();
        assert!(
            note.starts_with("HealthCheck is suspended: Auto Scaling marks no instance unhealthy"),
            "{note}"
        );
        assert!(
            note.ends_with(
                "; AZRebalance is suspended: the zones are not rebalanced after the refresh"
            ),
            "{note}"
        );
        let one = suspension_refusal("web", &["Launch".into(), "AZRebalance".into()]).unwrap();
        assert!(one.starts_with("its Launch process is suspended"), "{one}");
        assert!(one.contains("--scaling-processes Launch)"), "{one}");
        let two =
            suspension_refusal("web", &["InstanceRefresh".into(), "Terminate".into()]).unwrap();
        assert!(
            two.starts_with("its Terminate and InstanceRefresh processes are suspended"),
            "{two}"
        );
    }
}
