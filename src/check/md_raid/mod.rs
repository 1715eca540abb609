//! `md-raid`: Linux software RAID state, rebuild progress and ETA.
//!
//! After a power cut a dozen hypervisors of one AZ were rebuilding at once and nobody could see it. This
//! check says per array whether it is healthy, degraded, rebuilding (and when it will be done), stalled,
//! or missing.
//!
//! Sources: sysfs first (`/sys/block/md*/md/`: one value per file, the kernel's own `degraded` count, sync
//! progress in sectors, `mismatch_cnt`, the UUID, member flags), `/proc/mdstat` for what sysfs lacks (the
//! `[UU_]` map, `(read-only)`, the printed ETA) or when sysfs is absent. Arrays are keyed by UUID where known:
//! `md127` may be another array after a reboot. A kernel without the md driver has no `/proc/mdstat`:
//! "no md arrays", OK, unless `expect-arrays` names some.
//!
//! Stall detection needs history, so it only works in the agent: a resync, recovery or reshape whose
//! position has not moved for `stall-after-secs` is CRIT "stalled".

pub mod mdstat;
pub mod sysfs;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::mdstat::{Mdstat, MdstatArray, parse_mdstat};
use self::sysfs::{SyncCompleted, SysfsArray};
use super::{BoxFuture, Check, CheckKind, Context, Details, Failure, Mode, Outcome, Perf, Status};
use crate::host::HostRoot;
use crate::problems::Problems;
use crate::util::fmt_duration;

