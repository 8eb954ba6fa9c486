use super::*;
use rollout_core::model::RefreshRef;
use rollout_core::samples::target_run;

const NEW: &str = "ami-0a1b2c3d4e5f60718";
const OLD: &str = "ami-00000000000000001";

fn run() -> TargetRun {
    let mut run = target_run();
    run.new_version = Some(4);
    run.refresh = Some(RefreshRef {
        id: "r-1".into(),
        started_at: 1_000,
    });
    run
}

fn refresh(status: &str, percentage: i32, ended_at: Option<Epoch>) -> Option<RefreshInfo> {
    Some(RefreshInfo {
        id: "r-1".into(),
        status: RefreshStatus::parse(status),
        percentage,
        reason: Some("instances failed health checks".into()),
        desired: Some(("lt-0123456789abcdef0".into(), "4".into())),
        started_at: Some(1_000),
        ended_at,
    })
}

/// A settled ECS fleet on `ami`: two instances, registered, one steady service.
fn fleet(ami: &str) -> Observation {
    let ids = ["i-1", "i-2"];
    Observation {
        refresh: refresh("Successful", 100, Some(2_000)),
        fleet_read: true,
        instances: ids
            .iter()
            .map(|i| (i.to_string(), ami.to_string()))
            .collect(),
        container_instances: ids
            .iter()
            .map(|i| ContainerInstanceView {
                arn: format!("arn:aws:ecs:us-east-1:111111111111:container-instance/prod/{i}"),
                ec2_instance_id: i.to_string(),
                status: "ACTIVE".into(),
                agent_connected: true,
                ami: Some(ami.into()),
                running_tasks: 1,
                registered_at: None,
            })
            .collect(),
        services: vec![ServiceView {
            name: "api".into(),
            running: 2,
            desired: 2,
            deployments: 1,
            rollout_completed: true,
        }],
        ..Default::default()
    }
}

#[test]
fn a_refresh_stuck_in_progress_past_its_timeout_is_unhealthy() {
    let run = run();
    let mut o = Observation {
        refresh: refresh("InProgress", 40, None),
        ..Default::default()
    };
    // Default: three hours (no checkpoints configured in the sample settings).
    let within = verdict(&run, &o, 1_000 + 3 * 3600);
    assert_eq!(within.verdict, Verdict::InProgress);
    let past = verdict(&run, &o, 1_000 + 3 * 3600 + 1);
    assert_eq!(past.verdict, Verdict::Unhealthy);
    assert!(
        past.reasons[0].contains("still InProgress at 40% after 10801s"),
        "{:?}",
        past.reasons
    );
    // Baking has a fixed length of its own and is never cut short.
    o.refresh = refresh("Baking", 100, None);
    assert_eq!(
        verdict(&run, &o, 1_000 + 4 * 3600).verdict,
        Verdict::InProgress
    );
}

#[test]
fn every_refresh_status_has_a_verdict() {
    for (status, expected, reason) in [
        ("Pending", Verdict::InProgress, None),
        ("InProgress", Verdict::InProgress, None),
        ("Baking", Verdict::InProgress, None),
        ("Successful", Verdict::Baking, None),
        (
            "Failed",
            Verdict::Unhealthy,
            Some("instance refresh r-1 is Failed: instances failed health checks"),
        ),
        (
            "Cancelling",
            Verdict::Unhealthy,
            Some("instance refresh r-1 is Cancelling"),
        ),
        (
            "Cancelled",
            Verdict::Unhealthy,
            Some("instance refresh r-1 is Cancelled"),
        ),
        (
            "RollbackInProgress",
            Verdict::Unhealthy,
            Some("Auto Scaling rolled instance refresh r-1 back (RollbackInProgress)"),
        ),
        (
            "RollbackSuccessful",
            Verdict::Unhealthy,
            Some("Auto Scaling rolled instance refresh r-1 back (RollbackSuccessful)"),
        ),
        (
            "RollbackFailed",
            Verdict::Unhealthy,
            Some("Auto Scaling rolled instance refresh r-1 back (RollbackFailed)"),
        ),
    ] {
        let mut o = fleet(NEW);
        o.refresh = refresh(status, 50, Some(2_000));
        let h = verdict(&run(), &o, 2_010);
        assert_eq!(h.verdict, expected, "{status}");
        if let Some(reason) = reason {
            assert!(
                h.reasons[0].starts_with(reason),
                "{status}: {:?}",
                h.reasons
            );
        }
        assert_eq!(h.refresh_status, status);
    }
}

