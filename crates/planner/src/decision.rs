//! What planning decides for one target.

use rollout_core::model::Target;

pub(crate) enum Decision {
    Roll(Box<Target>),
    Skip(String),
    Refuse(String),
    WrongArchitecture(String),
}
