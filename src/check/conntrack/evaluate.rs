//! The verdict: table fill and counter increases against the thresholds. Pure.

use super::{ConntrackConfig, ConntrackDetails};
use crate::check::{Details, Outcome, Status};
use crate::util::fmt_rate;

/// Counter increases over the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Deltas {
    /// New flows refused because the table was full.
    pub drop: Option<u64>,
    /// Unassured flows evicted to make room.
    pub early_drop: Option<u64>,
    /// Inserts that failed (often UDP races, resolved by clash resolution).
    pub insert_failed: Option<u64>,
    /// Window length in seconds.
    pub secs: f64,
}

/// What the check looked at, ready for [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `nf_conntrack_count`.
    pub entries: u64,
    /// `nf_conntrack_max`.
    pub max: u64,
    /// Whether the stat file was there.
    pub counters_available: bool,
    /// Increases over the window; `None` on the first agent cycle.
    pub deltas: Option<Deltas>,
}

/// The verdict. Pure.
pub fn evaluate(obs: &Observation, cfg: &ConntrackConfig) -> Outcome {
    let used = if obs.max == 0 {
        0.0
    } else {
        obs.entries as f64 * 100.0 / obs.max as f64
    };
    let mut status = Status::Ok;
    let mut reasons = Vec::new();
    if obs.max > 0 && used >= cfg.crit_used_percent {
        status = Status::Crit;
        reasons.push(format!(
            "table {used:.1}% full >= {}%",
            cfg.crit_used_percent
        ));
    } else if obs.max > 0 && used >= cfg.warn_used_percent {
        status = Status::Warn;
        reasons.push(format!(
            "table {used:.1}% full >= {}%",
            cfg.warn_used_percent
        ));
    }
    let d = obs.deltas.unwrap_or_default();
    if cfg.crit_on_drop
        && let Some(n) = d.drop.filter(|n| *n > 0)
    {
        status = status.worst(Status::Crit);
        reasons.push(format!("{n} new flow(s) dropped in {:.0}s", d.secs));
    }
    if cfg.warn_on_early_drop
        && let Some(n) = d.early_drop.filter(|n| *n > 0)
    {
        status = status.worst(Status::Warn);
        reasons.push(format!("{n} early drop(s) in {:.0}s", d.secs));
    }
    let rate = |x: Option<u64>| x.filter(|_| d.secs > 0.0).map(|x| x as f64 / d.secs);
    let mut figures = if obs.max == 0 {
        format!("{} entries, no limit (nf_conntrack_max = 0)", obs.entries)
    } else {
        format!("{}/{} entries ({used:.1}%)", obs.entries, obs.max)
    };
    if !obs.counters_available {
        figures.push_str(", counters unavailable (no /proc/net/stat/nf_conntrack)");
    } else if obs.deltas.is_some() {
        figures.push_str(&format!(
            ", drop {}/s, early_drop {}/s, insert_failed {}/s",
            fmt_rate(rate(d.drop).unwrap_or(0.0)),
            fmt_rate(rate(d.early_drop).unwrap_or(0.0)),
            fmt_rate(rate(d.insert_failed).unwrap_or(0.0)),
        ));
    }
    let summary = if reasons.is_empty() {
        figures
    } else {
        format!("{}; {figures}", reasons.join("; "))
    };
    let details = ConntrackDetails {
        entries: obs.entries,
        max: obs.max,
        used_percent: (used * 100.0).round() / 100.0,
        counters_available: obs.counters_available,
        drop_per_sec: rate(d.drop),
        early_drop_per_sec: rate(d.early_drop),
        insert_failed_per_sec: rate(d.insert_failed),
        drop_delta: d.drop,
        early_drop_delta: d.early_drop,
        insert_failed_delta: d.insert_failed,
        window_secs: (d.secs * 100.0).round() / 100.0,
    };
    Outcome::new(status, summary, Details::Conntrack(details))
}
