//! The verdict per array and for the host. Pure: the verdict table is tested row by row.

use std::time::Duration;

use super::{ArrayInfo, MdRaidConfig, MdRaidDetails};
use crate::check::{Details, Outcome, Status};
use crate::util::fmt_duration;

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
    // The main condition of the array first, then what comes on top of it.
    let (mut status, primary) = primary(a, cfg);
    let mut phrases = vec![primary];
    status = status.worst(extras(a, cfg, &mut phrases));
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

/// `[UU_]`, with its leading space, or nothing.
fn map_text(a: &ArrayInfo) -> String {
    a.status_map
        .as_ref()
        .map(|m| format!(" [{m}]"))
        .unwrap_or_default()
}

/// The main condition of an array: container, inactive, broken, degraded, syncing, or healthy.
fn primary(a: &ArrayInfo, cfg: &MdRaidConfig) -> (Status, String) {
    let map = map_text(a);
    if a.container {
        let level = a.level.as_deref().map(|l| format!(" ({l})"));
        (
            Status::Ok,
            format!("container{}", level.unwrap_or_default()),
        )
    } else if a.inactive() {
        (Status::Crit, "inactive".to_owned())
    } else if a.state == "broken" {
        (Status::Crit, "broken (a member is missing)".to_owned())
    } else if a.degraded.unwrap_or(0) > 0 {
        degraded(a, cfg)
    } else if a.sync_pending.is_some() && !matches!(a.sync_action.as_str(), "check" | "repair") {
        let action = if a.sync_action == "idle" {
            "resync"
        } else {
            &a.sync_action
        };
        let pending = a.sync_pending.as_deref().unwrap_or("");
        (
            cfg.resync_status.status(),
            format!("{action} pending ({pending})"),
        )
    } else if matches!(a.sync_action.as_str(), "resync" | "reshape") {
        (cfg.resync_status.status(), progress_text(a))
    } else if a.sync_action != "idle" {
        // check, repair, frozen, or a word from a newer kernel: shown, not alarming.
        (Status::Ok, progress_text(a))
    } else {
        let shape = match (map.is_empty(), a.active_disks, a.raid_disks) {
            (false, _, _) => map,
            (true, Some(m), Some(n)) => format!(" {m}/{n} disks"),
            _ => String::new(),
        };
        (
            Status::Ok,
            format!("{}{shape}", a.level.as_deref().unwrap_or("md")),
        )
    }
}

/// A degraded array: failed beyond what the level survives, recovering (with or without redundancy left),
/// or not recovering at all.
fn degraded(a: &ArrayInfo, cfg: &MdRaidConfig) -> (Status, String) {
    let map = map_text(a);
    let missing = a.degraded.unwrap_or(0);
    let tol = tolerance(a.level.as_deref(), a.raid_disks);
    let counts = match a.raid_disks {
        Some(n) => format!("{missing} of {n} missing"),
        None => format!("{missing} missing"),
    };
    if tol.is_some_and(|t| missing > t) {
        let level = a.level.as_deref().unwrap_or("the level");
        return (
            Status::Crit,
            format!("failed{map}: {counts}, more than {level} survives"),
        );
    }
    if a.sync_action != "recover" {
        let mut p = format!("degraded{map} ({counts}), not recovering");
        if a.syncing() {
            p.push_str(&format!(" ({})", progress_text(a)));
        }
        return (Status::Crit, p);
    }
    let no_redundancy = tol.is_some_and(|t| missing >= t);
    let status = if no_redundancy {
        Status::Crit
    } else {
        cfg.recovering_status.status()
    };
    let shape = if map.is_empty() {
        format!(" ({counts})")
    } else {
        map
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
    (status, p)
}

/// What comes on top of the main condition: a faulty member still attached, mismatches after a check,
/// read-only. Returns the worst status these add.
fn extras(a: &ArrayInfo, cfg: &MdRaidConfig, phrases: &mut Vec<String>) -> Status {
    let mut status = Status::Ok;
    let faulty: Vec<&str> = a
        .members
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "faulty"))
        .map(|m| m.name.as_str())
        .collect();
    if !faulty.is_empty() && a.degraded.unwrap_or(0) == 0 && !a.inactive() {
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
    status
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
        out.reason = Some(crate::check::UnknownReason::Malformed);
    }
    out
}
