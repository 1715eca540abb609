//! The verdict per target and for the host, pure.
//!
//! - unreachable (no echo answered this cycle, or the connect/handshake failed): CRIT for a `critical`
//!   target, WARN otherwise, with the class of the failure;
//! - ICMP loss over the loss window at or above `warn-loss-percent` (and at least [`MIN_LOST`] echoes):
//!   WARN (partial loss; a lost echo now and then on a lossy link stays under it);
//! - median RTT at or above `warn-rtt-ms`: WARN;
//! - a target that could not be probed (no ICMP socket, no CA file): UNKNOWN with why — never OK blind.

use super::{ReachConfig, ReachDetails, TargetState};

/// Fewer lost echoes than this in the window are never partial loss: one or two echoes lost early in the
/// agent's life, when the window is short, would otherwise read as a large share.
pub const MIN_LOST: u32 = 3;
use crate::check::{Details, Findings, Outcome, Status, UnknownReason};

/// Judges every target (setting its `status`) and the host.
pub fn evaluate(
    mut targets: Vec<TargetState>,
    icmp_raw_socket: bool,
    cfg: &ReachConfig,
) -> Outcome {
    let mut reasons: Vec<(Status, String)> = Vec::new();
    for t in &mut targets {
        let (status, why) = judge(t, cfg);
        t.status = status;
        if let Some(w) = why {
            reasons.push((status, w));
        }
    }
    reasons.sort_by_key(|(s, _)| std::cmp::Reverse(s.severity()));
    let mut f = Findings::default();
    for (s, w) in reasons {
        f.flag(s, w);
    }
    let up = targets.iter().filter(|t| t.reachable).count();
    let (status, summary) = f.summary(format!("{up}/{} targets reachable", targets.len()));
    let mut out = Outcome::new(
        status,
        summary,
        Details::Reach(ReachDetails {
            targets,
            icmp_raw_socket,
        }),
    );
    if status == Status::Unknown {
        // Not probed: an ICMP socket that may not be opened, or a TLS target without a usable CA file.
        let icmp = match &out.details {
            Details::Reach(d) => d
                .targets
                .iter()
                .any(|t| t.status == Status::Unknown && t.kind == super::ProbeKind::Icmp),
            _ => false,
        };
        out.reason = Some(if icmp {
            UnknownReason::NoPermission
        } else {
            UnknownReason::Config
        });
    }
    out
}

fn judge(t: &TargetState, cfg: &ReachConfig) -> (Status, Option<String>) {
    let name = &t.name;
    if t.sent == 0 {
        return (
            Status::Unknown,
            Some(format!(
                "{name} not probed: {}",
                t.failure_detail.as_deref().unwrap_or("no probe sent")
            )),
        );
    }
    if !t.reachable {
        let why = match (&t.failure, &t.failure_detail) {
            (Some(c), Some(d)) => format!("{c}: {d}"),
            (Some(c), None) => c.clone(),
            _ => "no answer".into(),
        };
        let lost = if t.sent > 1 {
            format!(", {}/{} lost", t.sent - t.received, t.sent)
        } else {
            String::new()
        };
        let status = if t.critical {
            Status::Crit
        } else {
            Status::Warn
        };
        return (
            status,
            Some(format!("{name} ({}) unreachable ({why}{lost})", t.address)),
        );
    }
    let mut parts = Vec::new();
    let lost = (t.window_loss_percent * f64::from(t.window_probes) / 100.0).round() as u32;
    if lost >= MIN_LOST && t.window_loss_percent >= cfg.warn_loss_percent {
        parts.push(format!(
            "{name} {:.0}% loss over the last {} echoes",
            t.window_loss_percent, t.window_probes
        ));
    }
    if let (Some(p50), Some(limit)) = (t.rtt_p50_ms, cfg.warn_rtt_ms)
        && p50 >= limit
    {
        parts.push(format!("{name} rtt p50 {p50:.1} ms >= {limit} ms"));
    }
    if parts.is_empty() {
        (Status::Ok, None)
    } else {
        (Status::Warn, Some(parts.join(", ")))
    }
}
