//! `[[check]] kind = "md-raid"`: expected and ignored arrays, stall detection, what each state is worth.

use serde::Deserialize;

use crate::check::Status;
use crate::problems::Problems;

/// A configurable verdict for a condition that is not a failure by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Report, do not alert.
    Ok,
    /// WARN.
    Warn,
    /// CRIT.
    Crit,
}

impl Severity {
    pub(crate) fn status(self) -> Status {
        match self {
            Severity::Ok => Status::Ok,
            Severity::Warn => Status::Warn,
            Severity::Crit => Status::Crit,
        }
    }
}

/// `[[check]] kind = "md-raid"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MdRaidConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run.
    pub timeout_ms: u64,
    /// Arrays that must exist (names like `md0` or UUIDs in sysfs or mdadm form); missing = CRIT.
    pub expect_arrays: Vec<String>,
    /// Arrays to leave out entirely (names or UUIDs).
    pub ignore_arrays: Vec<String>,
    /// Agent: a resync/recovery/reshape without progress for this long is CRIT "stalled".
    pub stall_after_secs: u64,
    /// Verdict for a resync, a reshape, or a pending resync (DELAYED/PENDING).
    pub resync_status: Severity,
    /// Verdict for a degraded array recovering onto a spare while redundancy remains.
    pub recovering_status: Severity,
    /// Verdict for a faulty member still attached to an array that is not degraded.
    pub faulty_member_status: Severity,
    /// Verdict for `mismatch_cnt` > 0 on an idle raid4/5/6 (after a check).
    pub mismatch_status: Severity,
}

impl Default for MdRaidConfig {
    fn default() -> Self {
        MdRaidConfig {
            enabled: true,
            timeout_ms: 3000,
            expect_arrays: Vec::new(),
            ignore_arrays: Vec::new(),
            stall_after_secs: 600,
            resync_status: Severity::Warn,
            recovering_status: Severity::Warn,
            faulty_member_status: Severity::Warn,
            mismatch_status: Severity::Warn,
        }
    }
}

impl MdRaidConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.timeout("timeout-ms", self.timeout_ms);
        if self.stall_after_secs < 10 {
            p.push(
                "stall-after-secs",
                "must be at least 10 (progress is sampled once per cycle)",
            );
        }
        for (key, list) in [
            ("expect-arrays", &self.expect_arrays),
            ("ignore-arrays", &self.ignore_arrays),
        ] {
            for a in list {
                if a.trim().is_empty() || a.contains('/') {
                    p.push(key, format!("{a:?} is not an array name or UUID"));
                }
            }
        }
        for e in &self.expect_arrays {
            if self.ignore_arrays.contains(e) {
                p.push("ignore-arrays", format!("{e:?} is also in expect-arrays"));
            }
        }
    }
}
