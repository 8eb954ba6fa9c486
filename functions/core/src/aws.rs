//! AWS clients, built once per process from the standard environment.
//!
//! Endpoints come only from what aws-config reads (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`,
//! region and credential variables), so one binary runs against AWS or the local AWS unchanged.

#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub async fn from_env() -> Self {
        Self::from_conf(&aws_config::load_from_env().await)
    }

    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(conf),
            autoscaling: aws_sdk_autoscaling::Client::new(conf),
            ecs: aws_sdk_ecs::Client::new(conf),
            cloudwatch: aws_sdk_cloudwatch::Client::new(conf),
            ssm: aws_sdk_ssm::Client::new(conf),
        }
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
            }
        }
    }
}
