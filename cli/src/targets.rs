//! How a target reads in the CLI's tables.

use rollout_core::model::{RollbackPoint, Target, TargetKind};

/// Where a target goes back to: its template version, or its kept root.
pub fn rollback_point(target: &Target) -> String {
    match &target.rollback_point {
        RollbackPoint::Template(p) => format!(
            "{} version {} ({}), {}",
            p.launch_template_id,
            p.version,
            match p.reference {
                rollout_core::model::VersionReference::Pinned => "pinned".to_string(),
                other => other.spec(p.version),
            },
            p.image_id
        ),
        RollbackPoint::Root(p) => format!("root {} ({})", p.root_volume_id, p.image_id),
    }
}

/// A target's kind, and whether it is ECS capacity.
pub fn kind(target: &Target) -> &'static str {
    match (target.kind, &target.ecs) {
        (TargetKind::AutoScalingGroup, None) => "group",
        (TargetKind::AutoScalingGroup, Some(_)) => "group (ECS)",
        (TargetKind::Instance, None) => "instance",
        (TargetKind::Instance, Some(_)) => "instance (ECS)",
    }
}
