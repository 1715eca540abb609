//! Per-VM memory pressure: the cgroups under `machine.slice` ranked by `memory.pressure`.

use serde::Serialize;

use crate::host::HostRoot;
use crate::check::vm_cgroups;

/// Memory pressure of one cgroup under the ranked parent (usually one VM).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CgroupPressure {
    /// Directory name, e.g. `machine-qemu\x2d1\x2dvm1.scope`.
    pub cgroup: String,
    /// Readable name, e.g. `qemu-1-vm1`.
    pub name: String,
    /// `memory.pressure` some avg10.
    pub psi_some_avg10: f64,
    /// `memory.pressure` full avg10.
    pub psi_full_avg10: f64,
    /// `memory.current`.
    pub memory_current_bytes: Option<u64>,
    /// `memory.max` (`None` for "max").
    pub memory_max_bytes: Option<u64>,
    /// `memory.swap.current`.
    pub swap_current_bytes: Option<u64>,
}

/// `machine-qemu\x2d1\x2dvm1.scope` -> `qemu-1-vm1` (see [`vm_cgroups::display_name`]).
pub fn cgroup_display_name(dir: &str) -> String {
    vm_cgroups::display_name(dir)
}

/// Ranks the children of `<cgroup2>/<parent>` by memory pressure, with their memory use. Returns the top
/// `n` and a note when ranking is not possible (cgroup v1, no parent).
pub(super) fn scan_cgroups(
    root: &HostRoot,
    parent: &str,
    n: usize,
) -> (Vec<CgroupPressure>, Option<String>) {
    let ranked = match vm_cgroups::rank(root, parent, "memory.pressure", n) {
        Ok(r) => r,
        Err(note) => return (Vec::new(), Some(note)),
    };
    let read_u64 = |path: String| -> Option<u64> {
        root.read_optional(path)
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse().ok())
    };
    let cgroups = ranked
        .into_iter()
        .map(|r| {
            let base = format!("{}/{parent}/{}", vm_cgroups::CGROUP_ROOT, r.cgroup);
            CgroupPressure {
                memory_current_bytes: read_u64(format!("{base}/memory.current")),
                memory_max_bytes: read_u64(format!("{base}/memory.max")),
                swap_current_bytes: read_u64(format!("{base}/memory.swap.current")),
                cgroup: r.cgroup,
                name: r.name,
                psi_some_avg10: r.psi_some_avg10,
                psi_full_avg10: r.psi_full_avg10,
            }
        })
        .collect();
    (cgroups, None)
}
