//! `conntrack`: connection tracking table saturation.
//!
//! A full conntrack table drops new flows silently (the WireGuard mesh and DNS go first). The check reads
//! only `nf_conntrack_count` / `nf_conntrack_max` and the per-CPU counters in `/proc/net/stat/nf_conntrack`:
//! its cost does not grow with the table, and it never lists the table itself.
//!
//! The stat file is parsed **by header name**: kernels renamed columns (`searched` -> `clashres`,
//! `delete_list` -> `chainlength`) and old kernels lack `search_restart`. Values are hex, one row per
//! possible CPU; counters are summed over CPUs except `entries`, which is global and repeated per row.
//! Rates (`drop`, `early_drop`, `insert_failed`) come from two readings: a short window in one-shot mode,
//! consecutive cycles in the agent.
//!
//! Absent files mean "not applicable": no count/max = the module is not loaded (OK, "not in use"); no stat
//! file (some distributions) = judged on count/max alone, with the counters reported as unavailable.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{
    BoxFuture, Check, CheckKind, Context, Details, Failure, Mode, Outcome, Perf, Status,
    UnknownReason,
};
use crate::host::HostRoot;
use crate::parse::ParseError;
use crate::problems::Problems;
use crate::util::fmt_rate;

const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const STAT: &str = "/proc/net/stat/nf_conntrack";

/// `[[check]] kind = "conntrack"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ConntrackConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run.
    pub timeout_ms: u64,
    /// One-shot mode: window over which counter rates are measured.
    pub window_ms: u64,
    /// WARN at or above this share of `nf_conntrack_max`.
    pub warn_used_percent: f64,
    /// CRIT at or above this share of `nf_conntrack_max`.
    pub crit_used_percent: f64,
    /// CRIT when the `drop` counter increased in the window (new flows were refused).
    pub crit_on_drop: bool,
    /// WARN when `early_drop` increased (the table was full enough to evict unassured flows).
    pub warn_on_early_drop: bool,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            enabled: true,
            timeout_ms: 3000,
            window_ms: 1000,
            warn_used_percent: 75.0,
            crit_used_percent: 90.0,
            crit_on_drop: true,
            warn_on_early_drop: true,
        }
    }
}

impl ConntrackConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.percent("warn-used-percent", self.warn_used_percent);
        p.percent("crit-used-percent", self.crit_used_percent);
        if self.warn_used_percent > self.crit_used_percent {
            p.push("warn-used-percent", "must not be above crit-used-percent");
        }
        p.timeout("timeout-ms", self.timeout_ms);
        p.window("window-ms", self.window_ms, self.timeout_ms);
    }
}

/// `/proc/net/stat/nf_conntrack`: column names and one row of values per possible CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackStat {
    /// Column names from the header, in order.
    pub columns: Vec<String>,
    /// One row per CPU, aligned with `columns`.
    pub rows: Vec<Vec<u64>>,
}

impl ConntrackStat {
    /// Per-CPU values of a column, `None` when the kernel has no such column.
    pub fn column(&self, name: &str) -> Option<impl Iterator<Item = u64> + '_> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(move |r| r[i]))
    }

    /// A counter summed over CPUs; `entries` is global and is taken from the first row instead.
    pub fn total(&self, name: &str) -> Option<u64> {
        let mut values = self.column(name)?;
        if name == "entries" {
            return values.next();
        }
        Some(values.fold(0u64, u64::saturating_add))
    }

    /// Increase of a counter between two readings, CPU by CPU. Per-CPU counters are 32-bit in the kernel
    /// and may wrap; that is handled. `None` when the readings cannot be compared (columns or CPU rows
    /// changed, which happens across a reboot under a redirected root).
    pub fn delta(&self, later: &ConntrackStat, name: &str) -> Option<u64> {
        if self.columns != later.columns || self.rows.len() != later.rows.len() {
            return None;
        }
        let before = self.column(name)?;
        let after = later.column(name)?;
        let mut sum = 0u64;
        for (a, b) in before.zip(after) {
            let d = if b >= a {
                b - a
            } else if a <= u64::from(u32::MAX) && b <= u64::from(u32::MAX) {
                (b + (1u64 << 32)) - a
            } else {
                return None;
            };
            sum = sum.saturating_add(d);
        }
        Some(sum)
    }
}

/// Parses `/proc/net/stat/nf_conntrack`. The header names the columns; every row must have as many hex
/// values as the header has names.
pub fn parse_stat(text: &str) -> Result<ConntrackStat, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ParseError::file("empty file"));
    };
    let columns: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    if columns.iter().any(|c| {
        c.chars()
            .any(|ch| !(ch.is_ascii_alphanumeric() || ch == '_'))
    }) {
        return Err(ParseError::at(1, "header is not a list of column names"));
    }
    if !columns.iter().any(|c| c == "entries") {
        return Err(ParseError::at(1, "header lacks the \"entries\" column"));
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let values: Result<Vec<u64>, _> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w, 16))
            .collect();
        let values = values.map_err(|_| ParseError::at(i + 1, "expected hex values"))?;
        if values.len() != columns.len() {
            return Err(ParseError::at(
                i + 1,
                format!("{} values for {} columns", values.len(), columns.len()),
            ));
        }
        rows.push(values);
    }
    if rows.is_empty() {
        return Err(ParseError::file("no CPU rows"));
    }
    Ok(ConntrackStat { columns, rows })
}

