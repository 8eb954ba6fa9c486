//! Change control inside the state machine: a target's maintenance window, checked before its
//! change starts (the state machine waits for the opening with a timestamp Wait), and the approval
//! gate after a wave (a task token, stored where only the functions and the approvers read it).

use rollout_core::change_control::{
    MaintenanceWindow, OnApprovalTimeout, WindowState, WindowTimes,
};
use rollout_core::model::{Epoch, PlanSummary, Target, TargetRun};
use rollout_core::store::{ApprovalRequest, ResultWriterDetails, approval_key};
use rollout_core::{StepError, StepResult};
use serde::Serialize;

use crate::{HoldClients, execution_name};

/// How far ahead a target that is already running looks for its window's next opening.
const RUNNING_HORIZON_DAYS: u32 = 366;

/// Refuses (`WaveStopped`) once another target of the wave failed, so a target waiting for its
/// window does not wait for nothing; then reads the window at `now`: open, or when the state
/// machine should look again (`opensAt`).
pub async fn check_window(
    clients: &HoldClients,
    run: &TargetRun,
    now: Epoch,
) -> StepResult<WindowTimes> {
    clients.fleet.ensure_wave_going(run).await?;
    match &run.target.window {
        None => Ok(WindowTimes::NO_WINDOW),
        Some(planned) => window_at(&planned.window, &run.target, now).map(WindowTimes::from),
    }
}

fn window_at(window: &MaintenanceWindow, target: &Target, now: Epoch) -> StepResult<WindowState> {
    match window.state_at(now, RUNNING_HORIZON_DAYS)? {
        WindowState::Closed { opens_at: None } => Err(StepError::invalid(format!(
            "{}: its maintenance window ({} in {}) does not open within a year",
            target.name(),
            window.cron,
            window.time_zone
        ))),
        state => Ok(state),
    }
}

/// What the gate was asked: the wave just finished, where its children's outcomes are, and the
/// token that moves the execution on.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskApproval {
    pub execution: String,
    pub token: String,
    pub wave: usize,
    pub plan: Box<PlanSummary>,
    #[serde(default)]
    pub wave_results: Option<ResultWriterDetails>,
}

/// Stores the token and tells the approvers. The state machine then waits for
/// `SendTaskSuccess` (go on), `SendTaskFailure` with `Rejected` (roll back) or its timeout.
pub async fn ask_approval(
    clients: &HoldClients,
    ask: &AskApproval,
    now: Epoch,
) -> StepResult<ApprovalAsked> {
    let plan = &ask.plan;
    let (finished, next) = match (plan.waves.get(ask.wave), plan.waves.get(ask.wave + 1)) {
        (Some(finished), Some(next)) => (finished, next),
        _ => {
            return Err(StepError::invalid(format!(
                "askApproval: the plan has no wave {} followed by another",
                ask.wave
            )));
        }
    };
    let gate = finished.approval.clone().ok_or_else(|| {
        StepError::invalid(format!(
            "askApproval: wave {} has no approval gate",
            ask.wave
        ))
    })?;
    let store = clients.fleet.store()?;
    let outcomes = match &ask.wave_results {
        Some(written) => store
            .lane_results(written)
            .await?
            .iter()
            .filter_map(|r| r.output_as::<Outcome>())
            .collect(),
        None => Vec::new(),
    };
    let finished_targets = store.wave_targets(plan, finished).await?;
    let next_targets = store.wave_targets(plan, next).await?;
    let name = execution_name(&ask.execution);
    let key = approval_key(name, ask.wave);
    let request = ApprovalRequest {
        execution_arn: ask.execution.clone(),
        wave: ask.wave,
        task_token: ask.token.clone(),
        asked_at: now,
        answer_by: now + gate.timeout_seconds,
        on_timeout: gate.on_timeout,
        message: Briefing {
            ask,
            location: format!("s3://{}/{key}", store.bucket),
            finished: &finished_targets,
            outcomes: &outcomes,
            next: &next_targets,
            answer_by: now + gate.timeout_seconds,
            on_timeout: gate.on_timeout,
        }
        .message(),
    };
    store.put_json(&key, &request).await?;
    match &clients.approval_topic {
        Some(topic) => {
            clients
                .sns
                .publish()
                .topic_arn(topic)
                .subject(subject(name, ask.wave))
                .message(&request.message)
                .send()
                .await
                .map_err(|e| StepError::from_sdk("Publish", e))?;
        }
        None => tracing::warn!(
            execution = %ask.execution,
            "APPROVAL_TOPIC_ARN is not set: the approval request is only in s3://{}/{key}",
            store.bucket
        ),
    }
    tracing::info!(execution = %ask.execution, wave = ask.wave, key = %key, "asked for approval");
    Ok(ApprovalAsked {
        key,
        answer_by: rollout_core::aws::iso_time(request.answer_by),
    })
}

