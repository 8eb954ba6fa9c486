//! Each function's library against the local AWS (infra/local) through the real SDK clients:
//! what an operator would see on the fleet after each step. Every test owns a freshly seeded
//! local AWS, so they run in parallel and leave nothing behind.
//!
//! Run against plain moto (`LOCALAWS_PLAIN=1`) these fail: moto has no instance refresh, ignores
//! SourceVersion, never registers ECS instances, and cannot parse CloudWatch's CBOR.

mod support;

use std::time::Duration;

use check_ecs_health::check;
use rollout_core::config::Config;
use rollout_core::model::{Plan, TargetRun, Verdict};
use rollout_core::{Clients, StepError};
use serde_json::{Value, json};
use support::LocalAws;

const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:ami-rollout:it";

fn config() -> Config {
    Config::from_lookup(|_| None).expect("default config")
}

async fn try_plan(aws: &LocalAws, input: Value) -> Result<Plan, StepError> {
    rollout_planner::resolve(
        &aws.clients,
        &config(),
        "local-test",
        &input,
        rollout_core::clock::now(),
    )
    .await
    .map(|resolved| resolved.into_plan().expect("something to do"))
}

/// When "the execution" started: the first time a test asked, a second early (no refresh of the
/// fleet's past is newer).
fn execution_start() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| rollout_core::clock::now() - 1)
}

/// The first wave's run for `group`, as the state machine's ItemSelector builds it.
fn run_for(plan: &Plan, group: &str) -> TargetRun {
    let target = plan
        .waves
        .iter()
        .flatten()
        .find(|t| t.resource == group)
        .unwrap_or_else(|| panic!("{group} is not in the plan"))
        .clone();
    TargetRun {
        execution: EXECUTION.into(),
        execution_arn: None,
        wave: 0,
        execution_start_time: execution_start(),
        ami: plan.ami.clone(),
        settings: plan.settings.clone(),
        target,
        new_version: None,
        refresh: None,
        health: None,
        drain: None,
        undoing: None,
    }
}

async fn rollout_start(clients: &Clients, run: TargetRun) -> TargetRun {
    let run = update_template::create_version(clients, run)
        .await
        .expect("create version");
    start_refresh::start_refresh(clients, run, rollout_core::clock::now())
        .await
        .expect("start refresh")
}

/// Calls check-ecs-health until the verdict is final, moving its clock past the bake window
/// (the local refresh runs on a scaled clock; the bake window is the function's own).
async fn health_until_final(clients: &Clients, mut run: TargetRun) -> Result<TargetRun, StepError> {
    let mut now = rollout_core::clock::now();
    for _ in 0..400 {
        run = check(clients, run, now).await?;
        let health = run.health.as_ref().unwrap();
        if health.verdict == Verdict::Healthy {
            return Ok(run);
        }
        if matches!(health.verdict, Verdict::Baking | Verdict::Verifying) {
            now += health.next_wait_seconds;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            now = now.max(rollout_core::clock::now());
        }
    }
    panic!("no final verdict");
}

