//! Undo: a new execution of the state machine that brings a finished, successful rollout's targets
//! back to their rollback points. It is planned here like any rollout, read only, from the
//! rollout's own plan object, after each target is checked again where it lives: one changed
//! since (another rollout, a refresh, a hand edit) or whose rollback-point AMI can no longer launch
//! is refused by name. The rollback's own code then brings the targets back.

use rollout_core::FromSdk;
use std::collections::HashMap;

use aws_sdk_sfn::types::ExecutionStatus;

use rollout_core::ami;
use rollout_core::fleet::{self, group_template};
use rollout_core::instance;
use rollout_core::launch_template::Marker;
use rollout_core::model::{Plan, Skipped, Target, TargetKind, UndoOf};
use rollout_core::refresh::recent_refreshes;
use rollout_core::{Clients, StepError, StepResult};
use serde::Deserialize;
use serde_json::Value;

/// An undo's input: `{"undo": "<execution name>"}`; with `skipChanged`, targets changed since are
/// left out (and reported) instead of refusing the whole undo.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UndoRequest {
    pub undo: String,
    #[serde(default)]
    pub skip_changed: bool,
}

impl UndoRequest {
    /// The undo an execution's input asks for; `None` when it is a rollout's trigger.
    pub fn of(input: &Value) -> Option<StepResult<Self>> {
        input.get("undo")?;
        Some(
            serde_json::from_value(input.clone())
                .map_err(|e| StepError::invalid(format!("undo: {e}"))),
        )
    }
}

/// What an undo would do, before any refusal: the plan of the targets that can go back, the ones
/// that cannot (and why), and what is worth saying of the others.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoCheck {
    pub plan: Plan,
    /// Targets changed since the rollout, or whose rollback point can no longer launch.
    pub refused: Vec<Skipped>,
    /// Targets that go back differently than the rollout's rollback would have.
    pub notes: Vec<Skipped>,
}

impl UndoCheck {
    /// The plan the undo execution runs: refused when a target cannot go back (unless
    /// `skip_changed`, which reports them as skipped) or when nothing is left to bring back.
    pub fn into_plan(self, skip_changed: bool) -> StepResult<Plan> {
        let undone = self
            .plan
            .undo
            .as_ref()
            .map(|u| u.execution.clone())
            .unwrap_or_default();
        if !self.refused.is_empty() && !skip_changed {
            return Err(refusal(&undone, &self.refused));
        }
        let mut plan = self.plan;
        if plan.target_count == 0 {
            return Err(StepError::PreflightFailed {
                group: format!("execution {undone}"),
                reason: format!(
                    "no target it changed can be brought back ({})",
                    listed(&self.refused)
                ),
            });
        }
        plan.skipped_count = self.refused.len();
        plan.skipped = self.refused;
        Ok(plan)
    }
}