const MDSTAT: &str = "/proc/mdstat";

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
    fn status(self) -> Status {
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

    fn matches(&self, wanted: &str) -> bool {
        wanted == self.name
            || self
                .uuid
                .as_deref()
                .is_some_and(|u| normalize_uuid(u) == normalize_uuid(wanted))
    }

    fn inactive(&self) -> bool {
        matches!(self.state.as_str(), "inactive" | "clear")
    }

    fn syncing(&self) -> bool {
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

fn normalize_action(word: &str) -> String {
    match word {
        "recovery" => "recover".to_owned(),
        other => other.to_owned(),
    }
}

fn pct(done: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| ((done as f64 * 1000.0 / total as f64).floor() / 10.0).min(100.0))
}

/// An array as mdstat shows it.
pub fn from_mdstat(a: &MdstatArray) -> ArrayInfo {
    let failed = a.members.iter().filter(|m| m.faulty).count() as u32;
    let spare = a.members.iter().filter(|m| m.spare && !m.faulty).count() as u32;
    let plain = a.members.iter().filter(|m| !m.spare && !m.faulty).count() as u32;
    let active = a.state == "active";
    let striped = matches!(a.level.as_deref(), Some("raid0" | "linear"));
    let (raid_disks, active_disks) = match (a.raid_disks, a.working_disks) {
        (Some(n), Some(m)) => (Some(n), Some(m)),
        _ if active && striped => (Some(plain), Some(plain)),
        _ => (None, None),
    };
    let degraded = a
        .status_map
        .as_ref()
        .map(|m| m.chars().filter(|c| *c == '_').count() as u32)
        .or_else(|| {
            raid_disks
                .zip(active_disks)
                .map(|(n, m)| n.saturating_sub(m))
        });
    let mut info = ArrayInfo {
        name: a.name.clone(),
        uuid: None,
        level: a.level.clone(),
        state: a.state.clone(),
        raid_disks,
        active_disks,
        failed_disks: failed,
        spare_disks: spare,
        degraded,
        status_map: a.status_map.clone(),
        sync_action: "idle".into(),
        sync_pending: None,
        sync_percent: None,
        sync_eta_secs: None,
        sync_speed_kib_per_sec: None,
        sync_done_sectors: None,
        sync_total_sectors: None,
        mismatch_cnt: None,
        read_only: a.read_only.is_some(),
        container: a.is_container(),
        members: a
            .members
            .iter()
            .map(|m| {
                let mut flags = Vec::new();
                if m.faulty {
                    flags.push("faulty".to_owned());
                }
                if m.spare {
                    flags.push("spare".to_owned());
                }
                if !m.faulty && !m.spare {
                    flags.push("in_sync".to_owned());
                }
                if m.write_mostly {
                    flags.push("write_mostly".to_owned());
                }
                if m.journal {
                    flags.push("journal".to_owned());
                }
                if m.replacement {
                    flags.push("replacement".to_owned());
                }
                MemberInfo {
                    name: m.name.clone(),
                    flags,
                }
            })
            .collect(),
        source: "mdstat".into(),
        stalled_secs: None,
        status: Status::Unknown,
        summary: String::new(),
    };
    if let Some(p) = &a.progress {
        info.sync_action = normalize_action(&p.action);
        info.sync_pending = p.pending.clone();
        info.sync_percent = p.percent;
        info.sync_eta_secs = p.finish_minutes.map(|m| (m * 60.0).round() as u64);
        info.sync_speed_kib_per_sec = p.speed_kib;
        // mdstat counts 1 KiB blocks; sysfs and the details count 512-byte sectors.
        info.sync_done_sectors = p.done.map(|d| d.saturating_mul(2));
        info.sync_total_sectors = p.total.map(|t| t.saturating_mul(2));
    }
    info
}

/// An array as sysfs shows it.
pub fn from_sysfs(a: &SysfsArray) -> ArrayInfo {
    let failed = a.members.iter().filter(|m| m.has("faulty")).count() as u32;
    let spare = a
        .members
        .iter()
        .filter(|m| m.has("spare") && !m.has("faulty"))
        .count() as u32;
    let in_sync = a
        .members
        .iter()
        .filter(|m| m.has("in_sync") && !m.has("faulty"))
        .count() as u32;
    let active_disks = match (a.raid_disks, a.degraded) {
        (Some(n), Some(d)) => Some(n.saturating_sub(d)),
        (Some(_), None) => Some(in_sync),
        _ => None,
    };
    let mut info = ArrayInfo {
        name: a.name.clone(),
        uuid: a.uuid.clone(),
        level: a.level.clone(),
        state: a.array_state.clone().unwrap_or_else(|| "unknown".into()),
        raid_disks: a.raid_disks,
        active_disks,
        failed_disks: failed,
        spare_disks: spare,
        degraded: a.degraded,
        status_map: None,
        sync_action: a.sync_action.clone().unwrap_or_else(|| "idle".into()),
        sync_pending: None,
        sync_percent: None,
        sync_eta_secs: None,
        sync_speed_kib_per_sec: a.sync_speed,
        sync_done_sectors: None,
        sync_total_sectors: None,
        mismatch_cnt: a.mismatch_cnt,
        read_only: matches!(a.array_state.as_deref(), Some("readonly" | "read-auto")),
        container: a.level.as_deref() == Some("container"),
        members: a
            .members
            .iter()
            .map(|m| MemberInfo {
                name: m.name.clone(),
                flags: m.flags.clone(),
            })
            .collect(),
        source: "sysfs".into(),
        stalled_secs: None,
        status: Status::Unknown,
        summary: String::new(),
    };
    match a.sync_completed {
        Some(SyncCompleted::Progress { done, total }) => {
            info.sync_done_sectors = Some(done);
            info.sync_total_sectors = Some(total);
            info.sync_percent = pct(done, total);
            info.sync_eta_secs = a
                .sync_speed
                .filter(|s| *s > 0)
                .map(|speed| total.saturating_sub(done) / 2 / speed);
        }
        Some(SyncCompleted::Delayed) => info.sync_pending = Some("delayed".into()),
        Some(SyncCompleted::None) | None => {}
    }
    info
}

/// Joins both sources by array name: sysfs wins, mdstat fills what sysfs lacks.
pub fn merge(sys: Vec<SysfsArray>, md: Option<&Mdstat>) -> Vec<ArrayInfo> {
    let mut out: Vec<ArrayInfo> = Vec::new();
    let md_arrays: HashMap<&str, &MdstatArray> = md
        .map(|m| m.arrays.iter().map(|a| (a.name.as_str(), a)).collect())
        .unwrap_or_default();
    for s in &sys {
        let mut info = from_sysfs(s);
        if let Some(m) = md_arrays.get(s.name.as_str()) {
            let m = from_mdstat(m);
            info.status_map = m.status_map;
            info.read_only |= m.read_only;
            info.container |= m.container;
            if info.sync_pending.is_none() {
                info.sync_pending = m.sync_pending;
            }
            if info.sync_eta_secs.is_none() {
                info.sync_eta_secs = m.sync_eta_secs;
            }
            if info.sync_percent.is_none() && info.sync_action == m.sync_action {
                info.sync_percent = m.sync_percent;
                info.sync_done_sectors = m.sync_done_sectors;
                info.sync_total_sectors = m.sync_total_sectors;
            }
            if info.level.is_none() {
                info.level = m.level;
            }
            info.source = "sysfs+mdstat".into();
        }
        out.push(info);
    }
    if let Some(md) = md {
        for a in &md.arrays {
            if !sys.iter().any(|s| s.name == a.name) {
                out.push(from_mdstat(a));
            }
        }
    }
    out.sort_by_key(|a| natural_key(&a.name));
    out
}

/// `md2` before `md10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let prefix = &name[..name.len() - digits.len()];
    let n = digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    (prefix.to_owned(), n)
}

