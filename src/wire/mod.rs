//! Conversions between the domain types and the generated `hvprobe.v1` messages ([`crate::pb`]), split by
//! message family: [`report`] (what agents send) and [`fleet`] (what the Query service answers). The details
//! of each check are mapped in the check's own folder (`src/check/<name>/wire.rs`) and reached through the
//! registry; this module never names a check.
//!
//! Invariant: `from_pb(to_pb(x)) == x` for every check result (round-trip tested), so what the collector
//! shows is exactly what the agent observed. Unknown enum values from a newer peer decode to UNKNOWN,
//! never to an error: an old collector must keep working with a new agent.

pub mod fleet;
pub mod report;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use self::fleet::{event_from_pb, event_to_pb, zones_from_pb, zones_to_pb};
pub use self::report::{check_from_pb, check_to_pb, report_from_pb, report_to_pb};

/// Why a message could not be turned into domain types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// A required field was empty or unspecified.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field had a value the domain does not accept.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// Milliseconds since the epoch of a wall-clock time (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
