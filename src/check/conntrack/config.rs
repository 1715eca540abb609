//! `[[check]] kind = "conntrack"`: thresholds and the one-shot rate window.

use serde::Deserialize;

use crate::problems::Problems;

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
