//! Per-VM pressure: the children of a cgroup v2 parent (libvirt's `machine.slice`) ranked by one of their
//! PSI files (`memory.pressure`, `io.pressure`), so "which VMs are stalling" is one glance. Shared by the
//! `memory` and `io` checks.
//!
//! No cgroup v2, or no parent, means there is nothing to rank: a note, never an error. A VM that stops
//! between the listing and the read is simply gone.

use crate::host::HostRoot;
use crate::parse::parse_psi;

/// Where cgroup v2 is mounted, under the host root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One child cgroup and its pressure.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Directory name, e.g. `machine-qemu\x2d1\x2dvm1.scope`.
    pub cgroup: String,
    /// Readable name, e.g. `qemu-1-vm1`.
    pub name: String,
    /// `some avg10` of the pressure file.
    pub psi_some_avg10: f64,
    /// `full avg10` of the pressure file (0 when the file has no `full` line).
    pub psi_full_avg10: f64,
}

/// The children of `<cgroup2>/<parent>` ranked by `file` (worst `some` first, then `full`, then name), the
/// top `n`. `Err` is a note saying why nothing could be ranked.
pub fn rank(root: &HostRoot, parent: &str, file: &str, n: usize) -> Result<Vec<Ranked>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if !root.exists(format!("{CGROUP_ROOT}/cgroup.controllers")) {
        return Err("cgroup v2 not mounted: per-VM pressure unavailable".into());
    }
    let dir = format!("{CGROUP_ROOT}/{parent}");
    let names = match root.list_dir(&dir) {
        Ok(Some(names)) => names,
        Ok(None) => return Err(format!("no {parent}: no VMs to rank")),
        Err(e) => return Err(e.to_string()),
    };
    let mut ranked: Vec<Ranked> = names
        .into_iter()
        .filter_map(|name| {
            // Only child cgroups carry the pressure file; plain files do not.
            let text = root.read_optional(format!("{dir}/{name}/{file}")).ok()??;
            let psi = parse_psi(&text).ok()?;
            Some(Ranked {
                name: display_name(&name),
                cgroup: name,
                psi_some_avg10: psi.some.avg10,
                psi_full_avg10: psi.full.map(|f| f.avg10).unwrap_or(0.0),
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.psi_some_avg10
            .total_cmp(&a.psi_some_avg10)
            .then(b.psi_full_avg10.total_cmp(&a.psi_full_avg10))
            .then(a.cgroup.cmp(&b.cgroup))
    });
    ranked.truncate(n);
    Ok(ranked)
}

/// `machine-qemu\x2d1\x2dvm1.scope` -> `qemu-1-vm1`: systemd unit escapes undone, decoration dropped.
pub fn display_name(dir: &str) -> String {
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
