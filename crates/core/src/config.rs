//! Configuration from the environment, as the SAM template sets it on every function.

use crate::error::{StepError, StepResult};
use crate::model::RollbackScope;
use crate::reach;
use crate::settings::SettingsMap;

pub const DEFAULT_TARGET_TAG: &str = "ami-rollout:enabled=true";
pub const DEFAULT_MAX_CONCURRENCY: u32 = 5;
/// The most groups refreshed at once within a wave (child executions of its Distributed Map, which
/// could run 10,000): Auto Scaling shares one throttle bucket per account and region, and every
/// running group polls it.
pub const MAX_CONCURRENCY_LIMIT: u32 = 1_000;
/// How long a copy may stay pending when `AMI_COPY_TIMEOUT_SECONDS` is not set.
pub const DEFAULT_COPY_TIMEOUT_SECONDS: i64 = 2 * 3600;
/// How long the plans bucket keeps an execution's objects when `PLAN_RETENTION_DAYS` is not set
/// (the template's PlanRetentionDays default).
pub const DEFAULT_PLAN_RETENTION_DAYS: u32 = 35;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `key=value`; groups carrying it are targets. Empty when `TARGET_TAG` is set to "".
    pub target_tag: Option<(String, String)>,
    /// Groups named explicitly (`TARGET_ASGS`), in addition to the tag.
    pub target_asgs: Vec<String>,
    pub excluded_asgs: Vec<String>,
    /// Standalone instances named explicitly (`TARGET_INSTANCES`, ids or Name tags), in addition
    /// to the running instances carrying the target tag.
    pub target_instances: Vec<String>,
    /// Instances never rolled out (`EXCLUDED_INSTANCES`, ids or Name tags).
    pub excluded_instances: Vec<String>,
    /// How many standalone instances of one account-region have their root replaced at once
    /// (`INSTANCE_MAX_CONCURRENCY`, default 1: each replacement reboots its instance).
    pub instance_concurrency: u32,
    /// Per-target settings, from the settings document (`store::SETTINGS_KEY`): too large for
    /// the functions' environment, which AWS caps at 4 KB.
    pub settings: SettingsMap,
    /// The settings document's object version these settings came from (pinned in each plan).
    pub settings_version: Option<String>,
    pub allowed_ami_owners: Vec<String>,
    pub rollback_scope: RollbackScope,
    pub max_concurrency: u32,
    /// Accounts to roll out in (`TARGET_ACCOUNTS`); empty: the home account only.
    pub accounts: Vec<String>,
    /// Organizational units (`TARGET_ORGANIZATIONAL_UNITS`, `ou-…` or a root `r-…`) whose active
    /// accounts, in child units too, are listed at plan time and rolled out in, beside
    /// `TARGET_ACCOUNTS`.
    pub organizational_units: Vec<String>,
    /// Regions to roll out in (`TARGET_REGIONS`); empty: the home region only.
    pub regions: Vec<String>,
    /// `AMI_DISTRIBUTION`: what to do for a region of the reach where no AMI stands for the
    /// trigger's: refuse its targets (`find`, default) or copy the AMI there (`copy`).
    pub copy_missing_amis: bool,
    /// `AMI_COPY_KMS_KEYS`: `{"<region>": "<key id, ARN or alias>"}`, the key each region's copy is
    /// encrypted with. A copy shared with another account needs one (the default EBS key cannot be
    /// shared).
    pub copy_kms_keys: std::collections::BTreeMap<String, String>,
    /// `IMAGE_BUILDER_PIPELINES`: the Image Builder pipelines (ARNs) whose images roll out. An image
    /// any other pipeline built is ignored; with none configured, every image is.
    pub image_builder_pipelines: Vec<String>,
    /// The SSM parameters this deployment follows (`FOLLOWED_PARAMETERS`: AmiParameterNames and
    /// PublicAmiParameter): a trigger naming another has nothing to do here. Empty: any.
    pub followed_parameters: Vec<String>,
    /// `AMI_COPY_TIMEOUT_SECONDS`: how long a copy may take before the execution gives up on it.
    pub copy_timeout_seconds: i64,
    /// `PLAN_RETENTION_DAYS`: how long the plans bucket keeps a plan and its results (the
    /// template's PlanRetentionDays); a plan that could run longer is refused.
    pub plan_retention_days: u32,
}

