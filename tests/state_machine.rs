//! The state machine's side of the error contract, and what an operator sees in the console.

use std::collections::BTreeSet;

use rollout_core::error::{ERROR_NAMES, OnFailure};
use serde_json::{Value, json};

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
            // An approver rejects a gate's next wave with SendTaskFailure; Lambda reports a
            // function that ran past its timeout as Sandbox.Timedout.
            let known = error.starts_with("States.")
                || error.starts_with("Lambda.")
                || error == "Sandbox.Timedout"
                || error == rollout_core::error::REJECTED
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
fn every_throttling_retrier_has_jitter_so_children_that_start_together_do_not_retry_together() {
    for (name, state) in states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
    {
        for retrier in state["Retry"].as_array().into_iter().flatten() {
            let errors = retrier["ErrorEquals"].to_string();
            if errors.contains("Lambda.TooManyRequestsException") || errors.contains("AwsThrottled")
            {
                assert_eq!(retrier["JitterStrategy"], "FULL", "task {name:?}: {errors}");
            }
        }
    }
}

#[test]
fn every_task_retries_a_function_timeout_once() {
    // Lambda's timeout reaches a task as Sandbox.Timedout; every step adopts what an earlier
    // attempt made, so one more attempt is safe, and a second timeout fails as any other error.
    for (name, state) in states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
    {
        let retriers: Vec<&Value> = state["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["ErrorEquals"].to_string().contains("Sandbox.Timedout"))
            .collect();
        assert_eq!(retriers.len(), 1, "task {name:?}");
        assert_eq!(
            retriers[0]["ErrorEquals"],
            json!(["Sandbox.Timedout"]),
            "task {name:?}"
        );
        assert_eq!(retriers[0]["MaxAttempts"], 1, "task {name:?}");
    }
}

#[test]
fn no_choice_rule_reads_a_path_it_only_tests_for_in_the_same_rule() {
    // AWS does not document that And stops at its first false member: a rule that tests a path
    // for presence and reads under it in the same And may read an absent path (States.Runtime).
    fn rules(choice: &Value) -> Vec<&Value> {
        let mut found = vec![choice];
        for key in ["And", "Or"] {
            for member in choice[key].as_array().into_iter().flatten() {
                found.extend(rules(member));
            }
        }
        found
    }
    for (name, state) in states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Choice")
    {
        for choice in state["Choices"].as_array().unwrap() {
            let all = rules(choice);
            let tested: Vec<&str> = all
                .iter()
                .filter(|r| r["IsPresent"] == true)
                .filter_map(|r| r["Variable"].as_str())
                .collect();
            for rule in all.iter().filter(|r| r.get("IsPresent").is_none()) {
                let Some(read) = rule["Variable"].as_str() else {
                    continue;
                };
                assert!(
                    !tested.iter().any(|t| read.starts_with(&format!("{t}."))),
                    "{name:?} reads {read} in the rule that tests whether it is there"
                );
            }
        }
    }
}

#[test]
fn tasks_call_only_our_seven_functions() {
    let allowed = [
        "${HoldTargetsFunctionArn}",
        "${DistributeAmiFunctionArn}",
        "${ResolveAmiFunctionArn}",
        "${UpdateTemplateFunctionArn}",
        "${StartRefreshFunctionArn}",
        "${CheckEcsHealthFunctionArn}",
        "${RollbackFunctionArn}",
    ];
    let used: BTreeSet<String> = states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(_, s)| match s["Resource"].as_str().unwrap() {
            // An approval gate invokes its function with a task token and waits for the answer.
            "arn:aws:states:::lambda:invoke.waitForTaskToken" => s["Parameters"]["FunctionName"]
                .as_str()
                .unwrap()
                .to_string(),
            resource => resource.to_string(),
        })
        .collect();
    assert_eq!(used, allowed.iter().map(|s| s.to_string()).collect());
}