/// Member failures a level survives; `None` when unknown (containers, unknown levels).
fn tolerance(level: Option<&str>, raid_disks: Option<u32>) -> Option<u32> {
    match level? {
        "raid0" | "linear" => Some(0),
        "raid1" | "multipath" => raid_disks.map(|n| n.saturating_sub(1)),
        "raid4" | "raid5" => Some(1),
        "raid6" => Some(2),
        // Guaranteed for any raid10 layout with at least two copies.
        "raid10" => Some(1),
        _ => None,
    }
}

fn progress_text(a: &ArrayInfo) -> String {
    let mut s = a.sync_action.clone();
    if let Some(p) = a.sync_percent {
        s.push_str(&format!(" {p:.1}%"));
    }
    if let Some(eta) = a.sync_eta_secs {
        s.push_str(&format!(", ETA {}", fmt_duration(Duration::from_secs(eta))));
    }
    s
}

/// The verdict for one array (fills `status` and `summary`). Pure.
pub fn evaluate_array(a: &mut ArrayInfo, cfg: &MdRaidConfig) {
    let map = a
        .status_map
        .as_ref()
        .map(|m| format!(" [{m}]"))
        .unwrap_or_default();
    let missing = a.degraded.unwrap_or(0);
    let mut status = Status::Ok;
    // The main condition of the array first, then what comes on top of it.
    let primary = if a.container {
        format!(
            "container{}",
            a.level
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        )
    } else if a.inactive() {
        status = Status::Crit;
        "inactive".to_owned()
    } else if a.state == "broken" {
        status = Status::Crit;
        "broken (a member is missing)".to_owned()
    } else if missing > 0 {
        let tol = tolerance(a.level.as_deref(), a.raid_disks);
        let counts = match a.raid_disks {
            Some(n) => format!("{missing} of {n} missing"),
            None => format!("{missing} missing"),
        };
        if tol.is_some_and(|t| missing > t) {
            status = Status::Crit;
            format!(
                "failed{map}: {counts}, more than {} survives",
                a.level.as_deref().unwrap_or("the level")
            )
        } else if a.sync_action == "recover" {
            let no_redundancy = tol.is_some_and(|t| missing >= t);
            status = if no_redundancy {
                Status::Crit
            } else {
                cfg.recovering_status.status()
            };
            let shape = if map.is_empty() {
                format!(" ({counts})")
            } else {
                map.clone()
            };
            let mut p = format!("degraded{shape} recovering");
            if let Some(pc) = a.sync_percent {
                p.push_str(&format!(" {pc:.1}%"));
            }
            if let Some(eta) = a.sync_eta_secs {
                p.push_str(&format!(", ETA {}", fmt_duration(Duration::from_secs(eta))));
            }
            if no_redundancy {
                p.push_str(", no redundancy left");
            }
            p
        } else {
            status = Status::Crit;
            let mut p = format!("degraded{map} ({counts}), not recovering");
            if a.syncing() {
                p.push_str(&format!(" ({})", progress_text(a)));
            }
            p
        }
    } else if a.sync_pending.is_some() && !matches!(a.sync_action.as_str(), "check" | "repair") {
        status = cfg.resync_status.status();
        let action = if a.sync_action == "idle" {
            "resync"
        } else {
            &a.sync_action
        };
        format!(
            "{action} pending ({})",
            a.sync_pending.as_deref().unwrap_or("")
        )
    } else if matches!(a.sync_action.as_str(), "resync" | "reshape") {
        status = cfg.resync_status.status();
        progress_text(a)
    } else if a.sync_action != "idle" {
        // check, repair, frozen, or a word from a newer kernel: shown, not alarming.
        progress_text(a)
    } else {
        let shape = match (map.is_empty(), a.active_disks, a.raid_disks) {
            (false, _, _) => map.clone(),
            (true, Some(m), Some(n)) => format!(" {m}/{n} disks"),
            _ => String::new(),
        };
        format!("{}{shape}", a.level.as_deref().unwrap_or("md"))
    };
    let mut phrases = vec![primary];

    let faulty: Vec<&str> = a
        .members
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "faulty"))
        .map(|m| m.name.as_str())
        .collect();
    if !faulty.is_empty() && missing == 0 && !a.inactive() {
        status = status.worst(cfg.faulty_member_status.status());
        phrases.push(format!(
            "faulty member{} {} still attached",
            if faulty.len() > 1 { "s" } else { "" },
            faulty.join(", ")
        ));
    }
    if let Some(n) = a.mismatch_cnt.filter(|n| *n > 0)
        && matches!(a.level.as_deref(), Some("raid4" | "raid5" | "raid6"))
        && a.sync_action == "idle"
    {
        status = status.worst(cfg.mismatch_status.status());
        phrases.push(format!("mismatch_cnt {n} after check"));
    }
    if a.read_only {
        phrases.push(format!(
            "{}read-only",
            if a.state == "read-auto" { "auto-" } else { "" }
        ));
    }
    if let Some(secs) = a.stalled_secs {
        status = Status::Crit;
        phrases.insert(
            0,
            format!(
                "stalled: {} at {} for {}",
                a.sync_action,
                a.sync_percent
                    .map(|p| format!("{p:.1}%"))
                    .unwrap_or_else(|| "?".into()),
                fmt_duration(Duration::from_secs(secs))
            ),
        );
    }
    a.status = status;
    a.summary = format!("{} {}", a.name, phrases.join(", "));
}

