//! Change control: when a target may start changing (its maintenance window), and where an
//! execution waits for a person between waves (an approval gate).
//!
//! A window opens at each time its cron expression names, in its time zone, and stays open
//! `durationMinutes`. A target's change starts only inside it; a change that started inside goes
//! on when the window closes, and a rollback never waits for one.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::model::{Epoch, Target};
use crate::settings::SettingsMap;

/// How many days ahead a plan looks for each target's window, when nothing is configured.
pub const DEFAULT_WINDOW_HORIZON_DAYS: u32 = 7;
/// How long a gate waits for an approval, when nothing is configured.
pub const DEFAULT_APPROVAL_TIMEOUT_MINUTES: u32 = 24 * 60;
/// A window longer than a week is no window.
const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;
/// A task's TimeoutSeconds is at most 99,999,999; a task token lives at most a year.
pub const MAX_APPROVAL_TIMEOUT_MINUTES: u32 = 365 * 24 * 60;
/// Overlapping openings extend a window; past this many, it counts as open to the horizon.
const MAX_OVERLAPPING_OPENINGS: usize = 10_000;

/// When a target may start changing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// When the window opens: a standard five-field cron expression (minute hour day-of-month
    /// month day-of-week), in `time_zone`.
    pub cron: String,
    /// How long it stays open after each opening.
    pub duration_minutes: u32,
    /// An IANA time zone name (`Europe/Lisbon`); UTC when not given.
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// Where a window stands at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// Inside: a change may start; the window closes at `closes_at`.
    Open { closes_at: Epoch },
    /// Outside: it next opens at `opens_at`; none when it does not open before the horizon.
    Closed { opens_at: Option<Epoch> },
}

impl MaintenanceWindow {
    /// Checks the expression, the duration and the time zone; `scope` names where they came from.
    pub fn validate(&self, scope: &str) -> StepResult<()> {
        self.parsed().map(|_| ()).map_err(|why| {
            StepError::invalid(format!("settings for {scope}: maintenanceWindow {why}"))
        })
    }

    fn parsed(&self) -> Result<(Cron, Tz), String> {
        let fields = self.cron.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "cron {:?} has {fields} fields; give five: minute hour day-of-month month day-of-week",
                self.cron
            ));
        }
        let cron = Cron::from_str(&self.cron)
            .map_err(|e| format!("cron {:?} is not a cron expression: {e}", self.cron))?;
        let zone = Tz::from_str(&self.time_zone).map_err(|_| {
            format!(
                "timeZone {:?} is not an IANA time zone name (such as Europe/Lisbon)",
                self.time_zone
            )
        })?;
        if !(1..=MAX_WINDOW_MINUTES).contains(&self.duration_minutes) {
            return Err(format!(
                "durationMinutes {} is outside 1-{MAX_WINDOW_MINUTES}",
                self.duration_minutes
            ));
        }
        Ok((cron, zone))
    }

    /// `0 2 * * 6 in Europe/Lisbon, for 240 min`, for plans and messages.
    pub fn describe(&self) -> String {
        format!(
            "{} in {}, for {} min",
            self.cron, self.time_zone, self.duration_minutes
        )
    }

    /// Where the window stands at `now`, looking `horizon_days` ahead for its next opening.
    pub fn state_at(&self, now: Epoch, horizon_days: u32) -> StepResult<WindowState> {
        let (cron, zone) = self.parsed().map_err(StepError::invalid)?;
        let after = |t: Epoch| -> Option<Epoch> {
            let local = zone.timestamp_opt(t, 0).single()?;
            cron.find_next_occurrence(&local, false)
                .ok()
                .map(|d| d.timestamp())
        };
        let duration = i64::from(self.duration_minutes) * 60;
        let horizon = now + i64::from(horizon_days) * 86_400;
        // The first opening whose window still covers now, or else the next one.
        let Some(first) = after(now - duration) else {
            return Ok(WindowState::Closed { opens_at: None });
        };
        if first > now {
            let opens_at = (first <= horizon).then_some(first);
            return Ok(WindowState::Closed { opens_at });
        }
        let mut closes_at = first + duration;
        let mut opening = first;
        for _ in 0..MAX_OVERLAPPING_OPENINGS {
            match after(opening) {
                Some(next) if next < closes_at && closes_at < horizon => {
                    closes_at = next + duration;
                    opening = next;
                }
                _ => break,
            }
        }
        Ok(WindowState::Open { closes_at })
    }
}

