//! What the check reports: JSON `details` and the `ServicesDetails` message.

use serde::Serialize;

use crate::check::{Perf, Status};

/// Details of the `services` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicesDetails {
    /// Boot finished, or uptime past `boot-settle-minutes`.
    pub boot_settled: bool,
    /// The configured units, in configured order.
    pub units: Vec<UnitState>,
}

/// One systemd unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitState {
    /// Full unit name (`unbound.service`).
    pub name: String,
    /// `LoadState`: loaded, not-found, bad-setting, error, masked.
    pub load_state: String,
    /// `ActiveState`: active, reloading, inactive, failed, activating, deactivating.
    pub active_state: String,
    /// `SubState`: running, dead, auto-restart, ...
    pub sub_state: String,
    /// The service's `Result` (`exit-code`, `timeout`, `start-limit-hit`, ...); empty when not read.
    pub result: String,
    /// When it entered its active state (`StateChangeTimestamp`), Unix milliseconds; read when not active.
    pub since_unix_ms: Option<u64>,
    /// Automatic restarts systemd counted (`NRestarts`, services only).
    pub n_restarts: Option<u32>,
    /// Restarts seen within `restart-window-secs`.
    pub restarts_in_window: u32,
    /// `UnitFileState`, read for a unit that never started (cached).
    pub unit_file_state: Option<String>,
    /// Inactive and never activated this boot.
    pub never_started: bool,
    /// This unit's verdict.
    pub status: Status,
}

impl UnitState {
    /// Up and serving: `active` or `reloading`.
    pub fn is_up(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }
}

impl ServicesDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let n = self.units.len() as f64;
        let up = self.units.iter().filter(|u| u.is_up()).count() as f64;
        let restarts: u32 = self.units.iter().map(|u| u.restarts_in_window).sum();
        vec![
            Perf::new("units_up", up, "").bounds(Some(0.0), Some(n)),
            Perf::new("units_not_ok", n - self.units.iter().filter(|u| u.status == Status::Ok).count() as f64, "")
                .bounds(Some(0.0), Some(n)),
            Perf::new("restarts", f64::from(restarts), "").bounds(Some(0.0), None),
        ]
    }
}
