//! The plan objects and the outcomes in S3: what grows with the fleet never rides in the
//! execution state.
//!
//! Layout under the plans bucket, per execution (by its name):
//! - `plans/<execution>/plan.json`: the whole plan (`Plan`), skipped groups included;
//! - `plans/<execution>/wave-<n>.json`: wave n's lanes, one per account-region (a JSON array of
//!   `Lane` the wave's Distributed Map reads), and `plans/<execution>/wave-<n>/lane-<m>.json`:
//!   each lane's targets, which the lane's own Distributed Map reads;
//! - `plans/<execution>/rollback.json` and `rollback/lane-<m>.json`: the same for a rollback;
//! - `results/<execution>/wave-<n>/…`, `results/<execution>/rollback/…`: what each Map Run's
//!   `ResultWriter` wrote (a `manifest.json` and the result files it lists), the lanes' under
//!   `lane-<m>/`.
//!
//! The bucket's lifecycle rule expires them after a few weeks.
//!
//! `settings/settings.json` is the settings document: the per-target settings (`SettingsMap`),
//! too large for the functions' environment (AWS caps it at 4 KB). The bucket is versioned: each
//! plan records the version it was made from, and earlier versions stay readable.

use crate::error::FromSdk;
use aws_sdk_s3::primitives::ByteStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::model::{Lane, LaneConcurrency, Plan, PlanSummary, Target, TargetKind, WaveRef};
use crate::settings::SettingsMap;

/// Where the settings document lives in the plans bucket.
pub const SETTINGS_KEY: &str = "settings/settings.json";

/// The settings document as read: its settings and the object version they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsDocument {
    pub settings: SettingsMap,
    pub version: Option<String>,
    pub text: String,
}

/// The plans bucket and a client for it.
#[derive(Clone, Debug)]
pub struct PlanStore {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

/// How many distinct skip reasons the state counts by name.
pub const REASONS_SHOWN: usize = 20;

pub fn plan_prefix(execution: &str) -> String {
    format!("plans/{execution}/")
}

/// Where the store records that `execution` planned a rollout of `ami` from the SSM parameter
/// `name` (kept: the plans bucket expires only plans/ and results/).
pub fn rolled_out_key(name: &str, ami: &str) -> String {
    format!(
        "sources/parameters/{}/{ami}.json",
        name.trim_start_matches('/')
    )
}

/// An execution that planned a rollout of an AMI from a parameter.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolledOut {
    /// Its name.
    pub execution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    pub at: crate::model::Epoch,
}

/// Where an approval gate keeps its task token: the bucket's policy lets only the functions' and
/// the approvers' roles read under `approvals/` (a token lets its holder move the execution on).
pub fn approval_key(execution: &str, wave: usize) -> String {
    format!("{}wave-{wave:03}.json", approvals_prefix(execution))
}

/// The short name the console shows for an execution ARN (the last `:` part).
pub fn execution_name(execution: &str) -> &str {
    execution.rsplit(':').next().unwrap_or(execution)
}

/// Where an approver's answer to the gate after `wave` is written: only the approver roles may
/// write under `decisions/` (the bucket policy); the gate reads it when woken.
pub fn decision_key(execution: &str, wave: usize) -> String {
    format!("decisions/{execution}/wave-{wave:03}.json")
}

fn approvals_prefix(execution: &str) -> String {
    format!("approvals/{execution}/")
}

/// What an approval gate stored: what `approve` and `reject` answer, and with what token.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    pub execution_arn: String,
    /// The wave just finished; approving starts the next.
    pub wave: usize,
    pub task_token: String,
    #[serde(with = "crate::model::iso_epoch")]
    pub asked_at: crate::model::Epoch,
    #[serde(with = "crate::model::iso_epoch")]
    pub answer_by: crate::model::Epoch,
    pub on_timeout: crate::gate::OnApprovalTimeout,
    /// What the approvers were told.
    pub message: String,
    /// The execution's redrive count when it asked: a redrive asks again, with a new deadline.
    #[serde(default)]
    pub redrive_count: u32,
    /// The asking execution's start: a request of an earlier execution of the same name is not
    /// this one's.
    #[serde(default, with = "crate::model::iso_epoch")]
    pub execution_start_time: crate::model::Epoch,
    /// How often the gate was woken with no decision (it stops listening past `MAX_WAKES`).
    #[serde(default)]
    pub wakes: u32,
}

