//! Arguments more than one command takes: what to roll out, how a started execution is named and
//! followed, how often to look.

use clap::Args;
use serde_json::{Map, Value, json};

use crate::failure::{CliResult, Failure};

/// What to roll out: the flags of a manual start, or a whole execution input.
#[derive(Args, Debug, Default)]
pub struct TriggerArgs {
    /// The AMI to roll out.
    #[arg(long, conflicts_with = "parameter_name")]
    pub ami_id: Option<String>,
    /// An SSM parameter holding the AMI to roll out.
    #[arg(long)]
    pub parameter_name: Option<String>,
    /// The whole execution input instead of the flags: JSON, or @file. A manual start, or an
    /// EventBridge event as the rule delivers it.
    #[arg(long, value_name = "JSON|@FILE", conflicts_with_all = ["ami_id", "parameter_name"])]
    pub input: Option<String>,
    /// Roll out exactly this Auto Scaling group (repeat for more).
    #[arg(long = "target", value_name = "GROUP")]
    pub targets: Vec<String>,
    /// Roll out exactly this standalone instance, by id or Name tag (repeat for more).
    #[arg(long = "instance", value_name = "ID|NAME")]
    pub instances: Vec<String>,
    /// Select by this tag instead of TARGET_TAG.
    #[arg(long, value_name = "KEY=VALUE")]
    pub target_tag: Option<String>,
    /// Leave this group out (repeat for more).
    #[arg(long = "exclude-asg", value_name = "GROUP")]
    pub excluded_asgs: Vec<String>,
    /// Leave this instance out (repeat for more).
    #[arg(long = "exclude-instance", value_name = "ID|NAME")]
    pub excluded_instances: Vec<String>,
    /// An explicit wave, its targets comma-separated; repeat for each wave, in order.
    #[arg(long = "wave", value_name = "T1,T2,...")]
    pub waves: Vec<String>,
    /// Settings over the settings document's, in its form: JSON or @file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub settings: Option<String>,
    /// `execution` (every touched target) or `wave` (the failed wave only).
    #[arg(long)]
    pub rollback_scope: Option<String>,
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    #[arg(long)]
    pub instance_max_concurrency: Option<u32>,
    /// Only this of the configured accounts (repeat for more).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Only this of the configured regions (repeat for more).
    #[arg(long = "only-region", value_name = "REGION")]
    pub regions: Vec<String>,
}

/// JSON given inline, or read from the file after `@`.
fn json_argument(flag: &str, text: &str) -> CliResult<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::refused(format!("--{flag} {text}: {e}")))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| Failure::refused(format!("--{flag}: not JSON: {e}")))
}

impl TriggerArgs {
    /// The execution input these flags stand for (not yet checked).
    pub fn input(&self) -> CliResult<Value> {
        if let Some(input) = &self.input {
            let with_flags = !self.targets.is_empty()
                || !self.instances.is_empty()
                || self.settings.is_some()
                || !self.waves.is_empty();
            if with_flags {
                return Err(Failure::refused(
                    "--input is the whole execution input: give the targets, waves and settings inside it",
                ));
            }
            return json_argument("input", input);
        }
        let mut start = Map::new();
        let mut put = |key: &str, value: Value| {
            start.insert(key.into(), value);
        };
        if let Some(ami) = &self.ami_id {
            put("amiId", json!(ami));
        }
        if let Some(name) = &self.parameter_name {
            put("parameterName", json!(name));
        }
        let lists = [
            ("targets", &self.targets),
            ("instances", &self.instances),
            ("excludedAsgs", &self.excluded_asgs),
            ("excludedInstances", &self.excluded_instances),
            ("accounts", &self.accounts),
            ("regions", &self.regions),
        ];
        for (key, values) in lists {
            if !values.is_empty() {
                put(key, json!(values));
            }
        }
        if !self.waves.is_empty() {
            let waves: Vec<Vec<&str>> = self
                .waves
                .iter()
                .map(|w| {
                    w.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .collect();
            put("waves", json!(waves));
        }
        if let Some(tag) = &self.target_tag {
            put("targetTag", json!(tag));
        }
        if let Some(settings) = &self.settings {
            put("settings", json_argument("settings", settings)?);
        }
        if let Some(scope) = &self.rollback_scope {
            put("rollbackScope", json!(scope));
        }
        if let Some(n) = self.max_concurrency {
            put("maxConcurrency", json!(n));
        }
        if let Some(n) = self.instance_max_concurrency {
            put("instanceMaxConcurrency", json!(n));
        }
        Ok(Value::Object(start))
    }
}

/// How an execution the CLI starts is named and followed (`start`, `undo`).
#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The execution's name (Step Functions makes one up otherwise). Names are unique per state
    /// machine for 90 days: starting the same name twice with the same input starts once.
    #[arg(long)]
    pub name: Option<String>,
    /// Follow the execution until it ends, as `watch` does.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub pace: Pace,
}

#[derive(Args, Debug, Clone)]
pub struct Pace {
    /// Seconds between two looks at the execution and the fleet.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
}
