//! What the check reports: JSON `details` and the `IoDetails` message.

use serde::Serialize;

use crate::check::Perf;

/// One whole disk over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskIo {
    /// Kernel name.
    pub name: String,
    /// Share of the window with I/O in flight.
    pub util_percent: Option<f64>,
    /// Average completion time of the window's I/Os, queueing included.
    pub await_ms: Option<f64>,
    /// Reads per second.
    pub read_iops: Option<f64>,
    /// Writes per second.
    pub write_iops: Option<f64>,
    /// KiB read per second.
    pub read_kib_per_sec: Option<f64>,
    /// KiB written per second.
    pub write_kib_per_sec: Option<f64>,
    /// I/Os in flight when read.
    pub in_flight: u64,
}

/// I/O pressure of one VM cgroup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CgroupIoPressure {
    /// Directory name, e.g. `machine-qemu\x2d1\x2dvm1.scope`.
    pub cgroup: String,
    /// Readable name, e.g. `qemu-1-vm1`.
    pub name: String,
    /// `io.pressure` some avg10.
    pub psi_some_avg10: f64,
    /// `io.pressure` full avg10.
    pub psi_full_avg10: f64,
}

/// Details of the `io` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IoDetails {
    /// Whether `/proc/pressure/io` was there.
    pub psi_supported: bool,
    /// PSI io some avg10.
    pub psi_some_avg10: Option<f64>,
    /// PSI io some avg60.
    pub psi_some_avg60: Option<f64>,
    /// PSI io full avg10.
    pub psi_full_avg10: Option<f64>,
    /// PSI io full avg60.
    pub psi_full_avg60: Option<f64>,
    /// Whole disks, busiest first.
    pub disks: Vec<DiskIo>,
    /// Window length in seconds (0 without a previous sample).
    pub window_secs: f64,
    /// VM cgroups by I/O pressure, worst first.
    pub top_cgroups: Vec<CgroupIoPressure>,
    /// Notes (PSI unsupported, no machine.slice, first sample).
    pub notes: Vec<String>,
}

impl IoDetails {
    /// Nagios performance data: PSI, and utilisation and await of each disk.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut v = Vec::new();
        if let Some(x) = self.psi_some_avg10 {
            v.push(Perf::new("psi_some_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        if let Some(x) = self.psi_full_avg10 {
            v.push(Perf::new("psi_full_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        for d in &self.disks {
            if let Some(u) = d.util_percent {
                v.push(Perf::new(format!("{}_util", d.name), u, "%").bounds(Some(0.0), Some(100.0)));
            }
            if let Some(a) = d.await_ms {
                v.push(Perf::new(format!("{}_await", d.name), a, "ms").bounds(Some(0.0), None));
            }
        }
        v
    }
}
