//! Sample step payloads, shared by the functions' tests and checked against `statemachine/samples`.

use crate::model::TargetRun;

/// The Map iteration's input, as `statemachine/samples/target-run.json` holds it.
pub fn target_run() -> TargetRun {
    serde_json::from_str(include_str!(
        "../../../statemachine/samples/target-run.json"
    ))
    .expect("statemachine/samples/target-run.json is a TargetRun")
}