/// An approver's answer to a gate. The task token only wakes the gate; this is what it obeys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDecision {
    pub approved: bool,
    /// Who answered (their caller identity).
    pub by: String,
    /// Why, for a rejection: the rollback's cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "crate::model::iso_epoch")]
    pub decided_at: crate::model::Epoch,
}

pub fn results_prefix(execution: &str, part: &str) -> String {
    format!("results/{execution}/{part}")
}

impl PlanStore {
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> StepResult<()> {
        let body = serde_json::to_vec(value)
            .map_err(|e| StepError::invalid(format!("{key}: cannot encode: {e}")))?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("PutObject", e))?;
        Ok(())
    }

    pub async fn get_json<T: DeserializeOwned>(&self, bucket: &str, key: &str) -> StepResult<T> {
        self.find_json(bucket, key)
            .await?
            .ok_or_else(|| StepError::invalid(format!("s3://{bucket}/{key} does not exist")))
    }

    /// `get_json`, with `None` when there is no such object (S3 says so only to a caller allowed
    /// to list the bucket; to others it is AccessDenied).
    pub async fn find_json<T: DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> StepResult<Option<T>> {
        let Some((bytes, _)) = self.object(bucket, key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StepError::invalid(format!("s3://{bucket}/{key} is not what was written: {e}"))
        })
    }

    /// An object's bytes and version, `None` when there is no such object.
    async fn object(
        &self,
        bucket: &str,
        key: &str,
    ) -> StepResult<Option<(Vec<u8>, Option<String>)>> {
        let out = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(StepError::from_sdk("GetObject", err)),
        };
        let version = out.version_id().map(str::to_string);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StepError::AwsTransient {
                operation: "GetObject".into(),
                message: format!("s3://{bucket}/{key}: reading the body failed: {e}"),
            })?;
        Ok(Some((bytes.into_bytes().to_vec(), version)))
    }

    /// The settings document, `None` when none was put (every target then has the defaults).
    pub async fn settings(&self) -> StepResult<Option<SettingsDocument>> {
        let Some((bytes, version)) = self.object(&self.bucket, SETTINGS_KEY).await? else {
            return Ok(None);
        };
        let location = format!("s3://{}/{SETTINGS_KEY}", self.bucket);
        let text = String::from_utf8(bytes)
            .map_err(|e| StepError::invalid(format!("{location} is not UTF-8: {e}")))?;
        let settings = SettingsMap::parse(&text)
            .map_err(|e| StepError::invalid(format!("the settings document {location}: {e}")))?;
        Ok(Some(SettingsDocument {
            settings,
            version,
            text,
        }))
    }

    /// Validates `text` as settings and puts it as the settings document; returns its version.
    pub async fn put_settings(&self, text: &str) -> StepResult<Option<String>> {
        SettingsMap::parse(text)?;
        let out = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(SETTINGS_KEY)
            .content_type("application/json")
            .body(ByteStream::from(text.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("PutObject", e))?;
        Ok(out.version_id().map(str::to_string))
    }

    /// Which execution planned `ami` from the parameter `name`, if one did.
    pub async fn rolled_out(&self, name: &str, ami: &str) -> StepResult<Option<RolledOut>> {
        self.find_json(&self.bucket, &rolled_out_key(name, ami))
            .await
    }

    /// The approval gates `execution` asked, in wave order (the last is the latest).
    pub async fn approval_requests(&self, execution: &str) -> StepResult<Vec<ApprovalRequest>> {
        let prefix = approvals_prefix(execution);
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::from_sdk("ListObjectsV2", e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            requests.push(self.get_json(&self.bucket, &key).await?);
        }
        Ok(requests)
    }

    /// The whole plan `execution` wrote, while the bucket keeps it.
    pub async fn plan_of(&self, execution: &str) -> StepResult<Option<Plan>> {
        let key = format!("{}plan.json", plan_prefix(execution));
        self.find_json(&self.bucket, &key).await
    }

    /// Writes the plan (whole, then each wave's lanes) and returns what the state carries.
    pub async fn write_plan(&self, execution: &str, plan: &Plan) -> StepResult<PlanSummary> {
        let prefix = plan_prefix(execution);
        let mut waves = Vec::with_capacity(plan.waves.len());
        for (index, targets) in plan.waves.iter().enumerate() {
            let key = format!("{prefix}wave-{index:03}.json");
            let results_prefix = results_prefix(execution, &format!("wave-{index:03}"));
            let concurrency = LaneConcurrency {
                groups: plan.max_concurrency,
                instances: plan.instance_concurrency,
            };
            self.write_lanes(&key, &results_prefix, targets, concurrency)
                .await?;
            waves.push(WaveRef {
                index,
                key,
                results_prefix,
                targets: targets.len(),
                approval: plan.approvals.get(&index).cloned(),
            });
        }
        let key = format!("{prefix}plan.json");
        self.put_json(&key, plan).await?;
        let mut skipped_by_reason = std::collections::BTreeMap::new();
        for s in &plan.skipped {
            *skipped_by_reason.entry(s.reason.clone()).or_insert(0) += 1;
        }
        // Reasons name what differs (an AMI, an execution): keep the most common, so the state
        // stays small whatever the fleet; the plan object lists every skipped group.
        if skipped_by_reason.len() > REASONS_SHOWN {
            let mut by_count: Vec<(String, usize)> = skipped_by_reason.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let other: usize = by_count
                .split_off(REASONS_SHOWN)
                .iter()
                .map(|(_, n)| n)
                .sum();
            skipped_by_reason = by_count.into_iter().collect();
            skipped_by_reason.insert(format!("other reasons (listed in {key})"), other);
        }
        Ok(PlanSummary {
            trigger: plan.trigger.clone(),
            ami: plan.ami.clone(),
            regional_amis: plan.regional_amis.clone(),
            copies: plan.copies.clone(),
            settings: plan.settings.clone(),
            max_concurrency: plan.max_concurrency,
            instance_concurrency: plan.instance_concurrency,
            rollback_scope: plan.rollback_scope,
            bucket: self.bucket.clone(),
            key,
            waves,
            target_count: plan.target_count,
            skipped_count: plan.skipped_count,
            skipped_by_reason,
            undo: plan.undo.clone(),
        })
    }

    /// Writes `targets` as lanes: one object per account-region and kind of target, in the order
    /// they first appear, beside `key` (`…/wave-000.json` → `…/wave-000/lane-000.json`), then the
    /// list of lanes at `key`.
    pub async fn write_lanes(
        &self,
        key: &str,
        results_prefix: &str,
        targets: &[Target],
        concurrency: LaneConcurrency,
    ) -> StepResult<Vec<Lane>> {
        let stem = key.strip_suffix(".json").unwrap_or(key);
        type Place<'a> = (&'a Option<String>, &'a Option<String>, TargetKind);
        let mut places: Vec<(Place, Vec<&Target>)> = Vec::new();
        for target in targets {
            let place = (&target.account, &target.region, target.kind);
            match places.iter_mut().find(|(p, _)| *p == place) {
                Some((_, lane)) => lane.push(target),
                None => places.push((place, vec![target])),
            }
        }
        let mut lanes = Vec::with_capacity(places.len());
        for (index, ((account, region, kind), targets)) in places.into_iter().enumerate() {
            let lane = Lane {
                account: account.clone(),
                region: region.clone(),
                kind,
                max_concurrency: concurrency.of(kind),
                key: format!("{stem}/lane-{index:03}.json"),
                results_prefix: format!("{results_prefix}/lane-{index:03}"),
                targets: targets.len(),
            };
            self.put_json(&lane.key, &targets).await?;
            lanes.push(lane);
        }
        self.put_json(key, &lanes).await?;
        Ok(lanes)
    }

    /// The lanes listed at `key`.
    pub async fn lanes(&self, bucket: &str, key: &str) -> StepResult<Vec<Lane>> {
        self.get_json(bucket, key).await
    }

    /// Every target of the lanes listed at `key`, lane after lane.
    pub async fn lane_targets(&self, bucket: &str, key: &str) -> StepResult<Vec<Target>> {
        let mut targets = Vec::new();
        for lane in self.lanes(bucket, key).await? {
            targets.append(&mut self.get_json(bucket, &lane.key).await?);
        }
        Ok(targets)
    }

    /// The targets of one wave.
    pub async fn wave_targets(
        &self,
        plan: &PlanSummary,
        wave: &WaveRef,
    ) -> StepResult<Vec<Target>> {
        self.lane_targets(&plan.bucket, &wave.key).await
    }

    /// Every target child's result of a laned Map: the lanes' Map Run results, each lane's
    /// output naming where its own Map Run wrote its children's.
    pub async fn lane_results(
        &self,
        written: &ResultWriterDetails,
    ) -> StepResult<Vec<ChildResult>> {
        let mut results = Vec::new();
        for lane in self.map_results(written).await? {
            match lane.output_as::<LaneOutput>() {
                Some(output) => results.append(&mut self.map_results(&output.results).await?),
                // A lane that did not finish has no results of its own: its Map Run failed, and
                // with it the execution, which a redrive resumes.
                None => results.push(lane),
            }
        }
        Ok(results)
    }

    /// Every child's result a Map Run's `ResultWriter` wrote, read through its manifest.
    pub async fn map_results(&self, written: &ResultWriterDetails) -> StepResult<Vec<ChildResult>> {
        let manifest: Manifest = self.get_json(&written.bucket, &written.key).await?;
        let files = manifest
            .result_files
            .succeeded
            .iter()
            .chain(&manifest.result_files.failed)
            .chain(&manifest.result_files.pending);
        let mut results = Vec::new();
        for file in files {
            let mut part: Vec<ChildResult> = self.get_json(&written.bucket, &file.key).await?;
            results.append(&mut part);
        }
        Ok(results)
    }
}

