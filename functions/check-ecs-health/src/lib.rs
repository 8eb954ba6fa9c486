//! check-ecs-health: one call, one target, one verdict.
//!
//! `observe` (a group) and `observe_instance` (a standalone instance) only read AWS; `verdict`
//! decides from what was observed and the previous verdict, the same way for both kinds, and says
//! how long the state machine should wait before asking again.

use rollout_core::FromSdk;
use std::collections::HashSet;

use aws_sdk_ecs::types::{DesiredStatus, LaunchType, TaskStopCode};
use rollout_core::ecs::{self, ContainerInstanceView, container_instances};
use rollout_core::fleet::{self, describe_group, in_service_instances, instance_images};
use rollout_core::instance::{self, StatusChecks, Task, TaskState};
use rollout_core::model::{EcsCapacity, Epoch, Health, TargetKind, TargetRun, Verdict};
use rollout_core::refresh::{RefreshInfo, RefreshStatus, recent_refreshes};
use rollout_core::{Clients, StepError, StepResult};
use serde_json::Value;

/// Poll bounds: short enough to see the end of a refresh promptly, long enough to stay far from
/// Auto Scaling's shared API throttle when many groups are polled at once.
pub const MIN_WAIT_SECONDS: i64 = 15;
pub const MAX_WAIT_SECONDS: i64 = 300;
/// Waiting on ECS to settle: the `services-stable` waiter's own interval.
pub const VERIFY_WAIT_SECONDS: i64 = 15;
/// Longest wait inside a bake window, so alarms are re-read while it runs.
pub const BAKE_WAIT_SECONDS: i64 = 60;

pub async fn handle(clients: &Clients, payload: Value) -> StepResult<TargetRun> {
    let run: TargetRun = rollout_core::error::parse_input("check-ecs-health", payload)?;
    check(clients, run, rollout_core::clock::now()).await
}

/// Observes the target, records the verdict, and fails with `TargetUnhealthy` when it is unhealthy.
pub async fn check(clients: &Clients, mut run: TargetRun, now: Epoch) -> StepResult<TargetRun> {
    run.validate()?;
    clients.ensure_wave_going(&run).await?;
    let clients = &clients.for_run(&run).await?;
    let observation = match run.target.kind {
        TargetKind::AutoScalingGroup => observe(clients, &run, now).await?,
        TargetKind::Instance => observe_instance(clients, &run).await?,
    };
    let health = verdict(&run, &observation, now);
    tracing::info!(group = run.resource(), verdict = ?health.verdict, percentage = health.percentage, reasons = ?health.reasons, next = health.next_wait_seconds, "health check");
    if health.verdict == Verdict::Unhealthy {
        return Err(StepError::TargetUnhealthy {
            group: run.target.name(),
            ami: run.ami.id.clone(),
            reasons: health.reasons.join("; "),
        });
    }
    run.health = Some(health);
    Ok(run)
}

/// What one round of reads saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub refresh: Option<RefreshInfo>,
    /// Whether the fleet was read (only once the refresh has succeeded).
    pub fleet_read: bool,
    /// In-service instances and the AMI each runs.
    pub instances: Vec<(String, String)>,
    pub container_instances: Vec<ContainerInstanceView>,
    pub services: Vec<ServiceView>,
    /// Tasks of those services that failed since the rollout began: "service: reason".
    pub failed_tasks: Vec<String>,
    pub alarms_in_alarm: Vec<String>,
    /// What Auto Scaling wrote of a launch a lifecycle action abandoned since the refresh began
    /// (its scaling activity), read when the refresh failed or ran past its timeout.
    pub abandoned_launch: Option<String>,
    /// The group's launch lifecycle hooks, read when a launch was abandoned.
    pub launch_hooks: Vec<String>,
    /// A standalone instance's status checks, once its replacement succeeded.
    pub status_checks: StatusChecks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub name: String,
    pub running: i32,
    pub desired: i32,
    pub deployments: usize,
    pub rollout_completed: bool,
}