/// What the check looked at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Arrays from both sources, merged, with `stalled_secs` set by the caller.
    pub arrays: Vec<ArrayInfo>,
    /// mdstat personalities.
    pub personalities: Vec<String>,
    /// Whether the md driver is present at all (`/proc/mdstat` or md arrays in sysfs).
    pub md_present: bool,
    /// Sources that failed while another worked: each lifts the status to at least UNKNOWN.
    pub problems: Vec<String>,
}

/// The verdict of the check. Pure.
pub fn evaluate(obs: &Observation, cfg: &MdRaidConfig) -> Outcome {
    let mut arrays: Vec<ArrayInfo> = obs
        .arrays
        .iter()
        .filter(|a| !cfg.ignore_arrays.iter().any(|i| a.matches(i)))
        .cloned()
        .collect();
    for a in &mut arrays {
        evaluate_array(a, cfg);
    }
    let missing_expected: Vec<String> = cfg
        .expect_arrays
        .iter()
        .filter(|e| !arrays.iter().any(|a| a.matches(e)))
        .cloned()
        .collect();

    let mut status = Status::worst_of(arrays.iter().map(|a| a.status)).unwrap_or(Status::Ok);
    let mut parts: Vec<String> = missing_expected
        .iter()
        .map(|e| format!("{e} missing (expected)"))
        .collect();
    if !missing_expected.is_empty() {
        status = Status::Crit;
    }
    let mut bad: Vec<&ArrayInfo> = arrays.iter().filter(|a| a.status != Status::Ok).collect();
    bad.sort_by_key(|a| std::cmp::Reverse(a.status.severity()));
    parts.extend(bad.iter().map(|a| a.summary.clone()));
    let ok: Vec<&ArrayInfo> = arrays.iter().filter(|a| a.status == Status::Ok).collect();
    if arrays.is_empty() && parts.is_empty() {
        parts.push(if obs.md_present {
            "no md arrays".into()
        } else {
            "no md arrays (md driver not loaded)".into()
        });
    } else if parts.is_empty() {
        let shown: Vec<&str> = ok.iter().take(4).map(|a| a.summary.as_str()).collect();
        let more = ok.len().saturating_sub(shown.len());
        parts.push(format!(
            "{} array{} OK: {}{}",
            ok.len(),
            if ok.len() == 1 { "" } else { "s" },
            shown.join("; "),
            if more > 0 {
                format!("; +{more} more")
            } else {
                String::new()
            }
        ));
    } else if !ok.is_empty() {
        parts.push(format!(
            "{} other array{} OK",
            ok.len(),
            if ok.len() == 1 { "" } else { "s" }
        ));
    }
    for p in &obs.problems {
        status = status.worst(Status::Unknown);
        parts.push(p.clone());
    }
    let details = MdRaidDetails {
        arrays,
        missing_expected,
        personalities: obs.personalities.clone(),
    };
    let mut out = Outcome::new(status, parts.join("; "), Details::MdRaid(details));
    if status == Status::Unknown {
        out.reason = Some(super::UnknownReason::Malformed);
    }
    out
}

