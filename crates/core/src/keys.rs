//! Encrypted AMIs: the KMS keys their snapshots are encrypted with, and whether an account can
//! launch from them.
//!
//! An instance gets its volumes from the AMI's snapshots, and a snapshot encrypted under a
//! customer managed key yields a volume only for a principal that may use the key: Auto Scaling's
//! service-linked role for a group's launches, the caller (the workload role, through EC2) for a
//! root volume replacement. Across accounts the key's policy must let the account, and the
//! service-linked role (whose AWS managed policy grants no KMS action) needs a grant on the key
//! (Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted volumes"; KMS
//! Developer Guide, "Allowing users in other accounts to use a KMS key").

use crate::error::FromSdk;
use std::collections::BTreeSet;

use aws_sdk_ec2::types::Image;
use aws_sdk_kms::types::{GrantOperation, KeyState};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::Clients;
use crate::error::{StepError, StepResult};
use crate::reach::partition;

/// The role Auto Scaling launches with in each account.
pub const AUTOSCALING_SERVICE_ROLE: &str =
    "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";

/// What a grant gives Auto Scaling's role on the key (Auto Scaling User Guide, the grant of
/// "Required AWS KMS key policy for use with encrypted volumes").
pub const GRANT_OPERATIONS: [GrantOperation; 8] = [
    GrantOperation::Encrypt,
    GrantOperation::Decrypt,
    GrantOperation::ReEncryptFrom,
    GrantOperation::ReEncryptTo,
    GrantOperation::GenerateDataKey,
    GrantOperation::GenerateDataKeyWithoutPlaintext,
    GrantOperation::DescribeKey,
    GrantOperation::CreateGrant,
];

/// What EBS needs on a key to build a volume from a snapshot encrypted under it (EBS User Guide,
/// "Permissions for IAM users"): a grant without one of these launches nothing.
pub const VOLUME_OPERATIONS: [GrantOperation; 6] = [
    GrantOperation::CreateGrant,
    GrantOperation::Decrypt,
    GrantOperation::DescribeKey,
    GrantOperation::GenerateDataKeyWithoutPlaintext,
    GrantOperation::ReEncryptFrom,
    GrantOperation::ReEncryptTo,
];

/// The Auto Scaling service-linked role of `account`.
pub fn autoscaling_role(account: &str, region: &str) -> String {
    format!(
        "arn:{}:iam::{account}:role/{AUTOSCALING_SERVICE_ROLE}",
        partition(region)
    )
}

/// The account a key ARN names (`None`: not a key ARN).
pub fn key_account(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    (parts.len() == 6 && parts[2] == "kms").then(|| parts[4])
}

/// The region a key ARN names.
pub fn key_region(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    (parts.len() == 6 && parts[2] == "kms").then(|| parts[3])
}

/// The encrypted snapshots of `image`, with the key EC2 names for each where it names one.
pub fn encrypted_snapshots(image: &Image) -> Vec<(String, Option<String>)> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs())
        .filter(|ebs| ebs.encrypted() == Some(true))
        .filter_map(|ebs| {
            let snapshot = ebs.snapshot_id()?.to_string();
            Some((snapshot, ebs.kms_key_id().map(str::to_string)))
        })
        .collect()
}

/// The keys `image`'s encrypted snapshots are encrypted with. `owner`: clients of the image's
/// owner in its region, where the snapshots can be described (another account's snapshots are
/// not visible unless shared), or `None`; a key that cannot be learned is left out and logged.
pub async fn snapshot_keys(owner: Option<&Clients>, image: &Image) -> StepResult<Vec<String>> {
    let mut keys = BTreeSet::new();
    let mut unknown = Vec::new();
    for (snapshot, key) in encrypted_snapshots(image) {
        match key {
            Some(key) => {
                keys.insert(key);
            }
            None => unknown.push(snapshot),
        }
    }
    match (owner, unknown.is_empty()) {
        (_, true) => {}
        (Some(owner), false) => {
            let out = owner
                .ec2
                .describe_snapshots()
                .set_snapshot_ids(Some(unknown))
                .send()
                .await
                .map_err(|e| StepError::from_sdk("DescribeSnapshots", e))?;
            keys.extend(
                out.snapshots()
                    .iter()
                    .filter_map(|s| s.kms_key_id().map(str::to_string)),
            );
        }
        (None, false) => tracing::warn!(
            image = image.image_id(),
            snapshots = ?unknown,
            "the keys of the AMI's encrypted snapshots cannot be read from this account: not checked"
        ),
    }
    Ok(keys.into_iter().collect())
}

/// What launches from an AMI in one account-region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launchers {
    /// Auto Scaling groups: their service-linked role builds the volumes, with a grant.
    pub groups: bool,
    /// Standalone instances: the workload role has the root built through EC2, with the key
    /// policy's leave.
    pub instances: bool,
}

