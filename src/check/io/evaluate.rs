//! The verdict: PSI io against its thresholds, then each whole disk's utilisation and wait, then the VMs.
//! Pure.

use super::{CgroupIoPressure, DiskCounters, DiskIo, IoConfig, IoDetails};
use crate::check::{Details, Findings, Outcome, Status, UnknownReason};
use crate::parse::Psi;

/// Fewer I/Os than this in the window give no meaningful average wait.
pub const MIN_IOS_FOR_AWAIT: u64 = 5;

/// What the check looked at, ready for [`evaluate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// PSI io; `None` when unsupported or malformed.
    pub psi: Option<Psi>,
    /// Whole disks with their rates (absent on a first sample).
    pub disks: Vec<DiskIo>,
    /// Length of the window, seconds (0 without a previous sample).
    pub window_secs: f64,
    /// VMs by I/O pressure.
    pub cgroups: Vec<CgroupIoPressure>,
    /// Facts that change nothing.
    pub notes: Vec<String>,
    /// Secondary sources unreadable or malformed: each lifts the status to at least UNKNOWN.
    pub problems: Vec<String>,
}

/// Difference of a counter the kernel keeps in 32 bits (the `%u` time fields), across one wrap.
fn delta32(before: u64, after: u64) -> Option<u64> {
    if after >= before {
        Some(after - before)
    } else if before <= u64::from(u32::MAX) && after <= u64::from(u32::MAX) {
        Some(after + (1u64 << 32) - before)
    } else {
        None
    }
}

/// One disk over the window between two readings. `None` rates when the counters went backwards (a reboot
/// under a redirected root, a device replaced) or the window is empty.
pub fn disk_rates(name: &str, before: &DiskCounters, after: &DiskCounters, secs: f64) -> DiskIo {
    let mut d = DiskIo {
        name: name.to_owned(),
        util_percent: None,
        await_ms: None,
        read_iops: None,
        write_iops: None,
        read_kib_per_sec: None,
        write_kib_per_sec: None,
        in_flight: after.in_flight,
    };
    let d64 = |a: u64, b: u64| b.checked_sub(a);
    let (Some(reads), Some(writes), Some(discards), Some(flushes)) = (
        d64(before.reads, after.reads),
        d64(before.writes, after.writes),
        d64(before.discards, after.discards),
        d64(before.flushes, after.flushes),
    ) else {
        return d;
    };
    if secs <= 0.0 {
        return d;
    }
    let per_sec = |x: u64| round2(x as f64 / secs);
    d.read_iops = Some(per_sec(reads));
    d.write_iops = Some(per_sec(writes));
    d.read_kib_per_sec = d64(before.sectors_read, after.sectors_read).map(|s| round2(s as f64 / 2.0 / secs));
    d.write_kib_per_sec =
        d64(before.sectors_written, after.sectors_written).map(|s| round2(s as f64 / 2.0 / secs));
    d.util_percent = delta32(before.io_ms, after.io_ms)
        .map(|ms| round2((ms as f64 / (secs * 10.0)).min(100.0)));
    let ios = reads
        .saturating_add(writes)
        .saturating_add(discards)
        .saturating_add(flushes);
    let ticks = [
        delta32(before.read_ms, after.read_ms),
        delta32(before.write_ms, after.write_ms),
        delta32(before.discard_ms, after.discard_ms),
        delta32(before.flush_ms, after.flush_ms),
    ];
    if ios >= MIN_IOS_FOR_AWAIT && ticks.iter().all(Option::is_some) {
        let total = ticks.iter().flatten().fold(0u64, |a, t| a.saturating_add(*t));
        d.await_ms = Some(round2(total as f64 / ios as f64));
    }
    d
}

