//! Rendering of one-shot results for humans (`human`), machines (`json`) and monitoring systems
//! (`nagios`). Pure: every function returns a `String`; the CLI prints it.
//!
//! The JSON shape is a public interface (documented in the README): add fields, never rename or remove.

pub mod fleet;

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::check::runner::CheckReport;
use crate::check::{Details, Perf, Status};
use crate::identity::HostInfo;
use crate::util::rfc3339;

/// Everything one `hvprobe check` run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Who was probed.
    pub host: HostInfo,
    /// One report per check, in run order.
    pub checks: Vec<CheckReport>,
    /// When the run finished.
    pub finished: SystemTime,
}

impl RunReport {
    /// Worst-of over the checks (OK < UNKNOWN < WARN < CRIT); UNKNOWN when no check ran.
    pub fn status(&self) -> Status {
        Status::worst_of(self.checks.iter().map(|c| c.outcome.status)).unwrap_or(Status::Unknown)
    }

    /// Process exit code: 0/1/2/3 by the overall status.
    pub fn exit_code(&self) -> i32 {
        self.status().exit_code()
    }

    /// Checks ordered worst first (stable within a status).
    fn worst_first(&self) -> Vec<&CheckReport> {
        let mut v: Vec<&CheckReport> = self.checks.iter().collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.outcome.status.severity()));
        v
    }
}

/// Output formats of `hvprobe check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Human,
    /// One JSON object.
    Json,
    /// Monitoring-plugins output with perfdata.
    Nagios,
}

/// Renders a report.
pub fn render(report: &RunReport, format: Format, color: bool) -> String {
    match format {
        Format::Human => human(report, color),
        Format::Json => json(report),
        Format::Nagios => nagios(report),
    }
}