fn refresh_status(aws: &LocalAws, group: &str) -> String {
    aws.fleet_view()["groups"][group]["refreshes"][0]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn plan_reads_the_seeded_fleet_and_refuses_what_cannot_roll_back() {
    let aws = LocalAws::start().await;
    let plan = plan_with(&aws, json!({"amiId": aws.ami("golden")})).await;
    let mut groups: Vec<_> = plan
        .waves
        .iter()
        .flatten()
        .map(|t| t.resource.clone())
        .collect();
    groups.sort();
    assert_eq!(groups, ["ecs-batch-capacity", "ecs-prod-capacity", "web"]);
    let prod = run_for(&plan, "ecs-prod-capacity").target;
    assert_eq!(prod.template_point().unwrap().version, 1);
    assert_eq!(prod.rollback_point.image_id(), aws.ami("current"));
    let ecs = prod.ecs.expect("prod capacity is linked to its cluster");
    assert_eq!(ecs.cluster, "prod");
    assert!(ecs.managed_termination_protection);

    // Excluded and already-current groups are reported, not planned.
    let plan2 = plan_with(
        &aws,
        json!({"amiId": aws.ami("current"), "excludedAsgs": ["web"]}),
    )
    .await;
    assert_eq!(plan2.target_count, 0, "{plan2:?}");
    assert!(plan2.skipped.iter().any(|s| s.group == "web"));

    let unknown = try_plan(&aws, json!({"amiId": "ami-0123456789abcdef0"}))
        .await
        .unwrap_err();
    assert_eq!(unknown.name(), "AmiNotUsable");

    // A tagged group whose template reads its AMI from SSM cannot be rolled back natively: the
    // whole plan is refused, naming it.
    let template = aws
        .clients
        .ec2
        .create_launch_template()
        .launch_template_name("ssm-lt")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("resolve:ssm:/ami/linux/prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let template_id = template
        .launch_template()
        .unwrap()
        .launch_template_id()
        .unwrap();
    aws.clients
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("ssm-group")
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(template_id)
                .version("1")
                .build(),
        )
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .availability_zones("us-east-1a")
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .key("ami-rollout:enabled")
                .value("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let refused = try_plan(&aws, json!({"amiId": aws.ami("golden")}))
        .await
        .unwrap_err();
    assert_eq!(refused.name(), "PreflightFailed");
    assert!(refused.to_string().contains("ssm-group"), "{refused}");
}

async fn plan_with(aws: &LocalAws, input: Value) -> Plan {
    match try_plan(aws, input.clone()).await {
        Ok(plan) => plan,
        Err(err) => panic!("{input}: {} {err}", err.name()),
    }
}

#[tokio::test]
async fn template_versions_copy_the_source_and_are_idempotent() {
    let aws = LocalAws::start().await;
    let plan = plan_with(&aws, json!({"amiId": aws.ami("golden")})).await;
    let run = run_for(&plan, "web");
    let first = update_template::create_version(&aws.clients, run.clone())
        .await
        .unwrap();
    let again = update_template::create_version(&aws.clients, run)
        .await
        .unwrap();
    assert_eq!(first.new_version, Some(2));
    assert_eq!(
        again.new_version,
        Some(2),
        "a retry must return the same version"
    );

    let versions = aws
        .clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&first.target.template_point().unwrap().launch_template_id)
        .send()
        .await
        .unwrap();
    let versions = versions.launch_template_versions();
    assert_eq!(versions.len(), 2);
    let new = versions
        .iter()
        .find(|v| v.version_number() == Some(2))
        .unwrap();
    let data = new.launch_template_data().unwrap();
    assert_eq!(data.image_id(), Some(aws.ami("golden").as_str()));
    // Everything else came from the source version.
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("m7i.large"));
    assert!(
        new.version_description()
            .unwrap()
            .contains("rollback point: version 1")
    );
    assert_eq!(new.default_version(), Some(false));
}

#[tokio::test]
async fn refresh_replaces_instances_batch_by_batch_and_the_group_takes_the_new_version() {
    let aws = LocalAws::start().await;
    let (current, golden) = (aws.ami("current"), aws.ami("golden"));
    let plan = plan_with(
        &aws,
        json!({"amiId": golden, "settings": {"*": {"minHealthyPercentage": 50, "bakeSeconds": 60}}}),
    )
    .await;
    let before = aws.group_amis("web");
    let run = rollout_start(&aws.clients, run_for(&plan, "web")).await;

    // Watch the fleet: with 2 instances and 50 % healthy, one instance is replaced at a time.
    let mut seen = vec![before];
    for _ in 0..200 {
        let amis = aws.group_amis("web");
        if seen.last() != Some(&amis) {
            seen.push(amis.clone());
        }
        if refresh_status(&aws, "web") == "Successful" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        seen.first().unwrap(),
        &vec![current.clone(), current.clone()]
    );
    assert!(
        seen.iter()
            .any(|a| a.contains(&current) && a.contains(&golden)),
        "a batch in between holds both AMIs: {seen:?}"
    );
    assert_eq!(seen.last().unwrap(), &vec![golden.clone(), golden.clone()]);

    let healthy = health_until_final(&aws.clients, run).await.unwrap();
    assert_eq!(healthy.health.unwrap().refresh_status, "Successful");
    let group = rollout_core::fleet::describe_group(&aws.clients, "web")
        .await
        .unwrap();
    let version = group
        .launch_template()
        .and_then(|t| t.version())
        .map(str::to_string);
    assert_eq!(
        version.as_deref(),
        Some("2"),
        "the group takes the desired configuration"
    );
}

#[tokio::test]
async fn a_bad_ami_fails_the_refresh_and_auto_scaling_rolls_it_back() {
    let aws = LocalAws::start().await;
    let (current, bad) = (aws.ami("current"), aws.ami("bad"));
    aws.control("POST", "bad-ami", json!({"imageId": bad, "mode": "boot"}));
    let plan = plan_with(&aws, json!({"amiId": bad})).await;
    let run = rollout_start(&aws.clients, run_for(&plan, "web")).await;

    // New instances never pass their health checks; AWS gives up after an hour.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refresh_status(&aws, "web"), "InProgress");
    aws.control("POST", "advance", json!({"seconds": 3700}));
    let mut status = String::new();
    for _ in 0..200 {
        status = refresh_status(&aws, "web");
        if status == "RollbackSuccessful" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, "RollbackSuccessful");
    assert_eq!(aws.group_amis("web"), vec![current.clone(), current]);

    let err = check(&aws.clients, run, rollout_core::clock::now())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "TargetUnhealthy");
    assert!(err.to_string().contains("RollbackSuccessful"), "{err}");
}

