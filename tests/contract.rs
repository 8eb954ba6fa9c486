//! A step's output is the next step's input: the committed samples (what the README and the
//! console show) must parse as each step's input, in the order the state machine passes them.

use rollout_core::model::{
    Lane, PlanSummary, RollbackReport, RollbackStep, Target, TargetKind, TargetRun, Verdict,
};
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = format!(
        "{}/../statemachine/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn asl() -> Value {
    serde_json::from_str(include_str!("../statemachine/rollout.asl.json")).unwrap()
}

/// The keys a `Parameters`/`ItemSelector` block produces (without the `.$` suffix).
fn keys(block: &Value) -> Vec<String> {
    let mut keys: Vec<String> = block
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_end_matches(".$").to_string())
        .collect();
    keys.sort();
    keys
}

#[test]
fn triggers_parse() {
    rollout_core::trigger::Trigger::parse(&sample("manual-start.json")).unwrap();
    for name in [
        "parameter-store-change.json",
        "cloudtrail-put-parameter.json",
        "imagebuilder-image-available.json",
    ] {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        rollout_core::trigger::Trigger::parse(
            &serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn each_waves_map_builds_its_lanes_and_each_lane_its_targets_runs_from_the_plan_objects() {
    let plan: PlanSummary = serde_json::from_value(sample("plan.json")).unwrap();
    let lanes: Vec<Lane> = serde_json::from_value(sample("wave.json")).unwrap();
    let groups: Vec<Target> = serde_json::from_value(sample("lane.json")).unwrap();
    let instances: Vec<Target> = serde_json::from_value(sample("lane-instances.json")).unwrap();
    assert_eq!(
        plan.waves[1].targets,
        lanes.iter().map(|l| l.targets).sum::<usize>()
    );
    assert_eq!(lanes[0].targets, groups.len());
    assert_eq!(lanes[1].targets, instances.len());
    assert_eq!(
        (lanes[1].kind, lanes[1].max_concurrency),
        (TargetKind::Instance, 1)
    );
    let asl = asl();
    let states = &asl["States"];
    // The wave: one child per lane (account-region), all at once.
    let wave = &states["Roll out the wave"];
    assert_eq!(
        wave["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(
        wave["ItemReader"]["Parameters"]["Key.$"],
        "$.progress.current.key"
    );
    assert!(wave.get("MaxConcurrency").is_none() && wave.get("MaxConcurrencyPath").is_none());
    let lane_input = |lane: &Lane| {
        serde_json::json!({
            "execution": "exec-1",
            "executionArn": "arn:aws:states:eu-west-1:111122223333:execution:ami-rollout:exec-1",
            "executionStartTime": "2026-12-01T10:00:00.123Z",
            "settings": plan.settings, "maxConcurrency": lane.max_concurrency,
            "bucket": plan.bucket, "lane": lane, "wave": 1})
    };
    let mut lane_keys: Vec<String> = lane_input(&lanes[0])
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    lane_keys.sort();
    assert_eq!(keys(&wave["ItemSelector"]), lane_keys);
    // The lane: one child per target, at most maxConcurrency at once, each the run of one target
    // built from the lane's input.
    let lane = &wave["ItemProcessor"]["States"]["Roll out the account-region"];
    assert_eq!(
        lane["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(lane["ItemReader"]["Parameters"]["Key.$"], "$.lane.key");
    assert_eq!(lane["MaxConcurrencyPath"], "$.maxConcurrency");
    // Each lane's own cap: maxConcurrency for groups, one standalone instance at a time.
    assert_eq!(
        wave["ItemSelector"]["maxConcurrency.$"],
        "$$.Map.Item.Value.maxConcurrency"
    );
    for (lane_index, target) in groups
        .into_iter()
        .map(|t| (0, t))
        .chain(instances.into_iter().map(|t| (1, t)))
    {
        let input = lane_input(&lanes[lane_index]);
        let mut item = serde_json::Map::new();
        for (key, path) in lane["ItemSelector"].as_object().unwrap() {
            let path = path.as_str().unwrap();
            let value = match path.strip_prefix("$$.Map.Item.Value") {
                Some("") => serde_json::to_value(&target).unwrap(),
                Some(".ami") => serde_json::to_value(&target.ami).unwrap(),
                Some(other) => panic!("{other}"),
                None => input[path.strip_prefix("$.").unwrap()].clone(),
            };
            item.insert(key.trim_end_matches(".$").to_string(), value);
        }
        let run: TargetRun = serde_json::from_value(item.into()).unwrap();
        run.validate().unwrap();
        assert_eq!(run.wave, 1);
    }
    // The rollback's lanes and children get the same, without the wave, with the rollout an undo
    // brings back (a TargetRun field).
    let rollback = &states["Roll back touched targets"];
    for (rolling_back, rolling_out) in [
        (&rollback["ItemSelector"], &wave["ItemSelector"]),
        (
            &rollback["ItemProcessor"]["States"]["Roll back the account-region"]["ItemSelector"],
            &lane["ItemSelector"],
        ),
    ] {
        let mut with_wave = keys(rolling_back);
        let undoing = with_wave.iter().position(|k| k == "undoing");
        assert!(undoing.is_some(), "{with_wave:?}");
        with_wave.remove(undoing.unwrap());
        with_wave.push("wave".into());
        with_wave.sort();
        assert_eq!(with_wave, keys(rolling_out));
    }
}

#[test]
fn each_steps_sample_output_is_the_next_steps_input() {
    let create: update_template::TemplateRequest = serde_json::from_value(
        serde_json::json!({"action": "createVersion", "run": sample("target-run.json")}),
    )
    .unwrap();
    assert_eq!(
        create.action,
        update_template::TemplateAction::CreateVersion
    );

    let created: TargetRun = serde_json::from_value(sample("after-create-version.json")).unwrap();
    created.require_new_version().unwrap();

    let started: TargetRun = serde_json::from_value(sample("after-start-refresh.json")).unwrap();
    started.require_refresh().unwrap();

    let checked: TargetRun = serde_json::from_value(sample("after-health-check.json")).unwrap();
    assert_eq!(checked.health.as_ref().unwrap().verdict, Verdict::Baking);
    // The Wait state reads this path, the Choice state the verdict.
    assert!(sample("after-health-check.json")["health"]["nextWaitSeconds"].is_i64());
    let restore: update_template::TemplateRequest =
        serde_json::from_value(serde_json::json!({"action": "restoreReference", "run": checked}))
            .unwrap();
    assert_eq!(
        restore.action,
        update_template::TemplateAction::RestoreReference
    );

    let step: RollbackStep = serde_json::from_value(sample("rollback-step.json")).unwrap();
    assert!(!step.complete && step.next_wait_seconds > 0);
    let report: RollbackReport = serde_json::from_value(sample("rollback-report.json")).unwrap();
    assert!(!report.failed && report.cause.contains("rolled back: web-canary"));
}