/// Parses a single-number sysctl file such as `nf_conntrack_count`.
pub fn parse_number(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::file("empty file"));
    }
    t.parse()
        .map_err(|_| ParseError::at(1, format!("expected a number, got {t:?}")))
}

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

/// Details of the `conntrack` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConntrackDetails {
    /// Tracked flows.
    pub entries: u64,
    /// Table limit.
    pub max: u64,
    /// entries / max.
    pub used_percent: f64,
    /// Whether `/proc/net/stat/nf_conntrack` was readable.
    pub counters_available: bool,
    /// Refused new flows per second.
    pub drop_per_sec: Option<f64>,
    /// Evictions per second.
    pub early_drop_per_sec: Option<f64>,
    /// Failed inserts per second.
    pub insert_failed_per_sec: Option<f64>,
    /// Refused new flows in the window.
    pub drop_delta: Option<u64>,
    /// Evictions in the window.
    pub early_drop_delta: Option<u64>,
    /// Failed inserts in the window.
    pub insert_failed_delta: Option<u64>,
    /// Window length in seconds.
    pub window_secs: f64,
}

impl ConntrackDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut v = vec![
            Perf::new("used", self.used_percent, "%").bounds(Some(0.0), Some(100.0)),
            Perf::new("entries", self.entries as f64, "").bounds(Some(0.0), Some(self.max as f64)),
        ];
        for (label, value) in [
            ("drop_per_sec", self.drop_per_sec),
            ("early_drop_per_sec", self.early_drop_per_sec),
            ("insert_failed_per_sec", self.insert_failed_per_sec),
        ] {
            if let Some(x) = value {
                v.push(Perf::new(label, x, "").bounds(Some(0.0), None));
            }
        }
        v
    }
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

/// One reading of the files.
enum Reading {
    /// Neither count nor max exists: the module is not loaded.
    NotInUse,
    /// Count and max, and the stat file if present.
    Table {
        entries: u64,
        max: u64,
        stat: Option<(Instant, ConntrackStat)>,
    },
}

fn read_number(root: &HostRoot, rel: &str) -> Result<Option<u64>, Failure> {
    match root.read_optional(rel) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_number(&text)
            .map(Some)
            .map_err(|e| Failure::malformed(&root.path(rel), &e)),
        Err(e) => Err(Failure::read(&e)),
    }
}

fn read_stat(root: &HostRoot) -> Result<Option<(Instant, ConntrackStat)>, Failure> {
    let at = Instant::now();
    match root.read_optional(STAT) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_stat(&text)
            .map(|s| Some((at, s)))
            .map_err(|e| Failure::malformed(&root.path(STAT), &e)),
        Err(e) => Err(Failure::read(&e)),
    }
}

fn read_all(root: &HostRoot) -> Result<Reading, Failure> {
    let entries = read_number(root, COUNT)?;
    let max = read_number(root, MAX)?;
    match (entries, max) {
        (None, None) => Ok(Reading::NotInUse),
        (Some(entries), Some(max)) => Ok(Reading::Table {
            entries,
            max,
            stat: read_stat(root)?,
        }),
        (None, Some(_)) => Err(Failure::new(
            UnknownReason::Malformed,
            format!(
                "{} missing while nf_conntrack_max exists",
                root.path(COUNT).display()
            ),
        )),
        (Some(_), None) => Err(Failure::new(
            UnknownReason::Malformed,
            format!(
                "{} missing while nf_conntrack_count exists",
                root.path(MAX).display()
            ),
        )),
    }
}

fn deltas(prev: &(Instant, ConntrackStat), now: &(Instant, ConntrackStat)) -> Deltas {
    Deltas {
        drop: prev.1.delta(&now.1, "drop"),
        early_drop: prev.1.delta(&now.1, "early_drop"),
        insert_failed: prev.1.delta(&now.1, "insert_failed"),
        secs: now.0.saturating_duration_since(prev.0).as_secs_f64(),
    }
}

/// The `conntrack` check with its previous reading.
#[derive(Debug)]
pub struct ConntrackCheck {
    cfg: ConntrackConfig,
    prev: Option<(Instant, ConntrackStat)>,
}

