//! One [`ArrayInfo`] per array from sysfs (first) and /proc/mdstat (what sysfs lacks, or alone).

use std::collections::HashMap;

use super::mdstat::{Mdstat, MdstatArray};
use super::sysfs::{SyncCompleted, SysfsArray};
use super::{ArrayInfo, MemberInfo};
use crate::check::Status;

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
pub(super) fn natural_key(name: &str) -> (String, u64) {
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
