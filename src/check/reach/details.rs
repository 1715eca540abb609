//! What the check reports: JSON `details` and the `ReachDetails` message.

use serde::Serialize;

use super::ProbeKind;
use crate::check::{Perf, Status};

/// Details of the `reach` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachDetails {
    /// The targets, in configured order.
    pub targets: Vec<TargetState>,
    /// ICMP went over a raw socket (CAP_NET_RAW) rather than the unprivileged datagram one.
    pub icmp_raw_socket: bool,
}

/// One target in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetState {
    /// Its configured name.
    pub name: String,
    /// Its address as configured.
    pub address: String,
    /// How it was probed.
    pub kind: ProbeKind,
    /// Unreachable is CRIT.
    pub critical: bool,
    /// Probes sent this cycle (echoes, or one connect).
    pub sent: u32,
    /// Of those, answered.
    pub received: u32,
    /// ICMP: share of echoes lost over the loss window (the cycles with at least one answer; this cycle's
    /// in one-shot).
    pub window_loss_percent: f64,
    /// ICMP: echoes in the loss window.
    pub window_probes: u32,
    /// Median RTT of this cycle's answers (connect time, or connect and handshake, for TCP/TLS).
    pub rtt_p50_ms: Option<f64>,
    /// Slowest answer this cycle.
    pub rtt_max_ms: Option<f64>,
    /// At least one answer this cycle.
    pub reachable: bool,
    /// The class of the last failure this cycle: `icmp.host_unreachable`, `tcp.refused`,
    /// `tls.cert.date_invalid`, ... (W3C Network Error Logging names for TCP and TLS).
    pub failure: Option<String>,
    /// That failure in words.
    pub failure_detail: Option<String>,
    /// This target's verdict.
    pub status: Status,
}

impl ReachDetails {
    /// Nagios performance data: reachable targets, and per target its loss and median RTT.
    pub fn perfdata(&self) -> Vec<Perf> {
        let n = self.targets.len() as f64;
        let up = self.targets.iter().filter(|t| t.reachable).count() as f64;
        let mut v = vec![Perf::new("reachable", up, "").bounds(Some(0.0), Some(n))];
        for t in &self.targets {
            if t.kind == ProbeKind::Icmp {
                v.push(
                    Perf::new(format!("{}_loss", t.name), t.window_loss_percent, "%")
                        .bounds(Some(0.0), Some(100.0)),
                );
            }
            if let Some(ms) = t.rtt_p50_ms {
                v.push(Perf::new(format!("{}_rtt", t.name), ms / 1000.0, "s"));
            }
        }
        v
    }
}