impl ConntrackCheck {
    /// A check with this configuration.
    pub fn new(cfg: ConntrackConfig) -> Self {
        ConntrackCheck { cfg, prev: None }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let first = match ctx.mode {
            Mode::OneShot => {
                let first = ctx.blocking(read_stat).await;
                if let Ok(Some(_)) = first {
                    tokio::time::sleep(Duration::from_millis(self.cfg.window_ms)).await;
                }
                first.ok().flatten()
            }
            Mode::Agent => self.prev.take(),
        };
        let (entries, max, stat) = match ctx.blocking(read_all).await {
            Ok(Reading::NotInUse) => {
                return Outcome::new(
                    Status::Ok,
                    "conntrack not in use (module not loaded)",
                    Details::None,
                );
            }
            Ok(Reading::Table { entries, max, stat }) => (entries, max, stat),
            Err(failure) => return failure.into(),
        };
        let deltas = match (&first, &stat) {
            (Some(prev), Some(now)) => Some(deltas(prev, now)),
            _ => None,
        };
        let obs = Observation {
            entries,
            max,
            counters_available: stat.is_some(),
            deltas,
        };
        if ctx.mode == Mode::Agent {
            self.prev = stat;
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for ConntrackCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Conntrack
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEW: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000006  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000002 00000000 00000000  00000000 00000000 00000000 00000000\n\
00000006  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000000 00000000  00000000 00000000 00000000 00000000\n";

    fn obs(entries: u64, max: u64) -> Observation {
        Observation {
            entries,
            max,
            counters_available: true,
            deltas: Some(Deltas {
                drop: Some(0),
                early_drop: Some(0),
                insert_failed: Some(0),
                secs: 1.0,
            }),
        }
    }

    #[test]
    fn parses_by_header_name() {
        let s = parse_stat(NEW).unwrap();
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.total("entries"), Some(6));
        assert_eq!(s.total("drop"), Some(5));
        assert_eq!(s.total("insert_failed"), Some(1));
        assert_eq!(s.total("searched"), None);
        assert!(s.total("clashres").is_some());
    }

    #[test]
    fn each_threshold_is_crossed() {
        let cfg = ConntrackConfig::default();
        let cases = [
            (obs(0, 262_144), Status::Ok, "0/262144 entries (0.0%)"),
            (obs(74, 100), Status::Ok, "74/100"),
            (obs(75, 100), Status::Warn, "table 75.0% full >= 75%"),
            (obs(90, 100), Status::Crit, "table 90.0% full >= 90%"),
            (
                Observation {
                    deltas: Some(Deltas {
                        drop: Some(3),
                        secs: 1.0,
                        ..Deltas::default()
                    }),
                    ..obs(10, 100)
                },
                Status::Crit,
                "3 new flow(s) dropped",
            ),
            (
                Observation {
                    deltas: Some(Deltas {
                        early_drop: Some(4),
                        secs: 2.0,
                        ..Deltas::default()
                    }),
                    ..obs(10, 100)
                },
                Status::Warn,
                "4 early drop(s) in 2s",
            ),
            (
                Observation {
                    counters_available: false,
                    deltas: None,
                    ..obs(10, 100)
                },
                Status::Ok,
                "counters unavailable",
            ),
            (obs(10, 0), Status::Ok, "no limit"),
        ];
        for (o, want, text) in cases {
            let out = evaluate(&o, &cfg);
            assert_eq!(out.status, want, "{}", out.summary);
            assert!(
                out.summary.contains(text),
                "{:?} lacks {text:?}",
                out.summary
            );
        }
    }

    #[test]
    fn deltas_handle_32bit_wrap_and_changed_layout() {
        let a = ConntrackStat {
            columns: vec!["entries".into(), "drop".into()],
            rows: vec![vec![1, 0xffff_fff0], vec![1, 5]],
        };
        let b = ConntrackStat {
            columns: a.columns.clone(),
            rows: vec![vec![1, 0x10], vec![1, 7]],
        };
        assert_eq!(a.delta(&b, "drop"), Some(0x20 + 2));
        let fewer = ConntrackStat {
            columns: a.columns.clone(),
            rows: vec![vec![1, 9]],
        };
        assert_eq!(a.delta(&fewer, "drop"), None);
        assert_eq!(a.delta(&b, "early_drop"), None);
    }

    #[test]
    fn malformed_stat_files_are_errors() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("entries drop\n").is_err());
        assert_eq!(parse_stat("entries drop\n0001 zz\n").unwrap_err().line, 2);
        assert_eq!(parse_stat("entries drop\n0001\n").unwrap_err().line, 2);
        assert!(parse_stat("0001 0002\n0001 0002\n").is_err());
        assert!(parse_number("").is_err());
        assert!(parse_number("12a").is_err());
        assert_eq!(parse_number("262144\n"), Ok(262_144));
    }

    proptest! {
        #[test]
        fn stat_parser_never_panics(s in "\\PC*") {
            let _ = parse_stat(&s);
        }

        #[test]
        fn stat_parser_never_panics_on_near_misses(s in "entries( [a-z_]{1,8}){0,4}\n([0-9a-f]{1,9}( [0-9a-fx]{1,9}){0,4}\n){0,4}") {
            if let Ok(stat) = parse_stat(&s) {
                let _ = stat.total("drop");
                let _ = stat.delta(&stat, "entries");
            }
        }
    }
}
