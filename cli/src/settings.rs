//! `settings`: the settings document the functions plan with (per-target refresh, bake, health
//! and change-control settings), in the stack's plans bucket. It lives in S3, versioned, because
//! the functions' environment is capped at 4 KB; each plan records the version it was made from.

use clap::{Args, Subcommand};
use rollout_core::settings::SettingsMap;
use rollout_core::store::{PlanStore, SETTINGS_KEY};
use serde_json::json;

use crate::context::Context;
use crate::failure::{CliResult, Exit, Failure};
use crate::output::Output;

#[derive(Args, Debug)]
pub struct SettingsArgs {
    #[command(subcommand)]
    pub action: SettingsAction,
}

#[derive(Subcommand, Debug)]
pub enum SettingsAction {
    /// The settings the functions plan with now, and their version.
    Show,
    /// Check a settings file as the functions would read it; nothing is changed.
    Validate {
        /// A JSON file: {"*": {...defaults}, "<target>": {...}}.
        file: String,
    },
    /// Check a settings file, then make it the settings the next plans use.
    Put {
        /// A JSON file: {"*": {...defaults}, "<target>": {...}}.
        file: String,
    },
}

pub async fn run(context: &Context, out: &Output, args: SettingsArgs) -> CliResult<Exit> {
    match args.action {
        SettingsAction::Validate { file } => {
            let (_, settings) = read(&file)?;
            if out.json() {
                out.value(&json!({"valid": true, "targets": settings.0.len()}));
            } else {
                println!("{file}: valid settings for {} scope(s)", settings.0.len());
            }
            Ok(Exit::Done)
        }
        SettingsAction::Show => {
            let store = store(context).await?;
            let location = format!("s3://{}/{SETTINGS_KEY}", store.bucket);
            match store.settings().await? {
                None if out.json() => out.value(&json!({"location": location, "version": null, "settings": {}})),
                None => println!("{location}: none put yet; every target has the defaults"),
                Some(document) if out.json() => out.value(&json!({
                    "location": location, "version": document.version, "settings": document.settings})),
                Some(document) => {
                    println!("{location} (version {})", document.version.as_deref().unwrap_or("-"));
                    println!("{}", document.text.trim_end());
                }
            }
            Ok(Exit::Done)
        }
        SettingsAction::Put { file } => {
            let (text, _) = read(&file)?;
            let store = store(context).await?;
            let version = store.put_settings(&text).await?;
            let location = format!("s3://{}/{SETTINGS_KEY}", store.bucket);
            if out.json() {
                out.value(&json!({"location": location, "version": version}));
            } else {
                println!(
                    "{location}: put (version {}); plans from now on use it",
                    version.as_deref().unwrap_or("-")
                );
            }
            Ok(Exit::Done)
        }
    }
}

/// The file and its settings, refused with what is wrong before anything is sent.
fn read(file: &str) -> CliResult<(String, SettingsMap)> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Failure::refused(format!("{file}: {e}")))?;
    let settings =
        SettingsMap::parse(&text).map_err(|e| Failure::refused(format!("{file}: {e}")))?;
    Ok((text, settings))
}

/// The deployed stack's plans bucket, as the functions know it.
async fn store(context: &Context) -> CliResult<PlanStore> {
    let (_, clients) = context.functions_environment().await?;
    Ok(clients.store()?)
}
