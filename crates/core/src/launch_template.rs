//! Launch template conventions, in one place: how a group's `$Latest`/`$Default` resolves to a
//! number, and the description that marks the versions ami-rollout makes (written when a version is
//! created, read back by planning and rollback).

use crate::model::Target;

/// The version number a group's reference (`$Latest`, `$Default` or a number) stands for, given
/// its template's latest and default versions. 0 when the reference is not a version at all.
pub fn resolve_version(reference: &str, latest: i64, default: i64) -> i64 {
    match reference {
        "$Latest" => latest,
        "$Default" => default,
        n => n.parse().unwrap_or(0),
    }
}

/// The description a new launch template version carries: it names the execution that made it
/// and the rollback point, so both survive even if the execution's state is lost.
pub fn version_description(execution: &str, target: &Target, new_ami: &str) -> String {
    let image_id = target.rollback_point.image_id();
    let version = target.template_point().map_or(0, |point| point.version);
    let text = format!(
        "{}; {} {image_id} -> {new_ami}; rollback point: version {version} ({image_id})",
        marker(execution),
        target.resource
    );
    // EC2 allows 255 characters.
    text.chars().take(255).collect()
}

const MARKER_PREFIX: &str = "ami-rollout ";

/// The prefix that marks versions made by `execution`.
fn marker(execution: &str) -> String {
    format!("{MARKER_PREFIX}{execution}")
}

/// What a version's description says about who made it, when ami-rollout made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub execution: String,
    pub group: String,
}

impl Marker {
    /// Reads the marker `version_description` wrote; `None` for versions others made.
    pub fn parse(description: &str) -> Option<Self> {
        let (execution, rest) = description.strip_prefix(MARKER_PREFIX)?.split_once(';')?;
        let group = rest.split_whitespace().next()?;
        Some(Self {
            execution: execution.trim().to_string(),
            group: group.to_string(),
        })
    }

    /// Whether `execution` made this version for `group`.
    pub fn is(&self, execution: &str, group: &str) -> bool {
        self.execution == execution && self.group == group
    }
}

/// An idempotency token for `CreateLaunchTemplateVersion`, stable for an execution, group and AMI
/// (EC2 allows 64 ASCII characters, so the parts are hashed).
pub fn client_token(execution: &str, group: &str, ami: &str) -> String {
    // FNV-1a: stable across Rust releases, unlike std's DefaultHasher.
    let hash = |seed: u64| {
        [execution, "\u{1f}", group, "\u{1f}", ami]
            .iter()
            .flat_map(|s| s.bytes())
            .fold(seed, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    format!(
        "ami-rollout-{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x8422_2325_cbf2_9ce4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TargetKind, VersionReference};

    #[test]
    fn references_resolve_to_numbers() {
        assert_eq!(resolve_version("$Latest", 9, 4), 9);
        assert_eq!(resolve_version("$Default", 9, 4), 4);
        assert_eq!(resolve_version("7", 9, 4), 7);
        assert_eq!(resolve_version("resolve:ssm:x", 9, 4), 0);
    }

    #[test]
    fn the_marker_written_is_the_marker_read() {
        use crate::model::{RollbackPoint, TemplatePoint};
        let target = Target {
            kind: TargetKind::AutoScalingGroup,
            account: None,
            region: None,
            resource: "web".into(),
            instance_name: None,
            ami: crate::samples::target_run().ami,
            rollback_point: RollbackPoint::Template(TemplatePoint {
                launch_template_id: "lt-1".into(),
                version: 3,
                image_id: "ami-old".into(),
                reference: VersionReference::Pinned,
                default_version: 3,
            }),
            mixed_instances: false,
            ecs: None,
            window: None,
        };
        let description = version_description("exec-1", &target, "ami-new");
        let marker = Marker::parse(&description).unwrap();
        assert!(marker.is("exec-1", "web"), "{marker:?}");
        assert!(!marker.is("exec-1", "we"));
        assert!(!marker.is("exec-12", "web"));
        assert_eq!(Marker::parse("built by hand"), None);
        assert_eq!(Marker::parse("ami-rollout exec-1 without a group"), None);
    }

    #[test]
    fn client_token_is_stable_short_and_distinct() {
        let a = client_token("exec-1", "web", "ami-1");
        assert_eq!(a, client_token("exec-1", "web", "ami-1"));
        assert_ne!(a, client_token("exec-1", "api", "ami-1"));
        assert_ne!(a, client_token("exec-2", "web", "ami-1"));
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
