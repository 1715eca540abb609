//! What the check reports: JSON `details` and the `MemoryDetails` message.

use serde::Serialize;

use super::CgroupPressure;
use crate::check::Perf;

/// Details of the `memory` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryDetails {
    /// MemTotal in bytes.
    pub mem_total_bytes: u64,
    /// MemAvailable (or its estimate) in bytes.
    pub mem_available_bytes: u64,
    /// MemAvailable as a share of MemTotal.
    pub mem_available_percent: f64,
    /// True when the kernel lacks MemAvailable and the value is estimated.
    pub mem_available_estimated: bool,
    /// SwapTotal in bytes.
    pub swap_total_bytes: u64,
    /// SwapFree in bytes.
    pub swap_free_bytes: u64,
    /// Whether PSI was available.
    pub psi_supported: bool,
    /// PSI memory some avg10.
    pub psi_some_avg10: Option<f64>,
    /// PSI memory some avg60.
    pub psi_some_avg60: Option<f64>,
    /// PSI memory full avg10.
    pub psi_full_avg10: Option<f64>,
    /// PSI memory full avg60.
    pub psi_full_avg60: Option<f64>,
    /// Swap-in in pages/s over the window.
    pub swap_in_pages_per_sec: Option<f64>,
    /// Swap-out in pages/s over the window.
    pub swap_out_pages_per_sec: Option<f64>,
    /// OOM kills in the window.
    pub oom_kills: Option<u64>,
    /// Window length in seconds.
    pub window_secs: f64,
    /// Top cgroups by memory pressure, worst first.
    pub top_cgroups: Vec<CgroupPressure>,
    /// Notes (PSI unsupported, no machine.slice, first sample).
    pub notes: Vec<String>,
}

impl MemoryDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut v = vec![
            Perf::new("available", self.mem_available_percent, "%").bounds(Some(0.0), Some(100.0)),
            Perf::new("available_bytes", self.mem_available_bytes as f64, "B")
                .bounds(Some(0.0), Some(self.mem_total_bytes as f64)),
            Perf::new(
                "swap_used_bytes",
                self.swap_total_bytes.saturating_sub(self.swap_free_bytes) as f64,
                "B",
            )
            .bounds(Some(0.0), Some(self.swap_total_bytes as f64)),
        ];
        if let Some(x) = self.psi_some_avg10 {
            v.push(Perf::new("psi_some_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        if let Some(x) = self.psi_full_avg10 {
            v.push(Perf::new("psi_full_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        if let Some(x) = self.swap_in_pages_per_sec {
            v.push(Perf::new("swap_in_pages_per_sec", x, "").bounds(Some(0.0), None));
        }
        if let Some(x) = self.swap_out_pages_per_sec {
            v.push(Perf::new("swap_out_pages_per_sec", x, "").bounds(Some(0.0), None));
        }
        if let Some(x) = self.oom_kills {
            v.push(Perf::new("oom_kills", x as f64, "").bounds(Some(0.0), None));
        }
        v
    }
}
