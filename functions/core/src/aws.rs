//! AWS clients, built once per process from the standard environment.
//!
//! Endpoints come only from what aws-config reads (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`,
//! region and credential variables), so one binary runs against AWS or the local AWS unchanged.

//!
//! The execution's own storage comes from two variables the template sets on every function:
//! `PLANS_BUCKET` (the plan objects and the outcomes) and `HOLDS_TABLE` (holds, and the wave's
//! stop signal).

use crate::error::{StepError, StepResult};
use crate::stop::StopSignal;
use crate::store::PlanStore;

#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub plans_bucket: Option<String>,
    pub holds_table: Option<String>,
}

impl Clients {
    pub async fn from_env() -> Self {
        let mut clients = Self::from_conf(&aws_config::load_from_env().await);
        clients.plans_bucket = std::env::var("PLANS_BUCKET").ok().filter(|b| !b.is_empty());
        clients.holds_table = std::env::var("HOLDS_TABLE").ok().filter(|t| !t.is_empty());
        clients
    }

    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(conf),
            autoscaling: aws_sdk_autoscaling::Client::new(conf),
            ecs: aws_sdk_ecs::Client::new(conf),
            cloudwatch: aws_sdk_cloudwatch::Client::new(conf),
            ssm: aws_sdk_ssm::Client::new(conf),
            s3: aws_sdk_s3::Client::new(conf),
            dynamodb: aws_sdk_dynamodb::Client::new(conf),
            plans_bucket: None,
            holds_table: None,
        }
    }

    /// The plans bucket; refused before any change when the function was deployed without it.
    pub fn store(&self) -> StepResult<PlanStore> {
        let bucket = self.plans_bucket.clone().ok_or_else(|| {
            StepError::invalid("PLANS_BUCKET is not set: the function needs the plans bucket")
        })?;
        Ok(PlanStore {
            s3: self.s3.clone(),
            bucket,
        })
    }

    /// The wave's stop signal; refused when the function was deployed without the holds table.
    pub fn stop_signal(&self) -> StepResult<StopSignal> {
        let table = self.holds_table.clone().ok_or_else(|| {
            StepError::invalid("HOLDS_TABLE is not set: the function needs the holds table")
        })?;
        Ok(StopSignal {
            dynamodb: self.dynamodb.clone(),
            table,
        })
    }

    /// Refuses (`WaveStopped`) to go on with a target once another of its wave has failed. A
    /// target run outside the state machine's Map (no parent execution ARN) has no wave to stop.
    pub async fn ensure_wave_going(&self, run: &crate::model::TargetRun) -> StepResult<()> {
        if run.execution_arn.is_none() {
            return Ok(());
        }
        self.stop_signal()?.ensure_going(run).await
    }
}

/// The current time in epoch seconds (handlers pass it to the pure decision functions).
pub fn now() -> crate::model::Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A test harness: clients over aws-smithy-mocks rules, one rule list per service.
#[cfg(any(test, feature = "test-util"))]
pub mod mock {
    pub use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    /// Clients whose unused services answer nothing (any call to them panics in the test).
    #[derive(Default)]
    pub struct Rules<'a> {
        pub ec2: Vec<&'a Rule>,
        pub autoscaling: Vec<&'a Rule>,
        pub ecs: Vec<&'a Rule>,
        pub cloudwatch: Vec<&'a Rule>,
        pub ssm: Vec<&'a Rule>,
        pub s3: Vec<&'a Rule>,
        pub dynamodb: Vec<&'a Rule>,
    }

    impl Rules<'_> {
        pub fn clients(&self) -> super::Clients {
            super::Clients {
                ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &self.ec2),
                autoscaling: mock_client!(
                    aws_sdk_autoscaling,
                    RuleMode::MatchAny,
                    &self.autoscaling
                ),
                ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &self.ecs),
                cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &self.cloudwatch),
                ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &self.ssm),
                s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &self.s3),
                dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &self.dynamodb),
                plans_bucket: Some("plans".into()),
                holds_table: Some("holds".into()),
            }
        }
    }
}