/// The error an approver's `SendTaskFailure` gives to reject the next wave.
pub const REJECTED: &str = "Rejected";
/// The error of a gate that no one answered in time.
pub const APPROVAL_TIMED_OUT: &str = "ApprovalTimedOut";

/// What a gate does when no one answers in time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnApprovalTimeout {
    /// The execution fails (`States.Timeout` at the gate) and keeps its holds; a redrive asks
    /// again.
    #[default]
    Stop,
    /// Every touched target is rolled back, as on a rejection.
    Rollback,
}

/// A pause after a wave until someone approves the next (task token).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGate {
    pub timeout_seconds: i64,
    pub on_timeout: OnApprovalTimeout,
    /// The wave's targets whose settings ask for it.
    pub asked_by: Vec<String>,
}

/// The gates after each wave but the last (there is no next wave to approve), keyed by wave
/// index: a wave pauses when one of its targets asks (`approveAfterWave`). The shortest timeout
/// asked wins, and a timeout rolls back when any of them asks for that.
pub fn approval_gates(
    waves: &[Vec<Target>],
    settings: &SettingsMap,
) -> BTreeMap<usize, ApprovalGate> {
    let mut gates = BTreeMap::new();
    for (index, wave) in waves.iter().enumerate().take(waves.len().saturating_sub(1)) {
        let asking: Vec<(&Target, crate::settings::RefreshSettings)> = wave
            .iter()
            .map(|t| (t, settings.for_group(&t.group)))
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

/// Where a window stands, as the plan records it and the state machine reads it: `open`, and
/// when it closes or next opens (ISO 8601 in UTC: a Wait's `TimestampPath`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WindowTimes {
    pub open: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_iso_epoch"
    )]
    pub opens_at: Option<Epoch>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_iso_epoch"
    )]
    pub closes_at: Option<Epoch>,
}

impl WindowTimes {
    /// A target without a window: it starts at once.
    pub const NO_WINDOW: WindowTimes = WindowTimes {
        open: true,
        opens_at: None,
        closes_at: None,
    };

    /// When the window opens, in a few words for plans and timelines.
    pub fn describe(&self) -> String {
        match (self.opens_at, self.closes_at) {
            (_, Some(closes)) => {
                format!("inside its window until {}", crate::aws::iso_time(closes))
            }
            (Some(opens), _) => format!("its window opens {}", crate::aws::iso_time(opens)),
            (None, None) => "starts at once".into(),
        }
    }
}

impl From<WindowState> for WindowTimes {
    fn from(state: WindowState) -> Self {
        match state {
            WindowState::Open { closes_at } => WindowTimes {
                closes_at: Some(closes_at),
                ..Self::NO_WINDOW
            },
            WindowState::Closed { opens_at } => WindowTimes {
                open: false,
                opens_at,
                closes_at: None,
            },
        }
    }
}

/// A target's window as the plan records it: the window, and where it stood when planned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWindow {
    #[serde(flatten)]
    pub window: MaintenanceWindow,
    #[serde(flatten)]
    pub times: WindowTimes,
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
        let own = settings.for_group(&target.group);
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

/// `Option<Epoch>` as an optional ISO 8601 string.
mod optional_iso_epoch {
    use super::Epoch;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(epoch: &Option<Epoch>, s: S) -> Result<S::Ok, S::Error> {
        match epoch {
            Some(e) => crate::model::iso_epoch::serialize(e, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Epoch>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "crate::model::iso_epoch")] Epoch);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(e)| e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::target;

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
