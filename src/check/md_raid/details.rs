//! What the check reports: one entry per array, merged from sysfs and mdstat.

use serde::Serialize;

use crate::check::{Perf, Status};

/// A member and its flags, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Device name.
    pub name: String,
    /// Flags: sysfs words (`in_sync`, `faulty`, `spare`, …) or mdstat markers translated to them.
    pub flags: Vec<String>,
}

/// One array in the check's details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrayInfo {
    /// Device name, e.g. `md127`.
    pub name: String,
    /// Array UUID (sysfs form), when known.
    pub uuid: Option<String>,
    /// Level, e.g. `raid1`; `None` for an inactive array printed without one.
    pub level: Option<String>,
    /// `array_state` (sysfs) or the mdstat word (`active`/`inactive`).
    pub state: String,
    /// Slots in the array.
    pub raid_disks: Option<u32>,
    /// Slots filled by a working member.
    pub active_disks: Option<u32>,
    /// Faulty members still attached.
    pub failed_disks: u32,
    /// Spare members.
    pub spare_disks: u32,
    /// Missing members.
    pub degraded: Option<u32>,
    /// `[UU_]` from mdstat.
    pub status_map: Option<String>,
    /// `idle`, `resync`, `recover`, `check`, `repair`, `reshape`, or whatever the kernel says.
    pub sync_action: String,
    /// `DELAYED`, `PENDING` or `delayed` when a resync waits its turn.
    pub sync_pending: Option<String>,
    /// Progress of the running action, percent.
    pub sync_percent: Option<f64>,
    /// Estimated seconds left.
    pub sync_eta_secs: Option<u64>,
    /// Current speed, KiB/s.
    pub sync_speed_kib_per_sec: Option<u64>,
    /// Position of the running action, 512-byte sectors.
    pub sync_done_sectors: Option<u64>,
    /// Extent of the running action, 512-byte sectors.
    pub sync_total_sectors: Option<u64>,
    /// `mismatch_cnt` (sectors found inconsistent by the last check).
    pub mismatch_cnt: Option<u64>,
    /// Read-only or auto-read-only.
    pub read_only: bool,
    /// An IMSM/DDF metadata container (its volumes are separate arrays).
    pub container: bool,
    /// Members.
    pub members: Vec<MemberInfo>,
    /// `sysfs`, `mdstat` or `sysfs+mdstat`.
    pub source: String,
    /// Seconds without progress, when the action is stalled (agent only).
    pub stalled_secs: Option<u64>,
    /// Verdict for this array.
    pub status: Status,
    /// One line for this array.
    pub summary: String,
}

impl ArrayInfo {
    /// A stable key: the UUID when known, else the name.
    pub fn key(&self) -> String {
        self.uuid
            .as_deref()
            .map(normalize_uuid)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.name.clone())
    }

    pub(crate) fn matches(&self, wanted: &str) -> bool {
        wanted == self.name
            || self
                .uuid
                .as_deref()
                .is_some_and(|u| normalize_uuid(u) == normalize_uuid(wanted))
    }

    pub(crate) fn inactive(&self) -> bool {
        matches!(self.state.as_str(), "inactive" | "clear")
    }

    pub(crate) fn syncing(&self) -> bool {
        matches!(self.sync_action.as_str(), "resync" | "recover" | "reshape")
    }
}

/// `0fbf5f2c-add2-43c2-…` and mdadm's `0fbf5f2c:add243c2:…` compare equal.
pub fn normalize_uuid(u: &str) -> String {
    u.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Details of the `md-raid` check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MdRaidDetails {
    /// Every array, sorted by name.
    pub arrays: Vec<ArrayInfo>,
    /// Entries of `expect-arrays` that matched no array.
    pub missing_expected: Vec<String>,
    /// `Personalities` of mdstat.
    pub personalities: Vec<String>,
}

impl MdRaidDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let count =
            |f: &dyn Fn(&ArrayInfo) -> bool| self.arrays.iter().filter(|a| f(a)).count() as f64;
        let mut v = vec![
            Perf::new("arrays", self.arrays.len() as f64, "").bounds(Some(0.0), None),
            Perf::new(
                "degraded_arrays",
                count(&|a| a.degraded.unwrap_or(0) > 0),
                "",
            )
            .bounds(Some(0.0), None),
            Perf::new("syncing_arrays", count(&|a| a.syncing()), "").bounds(Some(0.0), None),
        ];
        for a in &self.arrays {
            if let Some(p) = a.sync_percent {
                v.push(
                    Perf::new(format!("{}_sync", a.name), p, "%").bounds(Some(0.0), Some(100.0)),
                );
            }
        }
        v
    }
}
