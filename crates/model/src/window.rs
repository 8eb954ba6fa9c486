//! A target's maintenance window: when it may start changing. A window opens at each time its
//! cron expression names, in its time zone, and stays open `durationMinutes`. A target's change
//! starts only inside it; a change that started inside goes on when the window closes, and a
//! rollback never waits for one.

use std::str::FromStr;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::time::{Epoch, optional_iso_epoch};

/// How many days ahead a plan looks for each target's window, when nothing is configured.
pub const DEFAULT_WINDOW_HORIZON_DAYS: u32 = 7;
/// A window longer than a week is no window.
const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;
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

/// Where the window stands, and how long the state machine parks the target if it is closed
/// (hold-targets' `checkWindow`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WindowCheck {
    #[serde(flatten)]
    pub times: WindowTimes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<i64>,
}

/// Where a window stands, as the plan records it and the state machine reads it: `open`, and
/// when it closes or next opens (ISO 8601 in UTC), which a parked target waits for.
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
                format!("inside its window until {}", crate::time::iso_time(closes))
            }
            (Some(opens), _) => format!("its window opens {}", crate::time::iso_time(opens)),
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