#[test]
fn a_refresh_that_a_launch_hook_stopped_names_the_hook() {
    let abandoned = "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token t-1 was abandoned: Heartbeat Timeout";
    assert!(rollout_core::fleet::abandoned_by_a_hook(abandoned));
    assert!(!rollout_core::fleet::abandoned_by_a_hook(
        "instances failed health checks"
    ));
    let mut o = fleet(NEW);
    o.refresh = refresh("Failed", 0, Some(2_000));
    o.refresh.as_mut().unwrap().reason = Some(format!("Instance refresh failed: {abandoned}"));
    o.launch_hooks = vec!["validate-boot".into()];
    let h = verdict(&run(), &o, 2_010);
    assert_eq!(h.verdict, Verdict::Unhealthy);
    assert!(
        h.reasons[0].ends_with("Heartbeat Timeout (the group's launch lifecycle hook validate-boot abandoned its new instances)"),
        "{:?}",
        h.reasons
    );
    // Auto Scaling's refresh reason may not say it: the launch's scaling activity does.
    o.refresh.as_mut().unwrap().reason = Some("instances failed to launch".into());
    o.abandoned_launch = Some(abandoned.into());
    let h = verdict(&run(), &o, 2_010);
    assert!(
        h.reasons[0].contains(
            "instances failed to launch; Instance failed to complete user's Lifecycle Action"
        ),
        "{:?}",
        h.reasons
    );
    assert!(h.reasons[0].ends_with(
        "(the group's launch lifecycle hook validate-boot abandoned its new instances)"
    ));
    o.launch_hooks.push("register-dns".into());
    let h = verdict(&run(), &o, 2_010);
    assert!(
        h.reasons[0]
            .contains("one of the group's launch lifecycle hooks validate-boot, register-dns"),
        "{:?}",
        h.reasons
    );
}

#[test]
fn a_vanished_refresh_is_unhealthy() {
    let mut o = fleet(NEW);
    o.refresh = None;
    assert_eq!(
        verdict(&run(), &o, 2_010).reasons,
        ["instance refresh r-1 no longer exists"]
    );
}

#[test]
fn an_alarm_in_alarm_is_unhealthy_at_any_stage() {
    for status in ["InProgress", "Successful"] {
        let mut o = fleet(NEW);
        o.refresh = refresh(status, 40, None);
        o.alarms_in_alarm = vec!["ecs-prod-a-5xx".into()];
        let h = verdict(&run(), &o, 2_010);
        assert_eq!(
            (h.verdict, h.reasons.as_slice()),
            (
                Verdict::Unhealthy,
                &["alarm ecs-prod-a-5xx is in ALARM".to_string()][..]
            ),
            "{status}"
        );
    }
}

