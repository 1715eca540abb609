//! `ConntrackDetails` to and from its protobuf message.

use super::ConntrackDetails;
use crate::pb;

/// Details to wire.
pub fn to_pb(c: &ConntrackDetails) -> pb::ConntrackDetails {
    pb::ConntrackDetails {
        entries: c.entries,
        max: c.max,
        used_percent: c.used_percent,
        counters_available: c.counters_available,
        drop_per_sec: c.drop_per_sec,
        early_drop_per_sec: c.early_drop_per_sec,
        insert_failed_per_sec: c.insert_failed_per_sec,
        drop_delta: c.drop_delta,
        early_drop_delta: c.early_drop_delta,
        insert_failed_delta: c.insert_failed_delta,
        window_secs: c.window_secs,
    }
}

/// Details from wire.
pub fn from_pb(c: &pb::ConntrackDetails) -> ConntrackDetails {
    ConntrackDetails {
        entries: c.entries,
        max: c.max,
        used_percent: c.used_percent,
        counters_available: c.counters_available,
        drop_per_sec: c.drop_per_sec,
        early_drop_per_sec: c.early_drop_per_sec,
        insert_failed_per_sec: c.insert_failed_per_sec,
        drop_delta: c.drop_delta,
        early_drop_delta: c.early_drop_delta,
        insert_failed_delta: c.insert_failed_delta,
        window_secs: c.window_secs,
    }
}
