//! ECS reads and writes more than one step makes: the clusters of an account-region, a cluster's
//! container instances as the health check and the plan see them, and the container identity of a
//! standalone instance across a root volume replacement.
//!
//! The ECS agent keeps its container instance's identity on the root volume. A fresh root from an
//! AMI has none, so the agent registers a new container instance; the one it was before stays
//! registered, disconnected, until it is deregistered. A root put back carries its old identity,
//! and the agent connects as that container instance again, as long as it is still registered:
//! so the identity of a replaced root is deregistered only with the root, once the rollout has
//! succeeded.

use crate::error::FromSdk;
use aws_sdk_ecs::types::ContainerInstanceStatus;

use crate::aws::Clients;
use crate::error::{StepError, StepResult};

/// Every cluster's ARN.
pub async fn cluster_arns(clients: &Clients) -> StepResult<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = clients.ecs.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        arns.extend(
            page.map_err(|e| StepError::from_sdk("ListClusters", e))?
                .cluster_arns()
                .iter()
                .cloned(),
        );
    }
    Ok(arns)
}

/// A container instance as the checks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInstanceView {
    pub arn: String,
    pub ec2_instance_id: String,
    pub status: String,
    pub agent_connected: bool,
    pub ami: Option<String>,
    /// Tasks in the RUNNING state on it, daemon tasks and tasks no service started included.
    pub running_tasks: i32,
    pub registered_at: Option<crate::model::Epoch>,
}

/// A cluster's container instances, with their EC2 instance, status, agent and AMI.
pub async fn container_instances(
    clients: &Clients,
    cluster: &str,
) -> StepResult<Vec<ContainerInstanceView>> {
    let mut arns = Vec::new();
    let mut pages = clients
        .ecs
        .list_container_instances()
        .cluster(cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        arns.extend(
            page.map_err(|e| StepError::from_sdk("ListContainerInstances", e))?
                .container_instance_arns()
                .iter()
                .cloned(),
        );
    }
    let mut views = Vec::new();
    for chunk in arns.chunks(100) {
        let out = clients
            .ecs
            .describe_container_instances()
            .cluster(cluster)
            .set_container_instances(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeContainerInstances", e))?;
        views.extend(out.container_instances().iter().map(|c| {
            ContainerInstanceView {
                arn: c.container_instance_arn().unwrap_or_default().to_string(),
                ec2_instance_id: c.ec2_instance_id().unwrap_or_default().to_string(),
                status: c.status().unwrap_or_default().to_string(),
                agent_connected: c.agent_connected(),
                ami: c
                    .attributes()
                    .iter()
                    .find(|a| a.name() == "ecs.ami-id")
                    .and_then(|a| a.value())
                    .map(str::to_string),
                running_tasks: c.running_tasks_count(),
                registered_at: c.registered_at().map(|t| t.secs()),
            }
        }));
    }
    Ok(views)
}

/// An EC2 instance's container instances in one cluster, as its agent stands now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The container instance its agent is connected as (the one on `ami`, if two are).
    pub live: Option<ContainerInstanceView>,
    /// The ones it was before, with no agent connected: left by roots it no longer has.
    pub stale: Vec<ContainerInstanceView>,
}

/// Splits the container instances of `ec2_instance_id` among `views` into the live one and the
/// stale ones. Only meaningful while the instance is up: during a reboot every one is disconnected.
pub fn identity(views: &[ContainerInstanceView], ec2_instance_id: &str, ami: &str) -> Identity {
    let mut mine: Vec<&ContainerInstanceView> = views
        .iter()
        .filter(|v| v.ec2_instance_id == ec2_instance_id)
        .collect();
    mine.sort_by_key(|v| (!v.agent_connected, v.ami.as_deref() != Some(ami)));
    let live = mine
        .first()
        .filter(|v| v.agent_connected)
        .map(|v| (*v).clone());
    Identity {
        stale: mine
            .iter()
            .filter(|v| !v.agent_connected)
            .map(|v| (*v).clone())
            .collect(),
        live,
    }
}

/// The container instances of one EC2 instance in `cluster`.
pub async fn of_instance(
    clients: &Clients,
    cluster: &str,
    ec2_instance_id: &str,
) -> StepResult<Vec<ContainerInstanceView>> {
    Ok(container_instances(clients, cluster)
        .await?
        .into_iter()
        .filter(|v| v.ec2_instance_id == ec2_instance_id)
        .collect())
}

/// Sets a container instance `DRAINING` (ECS moves its service tasks elsewhere and places none
/// there) or `ACTIVE` again.
pub async fn set_status(
    clients: &Clients,
    cluster: &str,
    arn: &str,
    draining: bool,
) -> StepResult<()> {
    let status = if draining {
        ContainerInstanceStatus::Draining
    } else {
        ContainerInstanceStatus::Active
    };
    let out = clients
        .ecs
        .update_container_instances_state()
        .cluster(cluster)
        .container_instances(arn)
        .status(status)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("UpdateContainerInstancesState", e))?;
    match out.failures().first() {
        None => Ok(()),
        Some(f) => Err(StepError::AwsRequestFailed {
            operation: "UpdateContainerInstancesState".into(),
            message: format!(
                "{arn}: {} {}",
                f.reason().unwrap_or("refused"),
                f.detail().unwrap_or_default()
            ),
        }),
    }
}

/// Deregisters a container instance whose root is gone. Forced: the tasks ECS may still count on
/// it stopped with the reboot that took its root away.
pub async fn deregister(clients: &Clients, cluster: &str, arn: &str) -> StepResult<()> {
    clients
        .ecs
        .deregister_container_instance()
        .cluster(cluster)
        .container_instance(arn)
        .force(true)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DeregisterContainerInstance", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(arn: &str, ec2: &str, connected: bool, ami: &str) -> ContainerInstanceView {
        ContainerInstanceView {
            arn: arn.into(),
            ec2_instance_id: ec2.into(),
            status: "ACTIVE".into(),
            agent_connected: connected,
            ami: Some(ami.into()),
            running_tasks: 0,
            registered_at: None,
        }
    }

    #[test]
    fn a_new_root_leaves_the_old_identity_stale_beside_the_live_one() {
        let views = [
            view("ci/old", "i-1", false, "ami-old"),
            view("ci/new", "i-1", true, "ami-new"),
            view("ci/other", "i-2", true, "ami-old"),
        ];
        let found = identity(&views, "i-1", "ami-new");
        assert_eq!(found.live.map(|v| v.arn).as_deref(), Some("ci/new"));
        assert_eq!(
            found
                .stale
                .iter()
                .map(|v| v.arn.as_str())
                .collect::<Vec<_>>(),
            ["ci/old"]
        );
    }

    #[test]
    fn an_instance_whose_agent_is_down_has_no_live_identity() {
        let views = [view("ci/old", "i-1", false, "ami-old")];
        let found = identity(&views, "i-1", "ami-new");
        assert_eq!(found.live, None);
        assert_eq!(found.stale.len(), 1);
        assert_eq!(identity(&views, "i-9", "ami-new"), Identity::default());
    }
}