#[test]
fn fleet_checks_after_a_successful_refresh() {
    type Change = fn(&mut Observation);
    let cases: [(&str, Change, Verdict, &str); 8] = [
        ("all good", |_| {}, Verdict::Baking, ""),
        (
            "instance still on old AMI",
            |o| o.instances[1].1 = OLD.into(),
            Verdict::Verifying,
            "instance i-2 runs ami-00000000000000001",
        ),
        (
            "not registered",
            |o| o.container_instances.truncate(1),
            Verdict::Verifying,
            "instance i-2 is not registered with ECS",
        ),
        (
            "draining",
            |o| o.container_instances[0].status = "DRAINING".into(),
            Verdict::Verifying,
            "container instance i-1 is DRAINING",
        ),
        (
            "agent down",
            |o| o.container_instances[0].agent_connected = false,
            Verdict::Verifying,
            "ECS agent on i-1 is disconnected",
        ),
        (
            "service short",
            |o| o.services[0].running = 1,
            Verdict::Verifying,
            "service api runs 1/2 tasks",
        ),
        (
            "second deployment",
            |o| o.services[0].deployments = 2,
            Verdict::Verifying,
            "service api has 2 deployment(s)",
        ),
        (
            "task crashed",
            |o| o.failed_tasks = vec!["api: Essential container in task exited".into()],
            Verdict::Unhealthy,
            "task failed: api: Essential container",
        ),
    ];
    for (name, change, expected, reason) in cases {
        let mut o = fleet(NEW);
        change(&mut o);
        let h = verdict(&run(), &o, 2_010);
        assert_eq!(h.verdict, expected, "{name}");
        assert!(
            h.reasons
                .first()
                .map_or("", String::as_str)
                .starts_with(reason),
            "{name}: {:?}",
            h.reasons
        );
    }
}

#[test]
fn a_fleet_that_never_settles_becomes_unhealthy_after_verify_timeout_and_bake() {
    let mut o = fleet(NEW);
    o.services[0].running = 0;
    // sample settings: bake 300 s, default verify timeout 600 s; the refresh ended at 2,000.
    assert_eq!(verdict(&run(), &o, 2_000 + 900).verdict, Verdict::Verifying);
    let h = verdict(&run(), &o, 2_000 + 901);
    assert_eq!(h.verdict, Verdict::Unhealthy);
    assert_eq!(h.reasons[0], "not settled 901s after the refresh ended");
}

#[test]
fn healthy_only_after_checks_held_for_the_whole_bake_window() {
    let mut r = run();
    let first = verdict(&r, &fleet(NEW), 2_010);
    assert_eq!(
        (first.verdict, first.healthy_since, first.next_wait_seconds),
        (Verdict::Baking, Some(2_010), BAKE_WAIT_SECONDS)
    );
    r.health = Some(first);
    let almost = verdict(&r, &fleet(NEW), 2_010 + 299);
    assert_eq!(
        (almost.verdict, almost.next_wait_seconds),
        (Verdict::Baking, 1)
    );
    let done = verdict(&r, &fleet(NEW), 2_010 + 300);
    assert_eq!(done.verdict, Verdict::Healthy);
    // A check that slips during the bake restarts it.
    let mut slipped = fleet(NEW);
    slipped.services[0].running = 1;
    let h = verdict(&r, &slipped, 2_010 + 200);
    assert_eq!((h.verdict, h.healthy_since), (Verdict::Verifying, None));
}

