//! Formatting helpers for summaries: sizes, rates, durations. Pure and ASCII-only (summaries end up in
//! Nagios output and terminals of every kind).

use std::time::{Duration, SystemTime};

/// `1536` -> `1.5 KiB`, `25_000_000_000` -> `23.3 GiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate with sensible precision: `0`, `0.5`, `12`, `1234`.
pub fn fmt_rate(r: f64) -> String {
    if r == 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// A short human duration: `45s`, `37m`, `2h05m`, `3d04h`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECS: u64 = 253_402_300_799;

/// RFC 3339 in UTC with seconds, e.g. `2026-11-21T10:00:00Z`. Infallible: a time before the epoch is
/// written as the epoch and one past year 9999 as its last second (a clock or an agent can say anything;
/// formatting it must never panic).
pub fn rfc3339(t: SystemTime) -> String {
    let last = SystemTime::UNIX_EPOCH + Duration::from_secs(LAST_RFC3339_SECS);
    let t = t.clamp(SystemTime::UNIX_EPOCH, last);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `UNIX_EPOCH + d`, or `None` when that is not a representable time.
pub fn epoch_plus(d: Duration) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(d)
}

/// Serializes a time as RFC 3339 (for `#[serde(serialize_with)]`).
pub fn ser_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// Deserializes an RFC 3339 time (for `#[serde(deserialize_with)]`).
pub fn de_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
}

/// Serializes an optional time as RFC 3339 or null (for `#[serde(serialize_with)]`).
pub fn ser_opt_rfc3339<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Deserializes an optional RFC 3339 time (for `#[serde(deserialize_with)]`).
pub fn de_opt_rfc3339<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemTime>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    s.map(|s| humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Parses `--since`-style input: RFC 3339 (`2026-11-21T10:00:00Z`) or a duration ago (`90m`, `2h`, `1d`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time nor a duration like 2h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(25_000_000_000), "23.3 GiB");
        assert_eq!(fmt_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(0.54), "0.5");
        assert_eq!(fmt_rate(1234.4), "1234");
        assert_eq!(fmt_duration(Duration::from_secs(45)), "45s");
        assert_eq!(fmt_duration(Duration::from_secs(37 * 60 + 5)), "37m");
        assert_eq!(
            fmt_duration(Duration::from_secs(2 * 3600 + 5 * 60)),
            "2h05m"
        );
        assert_eq!(
            fmt_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7200);
        assert_eq!(
            parse_since("1h", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(3600))
        );
        assert_eq!(
            parse_since("1970-01-01T00:00:10Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert!(parse_since("yesterday", now).is_err());
        // Never a panic, whatever the time.
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000_000_000)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(10)),
            "1970-01-01T00:00:00Z"
        );
        assert!(epoch_plus(Duration::from_secs(u64::MAX)).is_none());
    }
}
