//! distribute-ami: copies the AMI into the regions of the reach that have none
//! (`AMI_DISTRIBUTION=copy`), waits for the copies, and shares them with the workload accounts
//! that roll them out. It runs after the holds and before the first wave; a copy that fails or
//! does not finish in time fails the execution before any target changes.
//!
//! Two actions, each one short call: `copy` starts every copy not started yet; `check` reads
//! them, and once all are available validates them, shares them (launch permission, and a KMS
//! grant on the copy's key for the Auto Scaling service-linked role of each workload account whose
//! groups launch from it: a key policy alone does not let that role launch from encrypted
//! snapshots), and writes each copy's id into
//! the wave objects of its region's targets. The state machine waits between checks.
//!
//! It also bakes the AMI when a start asks for one from an instance (`bake`, `bakeStatus`:
//! see `bake`), before the plan is made.

pub mod bake;

use aws_sdk_ec2::types::{ImageState, LaunchPermission, LaunchPermissionModifications};
use rollout_core::FromSdk;
use rollout_core::ami::{describe_images, usable_ami};
use rollout_core::config::Config;
use rollout_core::keys::{GRANT_OPERATIONS, autoscaling_role};
use rollout_core::model::{Ami, AmiCopy, Epoch, Plan, PlanSummary, Target};
use rollout_core::reach::fnv1a;
use rollout_core::{Clients, StepError, StepResult};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum DistributeRequest {
    /// Starts every copy of the plan not started yet.
    Copy {
        execution: String,
        plan: Box<PlanSummary>,
    },
    /// Reads the copies; once all are available, shares them and writes them into the waves.
    Check {
        execution: String,
        plan: Box<PlanSummary>,
    },
    /// Bakes the trigger's AMI from its instance (`createImageFrom`).
    Bake {
        /// The execution's name (the image's) and ARN (its tag).
        execution: String,
        #[serde(rename = "executionArn")]
        execution_arn: String,
        trigger: Value,
    },
    /// Reads the bake.
    BakeStatus {
        execution: String,
        bake: rollout_core::trigger::Baked,
    },
}

pub async fn handle(clients: &Clients, payload: Value) -> StepResult<Value> {
    let now = rollout_core::clock::now();
    let out = match rollout_core::error::parse_input("distribute-ami", payload)? {
        DistributeRequest::Copy { execution, plan } => {
            serde_json::to_value(copy(clients, &execution, *plan, now).await?)
        }
        DistributeRequest::Check { execution, plan } => {
            let config = Config::from_env()?;
            let (plan, _) =
                check(clients, &config, *plan, now, config.copy_timeout_seconds).await?;
            tracing::info!(execution, pending = plan.copies.len(), "copies checked");
            serde_json::to_value(plan)
        }
        DistributeRequest::Bake {
            execution,
            execution_arn,
            trigger,
        } => serde_json::to_value(
            bake::bake(clients, &execution, &execution_arn, &trigger, now).await?,
        ),
        DistributeRequest::BakeStatus { execution, bake } => {
            let baked = bake::status(clients, bake, now).await?;
            tracing::info!(execution, image = %baked.image_id, pending = baked.pending, "bake checked");
            serde_json::to_value(baked)
        }
    };
    out.map_err(|e| StepError::invalid(format!("distribute-ami output: {e}")))
}

/// The copy's idempotency token: a retry or a redrive of the same execution gets the same copy.
pub fn client_token(execution: &str, region: &str) -> String {
    format!(
        "ami-rollout-{:016x}",
        fnv1a(&format!("{execution}#{region}"))
    )
}

/// Starts the copies not started yet.
pub async fn copy(
    clients: &Clients,
    execution: &str,
    mut plan: PlanSummary,
    now: Epoch,
) -> StepResult<PlanSummary> {
    for copy in plan.copies.iter_mut().filter(|c| c.image_id.is_none()) {
        let there = clients.in_place(Some(&copy.region), None)?;
        let image = start_copy(&there, copy, execution).await?;
        tracing::info!(
            region = copy.region,
            source = copy.source.id,
            image,
            "copy started"
        );
        copy.image_id = Some(image);
        copy.started_at = Some(now);
    }
    Ok(plan)
}

async fn start_copy(there: &Clients, copy: &AmiCopy, execution: &str) -> StepResult<String> {
    let started = there
        .ec2
        .copy_image()
        .source_region(&copy.source_region)
        .source_image_id(&copy.source.id)
        .name(&copy.source.name)
        .description(
            format!(
                "{} ({} in {}), copied by ami-rollout",
                copy.source.name, copy.source.id, copy.source_region
            )
            .chars()
            .take(255)
            .collect::<String>(),
        )
        .encrypted(true)
        .set_kms_key_id(copy.kms_key_id.clone())
        .copy_image_tags(true)
        .client_token(client_token(execution, &copy.region))
        .send()
        .await;
    match started {
        Ok(out) => out
            .image_id()
            .map(str::to_string)
            .ok_or_else(|| StepError::AwsRequestFailed {
                operation: "CopyImage".into(),
                message: format!("{}: no image id in the answer", copy.region),
            }),
        // AMI names are unique per owner and region: another execution copied it meanwhile.
        Err(err)
            if err
                .as_service_error()
                .and_then(aws_smithy_types::error::metadata::ProvideErrorMetadata::code)
                == Some("InvalidAMIName.Duplicate") =>
        {
            same_name(there, &copy.source)
                .await?
                .ok_or_else(|| StepError::AmiNotUsable {
                    ami: copy.source.id.clone(),
                    reason: format!(
                        "an AMI named {:?} exists in {} but this account cannot see it",
                        copy.source.name, copy.region
                    ),
                })
        }
        Err(err) => Err(StepError::from_sdk("CopyImage", err)),
    }
}

