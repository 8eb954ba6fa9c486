//! Time as the steps hold it (epoch seconds) and as the state machine and people read it (ISO 8601
//! in UTC).

use serde::Deserialize;

/// Seconds since the Unix epoch.
pub type Epoch = i64;

/// `epoch` as ISO 8601 in UTC (`2026-12-04T00:00:00Z`), for messages and records.
pub fn iso_time(epoch: Epoch) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{epoch} s after the epoch"))
}

/// An ISO 8601 time (`2026-12-02T10:00:00.000Z`, or with an offset) in epoch seconds.
pub fn parse_iso_time(text: &str) -> Option<Epoch> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

/// A time the state machine reads or writes as ISO 8601 in UTC (`$$.Execution.StartTime`, a Wait's
/// `TimestampPath`), held as epoch seconds.
pub mod iso_epoch {
    use serde::Deserialize;

    use super::Epoch;

    pub fn serialize<S: serde::Serializer>(epoch: &Epoch, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::iso_time(*epoch))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Epoch, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_iso_time(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an ISO 8601 UTC timestamp"))
        })
    }
}

/// `Option<Epoch>` as an optional ISO 8601 string.
pub mod optional_iso_epoch {
    use super::{Deserialize, Epoch};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(epoch: &Option<Epoch>, s: S) -> Result<S::Ok, S::Error> {
        match epoch {
            Some(e) => super::iso_epoch::serialize(e, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Epoch>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::iso_epoch")] Epoch);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(e)| e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_the_state_machine_and_ec2_write_them() {
        assert_eq!(iso_time(1_796_464_800), "2026-12-05T10:00:00Z");
        for (text, epoch) in [
            ("2026-12-05T10:00:00Z", 1_796_464_800),
            ("2026-12-05T10:00:00.123Z", 1_796_464_800),
            ("2026-12-05T11:00:00+01:00", 1_796_464_800),
        ] {
            assert_eq!(parse_iso_time(text), Some(epoch), "{text}");
        }
        assert_eq!(parse_iso_time("yesterday"), None);
    }
}