/// Checks whose failure is the new AMI's fault (rollback now) and checks that may still be
/// settling (wait, up to the verify timeout).
struct Findings {
    fatal: Vec<String>,
    settling: Vec<String>,
    passed: u32,
}

fn inspect_fleet(o: &Observation, ami: &str, ecs: Option<&EcsCapacity>) -> Findings {
    let mut f = Findings {
        fatal: o
            .failed_tasks
            .iter()
            .map(|t| format!("task failed: {t}"))
            .chain(o.instances.first().into_iter().flat_map(|(id, _)| {
                o.status_checks
                    .impaired
                    .iter()
                    .map(move |what| format!("instance {id} fails its {what} status check"))
            }))
            // Stopped (or stopping, terminated) is never healthy, whoever stopped it.
            .chain(o.instances.first().and_then(|(id, _)| {
                o.status_checks
                    .not_running
                    .as_deref()
                    .filter(|state| *state != "pending")
                    .map(|state| format!("instance {id} is {state}, so it is not healthy"))
            }))
            .collect(),
        settling: Vec::new(),
        passed: 0,
    };
    let mut check = |ok: bool, settling: String| {
        if ok {
            f.passed += 1
        } else {
            f.settling.push(settling)
        }
    };
    for (id, image) in &o.instances {
        check(image == ami, format!("instance {id} runs {image}"));
    }
    // Status checks are read for a standalone instance only, the one instance observed.
    if let Some((id, _)) = o.instances.first() {
        if o.status_checks.not_running.as_deref() == Some("pending") {
            check(false, format!("instance {id} is pending"));
        }
        for what in &o.status_checks.pending {
            check(
                false,
                format!("instance {id}: {what} status check has no result yet"),
            );
        }
    }
    if ecs.is_some() {
        let registered: HashSet<&str> = o
            .container_instances
            .iter()
            .map(|c| c.ec2_instance_id.as_str())
            .collect();
        for (id, _) in &o.instances {
            check(
                registered.contains(id.as_str()),
                format!("instance {id} is not registered with ECS"),
            );
        }
        for c in o
            .container_instances
            .iter()
            .filter(|c| o.instances.iter().any(|(id, _)| *id == c.ec2_instance_id))
        {
            check(
                c.status == "ACTIVE",
                format!("container instance {} is {}", c.ec2_instance_id, c.status),
            );
            check(
                c.agent_connected,
                format!("ECS agent on {} is disconnected", c.ec2_instance_id),
            );
            check(
                c.ami.as_deref() == Some(ami),
                format!(
                    "container instance {} reports AMI {}",
                    c.ec2_instance_id,
                    c.ami.as_deref().unwrap_or("none")
                ),
            );
        }
        for s in &o.services {
            check(
                s.running == s.desired,
                format!("service {} runs {}/{} tasks", s.name, s.running, s.desired),
            );
            check(
                s.deployments == 1 && s.rollout_completed,
                format!(
                    "service {} has {} deployment(s), rollout not completed",
                    s.name, s.deployments
                ),
            );
        }
    }
    f
}