/// What a lane's child execution ends with: where its Map Run's `ResultWriter` put the manifest.
#[derive(Deserialize, Debug)]
struct LaneOutput {
    results: ResultWriterDetails,
}

/// Where a Distributed Map's `ResultWriter` put its manifest (the Map state's result).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResultWriterDetails {
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "Key")]
    pub key: String,
}

#[derive(Deserialize, Debug)]
struct Manifest {
    #[serde(rename = "ResultFiles")]
    result_files: ResultFiles,
}

#[derive(Deserialize, Debug, Default)]
struct ResultFiles {
    #[serde(rename = "SUCCEEDED", default)]
    succeeded: Vec<ResultFile>,
    #[serde(rename = "FAILED", default)]
    failed: Vec<ResultFile>,
    #[serde(rename = "PENDING", default)]
    pending: Vec<ResultFile>,
}

#[derive(Deserialize, Debug)]
struct ResultFile {
    #[serde(rename = "Key")]
    key: String,
}

/// One child execution's entry in a result file.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildResult {
    #[serde(rename = "ExecutionArn", default)]
    pub execution_arn: String,
    #[serde(rename = "Status", default)]
    pub status: crate::model::ExecutionStatus,
    /// The child's input, as JSON text.
    #[serde(rename = "Input", default)]
    pub input: Option<String>,
    /// The child's output, as JSON text (succeeded children).
    #[serde(rename = "Output", default)]
    pub output: Option<String>,
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl ChildResult {
    /// The child's output, parsed.
    pub fn output_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.output.as_deref()?).ok()
    }

    /// The child's input, parsed.
    pub fn input_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.input.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::mock::{Rules, mock};
    use crate::model::{Ami, Skipped, Target};
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;

    fn plan(waves: &[&[&str]], skipped: &[(&str, &str)]) -> Plan {
        let target = |g: &str| Target {
            resource: g.into(),
            ..crate::samples::target_run().target
        };
        Plan {
            trigger: "test".into(),
            ami: Ami {
                id: "ami-00000002".into(),
                name: "n".into(),
                architecture: "x86_64".into(),
                owner_id: "1".into(),
            },
            regional_amis: Default::default(),
            copies: Vec::new(),
            waves: waves
                .iter()
                .map(|w| w.iter().map(|g| target(g)).collect())
                .collect(),
            settings: Default::default(),
            skipped: skipped
                .iter()
                .map(|(g, r)| Skipped {
                    group: g.to_string(),
                    reason: r.to_string(),
                })
                .collect(),
            skipped_count: skipped.len(),
            settings_version: None,
            target_count: waves.iter().map(|w| w.len()).sum(),
            max_concurrency: 5,
            instance_concurrency: 1,
            rollback_scope: Default::default(),
            undo: None,
            parameter: None,
            approvals: Default::default(),
            notes: Vec::new(),
        }
    }

    /// Every PutObject to the plans bucket succeeds.
    fn put_rule() -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| r.bucket() == Some("plans"))
            .then_output(|| PutObjectOutput::builder().build())
    }

    fn store_with(put: &aws_smithy_mocks::Rule) -> PlanStore {
        Rules {
            s3: vec![put],
            ..Default::default()
        }
        .clients()
        .store()
        .unwrap()
    }

    #[tokio::test]
    async fn the_plan_is_written_one_object_per_wave_and_the_state_gets_its_summary() {
        let put = put_rule();
        let store = store_with(&put);
        let many: Vec<(String, String)> = (0..30)
            .map(|i| {
                (
                    format!("g{i}"),
                    format!("execution e{i} is already rolling it out"),
                )
            })
            .collect();
        let mut skipped: Vec<(&str, &str)> =
            many.iter().map(|(g, r)| (g.as_str(), r.as_str())).collect();
        skipped.extend([
            ("a", "excluded (EXCLUDED_ASGS)"),
            ("b", "excluded (EXCLUDED_ASGS)"),
        ]);
        let summary = store
            .write_plan("exec-1", &plan(&[&["canary"], &["a1", "a2"]], &skipped))
            .await
            .unwrap();
        assert_eq!(
            put.num_calls(),
            5,
            "each wave's lanes and their list, and the whole plan"
        );
        assert_eq!(summary.key, "plans/exec-1/plan.json");
        let waves: Vec<(&str, &str, usize)> = summary
            .waves
            .iter()
            .map(|w| (w.key.as_str(), w.results_prefix.as_str(), w.targets))
            .collect();
        assert_eq!(
            waves,
            [
                ("plans/exec-1/wave-000.json", "results/exec-1/wave-000", 1),
                ("plans/exec-1/wave-001.json", "results/exec-1/wave-001", 2)
            ]
        );
        // The most common reasons by name, the rest counted together.
        assert_eq!(summary.skipped_by_reason.len(), REASONS_SHOWN + 1);
        assert_eq!(summary.skipped_by_reason["excluded (EXCLUDED_ASGS)"], 2);
        assert_eq!(
            summary.skipped_by_reason["other reasons (listed in plans/exec-1/plan.json)"],
            30 - (REASONS_SHOWN - 1)
        );
        assert_eq!(summary.skipped_by_reason.values().sum::<usize>(), 32);
    }

    #[tokio::test]
    async fn a_waves_targets_are_written_in_one_lane_per_account_region_and_kind() {
        let put = put_rule();
        let store = store_with(&put);
        let at = |account: Option<&str>, region: Option<&str>, group: &str| Target {
            account: account.map(String::from),
            region: region.map(String::from),
            resource: group.into(),
            ..crate::samples::target_run().target
        };
        let targets = [
            at(None, None, "web"),
            at(Some("111111111111"), None, "web"),
            at(None, Some("eu-west-1"), "web"),
            at(None, None, "api"),
            Target {
                kind: TargetKind::Instance,
                ..at(None, None, "i-0123456789abcdef0")
            },
            at(Some("111111111111"), None, "api"),
        ];
        let concurrency = LaneConcurrency {
            groups: 5,
            instances: 1,
        };
        let lanes = store
            .write_lanes(
                "plans/e/wave-001.json",
                "results/e/wave-001",
                &targets,
                concurrency,
            )
            .await
            .unwrap();
        assert_eq!(put.num_calls(), 5, "four lanes and their list");
        let lane =
            |account: Option<&str>, region: Option<&str>, index: usize, targets: usize| Lane {
                account: account.map(String::from),
                region: region.map(String::from),
                kind: TargetKind::AutoScalingGroup,
                max_concurrency: 5,
                key: format!("plans/e/wave-001/lane-{index:03}.json"),
                results_prefix: format!("results/e/wave-001/lane-{index:03}"),
                targets,
            };
        let instances = Lane {
            kind: TargetKind::Instance,
            max_concurrency: 1,
            ..lane(None, None, 3, 1)
        };
        assert_eq!(
            lanes,
            [
                lane(None, None, 0, 2),
                lane(Some("111111111111"), None, 1, 2),
                lane(None, Some("eu-west-1"), 2, 1),
                instances,
            ]
        );
    }

    #[tokio::test]
    async fn every_childs_result_is_read_through_the_manifest() {
        let object = |key: &'static str, body: &'static str| {
            mock!(aws_sdk_s3::Client::get_object)
                .match_requests(move |r| r.key() == Some(key) && r.bucket() == Some("plans"))
                .then_output(move || {
                    GetObjectOutput::builder()
                        .body(ByteStream::from_static(body.as_bytes()))
                        .build()
                })
        };
        let manifest = object(
            "results/e/rollback/run-1/manifest.json",
            r#"{"DestinationBucket": "plans", "MapRunArn": "arn", "ResultFiles": {
                "FAILED": [{"Key": "results/e/rollback/run-1/FAILED_0.json", "Size": 1}],
                "PENDING": [],
                "SUCCEEDED": [{"Key": "results/e/rollback/run-1/SUCCEEDED_0.json", "Size": 1}]}}"#,
        );
        let succeeded = object(
            "results/e/rollback/run-1/SUCCEEDED_0.json",
            r#"[{"ExecutionArn": "arn:1", "Status": "SUCCEEDED", "Input": "{}", "Output": "{\"group\":\"web\"}"}]"#,
        );
        let failed = object(
            "results/e/rollback/run-1/FAILED_0.json",
            r#"[{"ExecutionArn": "arn:2", "Status": "FAILED", "Input": "{}", "Error": "AwsThrottled", "Cause": "c"}]"#,
        );
        let store = Rules {
            s3: vec![&manifest, &succeeded, &failed],
            ..Default::default()
        }
        .clients()
        .store()
        .unwrap();
        let results = store
            .map_results(&ResultWriterDetails {
                bucket: "plans".into(),
                key: "results/e/rollback/run-1/manifest.json".into(),
            })
            .await
            .unwrap();
        let statuses: Vec<&str> = results.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(statuses, ["SUCCEEDED", "FAILED"]);
        assert_eq!(
            results[0].output_as::<serde_json::Value>().unwrap()["group"],
            "web"
        );
        assert_eq!(results[1].error.as_deref(), Some("AwsThrottled"));
    }
}
