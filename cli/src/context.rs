//! Where the CLI acts: the deployed stack (its state machine and its functions' configuration),
//! the AWS configuration from the standard chain, and the operator role it reads workload
//! accounts through.

use std::collections::HashMap;

use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_types::error::display::DisplayErrorContext;
use clap::Args;
use rollout_core::config::Config;
use rollout_core::reach::WorkloadRole;
use rollout_core::{Clients, FromSdk, StepError};

use crate::failure::{CliResult, Exit, Failure, aws_failed};
use crate::output::Format;

#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The ami-rollout stack: its state machine and functions are named after it.
    #[arg(
        long,
        global = true,
        env = "AMI_ROLLOUT_STACK",
        default_value = "ami-rollout"
    )]
    pub stack: String,
    /// An AWS profile of the shared config files (the standard chain otherwise).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// The region of the stack (the standard chain's otherwise).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Text for people, or JSON for programs (`watch`: one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "AMI_ROLLOUT_OUTPUT",
        default_value = "text"
    )]
    pub output: Format,
    /// The read-only role assumed in workload accounts (workload-account-role.yaml's operator role).
    #[arg(
        long,
        global = true,
        env = "AMI_ROLLOUT_OPERATOR_ROLE",
        default_value = "ami-rollout-operator"
    )]
    pub operator_role: String,
    /// The ExternalId the operator role's trust policy asks for, if any.
    #[arg(long, global = true, env = "AMI_ROLLOUT_OPERATOR_EXTERNAL_ID")]
    pub operator_external_id: Option<String>,
    /// On an error, also print what AWS or the SDK said in full.
    #[arg(long, global = true)]
    pub debug: bool,
}

pub struct Context {
    pub global: Global,
    pub sdk: aws_config::SdkConfig,
    pub sfn: aws_sdk_sfn::Client,
}

impl Context {
    /// The AWS configuration from the standard chain, refused in one line (as the AWS CLI
    /// refuses it) when it names a profile the shared files do not have, no region, or no
    /// credentials; nothing is asked of AWS's services before.
    pub async fn load(global: &Global) -> CliResult<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = &global.profile {
            if !profile_exists(profile) {
                return Err(Failure::usage(format!(
                    "the profile {profile} is in neither {} nor {}: name one they have (--profile or AWS_PROFILE)",
                    shared_file("AWS_CONFIG_FILE", "config").display(),
                    shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials").display()
                )));
            }
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &global.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Failure::usage(
                "no AWS region: pass --region, set AWS_REGION, or give the profile a region (aws configure)",
            ));
        }
        let found = match sdk.credentials_provider() {
            Some(provider) => provider
                .provide_credentials()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string()),
            None => Err("no credentials provider".to_string()),
        };
        if let Err(detail) = found {
            return Err(Failure {
                detail: Some(detail),
                ..Failure::usage(
                    "no AWS credentials found: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or sign in (aws sso login)",
                )
            });
        }
        Ok(Self {
            global: global.clone(),
            sfn: aws_sdk_sfn::Client::new(&sdk),
            sdk,
        })
    }

    pub fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }

    /// The stack's state machine (named after the stack).
    pub async fn state_machine_arn(&self) -> CliResult<String> {
        let mut pages = self.sfn.list_state_machines().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_failed("ListStateMachines", e))?;
            if let Some(found) = page
                .state_machines()
                .iter()
                .find(|m| m.name() == self.global.stack)
            {
                return Ok(found.state_machine_arn().to_string());
            }
        }
        Err(Failure::new(
            "StackNotFound",
            format!(
                "no state machine named {} in {} (set --stack or AMI_ROLLOUT_STACK to the ami-rollout stack's name)",
                self.global.stack,
                self.region()
            ),
        ))
    }

    /// An execution by ARN, or by name as an execution of the stack's state machine.
    pub async fn execution_arn(&self, reference: &str) -> CliResult<String> {
        if reference.starts_with("arn:") {
            return Ok(reference.to_string());
        }
        let machine = self.state_machine_arn().await?;
        Ok(format!(
            "{}:{reference}",
            machine.replacen(":stateMachine:", ":execution:", 1)
        ))
    }

    /// DescribeExecution, with a missing execution refused by name.
    pub async fn describe_execution(
        &self,
        arn: &str,
    ) -> CliResult<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
        self.sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_execution_does_not_exist() => Failure {
                    exit: Exit::Refused,
                    ..Failure::new(
                        "NoSuchExecution",
                        format!(
                            "there is no execution {} of the {} state machine (ami-rollout list shows them)",
                            rollout_core::store::execution_name(arn),
                            self.global.stack
                        ),
                    )
                },
                _ => aws_failed("DescribeExecution", e),
            })
    }

    /// The environment the deployed resolve-ami function runs with: the rollout's configuration.
    pub async fn function_environment(&self) -> CliResult<HashMap<String, String>> {
        let name = format!("{}-resolve-ami", self.global.stack);
        let lambda = aws_sdk_lambda::Client::new(&self.sdk);
        let out = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(|e| {
                let failure: Failure = StepError::from_sdk("GetFunctionConfiguration", e).into();
                Failure {
                    message: format!(
                        "{} (the configuration is read from the function {name}: set --stack to the ami-rollout stack's name)",
                        failure.message
                    ),
                    ..failure
                }
            })?;
        Ok(out
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default())
    }

    /// The rollout's configuration and clients as the functions have them, except that workload
    /// accounts are entered through the operator role, read-only.
    pub async fn as_functions(&self) -> CliResult<(Config, Clients)> {
        let (config, clients) = self.functions_environment().await?;
        let document = clients.store()?.settings().await?;
        Ok((config.with_settings(document), clients))
    }

    /// `as_functions` without reading the settings document.
    pub async fn functions_environment(&self) -> CliResult<(Config, Clients)> {
        let env = self.function_environment().await?;
        let lookup = |name: &str| {
            env.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let config = Config::from_lookup(lookup)?;
        let mut clients = self.clients();
        clients.plans_bucket = lookup("PLANS_BUCKET");
        clients.holds_table = lookup("HOLDS_TABLE");
        clients.home_account = lookup("HOME_ACCOUNT_ID");
        Ok((config, clients))
    }

    /// Clients of the home account and region, entering workload accounts as the operator.
    pub fn clients(&self) -> Clients {
        let mut clients = Clients::from_conf(&self.sdk);
        clients.workload = WorkloadRole {
            name: self.global.operator_role.clone(),
            external_id: self.global.operator_external_id.clone(),
            session_tags: false,
        };
        clients
    }

    pub fn console_link(&self, execution_arn: &str) -> String {
        let region = execution_arn
            .split(':')
            .nth(3)
            .map_or_else(|| self.region(), str::to_string);
        format!(
            "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
        )
    }
}

/// A shared AWS file: where `variable` points, else `~/.aws/<name>`.
fn shared_file(variable: &str, name: &str) -> std::path::PathBuf {
    match std::env::var_os(variable) {
        Some(path) => path.into(),
        None => std::path::Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".aws")
            .join(name),
    }
}

/// Whether the shared config file has `[profile NAME]` (or `[default]`) or the credentials file
/// has `[NAME]`, the sections the AWS CLI and SDKs read a profile from.
fn profile_exists(name: &str) -> bool {
    let sections = |path: std::path::PathBuf| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']'))
            .map(|section| section.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let in_config = sections(shared_file("AWS_CONFIG_FILE", "config"))
        .iter()
        .any(|s| *s == format!("profile {name}") || (name == "default" && s == "default"));
    in_config
        || sections(shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))
            .iter()
            .any(|s| s == name)
}
