//! Per-VM memory pressure: the cgroups under `machine.slice` ranked by `memory.pressure`.

use serde::Serialize;

use crate::host::HostRoot;
use crate::parse::parse_psi;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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

/// `machine-qemu\x2d1\x2dvm1.scope` -> `qemu-1-vm1`: systemd unit escapes undone, decoration dropped.
pub fn cgroup_display_name(dir: &str) -> String {
    let base = dir
        .strip_suffix(".scope")
        .or_else(|| dir.strip_suffix(".slice"))
        .unwrap_or(dir);
    let base = base.strip_prefix("machine-").unwrap_or(base);
    let mut out = String::with_capacity(base.len());
    let mut rest = base;
    while let Some(pos) = rest.find("\\x") {
        out.push_str(&rest[..pos]);
        let hex = rest.get(pos + 2..pos + 4);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if b.is_ascii() => {
                out.push(b as char);
                rest = &rest[pos + 4..];
            }
            _ => {
                out.push_str("\\x");
                rest = &rest[pos + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Ranks the children of `<cgroup2>/<parent>` by memory pressure. Returns the top `n` and a note when
/// ranking is not possible (cgroup v1, no parent).
pub(super) fn scan_cgroups(
    root: &HostRoot,
    parent: &str,
    n: usize,
) -> (Vec<CgroupPressure>, Option<String>) {
    if n == 0 {
        return (Vec::new(), None);
    }
    if !root.exists(format!("{CGROUP_ROOT}/cgroup.controllers")) {
        return (
            Vec::new(),
            Some("cgroup v2 not mounted: per-VM pressure unavailable".into()),
        );
    }
    let dir = format!("{CGROUP_ROOT}/{parent}");
    let names = match root.list_dir(&dir) {
        Ok(Some(names)) => names,
        Ok(None) => return (Vec::new(), Some(format!("no {parent}: no VMs to rank"))),
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut ranked: Vec<CgroupPressure> = Vec::new();
    for name in names {
        // Only child cgroups carry memory.pressure; plain files do not. A VM that stops between the
        // listing and the read is simply gone, not an error.
        let Ok(Some(text)) = root.read_optional(format!("{dir}/{name}/memory.pressure")) else {
            continue;
        };
        let Ok(psi) = parse_psi(&text) else {
            continue;
        };
        ranked.push(CgroupPressure {
            name: cgroup_display_name(&name),
            cgroup: name,
            psi_some_avg10: psi.some.avg10,
            psi_full_avg10: psi.full.map(|f| f.avg10).unwrap_or(0.0),
            memory_current_bytes: None,
            memory_max_bytes: None,
            swap_current_bytes: None,
        });
    }
    ranked.sort_by(|a, b| {
        b.psi_some_avg10
            .total_cmp(&a.psi_some_avg10)
            .then(b.psi_full_avg10.total_cmp(&a.psi_full_avg10))
            .then(a.cgroup.cmp(&b.cgroup))
    });
    ranked.truncate(n);
    let read_u64 = |path: String| -> Option<u64> {
        root.read_optional(path)
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse().ok())
    };
    for cg in &mut ranked {
        let base = format!("{dir}/{}", cg.cgroup);
        cg.memory_current_bytes = read_u64(format!("{base}/memory.current"));
        cg.memory_max_bytes = read_u64(format!("{base}/memory.max"));
        cg.swap_current_bytes = read_u64(format!("{base}/memory.swap.current"));
    }
    (ranked, None)
}
