//! Planning change control: when a target may start changing (its maintenance window), and where an
//! execution waits for a person between waves (an approval gate).
//!
//! A window opens at each time its cron expression names, in its time zone, and stays open
//! `durationMinutes`. A target's change starts only inside it; a change that started inside goes
//! on when the window closes, and a rollback never waits for one.

use std::collections::BTreeMap;

use rollout_model::error::{StepError, StepResult};
use rollout_model::gate::*;
use rollout_model::model::{Epoch, Target};
use rollout_model::settings::SettingsMap;
use rollout_model::window::*;

/// The gates after each wave but the last (there is no next wave to approve), keyed by wave
/// index: a wave pauses when one of its targets asks (`approveAfterWave`). The shortest timeout
/// asked wins, and a timeout rolls back when any of them asks for that.
pub fn approval_gates(
    waves: &[Vec<Target>],
    settings: &SettingsMap,
) -> BTreeMap<usize, ApprovalGate> {
    let mut gates = BTreeMap::new();
    for (index, wave) in waves.iter().enumerate().take(waves.len().saturating_sub(1)) {
        let asking: Vec<(&Target, rollout_model::settings::RefreshSettings)> = wave
            .iter()
            .map(|t| (t, settings.for_group(&t.resource)))
            .filter(|(_, s)| s.approve_after_wave == Some(true))
            .collect();
        let Some(timeout) = asking
            .iter()
            .map(|(_, s)| s.approval_timeout_minutes())
            .min()
        else {
            continue;
        };
        let rollback = asking
            .iter()
            .any(|(_, s)| s.on_approval_timeout == Some(OnApprovalTimeout::Rollback));
        gates.insert(
            index,
            ApprovalGate {
                timeout_seconds: i64::from(timeout) * 60,
                on_timeout: if rollback {
                    OnApprovalTimeout::Rollback
                } else {
                    OnApprovalTimeout::Stop
                },
                asked_by: asking.iter().map(|(t, _)| t.name()).collect(),
            },
        );
    }
    gates
}

/// A Standard execution ends after a year, whatever it is doing (Step Functions quotas).
pub const EXECUTION_MAX_DAYS: i64 = 365;

