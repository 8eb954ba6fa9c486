//! The bottom of the house: the types and rules of a rollout that every step, the planner and the
//! CLI share, with no AWS SDK and no Lambda runtime in them. Adapters (rollout-core) sit above;
//! rollout-core re-exports these modules where the steps have always found them.
//!
//! The modules form a tree: `time` and `error` at the bottom; `window` and `gate` on them;
//! `settings` on those; `model` (targets, plans, runs, outcomes) on settings; `trigger` on model.

pub mod error;
pub mod gate;
pub mod model;
pub mod settings;
pub mod time;
pub mod trigger;
pub mod window;

pub use error::{StepError, StepResult};