/// The verdict for `run` given what was observed at `now`.
pub fn verdict(run: &TargetRun, o: &Observation, now: Epoch) -> Health {
    use RefreshStatus as S;
    let settings = run.settings.for_group(run.resource());
    let previous = run.health.as_ref();
    let change = match run.target.kind {
        TargetKind::AutoScalingGroup => "instance refresh",
        TargetKind::Instance => "root volume replacement",
    };
    let refresh_status = o
        .refresh
        .as_ref()
        .map_or_else(|| "NotFound".to_string(), |r| r.status.to_string());
    let percentage = o.refresh.as_ref().map_or(0, |r| r.percentage);
    let mut health = Health {
        verdict: Verdict::InProgress,
        reasons: Vec::new(),
        refresh_status: refresh_status.clone(),
        percentage,
        next_wait_seconds: 0,
        checked_at: now,
        refresh_ended_at: o.refresh.as_ref().and_then(|r| r.ended_at),
        healthy_since: None,
        checks_passed: 0,
    };
    let unhealthy = |mut h: Health, reasons: Vec<String>| {
        h.verdict = Verdict::Unhealthy;
        h.reasons = reasons;
        h
    };
    if !o.alarms_in_alarm.is_empty() {
        return unhealthy(
            health,
            o.alarms_in_alarm
                .iter()
                .map(|a| format!("alarm {a} is in ALARM"))
                .collect(),
        );
    }
    let Some(refresh) = &o.refresh else {
        return unhealthy(
            health,
            vec![format!(
                "{change} {} no longer exists",
                run.refresh.as_ref().map_or("?", |r| r.id.as_str())
            )],
        );
    };
    let hooks = match o.launch_hooks.as_slice() {
        [] => String::new(),
        [one] => format!(" (the group's launch lifecycle hook {one} abandoned its new instances)"),
        many => format!(
            " (one of the group's launch lifecycle hooks {} abandoned its new instances)",
            many.join(", ")
        ),
    };
    // Auto Scaling's own words, then the abandoned launch's activity if they do not say it.
    let mut said: Vec<&str> = refresh.reason.as_deref().into_iter().collect();
    if let Some(activity) = o.abandoned_launch.as_deref()
        && !said.iter().any(|r| r.contains(activity))
    {
        said.push(activity);
    }
    let reason = match said.is_empty() {
        true => String::new(),
        false => format!(": {}{hooks}", said.join("; ")),
    };
    match &refresh.status {
        S::Pending | S::InProgress
            if refresh
                .started_at
                .is_some_and(|t| now - t > settings.refresh_timeout_seconds()) =>
        {
            unhealthy(
                health,
                vec![format!(
                    "{change} {} is still {} at {}% after {}s (refreshTimeoutSeconds {}){reason}",
                    refresh.id,
                    refresh.status,
                    percentage,
                    now - refresh.started_at.unwrap_or(now),
                    settings.refresh_timeout_seconds()
                )],
            )
        }
        S::Pending | S::InProgress | S::Baking => {
            health.next_wait_seconds =
                progress_wait(previous, percentage, now, settings.instance_warmup_seconds);
            if previous.is_none() {
                health.next_wait_seconds += first_poll_jitter(run.resource());
            }
            health
        }
        S::Successful => {
            let findings = inspect_fleet(o, &run.ami.id, run.target.ecs.as_ref());
            health.checks_passed = findings.passed;
            if !findings.fatal.is_empty() {
                return unhealthy(health, findings.fatal);
            }
            let ended = refresh.ended_at.unwrap_or(now);
            if !findings.settling.is_empty() {
                // Bounded: a fleet that never settles is as unhealthy as one that fails.
                if now - ended > settings.verify_timeout_seconds() + settings.bake_seconds() {
                    let mut reasons = findings.settling;
                    reasons.insert(
                        0,
                        format!("not settled {}s after the refresh ended", now - ended),
                    );
                    return unhealthy(health, reasons);
                }
                health.verdict = Verdict::Verifying;
                health.reasons = findings.settling;
                health.next_wait_seconds = VERIFY_WAIT_SECONDS;
                return health;
            }
            let since = previous.and_then(|p| p.healthy_since).unwrap_or(now);
            let left = settings.bake_seconds() - (now - since);
            health.healthy_since = Some(since);
            if left <= 0 {
                health.verdict = Verdict::Healthy;
            } else {
                health.verdict = Verdict::Baking;
                health.next_wait_seconds = left.clamp(1, BAKE_WAIT_SECONDS);
            }
            health
        }
        S::Failed | S::Cancelled | S::Cancelling => unhealthy(
            health,
            vec![format!(
                "{change} {} is {}{reason}",
                refresh.id, refresh.status
            )],
        ),
        S::RollbackInProgress | S::RollbackSuccessful | S::RollbackFailed => unhealthy(
            health,
            vec![format!(
                "Auto Scaling rolled instance refresh {} back ({}){reason}",
                refresh.id, refresh.status
            )],
        ),
        S::Unknown(other) => {
            health.reasons = vec![format!("unrecognised refresh status {other}")];
            health.next_wait_seconds = MAX_WAIT_SECONDS;
            health
        }
    }
}

