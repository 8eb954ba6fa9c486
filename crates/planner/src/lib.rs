//! rollout-planner: what a trigger comes to, decided before anything changes. resolve-ami runs it
//! as the state machine's first step; the CLI's `plan`, `start`, `undo`, `abort` and `drift` run
//! the very same code with the operator's credentials. It only reads AWS, but for the scheduled
//! drift check's metrics (`drift::scheduled`, which only resolve-ami's schedule runs).
//!
//! The modules form a tree, top to bottom:
//! - `resolve`: one trigger into one plan, built whole (`Resolved`).
//! - `accept`: the checks made before anything is read (shape, settings, concurrency).
//! - `sources`: where the AMI comes from, and when a trigger has nothing to do.
//! - `reach` and `amis`: the accounts and regions, and the AMI of each (found, copied, launchable).
//! - `selection`: which targets a rollout is for.
//! - one module per target kind, each finding, reading and deciding its targets: `groups` (Auto
//!   Scaling groups), `instances` (standalone instances); both answer with a `decision::Decision`.
//! - `waves`: decided targets into waves; `change_control`: their windows, gates and length.
//! - `undo` and `drift`: the plan that brings a rollout back, and the fleet against the approved AMI.

pub mod accept;
pub mod amis;
pub mod change_control;
pub mod decision;
pub mod drift;
pub mod groups;
pub mod instances;
pub mod reach;
pub mod resolve;
pub mod selection;
pub mod sources;
pub mod undo;
pub mod waves;

pub use accept::{Accepted, accept};
pub use groups::GroupFacts;
pub use reach::{Place, Reach};
pub use resolve::{Resolved, resolve};
pub use waves::{Decided, decide_groups, decide_targets};

#[cfg(test)]
mod tests;