/// The verdict. Pure: every threshold is table-tested.
pub fn evaluate(obs: &Observation, cfg: &IoConfig) -> Outcome {
    let mut f = Findings::default();
    judge_psi(&mut f, obs, cfg);
    let mut saturated = Vec::new();
    for d in obs.disks.iter().filter(|d| !cfg.ignore_disks.contains(&d.name)) {
        let mut why = Vec::new();
        if let Some(u) = d.util_percent.filter(|u| *u >= cfg.warn_util_percent) {
            why.push(format!("{u:.0}% busy"));
        }
        if let Some(a) = d.await_ms.filter(|a| *a >= cfg.warn_await_ms) {
            why.push(format!("await {a:.0}ms"));
        }
        if !why.is_empty() {
            saturated.push(format!("{} {}", d.name, why.join(", ")));
        }
    }
    if !saturated.is_empty() {
        f.flag(Status::Warn, format!("disk saturated: {}", saturated.join("; ")));
    }
    if let Some(limit) = cfg.warn_cgroup_psi_some_avg10 {
        let hot: Vec<String> = obs
            .cgroups
            .iter()
            .filter(|c| c.psi_some_avg10 >= limit)
            .map(|c| format!("{} {:.2}", c.name, c.psi_some_avg10))
            .collect();
        if !hot.is_empty() {
            f.flag(Status::Warn, format!("VM I/O pressure >= {limit}: {}", hot.join(", ")));
        }
    }
    for p in &obs.problems {
        f.flag(Status::Unknown, p.clone());
    }
    let (status, summary) = f.summary(figures(obs));
    let mut out = Outcome::new(status, summary, Details::Io(details(obs)));
    if status == Status::Unknown {
        out.reason = Some(UnknownReason::Malformed);
    }
    out
}

fn judge_psi(f: &mut Findings, obs: &Observation, cfg: &IoConfig) {
    let Some(psi) = obs.psi else {
        return;
    };
    if let Some(full) = psi.full
        && full.avg10 >= cfg.crit_psi_full_avg10
    {
        f.flag(
            Status::Crit,
            format!("psi io full avg10 {:.2} >= {}", full.avg10, cfg.crit_psi_full_avg10),
        );
    }
    if psi.some.avg10 >= cfg.warn_psi_some_avg10 {
        f.flag(
            Status::Warn,
            format!("psi io some avg10 {:.2} >= {}", psi.some.avg10, cfg.warn_psi_some_avg10),
        );
    }
}

/// `psi some 0.01 full 0.01, busiest vda 3% await 1.2ms, top VM qemu-3-db some 4.10`.
fn figures(obs: &Observation) -> String {
    let mut s = match obs.psi {
        Some(p) => match p.full {
            Some(full) => format!("psi some {:.2} full {:.2}", p.some.avg10, full.avg10),
            None => format!("psi some {:.2}", p.some.avg10),
        },
        None => "psi unsupported".to_owned(),
    };
    match obs.disks.first() {
        None => s.push_str(", no disks"),
        Some(d) => match (d.util_percent, d.await_ms) {
            (Some(u), Some(a)) => s.push_str(&format!(", busiest {} {u:.0}% await {a:.1}ms", d.name)),
            (Some(u), None) => s.push_str(&format!(", busiest {} {u:.0}%", d.name)),
            _ => s.push_str(&format!(", {} disk(s)", obs.disks.len())),
        },
    }
    if let Some(top) = obs.cgroups.first()
        && top.psi_some_avg10 > 0.0
    {
        s.push_str(&format!(", top VM {} some {:.2}", top.name, top.psi_some_avg10));
    }
    s
}

fn details(obs: &Observation) -> IoDetails {
    IoDetails {
        psi_supported: obs.psi.is_some(),
        psi_some_avg10: obs.psi.map(|p| p.some.avg10),
        psi_some_avg60: obs.psi.map(|p| p.some.avg60),
        psi_full_avg10: obs.psi.and_then(|p| p.full).map(|f| f.avg10),
        psi_full_avg60: obs.psi.and_then(|p| p.full).map(|f| f.avg60),
        disks: obs.disks.clone(),
        window_secs: round2(obs.window_secs),
        top_cgroups: obs.cgroups.clone(),
        notes: obs.notes.clone(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