/// The most a target's first wait is spread by.
pub const FIRST_POLL_JITTER_SECONDS: i64 = 30;

/// A wave's children start together, and waits computed from the same pace would keep their polls
/// in step for the whole refresh, all on the account-region's one Auto Scaling throttle bucket.
/// The first wait is spread by 0 to 29 s, fixed per group (FNV-1a of its name), so a retry or a
/// redrive waits the same.
pub fn first_poll_jitter(group: &str) -> i64 {
    (rollout_core::reach::fnv1a(group) % FIRST_POLL_JITTER_SECONDS as u64) as i64
}

/// Wait about half the time the refresh still needs at its observed pace, so polls thin out on
/// long refreshes and tighten near the end. Without a pace yet, wait one instance warmup.
pub fn progress_wait(
    previous: Option<&Health>,
    percentage: i32,
    now: Epoch,
    warmup: Option<i32>,
) -> i64 {
    let wait = match previous {
        Some(p) if percentage > p.percentage && now > p.checked_at => {
            let per_percent = (now - p.checked_at) as f64 / f64::from(percentage - p.percentage);
            (per_percent * f64::from(100 - percentage) / 2.0) as i64
        }
        // No progress since the last look: back off.
        Some(p) if p.verdict == Verdict::InProgress => p.next_wait_seconds * 2,
        _ => warmup.map_or(60, i64::from),
    };
    wait.clamp(MIN_WAIT_SECONDS, MAX_WAIT_SECONDS)
}

/// Reads the refresh, the alarms and, once the refresh succeeded, the fleet and its ECS services.
/// Reads that do not depend on each other run concurrently: each poll costs a few round trips.
pub async fn observe(clients: &Clients, run: &TargetRun, now: Epoch) -> StepResult<Observation> {
    let refresh_ref = run.require_refresh()?;
    let settings = run.settings.for_group(run.resource());
    let (refreshes, alarms_in_alarm) = tokio::try_join!(
        recent_refreshes(clients, run.resource()),
        alarms_in_alarm(clients, settings.alarm_names()),
    )?;
    let mut o = Observation {
        refresh: refreshes.into_iter().find(|r| r.id == refresh_ref.id),
        alarms_in_alarm,
        ..Default::default()
    };
    // A refresh that failed or stalls may be a launch hook abandoning its new instances: Auto
    // Scaling says so in the launch's scaling activity, which names the action's token, not the
    // hook, so the hooks are read too.
    let ending = o.refresh.as_ref().is_some_and(|r| {
        use RefreshStatus as S;
        let going = matches!(
            r.status,
            S::Pending | S::InProgress | S::Baking | S::Successful | S::Unknown(_)
        );
        let stalled = r
            .started_at
            .is_some_and(|t| now - t > settings.refresh_timeout_seconds());
        !going || stalled
    });
    if ending {
        o.abandoned_launch =
            fleet::abandoned_launch(clients, run.resource(), refresh_ref.started_at).await?;
    }
    let said = o.refresh.as_ref().and_then(|r| r.reason.as_deref());
    if o.abandoned_launch.is_some() || said.is_some_and(fleet::abandoned_by_a_hook) {
        o.launch_hooks = fleet::launch_hooks(clients, run.resource()).await?;
    }
    if o.refresh
        .as_ref()
        .is_none_or(|r| r.status != RefreshStatus::Successful)
        || !o.alarms_in_alarm.is_empty()
    {
        return Ok(o);
    }
    o.fleet_read = true;
    let fleet = async {
        let group = describe_group(clients, run.resource()).await?;
        let ids = in_service_instances(&group);
        let images = instance_images(clients, &ids).await?;
        Ok::<_, StepError>((ids, images))
    };
    let ecs = async {
        let Some(ecs) = &run.target.ecs else {
            return Ok(None);
        };
        let services_and_failures = async {
            let services = services(clients, ecs).await?;
            let failed =
                failed_tasks(clients, &ecs.cluster, &services, refresh_ref.started_at).await?;
            Ok::<_, StepError>((services, failed))
        };
        let (container_instances, (services, failed)) = tokio::try_join!(
            container_instances(clients, &ecs.cluster),
            services_and_failures
        )?;
        Ok(Some((container_instances, services, failed)))
    };
    let ((ids, images), ecs) = tokio::try_join!(fleet, ecs)?;
    o.instances = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                images.get(id).cloned().unwrap_or_else(|| "unknown".into()),
            )
        })
        .collect();
    if let Some((container_instances, services, failed)) = ecs {
        o.container_instances = container_instances;
        o.services = services;
        o.failed_tasks = failed;
    }
    Ok(o)
}

