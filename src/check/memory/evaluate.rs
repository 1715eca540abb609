//! The verdict: availability, PSI, swap-in and OOM kills against the thresholds. Pure.

use super::{CgroupPressure, Meminfo, MemoryConfig, MemoryDetails};
use crate::check::{Details, Findings, Outcome, Status, UnknownReason};
use crate::parse::Psi;
use crate::util::{fmt_bytes, fmt_rate};

/// What the check looked at, ready for [`evaluate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// `/proc/meminfo`.
    pub meminfo: Meminfo,
    /// PSI memory; `None` when unsupported or malformed (see notes/problems).
    pub psi: Option<Psi>,
    /// Swap-in rate in pages/s; `None` without a previous sample.
    pub swap_in_per_sec: Option<f64>,
    /// Swap-out rate in pages/s.
    pub swap_out_per_sec: Option<f64>,
    /// OOM kills in the window; `None` when the kernel lacks the counter or there is no previous sample.
    pub oom_kills: Option<u64>,
    /// An OOM kill within the hold time (agent) or the window (one-shot).
    pub oom_recent: bool,
    /// Length of the window, in seconds.
    pub window_secs: f64,
    /// Top cgroups by pressure.
    pub cgroups: Vec<CgroupPressure>,
    /// Facts worth knowing that change nothing (PSI unsupported, no machine.slice).
    pub notes: Vec<String>,
    /// Secondary sources that were unreadable or malformed: each lifts the status to at least UNKNOWN.
    pub problems: Vec<String>,
}

/// The verdict. Pure: every threshold is table-tested.
pub fn evaluate(obs: &Observation, cfg: &MemoryConfig) -> Outcome {
    let (available, estimated) = obs.meminfo.available_or_estimate();
    let available_pct = available as f64 * 100.0 / obs.meminfo.total as f64;
    let mut findings = Findings::default();
    judge_host(&mut findings, obs, cfg, available_pct);
    judge_vms(&mut findings, obs, cfg);
    for p in &obs.problems {
        findings.flag(Status::Unknown, p.clone());
    }
    let (status, summary) = findings.summary(figures(obs, available_pct, estimated));
    let details = details(obs, available, available_pct, estimated);
    let mut out = Outcome::new(status, summary, Details::Memory(details));
    if status == Status::Unknown {
        out.reason = Some(UnknownReason::Malformed);
    }
    out
}

/// The host-wide thresholds: availability, PSI, OOM kills, swap-in.
fn judge_host(f: &mut Findings, obs: &Observation, cfg: &MemoryConfig, available_pct: f64) {
    if available_pct < cfg.crit_available_percent {
        f.flag(
            Status::Crit,
            format!(
                "available {available_pct:.1}% < {}%",
                cfg.crit_available_percent
            ),
        );
    } else if available_pct < cfg.warn_available_percent {
        f.flag(
            Status::Warn,
            format!(
                "available {available_pct:.1}% < {}%",
                cfg.warn_available_percent
            ),
        );
    }
    if let Some(full) = obs.psi.and_then(|p| p.full)
        && full.avg10 >= cfg.crit_psi_full_avg10
    {
        f.flag(
            Status::Crit,
            format!(
                "psi full avg10 {:.2} >= {}",
                full.avg10, cfg.crit_psi_full_avg10
            ),
        );
    }
    if let Some(some) = obs.psi.map(|p| p.some)
        && some.avg10 >= cfg.warn_psi_some_avg10
    {
        f.flag(
            Status::Warn,
            format!(
                "psi some avg10 {:.2} >= {}",
                some.avg10, cfg.warn_psi_some_avg10
            ),
        );
    }
    if cfg.crit_on_oom_kill && obs.oom_recent {
        f.flag(
            Status::Crit,
            match obs.oom_kills.filter(|n| *n > 0) {
                Some(n) => format!("{n} OOM kill(s) in the last {:.0}s", obs.window_secs),
                None => format!("OOM kill within the last {}s", cfg.oom_kill_hold_secs),
            },
        );
    }
    if let Some(rate) = obs.swap_in_per_sec
        && rate >= cfg.warn_swap_in_pages_per_sec
    {
        f.flag(
            Status::Warn,
            format!(
                "swap-in {} pages/s >= {}",
                fmt_rate(rate),
                cfg.warn_swap_in_pages_per_sec
            ),
        );
    }
}

/// VMs under memory pressure, when `warn-cgroup-psi-some-avg10` is set.
fn judge_vms(f: &mut Findings, obs: &Observation, cfg: &MemoryConfig) {
    let Some(limit) = cfg.warn_cgroup_psi_some_avg10 else {
        return;
    };
    let hot: Vec<String> = obs
        .cgroups
        .iter()
        .filter(|c| c.psi_some_avg10 >= limit)
        .map(|c| format!("{} {:.2}", c.name, c.psi_some_avg10))
        .collect();
    if !hot.is_empty() {
        f.flag(
            Status::Warn,
            format!("VM memory pressure >= {limit}: {}", hot.join(", ")),
        );
    }
}

/// The figures of the summary line, after the reasons.
fn figures(obs: &Observation, available_pct: f64, estimated: bool) -> String {
    let m = &obs.meminfo;
    let mut figures = format!(
        "available {available_pct:.1}% of {}{}",
        fmt_bytes(m.total),
        if estimated { " (estimated)" } else { "" }
    );
    match (obs.psi.map(|p| p.some), obs.psi.and_then(|p| p.full)) {
        (Some(s), Some(f)) => {
            figures.push_str(&format!(", psi some {:.2} full {:.2}", s.avg10, f.avg10))
        }
        (Some(s), None) => figures.push_str(&format!(", psi some {:.2}", s.avg10)),
        _ => figures.push_str(", psi unsupported"),
    }
    match obs.swap_in_per_sec {
        Some(r) => figures.push_str(&format!(", swap-in {}/s", fmt_rate(r))),
        None if m.swap_total == 0 => figures.push_str(", no swap"),
        None => {}
    }
    if let Some(top) = obs.cgroups.first()
        && top.psi_some_avg10 > 0.0
    {
        figures.push_str(&format!(
            ", top VM {} some {:.2}",
            top.name, top.psi_some_avg10
        ));
    }
    figures
}

fn details(
    obs: &Observation,
    available: u64,
    available_pct: f64,
    estimated: bool,
) -> MemoryDetails {
    let m = &obs.meminfo;
    let psi_some = obs.psi.map(|p| p.some);
    let psi_full = obs.psi.and_then(|p| p.full);
    MemoryDetails {
        mem_total_bytes: m.total,
        mem_available_bytes: available,
        mem_available_percent: round2(available_pct),
        mem_available_estimated: estimated,
        swap_total_bytes: m.swap_total,
        swap_free_bytes: m.swap_free,
        psi_supported: obs.psi.is_some(),
        psi_some_avg10: psi_some.map(|p| p.avg10),
        psi_some_avg60: psi_some.map(|p| p.avg60),
        psi_full_avg10: psi_full.map(|p| p.avg10),
        psi_full_avg60: psi_full.map(|p| p.avg60),
        swap_in_pages_per_sec: obs.swap_in_per_sec.map(round2),
        swap_out_pages_per_sec: obs.swap_out_per_sec.map(round2),
        oom_kills: obs.oom_kills,
        window_secs: round2(obs.window_secs),
        top_cgroups: obs.cgroups.clone(),
        notes: obs.notes.clone(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