/// Where the gate stored its request (never the token itself: the result of a callback task's
/// invocation may be logged).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalAsked {
    pub key: String,
    pub answer_by: String,
}

/// A target child's result, as its last Pass state writes it.
#[derive(serde::Deserialize, Debug, Clone)]
struct Outcome {
    group: String,
    outcome: String,
}

/// SNS takes a subject of "less than 100 characters", without line breaks or control characters
/// (Publish API reference). Counted in characters: an execution name may hold non-ASCII ones.
const SUBJECT_MAX_CHARS: usize = 99;

fn subject(execution: &str, wave: usize) -> String {
    format!("ami-rollout: approve wave {} of {execution}?", wave + 2)
        .chars()
        .filter(|c| !c.is_control())
        .take(SUBJECT_MAX_CHARS)
        .collect()
}

/// What the approvers are told: what the finished wave did and its checks, what the next wave
/// will do, and how to answer (never the token).
struct Briefing<'a> {
    ask: &'a AskApproval,
    /// Where the request, token included, is stored.
    location: String,
    finished: &'a [Target],
    outcomes: &'a [Outcome],
    next: &'a [Target],
    answer_by: Epoch,
    on_timeout: OnApprovalTimeout,
}

impl Briefing<'_> {
    fn message(&self) -> String {
        let Briefing {
            ask,
            finished,
            outcomes,
            next,
            ..
        } = self;
        let settings = &ask.plan.settings;
        let name = execution_name(&ask.execution);
        let ami = &ask.plan.ami;
        let mut text = format!(
            "Execution {name} rolled wave {} of {} out to {} ({}) and it passed its checks.\n\n",
            ask.wave + 1,
            ask.plan.waves.len(),
            ami.id,
            ami.name
        );
        text.push_str("What the wave did:\n");
        for target in finished.iter() {
            let outcome =
                outcomes
                    .iter()
                    .find(|o| o.group == target.group)
                    .map_or("rolled out", |o| match o.outcome.as_str() {
                        "rolledOut" => "rolled out",
                        other => other,
                    });
            let own = settings.for_group(&target.group);
            let mut checks = vec![format!("healthy for a {} s bake", own.bake_seconds())];
            if Option::is_some(&target.ecs) {
                checks.push("ECS services steady".into());
            }
            if !own.alarm_names().is_empty() {
                checks.push(format!("alarms quiet: {}", own.alarm_names().join(", ")));
            }
            text.push_str(&format!(
                "- {} on {}: {outcome}; {}\n",
                target.name(),
                target.ami.id,
                checks.join(", ")
            ));
        }
        text.push_str(&format!(
            "\nWhat wave {} will do: roll {} target(s) out to {}:\n",
            ask.wave + 2,
            next.len(),
            ami.id
        ));
        for target in next.iter() {
            let window = target
                .window
                .as_ref()
                .map(|w| format!(" ({})", w.window.describe()))
                .unwrap_or_default();
            text.push_str(&format!("- {}{window}\n", target.name()));
        }
        let timeout = match self.on_timeout {
            OnApprovalTimeout::Stop => "the execution stops, keeping its holds, for a redrive",
            OnApprovalTimeout::Rollback => "every target the execution touched is rolled back",
        };
        text.push_str(&format!(
        "\nAnswer by {}; after that, {timeout}.\n\
         Approve: ami-rollout approve {name}\n\
         Reject (rolls back every touched target): ami-rollout reject {name} --reason \"...\"\n\
         Without the CLI: read the task token from {} (taskToken), then\n  \
         aws stepfunctions send-task-success --task-token <token> --task-output '{{\"approved\": true}}'\n  \
         aws stepfunctions send-task-failure --task-token <token> --error Rejected --cause \"...\"\n",
        rollout_core::aws::iso_time(self.answer_by),
        self.location
    ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::change_control::PlannedWindow;
    use rollout_core::settings::SettingsMap;

    use crate::tests::EXECUTION;
    use rollout_core::samples::target;

    #[test]
    fn a_subject_is_under_100_characters_whatever_the_execution_name() {
        let name = "ü".repeat(80);
        let said = subject(&name, 0);
        assert_eq!(said.chars().count(), SUBJECT_MAX_CHARS);
        assert!(
            said.starts_with("ami-rollout: approve wave 2 of üü"),
            "{said}"
        );
        assert_eq!(
            subject("nightly\nrun", 1),
            "ami-rollout: approve wave 3 of nightlyrun?"
        );
    }

    #[test]
    fn a_window_check_says_when_to_look_again_in_the_wait_s_timestamp_form() {
        let closed = WindowTimes::from(WindowState::Closed {
            opens_at: Some(1_796_464_800),
        });
        assert_eq!(
            serde_json::to_value(closed).unwrap(),
            serde_json::json!({"open": false, "opensAt": "2026-12-05T10:00:00Z"})
        );
        let open = WindowTimes::from(WindowState::Open {
            closes_at: 1_796_464_800,
        });
        assert_eq!(
            serde_json::to_value(open).unwrap(),
            serde_json::json!({"open": true, "closesAt": "2026-12-05T10:00:00Z"})
        );
        assert_eq!(
            serde_json::to_value(WindowTimes::NO_WINDOW).unwrap(),
            serde_json::json!({"open": true})
        );
    }

    #[test]
    fn a_running_target_whose_window_never_opens_fails_with_its_name() {
        let window = MaintenanceWindow {
            cron: "0 0 30 2 *".into(),
            duration_minutes: 60,
            time_zone: "UTC".into(),
        };
        let err = window_at(&window, &target("web"), 1_796_464_800).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(
            err.to_string()
                .contains("web: its maintenance window (0 0 30 2 * in UTC)"),
            "{err}"
        );
    }

    #[test]
    fn the_approvers_are_told_what_the_wave_did_what_comes_next_and_how_to_answer() {
        let settings = SettingsMap::parse(
            r#"{"*": {"bakeSeconds": 600}, "web": {"alarmNames": ["web-5xx"]}}"#,
        )
        .unwrap();
        let mut api = target("api");
        api.window = Some(PlannedWindow {
            window: MaintenanceWindow {
                cron: "0 2 * * 6".into(),
                duration_minutes: 240,
                time_zone: "Europe/Lisbon".into(),
            },
            times: WindowState::Closed {
                opens_at: Some(1_796_464_800),
            }
            .into(),
        });
        let ask = AskApproval {
            execution: EXECUTION.into(),
            token: "secret-token".into(),
            wave: 0,
            plan: Box::new(PlanSummary {
                settings,
                ..crate::tests::plan(&[1, 2])
            }),
            wave_results: None,
        };
        let outcomes = vec![Outcome {
            group: "web".into(),
            outcome: "rolledOut".into(),
        }];
        let text = Briefing {
            ask: &ask,
            location: "s3://plans/approvals/rollout-2026-12-01/wave-000.json".into(),
            finished: &[target("web")],
            outcomes: &outcomes,
            next: &[api, target("worker")],
            answer_by: 1_796_464_800,
            on_timeout: OnApprovalTimeout::Rollback,
        }
        .message();
        for expected in [
            "Execution rollout-2026-12-01 rolled wave 1 of 2 out to ami-00000002",
            "- web on ",
            ": rolled out; healthy for a 600 s bake, ECS services steady, alarms quiet: web-5xx",
            "What wave 2 will do: roll 2 target(s) out",
            "- api (0 2 * * 6 in Europe/Lisbon, for 240 min)",
            "- worker\n",
            "Answer by 2026-12-05T10:00:00Z; after that, every target the execution touched is rolled back",
            "ami-rollout approve rollout-2026-12-01",
            "s3://plans/approvals/rollout-2026-12-01/wave-000.json",
            "send-task-failure --task-token <token> --error Rejected",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert!(
            !text.contains("secret-token"),
            "the token is never in the message"
        );
    }
}