/// Progress bookkeeping of one syncing array, for stall detection.
#[derive(Debug, Clone, Copy)]
struct Progress {
    done: u64,
    since: Instant,
}

/// Tracks sync positions across cycles and says which arrays are stalled.
#[derive(Debug, Default)]
pub struct StallTracker {
    seen: HashMap<String, Progress>,
}

impl StallTracker {
    /// Updates the tracker with this cycle's arrays (at `now`) and sets `stalled_secs` on arrays whose
    /// resync/recovery/reshape has not moved for at least `after`.
    pub fn observe(&mut self, arrays: &mut [ArrayInfo], now: Instant, after: Duration) {
        let mut keep = HashMap::new();
        for a in arrays.iter_mut() {
            let (true, None, Some(done)) =
                (a.syncing(), a.sync_pending.as_ref(), a.sync_done_sectors)
            else {
                continue;
            };
            let key = format!("{}:{}", a.key(), a.sync_action);
            let entry = match self.seen.get(&key) {
                Some(p) if p.done == done => *p,
                _ => Progress { done, since: now },
            };
            let still = now.saturating_duration_since(entry.since);
            if still >= after {
                a.stalled_secs = Some(still.as_secs());
            }
            keep.insert(key, entry);
        }
        self.seen = keep;
    }
}

/// Reads both sources. `Err` only when every source failed.
fn read_all(root: &HostRoot) -> Result<Observation, Failure> {
    let mut problems = Vec::new();
    let sys = match sysfs::read_arrays(root) {
        Ok(s) => s,
        Err(f) => {
            problems.push(f.message.clone());
            None
        }
    };
    let md = match root.read_optional(MDSTAT) {
        Ok(None) => None,
        Ok(Some(text)) => match parse_mdstat(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                let f = Failure::malformed(&root.path(MDSTAT), &e);
                if sys.as_ref().is_none_or(|s| s.is_empty()) {
                    return Err(f);
                }
                problems.push(f.message);
                None
            }
        },
        Err(e) => {
            let f = Failure::read(&e);
            if sys.as_ref().is_none_or(|s| s.is_empty()) {
                return Err(f);
            }
            problems.push(f.message);
            None
        }
    };
    let md_present = md.is_some() || sys.as_ref().is_some_and(|s| !s.is_empty());
    Ok(Observation {
        personalities: md
            .as_ref()
            .map(|m| m.personalities.clone())
            .unwrap_or_default(),
        arrays: merge(sys.unwrap_or_default(), md.as_ref()),
        md_present,
        problems,
    })
}