#[test]
fn polling_a_30_minute_refresh_takes_a_third_of_a_fixed_30s_loop_and_ends_within_one_interval() {
    // A refresh progressing linearly from t=0 to 100% at t=1800 s (warmup 300 s).
    let mut r = run();
    r.settings =
        rollout_core::settings::SettingsMap::parse(r#"{"*": {"instanceWarmupSeconds": 300}}"#)
            .unwrap();
    let (end, mut t, mut polls) = (1_800, 0, 0);
    loop {
        let pct = ((t * 100) / end).min(100) as i32;
        let status = if t >= end { "Successful" } else { "InProgress" };
        let mut o = fleet(NEW);
        o.refresh = refresh(status, pct, (t >= end).then_some(end));
        let h = verdict(&r, &o, t);
        polls += 1;
        if h.verdict != Verdict::InProgress {
            assert!(
                t - end <= MAX_WAIT_SECONDS.min(r.health.as_ref().unwrap().next_wait_seconds),
                "saw the end {}s late",
                t - end
            );
            break;
        }
        t += h.next_wait_seconds;
        r.health = Some(h);
    }
    let fixed = end / 30;
    assert!(
        polls * 3 <= fixed,
        "{polls} polls vs {fixed} for a fixed 30 s loop"
    );
}

#[test]
fn a_waves_first_polls_are_spread_and_each_group_keeps_its_own() {
    let jitters: std::collections::BTreeSet<i64> = (0..200)
        .map(|i| first_poll_jitter(&format!("fleet-{i:04}")))
        .collect();
    assert!(
        jitters
            .iter()
            .all(|j| (0..FIRST_POLL_JITTER_SECONDS).contains(j))
    );
    assert!(
        jitters.len() >= 25,
        "200 groups spread over {} seconds",
        jitters.len()
    );
    assert_eq!(first_poll_jitter("web"), first_poll_jitter("web"));
    // Only the first wait: later ones follow the refresh's pace.
    let mut r = run();
    let mut o = fleet(NEW);
    o.refresh = refresh("InProgress", 10, None);
    let first = verdict(&r, &o, 1_100);
    assert_eq!(
        first.next_wait_seconds,
        progress_wait(None, 10, 1_100, None) + first_poll_jitter(r.resource())
    );
    r.health = Some(first.clone());
    o.refresh = refresh("InProgress", 20, None);
    let second = verdict(&r, &o, 1_100 + first.next_wait_seconds);
    assert_eq!(
        second.next_wait_seconds,
        progress_wait(Some(&first), 20, 1_100 + first.next_wait_seconds, None)
    );
}

#[test]
fn waits_stay_within_bounds() {
    assert_eq!(progress_wait(None, 0, 0, None), 60);
    assert_eq!(progress_wait(None, 0, 0, Some(5)), MIN_WAIT_SECONDS);
    assert_eq!(progress_wait(None, 0, 0, Some(3_600)), MAX_WAIT_SECONDS);
}

#[tokio::test]
async fn a_missing_refresh_in_the_input_is_invalid_without_aws_calls() {
    let mut r = run();
    r.refresh = None;
    let err = check(&rollout_core::aws::mock::Rules::default().clients(), r, 0)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
}

#[tokio::test]
async fn stopped_tasks_are_read_across_every_page_and_described_a_hundred_at_a_time() {
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::types::Task;
    use rollout_core::aws::mock::{Rules, mock};

    let arns = |range: std::ops::Range<i32>| Some(range.map(|i| format!("t-{i}")).collect());
    let page_one = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.next_token().is_none())
        .then_output(move || {
            ListTasksOutput::builder()
                .set_task_arns(arns(0..100))
                .next_token("page-2")
                .build()
        });
    let page_two = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(move || {
            ListTasksOutput::builder()
                .set_task_arns(arns(100..150))
                .build()
        });
    let task = |code: TaskStopCode, reason: &str| {
        Task::builder()
            .stop_code(code)
            .stopped_reason(reason)
            .stopped_at(aws_smithy_types::DateTime::from_secs(2_000))
            .build()
    };
    let drained = mock!(aws_sdk_ecs::Client::describe_tasks)
        .match_requests(|r| r.tasks().len() == 100 && r.tasks()[0] == "t-0")
        .then_output(move || {
            DescribeTasksOutput::builder()
                .tasks(task(TaskStopCode::ServiceSchedulerInitiated, "drained"))
                .build()
        });
    let crashed = mock!(aws_sdk_ecs::Client::describe_tasks)
        .match_requests(|r| r.tasks().len() == 50 && r.tasks()[0] == "t-100")
        .then_output(move || {
            DescribeTasksOutput::builder()
                .tasks(task(TaskStopCode::EssentialContainerExited, "exit 1"))
                .build()
        });
    let clients = Rules {
        ecs: vec![&page_one, &page_two, &drained, &crashed],
        ..Default::default()
    }
    .clients();
    let failed = service_failures(&clients, "prod", "api", 1_000)
        .await
        .unwrap();
    assert_eq!(failed, ["api: exit 1"], "the crash is on the second page");
    assert_eq!((drained.num_calls(), crashed.num_calls()), (1, 1));
}

