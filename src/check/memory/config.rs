//! `[[check]] kind = "memory"`: thresholds, the OOM hold time and the per-VM ranking.

use serde::Deserialize;

use crate::problems::Problems;

/// `[[check]] kind = "memory"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MemoryConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run.
    pub timeout_ms: u64,
    /// One-shot mode: window over which swap rates and OOM kills are measured.
    pub window_ms: u64,
    /// WARN when MemAvailable is below this share of MemTotal.
    pub warn_available_percent: f64,
    /// CRIT when MemAvailable is below this share of MemTotal.
    pub crit_available_percent: f64,
    /// WARN when PSI memory `some` avg10 is at or above this.
    pub warn_psi_some_avg10: f64,
    /// CRIT when PSI memory `full` avg10 is at or above this.
    pub crit_psi_full_avg10: f64,
    /// WARN when swap-in over the window (one-shot) or the interval (agent) reaches this rate.
    pub warn_swap_in_pages_per_sec: f64,
    /// CRIT when an OOM kill happened in the window.
    pub crit_on_oom_kill: bool,
    /// Agent: how long an OOM kill keeps the check CRIT (so one cycle's event is not missed).
    pub oom_kill_hold_secs: u64,
    /// How many cgroups to list in `top_cgroups`.
    pub top_cgroups: usize,
    /// Parent cgroup whose children are ranked (relative to the cgroup2 mount).
    pub cgroup_parent: String,
    /// Optional: WARN when some cgroup's `memory.pressure` some avg10 reaches this.
    pub warn_cgroup_psi_some_avg10: Option<f64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            enabled: true,
            timeout_ms: 3000,
            window_ms: 1000,
            warn_available_percent: 10.0,
            crit_available_percent: 5.0,
            warn_psi_some_avg10: 10.0,
            crit_psi_full_avg10: 5.0,
            warn_swap_in_pages_per_sec: 100.0,
            crit_on_oom_kill: true,
            oom_kill_hold_secs: 300,
            top_cgroups: 5,
            cgroup_parent: "machine.slice".into(),
            warn_cgroup_psi_some_avg10: None,
        }
    }
}

impl MemoryConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.percent("warn-available-percent", self.warn_available_percent);
        p.percent("crit-available-percent", self.crit_available_percent);
        if self.crit_available_percent > self.warn_available_percent {
            p.push(
                "crit-available-percent",
                "must not be above warn-available-percent (less available memory is worse)",
            );
        }
        p.percent("warn-psi-some-avg10", self.warn_psi_some_avg10);
        p.percent("crit-psi-full-avg10", self.crit_psi_full_avg10);
        if let Some(v) = self.warn_cgroup_psi_some_avg10 {
            p.percent("warn-cgroup-psi-some-avg10", v);
        }
        p.non_negative(
            "warn-swap-in-pages-per-sec",
            self.warn_swap_in_pages_per_sec,
        );
        p.timeout("timeout-ms", self.timeout_ms);
        p.window("window-ms", self.window_ms, self.timeout_ms);
        if self.top_cgroups > 100 {
            p.push("top-cgroups", "must be at most 100");
        }
        if self.cgroup_parent.contains("..") || self.cgroup_parent.starts_with('/') {
            p.push(
                "cgroup-parent",
                "must be a relative path below the cgroup2 mount, without \"..\"",
            );
        }
    }
}
