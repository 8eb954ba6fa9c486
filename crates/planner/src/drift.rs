//! Drift: which targets of the reach are not on the approved AMI. The same selection, reach and
//! per-region AMI as a plan (what a rollout of the approved AMI would touch), read only. The CLI's
//! `drift` runs `check`; a schedule runs `scheduled`, which also publishes the counts as metrics.

use rollout_core::FromSdk;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use rollout_core::ami::{self, describe_images};
use rollout_core::config::Config;
use rollout_core::fleet;
use rollout_core::model::{Epoch, TargetKind, place_name};
use rollout_core::trigger::{AmiSource, Overrides};
use rollout_core::{Clients, StepError, StepResult};
use serde::{Deserialize, Serialize};

use crate::amis::{approved_ami, regional_amis};
use crate::groups::select_groups;
use crate::reach::{Place, Reach};
use crate::selection::Selection;

/// One target not on its region's approved AMI.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drifted {
    pub target: String,
    pub kind: TargetKind,
    pub account: Option<String>,
    pub region: Option<String>,
    /// The approved AMI of its region; none when the region has none.
    pub approved: Option<String>,
    /// The AMIs its instances run that are not the approved one.
    pub amis: Vec<String>,
    /// The oldest of those AMIs' creation time, when EC2 still knows them.
    pub oldest_created: Option<String>,
    /// Whole days since then.
    pub age_days: Option<i64>,
}

/// Checked and drifted targets of one account and region (the metric's dimensions).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlaceCount {
    pub account: String,
    pub region: String,
    pub checked: usize,
    pub drifted: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// The approved AMI by region (`null`: none found there).
    pub approved: BTreeMap<String, Option<String>>,
    pub checked: usize,
    pub drifted: Vec<Drifted>,
    pub places: Vec<PlaceCount>,
}

const SESSION: &str = "ami-rollout-drift";

/// Checks every selected group and standalone instance of the reach against the AMI `source`
/// names (in the home region; the same name, parameter or Image Builder output elsewhere).
pub async fn check(
    clients: &Clients,
    config: &Config,
    source: &AmiSource,
    now: Epoch,
) -> StepResult<DriftReport> {
    let overrides = Overrides::default();
    let reach = Reach::of(clients, config, &overrides).await?;
    let (home_ami, _) = approved_ami(clients, config, source, now).await?;
    let regional = regional_amis(clients, config, &reach, source, &home_ami, now).await?;
    let selection = Selection::of(config, &overrides)?;
    let places = reach.enter(clients, SESSION).await?;
    let home_account = match &reach.home_account {
        Some(a) => a.clone(),
        None => clients.home_account().await.unwrap_or_default(),
    };
    let mut report = DriftReport {
        approved: regional
            .iter()
            .map(|(r, a)| {
                (
                    r.clone().unwrap_or_else(|| clients.region.clone()),
                    a.as_ref().map(|a| a.id.clone()),
                )
            })
            .collect(),
        checked: 0,
        drifted: Vec::new(),
        places: Vec::new(),
    };
    for place in &places {
        let approved = regional.get(&place.region).cloned().flatten().map(|a| a.id);
        let running = running_at(place, &selection).await?;
        let drifted = drifted_at(place, approved.as_deref(), &running, now).await?;
        report.checked += running.len();
        report.places.push(PlaceCount {
            account: place
                .account
                .clone()
                .unwrap_or_else(|| home_account.clone()),
            region: place
                .region
                .clone()
                .unwrap_or_else(|| clients.region.clone()),
            checked: running.len(),
            drifted: drifted.len(),
        });
        report.drifted.extend(drifted);
    }
    Ok(report)
}

/// A target and the AMIs it runs.
type Running = (TargetKind, String, BTreeSet<String>);

