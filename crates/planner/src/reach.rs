//! The accounts and regions a rollout reaches, and clients for each.

use rollout_core::FromSdk;

use rollout_core::config::Config;
use rollout_core::model::place_name;
use rollout_core::trigger::Overrides;
use rollout_core::{Clients, StepError, StepResult};

/// The accounts and regions this execution rolls out in. `None` is the home account or region,
/// named only when the reach has more than one of them, so a home-only rollout looks as it
/// always did and a wider one names every target's place.
#[derive(Debug, Clone, PartialEq)]
pub struct Reach {
    pub accounts: Vec<Option<String>>,
    pub regions: Vec<Option<String>>,
    /// Known when accounts are configured: that one is entered with the functions' own role.
    pub(crate) home_account: Option<String>,
}

impl Reach {
    /// The regions by name (the home one too).
    pub fn region_names(&self, clients: &Clients) -> Vec<String> {
        self.regions
            .iter()
            .map(|r| r.clone().unwrap_or_else(|| clients.region.clone()))
            .collect()
    }

    /// The configured reach, narrowed by a manual start's `accounts` and `regions`.
    pub async fn of(clients: &Clients, config: &Config, overrides: &Overrides) -> StepResult<Self> {
        let mut configured = config.accounts.clone();
        if !config.organizational_units.is_empty() {
            let conf = clients.sdk_config().ok_or_else(|| {
                StepError::invalid("no AWS configuration to list the organizational units")
            })?;
            let organizations = aws_sdk_organizations::Client::new(conf);
            for account in
                organization_accounts(&organizations, &config.organizational_units).await?
            {
                if !configured.contains(&account) {
                    configured.push(account);
                }
            }
        }
        let accounts = narrow(
            "account",
            "TARGET_ACCOUNTS",
            &configured,
            overrides.accounts.as_deref(),
            rollout_core::reach::validate_account,
        )?;
        let regions = narrow(
            "region",
            "TARGET_REGIONS",
            &config.regions,
            overrides.regions.as_deref(),
            rollout_core::reach::validate_region,
        )?;
        let home_account = if accounts.is_empty() {
            None
        } else {
            Some(clients.home_account().await?)
        };
        Ok(Self {
            accounts: named_unless_home(accounts, home_account.as_deref()),
            regions: named_unless_home(regions, Some(&clients.region)),
            home_account,
        })
    }

    /// Gets into every account of the reach and returns clients for every account and region.
    /// Accounts whose workload role refuses are named together, before anything changes.
    pub(crate) async fn enter(&self, clients: &Clients, execution: &str) -> StepResult<Vec<Place>> {
        let mut refused = Vec::new();
        let mut places = Vec::new();
        for account in &self.accounts {
            let credentials = match clients.credentials_for(account.as_deref(), execution).await {
                Ok(c) => c,
                Err(StepError::PreflightFailed { reason, .. }) => {
                    refused.push((account.clone().unwrap_or_default(), reason));
                    continue;
                }
                Err(other) => return Err(other),
            };
            for region in &self.regions {
                places.push(Place {
                    account: account.clone(),
                    region: region.clone(),
                    clients: clients.in_place(region.as_deref(), credentials.clone())?,
                });
            }
        }
        if !refused.is_empty() {
            return Err(StepError::PreflightFailed {
                group: refused
                    .iter()
                    .map(|(a, _)| format!("account {a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: refused
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        Ok(places)
    }
}

/// The active accounts of `units` and of every unit below them, in the order listed. Listing an
/// organization works only from its management account or a delegated administrator: a refusal
/// names the unit and says so, before anything changes.
pub async fn organization_accounts(
    organizations: &aws_sdk_organizations::Client,
    units: &[String],
) -> StepResult<Vec<String>> {
    use aws_sdk_organizations::types::AccountStatus;
    let refused = |unit: &str, err: StepError| match err {
        StepError::AwsRequestFailed { message, .. } => StepError::PreflightFailed {
            group: format!("organizational unit {unit}"),
            reason: format!(
                "its accounts could not be listed ({message}); listing works only from the organization's management account or a delegated administrator"
            ),
        },
        other => other,
    };
    let mut accounts = Vec::new();
    for unit in units {
        let mut pending = vec![unit.clone()];
        while let Some(parent) = pending.pop() {
            let mut pages = organizations
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| refused(unit, StepError::from_sdk("ListAccountsForParent", e)))?;
                for account in page.accounts() {
                    if account.status() == Some(&AccountStatus::Active)
                        && let Some(id) = account.id()
                        && !accounts.iter().any(|a| a == id)
                    {
                        accounts.push(id.to_string());
                    }
                }
            }
            let mut children = organizations
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = children.next().await {
                let page = page.map_err(|e| {
                    refused(
                        unit,
                        StepError::from_sdk("ListOrganizationalUnitsForParent", e),
                    )
                })?;
                pending.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|u| u.id().map(str::to_string)),
                );
            }
        }
    }
    if accounts.is_empty() {
        return Err(StepError::invalid(format!(
            "TARGET_ORGANIZATIONAL_UNITS ({}) hold no active account",
            units.join(", ")
        )));
    }
    Ok(accounts)
}

/// The configured values (the home one alone when none is configured), narrowed to `asked`.
pub(crate) fn narrow(
    what: &str,
    setting: &str,
    configured: &[String],
    asked: Option<&[String]>,
    check: impl Fn(&str) -> StepResult<()>,
) -> StepResult<Vec<String>> {
    let Some(asked) = asked else {
        return Ok(configured.to_vec());
    };
    let asked = rollout_core::config::checked(asked.to_vec(), check)?;
    if asked.is_empty() {
        return Err(StepError::invalid(format!("{what}s is empty")));
    }
    if configured.is_empty() {
        return Err(StepError::invalid(format!(
            "the start names {what}s, but {setting} is not set (nor, for accounts, TARGET_ORGANIZATIONAL_UNITS): this deployment rolls out in its own {what} only"
        )));
    }
    let outside: Vec<&String> = asked.iter().filter(|a| !configured.contains(a)).collect();
    if !outside.is_empty() {
        return Err(StepError::invalid(format!(
            "{what}(s) {} are not in {setting} ({})",
            outside
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            configured.join(", ")
        )));
    }
    Ok(asked)
}

/// `values` as places: all `None` (the home one) when the reach is the home one alone.
pub(crate) fn named_unless_home(values: Vec<String>, home: Option<&str>) -> Vec<Option<String>> {
    if values.is_empty() || (values.len() == 1 && Some(values[0].as_str()) == home) {
        vec![None]
    } else {
        values.into_iter().map(Some).collect()
    }
}

/// One account and region of the reach, with clients acting there.
pub struct Place {
    pub account: Option<String>,
    pub region: Option<String>,
    pub clients: Clients,
}

impl Place {
    pub(crate) fn name(&self, group: &str) -> String {
        place_name(self.account.as_deref(), self.region.as_deref(), group)
    }

    pub(crate) fn describe(&self) -> String {
        match (&self.account, &self.region) {
            (None, None) => "the home account and region".into(),
            (a, r) => format!(
                "account {} in {}",
                a.as_deref().unwrap_or("(home)"),
                r.as_deref().unwrap_or("the home region")
            ),
        }
    }
}
