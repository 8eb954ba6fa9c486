//! The checks a trigger passes before anything is read of the fleet.

use rollout_core::config::{Config, validate_concurrency};
use rollout_core::settings::SettingsMap;
use rollout_core::trigger::{AmiSource, Trigger};
use rollout_core::{StepError, StepResult};
use serde_json::Value;

/// A trigger that passed the checks made before anything is read of the fleet.
pub struct Accepted {
    pub trigger: Trigger,
    /// The configured settings with the trigger's own layered over them.
    pub settings: SettingsMap,
    pub max_concurrency: u32,
    pub instance_concurrency: u32,
}

/// The first checks of a trigger, the ones a plan begins with (the operator CLI's `start` makes
/// them too, before it starts anything): its shape, its settings over the configured ones, its
/// concurrency.
pub fn accept(config: &Config, input: &Value) -> StepResult<Accepted> {
    let trigger = Trigger::parse(input)?;
    if trigger.overrides.skip_rolled_out && !matches!(trigger.source, AmiSource::Parameter { .. }) {
        return Err(StepError::invalid(
            "skipRolledOut needs parameterName: it remembers the AMIs planned from a parameter",
        ));
    }
    let settings = match &trigger.overrides.settings {
        Some(over) => config.settings.overlay(over),
        None => config.settings.clone(),
    };
    settings.validate()?;
    let concurrency =
        |over: Option<u32>, configured| validate_concurrency(over.unwrap_or(configured));
    Ok(Accepted {
        max_concurrency: concurrency(trigger.overrides.max_concurrency, config.max_concurrency)?,
        instance_concurrency: concurrency(
            trigger.overrides.instance_max_concurrency,
            config.instance_concurrency,
        )?,
        trigger,
        settings,
    })
}