/// What each selected target of `place` runs: a group's instances' AMIs, an instance's own.
async fn running_at(place: &Place, selection: &Selection) -> StepResult<Vec<Running>> {
    let groups = select_groups(&place.clients, selection).await?;
    let (groups, _) = selection.exclude(place, groups);
    let found = selection.instances.find(&place.clients).await?;
    let (instances, _) = selection.instances.exclude(place, found);
    let mut running = Vec::new();
    for (name, group) in &groups {
        let ids: Vec<String> = group
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let amis = fleet::instance_images(&place.clients, &ids).await?;
        running.push((
            TargetKind::AutoScalingGroup,
            name.clone(),
            amis.into_values().collect(),
        ));
    }
    for (facts, _) in &instances {
        // Members of groups and fleets are drift of their group, not their own.
        if facts.owner().is_none() {
            running.push((
                TargetKind::Instance,
                facts.id.clone(),
                BTreeSet::from([facts.image_id.clone()]),
            ));
        }
    }
    Ok(running)
}

/// The targets of `place` running an AMI other than `approved`, with the oldest one's age.
async fn drifted_at(
    place: &Place,
    approved: Option<&str>,
    running: &[Running],
    now: Epoch,
) -> StepResult<Vec<Drifted>> {
    let off: Vec<(TargetKind, &str, Vec<String>)> = running
        .iter()
        .map(|(kind, name, amis)| {
            let other = amis
                .iter()
                .filter(|a| Some(a.as_str()) != approved)
                .cloned()
                .collect();
            (*kind, name.as_str(), other)
        })
        .filter(|(_, _, other): &(_, _, Vec<String>)| !other.is_empty())
        .collect();
    let wanted: Vec<String> = off
        .iter()
        .flat_map(|(_, _, a)| a.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let created: HashMap<String, String> = if wanted.is_empty() {
        HashMap::new()
    } else {
        describe_images(&place.clients, &wanted)
            .await?
            .into_iter()
            .filter_map(|i| Some((i.image_id?.clone(), i.creation_date?.clone())))
            .collect()
    };
    Ok(off
        .into_iter()
        .map(|(kind, name, amis)| {
            let oldest = amis.iter().filter_map(|a| created.get(a)).min().cloned();
            let age_days = oldest
                .as_deref()
                .and_then(ami::parse_time)
                .map(|t| (now - t) / 86_400);
            Drifted {
                target: place_name(place.account.as_deref(), place.region.as_deref(), name),
                kind,
                account: place.account.clone(),
                region: place.region.clone(),
                approved: approved.map(str::to_string),
                amis,
                oldest_created: oldest,
                age_days,
            }
        })
        .collect())
}

/// The schedule's input: `{"driftCheck": {"parameterName": "/ami/linux/prod"}}` (or `amiId`).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduledCheck {
    pub drift_check: ApprovedAmi,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovedAmi {
    #[serde(default)]
    pub ami_id: Option<String>,
    #[serde(default)]
    pub parameter_name: Option<String>,
}

impl ApprovedAmi {
    /// Where the approved AMI is read from, checked as a manual start's would be.
    pub fn source(&self) -> StepResult<AmiSource> {
        match (&self.ami_id, &self.parameter_name) {
            (Some(id), None) => {
                ami::validate_ami_id(id)?;
                Ok(AmiSource::Id(id.clone()))
            }
            (None, Some(name)) => Ok(AmiSource::Parameter {
                name: rollout_core::trigger::validate_parameter_name(name.clone())?,
                version: None,
            }),
            _ => Err(StepError::invalid(
                "driftCheck needs exactly one of amiId and parameterName",
            )),
        }
    }
}

/// The CloudWatch namespace of the drift metrics.
pub const METRIC_NAMESPACE: &str = "AmiRollout";
/// Targets not on the approved AMI: per Account and Region, and in all (no dimension, alarmed).
pub const DRIFTED_METRIC: &str = "NonCompliantTargets";
pub const CHECKED_METRIC: &str = "CheckedTargets";

/// The scheduled check: `check`, then its counts as metrics in the home account and region.
pub async fn scheduled(
    clients: &Clients,
    request: &ScheduledCheck,
    now: Epoch,
) -> StepResult<DriftReport> {
    let source = request.drift_check.source()?;
    let config = Config::from_env()?.with_settings(clients.store()?.settings().await?);
    let report = check(clients, &config, &source, now).await?;
    // PutMetricData takes at most 1,000 values a call.
    for data in metrics(&report).chunks(1_000) {
        clients
            .cloudwatch
            .put_metric_data()
            .namespace(METRIC_NAMESPACE)
            .set_metric_data(Some(data.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("PutMetricData", e))?;
    }
    tracing::info!(
        checked = report.checked,
        drifted = report.drifted.len(),
        "drift check"
    );
    Ok(report)
}

/// The totals, then each place's counts.
pub fn metrics(report: &DriftReport) -> Vec<aws_sdk_cloudwatch::types::MetricDatum> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let datum = |name: &str, value: usize, place: Option<&PlaceCount>| {
        let dimensions = place.map(|p| {
            vec![
                Dimension::builder()
                    .name("Account")
                    .value(&p.account)
                    .build(),
                Dimension::builder().name("Region").value(&p.region).build(),
            ]
        });
        MetricDatum::builder()
            .metric_name(name)
            .unit(StandardUnit::Count)
            .value(value as f64)
            .set_dimensions(dimensions)
            .build()
    };
    let total = |count: fn(&PlaceCount) -> usize| report.places.iter().map(count).sum();
    let mut data = vec![
        datum(DRIFTED_METRIC, total(|p| p.drifted), None),
        datum(CHECKED_METRIC, total(|p| p.checked), None),
    ];
    for place in &report.places {
        data.push(datum(DRIFTED_METRIC, place.drifted, Some(place)));
        data.push(datum(CHECKED_METRIC, place.checked, Some(place)));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_names_exactly_one_approved_ami() {
        let parse = |v: serde_json::Value| serde_json::from_value::<ScheduledCheck>(v);
        let asked =
            parse(serde_json::json!({"driftCheck": {"parameterName": "/ami/linux/prod"}})).unwrap();
        assert_eq!(
            asked.drift_check.source().unwrap(),
            AmiSource::Parameter {
                name: "/ami/linux/prod".into(),
                version: None
            }
        );
        for wrong in [
            serde_json::json!({}),
            serde_json::json!({"amiId": "ami-0123456789abcdef0", "parameterName": "/a"}),
            serde_json::json!({"amiId": "not-an-ami"}),
        ] {
            let asked = parse(serde_json::json!({"driftCheck": wrong})).unwrap();
            assert_eq!(
                asked.drift_check.source().unwrap_err().name(),
                "InvalidInput",
                "{wrong}"
            );
        }
        assert!(parse(serde_json::json!({"driftCheck": {"amiID": "ami-1"}})).is_err());
    }

    #[test]
    fn the_counts_are_put_in_all_and_per_account_and_region() {
        let place = |region: &str, checked, drifted| PlaceCount {
            account: "111111111111".into(),
            region: region.into(),
            checked,
            drifted,
        };
        let report = DriftReport {
            approved: BTreeMap::new(),
            checked: 5,
            drifted: vec![],
            places: vec![place("us-east-1", 3, 0), place("eu-west-1", 2, 2)],
        };
        let data = metrics(&report);
        let seen: Vec<(String, f64, Vec<String>)> = data
            .iter()
            .map(|d| {
                (
                    d.metric_name().unwrap().to_string(),
                    d.value().unwrap(),
                    d.dimensions()
                        .iter()
                        .map(|x| format!("{}={}", x.name().unwrap(), x.value().unwrap()))
                        .collect(),
                )
            })
            .collect();
        let place_of = |r: &str| vec!["Account=111111111111".to_string(), format!("Region={r}")];
        assert_eq!(
            seen,
            vec![
                (DRIFTED_METRIC.into(), 2.0, vec![]),
                (CHECKED_METRIC.into(), 5.0, vec![]),
                (DRIFTED_METRIC.into(), 0.0, place_of("us-east-1")),
                (CHECKED_METRIC.into(), 3.0, place_of("us-east-1")),
                (DRIFTED_METRIC.into(), 2.0, place_of("eu-west-1")),
                (CHECKED_METRIC.into(), 2.0, place_of("eu-west-1")),
            ]
        );
    }
}
