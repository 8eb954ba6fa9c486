//! How long each execution's history gets on AWS, modelled with no server: the ASL gives the
//! path through the states, the wait policy (check-ecs-health's own `verdict`) gives the number of
//! polls, and each state type adds the events AWS records for it. The local Step Functions records
//! fewer events than AWS, so the bar of DESIGN §8 (no history past 2,500 events, a tenth of AWS's
//! 25,000 cap) is checked here, against AWS's count.

use check_ecs_health::{Observation, verdict};
use rollout_core::model::{Epoch, RefreshRef, Verdict};
use rollout_core::refresh::{RefreshInfo, RefreshStatus};
use serde_json::Value;

/// A tenth of AWS's 25,000-event cap on a Standard execution's history.
const HISTORY_BAR: usize = 2_500;

fn asl() -> Value {
    serde_json::from_str(include_str!("../statemachine/rollout.asl.json")).unwrap()
}

/// The events AWS records for one pass through a state (no retries): a Lambda task is entered,
/// scheduled, started, succeeds and is exited; a Distributed Map is entered, starts its Map Run,
/// sees it succeed and is exited (its children's events are in their own histories); any other
/// state is entered and exited.
fn events_of(state: &Value) -> usize {
    match state["Type"].as_str().unwrap() {
        // A callback task also records that its invocation returned (TaskSubmitted).
        "Task"
            if state["Resource"]
                .as_str()
                .unwrap()
                .ends_with(".waitForTaskToken") =>
        {
            6
        }
        "Task" => 5,
        "Map" => 4,
        _ => 2,
    }
}

/// Walks `definition` from its StartAt, choosing at each Choice with `choose(name, visits)`
/// (None: the Default), and counts the events of the whole execution (started and ended: 2).
fn history(definition: &Value, mut choose: impl FnMut(&str, usize) -> Option<usize>) -> usize {
    let states = definition["States"].as_object().unwrap();
    let mut visits = std::collections::HashMap::new();
    let mut name = definition["StartAt"].as_str().unwrap().to_string();
    let mut events = 2;
    for _ in 0..100_000 {
        let state = &states[&name];
        events += events_of(state);
        let seen = visits.entry(name.clone()).or_insert(0usize);
        *seen += 1;
        let next = match state["Type"].as_str().unwrap() {
            "Choice" => match choose(&name, *seen) {
                Some(i) => state["Choices"][i]["Next"].clone(),
                None => state["Default"].clone(),
            },
            _ => state["Next"].clone(),
        };
        match next.as_str() {
            Some(n) => name = n.to_string(),
            None => return events,
        }
    }
    panic!("the walk did not end");
}

/// Polls of one target whose refresh takes `refresh_seconds`, then a bake of `bake_seconds`.
fn polls(refresh_seconds: Epoch, bake_seconds: i64) -> usize {
    let mut run = rollout_core::samples::target_run();
    run.target.ecs = None;
    run.settings = rollout_core::settings::SettingsMap::parse(&format!(
        r#"{{"*": {{"instanceWarmupSeconds": 300, "bakeSeconds": {bake_seconds}}}}}"#
    ))
    .unwrap();
    run.new_version = Some(4);
    run.refresh = Some(RefreshRef {
        id: "r-1".into(),
        started_at: 0,
    });
    let (mut t, mut polls) = (0, 0);
    loop {
        let done = t >= refresh_seconds;
        let observation = Observation {
            refresh: Some(RefreshInfo {
                id: "r-1".into(),
                status: RefreshStatus::parse(if done { "Successful" } else { "InProgress" }),
                percentage: ((t * 100) / refresh_seconds).min(100) as i32,
                reason: None,
                desired: Some(("lt-0123456789abcdef0".into(), "4".into())),
                started_at: Some(0),
                ended_at: done.then_some(refresh_seconds),
            }),
            fleet_read: done,
            instances: vec![
                ("i-1".into(), run.ami.id.clone()),
                ("i-2".into(), run.ami.id.clone()),
            ],
            ..Default::default()
        };
        let health = verdict(&run, &observation, t);
        polls += 1;
        assert_ne!(health.verdict, Verdict::Unhealthy, "{health:?}");
        if health.verdict == Verdict::Healthy {
            return polls;
        }
        t += health.next_wait_seconds;
        run.health = Some(health);
    }
}

