//! AWS clients, built once per process from the standard environment.
//!
//! Endpoints come only from what aws-config reads (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`,
//! region and credential variables), so one binary runs against AWS or the local AWS unchanged.

//!
//! The execution's own storage comes from two variables the template sets on every function:
//! `PLANS_BUCKET` (the plan objects and the outcomes) and `HOLDS_TABLE` (holds, and the wave's
//! stop signal). Both live in the home account and region, whatever account and region the fleet
//! clients act in (`Clients::at`).

use crate::error::FromSdk;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::error::{StepError, StepResult};
use crate::model::TargetRun;
use crate::reach::WorkloadRole;
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
    pub sts: aws_sdk_sts::Client,
    pub plans_bucket: Option<String>,
    pub holds_table: Option<String>,
    /// The region the fleet clients (EC2, Auto Scaling, ECS, CloudWatch, SSM) act in.
    pub region: String,
    /// The home account, when the template names it (`HOME_ACCOUNT_ID`); asked of STS otherwise.
    pub home_account: Option<String>,
    pub workload: WorkloadRole,
    /// The configuration the clients were built from, to build clients for other places
    /// (absent in mocked tests, which stay in the home account and region).
    conf: Option<aws_config::SdkConfig>,
    /// The configuration the fleet clients act with (region and credentials of the place), for
    /// the clients made only where needed (KMS).
    fleet_conf: Option<aws_config::SdkConfig>,
}

impl Clients {
    /// The clients of the home account and region. A malformed `WORKLOAD_*` setting fails the
    /// invocation with `InvalidInput` before any call.
    pub async fn from_env() -> StepResult<Self> {
        let env = crate::config::environment;
        let mut clients = Self::from_conf(&aws_config::load_from_env().await);
        clients.plans_bucket = env("PLANS_BUCKET");
        clients.holds_table = env("HOLDS_TABLE");
        clients.home_account = env("HOME_ACCOUNT_ID");
        clients.workload = WorkloadRole::from_lookup(env)?;
        Ok(clients)
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
            sts: aws_sdk_sts::Client::new(conf),
            plans_bucket: None,
            holds_table: None,
            region: conf.region().map(|r| r.to_string()).unwrap_or_default(),
            home_account: None,
            workload: WorkloadRole::default(),
            conf: Some(conf.clone()),
            fleet_conf: Some(conf.clone()),
        }
    }

    /// A KMS client acting where the fleet clients act (their region and credentials).
    pub fn kms(&self) -> StepResult<aws_sdk_kms::Client> {
        self.fleet_conf
            .as_ref()
            .map(aws_sdk_kms::Client::new)
            .ok_or_else(|| StepError::invalid("no AWS configuration for KMS"))
    }

    /// The configuration the home clients were built from.
    pub fn sdk_config(&self) -> Option<&aws_config::SdkConfig> {
        self.conf.as_ref()
    }

    /// The account the functions run in.
    pub async fn home_account(&self) -> StepResult<String> {
        if let Some(account) = &self.home_account {
            return Ok(account.clone());
        }
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| StepError::from_sdk("GetCallerIdentity", e))?;
        me.account()
            .map(str::to_string)
            .ok_or_else(|| StepError::AwsRequestFailed {
                operation: "GetCallerIdentity".into(),
                message: "no account in the answer".into(),
            })
    }

    /// Credentials for a workload account, through its workload role, for this invocation only.
    pub async fn enter(
        &self,
        account: &str,
        execution: &str,
    ) -> StepResult<SharedCredentialsProvider> {
        self.workload
            .assume(&self.sts, &self.region, account, execution)
            .await
    }

    /// Fleet clients acting in `region` with `credentials` (from `enter`; `None`: the functions'
    /// own). The plans bucket, holds table and STS stay the home ones.
    pub fn in_place(
        &self,
        region: Option<&str>,
        credentials: Option<SharedCredentialsProvider>,
    ) -> StepResult<Self> {
        let region = region.filter(|r| *r != self.region);
        if region.is_none() && credentials.is_none() {
            return Ok(self.clone());
        }
        let conf = self.conf.as_ref().ok_or_else(|| {
            StepError::invalid("clients without a configuration cannot act in another place")
        })?;
        let mut builder = conf.to_builder();
        if let Some(region) = region {
            builder = builder.region(aws_config::Region::new(region.to_string()));
        }
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        let place = Self::from_conf(&builder.build());
        Ok(Self {
            s3: self.s3.clone(),
            dynamodb: self.dynamodb.clone(),
            sts: self.sts.clone(),
            plans_bucket: self.plans_bucket.clone(),
            holds_table: self.holds_table.clone(),
            home_account: self.home_account.clone(),
            workload: self.workload.clone(),
            conf: self.conf.clone(),
            ..place
        })
    }

    /// Fleet clients for `account` (`None`: home) and `region` (`None`: home), entering a
    /// workload account for `execution` (an execution ARN or name).
    pub async fn at(
        &self,
        account: Option<&str>,
        region: Option<&str>,
        execution: &str,
    ) -> StepResult<Self> {
        let credentials = self.credentials_for(account, execution).await?;
        self.in_place(region, credentials)
    }

    /// Credentials for `account` (an account ARN's id), entered for `execution`; `None` for the
    /// home account or none named, where the functions act with their own.
    pub async fn credentials_for(
        &self,
        account: Option<&str>,
        execution: &str,
    ) -> StepResult<Option<SharedCredentialsProvider>> {
        match account {
            Some(account) if account != self.home_account().await? => {
                Ok(Some(self.enter(account, execution).await?))
            }
            _ => Ok(None),
        }
    }

    /// Fleet clients where the run's target lives.
    pub async fn for_run(&self, run: &TargetRun) -> StepResult<Self> {
        let target = &run.target;
        let execution = run.execution_arn.as_deref().unwrap_or(&run.execution);
        self.at(
            target.account.as_deref(),
            target.region.as_deref(),
            execution,
        )
        .await
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

    /// Refuses (`WaveStopped`) to go on with a target once another of its wave has failed, and
    /// (`TargetHeld`) to change a target its execution does not hold. A target run outside the
    /// state machine's Map (no parent execution ARN) has no wave to stop and no hold.
    pub async fn ensure_wave_going(&self, run: &crate::model::TargetRun) -> StepResult<()> {
        if run.execution_arn.is_none() {
            return Ok(());
        }
        self.stop_signal()?.ensure_going(run).await?;
        match self.hold_refusal(run).await? {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }

    /// Why `run`'s execution may not change its target (it does not hold it), if it may not.
    pub async fn hold_refusal(
        &self,
        run: &crate::model::TargetRun,
    ) -> StepResult<Option<StepError>> {
        if run.execution_arn.is_none() {
            return Ok(None); // run outside the state machine: no hold
        }
        let signal = self.stop_signal()?;
        crate::holds::refusal(&signal.dynamodb, &signal.table, run).await
    }
}

pub use rollout_model::time::iso_time;

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
        pub sts: Vec<&'a Rule>,
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
                sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
                plans_bucket: Some("plans".into()),
                holds_table: Some("holds".into()),
                region: "us-east-1".into(),
                home_account: Some("123456789012".into()),
                workload: crate::reach::WorkloadRole::default(),
                conf: None,
                fleet_conf: None,
            }
        }
    }
}