fn listed(targets: &[Skipped]) -> String {
    targets
        .iter()
        .map(|t| format!("{}: {}", t.group, t.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn refusal(undone: &str, refused: &[Skipped]) -> StepError {
    StepError::PreflightFailed {
        group: refused
            .iter()
            .map(|t| t.group.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        reason: format!(
            "cannot be brought back by an undo of {undone} ({}); nothing was changed. Undo with skipChanged to leave them out",
            listed(refused)
        ),
    }
}

/// The execution ARN of `name`, a sibling of `own` (an execution ARN of the same state machine).
pub fn sibling_execution_arn(own: &str, name: &str) -> StepResult<String> {
    let (machine, _) = own
        .rsplit_once(':')
        .filter(|(m, _)| m.contains(":execution:"))
        .ok_or_else(|| StepError::invalid(format!("{own:?} is not an execution ARN")))?;
    Ok(format!("{machine}:{name}"))
}

/// The undone rollout's name and start, and whether it was aborted (stopped part way by an
/// operator); refused unless it succeeded or was aborted (a failed one rolled itself back).
async fn finished_rollout(clients: &Clients, arn: &str, name: &str) -> StepResult<(UndoOf, bool)> {
    let conf = clients
        .sdk_config()
        .ok_or_else(|| StepError::invalid("no AWS configuration to read the execution"))?;
    let sfn = aws_sdk_sfn::Client::new(conf);
    let described = match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => out,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            return Err(StepError::invalid(format!(
                "there is no execution {name} of this state machine"
            )));
        }
        Err(err) => return Err(StepError::from_sdk("DescribeExecution", err)),
    };
    let status = described.status();
    if !matches!(
        status,
        ExecutionStatus::Succeeded | ExecutionStatus::Aborted
    ) {
        return Err(StepError::PreflightFailed {
            group: format!("execution {name}"),
            reason: format!(
                "it is {}: only a rollout that succeeded or was aborted is undone (a failed one rolled itself back; a running one is aborted with ami-rollout abort)",
                status.as_str()
            ),
        });
    }
    let undone = UndoOf {
        execution: name.to_string(),
        start_time: described.start_date().secs(),
    };
    Ok((undone, *status == ExecutionStatus::Aborted))
}

/// Checks what an undo of the execution `undone_arn` would bring back. `session` names the
/// sessions in workload accounts; `own_name` is the undo's own execution name, when it runs as one.
pub async fn check(
    clients: &Clients,
    undone_arn: &str,
    own_name: Option<&str>,
    session: &str,
) -> StepResult<UndoCheck> {
    let name = undone_arn.rsplit(':').next().unwrap_or_default();
    if name.trim().is_empty() {
        return Err(StepError::invalid(
            "undo names no execution: give the name of a rollout that succeeded",
        ));
    }
    if Some(name) == own_name {
        return Err(StepError::invalid(format!(
            "execution {name} cannot undo itself"
        )));
    }
    let (undone, aborted) = finished_rollout(clients, undone_arn, name).await?;
    let original = undoable_plan(clients, name).await?;
    let checked = check_targets(clients, &original, (name, aborted), session).await?;
    let target_count = checked.waves.iter().map(Vec::len).sum();
    Ok(UndoCheck {
        plan: Plan {
            trigger: format!("undo of {name}"),
            copies: Vec::new(),
            waves: checked.waves,
            skipped: Vec::new(),
            skipped_count: 0,
            target_count,
            undo: Some(undone),
            // An undo rolls nothing out from the parameter.
            parameter: None,
            notes: Vec::new(),
            ..original
        },
        refused: checked.refused,
        notes: checked.notes,
    })
}

/// The plan of the rollout `name`, refused when it is gone, is itself an undo, or changed nothing.
async fn undoable_plan(clients: &Clients, name: &str) -> StepResult<Plan> {
    let refused = |reason: String| StepError::PreflightFailed {
        group: format!("execution {name}"),
        reason,
    };
    let original = clients.store()?.plan_of(name).await?.ok_or_else(|| {
        refused("its plan is no longer in the plans bucket (it keeps plans for PlanRetentionDays, 35 by default): it is too old to undo".into())
    })?;
    if let Some(earlier) = &original.undo {
        return Err(refused(format!(
            "it is itself an undo (of {}): roll the AMI out again instead",
            earlier.execution
        )));
    }
    if original.target_count == 0 {
        return Err(refused("it changed no target".into()));
    }
    Ok(original)
}

/// Every target of the undone plan, checked where it lives, in its wave.
struct CheckedTargets {
    waves: Vec<Vec<Target>>,
    refused: Vec<Skipped>,
    notes: Vec<Skipped>,
}

/// `undone` is the rollout's name, and whether it was aborted: an aborted rollout left some
/// targets as they were (left out, said) and others part way (brought back from wherever they
/// are, as its own rollback would have).
async fn check_targets(
    clients: &Clients,
    original: &Plan,
    (name, aborted): (&str, bool),
    session: &str,
) -> StepResult<CheckedTargets> {
    let mut places: HashMap<(Option<String>, Option<String>), Clients> = HashMap::new();
    let mut checked = CheckedTargets {
        waves: Vec::new(),
        refused: Vec::new(),
        notes: Vec::new(),
    };
    for wave in &original.waves {
        let mut kept = Vec::new();
        for target in wave {
            let place = (target.account.clone(), target.region.clone());
            if !places.contains_key(&place) {
                let there = clients
                    .at(target.account.as_deref(), target.region.as_deref(), session)
                    .await?;
                places.insert(place.clone(), there);
            }
            let there = &places[&place];
            let undoable = match target.kind {
                TargetKind::AutoScalingGroup => {
                    group_undoable(there, target, name, aborted).await?
                }
                TargetKind::Instance => instance_undoable(there, target, aborted).await?,
            };
            match undoable {
                Undoable::Back(note) => {
                    checked.notes.extend(note.map(|reason| Skipped {
                        group: target.name(),
                        reason,
                    }));
                    kept.push(target.clone());
                }
                Undoable::Refused(reason) => checked.refused.push(Skipped {
                    group: target.name(),
                    reason,
                }),
            }
        }
        if !kept.is_empty() {
            checked.waves.push(kept);
        }
    }
    Ok(checked)
}

/// Whether one target can go back, and what is worth saying if it goes back differently.
enum Undoable {
    Back(Option<String>),
    Refused(String),
}

/// A group goes back when it is as the rollout left it: on the version the rollout made, with no
/// refresh running and every instance on the rolled-out AMI, and its rollback point launchable.
/// Of an aborted rollout, every group goes to its rollback: it brings back one the rollout left
/// part way (a refresh of the rollout's still running is rolled back natively) and finds one it
/// had not reached untouched, as the rollout's own rollback would have.
async fn group_undoable(
    clients: &Clients,
    target: &Target,
    undone: &str,
    aborted: bool,
) -> StepResult<Undoable> {
    let point = target.template_point()?;
    let group = match fleet::describe_group(clients, &target.resource).await {
        Ok(group) => group,
        Err(StepError::TargetNotFound(_)) => {
            return Ok(Undoable::Refused("the group no longer exists".into()));
        }
        Err(other) => return Err(other),
    };
    let template = match group_template(&group) {
        Ok(t) => t,
        Err(why) => return Ok(Undoable::Refused(why)),
    };
    if template
        .id
        .as_deref()
        .is_some_and(|id| id != point.launch_template_id)
    {
        return Ok(Undoable::Refused(format!(
            "it uses another launch template now, not {}",
            point.launch_template_id
        )));
    }
    let version = clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&point.launch_template_id)
        .versions(&template.version)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeLaunchTemplateVersions", e))?;
    let version = version.launch_template_versions().first();
    let number = version.and_then(|v| v.version_number()).unwrap_or_default();
    let made_by_undone = version
        .and_then(|v| v.version_description())
        .and_then(Marker::parse)
        .is_some_and(|m| m.is(undone, &target.resource));
    let running = recent_refreshes(clients, &target.resource)
        .await?
        .into_iter()
        .find(|r| r.is_active());
    if let Some(running) = running.filter(|_| !aborted) {
        return Ok(Undoable::Refused(format!(
            "instance refresh {} is {} on it",
            running.id, running.status
        )));
    }
    if !made_by_undone && !aborted {
        return Ok(Undoable::Refused(format!(
            "its launch template version ({} = {number}) is not the one {undone} made: it changed since",
            template.version
        )));
    }
    if !aborted && let Some(refusal) = instances_elsewhere(clients, &group, target).await? {
        return Ok(refusal);
    }
    Ok(match ami::cannot_launch(clients, &point.image_id).await? {
        Some(reason) => Undoable::Refused(format!(
            "its rollback point AMI {} {reason}",
            point.image_id
        )),
        None => Undoable::Back(None),
    })
}

/// A group of a finished rollout with an instance off the rolled-out AMI changed since.
async fn instances_elsewhere(
    clients: &Clients,
    group: &aws_sdk_autoscaling::types::AutoScalingGroup,
    target: &Target,
) -> StepResult<Option<Undoable>> {
    let ids = fleet::in_service_instances(group);
    let images = fleet::instance_images(clients, &ids).await?;
    let mut elsewhere: Vec<String> = images
        .iter()
        .filter(|(_, image)| **image != target.ami.id)
        .map(|(id, image)| format!("{id} runs {image}"))
        .collect();
    if elsewhere.is_empty() {
        return Ok(None);
    }
    elsewhere.sort();
    Ok(Some(Undoable::Refused(format!(
        "not every instance is on {} now ({})",
        target.ami.id,
        elsewhere.join(", ")
    ))))
}

/// A standalone instance goes back when it still runs the rolled-out AMI with no replacement
/// running. Its kept root goes back in place; once that was deleted (after the rollout's success,
/// by default), it gets a fresh root from its previous AMI, which must still launch.
async fn instance_undoable(
    clients: &Clients,
    target: &Target,
    aborted: bool,
) -> StepResult<Undoable> {
    let point = target.root_point()?;
    let Some(now) = instance::describe(clients, &target.resource).await? else {
        return Ok(Undoable::Refused("the instance no longer exists".into()));
    };
    let replacing = instance::tasks(clients, &target.resource)
        .await?
        .into_iter()
        .find(|t| t.is_running());
    if aborted {
        // Its rollback finds it untouched, part way (a replacement of the rollout's running is
        // waited for), or replaced, as the rollout's own rollback would have.
        return Ok(Undoable::Back(None));
    }
    if now.state != "running" {
        return Ok(Undoable::Refused(format!(
            "it is {}, not running",
            now.state
        )));
    }
    if now.image_id != target.ami.id {
        return Ok(Undoable::Refused(format!(
            "it runs {} now, not {}: it changed since",
            now.image_id, target.ami.id
        )));
    }
    if let Some(running) = replacing {
        return Ok(Undoable::Refused(format!(
            "root volume replacement {} is running on it",
            running.id
        )));
    }
    let kept = instance::volume_state(clients, &point.root_volume_id).await?;
    if kept.as_deref() == Some("available") {
        return Ok(Undoable::Back(None));
    }
    Ok(match ami::cannot_launch(clients, &point.image_id).await? {
        Some(reason) => Undoable::Refused(format!(
            "its previous root {} is gone and its previous AMI {} {reason}",
            point.root_volume_id, point.image_id
        )),
        None => Undoable::Back(Some(format!(
            "its previous root {} is gone: it gets a fresh root from {}",
            point.root_volume_id, point.image_id
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::model::Epoch;

    fn check_with(targets: usize, refused: &[&str]) -> UndoCheck {
        let run = rollout_core::samples::target_run();
        let plan = Plan {
            trigger: "undo of rollout-1".into(),
            ami: run.ami.clone(),
            regional_amis: Default::default(),
            copies: Vec::new(),
            waves: vec![vec![run.target.clone(); targets]],
            settings: run.settings.clone(),
            skipped: Vec::new(),
            skipped_count: 0,
            settings_version: None,
            target_count: targets,
            max_concurrency: 5,
            instance_concurrency: 1,
            rollback_scope: Default::default(),
            undo: Some(UndoOf {
                execution: "rollout-1".into(),
                start_time: 1_000 as Epoch,
            }),
            parameter: None,
            approvals: Default::default(),
            notes: Vec::new(),
        };
        UndoCheck {
            plan,
            refused: refused
                .iter()
                .map(|g| Skipped {
                    group: g.to_string(),
                    reason: "it runs ami-00000009 now, not ami-00000002: it changed since".into(),
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn an_undo_is_asked_by_its_key_and_nothing_else_goes_with_it() {
        assert!(UndoRequest::of(&serde_json::json!({"amiId": "ami-1"})).is_none());
        let asked = UndoRequest::of(&serde_json::json!({"undo": "rollout-1"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (asked.undo.as_str(), asked.skip_changed),
            ("rollout-1", false)
        );
        let err = UndoRequest::of(&serde_json::json!({"undo": "rollout-1", "amiId": "ami-1"}))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput", "{err}");
    }

    #[test]
    fn a_target_changed_since_refuses_the_undo_by_name_unless_it_is_left_out() {
        let err = check_with(1, &["api"]).into_plan(false).unwrap_err();
        assert_eq!(err.name(), "PreflightFailed");
        assert!(
            err.to_string().starts_with("api: preflight refused")
                && err
                    .to_string()
                    .contains("by an undo of rollout-1 (api: it runs ami-00000009"),
            "{err}"
        );
        let plan = check_with(1, &["api"]).into_plan(true).unwrap();
        assert_eq!((plan.target_count, plan.skipped_count), (1, 1));
        assert_eq!(plan.skipped[0].group, "api");
        // Nothing left to bring back is refused too, naming why.
        let err = check_with(0, &["api"]).into_plan(true).unwrap_err();
        assert!(
            err.to_string()
                .contains("no target it changed can be brought back (api: it runs"),
            "{err}"
        );
    }

    #[test]
    fn the_undone_execution_is_found_beside_the_undo() {
        let own = "arn:aws:states:us-east-1:123456789012:execution:ami-rollout:undo-7";
        assert_eq!(
            sibling_execution_arn(own, "rollout-1").unwrap(),
            "arn:aws:states:us-east-1:123456789012:execution:ami-rollout:rollout-1"
        );
        assert!(sibling_execution_arn("undo-7", "rollout-1").is_err());
    }
}
