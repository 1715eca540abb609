//! `[[check]] kind = "io"`: PSI thresholds, what makes a disk saturated, the per-VM ranking.

use serde::Deserialize;

use crate::problems::Problems;

/// `[[check]] kind = "io"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IoConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run.
    pub timeout_ms: u64,
    /// One-shot mode: window over which disk rates are measured.
    pub window_ms: u64,
    /// WARN when PSI io `some` avg10 is at or above this (tasks stalled on I/O some of the time).
    pub warn_psi_some_avg10: f64,
    /// CRIT when PSI io `full` avg10 is at or above this (every runnable task stalled on I/O).
    pub crit_psi_full_avg10: f64,
    /// WARN when a disk was busy this share of the window.
    pub warn_util_percent: f64,
    /// WARN when a disk's I/Os took this long on average (queueing included).
    pub warn_await_ms: f64,
    /// Disks named here (`sda`, `md0`, `dm-3`) are not judged (still shown).
    pub ignore_disks: Vec<String>,
    /// How many VM cgroups to rank by `io.pressure`.
    pub top_cgroups: usize,
    /// The cgroup whose children are ranked.
    pub cgroup_parent: String,
    /// WARN when a VM's `io.pressure` some avg10 is at or above this (unset: off).
    pub warn_cgroup_psi_some_avg10: Option<f64>,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            enabled: true,
            timeout_ms: 3000,
            window_ms: 1000,
            warn_psi_some_avg10: 25.0,
            crit_psi_full_avg10: 10.0,
            warn_util_percent: 90.0,
            warn_await_ms: 500.0,
            ignore_disks: Vec::new(),
            top_cgroups: 5,
            cgroup_parent: "machine.slice".into(),
            warn_cgroup_psi_some_avg10: None,
        }
    }
}

impl IoConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.percent("warn-psi-some-avg10", self.warn_psi_some_avg10);
        p.percent("crit-psi-full-avg10", self.crit_psi_full_avg10);
        p.percent("warn-util-percent", self.warn_util_percent);
        if !(self.warn_await_ms.is_finite() && self.warn_await_ms > 0.0) {
            p.push(
                "warn-await-ms",
                format!("must be a number above 0, got {}", self.warn_await_ms),
            );
        }
        if let Some(v) = self.warn_cgroup_psi_some_avg10 {
            p.percent("warn-cgroup-psi-some-avg10", v);
        }
        if self.top_cgroups > 100 {
            p.push("top-cgroups", "must be at most 100");
        }
        if self.cgroup_parent.is_empty() || self.cgroup_parent.contains("..") {
            p.push(
                "cgroup-parent",
                "must be a cgroup path below /sys/fs/cgroup",
            );
        }
        p.timeout("timeout-ms", self.timeout_ms);
        p.window("window-ms", self.window_ms, self.timeout_ms);
    }
}