/// A variable of the function's environment as the template sets it; blank is not set.
pub fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// The deployment's configuration. Read raw: a blank `TARGET_TAG` means "no tag".
    pub fn from_env() -> StepResult<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration with the settings document's settings (none put: the defaults).
    pub fn with_settings(mut self, document: Option<crate::store::SettingsDocument>) -> Self {
        if let Some(document) = document {
            self.settings = document.settings;
            self.settings_version = document.version;
        }
        self
    }

    /// Reads the configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> StepResult<Self> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let target_tag = match get("TARGET_TAG") {
            None => Some(parse_tag(DEFAULT_TARGET_TAG)?),
            Some(tag) if tag.is_empty() => None,
            Some(tag) => Some(parse_tag(&tag)?),
        };
        let rollback_scope = match get("ROLLBACK_SCOPE") {
            Some(scope) if !scope.is_empty() => scope.parse()?,
            _ => RollbackScope::default(),
        };
        let number = |name: &str, default: u32| match get(name) {
            Some(n) if !n.is_empty() => n
                .parse()
                .map_err(|_| StepError::invalid(format!("{name} {n:?} is not a number"))),
            _ => Ok(default),
        };
        let max_concurrency = number("MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)?;
        let instance_concurrency = number("INSTANCE_MAX_CONCURRENCY", 1)?;
        Ok(Self {
            target_tag,
            target_asgs: parse_list("TARGET_ASGS", get("TARGET_ASGS"))?,
            excluded_asgs: parse_list("EXCLUDED_ASGS", get("EXCLUDED_ASGS"))?,
            target_instances: parse_list("TARGET_INSTANCES", get("TARGET_INSTANCES"))?,
            excluded_instances: parse_list("EXCLUDED_INSTANCES", get("EXCLUDED_INSTANCES"))?,
            instance_concurrency: validate_concurrency(instance_concurrency)?,
            // The settings document's, read by `with_settings_document`.
            settings: SettingsMap::default(),
            settings_version: None,
            allowed_ami_owners: parse_list("ALLOWED_AMI_OWNERS", get("ALLOWED_AMI_OWNERS"))?,
            rollback_scope,
            max_concurrency: validate_concurrency(max_concurrency)?,
            accounts: checked(
                parse_list("TARGET_ACCOUNTS", get("TARGET_ACCOUNTS"))?,
                reach::validate_account,
            )?,
            organizational_units: checked(
                parse_list(
                    "TARGET_ORGANIZATIONAL_UNITS",
                    get("TARGET_ORGANIZATIONAL_UNITS"),
                )?,
                reach::validate_organizational_unit,
            )?,
            regions: checked(
                parse_list("TARGET_REGIONS", get("TARGET_REGIONS"))?,
                reach::validate_region,
            )?,
            copy_missing_amis: match get("AMI_DISTRIBUTION").as_deref() {
                None | Some("") | Some("find") => false,
                Some("copy") => true,
                Some(other) => {
                    return Err(StepError::invalid(format!(
                        "AMI_DISTRIBUTION must be \"find\" or \"copy\", not {other:?}"
                    )));
                }
            },
            copy_kms_keys: parse_keys(get("AMI_COPY_KMS_KEYS"))?,
            image_builder_pipelines: checked(
                parse_list("IMAGE_BUILDER_PIPELINES", get("IMAGE_BUILDER_PIPELINES"))?,
                validate_pipeline_arn,
            )?,
            followed_parameters: parse_list("FOLLOWED_PARAMETERS", get("FOLLOWED_PARAMETERS"))?,
            copy_timeout_seconds: match get("AMI_COPY_TIMEOUT_SECONDS").as_deref() {
                None | Some("") => DEFAULT_COPY_TIMEOUT_SECONDS,
                Some(v) => v.parse().ok().filter(|n| *n >= 60).ok_or_else(|| {
                    StepError::invalid(format!(
                        "AMI_COPY_TIMEOUT_SECONDS {v:?} is not a number of seconds (at least 60)"
                    ))
                })?,
            },
            plan_retention_days: match number("PLAN_RETENTION_DAYS", DEFAULT_PLAN_RETENTION_DAYS)? {
                0 => return Err(StepError::invalid("PLAN_RETENTION_DAYS must be at least 1")),
                days => days,
            },
        })
    }
}

fn validate_pipeline_arn(arn: &str) -> StepResult<()> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "imagebuilder", _, _, resource]
            if resource.starts_with("image-pipeline/") && resource.len() > 15 =>
        {
            Ok(())
        }
        _ => Err(StepError::invalid(format!(
            "IMAGE_BUILDER_PIPELINES: {arn:?} is not an Image Builder pipeline ARN (arn:aws:imagebuilder:<region>:<account>:image-pipeline/<name>)"
        ))),
    }
}

/// `AMI_COPY_KMS_KEYS`: a JSON object of region names to key ids.
fn parse_keys(value: Option<String>) -> StepResult<std::collections::BTreeMap<String, String>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(Default::default());
    };
    let keys: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&value).map_err(|e| {
            StepError::invalid(format!(
                "AMI_COPY_KMS_KEYS is not a JSON object of region to key: {e}"
            ))
        })?;
    for region in keys.keys() {
        reach::validate_region(region)?;
    }
    Ok(keys)
}

