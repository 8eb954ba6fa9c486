//! Reach: the accounts and regions a rollout looks at, and how the functions get into them.
//!
//! The home account (the one the functions run in) is used with the functions' own role. Every
//! other account is entered through the workload role (`infra/aws/workload-account-role.yaml`),
//! assumed with its ExternalId once per invocation: assuming a role from a Lambda is role
//! chaining, which caps the session at one hour, so credentials never outlive the invocation
//! (and so never cross a Wait).

use crate::error::FromSdk;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::error::{StepError, StepResult};

/// The workload role's name when `WORKLOAD_ROLE_NAME` is not set (the role template's default).
pub const DEFAULT_WORKLOAD_ROLE: &str = "ami-rollout-workload";
/// The session tag that carries the full execution ARN (the session name holds only 64 characters).
pub const SESSION_TAG: &str = "ami-rollout:execution";
/// The tag a group or instance of a workload account must carry for the workload role to change
/// it (the role template's `ResourceTag` conditions): what preflight checks there.
pub const WORKLOAD_OPT_IN: (&str, &str) = ("ami-rollout:enabled", "true");

/// Why a target of a workload account that lacks WORKLOAD_OPT_IN cannot be rolled out, or None.
pub fn workload_opt_in_refusal(
    account: Option<&str>,
    tags: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let account = account?;
    let (key, value) = WORKLOAD_OPT_IN;
    (tags.get(key).map(String::as_str) != Some(value)).then(|| {
        format!(
            "it is not tagged {key}={value}, and the workload role of account {account} changes only \
             targets that are (infra/aws/workload-account-role.yaml): tag it, or leave it out"
        )
    })
}
/// Session names are at most 64 characters (IAM).
const MAX_SESSION_NAME: usize = 64;

/// How the functions get into a workload account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRole {
    pub name: String,
    pub external_id: Option<String>,
    /// Pass the execution ARN as a session tag (the role's trust policy must allow `sts:TagSession`).
    pub session_tags: bool,
}

impl Default for WorkloadRole {
    fn default() -> Self {
        Self {
            name: DEFAULT_WORKLOAD_ROLE.into(),
            external_id: None,
            session_tags: true,
        }
    }
}

impl WorkloadRole {
    /// `WORKLOAD_ROLE_NAME`, `WORKLOAD_EXTERNAL_ID`, `WORKLOAD_SESSION_TAGS` (`true`/`false`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> StepResult<Self> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let session_tags = match get("WORKLOAD_SESSION_TAGS").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(StepError::invalid(format!(
                    "WORKLOAD_SESSION_TAGS must be true or false, not {other:?}"
                )));
            }
        };
        Ok(Self {
            name: get("WORKLOAD_ROLE_NAME").unwrap_or_else(|| DEFAULT_WORKLOAD_ROLE.into()),
            external_id: get("WORKLOAD_EXTERNAL_ID"),
            session_tags,
        })
    }

    pub fn arn(&self, account: &str, region: &str) -> String {
        format!(
            "arn:{}:iam::{account}:role/{}",
            partition(region),
            self.name
        )
    }

    /// Assumes the role in `account` for `execution` (an execution ARN or name) and returns
    /// credentials for this invocation. A refusal (no such role, a trust policy that does not
    /// let this function in, a wrong ExternalId) is `PreflightFailed` naming the account; AWS not
    /// answering stays retryable.
    pub async fn assume(
        &self,
        sts: &aws_sdk_sts::Client,
        region: &str,
        account: &str,
        execution: &str,
    ) -> StepResult<SharedCredentialsProvider> {
        let role = self.arn(account, region);
        let mut call = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(session_name(execution))
            .set_external_id(self.external_id.clone())
            .duration_seconds(3600);
        if self.session_tags && execution.starts_with("arn:") {
            call = call.tags(
                aws_sdk_sts::types::Tag::builder()
                    .key(SESSION_TAG)
                    .value(execution.chars().take(256).collect::<String>())
                    .build()
                    .map_err(|e| StepError::invalid(format!("session tag: {e}")))?,
            );
        }
        let out = call
            .send()
            .await
            .map_err(|e| match StepError::from_sdk("AssumeRole", e) {
                StepError::AwsRequestFailed { message, .. } => StepError::PreflightFailed {
                    group: format!("account {account}"),
                    reason: format!("the workload role {role} could not be assumed ({message})"),
                },
                other => other,
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| StepError::AwsRequestFailed {
                operation: "AssumeRole".into(),
                message: format!("{role}: no credentials in the answer"),
            })?;
        let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
        Ok(SharedCredentialsProvider::new(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "ami-rollout-workload-role",
        )))
    }
}

