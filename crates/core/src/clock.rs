//! "Now", read from one clock by every function, so a maintenance window the state machine waited
//! for is open when the function after the Wait looks.
//!
//! On AWS the clock is the wall clock. The local AWS runs faster than the wall (its Step Functions
//! shortens Wait states), so it sets `AMI_ROLLOUT_CLOCK=<origin>:<rate>`: from `origin` (epoch
//! seconds) time runs `rate` times the wall clock, the same clock its Step Functions waits on and
//! its services stamp times with. The SAM template never sets it.

use crate::model::Epoch;

/// The variable the local AWS sets; unset on AWS.
pub const CLOCK_VARIABLE: &str = "AMI_ROLLOUT_CLOCK";

/// The current time in epoch seconds (handlers pass it to the pure decision functions).
pub fn now() -> Epoch {
    let wall = wall_now();
    match std::env::var(CLOCK_VARIABLE) {
        Ok(clock) => scaled(&clock, wall).unwrap_or(wall as Epoch),
        Err(_) => wall as Epoch,
    }
}

fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `wall` on the clock `<origin>:<rate>`; none for a malformed clock (then the wall clock is used).
fn scaled(clock: &str, wall: f64) -> Option<Epoch> {
    let (origin, rate) = clock.split_once(':')?;
    let origin: f64 = origin.trim().parse().ok()?;
    let rate: f64 = rate.trim().parse().ok().filter(|r: &f64| *r > 0.0)?;
    Some((origin + (wall - origin) * rate).floor() as Epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_rate_times_the_wall_from_its_origin() {
        assert_eq!(scaled("1000:20", 1000.0), Some(1000));
        assert_eq!(scaled("1000:20", 1010.5), Some(1210));
        assert_eq!(scaled("1000.5:1", 2000.0), Some(2000));
    }

    #[test]
    fn a_malformed_clock_is_not_used() {
        for clock in ["", "1000", "x:20", "1000:0", "1000:-2", "1000:fast"] {
            assert_eq!(scaled(clock, 5.0), None, "{clock}");
        }
    }
}