/// Reads a standalone instance's replacement and alarms and, once the replacement succeeded, the
/// AMI it reports and its status checks.
pub async fn observe_instance(clients: &Clients, run: &TargetRun) -> StepResult<Observation> {
    let task_ref = run.require_refresh()?;
    let id = run.resource();
    let settings = run.settings.for_group(id);
    let (tasks, alarms_in_alarm) = tokio::try_join!(
        instance::tasks(clients, id),
        alarms_in_alarm(clients, settings.alarm_names()),
    )?;
    let task = tasks.into_iter().find(|t| t.id == task_ref.id);
    let mut o = Observation {
        refresh: task
            .as_ref()
            .map(|t| replacement_progress(t, task_ref.started_at)),
        alarms_in_alarm,
        ..Default::default()
    };
    if task.is_none_or(|t| t.state != TaskState::Succeeded) || !o.alarms_in_alarm.is_empty() {
        return Ok(o);
    }
    o.fleet_read = true;
    let (now, status_checks) = tokio::try_join!(
        instance::describe(clients, id),
        instance::status_checks(clients, id)
    )?;
    let image = now.map_or_else(|| "nothing (it no longer exists)".into(), |i| i.image_id);
    o.instances = vec![(id.to_string(), image)];
    o.status_checks = status_checks;
    if let Some(ecs) = &run.target.ecs {
        let (views, services) = tokio::try_join!(
            ecs::of_instance(clients, &ecs.cluster, id),
            services(clients, ecs)
        )?;
        o.failed_tasks =
            failed_tasks(clients, &ecs.cluster, &services, task_ref.started_at).await?;
        o.services = services;
        // The new root registers a new container instance; the one of the replaced root stays,
        // disconnected, until the rollout has succeeded (rollback puts that root back, and its
        // agent connects as it again), and is no check of the new AMI's.
        o.container_instances = ecs::identity(&views, id, &run.ami.id)
            .live
            .into_iter()
            .collect();
    }
    Ok(o)
}

/// A replacement task, as the refresh progress the verdict reads.
fn replacement_progress(task: &Task, started_at: Epoch) -> RefreshInfo {
    let (status, percentage, reason) = match &task.state {
        TaskState::Pending => (RefreshStatus::Pending, 0, None),
        TaskState::InProgress => (RefreshStatus::InProgress, 50, None),
        TaskState::Succeeded => (RefreshStatus::Successful, 100, None),
        TaskState::Failed(how) => (
            RefreshStatus::Failed,
            0,
            Some(format!(
                "the task is {how}; the original root stays attached"
            )),
        ),
        TaskState::FailedDetached => (
            RefreshStatus::Failed,
            0,
            Some("the task is failed-detached: the instance was left without a root volume".into()),
        ),
    };
    RefreshInfo {
        id: task.id.clone(),
        status,
        percentage,
        reason,
        desired: None,
        started_at: task.started_at.or(Some(started_at)),
        ended_at: task.ended_at,
    }
}