#[test]
fn every_fail_state_has_an_error_and_a_cause() {
    let fails: Vec<(String, Value)> = states(&asl())
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Fail")
        .collect();
    assert_eq!(fails.len(), 6);
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

/// The error names the state machine treats as `on_failure` says, in the contract's order.
fn names_for(on_failure: OnFailure) -> Vec<String> {
    ERROR_NAMES
        .iter()
        .filter(|(_, o)| *o == on_failure)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The names caught to roll back: exactly those that say the rollout itself failed.
fn rolled_back_names() -> Vec<String> {
    names_for(OnFailure::RollBack)
}

/// The names caught where the wave stops instead: another target failed first.
fn stopped_names() -> Vec<String> {
    names_for(OnFailure::EndTarget)
}

#[test]
fn a_failed_target_stops_its_wave_and_aws_not_answering_stops_for_a_redrive() {
    let asl = asl();
    let states = &asl["States"];
    let child = &states["Roll out the wave"]["ItemProcessor"]["States"]["Roll out the account-region"]
        ["ItemProcessor"];
    // Every change a child makes catches a failed rollout into the wave's stop signal, and a
    // stop raised by another target into its own end; the child then succeeds with its outcome,
    // so only what is left uncaught (AWS not answering past the retries, a foreign refresh)
    // fails a child, and with it the Map Run, for a redrive to resume.
    for (name, state) in child["States"].as_object().unwrap() {
        if state["Type"] != "Task" || name == "Stop the wave" {
            continue;
        }
        let mut caught = names_in(state, "Catch");
        if name == "Wait for the maintenance window" {
            // Parked until the window opens: its timeout is the opening, so the window is read again.
            assert_eq!(caught.pop().as_deref(), Some("States.Timeout"));
            assert_eq!(
                state["Catch"][2]["Next"],
                "Is the target inside its window?"
            );
        }
        assert_eq!(
            caught,
            [stopped_names(), rolled_back_names()].concat(),
            "{name}"
        );
        assert_eq!(state["Catch"][0]["Next"], "Target stopped", "{name}");
        assert_eq!(state["Catch"][1]["Next"], "Stop the wave", "{name}");
    }
    assert_eq!(
        child["States"]["Stop the wave"]["Parameters"]["action"],
        "stopWave"
    );
    assert!(child["States"]["Stop the wave"].get("Catch").is_none());
    for end in ["Target failed", "Target stopped", "Target rolled out"] {
        assert_eq!(child["States"][end]["End"], true, "{end}");
    }
    // No Map catches anything and none tolerates a failed child: a failed child stops the
    // execution where it is.
    for (map, lane) in [
        ("Roll out the wave", "Roll out the account-region"),
        ("Roll back touched targets", "Roll back the account-region"),
    ] {
        let lane = &states[map]["ItemProcessor"]["States"][lane];
        for map in [&states[map], lane] {
            assert_eq!(map["Type"], "Map");
            assert!(map.get("Catch").is_none(), "{map}");
            assert!(map.get("ToleratedFailurePercentage").is_none(), "{map}");
            assert!(map.get("ToleratedFailureCount").is_none(), "{map}");
        }
        assert_eq!(lane["End"], true);
    }
    // After each wave the parent reads the signal; a failed target sends it to the rollback.
    assert_eq!(states["Roll out the wave"]["Next"], "How did the wave go?");
    assert_eq!(
        states["Did a target fail?"]["Choices"][0]["Next"],
        "Plan the rollback"
    );
    assert_eq!(
        states["Did a target fail?"]["Default"],
        "Is an approval due?"
    );
    assert_eq!(
        states["Is an approval due?"]["Default"],
        "Go to the next wave"
    );
    assert_eq!(
        states["Go to the next wave"]["Next"],
        "Is there a wave left?"
    );
    // The rollback's children converge with their own loop; one target that cannot be brought
    // back ends its child with that outcome, AWS not answering stays uncaught.
    let rollback = &states["Roll back touched targets"]["ItemProcessor"]["States"]["Roll back the account-region"]
        ["ItemProcessor"]["States"];
    assert_eq!(
        names_in(&rollback["Roll back the target"], "Catch"),
        rolled_back_names()
    );
    assert_eq!(
        rollback["Wait for the target"]["Next"],
        "Roll back the target"
    );
    for step in ["Plan the rollback", "Plan the undo", "Sum up the rollback"] {
        assert_eq!(
            names_in(&states[step], "Catch"),
            rolled_back_names(),
            "{step}"
        );
    }
}

#[test]
fn holds_are_taken_before_the_first_change_and_released_at_every_finished_end() {
    let asl = asl();
    let states = &asl["States"];
    // A trigger with nothing to do for this rollout ends before anything is held or changed.
    let anything = &states[states["Resolve AMI and plan"]["Next"].as_str().unwrap()];
    assert_eq!(anything["Choices"][0]["Variable"], "$.plan.nothingToDo");
    assert_eq!(
        states[anything["Choices"][0]["Next"].as_str().unwrap()]["Type"],
        "Succeed"
    );
    assert_eq!(anything["Default"], "Take hold of the targets");
    let take = &states["Take hold of the targets"];
    assert_eq!(take["Parameters"]["action"], "take");
    // Straight to the waves, unless a region needs a copy of the AMI first.
    let undo = &states[take["Next"].as_str().unwrap()];
    assert_eq!(undo["Choices"][0]["Next"], "Plan the undo");
    let copies = &states[undo["Default"].as_str().unwrap()];
    assert_eq!(copies["Default"], "Start with the first wave");
    // An undo runs the rollback's own Map over the plan's targets, then ends as undone.
    assert_eq!(states["Plan the undo"]["Parameters"]["action"], "planUndo");
    assert_eq!(states["Plan the undo"]["Next"], "Roll back touched targets");
    // Copies, once made, are protected like the AMIs protected with the holds.
    let protect = &states[states["Is a copy still pending?"]["Default"]
        .as_str()
        .unwrap()];
    assert_eq!(protect["Parameters"]["action"], "protectCopies");
    assert_eq!(protect["Next"], "Start with the first wave");
    // A copy that cannot be made releases the holds and ends under its own name.
    for step in [
        "Copy the AMI into regions without it",
        "Are the copies available?",
    ] {
        let catch = &states[step]["Catch"][0];
        assert_eq!(catch["Next"], "Release held targets", "{step}");
        assert_eq!(catch["ResultPath"], "$.copyError", "{step}");
    }
    assert_eq!(
        states["How did the rollout end?"]["Choices"][0]["Variable"],
        "$.copyError"
    );
    // A group held for another AMI ends the execution under its own name, nothing rolled back
    // (nothing was changed).
    let refused = names_for(OnFailure::Refuse);
    assert_eq!(names_in(take, "Catch"), refused);
    let refusal = &states[take["Catch"][0]["Next"].as_str().unwrap()];
    assert_eq!(
        (refusal["Type"].as_str(), refusal["Error"].as_str()),
        (Some("Fail"), Some("TargetHeld"))
    );
    // Every end in a Fail state passes through the release (a redrive could not get past it);
    // only what is left uncaught keeps the holds, for the redrive that resumes it.
    assert_eq!(
        states["Is there a wave left?"]["Default"],
        "Release held targets"
    );
    assert_eq!(
        states["Sum up the rollback"]["Next"],
        "Release held targets"
    );
    assert_eq!(
        states["Release held targets"]["Parameters"]["action"],
        "release"
    );
    let outcomes = |choice: &str| -> Vec<String> {
        states[choice]["Choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["Next"])
            .chain([&states[choice]["Default"]])
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let mut ends: BTreeSet<String> = outcomes("How did the rollout end?").into_iter().collect();
    assert!(ends.remove("Did the rollback bring everything back?"));
    ends.extend(outcomes("Did the rollback bring everything back?"));
    let ends: BTreeSet<&str> = ends.iter().map(String::as_str).collect();
    assert_eq!(
        ends,
        BTreeSet::from([
            "The AMI could not be copied",
            "Rollback could not run",
            "Rollback failed",
            "Rollout failed",
            "Undone",
            "Delete the replaced roots"
        ])
    );
    // Only a rollout that succeeded deletes the roots it kept, and it succeeds whatever comes of it.
    let delete = &states["Delete the replaced roots"];
    assert_eq!(delete["Next"], "Rollout succeeded");
    assert_eq!(delete["Catch"][0]["Next"], "Rollout succeeded");
    for step in ["Plan the rollback", "Plan the undo", "Sum up the rollback"] {
        assert_eq!(states[step]["Catch"][0]["Next"], "Release held targets");
    }
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

#[test]
fn a_bake_comes_before_the_plan_and_fails_before_anything_is_held() {
    let asl = asl();
    let states = &asl["States"];
    // A pipe's batch (an array) is wrapped into an object first: a ResultPath needs one.
    let start = &states[asl["StartAt"].as_str().unwrap()];
    assert_eq!(start["Choices"][0]["Variable"], "$[0]");
    let wrap = &states[start["Choices"][0]["Next"].as_str().unwrap()];
    assert_eq!(wrap["Parameters"]["pipeBatch.$"], "$");
    assert_eq!(wrap["Next"], start["Default"]);
    let first = &states[start["Default"].as_str().unwrap()];
    assert_eq!(first["Choices"][0]["Variable"], "$.createImageFrom");
    assert_eq!(first["Default"], "Resolve AMI and plan");
    let bake = &states[first["Choices"][0]["Next"].as_str().unwrap()];
    assert_eq!(bake["Parameters"]["action"], "bake");
    let check = &states[states[bake["Next"].as_str().unwrap()]["Next"]
        .as_str()
        .unwrap()];
    assert_eq!(check["Parameters"]["action"], "bakeStatus");
    let pending = &states[check["Next"].as_str().unwrap()];
    assert_eq!(pending["Choices"][0]["Next"], bake["Next"], "waits again");
    assert_eq!(pending["Default"], "Resolve AMI and plan");
    // A refused or failed bake ends the execution: no hold was taken, nothing is released.
    for step in [bake, check] {
        let failed = &states[step["Catch"][0]["Next"].as_str().unwrap()];
        assert_eq!(failed["Type"], "Fail");
        assert_eq!(failed["ErrorPath"], "$.bakeError.Error");
    }
}
