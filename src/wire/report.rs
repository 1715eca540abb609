//! `Report` and `CheckResult`: one cycle of one host, from the agent to the collector. Each check's details
//! are mapped by the check itself (its `wire.rs`), through the registry.

use std::time::{Duration, UNIX_EPOCH};

use super::WireError;
use crate::check::runner::CheckReport;
use crate::check::{CheckKind, Details, Outcome, Status, UnknownReason};
use crate::pb;
use crate::report::{AgentSelf, HostReport};

/// A host report to wire.
pub fn report_to_pb(r: &HostReport) -> pb::Report {
    pb::Report {
        host_id: r.host_id.clone(),
        az: r.az.clone(),
        region: r.region.clone(),
        agent_version: r.agent_version.clone(),
        boot_id: r.boot_id.clone(),
        boot_time_unix: r.boot_time,
        interval_secs: u32::try_from(r.interval.as_secs()).unwrap_or(u32::MAX),
        seq: r.seq,
        observed_at_unix_ms: r
            .observed_at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        checks: r.checks.iter().map(check_to_pb).collect(),
        missed_cycles: r.missed_cycles,
        agent: r.agent.map(|a| pb::AgentSelf {
            rss_bytes: a.rss_bytes,
            cpu_seconds: a.cpu_seconds,
        }),
    }
}

/// A host report from wire. Check kinds this build does not know are dropped; a malformed check result
/// rejects the whole report.
pub fn report_from_pb(m: &pb::Report) -> Result<HostReport, WireError> {
    let mut checks = Vec::with_capacity(m.checks.len());
    for c in &m.checks {
        if let Some(r) = check_from_pb(c)? {
            checks.push(r);
        }
    }
    Ok(HostReport {
        host_id: m.host_id.clone(),
        az: m.az.clone(),
        region: m.region.clone().filter(|r| !r.is_empty()),
        agent_version: m.agent_version.clone(),
        boot_id: m.boot_id.clone(),
        boot_time: m.boot_time_unix,
        interval: Duration::from_secs(u64::from(m.interval_secs)),
        seq: m.seq,
        observed_at: super::from_unix_ms(m.observed_at_unix_ms),
        missed_cycles: m.missed_cycles,
        agent: m.agent.map(|a| AgentSelf {
            rss_bytes: a.rss_bytes,
            cpu_seconds: if a.cpu_seconds.is_finite() {
                a.cpu_seconds
            } else {
                0.0
            },
        }),
        checks,
    })
}

fn reason_to_pb(r: Option<UnknownReason>) -> pb::UnknownReason {
    match r {
        None => pb::UnknownReason::Unspecified,
        Some(UnknownReason::Unsupported) => pb::UnknownReason::Unsupported,
        Some(UnknownReason::NoPermission) => pb::UnknownReason::NoPermission,
        Some(UnknownReason::TimedOut) => pb::UnknownReason::TimedOut,
        Some(UnknownReason::Malformed) => pb::UnknownReason::Malformed,
        Some(UnknownReason::Panicked) => pb::UnknownReason::Panicked,
        Some(UnknownReason::Busy) => pb::UnknownReason::Busy,
        Some(UnknownReason::Config) => pb::UnknownReason::Config,
        Some(UnknownReason::Error) => pb::UnknownReason::Error,
    }
}

fn reason_from_pb(v: i32) -> Option<UnknownReason> {
    match pb::UnknownReason::try_from(v).ok()? {
        pb::UnknownReason::Unspecified => None,
        pb::UnknownReason::Unsupported => Some(UnknownReason::Unsupported),
        pb::UnknownReason::NoPermission => Some(UnknownReason::NoPermission),
        pb::UnknownReason::TimedOut => Some(UnknownReason::TimedOut),
        pb::UnknownReason::Malformed => Some(UnknownReason::Malformed),
        pb::UnknownReason::Panicked => Some(UnknownReason::Panicked),
        pb::UnknownReason::Busy => Some(UnknownReason::Busy),
        pb::UnknownReason::Config => Some(UnknownReason::Config),
        pb::UnknownReason::Error => Some(UnknownReason::Error),
    }
}

/// One check's report to wire.
pub fn check_to_pb(r: &CheckReport) -> pb::CheckResult {
    pb::CheckResult {
        kind: r.kind.to_pb() as i32,
        status: r.outcome.status.to_pb() as i32,
        summary: r.outcome.summary.clone(),
        reason: reason_to_pb(r.outcome.reason) as i32,
        duration_ms: u32::try_from(r.duration.as_millis()).unwrap_or(u32::MAX),
        details: r.outcome.details.to_pb(),
        details_unchanged: r.outcome.details == Details::Unchanged,
    }
}

/// One check's report from wire. A kind this build does not know is skipped by the caller (`Ok(None)`).
pub fn check_from_pb(m: &pb::CheckResult) -> Result<Option<CheckReport>, WireError> {
    let Some(kind) = CheckKind::from_pb(m.kind) else {
        return Ok(None);
    };
    if m.summary.len() > 4096 {
        return Err(WireError::Invalid {
            field: "summary",
            why: format!("{} bytes, at most 4096", m.summary.len()),
        });
    }
    let status = Status::from_pb(m.status);
    let reason = if status == Status::Unknown {
        Some(reason_from_pb(m.reason).unwrap_or(UnknownReason::Error))
    } else {
        None
    };
    Ok(Some(CheckReport {
        kind,
        outcome: Outcome {
            status,
            summary: m.summary.clone(),
            reason,
            details: match &m.details {
                Some(d) => Details::from_pb(d),
                None if m.details_unchanged => Details::Unchanged,
                None => Details::None,
            },
        },
        duration: Duration::from_millis(u64::from(m.duration_ms)),
    }))
}
