//! The AMI of every place: found in each region, copied where missing, and checked to be
//! launchable by each workload account.

use std::collections::{BTreeMap, BTreeSet};

use crate::reach::{Place, Reach};
use aws_sdk_ec2::types::Image;
use rollout_core::ami::{self, describe_images, usable_ami};
use rollout_core::config::Config;
use rollout_core::keys;
use rollout_core::model::{Ami, AmiCopy, Epoch};
use rollout_core::trigger::AmiSource;
use rollout_core::{Clients, StepError, StepResult};

/// The AMI `source` names, read in the home region and checked usable (owner, state,
/// deprecation), with its image.
pub(crate) async fn approved_ami(
    clients: &Clients,
    config: &Config,
    source: &AmiSource,
    now: Epoch,
) -> StepResult<(Ami, Image)> {
    let ami_id = ami::resolve_source(clients, source).await?;
    let image = describe_images(clients, std::slice::from_ref(&ami_id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepError::AmiNotUsable {
            ami: ami_id.clone(),
            reason: "it does not exist in this account and region".into(),
        })?;
    Ok((usable_ami(&image, &config.allowed_ami_owners, now)?, image))
}

/// The AMI of every region of the reach (`None` key: the home region, the trigger's own AMI), or
/// `None` where no usable AMI was found. Looked for, in order: the Image Builder output for that
/// region, the SSM parameter of the same name there, an AMI of the same name and owner there.
pub(crate) async fn regional_amis(
    clients: &Clients,
    config: &Config,
    reach: &Reach,
    source: &AmiSource,
    ami: &Ami,
    now: Epoch,
) -> StepResult<BTreeMap<Option<String>, Option<Ami>>> {
    let mut amis = BTreeMap::new();
    for region in &reach.regions {
        let Some(name) = region.as_deref().filter(|r| *r != clients.region) else {
            amis.insert(region.clone(), Some(ami.clone()));
            continue;
        };
        let there = clients.in_place(Some(name), None)?;
        let found = ami::find_regional(&there, source, ami).await?;
        let usable = match found {
            Some(image) => Some(usable_ami(&image, &config.allowed_ami_owners, now)?),
            None => None,
        };
        amis.insert(region.clone(), usable);
    }
    Ok(amis)
}

/// Refuses, naming the regions and their targets, a plan with targets in a region where the AMI
/// was not found.
pub(crate) fn refuse_missing_amis(
    ami: &Ami,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    found: &[(&Place, Vec<String>)],
) -> StepResult<()> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (place, targets) in found {
        if let (Some(region), Some(None)) = (&place.region, regional.get(&place.region)) {
            let names = missing.entry(region.as_str()).or_default();
            names.extend(targets.iter().map(|t| place.name(t)));
        }
    }
    missing.retain(|_, names| !names.is_empty());
    if missing.is_empty() {
        return Ok(());
    }
    Err(StepError::AmiNotUsable {
        ami: ami.id.clone(),
        reason: missing
            .into_iter()
            .map(|(region, names)| {
                format!(
                    "no AMI named {:?} from owner {} in {region}, so its targets {} are refused",
                    ami.name,
                    ami.owner_id,
                    names.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The copies to make (`AMI_DISTRIBUTION=copy`): one per region with targets and no AMI, shared
/// with the workload accounts that have targets there. Such a copy must be encrypted with a
/// customer managed key of that region: the default EBS key cannot be shared.
pub(crate) fn plan_copies(
    clients: &Clients,
    config: &Config,
    reach: &Reach,
    ami: &Ami,
    regional: &BTreeMap<Option<String>, Option<Ami>>,
    found: &[(&Place, Vec<String>)],
    launching_groups: &BTreeSet<(Option<String>, String)>,
) -> StepResult<Vec<AmiCopy>> {
    let mut copies: BTreeMap<String, AmiCopy> = BTreeMap::new();
    for (place, targets) in found {
        let (Some(region), Some(None)) = (&place.region, regional.get(&place.region)) else {
            continue;
        };
        if targets.is_empty() {
            continue;
        }
        let copy = copies.entry(region.clone()).or_insert_with(|| AmiCopy {
            region: region.clone(),
            source: ami.clone(),
            source_region: clients.region.clone(),
            kms_key_id: config.copy_kms_keys.get(region).cloned(),
            accounts: Vec::new(),
            group_accounts: Some(Vec::new()),
            image_id: None,
            started_at: None,
        });
        if let Some(account) = &place.account
            && Some(account) != reach.home_account.as_ref()
            && !copy.accounts.contains(account)
        {
            copy.accounts.push(account.clone());
            if launching_groups.contains(&(place.region.clone(), account.clone()))
                && let Some(granted) = copy.group_accounts.as_mut()
            {
                granted.push(account.clone());
            }
        }
    }
    for copy in copies.values() {
        if copy.kms_key_id.is_none() && !copy.accounts.is_empty() {
            return Err(StepError::invalid(format!(
                "AMI_COPY_KMS_KEYS has no key for {}: its copy is shared with account(s) {}, and a copy encrypted with the default EBS key cannot be shared",
                copy.region,
                copy.accounts.join(", ")
            )));
        }
    }
    Ok(copies.into_values().collect())
}

/// Refuses a workload account that cannot see (and so cannot launch) its region's AMI.
/// The AMI `id` a build distributed to `place`'s account, checked there as the trigger's AMI is.
pub(crate) async fn account_ami(
    place: &Place,
    id: &str,
    config: &Config,
    now: Epoch,
) -> StepResult<Ami> {
    let image = describe_images(&place.clients, &[id.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepError::AmiNotUsable {
            ami: id.to_string(),
            reason: format!(
                "the build distributed it to {}, which cannot see it",
                place.describe()
            ),
        })?;
    usable_ami(&image, &config.allowed_ami_owners, now)
}

pub(crate) async fn ensure_launchable_there(place: &Place, ami: &Ami) -> StepResult<Image> {
    let seen = describe_images(&place.clients, std::slice::from_ref(&ami.id)).await?;
    seen.into_iter()
        .next()
        .ok_or_else(|| StepError::PreflightFailed {
            group: format!("account {}", place.account.as_deref().unwrap_or("?")),
            reason: format!(
                "{} cannot see {} ({}): share it with the account (launch permission, and the KMS key of its snapshots)",
                place.describe(),
                ami.id,
                ami.name
            ),
        })
}

/// Refuses a workload account that could see the AMI but not launch from it: its snapshots are
/// encrypted under a key the account (or, for groups, its Auto Scaling role) may not use. The
/// keys are read where the snapshots are visible, in the AMI's owner account when that is home.
pub(crate) async fn ensure_key_usable(
    clients: &Clients,
    place: &Place,
    account: &str,
    ami: &Ami,
    seen: &Image,
    launchers: keys::Launchers,
) -> StepResult<()> {
    if keys::encrypted_snapshots(seen).is_empty() {
        return Ok(());
    }
    let home = clients.home_account().await?;
    let owner = match ami.owner_id == home {
        true => Some(clients.in_place(place.region.as_deref(), None)?),
        false => None,
    };
    for key in keys::snapshot_keys(owner.as_ref(), seen).await? {
        let key_home = match keys::key_account(&key) == Some(home.as_str()) {
            true => Some(clients.in_place(keys::key_region(&key), None)?),
            false => None,
        };
        if let Some(reason) =
            keys::launch_refusal(&place.clients, key_home.as_ref(), account, &key, launchers)
                .await?
        {
            return Err(StepError::PreflightFailed {
                group: format!("account {account}"),
                reason: format!(
                    "{} ({}) in {}: {reason}",
                    ami.id,
                    ami.name,
                    place.describe()
                ),
            });
        }
    }
    Ok(())
}
