//! A step's output is the next step's input: the committed samples (what the README and the
//! console show) must parse as each step's input, in the order the state machine passes them.

use rollout_core::model::{Plan, RollbackReport, RollbackRequest, TargetRun, Verdict};
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
fn the_map_builds_each_targets_run_from_the_plan() {
    let plan: Plan = serde_json::from_value(sample("plan.json")).unwrap();
    let asl = asl();
    let waves = &asl["States"]["Roll out waves in order"];
    let wave = &waves["ItemProcessor"]["States"]["Roll out wave"];
    // What the outer Map hands each wave, and what the inner Map hands each target.
    assert_eq!(
        keys(&waves["ItemSelector"]),
        [
            "ami",
            "execution",
            "executionStartTime",
            "maxConcurrency",
            "settings",
            "wave",
            "waveIndex"
        ]
    );
    assert_eq!(
        keys(&wave["ItemSelector"]),
        [
            "ami",
            "execution",
            "executionStartTime",
            "settings",
            "target"
        ]
    );
    assert_eq!(wave["MaxConcurrencyPath"], "$.maxConcurrency");
    for target in plan.waves.iter().flatten() {
        let item = serde_json::json!({"execution": "exec-1", "executionStartTime": "2026-12-01T10:00:00.123Z", "ami": plan.ami, "settings": plan.settings, "target": target});
        let run: TargetRun = serde_json::from_value(item).unwrap();
        run.validate().unwrap();
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

    let request: RollbackRequest = serde_json::from_value(sample("rollback-request.json")).unwrap();
    assert_eq!(request.failure.error, "TargetUnhealthy");
    let report: RollbackReport = serde_json::from_value(sample("rollback-report.json")).unwrap();
    assert!(report.complete && report.cause.contains("rolled back: web-canary"));
}
