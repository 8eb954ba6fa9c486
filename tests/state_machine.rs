//! The state machine's side of the error contract, and what an operator sees in the console.

use std::collections::BTreeSet;

use rollout_core::error::{ERROR_NAMES, OnFailure};
use serde_json::Value;

fn asl() -> Value {
    serde_json::from_str(include_str!("../statemachine/rollout.asl.json")).unwrap()
}

/// Every state, nested Map processors included, with its name.
fn states(definition: &Value) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for (name, state) in definition["States"].as_object().unwrap() {
        all.push((name.clone(), state.clone()));
        if let Some(processor) = state.get("ItemProcessor") {
            all.extend(states(processor));
        }
    }
    all
}

fn names_in(state: &Value, field: &str) -> Vec<String> {
    state
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r["ErrorEquals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn every_error_the_asl_matches_is_one_our_functions_raise() {
    let ours: BTreeSet<&str> = ERROR_NAMES.iter().map(|(n, _)| *n).collect();
    for (name, state) in states(&asl()) {
        for error in names_in(&state, "Retry")
            .into_iter()
            .chain(names_in(&state, "Catch"))
        {
            let known = error.starts_with("States.")
                || error.starts_with("Lambda.")
                || ours.contains(error.as_str());
            assert!(
                known,
                "state {name:?} matches {error:?}, which no function raises"
            );
        }
    }
}

#[test]
fn every_retryable_error_is_retried_by_every_task_and_no_terminal_one_is() {
    for (name, state) in states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
    {
        let retried = names_in(&state, "Retry");
        for (error, on_failure) in ERROR_NAMES {
            assert_eq!(
                retried.iter().any(|r| r == error),
                *on_failure == OnFailure::Retry,
                "task {name:?} and {error}"
            );
        }
        assert!(
            retried.iter().any(|r| r == "Lambda.ServiceException"),
            "task {name:?} does not retry Lambda service errors"
        );
    }
}

#[test]
fn tasks_call_only_our_six_functions() {
    let allowed = [
        "${HoldTargetsFunctionArn}",
        "${ResolveAmiFunctionArn}",
        "${UpdateTemplateFunctionArn}",
        "${StartRefreshFunctionArn}",
        "${CheckEcsHealthFunctionArn}",
        "${RollbackFunctionArn}",
    ];
    let used: BTreeSet<String> = states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(_, s)| s["Resource"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(used, allowed.iter().map(|s| s.to_string()).collect());
}

#[test]
fn every_fail_state_has_an_error_and_a_cause() {
    let fails: Vec<(String, Value)> = states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Fail")
        .collect();
    assert_eq!(fails.len(), 5);
    for (name, state) in fails {
        assert!(
            state["Error"].is_string() || state["ErrorPath"].is_string(),
            "{name}"
        );
        assert!(
            state["Cause"].is_string() || state["CausePath"].is_string(),
            "{name}"
        );
    }
}

/// The names caught to roll back: exactly those that say the rollout itself failed.
fn rolled_back_names() -> Vec<String> {
    ERROR_NAMES
        .iter()
        .filter(|(_, on_failure)| *on_failure == OnFailure::RollBack)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn a_failed_rollout_reaches_rollback_and_aws_not_answering_stops_for_a_redrive() {
    let asl = asl();
    let rollout = &asl["States"]["Roll out waves in order"];
    assert_eq!(names_in(rollout, "Catch"), rolled_back_names());
    assert_eq!(rollout["Catch"][0]["Next"], "Roll back touched groups");
    // Anything caught ends in a Fail state, which a redrive would only re-enter: what a redrive
    // should resume (spent retries, a foreign refresh) must stay uncaught, in the rollout and in
    // the rollback alike.
    let rollback = &asl["States"]["Roll back touched groups"];
    assert_eq!(names_in(rollback, "Catch"), rolled_back_names());
    // The rollback loop calls the same converging function until it reports completion.
    assert_eq!(
        asl["States"]["Wait for rollback"]["Next"],
        "Roll back touched groups"
    );
}

#[test]
fn holds_are_taken_before_the_first_change_and_released_at_every_finished_end() {
    let asl = asl();
    let states = &asl["States"];
    assert_eq!(
        states["Resolve AMI and plan"]["Next"],
        "Take hold of the targets"
    );
    let take = &states["Take hold of the targets"];
    assert_eq!(take["Parameters"]["action"], "take");
    assert_eq!(take["Next"], "Roll out waves in order");
    // A group held for another AMI ends the execution under its own name, nothing rolled back
    // (nothing was changed).
    let refused: Vec<String> = ERROR_NAMES
        .iter()
        .filter(|(_, on_failure)| *on_failure == OnFailure::Refuse)
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(names_in(take, "Catch"), refused);
    let refusal = &states[take["Catch"][0]["Next"].as_str().unwrap()];
    assert_eq!(
        (refusal["Type"].as_str(), refusal["Error"].as_str()),
        (Some("Fail"), Some("TargetHeld"))
    );
    // Every end in a Fail state passes through the release (a redrive could not get past it);
    // only what is left uncaught keeps the holds, for the redrive that resumes it.
    assert_eq!(
        states["Roll out waves in order"]["Next"],
        "Release held targets"
    );
    assert_eq!(
        states["Is the rollback complete?"]["Default"],
        "Release held targets"
    );
    assert_eq!(
        states["Release held targets"]["Parameters"]["action"],
        "release"
    );
    let ends: BTreeSet<&str> = states["How did the rollout end?"]["Choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Next"].as_str().unwrap())
        .chain([states["How did the rollout end?"]["Default"]
            .as_str()
            .unwrap()])
        .collect();
    assert_eq!(
        ends,
        BTreeSet::from([
            "Rollback could not run",
            "Rollback failed",
            "Rollout failed",
            "Rollout succeeded"
        ])
    );
    assert_eq!(
        states["Roll back touched groups"]["Catch"][0]["Next"],
        "Release held targets"
    );
}

#[test]
fn every_next_names_an_existing_state() {
    fn check(definition: &Value) {
        let names: BTreeSet<&str> = definition["States"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(names.contains(definition["StartAt"].as_str().unwrap()));
        for state in definition["States"].as_object().unwrap().values() {
            let nexts = state
                .get("Next")
                .into_iter()
                .chain(state.get("Default"))
                .chain(["Choices", "Catch"].iter().flat_map(|f| {
                    state
                        .get(*f)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("Next"))
                }));
            for next in nexts {
                assert!(
                    names.contains(next.as_str().unwrap()),
                    "unknown state {next}"
                );
            }
            if let Some(processor) = state.get("ItemProcessor") {
                check(processor);
            }
        }
    }
    check(&asl());
}