/// One target child's history: the target's whole rollout, `polls` checks of it, for a group or
/// (`instance`) a standalone instance.
fn child_history(polls: usize, instance: bool) -> usize {
    child_history_with_drain(polls, instance, 0)
}

/// The same, after `drains` looks at the drain of a standalone ECS container instance.
fn child_history_with_drain(polls: usize, instance: bool, drains: usize) -> usize {
    let asl = asl();
    let child = &asl["States"]["Roll out the wave"]["ItemProcessor"]["States"]["Roll out the account-region"]
        ["ItemProcessor"];
    history(child, |name, visits| match name {
        "Has the target a maintenance window?" => None,
        "Is it a group or an instance?" => instance.then_some(0),
        "Is the root being replaced?" => (visits > drains).then_some(0),
        "Is the target healthy?" | "Is the instance healthy?" => (visits >= polls).then_some(0),
        other => panic!("unexpected choice {other}"),
    })
}

/// A group's child that first parks `parks` times until its window opens (a window a year away
/// parks twice: a task token lives at most a year, so one park lasts at most 364 days).
fn child_history_behind_window(polls: usize, parks: usize) -> usize {
    let asl = asl();
    let child = &asl["States"]["Roll out the wave"]["ItemProcessor"]["States"]["Roll out the account-region"]
        ["ItemProcessor"];
    history(child, |name, visits| match name {
        "Has the target a maintenance window?" => Some(0),
        "Is the window open?" => (visits > parks).then_some(0),
        "Is it a group or an instance?" => None,
        "Is the target healthy?" => (visits >= polls).then_some(0),
        other => panic!("unexpected choice {other}"),
    })
}

#[test]
fn a_target_waiting_a_year_for_its_window_parks_instead_of_polling() {
    let polls = polls(1_800, 300);
    let at_once = child_history_behind_window(polls, 0);
    // Each park: the window read (a task), its choice, and the callback task that waits.
    let a_year = child_history_behind_window(polls, 2);
    assert_eq!(a_year, at_once + 2 * (5 + 2 + 6));
    assert!(a_year < HISTORY_BAR, "{a_year}");
    // A poll of the wave's stop every five minutes for that year would record 9 events each.
    assert!(a_year * 100 < 366 * 24 * 12 * 9);
}

/// Looks at a drain whose tasks take `seconds` to leave, with start-refresh's own wait policy.
fn drain_polls(seconds: Epoch) -> usize {
    use rollout_core::ecs::ContainerInstanceView;
    use start_refresh::drain::{Next, next};
    let mut live = ContainerInstanceView {
        arn: "arn:aws:ecs:us-east-1:111111111111:container-instance/prod/abc".into(),
        ec2_instance_id: "i-1".into(),
        status: "ACTIVE".into(),
        agent_connected: true,
        ami: None,
        running_tasks: 3,
        registered_at: None,
    };
    let (mut t, mut polls, mut drain) = (0, 0, None);
    loop {
        polls += 1;
        live.running_tasks = if t >= seconds { 0 } else { 3 };
        match next(drain.as_ref(), &live, t, 172_800) {
            Next::Start => {
                live.status = "DRAINING".into();
                drain = Some(rollout_core::model::Drain {
                    container_instance_arn: live.arn.clone(),
                    started_at: t,
                    running_tasks: 3,
                    next_wait_seconds: start_refresh::drain::MIN_DRAIN_WAIT_SECONDS,
                });
            }
            Next::Wait(d) => drain = Some(d),
            Next::Drained(_) => return polls,
            Next::TooLong(why) => panic!("{why}"),
        }
        t += drain.as_ref().unwrap().next_wait_seconds;
    }
}

/// A lane's history: its Distributed Map only, whatever the number of its targets.
fn lane_history(map: &str, lane: &str) -> usize {
    let asl = asl();
    history(&asl["States"][map]["ItemProcessor"], |name, _| {
        panic!("unexpected choice {name} in {lane}")
    })
}

/// The parent's history for a rollout of `waves` waves that all succeed.
fn parent_history(waves: usize) -> usize {
    parent_history_with_copies(waves, 0)
}

/// The same, after waiting `checks` times for a copy of the AMI into a region (none: no copy).
fn parent_history_with_copies(waves: usize, checks: usize) -> usize {
    history(&asl(), |name, visits| match name {
        "Is the input a batch from a pipe?"
        | "Is an AMI to be baked first?"
        | "Is there anything to do?"
        | "Is this an undo?" => None,
        "Does a region need a copy of the AMI?" => (checks > 0).then_some(0),
        "Is a copy still pending?" => (visits < checks).then_some(0),
        "Is there a wave left?" => (visits <= waves).then_some(0),
        "Did a target fail?" | "Is an approval due?" | "How did the rollout end?" => None,
        other => panic!("unexpected choice {other}"),
    })
}