#[tokio::test]
async fn a_refresh_someone_else_started_is_a_conflict() {
    let aws = LocalAws::start().await;
    // A long warmup keeps it running (the scaled clock would end a default one in about a second
    // of wall time, before a slow machine has planned).
    aws.clients
        .autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name("web")
        .preferences(
            aws_sdk_autoscaling::types::RefreshPreferences::builder()
                .instance_warmup(360_000)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let plan = plan_with(&aws, json!({"amiId": aws.ami("golden")})).await;
    let err = update_template::create_version(&aws.clients, run_for(&plan, "web"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "RefreshConflict");
}

#[tokio::test]
async fn ecs_services_that_fail_on_the_new_ami_make_the_group_unhealthy() {
    let aws = LocalAws::start().await;
    let golden = aws.ami("golden");
    aws.control("POST", "bad-ami", json!({"imageId": golden, "mode": "ecs"}));
    let plan = plan_with(
        &aws,
        json!({"amiId": golden, "settings": {"*": {"minHealthyPercentage": 50}}}),
    )
    .await;
    let run = rollout_start(&aws.clients, run_for(&plan, "ecs-batch-capacity")).await;
    let err = health_until_final(&aws.clients, run).await.unwrap_err();
    assert_eq!(err.name(), "TargetUnhealthy");
    let cause = err.to_string();
    assert!(
        cause.contains("ingest") && cause.contains("Essential container"),
        "{cause}"
    );
    // The instances did move: it is the services that are not healthy.
    assert_eq!(
        aws.group_amis("ecs-batch-capacity"),
        vec![golden.clone(), golden]
    );
}

#[tokio::test]
async fn steady_ecs_services_and_quiet_alarms_are_healthy_until_an_alarm_fires() {
    let aws = LocalAws::start().await;
    let golden = aws.ami("golden");
    let plan = plan_with(
        &aws,
        json!({"amiId": golden, "settings": {"*": {"minHealthyPercentage": 50, "alarmNames": ["prod-api-errors"]}}}),
    )
    .await;
    let run = rollout_start(&aws.clients, run_for(&plan, "ecs-prod-capacity")).await;
    let healthy = health_until_final(&aws.clients, run).await.unwrap();
    let containers = &aws.fleet_view()["clusters"]["prod"]["containerInstances"];
    assert!(
        containers
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["amiId"] == golden.as_str()),
        "the cluster's container instances run the new AMI: {containers}"
    );

    aws.control(
        "POST",
        "alarm",
        json!({"name": "prod-api-errors", "state": "ALARM"}),
    );
    let err = check(&aws.clients, healthy, rollout_core::clock::now())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "TargetUnhealthy");
    assert!(err.to_string().contains("prod-api-errors"), "{err}");
}

#[tokio::test]
async fn rollback_after_a_successful_refresh_brings_the_old_ami_back() {
    let aws = LocalAws::start().await;
    let (current, golden) = (aws.ami("current"), aws.ami("golden"));
    let plan = plan_with(
        &aws,
        json!({"amiId": golden, "settings": {"*": {"minHealthyPercentage": 50}}}),
    )
    .await;
    let run = rollout_start(&aws.clients, run_for(&plan, "web")).await;
    health_until_final(&aws.clients, run).await.unwrap();
    assert_eq!(aws.group_amis("web"), vec![golden.clone(), golden]);

    let run = run_for(&plan, "web");
    let mut report = None;
    for _ in 0..400 {
        let step = rollback::converge(&aws.clients, &run).await.unwrap();
        if step.complete {
            report = Some(step.target);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let report = report.expect("rollback converges");
    assert_eq!(
        report.status,
        rollout_core::model::RollbackStatus::RolledBack,
        "{report:?}"
    );
    assert_eq!(aws.group_amis("web"), vec![current.clone(), current]);
    let group = rollout_core::fleet::describe_group(&aws.clients, "web")
        .await
        .unwrap();
    assert_eq!(group.launch_template().and_then(|t| t.version()), Some("1"));
}

#[tokio::test]
async fn throttling_and_server_errors_map_to_the_retryable_names() {
    let aws = LocalAws::start().await;
    aws.control(
        "POST",
        "faults",
        json!({"operation": "DescribeImages", "code": "RequestLimitExceeded", "status": 503, "count": 1}),
    );
    let err = try_plan(&aws, json!({"amiId": aws.ami("golden")}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "AwsThrottled");
    aws.control(
        "POST",
        "faults",
        json!({"operation": "DescribeAutoScalingGroups", "code": "InternalFailure", "status": 500, "count": 1}),
    );
    let err = try_plan(&aws, json!({"amiId": aws.ami("golden")}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "AwsTransient");
    // The faults are used up: the same call now works.
    plan_with(&aws, json!({"amiId": aws.ami("golden")})).await;
}