/// `values`, each checked, without repeats, in the order given.
pub fn checked(
    values: Vec<String>,
    check: impl Fn(&str) -> StepResult<()>,
) -> StepResult<Vec<String>> {
    let mut seen = Vec::with_capacity(values.len());
    for value in values {
        check(&value)?;
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    Ok(seen)
}

pub fn validate_concurrency(n: u32) -> StepResult<u32> {
    if (1..=MAX_CONCURRENCY_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(StepError::invalid(format!(
            "max concurrency {n} is outside 1-{MAX_CONCURRENCY_LIMIT}"
        )))
    }
}

/// `key=value`; a bare key is refused so a rollout target is always chosen on purpose.
pub fn parse_tag(tag: &str) -> StepResult<(String, String)> {
    match tag.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(StepError::invalid(format!(
            "target tag {tag:?} must be key=value"
        ))),
    }
}

/// A list given as a JSON array (`["a","b"]`) or comma-separated (`a, b`), as the seeds' Lambdas took it.
fn parse_list(name: &str, value: Option<String>) -> StepResult<Vec<String>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    if value.starts_with('[') {
        return serde_json::from_str(&value)
            .map_err(|e| StepError::invalid(format!("{name} is not a JSON list of strings: {e}")));
    }
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> StepResult<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_select_by_the_rollout_tag() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.target_tag,
            Some(("ami-rollout:enabled".into(), "true".into()))
        );
        assert_eq!(
            (c.max_concurrency, c.rollback_scope),
            (5, RollbackScope::Execution)
        );
        assert!(
            c.excluded_asgs.is_empty()
                && c.target_asgs.is_empty()
                && c.allowed_ami_owners.is_empty()
        );
    }

    #[test]
    fn lists_accept_json_or_commas() {
        let c = config(&[
            ("EXCLUDED_ASGS", r#"["legacy", "batch"]"#),
            ("TARGET_ASGS", "web, api ,"),
            ("TARGET_TAG", ""),
        ])
        .unwrap();
        assert_eq!(c.excluded_asgs, ["legacy", "batch"]);
        assert_eq!(c.target_asgs, ["web", "api"]);
        assert_eq!(c.target_tag, None);
    }

    #[test]
    fn copies_and_plans_have_the_templates_defaults_unless_configured() {
        let c = config(&[]).unwrap();
        assert_eq!((c.copy_timeout_seconds, c.plan_retention_days), (7200, 35));
        let c = config(&[
            ("AMI_COPY_TIMEOUT_SECONDS", "900"),
            ("PLAN_RETENTION_DAYS", "400"),
        ])
        .unwrap();
        assert_eq!((c.copy_timeout_seconds, c.plan_retention_days), (900, 400));
    }

    #[test]
    fn the_reach_is_the_home_place_unless_configured() {
        let c = config(&[]).unwrap();
        assert!(c.accounts.is_empty() && c.regions.is_empty());
        let c = config(&[
            ("TARGET_ACCOUNTS", "111111111111, 222222222222,111111111111"),
            ("TARGET_REGIONS", r#"["us-east-1","eu-west-1"]"#),
        ])
        .unwrap();
        assert_eq!(c.accounts, ["111111111111", "222222222222"]);
        assert_eq!(c.regions, ["us-east-1", "eu-west-1"]);
    }

    #[test]
    fn bad_values_are_invalid_input_naming_the_variable() {
        for (vars, expected) in [
            (vec![("TARGET_TAG", "team")], "target tag \"team\""),
            (vec![("MAX_CONCURRENCY", "many")], "MAX_CONCURRENCY"),
            (vec![("MAX_CONCURRENCY", "0")], "outside 1-1000"),
            (vec![("MAX_CONCURRENCY", "1001")], "outside 1-1000"),
            (vec![("ROLLBACK_SCOPE", "all")], "rollback scope"),
            (vec![("EXCLUDED_ASGS", "[1,2]")], "EXCLUDED_ASGS"),
            (vec![("TARGET_ACCOUNTS", "1111, 222222222222")], "\"1111\""),
            (vec![("TARGET_REGIONS", "eu-west-1,Mars")], "\"Mars\""),
            (vec![("AMI_DISTRIBUTION", "share")], "AMI_DISTRIBUTION"),
            (
                vec![("TARGET_ORGANIZATIONAL_UNITS", "ou-ab12-cd34ef56, prod")],
                "\"prod\" is not an organizational unit",
            ),
            (vec![("AMI_COPY_KMS_KEYS", "[\"k\"]")], "AMI_COPY_KMS_KEYS"),
            (vec![("AMI_COPY_KMS_KEYS", r#"{"moon": "k"}"#)], "\"moon\""),
            (
                vec![("AMI_COPY_TIMEOUT_SECONDS", "soon")],
                "AMI_COPY_TIMEOUT_SECONDS \"soon\"",
            ),
            (vec![("AMI_COPY_TIMEOUT_SECONDS", "10")], "at least 60"),
            (vec![("AMI_COPY_TIMEOUT_SECONDS", "-5")], "at least 60"),
            (vec![("PLAN_RETENTION_DAYS", "0")], "PLAN_RETENTION_DAYS"),
            (
                vec![("PLAN_RETENTION_DAYS", "a month")],
                "PLAN_RETENTION_DAYS",
            ),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
            assert!(err.to_string().contains(expected), "{vars:?}: {err}");
        }
    }
}
