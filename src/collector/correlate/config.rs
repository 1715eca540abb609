//! `[correlation]` of the collector's configuration: thresholds, hysteresis and time caps.

use serde::Deserialize;

use crate::problems::Problems;

/// `[correlation]` of the collector's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CorrelationConfig {
    /// Share of an AZ's reporting hosts with the same check non-OK that makes it AZ-wide.
    pub az_threshold_percent: f64,
    /// And at least this many hosts.
    pub az_min_hosts: usize,
    /// Share of an AZ's known hosts gone stale that makes the AZ unreachable.
    pub stale_threshold_percent: f64,
    /// ... when they went stale within this window of each other.
    pub stale_window_secs: u64,
    /// Share of an AZ's hosts with a new boot id that makes a mass reboot.
    pub reboot_threshold_percent: f64,
    /// ... when they booted within this window.
    pub reboot_window_secs: u64,
    /// Non-OK reports in a row before a condition opens.
    pub open_after_cycles: u32,
    /// OK reports in a row before it closes.
    pub close_after_cycles: u32,
    /// Flap damping: a condition that changed this many times (OK <-> not OK) within `flap-window-secs`, or
    /// that comes back within that window of closing, is flapping.
    pub flap_changes: u32,
    /// Flap damping window: a flapping condition stays open until it has been OK for this long.
    pub flap_window_secs: u64,
    /// Peers that must lose a WireGuard host before it is judged dead.
    pub mesh_min_peers: usize,
    /// Recovery tracking of a reboot ends after this long even if the AZ never fully recovers.
    pub recovery_max_secs: u64,
    /// The longest reporting interval the collector takes from an agent for its timing (staleness, settle):
    /// one agent announcing an hour must not make the collector blind for three.
    pub max_interval_secs: u64,
    /// The longest a new verdict waits to settle (one reporting interval of its AZ, at most this).
    pub settle_max_secs: u64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            az_threshold_percent: 30.0,
            az_min_hosts: 3,
            stale_threshold_percent: 50.0,
            stale_window_secs: 120,
            reboot_threshold_percent: 50.0,
            reboot_window_secs: 600,
            open_after_cycles: 2,
            close_after_cycles: 2,
            flap_changes: 6,
            flap_window_secs: 300,
            mesh_min_peers: 2,
            recovery_max_secs: 48 * 3600,
            max_interval_secs: 300,
            settle_max_secs: 120,
        }
    }
}

impl CorrelationConfig {
    /// Collects what is wrong with this section.
    pub fn validate(&self, p: &mut Problems) {
        for (k, v) in [
            ("az-threshold-percent", self.az_threshold_percent),
            ("stale-threshold-percent", self.stale_threshold_percent),
            ("reboot-threshold-percent", self.reboot_threshold_percent),
        ] {
            p.percent(k, v);
            if v == 0.0 {
                p.push(k, "must be above 0");
            }
        }
        if self.az_min_hosts == 0 {
            p.push("az-min-hosts", "must be at least 1");
        }
        if self.mesh_min_peers == 0 {
            p.push("mesh-min-peers", "must be at least 1");
        }
        for (k, v) in [
            ("open-after-cycles", self.open_after_cycles),
            ("close-after-cycles", self.close_after_cycles),
        ] {
            if !(1..=100).contains(&v) {
                p.push(k, "must be between 1 and 100");
            }
        }
        if !(2..=64).contains(&self.flap_changes) {
            p.push("flap-changes", "must be between 2 and 64");
        }
        for (k, v) in [
            ("stale-window-secs", self.stale_window_secs),
            ("reboot-window-secs", self.reboot_window_secs),
            ("flap-window-secs", self.flap_window_secs),
            ("max-interval-secs", self.max_interval_secs),
            ("settle-max-secs", self.settle_max_secs),
        ] {
            if !(1..=86_400).contains(&v) {
                p.push(k, "must be between 1 and 86400");
            }
        }
    }
}