/// The longest a plan can run, in seconds, from the copies' wait (`copy_seconds`) on: each wave
/// takes its slowest account-region, where every target of a batch may wait its whole window
/// horizon once, and each batch (`concurrency` groups, `instance_concurrency` instances) may run
/// to its timeouts (refresh or drain, verify, bake); then the wave's gate waits its timeout; and a
/// rollback at the end may refresh once more. A later batch that misses its window waits for the
/// next opening, which this bound leaves out (many batches behind a short window take longer).
pub fn longest_run(
    waves: &[Vec<Target>],
    gates: &BTreeMap<usize, ApprovalGate>,
    settings: &SettingsMap,
    (concurrency, instance_concurrency): (u32, u32),
    copy_seconds: i64,
) -> i64 {
    use rollout_model::model::TargetKind;
    let work = |target: &Target| {
        let own = settings.for_group(&target.resource);
        let change = match target.kind {
            TargetKind::AutoScalingGroup => own.refresh_timeout_seconds(),
            TargetKind::Instance => own.drain_timeout_seconds(),
        };
        change + own.verify_timeout_seconds() + own.bake_seconds()
    };
    let mut total = copy_seconds;
    let mut slowest_change = 0;
    for (index, wave) in waves.iter().enumerate() {
        // A lane: an account, a region, and whether its targets are instances.
        type Lane<'a> = (&'a Option<String>, &'a Option<String>, bool);
        let mut lanes: BTreeMap<Lane, Vec<&Target>> = BTreeMap::new();
        for target in wave {
            let instance = matches!(target.kind, TargetKind::Instance);
            lanes
                .entry((&target.account, &target.region, instance))
                .or_default()
                .push(target);
        }
        let wave_seconds = lanes
            .iter()
            .map(|((_, _, instance), targets)| {
                let at_once = if *instance {
                    instance_concurrency
                } else {
                    concurrency
                };
                let batches = targets.len().div_ceil(at_once.max(1) as usize) as i64;
                let window = targets
                    .iter()
                    .filter(|t| t.window.is_some())
                    .map(|t| {
                        i64::from(settings.for_group(&t.resource).window_horizon_days()) * 86_400
                    })
                    .max()
                    .unwrap_or(0);
                window + batches * targets.iter().map(|t| work(t)).max().unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        slowest_change = slowest_change.max(wave.iter().map(&work).max().unwrap_or(0));
        total += wave_seconds + gates.get(&index).map_or(0, |g| g.timeout_seconds);
    }
    total + slowest_change
}

/// Refuses a plan that could outlive its execution (a year) or its own objects (the plans bucket
/// expires them after `retention_days`: a later wave or the rollback would find nothing to read).
pub fn refuse_too_long(longest_seconds: i64, retention_days: u32) -> StepResult<()> {
    let days = (longest_seconds + 86_399) / 86_400;
    let what = "the sum of each wave's window horizon, batches run to their timeouts, and approval timeout";
    if days > EXECUTION_MAX_DAYS {
        return Err(StepError::invalid(format!(
            "the plan could run {days} days ({what}): past a Step Functions execution's year. Shorten windowHorizonDays or approvalTimeoutMinutes, or put fewer waves in one rollout"
        )));
    }
    if days > i64::from(retention_days) {
        return Err(StepError::invalid(format!(
            "the plan could run {days} days ({what}): longer than the plans bucket keeps its plan ({retention_days} days). Raise PlanRetentionDays to {days} or more, or shorten windowHorizonDays or approvalTimeoutMinutes"
        )));
    }
    Ok(())
}

/// Writes each target's window into the plan. Refuses the plan, naming them, when some targets'
/// windows do not open within their horizon (`windowHorizonDays`): nothing would start them.
pub fn plan_windows(
    waves: &mut [Vec<Target>],
    settings: &SettingsMap,
    now: Epoch,
) -> StepResult<()> {
    let mut never = Vec::new();
    for target in waves.iter_mut().flatten() {
        let own = settings.for_group(&target.resource);
        let Some(window) = own.maintenance_window.clone() else {
            continue;
        };
        let horizon = own.window_horizon_days();
        match window.state_at(now, horizon)? {
            WindowState::Closed { opens_at: None } => {
                never.push(format!("{} ({} days)", target.name(), horizon));
            }
            state => {
                target.window = Some(PlannedWindow {
                    window,
                    times: state.into(),
                });
            }
        }
    }
    if never.is_empty() {
        return Ok(());
    }
    Err(StepError::invalid(format!(
        "no maintenance window opens within the horizon (windowHorizonDays) for {}: nothing would start them",
        never.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::samples::target;

    /// 2026-12-05T10:00:00Z, a Saturday.
    const SATURDAY_10H: Epoch = 1_796_464_800;

    fn window(cron: &str, minutes: u32, zone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            cron: cron.into(),
            duration_minutes: minutes,
            time_zone: zone.into(),
        }
    }

    #[test]
    fn inside_a_window_it_is_open_until_its_duration_passes() {
        let w = window("0 9 * * *", 120, "UTC");
        assert_eq!(
            w.state_at(SATURDAY_10H, 7).unwrap(),
            WindowState::Open {
                closes_at: SATURDAY_10H + 3600
            }
        );
        // Exactly at the close, it is closed until the next day's opening.
        assert_eq!(
            w.state_at(SATURDAY_10H + 3600, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(SATURDAY_10H + 23 * 3600)
            }
        );
    }

    #[test]
    fn an_opening_is_read_in_the_window_time_zone() {
        // 02:00 in Lisbon is 02:00 UTC in winter; 02:00 in New York is 07:00 UTC.
        let lisbon = window("0 2 * * 0", 60, "Europe/Lisbon");
        let new_york = window("0 2 * * 0", 60, "America/New_York");
        let sunday_2h_utc = SATURDAY_10H + 16 * 3600;
        assert_eq!(
            lisbon.state_at(SATURDAY_10H, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(sunday_2h_utc)
            }
        );
        assert_eq!(
            new_york.state_at(SATURDAY_10H, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(sunday_2h_utc + 5 * 3600)
            }
        );
    }

    #[test]
    fn a_window_beyond_the_horizon_has_no_opening() {
        // The first of January only.
        let w = window("0 0 1 1 *", 60, "UTC");
        assert_eq!(
            w.state_at(SATURDAY_10H, 7).unwrap(),
            WindowState::Closed { opens_at: None }
        );
        assert!(matches!(
            w.state_at(SATURDAY_10H, 30).unwrap(),
            WindowState::Closed { opens_at: Some(_) }
        ));
    }

    #[test]
    fn overlapping_openings_keep_the_window_open() {
        // Opens every 10 minutes for 15: it stays open to the horizon (the 09:50 opening a day on
        // closes at 10:05).
        let w = window("*/10 * * * *", 15, "UTC");
        assert_eq!(
            w.state_at(SATURDAY_10H, 1).unwrap(),
            WindowState::Open {
                closes_at: SATURDAY_10H + 86_400 + 300
            }
        );
    }

    #[test]
    fn a_wave_pauses_when_one_of_its_targets_asks_and_the_last_wave_never_does() {
        let settings = SettingsMap::parse(
            r#"{"*": {"approveAfterWave": false},
                "canary": {"approveAfterWave": true, "approvalTimeoutMinutes": 60},
                "web": {"approveAfterWave": true, "approvalTimeoutMinutes": 30, "onApprovalTimeout": "rollback"},
                "api": {"approveAfterWave": true}}"#,
        )
        .unwrap();
        let waves = vec![
            vec![target("canary"), target("web"), target("db")],
            vec![target("worker")],
            vec![target("api")],
        ];
        let gates = approval_gates(&waves, &settings);
        assert_eq!(gates.keys().collect::<Vec<_>>(), [&0], "{gates:?}");
        assert_eq!(
            gates[&0],
            ApprovalGate {
                timeout_seconds: 30 * 60,
                on_timeout: OnApprovalTimeout::Rollback,
                asked_by: vec!["canary".into(), "web".into()],
            }
        );
        let defaults = approval_gates(
            &waves,
            &SettingsMap::parse(r#"{"*": {"approveAfterWave": true}}"#).unwrap(),
        );
        assert_eq!(defaults.len(), 2);
        assert_eq!(
            (defaults[&1].timeout_seconds, defaults[&1].on_timeout),
            (86_400, OnApprovalTimeout::Stop)
        );
    }

    /// Seconds since the epoch of a UTC time written `YYYY-MM-DDTHH:MM:SSZ`.
    fn utc(text: &str) -> Epoch {
        rollout_model::time::parse_iso_time(text).unwrap()
    }

    #[test]
    fn a_window_in_a_skipped_local_hour_opens_when_the_clocks_have_gone_forward() {
        // New York springs forward on 2027-03-14: 02:00 EST becomes 03:00 EDT, so 02:30 is no
        // local time that day. The window opens at the first local time after the gap.
        let w = window("30 2 * * *", 60, "America/New_York");
        let saturday = utc("2027-03-13T12:00:00Z");
        let opens = w.state_at(saturday, 7).unwrap();
        assert_eq!(
            opens,
            WindowState::Closed {
                opens_at: Some(utc("2027-03-14T07:00:00Z"))
            },
            "{opens:?}"
        );
        // The day after, 02:30 EDT as every other day.
        let monday = utc("2027-03-14T12:00:00Z");
        assert_eq!(
            w.state_at(monday, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-03-15T06:30:00Z"))
            }
        );
        // Lisbon springs forward on 2027-03-28 at 01:00 WET, to 02:00 WEST.
        let w = window("15 1 * * *", 30, "Europe/Lisbon");
        assert_eq!(
            w.state_at(utc("2027-03-27T12:00:00Z"), 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-03-28T01:00:00Z"))
            }
        );
    }

    #[test]
    fn a_window_in_a_repeated_local_hour_opens_once() {
        // New York falls back on 2027-11-07: 01:30 happens at 05:30Z (EDT) and again at 06:30Z
        // (EST). The window opens at the first and stays open its hour, not two.
        let w = window("30 1 * * *", 60, "America/New_York");
        let saturday = utc("2027-11-06T12:00:00Z");
        assert_eq!(
            w.state_at(saturday, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-11-07T05:30:00Z"))
            }
        );
        let inside = utc("2027-11-07T06:00:00Z");
        assert_eq!(
            w.state_at(inside, 7).unwrap(),
            WindowState::Open {
                closes_at: utc("2027-11-07T06:30:00Z")
            }
        );
        let after = utc("2027-11-07T06:45:00Z");
        assert_eq!(
            w.state_at(after, 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-11-08T06:30:00Z"))
            }
        );
        // Lisbon falls back on 2027-10-31 at 02:00 WEST, to 01:00 WET: 01:15 happens twice.
        let w = window("15 1 * * *", 30, "Europe/Lisbon");
        assert_eq!(
            w.state_at(utc("2027-10-30T12:00:00Z"), 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-10-31T00:15:00Z"))
            }
        );
        assert_eq!(
            w.state_at(utc("2027-10-31T00:50:00Z"), 7).unwrap(),
            WindowState::Closed {
                opens_at: Some(utc("2027-11-01T01:15:00Z"))
            }
        );
    }

    #[test]
    fn a_plan_that_could_outlive_its_objects_or_a_year_is_refused_with_its_days() {
        const DAY: i64 = 86_400;
        // One group, default settings: a 3-hour refresh, a 10-minute verify, a 5-minute bake,
        // and a rollback of as long.
        let work = 3 * 3600 + 600 + 300;
        let one = vec![vec![target("web")]];
        let none = BTreeMap::new();
        let defaults = SettingsMap::default();
        assert_eq!(longest_run(&one, &none, &defaults, (5, 1), 0), 2 * work);
        refuse_too_long(2 * work, 1).unwrap();

        // Eleven groups five at a time: three batches.
        let eleven = vec![
            (0..11)
                .map(|i| target(&format!("g{i}")))
                .collect::<Vec<_>>(),
        ];
        assert_eq!(longest_run(&eleven, &none, &defaults, (5, 1), 0), 4 * work);

        // Two waves behind 60-day windows, and a gate of 30 days between them.
        let settings = SettingsMap::parse(
            r#"{"*": {"maintenanceWindow": {"cron": "0 0 1 * *", "durationMinutes": 600}, "windowHorizonDays": 60,
                      "approveAfterWave": true, "approvalTimeoutMinutes": 43200}}"#,
        )
        .unwrap();
        let mut waves = vec![vec![target("canary")], vec![target("web")]];
        plan_windows(&mut waves, &settings, SATURDAY_10H).unwrap();
        let gates = approval_gates(&waves, &settings);
        let longest = longest_run(&waves, &gates, &settings, (5, 1), 7200);
        assert_eq!(longest, 7200 + 2 * (60 * DAY + work) + 30 * DAY + work);
        let err = refuse_too_long(longest, 35).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("could run 151 days"), "{err}");
        assert!(
            err.to_string().contains("Raise PlanRetentionDays to 151"),
            "{err}"
        );
        refuse_too_long(longest, 151).unwrap();

        // A year of approvals: past what one execution may run, whatever the retention.
        let year = SettingsMap::parse(
            r#"{"*": {"approveAfterWave": true, "approvalTimeoutMinutes": 525600}}"#,
        )
        .unwrap();
        let three = vec![vec![target("a")], vec![target("b")], vec![target("c")]];
        let longest = longest_run(&three, &approval_gates(&three, &year), &year, (5, 1), 0);
        let err = refuse_too_long(longest, 3650).unwrap_err();
        assert!(
            err.to_string()
                .contains("past a Step Functions execution's year"),
            "{err}"
        );
    }

    #[test]
    fn a_plan_records_each_window_and_refuses_the_targets_whose_window_is_out_of_reach() {
        let settings = SettingsMap::parse(
            r#"{"web": {"maintenanceWindow": {"cron": "0 9 * * *", "durationMinutes": 120}},
                "api": {"maintenanceWindow": {"cron": "0 2 * * 0", "durationMinutes": 60, "timeZone": "America/New_York"}}}"#,
        )
        .unwrap();
        let mut waves = vec![vec![target("web"), target("api"), target("db")]];
        plan_windows(&mut waves, &settings, SATURDAY_10H).unwrap();
        let [web, api, db] = &waves[0][..] else {
            panic!()
        };
        let web = web.window.as_ref().unwrap().times;
        assert_eq!((web.open, web.closes_at), (true, Some(SATURDAY_10H + 3600)));
        assert_eq!(
            web.describe(),
            "inside its window until 2026-12-05T11:00:00Z"
        );
        let api = api.window.as_ref().unwrap().times;
        assert_eq!(api.describe(), "its window opens 2026-12-06T07:00:00Z");
        assert!(db.window.is_none(), "no window: it starts at once");

        let far = SettingsMap::parse(
            r#"{"*": {"maintenanceWindow": {"cron": "0 0 1 1 *", "durationMinutes": 60}}, "db": {"windowHorizonDays": 366}}"#,
        )
        .unwrap();
        let mut waves = vec![vec![target("web"), target("api"), target("db")]];
        let err = plan_windows(&mut waves, &far, SATURDAY_10H).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(
            err.to_string()
                .contains("for web (7 days), api (7 days): nothing would start them"),
            "{err}"
        );
    }

    #[test]
    fn bad_windows_are_refused_with_the_field_named() {
        for (w, expected) in [
            (window("0 2 * *", 60, "UTC"), "has 4 fields"),
            (window("0 0 2 * * *", 60, "UTC"), "has 6 fields"),
            (window("0 25 * * *", 60, "UTC"), "not a cron expression"),
            (window("0 2 * * *", 0, "UTC"), "durationMinutes 0"),
            (
                window("0 2 * * *", 60, "Mars/Olympus"),
                "timeZone \"Mars/Olympus\"",
            ),
        ] {
            let err = w.validate("web").unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
            assert!(err.to_string().contains(expected), "{w:?}: {err}");
            assert!(err.to_string().contains("settings for web"), "{err}");
        }
    }
}