/// Why the targets of `account` cannot launch from snapshots encrypted under `key`, or `None`.
///
/// `there`: clients of the account (its workload role); `home`: clients of the key's own
/// account when it is the home one, where the key and its grants are read (its policy lets the
/// home account's IAM decide); another account's key is read as the workload account.
pub async fn launch_refusal(
    there: &Clients,
    home: Option<&Clients>,
    account: &str,
    key: &str,
    launchers: Launchers,
) -> StepResult<Option<String>> {
    let reader = home.unwrap_or(there);
    let state = match describe(reader, key).await? {
        Ok(state) => state,
        Err(code) => {
            return Ok(Some(match home {
                Some(_) => format!(
                    "the KMS key {key} its snapshots are encrypted with cannot be read ({code})"
                ),
                None => format!(
                    "account {account} may not use the KMS key {key} its snapshots are encrypted with ({code}): the key policy must let the account use it"
                ),
            }));
        }
    };
    if state != KeyState::Enabled {
        return Ok(Some(format!(
            "the KMS key {key} its snapshots are encrypted with is {state}: no instance can launch from them"
        )));
    }
    if launchers.instances
        && home.is_some()
        && let Err(code) = describe(there, key).await?
    {
        return Ok(Some(format!(
            "account {account} may not use the KMS key {key} its snapshots are encrypted with ({code}): a root volume replacement builds the new root with the workload role's rights, so the key policy must let the account use the key (kms:Decrypt, ReEncrypt*, GenerateDataKeyWithoutPlaintext, CreateGrant, DescribeKey)"
        )));
    }
    // A key of the account's own may name Auto Scaling's role in its policy instead of a grant:
    // only another account's key needs one.
    if !launchers.groups || key_account(key) == Some(account) {
        return Ok(None);
    }
    let region = key_region(key).unwrap_or(&there.region);
    let role = autoscaling_role(account, region);
    let operations: Vec<&str> = GRANT_OPERATIONS
        .iter()
        .map(GrantOperation::as_str)
        .collect();
    let create = format!(
        "aws kms create-grant --region {region} --key-id {key} --grantee-principal {role} --operations {}",
        operations.join(" ")
    );
    Ok(match granted(reader, key, &role).await? {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "Auto Scaling's role in account {account} has no grant on the KMS key {key} its snapshots are encrypted with, so every launch fails: {create}"
        )),
        Err(code) => Some(format!(
            "the grants of the KMS key {key} its snapshots are encrypted with cannot be read from account {account} ({code}), so whether Auto Scaling may launch there is unknown: let the account list them (kms:ListGrants in the key policy), or make sure of the grant and leave the account out of this rollout; the grant: {create}"
        )),
    })
}

/// The key's state as `clients` see it, or the code KMS refused them with.
async fn describe(clients: &Clients, key: &str) -> StepResult<Result<KeyState, String>> {
    let kms = clients.kms()?;
    match kms.describe_key().key_id(key).send().await {
        Ok(out) => Ok(Ok(out
            .key_metadata()
            .and_then(|k| k.key_state())
            .cloned()
            .unwrap_or_else(|| KeyState::from("Unknown")))),
        Err(err) => match err.as_service_error().and_then(|e| e.code()) {
            Some(code @ ("AccessDeniedException" | "NotFoundException")) => Ok(Err(code.into())),
            _ => Err(StepError::from_sdk("DescribeKey", err)),
        },
    }
}

/// Whether `grantee`'s grants on `key` give together what EBS needs to build volumes
/// (VOLUME_OPERATIONS), or the code KMS refused the listing with.
async fn granted(clients: &Clients, key: &str, grantee: &str) -> StepResult<Result<bool, String>> {
    let kms = clients.kms()?;
    let mut given = Vec::new();
    let mut marker = None;
    loop {
        let listed = kms
            .list_grants()
            .key_id(key)
            .grantee_principal(grantee)
            .set_marker(marker)
            .send()
            .await;
        let out = match listed {
            Ok(out) => out,
            Err(err) => match err.as_service_error().and_then(|e| e.code()) {
                Some(code @ ("AccessDeniedException" | "NotFoundException")) => {
                    return Ok(Err(code.into()));
                }
                _ => return Err(StepError::from_sdk("ListGrants", err)),
            },
        };
        given.extend(out.grants().iter().flat_map(|g| g.operations().to_vec()));
        match out.next_marker() {
            Some(next) if out.truncated() => marker = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(Ok(VOLUME_OPERATIONS
        .iter()
        .all(|needed| given.contains(needed))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice};

    #[test]
    fn a_key_arn_names_its_account_and_region() {
        let key = "arn:aws:kms:eu-west-1:123456789012:key/1234";
        assert_eq!(key_account(key), Some("123456789012"));
        assert_eq!(key_region(key), Some("eu-west-1"));
        assert_eq!(key_account("alias/x"), None);
    }

    #[test]
    fn only_encrypted_snapshots_are_read() {
        let ebs = |id: &str, encrypted: bool, key: Option<&str>| {
            BlockDeviceMapping::builder()
                .ebs(
                    EbsBlockDevice::builder()
                        .snapshot_id(id)
                        .encrypted(encrypted)
                        .set_kms_key_id(key.map(str::to_string))
                        .build(),
                )
                .build()
        };
        let image = Image::builder()
            .block_device_mappings(ebs("snap-1", true, Some("k")))
            .block_device_mappings(ebs("snap-2", false, None))
            .block_device_mappings(ebs("snap-3", true, None))
            .build();
        assert_eq!(
            encrypted_snapshots(&image),
            vec![
                ("snap-1".to_string(), Some("k".to_string())),
                ("snap-3".to_string(), None)
            ]
        );
    }

    #[test]
    fn the_auto_scaling_role_is_per_partition() {
        assert_eq!(
            autoscaling_role("111111111111", "cn-north-1"),
            "arn:aws-cn:iam::111111111111:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
        );
    }
}
