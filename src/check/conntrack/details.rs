//! What the check reports: JSON `details` and the `ConntrackDetails` message.

use serde::Serialize;

use crate::check::Perf;

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
