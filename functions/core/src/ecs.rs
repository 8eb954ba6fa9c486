//! ECS reads more than one step makes: the clusters of an account-region, and a cluster's
//! container instances as the health check and the plan see them.

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
    pub ec2_instance_id: String,
    pub status: String,
    pub agent_connected: bool,
    pub ami: Option<String>,
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
                ec2_instance_id: c.ec2_instance_id().unwrap_or_default().to_string(),
                status: c.status().unwrap_or_default().to_string(),
                agent_connected: c.agent_connected(),
                ami: c
                    .attributes()
                    .iter()
                    .find(|a| a.name() == "ecs.ami-id")
                    .and_then(|a| a.value())
                    .map(str::to_string),
            }
        }));
    }
    Ok(views)
}