/// A standalone instance whose root replacement succeeded, on `ami`, with these status checks.
fn replaced_instance(ami: &str, checks: StatusChecks) -> (TargetRun, Observation) {
    let mut run = run();
    run.target.kind = TargetKind::Instance;
    run.target.resource = "i-0123456789abcdef0".into();
    run.target.ecs = None;
    let task = Task {
        id: "replacevol-1".into(),
        state: TaskState::Succeeded,
        started_at: Some(1_000),
        ended_at: Some(2_000),
        execution: None,
        purpose: None,
    };
    let o = Observation {
        refresh: Some(replacement_progress(&task, 1_000)),
        fleet_read: true,
        instances: vec![(run.target.resource.clone(), ami.to_string())],
        status_checks: checks,
        ..Default::default()
    };
    (run, o)
}

#[test]
fn a_standalone_instance_is_healthy_on_the_new_ami_with_its_status_checks_passing() {
    let (run, o) = replaced_instance(NEW, StatusChecks::default());
    let health = verdict(&run, &o, 2_000);
    assert_eq!(health.verdict, Verdict::Baking, "{:?}", health.reasons);
    assert_eq!(health.refresh_status, "Successful");
}

#[test]
fn a_standalone_instance_waits_for_its_status_checks_and_fails_on_an_impaired_one() {
    let initializing = StatusChecks {
        pending: vec!["instance".into()],
        ..StatusChecks::default()
    };
    let (run, o) = replaced_instance(NEW, initializing);
    let health = verdict(&run, &o, 2_000);
    assert_eq!(health.verdict, Verdict::Verifying);
    assert_eq!(
        health.reasons,
        ["instance i-0123456789abcdef0: instance status check has no result yet"]
    );
    let impaired = StatusChecks {
        impaired: vec!["instance".into()],
        ..StatusChecks::default()
    };
    let (run, o) = replaced_instance(NEW, impaired);
    let health = verdict(&run, &o, 2_000);
    assert_eq!(health.verdict, Verdict::Unhealthy);
    assert_eq!(
        health.reasons,
        ["instance i-0123456789abcdef0 fails its instance status check"]
    );
}

#[test]
fn a_stopped_standalone_instance_is_never_healthy_whatever_its_checks_say() {
    // EC2 reports a stopped instance's checks `not-applicable`: no failure, and no pass either.
    let stopped = StatusChecks {
        not_running: Some("stopped".into()),
        ..StatusChecks::default()
    };
    let (run, o) = replaced_instance(NEW, stopped);
    let health = verdict(&run, &o, 2_000);
    assert_eq!(health.verdict, Verdict::Unhealthy);
    assert_eq!(
        health.reasons,
        ["instance i-0123456789abcdef0 is stopped, so it is not healthy"]
    );
    let starting = StatusChecks {
        not_running: Some("pending".into()),
        ..StatusChecks::default()
    };
    let (run, o) = replaced_instance(NEW, starting);
    assert_eq!(verdict(&run, &o, 2_000).verdict, Verdict::Verifying);
}

#[test]
fn a_failed_replacement_fails_the_instance_naming_the_task() {
    let (run, mut o) = replaced_instance(OLD, StatusChecks::default());
    let failed = Task {
        id: "replacevol-1".into(),
        state: TaskState::Failed("failed".into()),
        started_at: Some(1_000),
        ended_at: Some(1_500),
        execution: None,
        purpose: None,
    };
    o.refresh = Some(replacement_progress(&failed, 1_000));
    let health = verdict(&run, &o, 2_000);
    assert_eq!(health.verdict, Verdict::Unhealthy);
    assert!(
        health.reasons[0]
            .starts_with("root volume replacement replacevol-1 is Failed: the task is failed"),
        "{:?}",
        health.reasons
    );
}