async fn same_name(there: &Clients, ami: &Ami) -> StepResult<Option<String>> {
    let out = there
        .ec2
        .describe_images()
        .owners("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values(&ami.name)
                .build(),
        )
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeImages", e))?;
    Ok(out
        .images()
        .first()
        .and_then(|i| i.image_id())
        .map(str::to_string))
}

/// Where a copy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    Pending,
    Available,
    Failed(String),
}

/// Decides a copy from what EC2 says of it (`None`: EC2 does not know it any more).
pub fn copy_state(
    copy: &AmiCopy,
    state: Option<(&ImageState, Option<&str>)>,
    now: Epoch,
    timeout: i64,
) -> CopyState {
    let image = copy.image_id.as_deref().unwrap_or("?");
    match state {
        Some((ImageState::Available, _)) => CopyState::Available,
        Some((ImageState::Pending, _)) => {
            let waited = now - copy.started_at.unwrap_or(now);
            if waited > timeout {
                CopyState::Failed(format!(
                    "its copy {image} to {} is still pending after {waited} s (AMI_COPY_TIMEOUT_SECONDS is {timeout})",
                    copy.region
                ))
            } else {
                CopyState::Pending
            }
        }
        Some((state, reason)) => CopyState::Failed(format!(
            "its copy {image} to {} is {state}{}",
            copy.region,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
        None => CopyState::Failed(format!(
            "its copy {image} to {} no longer exists",
            copy.region
        )),
    }
}

/// Reads every copy. While one is pending, returns the plan unchanged (and `false`); once all
/// are available, validates, shares and writes them into the waves, and returns the plan with
/// no copies left (and `true`). A failed or late copy is `AmiNotUsable` naming the region.
pub async fn check(
    clients: &Clients,
    config: &Config,
    mut plan: PlanSummary,
    now: Epoch,
    timeout: i64,
) -> StepResult<(PlanSummary, bool)> {
    let mut copied = Vec::new();
    for copy in &plan.copies {
        let image_id = copy.image_id.clone().ok_or_else(|| {
            StepError::invalid(format!("the copy to {} was never started", copy.region))
        })?;
        let there = clients.in_place(Some(&copy.region), None)?;
        let image = describe_images(&there, std::slice::from_ref(&image_id))
            .await?
            .into_iter()
            .next();
        let state = image.as_ref().and_then(|i| {
            i.state()
                .map(|s| (s, i.state_reason().and_then(|r| r.message())))
        });
        match copy_state(copy, state, now, timeout) {
            CopyState::Pending => return Ok((plan, false)),
            CopyState::Failed(reason) => {
                return Err(StepError::AmiNotUsable {
                    ami: copy.source.id.clone(),
                    reason,
                });
            }
            CopyState::Available => {
                let image = image.expect("an available copy was described");
                let ami = usable_ami(&image, &config.allowed_ami_owners, now)?;
                share(&there, copy, &ami).await?;
                copied.push((copy.region.clone(), ami));
            }
        }
    }
    write_into_waves(clients, &plan, &copied).await?;
    plan.regional_amis.extend(copied);
    plan.copies.clear();
    Ok((plan, true))
}

/// Lets the workload accounts launch from the copy: a launch permission, and a grant on its key
/// for their Auto Scaling service-linked role.
async fn share(there: &Clients, copy: &AmiCopy, ami: &Ami) -> StepResult<()> {
    if copy.accounts.is_empty() {
        return Ok(());
    }
    there
        .ec2
        .modify_image_attribute()
        .image_id(&ami.id)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .set_add(Some(
                    copy.accounts
                        .iter()
                        .map(|a| LaunchPermission::builder().user_id(a).build())
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .map_err(|e| StepError::from_sdk("ModifyImageAttribute", e))?;
    let Some(key) = &copy.kms_key_id else {
        return Ok(());
    };
    let kms = there.kms()?;
    // CreateGrant takes a key id or ARN, never an alias: resolve what was configured.
    let key = kms
        .describe_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeKey", e))?
        .key_metadata()
        .map(|k| k.arn().unwrap_or(k.key_id()).to_string())
        .unwrap_or_else(|| key.clone());
    for account in copy.granted_accounts() {
        kms.create_grant()
            .key_id(&key)
            .grantee_principal(autoscaling_role(account, &copy.region))
            .set_operations(Some(GRANT_OPERATIONS.to_vec()))
            // A retry with the same name and parameters gets the same grant back.
            .name(format!("ami-rollout-{account}"))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("CreateGrant", e))?;
    }
    tracing::info!(region = copy.region, image = ami.id, accounts = ?copy.accounts, "copy shared");
    Ok(())
}

/// A target of a workload account that launches an AMI its own account owns (one an Image
/// Builder build distributed to it): a copy made for its region is not for it.
fn has_own_ami(target: &Target) -> bool {
    target.account.as_deref() == Some(target.ami.owner_id.as_str())
}

/// Puts each region's copy on its targets in the lane objects and in the plan object.
async fn write_into_waves(
    clients: &Clients,
    plan: &PlanSummary,
    copied: &[(String, Ami)],
) -> StepResult<()> {
    let store = clients.store()?;
    let copy_for = |region: Option<&str>| {
        copied
            .iter()
            .find(|(r, _)| Some(r.as_str()) == region)
            .map(|(_, ami)| ami.clone())
    };
    for wave in &plan.waves {
        for lane in store.lanes(&plan.bucket, &wave.key).await? {
            let Some(ami) = copy_for(lane.region.as_deref()) else {
                continue;
            };
            let mut targets: Vec<Target> = store.get_json(&plan.bucket, &lane.key).await?;
            for target in targets.iter_mut().filter(|t| !has_own_ami(t)) {
                target.ami = ami.clone();
            }
            store.put_json(&lane.key, &targets).await?;
        }
    }
    let mut full: Plan = store.get_json(&plan.bucket, &plan.key).await?;
    for wave in &mut full.waves {
        for target in wave.iter_mut().filter(|t| !has_own_ami(t)) {
            if let Some(ami) = copy_for(target.region.as_deref()) {
                target.ami = ami;
            }
        }
    }
    full.regional_amis.extend(copied.iter().cloned());
    store.put_json(&plan.key, &full).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_copy(started_at: Epoch) -> AmiCopy {
        AmiCopy {
            region: "eu-west-1".into(),
            source: rollout_core::samples::target_run().ami,
            source_region: "us-east-1".into(),
            kms_key_id: Some("arn:aws:kms:eu-west-1:123456789012:key/k".into()),
            accounts: vec!["111111111111".into()],
            group_accounts: Some(vec!["111111111111".into()]),
            image_id: Some("ami-0000000000000c0c0".into()),
            started_at: Some(started_at),
        }
    }

    #[test]
    fn a_copy_is_waited_for_until_its_deadline_and_any_other_end_fails_it() {
        let copy = a_copy(1_000);
        let pending = Some((&ImageState::Pending, None));
        assert_eq!(
            copy_state(&copy, pending, 1_000 + 3_600, 3_600),
            CopyState::Pending
        );
        let CopyState::Failed(late) = copy_state(&copy, pending, 1_000 + 3_601, 3_600) else {
            panic!("a late copy must fail");
        };
        assert!(late.contains("still pending after 3601 s"), "{late}");
        assert_eq!(
            copy_state(&copy, Some((&ImageState::Available, None)), 9_999_999, 60),
            CopyState::Available
        );
        let CopyState::Failed(failed) = copy_state(
            &copy,
            Some((&ImageState::Failed, Some("Copy failed: snapshot error"))),
            1_001,
            3_600,
        ) else {
            panic!("a failed copy must fail");
        };
        assert_eq!(
            failed,
            "its copy ami-0000000000000c0c0 to eu-west-1 is failed: Copy failed: snapshot error"
        );
        assert!(
            matches!(copy_state(&copy, None, 1_001, 3_600), CopyState::Failed(r) if r.contains("no longer exists"))
        );
    }

    #[test]
    fn only_a_target_on_its_own_accounts_ami_keeps_it_when_its_region_gets_a_copy() {
        let mut target = rollout_core::samples::target_run().target;
        target.account = Some("111111111111".into());
        target.ami.owner_id = "123456789012".into();
        assert!(
            !has_own_ami(&target),
            "the shared AMI of the central account"
        );
        target.ami.owner_id = "111111111111".into();
        assert!(
            has_own_ami(&target),
            "an Image Builder distribution to the account"
        );
        target.account = None;
        assert!(!has_own_ami(&target), "a target of the home account");
    }

    #[test]
    fn tokens_are_per_execution_and_region_and_fit_ec2s_limit() {
        let a = client_token("arn:aws:states:us-east-1:1:execution:m:e1", "eu-west-1");
        assert_eq!(
            a,
            client_token("arn:aws:states:us-east-1:1:execution:m:e1", "eu-west-1")
        );
        assert_ne!(
            a,
            client_token("arn:aws:states:us-east-1:1:execution:m:e1", "eu-west-2")
        );
        assert_ne!(
            a,
            client_token("arn:aws:states:us-east-1:1:execution:m:e2", "eu-west-1")
        );
        assert!(a.len() <= 64 && a.is_ascii());
    }

    #[test]
    fn the_grant_goes_to_each_accounts_auto_scaling_role() {
        assert_eq!(
            autoscaling_role("111111111111", "eu-west-1"),
            "arn:aws:iam::111111111111:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
        );
        assert_eq!(GRANT_OPERATIONS.len(), 8);
    }
}