#[test]
fn a_child_of_a_30_minute_refresh_with_a_5_minute_bake_stays_far_under_the_bar() {
    let polls = polls(1_800, 300);
    let events = child_history(polls, false);
    println!("child: {polls} polls, {events} events on AWS");
    assert!(polls > 10, "the policy polls the refresh: {polls}");
    // The window's and the kind's choices (2 each), create, start, restore (5 each), then per
    // poll a check, a choice and a wait.
    assert_eq!(events, 2 + 2 + 2 + 5 + 5 + polls * 9 - 2 + 5 + 2);
    assert!(events < HISTORY_BAR, "{events}");
    // A one-hour bake, the case that stopped the old single execution at about 30 groups.
    let long = child_history(self::polls(1_800, 3_600), false);
    assert!(long < HISTORY_BAR, "{long}");
    // A standalone instance: the replacement (and its choice) instead of create and restore.
    let instance = child_history(polls, true);
    assert_eq!(instance, 2 + 2 + 2 + 5 + 2 + polls * 9 - 2 + 2);
}

#[test]
fn a_container_instance_that_drains_for_the_longest_allowed_stays_under_the_bar() {
    let polls = polls(1_800, 300);
    let quick = drain_polls(600);
    let longest = drain_polls(172_800);
    println!("drain: {quick} looks for 10 minutes, {longest} for 48 hours");
    assert!(quick < 15, "{quick}");
    // Each look: the replace task, its choice and a wait.
    let events = child_history_with_drain(polls, true, longest - 1);
    assert_eq!(events, child_history(polls, true) + (longest - 1) * 9);
    assert!(events < HISTORY_BAR, "{events}");
}

#[test]
fn a_lane_holds_its_map_run_and_nothing_per_target() {
    for (map, lane) in [
        ("Roll out the wave", "Roll out the account-region"),
        ("Roll back touched targets", "Roll back the account-region"),
    ] {
        // Started and ended, the Map state entered, its Map Run started and succeeded, exited.
        assert_eq!(lane_history(map, lane), 2 + 4, "{lane}");
    }
}

#[test]
fn the_parent_grows_with_the_waves_not_the_targets() {
    // The targets never appear in the parent's path: its history is a function of the waves.
    let per_wave = parent_history(2) - parent_history(1);
    assert_eq!(parent_history(10) - parent_history(9), per_wave);
    assert!(per_wave <= 20, "{per_wave} events per wave");
    // 5,000 targets in as many waves as any plan has (one per target would be absurd; 100 is a lot).
    let hundred = parent_history(100);
    println!(
        "parent: {} events for 1 wave, {hundred} for 100",
        parent_history(1)
    );
    assert!(hundred < HISTORY_BAR, "{hundred}");
}

#[test]
fn a_copy_waited_for_until_its_deadline_stays_under_the_bar() {
    // AMI_COPY_TIMEOUT_SECONDS' default, two hours, checked once a minute: each check is a
    // wait, a task and a choice.
    let checks = 7_200 / 60;
    let with_copy = parent_history_with_copies(10, checks);
    let per_check = parent_history_with_copies(10, checks + 1) - with_copy;
    assert_eq!(per_check, 2 + 5 + 2);
    println!("parent: {with_copy} events for 10 waves after a two-hour copy");
    assert!(with_copy < HISTORY_BAR, "{with_copy}");
}

#[test]
fn the_state_carries_no_list_of_targets() {
    // What the parent carries between states: the plan summary (whatever the number of targets),
    // the wave cursor, the Map Run's result location, the outcome.
    let plan: rollout_core::model::PlanSummary =
        serde_json::from_str(include_str!("../statemachine/samples/plan.json")).unwrap();
    let mut wide = plan.clone();
    wide.target_count = 5_000;
    wide.waves[1].targets = 4_999;
    // "3" became "5000" and "2" became "4999": only the counts' digits differ.
    assert_eq!(
        serde_json::to_vec(&wide).unwrap().len() - serde_json::to_vec(&plan).unwrap().len(),
        6
    );
    assert!(serde_json::to_vec(&wide).unwrap().len() < 64 * 1024);
}
