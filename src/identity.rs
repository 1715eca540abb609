//! Who this host is: hostname and kernel of the live system (via `sysinfo`), boot id and boot time from the
//! kernel under the host root (`/proc/sys/kernel/random/boot_id`, `btime` in `/proc/stat`).
//!
//! The boot id is what lets the collector tell "this host rebooted" from "this host was silent".

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::host::HostRoot;

/// Identity of the probed host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct HostInfo {
    /// Hostname of the live system.
    pub hostname: Option<String>,
    /// Kernel release of the live system.
    pub kernel: Option<String>,
    /// Kernel boot id under the root (changes on every boot).
    pub boot_id: Option<String>,
    /// Boot time (seconds since the epoch) under the root.
    pub boot_time: Option<u64>,
    /// The host root the checks read.
    pub root: String,
}

impl HostInfo {
    /// Gathers the identity; nothing here fails, missing facts are `None`.
    pub fn gather(root: &HostRoot) -> HostInfo {
        HostInfo {
            hostname: sysinfo::System::host_name().ok(),
            kernel: sysinfo::System::kernel_version().ok(),
            boot_id: read_boot_id(root),
            boot_time: read_boot_time(root),
            root: root.dir().display().to_string(),
        }
    }

    /// Boot time as a `SystemTime`.
    pub fn boot_system_time(&self) -> Option<SystemTime> {
        self.boot_time
            .and_then(|s| crate::util::epoch_plus(Duration::from_secs(s)))
    }
}

/// `/proc/sys/kernel/random/boot_id`, trimmed; `None` when absent or not a UUID-like string.
pub fn read_boot_id(root: &HostRoot) -> Option<String> {
    let s = root.read("/proc/sys/kernel/random/boot_id").ok()?;
    let s = s.trim();
    (!s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .then(|| s.to_owned())
}

/// `btime` from `/proc/stat`.
pub fn read_boot_time(root: &HostRoot) -> Option<u64> {
    let s = root.read("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_boot_facts_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel/random")).unwrap();
        std::fs::write(
            dir.path().join("proc/sys/kernel/random/boot_id"),
            "0b3d1e6c-3c8f-4b8e-9a53-6a6d3f3b9d11\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("proc/stat"),
            "cpu  1 2 3\nbtime 1763700000\nprocesses 5\n",
        )
        .unwrap();
        let info = HostInfo::gather(&HostRoot::new(dir.path()));
        assert_eq!(
            info.boot_id.as_deref(),
            Some("0b3d1e6c-3c8f-4b8e-9a53-6a6d3f3b9d11")
        );
        assert_eq!(info.boot_time, Some(1_763_700_000));
        std::fs::write(
            dir.path().join("proc/sys/kernel/random/boot_id"),
            "<garbage>\n",
        )
        .unwrap();
        assert_eq!(read_boot_id(&HostRoot::new(dir.path())), None);
    }
}
