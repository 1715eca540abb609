//! The unit the agent sends and the collector keeps: one cycle of one host.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::check::Status;
use crate::check::runner::CheckReport;

/// The agent's own footprint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgentSelf {
    /// Resident set size.
    pub rss_bytes: u64,
    /// CPU time since start (user + system).
    pub cpu_seconds: f64,
}

/// One cycle of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    /// Stable host identity.
    pub host_id: String,
    /// Availability zone.
    pub az: String,
    /// Region, when configured.
    pub region: Option<String>,
    /// Agent version.
    pub agent_version: String,
    /// Kernel boot id (changes on every boot).
    pub boot_id: String,
    /// Boot time, seconds since the epoch.
    pub boot_time: Option<u64>,
    /// The agent's cycle length.
    pub interval: Duration,
    /// Cycle number since the agent started.
    pub seq: u64,
    /// When the cycle ended (agent clock).
    pub observed_at: SystemTime,
    /// Cycles this collector missed before this report.
    pub missed_cycles: u32,
    /// The agent's footprint.
    pub agent: Option<AgentSelf>,
    /// Every check.
    pub checks: Vec<CheckReport>,
}

impl HostReport {
    /// Worst check status (UNKNOWN when there is none).
    pub fn status(&self) -> Status {
        Status::worst_of(self.checks.iter().map(|c| c.outcome.status)).unwrap_or(Status::Unknown)
    }
}

/// Largest values a collector accepts from an agent.
pub mod limits {
    /// Host ids and AZ names are identifiers, not documents.
    pub const MAX_ID: usize = 253;
    /// Cycle length bounds, seconds.
    pub const MAX_INTERVAL_SECS: u32 = 3600;
    /// A report carries one result per check kind, plus room for newer kinds.
    pub const MAX_CHECKS: usize = 32;
}

/// A host id, AZ or region: 1 to 253 characters, no spaces, slashes or control characters (they end up
/// in URLs, metric labels and file names).
pub fn valid_ident(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= limits::MAX_ID
        && !v
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
}

/// Longest agent version or boot id kept (longer ones are cut, on a character boundary).
pub const MAX_SHORT_TEXT: usize = 64;

/// The earliest time a report may say it was observed or a host booted: 2000-01-01.
const EARLIEST_SECS: u64 = 946_684_800;

fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// Clamps what an agent controls and the collector only shows or does arithmetic on: times from a clock
/// that is off (or in the wrong unit), over-long texts, impossible numbers. Returns the fields clamped (the
/// collector counts them); what cannot be clamped is refused by [`validate`].
pub fn sanitize(r: &mut HostReport, now: SystemTime) -> Vec<&'static str> {
    let mut clamped = Vec::new();
    let earliest = SystemTime::UNIX_EPOCH + Duration::from_secs(EARLIEST_SECS);
    let latest = now + Duration::from_secs(86_400);
    if r.observed_at < earliest || r.observed_at > latest {
        r.observed_at = now;
        clamped.push("observed_at");
    }
    if let Some(b) = r.boot_time {
        let at = crate::util::epoch_plus(Duration::from_secs(b));
        if at.is_none_or(|t| t < earliest || t > latest) {
            r.boot_time = None;
            clamped.push("boot_time");
        }
    }
    if cut(&mut r.agent_version, MAX_SHORT_TEXT) {
        clamped.push("agent_version");
    }
    if cut(&mut r.boot_id, MAX_SHORT_TEXT) {
        clamped.push("boot_id");
    }
    if let Some(a) = &mut r.agent
        && !(a.cpu_seconds.is_finite() && a.cpu_seconds >= 0.0)
    {
        a.cpu_seconds = 0.0;
        clamped.push("agent.cpu_seconds");
    }
    for c in &mut r.checks {
        if let Some(field) = clamp_details(&mut c.outcome.details) {
            clamped.push(field);
        }
    }
    clamped
}

/// The lists and names correlation keys on (reach targets, services units): no more than an agent can be
/// configured with, names as long as configs allow and without `/` (verdict keys are `scope/place/family`).
fn clamp_details(d: &mut crate::check::Details) -> Option<&'static str> {
    use crate::check::Details;
    let mut clamped = None;
    match d {
        Details::Reach(d) => {
            if d.targets.len() > crate::check::reach::MAX_TARGETS {
                d.targets.truncate(crate::check::reach::MAX_TARGETS);
                clamped = Some("reach.targets");
            }
            for t in &mut d.targets {
                if t.name.contains('/') {
                    t.name = t.name.replace('/', "_");
                    clamped = Some("reach.targets");
                }
                let mut cut_any = cut(&mut t.name, 128) | cut(&mut t.address, MAX_SHORT_TEXT);
                if let Some(f) = &mut t.failure {
                    cut_any |= cut(f, MAX_SHORT_TEXT);
                }
                if let Some(f) = &mut t.failure_detail {
                    cut_any |= cut(f, 256);
                }
                if cut_any {
                    clamped = Some("reach.targets");
                }
            }
        }
        Details::Services(d) => {
            if d.units.len() > crate::check::services::MAX_UNITS {
                d.units.truncate(crate::check::services::MAX_UNITS);
                clamped = Some("services.units");
            }
            for u in &mut d.units {
                let mut cut_any = cut(&mut u.name, 255);
                for s in [
                    &mut u.load_state,
                    &mut u.active_state,
                    &mut u.sub_state,
                    &mut u.result,
                ] {
                    cut_any |= cut(s, MAX_SHORT_TEXT);
                }
                if let Some(s) = &mut u.unit_file_state {
                    cut_any |= cut(s, MAX_SHORT_TEXT);
                }
                if cut_any {
                    clamped = Some("services.units");
                }
            }
        }
        _ => {}
    }
    clamped
}

/// Checks a report's identity fields; the collector refuses the stream otherwise.
pub fn validate(r: &HostReport) -> Result<(), String> {
    let ident = |what: &str, v: &str| -> Result<(), String> {
        if valid_ident(v) {
            Ok(())
        } else {
            Err(format!(
                "{what} {v:?} is empty, too long or has spaces, slashes or control characters"
            ))
        }
    };
    ident("host_id", &r.host_id)?;
    ident("az", &r.az)?;
    if let Some(region) = &r.region {
        ident("region", region)?;
    }
    let secs = r.interval.as_secs();
    if secs == 0 || secs > u64::from(limits::MAX_INTERVAL_SECS) {
        return Err(format!(
            "interval_secs {secs} out of 1..={}",
            limits::MAX_INTERVAL_SECS
        ));
    }
    if r.checks.len() > limits::MAX_CHECKS {
        return Err(format!(
            "{} checks, at most {}",
            r.checks.len(),
            limits::MAX_CHECKS
        ));
    }
    Ok(())
}