fn paint(s: &str, status: Status, color: bool) -> String {
    if !color {
        return s.to_owned();
    }
    let code = match status {
        Status::Ok => "32",
        Status::Warn => "33",
        Status::Crit => "1;31",
        Status::Unknown => "35",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// An aligned table: status, check, summary.
pub fn human(report: &RunReport, color: bool) -> String {
    let check_w = report
        .checks
        .iter()
        .map(|c| c.kind.as_str().len())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(5);
    let status_w = "UNKNOWN".len();
    let mut out = String::new();
    let _ = writeln!(out, "{:status_w$}  {:check_w$}  SUMMARY", "STATUS", "CHECK");
    for c in &report.checks {
        let label = format!("{:status_w$}", c.outcome.status.label());
        let _ = writeln!(
            out,
            "{}  {:check_w$}  {}",
            paint(&label, c.outcome.status, color),
            c.kind.as_str(),
            c.outcome.summary
        );
    }
    let status = report.status();
    let _ = writeln!(
        out,
        "overall: {} ({} check{} on {})",
        paint(status.label(), status, color),
        report.checks.len(),
        if report.checks.len() == 1 { "" } else { "s" },
        report.host.hostname.as_deref().unwrap_or("unknown host"),
    );
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    status: Status,
    version: &'static str,
    timestamp: String,
    host: &'a HostInfo,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    check: &'static str,
    status: Status,
    summary: &'a str,
    reason: Option<&'static str>,
    duration_ms: u64,
    details: &'a Details,
}

/// One JSON object: `{"status", "version", "timestamp", "host", "checks": [...]}`.
pub fn json(report: &RunReport) -> String {
    let doc = JsonReport {
        status: report.status(),
        version: env!("CARGO_PKG_VERSION"),
        timestamp: rfc3339(report.finished),
        host: &report.host,
        checks: report
            .checks
            .iter()
            .map(|c| JsonCheck {
                check: c.kind.as_str(),
                status: c.outcome.status,
                summary: &c.outcome.summary,
                reason: c.outcome.reason.map(|r| r.as_str()),
                duration_ms: c.duration.as_millis() as u64,
                details: &c.outcome.details,
            })
            .collect(),
    };
    // Serializing plain structs of strings and numbers cannot fail; fall back to a valid document anyway.
    let mut s = serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"status\":\"unknown\",\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// Monitoring-plugins output: `HVPROBE <STATUS> - <summary> | <perfdata>`, then one line per check.
pub fn nagios(report: &RunReport) -> String {
    let status = report.status();
    let problems: Vec<String> = report
        .worst_first()
        .into_iter()
        .filter(|c| c.outcome.status != Status::Ok)
        .map(|c| format!("{}: {}", c.kind, c.outcome.summary))
        .collect();
    let summary = if problems.is_empty() {
        format!("{}/{} checks OK", report.checks.len(), report.checks.len())
    } else {
        problems.join("; ")
    };
    let perf: Vec<String> = report
        .checks
        .iter()
        .flat_map(|c| {
            let prefix = c.kind.as_str().replace('-', "_");
            c.outcome
                .details
                .perfdata()
                .into_iter()
                .map(move |p| perf_item(&format!("{prefix}_{}", p.label), &p))
        })
        .collect();
    let mut out = format!(
        "HVPROBE {} - {}",
        status.nagios_label(),
        sanitize_nagios(&summary)
    );
    if !perf.is_empty() {
        out.push_str(" | ");
        out.push_str(&perf.join(" "));
    }
    out.push('\n');
    for c in &report.checks {
        let _ = writeln!(
            out,
            "[{}] {}: {}",
            c.outcome.status.label(),
            c.kind,
            sanitize_nagios(&c.outcome.summary)
        );
    }
    out
}

/// `|` separates perfdata in the plugin format; it must not appear in text.
fn sanitize_nagios(s: &str) -> String {
    s.replace('|', "/")
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn perf_item(label: &str, p: &Perf) -> String {
    let label = if label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        label.to_owned()
    } else {
        format!("'{}'", label.replace('\'', "''"))
    };
    let opt = |v: Option<f64>| v.map(num).unwrap_or_default();
    let mut s = format!(
        "{label}={}{};{};{};{};{}",
        num(p.value),
        p.uom,
        p.warn.as_deref().unwrap_or(""),
        p.crit.as_deref().unwrap_or(""),
        opt(p.min),
        opt(p.max)
    );
    while s.ends_with(';') {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{CheckKind, Outcome, UnknownReason};
    use std::time::Duration;

    fn report(statuses: &[(CheckKind, Status)]) -> RunReport {
        RunReport {
            host: HostInfo {
                hostname: Some("hv1".into()),
                ..HostInfo::default()
            },
            checks: statuses
                .iter()
                .map(|(k, s)| CheckReport {
                    kind: *k,
                    outcome: if *s == Status::Unknown {
                        Outcome::unknown(UnknownReason::Malformed, "x | y")
                    } else {
                        Outcome::new(*s, format!("{k} is {s}"), Details::None)
                    },
                    duration: Duration::from_millis(3),
                })
                .collect(),
            finished: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn overall_and_exit_codes() {
        use CheckKind::*;
        use Status::*;
        assert_eq!(report(&[(Memory, Ok), (Conntrack, Ok)]).exit_code(), 0);
        assert_eq!(report(&[(Memory, Ok), (Conntrack, Unknown)]).exit_code(), 3);
        assert_eq!(
            report(&[(Memory, Warn), (Conntrack, Unknown)]).exit_code(),
            1
        );
        assert_eq!(report(&[(Memory, Warn), (Conntrack, Crit)]).exit_code(), 2);
        assert_eq!(
            report(&[(Memory, Unknown), (Conntrack, Unknown)]).exit_code(),
            3
        );
        assert_eq!(report(&[]).exit_code(), 3);
    }

    #[test]
    fn nagios_line_lists_problems_worst_first() {
        let r = report(&[
            (CheckKind::Memory, Status::Warn),
            (CheckKind::Conntrack, Status::Crit),
        ]);
        let out = nagios(&r);
        let first = out.lines().next().unwrap();
        assert!(
            first.starts_with(
                "HVPROBE CRITICAL - conntrack: conntrack is CRIT; memory: memory is WARN"
            ),
            "{first}"
        );
        assert!(out.contains("\n[WARN] memory: memory is WARN\n"), "{out}");
        let unknown = nagios(&report(&[(CheckKind::Memory, Status::Unknown)]));
        assert!(
            unknown.starts_with("HVPROBE UNKNOWN - memory: x / y\n"),
            "{unknown}"
        );
    }

    #[test]
    fn perfdata_format() {
        let p = Perf::new("available", 92.5, "%").bounds(Some(0.0), Some(100.0));
        assert_eq!(
            perf_item("memory_available", &p),
            "memory_available=92.5%;;;0;100"
        );
        let p = Perf::new("x", 3.0, "").thresholds(Some("10:".into()), Some("5:".into()));
        assert_eq!(perf_item("a b", &p), "'a b'=3;10:;5:");
        assert_eq!(num(1.0 / 3.0), "0.333");
    }

    #[test]
    fn human_table_is_aligned_without_colour() {
        let out = human(
            &report(&[
                (CheckKind::Memory, Status::Ok),
                (CheckKind::Conntrack, Status::Warn),
            ]),
            false,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "STATUS   CHECK      SUMMARY");
        assert_eq!(lines[1], "OK       memory     memory is OK");
        assert_eq!(lines[2], "WARN     conntrack  conntrack is WARN");
        assert!(lines[3].starts_with("overall: WARN (2 checks on hv1)"));
        assert!(!out.contains('\x1b'));
        assert!(human(&report(&[(CheckKind::Memory, Status::Ok)]), true).contains("\x1b[32m"));
    }

    #[test]
    fn json_statuses_are_lowercase() {
        let r = report(&[(CheckKind::Memory, Status::Unknown)]);
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["status"], "unknown");
        assert_eq!(v["checks"][0]["check"], "memory");
        assert_eq!(v["checks"][0]["reason"], "malformed");
        assert_eq!(v["host"]["hostname"], "hv1");
    }
}