/// The `md-raid` check.
#[derive(Debug)]
pub struct MdRaidCheck {
    cfg: MdRaidConfig,
    stalls: StallTracker,
}

impl MdRaidCheck {
    /// A check with this configuration.
    pub fn new(cfg: MdRaidConfig) -> Self {
        MdRaidCheck {
            cfg,
            stalls: StallTracker::default(),
        }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let mut obs = match ctx.blocking(read_all).await {
            Ok(o) => o,
            Err(f) => return f.into(),
        };
        if ctx.mode == Mode::Agent {
            self.stalls.observe(
                &mut obs.arrays,
                Instant::now(),
                Duration::from_secs(self.cfg.stall_after_secs),
            );
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for MdRaidCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::MdRaid
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mdstat_arrays(text: &str) -> Vec<ArrayInfo> {
        merge(Vec::new(), Some(&parse_mdstat(text).unwrap()))
    }

    fn verdict(text: &str) -> (Status, String) {
        let obs = Observation {
            arrays: mdstat_arrays(text),
            md_present: true,
            ..Observation::default()
        };
        let out = evaluate(&obs, &MdRaidConfig::default());
        (out.status, out.summary)
    }

    #[test]
    fn verdict_table() {
        let cases: &[(&str, &str, Status, &str)] = &[
            (
                "in sync",
                "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n",
                Status::Ok,
                "1 array OK: md0 raid1 [UU]",
            ),
            (
                "scheduled check",
                "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  check = 5.7% (5/100) finish=0.2min speed=114176K/sec\n",
                Status::Ok,
                "md0 check 5.7%, ETA 12s",
            ),
            (
                "resync after unclean shutdown",
                "md8 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync =  8.5% (8/100) finish=17.0min speed=259783K/sec\n",
                Status::Warn,
                "md8 resync 8.5%, ETA 17m",
            ),
            (
                "pending resync",
                "md9 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  resync=DELAYED\n",
                Status::Warn,
                "md9 resync pending (DELAYED)",
            ),
            (
                "reshape",
                "md4 : active raid5 a[0] b[1] c[2] d[3]\n  100 blocks [4/4] [UUUU]\n  [=>..]  reshape = 56.1% (56/100) finish=1868.1min speed=7640K/sec\n",
                Status::Warn,
                "md4 reshape 56.1%, ETA 1d07h",
            ),
            (
                "degraded raid6 recovering, redundancy left",
                "md6 : active raid6 a[0] b[1] c[2] d[4]\n  100 blocks [4/3] [UUU_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n",
                Status::Warn,
                "md6 degraded [UUU_] recovering 42.1%, ETA 37m",
            ),
            (
                "2-disk raid1 recovering: no redundancy left",
                "md1 : active raid1 b[2] a[0]\n  100 blocks [2/1] [U_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n",
                Status::Crit,
                "md1 degraded [U_] recovering 42.1%, ETA 37m, no redundancy left",
            ),
            (
                "degraded, not recovering",
                "md7 : active raid6 a[0] b[1](F) c[2] d[3]\n  100 blocks [4/3] [U_UU]\n",
                Status::Crit,
                "md7 degraded [U_UU] (1 of 4 missing), not recovering",
            ),
            (
                "faulty member attached, spare took over",
                "md5 : active raid1 a[0] b[2](F) c[1]\n  100 blocks [2/2] [UU]\n",
                Status::Warn,
                "md5 raid1 [UU], faulty member b still attached",
            ),
            (
                "inactive",
                "md4 : inactive a[0](F) b[1](S)\n  100 blocks\n",
                Status::Crit,
                "md4 inactive",
            ),
            (
                "container is not an inactive array",
                "md219 : inactive sdb[2](S) sdc[1](S)\n  7932 blocks super external:imsm\n",
                Status::Ok,
                "md219 container",
            ),
            (
                "raid5 two missing: failed",
                "md3 : active raid5 a[0] b[1]\n  100 blocks [4/2] [UU__]\n",
                Status::Crit,
                "md3 failed [UU__]: 2 of 4 missing, more than raid5 survives",
            ),
        ];
        for (name, text, want, summary) in cases {
            let (got, s) = verdict(text);
            assert_eq!(got, *want, "{name}: {s}");
            assert!(s.contains(summary), "{name}: {s:?} lacks {summary:?}");
        }
    }

    #[test]
    fn worst_array_comes_first() {
        let (status, summary) = verdict(
            "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n\nmd8 : active raid1 c[0] d[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync =  8.5% (8/100) finish=17.0min speed=1K/sec\n\nmd1 : active raid1 e[0]\n  100 blocks [2/1] [U_]\n",
        );
        assert_eq!(status, Status::Crit);
        assert!(summary.starts_with("md1 degraded [U_]"), "{summary}");
        assert!(summary.contains("; md8 resync 8.5%"), "{summary}");
        assert!(summary.ends_with("; 1 other array OK"), "{summary}");
    }

    #[test]
    fn expected_and_ignored_arrays() {
        let arrays = mdstat_arrays("md0 : active raid1 a[0] b[1]\n  100 blocks [2/1] [U_]\n");
        let obs = Observation {
            arrays,
            md_present: true,
            ..Observation::default()
        };
        let cfg = MdRaidConfig {
            expect_arrays: vec!["md7".into()],
            ignore_arrays: vec!["md0".into()],
            ..MdRaidConfig::default()
        };
        let out = evaluate(&obs, &cfg);
        assert_eq!(out.status, Status::Crit);
        assert_eq!(out.summary, "md7 missing (expected)");
        let none = evaluate(&Observation::default(), &MdRaidConfig::default());
        assert_eq!(none.status, Status::Ok);
        assert_eq!(none.summary, "no md arrays (md driver not loaded)");
    }

    #[test]
    fn uuids_match_in_both_spellings() {
        let a = ArrayInfo {
            uuid: Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()),
            ..from_mdstat(
                &parse_mdstat("md1 : active raid1 a[0]\n 1 blocks [1/1] [U]\n")
                    .unwrap()
                    .arrays[0],
            )
        };
        assert!(a.matches("0fbf5f2c:add243c2:bd78a4be:3ab709ef"));
        assert!(a.matches("md1"));
        assert!(!a.matches("md2"));
    }

    #[test]
    fn stall_after_no_progress() {
        let text = "md1 : active raid1 b[2] a[0] c[1]\n  100 blocks [3/2] [UU_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n";
        let mut tracker = StallTracker::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(600);
        let mut arrays = mdstat_arrays(text);
        tracker.observe(&mut arrays, t0, after);
        assert_eq!(arrays[0].stalled_secs, None);
        let mut arrays = mdstat_arrays(text);
        tracker.observe(&mut arrays, t0 + Duration::from_secs(601), after);
        assert_eq!(arrays[0].stalled_secs, Some(601));
        let obs = Observation {
            arrays,
            md_present: true,
            ..Observation::default()
        };
        let out = evaluate(&obs, &MdRaidConfig::default());
        assert_eq!(out.status, Status::Crit);
        assert!(
            out.summary
                .starts_with("md1 stalled: recover at 42.1% for 10m"),
            "{}",
            out.summary
        );
        // Progress resumes: the clock restarts.
        let mut arrays = mdstat_arrays(&text.replace("(42/100)", "(43/100)"));
        tracker.observe(&mut arrays, t0 + Duration::from_secs(700), after);
        assert_eq!(arrays[0].stalled_secs, None);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["md10", "md2", "md_d0", "md127", "md0"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["md0", "md2", "md10", "md127", "md_d0"]);
    }
}
