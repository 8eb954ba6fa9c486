//! What a target runs now, read from the fleet: the AMIs on a group's instances or on a
//! standalone instance, and a group's refresh. Workload accounts are entered through the
//! operator role, once per account for as long as its session lasts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use rollout_core::model::{Target, TargetKind};
use rollout_core::refresh::{RefreshInfo, recent_refreshes};
use rollout_core::{Clients, StepResult, fleet};

/// Sessions of the operator role last an hour; enter again well before.
const SESSION_REUSE: Duration = Duration::from_secs(45 * 60);
const SESSION: &str = "ami-rollout-cli";

pub struct Places {
    home: Clients,
    entered: HashMap<String, (Option<SharedCredentialsProvider>, Instant)>,
}

/// A target as the fleet shows it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Now {
    /// The AMIs its instances run, each once, sorted.
    pub amis: Vec<String>,
    /// A group's refresh of that id, when asked for one.
    pub refresh: Option<RefreshInfo>,
}

impl Places {
    pub fn new(home: Clients) -> Self {
        Self {
            home,
            entered: HashMap::new(),
        }
    }

    /// Clients acting where `target` lives.
    pub async fn clients_for(
        &mut self,
        account: Option<&str>,
        region: Option<&str>,
    ) -> StepResult<Clients> {
        let key = account.unwrap_or_default().to_string();
        let fresh = self
            .entered
            .get(&key)
            .filter(|(_, at)| at.elapsed() < SESSION_REUSE)
            .map(|(c, _)| c.clone());
        let credentials = match fresh {
            Some(c) => c,
            None => {
                let c = self.home.credentials_for(account, SESSION).await?;
                self.entered.insert(key, (c.clone(), Instant::now()));
                c
            }
        };
        self.home.in_place(region, credentials)
    }

    /// The AMIs on `target` now, and the group's refresh `refresh_id` if given.
    pub async fn now(&mut self, target: &Target, refresh_id: Option<&str>) -> StepResult<Now> {
        let clients = self
            .clients_for(target.account.as_deref(), target.region.as_deref())
            .await?;
        match target.kind {
            TargetKind::AutoScalingGroup => {
                let group = fleet::describe_group(&clients, &target.resource).await?;
                let ids: Vec<String> = group
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect();
                let mut amis: Vec<String> = fleet::instance_images(&clients, &ids)
                    .await?
                    .into_values()
                    .collect();
                amis.sort();
                amis.dedup();
                let refresh = match refresh_id {
                    Some(id) => recent_refreshes(&clients, &target.resource)
                        .await?
                        .into_iter()
                        .find(|r| r.id == id),
                    None => None,
                };
                Ok(Now { amis, refresh })
            }
            TargetKind::Instance => {
                let found = rollout_core::instance::describe(&clients, &target.resource).await?;
                Ok(Now {
                    amis: found.map(|i| i.image_id).into_iter().collect(),
                    refresh: None,
                })
            }
        }
    }
}