/// The session name for `execution`: its name, as long as it fits in 64 characters; a longer one
/// is cut and ends with a hash of the whole, so two executions never share a session name. Only
/// the characters IAM allows (`[\w+=,.@-]`) are kept.
pub fn session_name(execution: &str) -> String {
    let name = execution.rsplit(':').next().unwrap_or(execution);
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let full = format!("ami-rollout-{clean}");
    if full.len() <= MAX_SESSION_NAME {
        return full;
    }
    let hash = format!("{:016x}", fnv1a(execution));
    format!("{}-{hash}", &full[..MAX_SESSION_NAME - 1 - hash.len()])
}

/// FNV-1a: a small, stable hash (the same in every process and release), for names and spreads.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The AWS partition a region belongs to.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// Refuses what is not a 12-digit account id.
pub fn validate_account(account: &str) -> StepResult<()> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{account:?} is not an AWS account id (12 digits)"
        )))
    }
}

/// Refuses what is not an organizational unit id (`ou-` and two lowercase alphanumeric parts) or a
/// root id (`r-` and 4-32 of them), as Organizations writes them.
pub fn validate_organizational_unit(unit: &str) -> StepResult<()> {
    let alnum = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let shaped = match unit.split('-').collect::<Vec<_>>().as_slice() {
        ["ou", root, id] => alnum(root) && alnum(id),
        ["r", id] => alnum(id) && (4..=32).contains(&id.len()),
        _ => false,
    };
    if shaped {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{unit:?} is not an organizational unit (ou-...) or root (r-...) id"
        )))
    }
}

/// Refuses what is not shaped like a region name (`eu-west-1`, `us-gov-east-1`).
pub fn validate_region(region: &str) -> StepResult<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if shaped {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{region:?} is not an AWS region name (like eu-west-1)"
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_opt_in_tag_is_the_one_the_workload_role_requires() {
        let role = include_str!("../../../infra/aws/workload-account-role.yaml");
        let (key, value) = WORKLOAD_OPT_IN;
        assert!(
            role.contains(&format!("ResourceTag/{key}\": \"{value}\"")),
            "the role template's ResourceTag conditions name {key}={value}"
        );
    }

    use super::*;

    #[test]
    fn session_names_fit_and_stay_distinct() {
        let short = "arn:aws:states:us-east-1:123456789012:execution:ami-rollout:nightly-7";
        assert_eq!(session_name(short), "ami-rollout-nightly-7");
        let long_name = "x".repeat(80);
        let a = session_name(&format!("{long_name}a"));
        let b = session_name(&format!("{long_name}b"));
        assert_eq!((a.len(), b.len()), (64, 64));
        assert_ne!(a, b);
        assert_eq!(session_name("a b/c"), "ami-rollout-a-b-c");
        assert!(
            session_name(&long_name)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        );
    }

    #[test]
    fn the_role_defaults_to_the_templates_name_with_session_tags() {
        let role = WorkloadRole::from_lookup(|_| None).unwrap();
        assert_eq!(role, WorkloadRole::default());
        assert_eq!(
            role.arn("111111111111", "eu-west-1"),
            "arn:aws:iam::111111111111:role/ami-rollout-workload"
        );
        assert_eq!(
            role.arn("111111111111", "cn-north-1"),
            "arn:aws-cn:iam::111111111111:role/ami-rollout-workload"
        );
        let err = WorkloadRole::from_lookup(|k| {
            (k == "WORKLOAD_SESSION_TAGS").then(|| "yes".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("WORKLOAD_SESSION_TAGS"));
    }

    #[test]
    fn organizational_units_and_roots_are_checked_for_shape() {
        for ok in ["ou-ab12-cd34ef56", "r-ab12"] {
            assert!(validate_organizational_unit(ok).is_ok(), "{ok}");
        }
        for bad in ["ou-ab12", "OU-ab12-cd34", "r-a", "prod", ""] {
            assert!(validate_organizational_unit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts_and_regions_are_checked_for_shape() {
        assert!(validate_account("111111111111").is_ok());
        assert!(validate_account("11111111111").is_err());
        assert!(validate_account("11111111111a").is_err());
        for ok in ["eu-west-1", "us-gov-east-1", "ap-southeast-2"] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in ["eu-west", "EU-west-1", "euwest1", "eu--1", ""] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