async fn alarms_in_alarm(clients: &Clients, names: &[String]) -> StepResult<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let out = clients
        .cloudwatch
        .describe_alarms()
        .set_alarm_names(Some(names.to_vec()))
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .send()
        .await
        .map_err(|e| StepError::from_sdk("DescribeAlarms", e))?;
    Ok(out
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect())
}

/// The cluster's services that place tasks on this capacity: those using its capacity provider,
/// or the EC2 launch type when the group is not linked by a capacity provider.
async fn services(clients: &Clients, ecs: &EcsCapacity) -> StepResult<Vec<ServiceView>> {
    let mut arns = Vec::new();
    let mut pages = clients
        .ecs
        .list_services()
        .cluster(&ecs.cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        arns.extend(
            page.map_err(|e| StepError::from_sdk("ListServices", e))?
                .service_arns()
                .iter()
                .cloned(),
        );
    }
    let mut views = Vec::new();
    for chunk in arns.chunks(10) {
        let out = clients
            .ecs
            .describe_services()
            .cluster(&ecs.cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("DescribeServices", e))?;
        for s in out.services() {
            let strategy = s.capacity_provider_strategy();
            let on_capacity = match (s.launch_type(), &ecs.capacity_provider) {
                (Some(LaunchType::Fargate | LaunchType::External), _) => false,
                (_, Some(provider)) if !strategy.is_empty() => {
                    strategy.iter().any(|i| i.capacity_provider() == provider)
                }
                _ => true,
            };
            if on_capacity && s.status() != Some("INACTIVE") {
                views.push(ServiceView {
                    name: s.service_name().unwrap_or_default().to_string(),
                    running: s.running_count(),
                    desired: s.desired_count(),
                    deployments: s.deployments().len(),
                    rollout_completed: s.deployments().iter().all(|d| {
                        d.rollout_state().is_none_or(|r| {
                            *r == aws_sdk_ecs::types::DeploymentRolloutState::Completed
                        })
                    }),
                });
            }
        }
    }
    Ok(views)
}

/// Tasks of `services` that stopped since `since` because they failed to start or their
/// essential container exited (draining stops tasks too, with another stop code).
async fn failed_tasks(
    clients: &Clients,
    cluster: &str,
    services: &[ServiceView],
    since: Epoch,
) -> StepResult<Vec<String>> {
    let per_service = futures_util::future::try_join_all(
        services
            .iter()
            .map(|service| service_failures(clients, cluster, &service.name, since)),
    )
    .await?;
    let mut failed: Vec<String> = per_service.into_iter().flatten().collect();
    failed.sort();
    failed.dedup();
    Ok(failed)
}

/// Tasks of one service that failed to start or crashed since `since`, as "service: reason".
async fn service_failures(
    clients: &Clients,
    cluster: &str,
    service: &str,
    since: Epoch,
) -> StepResult<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = clients
        .ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Stopped)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::from_sdk("ListTasks", e))?;
        arns.extend(page.task_arns().iter().cloned());
    }
    // DescribeTasks takes at most 100 tasks a call.
    let described = futures_util::future::try_join_all(arns.chunks(100).map(|chunk| {
        clients
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
    }))
    .await
    .map_err(|e| StepError::from_sdk("DescribeTasks", e))?;
    Ok(described
        .iter()
        .flat_map(|out| out.tasks())
        .filter(|task| {
            let recent = task.stopped_at().is_some_and(|t| t.secs() >= since);
            let crashed = matches!(
                task.stop_code(),
                Some(TaskStopCode::TaskFailedToStart | TaskStopCode::EssentialContainerExited)
            );
            recent && crashed
        })
        .map(|task| {
            format!(
                "{service}: {}",
                task.stopped_reason().unwrap_or("no reason given")
            )
        })
        .collect())
}

#[cfg(test)]
mod tests;
