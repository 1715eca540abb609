//! `memory`: memory and swap *pressure*, not usage.
//!
//! Why pressure: swap used stays high long after the pressure that pushed pages out is gone, and a host
//! without swap is normal. What hurts VMs is stalling on memory right now, so the verdict rests on:
//! - MemAvailable vs MemTotal (`/proc/meminfo`; kernels before 3.14 lack MemAvailable and get the estimate
//!   `MemFree + Buffers + Cached + SReclaimable - Shmem`, flagged `mem_available_estimated`);
//! - PSI memory `some`/`full` (`/proc/pressure/memory`; absent PSI is reported, not fatal);
//! - swap-in/out rates and new OOM kills (`/proc/vmstat` `pswpin`/`pswpout`/`oom_kill`), measured over a short
//!   window in one-shot mode and across cycles in the agent;
//! - per-VM pressure: the cgroups under `machine.slice` (libvirt VMs) ranked by `memory.pressure` some avg10,
//!   so "which small VMs are swapping" is one glance.
//!
//! `/proc/meminfo` is the primary source: without it the check is UNKNOWN. A malformed secondary source
//! (PSI, vmstat) is named in the summary and lifts the status to at least UNKNOWN, so nothing is hidden.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{
    BoxFuture, Check, CheckKind, Context, Details, Failure, Mode, Outcome, Perf, Status,
    UnknownReason,
};
use crate::host::HostRoot;
use crate::parse::{ParseError, Psi, parse_key_values, parse_psi};
use crate::problems::Problems;
use crate::util::{fmt_bytes, fmt_rate};

const MEMINFO: &str = "/proc/meminfo";
const PSI_MEMORY: &str = "/proc/pressure/memory";
const VMSTAT: &str = "/proc/vmstat";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `[[check]] kind = "memory"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MemoryConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run.
    pub timeout_ms: u64,
    /// One-shot mode: window over which swap rates and OOM kills are measured.
    pub window_ms: u64,
    /// WARN when MemAvailable is below this share of MemTotal.
    pub warn_available_percent: f64,
    /// CRIT when MemAvailable is below this share of MemTotal.
    pub crit_available_percent: f64,
    /// WARN when PSI memory `some` avg10 is at or above this.
    pub warn_psi_some_avg10: f64,
    /// CRIT when PSI memory `full` avg10 is at or above this.
    pub crit_psi_full_avg10: f64,
    /// WARN when swap-in over the window (one-shot) or the interval (agent) reaches this rate.
    pub warn_swap_in_pages_per_sec: f64,
    /// CRIT when an OOM kill happened in the window.
    pub crit_on_oom_kill: bool,
    /// Agent: how long an OOM kill keeps the check CRIT (so one cycle's event is not missed).
    pub oom_kill_hold_secs: u64,
    /// How many cgroups to list in `top_cgroups`.
    pub top_cgroups: usize,
    /// Parent cgroup whose children are ranked (relative to the cgroup2 mount).
    pub cgroup_parent: String,
    /// Optional: WARN when some cgroup's `memory.pressure` some avg10 reaches this.
    pub warn_cgroup_psi_some_avg10: Option<f64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            enabled: true,
            timeout_ms: 3000,
            window_ms: 1000,
            warn_available_percent: 10.0,
            crit_available_percent: 5.0,
            warn_psi_some_avg10: 10.0,
            crit_psi_full_avg10: 5.0,
            warn_swap_in_pages_per_sec: 100.0,
            crit_on_oom_kill: true,
            oom_kill_hold_secs: 300,
            top_cgroups: 5,
            cgroup_parent: "machine.slice".into(),
            warn_cgroup_psi_some_avg10: None,
        }
    }
}

impl MemoryConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.percent("warn-available-percent", self.warn_available_percent);
        p.percent("crit-available-percent", self.crit_available_percent);
        if self.crit_available_percent > self.warn_available_percent {
            p.push(
                "crit-available-percent",
                "must not be above warn-available-percent (less available memory is worse)",
            );
        }
        p.percent("warn-psi-some-avg10", self.warn_psi_some_avg10);
        p.percent("crit-psi-full-avg10", self.crit_psi_full_avg10);
        if let Some(v) = self.warn_cgroup_psi_some_avg10 {
            p.percent("warn-cgroup-psi-some-avg10", v);
        }
        p.non_negative(
            "warn-swap-in-pages-per-sec",
            self.warn_swap_in_pages_per_sec,
        );
        p.timeout("timeout-ms", self.timeout_ms);
        p.window("window-ms", self.window_ms, self.timeout_ms);
        if self.top_cgroups > 100 {
            p.push("top-cgroups", "must be at most 100");
        }
        if self.cgroup_parent.contains("..") || self.cgroup_parent.starts_with('/') {
            p.push(
                "cgroup-parent",
                "must be a relative path below the cgroup2 mount, without \"..\"",
            );
        }
    }
}

/// The fields of `/proc/meminfo` the check uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meminfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable (absent before Linux 3.14).
    pub available: Option<u64>,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// SReclaimable.
    pub sreclaimable: u64,
    /// Shmem.
    pub shmem: u64,
    /// SwapTotal (0 without swap).
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
}

impl Meminfo {
    /// MemAvailable, or the documented estimate when the kernel lacks it; the flag says which.
    pub fn available_or_estimate(&self) -> (u64, bool) {
        match self.available {
            Some(a) => (a.min(self.total), false),
            None => {
                let est = (self.free as u128
                    + self.buffers as u128
                    + self.cached as u128
                    + self.sreclaimable as u128)
                    .saturating_sub(self.shmem as u128);
                (est.min(self.total as u128) as u64, true)
            }
        }
    }
}

/// Parses `/proc/meminfo`. MemTotal and MemFree are required; other fields default to 0.
pub fn parse_meminfo(text: &str) -> Result<Meminfo, ParseError> {
    let mut m = Meminfo::default();
    let (mut total, mut free) = (None, None);
    for (key, value) in parse_key_values(text)? {
        match key {
            "MemTotal" => total = Some(value),
            "MemFree" => free = Some(value),
            "MemAvailable" => m.available = Some(value),
            "Buffers" => m.buffers = value,
            "Cached" => m.cached = value,
            "SReclaimable" => m.sreclaimable = value,
            "Shmem" => m.shmem = value,
            "SwapTotal" => m.swap_total = value,
            "SwapFree" => m.swap_free = value,
            _ => {}
        }
    }
    m.total = total.ok_or_else(|| ParseError::file("no MemTotal line"))?;
    m.free = free.ok_or_else(|| ParseError::file("no MemFree line"))?;
    if m.total == 0 {
        return Err(ParseError::file("MemTotal is 0"));
    }
    Ok(m)
}

/// The `/proc/vmstat` counters the check uses. Each is absent when the kernel lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmCounters {
    /// Pages swapped in since boot.
    pub pswpin: Option<u64>,
    /// Pages swapped out since boot.
    pub pswpout: Option<u64>,
    /// OOM kills since boot (Linux 4.13+).
    pub oom_kill: Option<u64>,
}

/// Parses `/proc/vmstat`. Every line must be `name value`; unknown names are skipped.
pub fn parse_vmstat(text: &str) -> Result<VmCounters, ParseError> {
    let mut c = VmCounters::default();
    for (key, value) in parse_key_values(text)? {
        match key {
            "pswpin" => c.pswpin = Some(value),
            "pswpout" => c.pswpout = Some(value),
            "oom_kill" => c.oom_kill = Some(value),
            _ => {}
        }
    }
    Ok(c)
}

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
fn scan_cgroups(root: &HostRoot, parent: &str, n: usize) -> (Vec<CgroupPressure>, Option<String>) {
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

/// Details of the `memory` check (JSON `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryDetails {
    /// MemTotal in bytes.
    pub mem_total_bytes: u64,
    /// MemAvailable (or its estimate) in bytes.
    pub mem_available_bytes: u64,
    /// MemAvailable as a share of MemTotal.
    pub mem_available_percent: f64,
    /// True when the kernel lacks MemAvailable and the value is estimated.
    pub mem_available_estimated: bool,
    /// SwapTotal in bytes.
    pub swap_total_bytes: u64,
    /// SwapFree in bytes.
    pub swap_free_bytes: u64,
    /// Whether PSI was available.
    pub psi_supported: bool,
    /// PSI memory some avg10.
    pub psi_some_avg10: Option<f64>,
    /// PSI memory some avg60.
    pub psi_some_avg60: Option<f64>,
    /// PSI memory full avg10.
    pub psi_full_avg10: Option<f64>,
    /// PSI memory full avg60.
    pub psi_full_avg60: Option<f64>,
    /// Swap-in in pages/s over the window.
    pub swap_in_pages_per_sec: Option<f64>,
    /// Swap-out in pages/s over the window.
    pub swap_out_pages_per_sec: Option<f64>,
    /// OOM kills in the window.
    pub oom_kills: Option<u64>,
    /// Window length in seconds.
    pub window_secs: f64,
    /// Top cgroups by memory pressure, worst first.
    pub top_cgroups: Vec<CgroupPressure>,
    /// Notes (PSI unsupported, no machine.slice, first sample).
    pub notes: Vec<String>,
}

impl MemoryDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut v = vec![
            Perf::new("available", self.mem_available_percent, "%").bounds(Some(0.0), Some(100.0)),
            Perf::new("available_bytes", self.mem_available_bytes as f64, "B")
                .bounds(Some(0.0), Some(self.mem_total_bytes as f64)),
            Perf::new(
                "swap_used_bytes",
                self.swap_total_bytes.saturating_sub(self.swap_free_bytes) as f64,
                "B",
            )
            .bounds(Some(0.0), Some(self.swap_total_bytes as f64)),
        ];
        if let Some(x) = self.psi_some_avg10 {
            v.push(Perf::new("psi_some_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        if let Some(x) = self.psi_full_avg10 {
            v.push(Perf::new("psi_full_avg10", x, "").bounds(Some(0.0), Some(100.0)));
        }
        if let Some(x) = self.swap_in_pages_per_sec {
            v.push(Perf::new("swap_in_pages_per_sec", x, "").bounds(Some(0.0), None));
        }
        if let Some(x) = self.swap_out_pages_per_sec {
            v.push(Perf::new("swap_out_pages_per_sec", x, "").bounds(Some(0.0), None));
        }
        if let Some(x) = self.oom_kills {
            v.push(Perf::new("oom_kills", x as f64, "").bounds(Some(0.0), None));
        }
        v
    }
}

/// The verdict. Pure: every threshold is table-tested.
pub fn evaluate(obs: &Observation, cfg: &MemoryConfig) -> Outcome {
    let m = &obs.meminfo;
    let (available, estimated) = m.available_or_estimate();
    let available_pct = available as f64 * 100.0 / m.total as f64;
    let psi_some = obs.psi.map(|p| p.some);
    let psi_full = obs.psi.and_then(|p| p.full);

    let mut status = Status::Ok;
    let mut reasons: Vec<String> = Vec::new();
    let mut flag = |s: Status, why: String| {
        status = status.worst(s);
        reasons.push(why);
    };
    if available_pct < cfg.crit_available_percent {
        flag(
            Status::Crit,
            format!(
                "available {available_pct:.1}% < {}%",
                cfg.crit_available_percent
            ),
        );
    } else if available_pct < cfg.warn_available_percent {
        flag(
            Status::Warn,
            format!(
                "available {available_pct:.1}% < {}%",
                cfg.warn_available_percent
            ),
        );
    }
    if let Some(full) = psi_full
        && full.avg10 >= cfg.crit_psi_full_avg10
    {
        flag(
            Status::Crit,
            format!(
                "psi full avg10 {:.2} >= {}",
                full.avg10, cfg.crit_psi_full_avg10
            ),
        );
    }
    if let Some(some) = psi_some
        && some.avg10 >= cfg.warn_psi_some_avg10
    {
        flag(
            Status::Warn,
            format!(
                "psi some avg10 {:.2} >= {}",
                some.avg10, cfg.warn_psi_some_avg10
            ),
        );
    }
    if cfg.crit_on_oom_kill && obs.oom_recent {
        let n = obs.oom_kills.filter(|n| *n > 0);
        flag(
            Status::Crit,
            match n {
                Some(n) => format!("{n} OOM kill(s) in the last {:.0}s", obs.window_secs),
                None => format!("OOM kill within the last {}s", cfg.oom_kill_hold_secs),
            },
        );
    }
    if let Some(rate) = obs.swap_in_per_sec
        && rate >= cfg.warn_swap_in_pages_per_sec
    {
        flag(
            Status::Warn,
            format!(
                "swap-in {} pages/s >= {}",
                fmt_rate(rate),
                cfg.warn_swap_in_pages_per_sec
            ),
        );
    }
    if let Some(limit) = cfg.warn_cgroup_psi_some_avg10 {
        let hot: Vec<String> = obs
            .cgroups
            .iter()
            .filter(|c| c.psi_some_avg10 >= limit)
            .map(|c| format!("{} {:.2}", c.name, c.psi_some_avg10))
            .collect();
        if !hot.is_empty() {
            flag(
                Status::Warn,
                format!("VM memory pressure >= {limit}: {}", hot.join(", ")),
            );
        }
    }
    for p in &obs.problems {
        flag(Status::Unknown, p.clone());
    }

    let mut figures = format!(
        "available {available_pct:.1}% of {}{}",
        fmt_bytes(m.total),
        if estimated { " (estimated)" } else { "" }
    );
    match (psi_some, psi_full) {
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
    let summary = if reasons.is_empty() {
        figures
    } else {
        format!("{}; {figures}", reasons.join("; "))
    };

    let details = MemoryDetails {
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
    };
    let mut out = Outcome::new(status, summary, Details::Memory(details));
    if status == Status::Unknown {
        out.reason = Some(UnknownReason::Malformed);
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One reading of the counters, with the instant it was taken.
#[derive(Debug, Clone, Copy)]
struct VmSample {
    at: Instant,
    counters: VmCounters,
}

/// Everything read in one pass over the files.
struct Reading {
    meminfo: Meminfo,
    psi: Option<Psi>,
    vm: Option<VmSample>,
    cgroups: Vec<CgroupPressure>,
    notes: Vec<String>,
    problems: Vec<String>,
}

/// Reads `/proc/vmstat`: `Ok(None)` when absent, `Err(message)` when unreadable or malformed.
fn read_vmstat(root: &HostRoot) -> Result<Option<VmSample>, String> {
    let at = Instant::now();
    match root.read_optional(VMSTAT) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_vmstat(&text)
            .map(|counters| Some(VmSample { at, counters }))
            .map_err(|e| format!("{}: malformed: {e}", root.path(VMSTAT).display())),
        Err(e) => Err(e.to_string()),
    }
}

/// One pass over every source. `Err` only when the primary source (`/proc/meminfo`) fails.
fn read_all(root: &HostRoot, cfg: &MemoryConfig, with_vmstat: bool) -> Result<Reading, Failure> {
    let text = root.read(MEMINFO).map_err(|e| Failure::read(&e))?;
    let meminfo = parse_meminfo(&text).map_err(|e| Failure::malformed(&root.path(MEMINFO), &e))?;
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let psi = match root.read_optional(PSI_MEMORY) {
        Ok(Some(text)) => match parse_psi(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!(
                    "{}: malformed: {e}",
                    root.path(PSI_MEMORY).display()
                ));
                None
            }
        },
        Ok(None) => {
            notes.push(format!(
                "PSI unsupported: {} absent (kernel < 4.20 or psi=0)",
                root.path(PSI_MEMORY).display()
            ));
            None
        }
        // EOPNOTSUPP on read is how a kernel built with PSI but booted with psi=0 answers.
        Err(e) => {
            notes.push(format!("PSI unsupported: {e}"));
            None
        }
    };
    let vm = if with_vmstat {
        match read_vmstat(root) {
            Ok(v) => v,
            Err(msg) => {
                problems.push(msg);
                None
            }
        }
    } else {
        None
    };
    let (cgroups, note) = scan_cgroups(root, &cfg.cgroup_parent, cfg.top_cgroups);
    notes.extend(note);
    Ok(Reading {
        meminfo,
        psi,
        vm,
        cgroups,
        notes,
        problems,
    })
}

/// Rates and OOM kills between two samples; `None` on a counter reset (reboot under a --root, bad data).
fn rates(prev: &VmSample, now: &VmSample) -> (Option<f64>, Option<f64>, Option<u64>, f64) {
    let secs = now.at.saturating_duration_since(prev.at).as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    let per_sec = |d: Option<u64>| d.filter(|_| secs > 0.0).map(|d| d as f64 / secs);
    (
        per_sec(delta(prev.counters.pswpin, now.counters.pswpin)),
        per_sec(delta(prev.counters.pswpout, now.counters.pswpout)),
        delta(prev.counters.oom_kill, now.counters.oom_kill),
        secs,
    )
}

/// The `memory` check with what it remembers between cycles.
#[derive(Debug)]
pub struct MemoryCheck {
    cfg: MemoryConfig,
    prev: Option<VmSample>,
    last_oom: Option<Instant>,
}

impl MemoryCheck {
    /// A check with this configuration.
    pub fn new(cfg: MemoryConfig) -> Self {
        MemoryCheck {
            cfg,
            prev: None,
            last_oom: None,
        }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let cfg = self.cfg.clone();
        let (first, reading) = match ctx.mode {
            Mode::OneShot => {
                let first = ctx.blocking(read_vmstat).await;
                tokio::time::sleep(Duration::from_millis(cfg.window_ms)).await;
                let reading = ctx.blocking(move |root| read_all(root, &cfg, true)).await;
                (first.ok().flatten(), reading)
            }
            Mode::Agent => {
                let reading = ctx.blocking(move |root| read_all(root, &cfg, true)).await;
                (self.prev, reading)
            }
        };
        let reading = match reading {
            Ok(r) => r,
            Err(failure) => return failure.into(),
        };
        let mut obs = Observation {
            meminfo: reading.meminfo,
            psi: reading.psi,
            cgroups: reading.cgroups,
            notes: reading.notes,
            problems: reading.problems,
            ..Observation::default()
        };
        if let (Some(prev), Some(now)) = (first, reading.vm) {
            let (swap_in, swap_out, ooms, secs) = rates(&prev, &now);
            obs.swap_in_per_sec = swap_in;
            obs.swap_out_per_sec = swap_out;
            obs.oom_kills = ooms;
            obs.window_secs = secs;
            if ooms.is_some_and(|n| n > 0) {
                self.last_oom = Some(now.at);
            }
        } else if reading.vm.is_some() && ctx.mode == Mode::Agent {
            obs.notes
                .push("first sample: rates start with the next cycle".into());
        }
        let hold = match ctx.mode {
            Mode::OneShot => Duration::ZERO,
            Mode::Agent => Duration::from_secs(self.cfg.oom_kill_hold_secs),
        };
        obs.oom_recent = match (self.last_oom, reading.vm) {
            (Some(at), Some(now)) => now.at.saturating_duration_since(at) <= hold,
            _ => false,
        };
        if ctx.mode == Mode::Agent {
            self.prev = reading.vm;
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for MemoryCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Memory
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
    use crate::parse::PsiLine;

    const GIB: u64 = 1 << 30;

    fn obs(available_pct: u64) -> Observation {
        Observation {
            meminfo: Meminfo {
                total: 100 * GIB,
                free: GIB,
                available: Some(available_pct * GIB),
                swap_total: 8 * GIB,
                swap_free: 8 * GIB,
                ..Meminfo::default()
            },
            psi: Some(psi(0.0, 0.0)),
            swap_in_per_sec: Some(0.0),
            swap_out_per_sec: Some(0.0),
            oom_kills: Some(0),
            window_secs: 1.0,
            ..Observation::default()
        }
    }

    fn psi(some: f64, full: f64) -> Psi {
        let line = |avg10| PsiLine {
            avg10,
            avg60: 0.0,
            avg300: 0.0,
            total: 0,
        };
        Psi {
            some: line(some),
            full: Some(line(full)),
        }
    }

    fn status_of(o: Observation) -> (Status, String) {
        let out = evaluate(&o, &MemoryConfig::default());
        (out.status, out.summary)
    }

    #[test]
    fn each_threshold_is_crossed() {
        let cases: Vec<(&str, Observation, Status, &str)> = vec![
            ("healthy", obs(50), Status::Ok, "available 50.0%"),
            (
                "available just above warn",
                obs(10),
                Status::Ok,
                "available",
            ),
            (
                "available below warn",
                obs(9),
                Status::Warn,
                "available 9.0% < 10%",
            ),
            (
                "available below crit",
                obs(4),
                Status::Crit,
                "available 4.0% < 5%",
            ),
            (
                "psi some at warn",
                Observation {
                    psi: Some(psi(10.0, 0.0)),
                    ..obs(50)
                },
                Status::Warn,
                "psi some avg10 10.00 >= 10",
            ),
            (
                "psi full at crit",
                Observation {
                    psi: Some(psi(0.0, 5.0)),
                    ..obs(50)
                },
                Status::Crit,
                "psi full avg10 5.00 >= 5",
            ),
            (
                "sustained swap-in",
                Observation {
                    swap_in_per_sec: Some(250.0),
                    ..obs(50)
                },
                Status::Warn,
                "swap-in 250 pages/s",
            ),
            (
                "swap-out alone is not pressure",
                Observation {
                    swap_out_per_sec: Some(5000.0),
                    ..obs(50)
                },
                Status::Ok,
                "swap-in 0/s",
            ),
            (
                "oom kill",
                Observation {
                    oom_kills: Some(2),
                    oom_recent: true,
                    ..obs(50)
                },
                Status::Crit,
                "2 OOM kill(s)",
            ),
            (
                "malformed secondary source is not hidden",
                Observation {
                    problems: vec!["/proc/vmstat: malformed: line 3: bad value".into()],
                    ..obs(50)
                },
                Status::Unknown,
                "/proc/vmstat: malformed",
            ),
            (
                "malformed secondary source does not mask a crit",
                Observation {
                    problems: vec!["/proc/vmstat: malformed".into()],
                    ..obs(2)
                },
                Status::Crit,
                "/proc/vmstat: malformed",
            ),
        ];
        for (name, o, want, text) in cases {
            let (got, summary) = status_of(o);
            assert_eq!(got, want, "{name}: {summary}");
            assert!(summary.contains(text), "{name}: {summary:?} lacks {text:?}");
        }
    }

    #[test]
    fn no_swap_and_no_psi_is_normal() {
        let mut o = obs(50);
        o.meminfo.swap_total = 0;
        o.meminfo.swap_free = 0;
        o.psi = None;
        o.swap_in_per_sec = None;
        let out = evaluate(&o, &MemoryConfig::default());
        assert_eq!(out.status, Status::Ok, "{}", out.summary);
        assert!(out.summary.contains("psi unsupported"), "{}", out.summary);
        assert!(out.summary.contains("no swap"), "{}", out.summary);
        let Details::Memory(d) = out.details else {
            panic!("memory details expected")
        };
        assert!(!d.psi_supported);
        assert_eq!(d.psi_some_avg10, None);
    }

    #[test]
    fn hot_vm_warns_only_when_configured() {
        let mut o = obs(50);
        o.cgroups = vec![CgroupPressure {
            cgroup: "machine-qemu\\x2d3\\x2dsmall.scope".into(),
            name: "qemu-3-small".into(),
            psi_some_avg10: 40.0,
            psi_full_avg10: 10.0,
            memory_current_bytes: None,
            memory_max_bytes: None,
            swap_current_bytes: None,
        }];
        let plain = evaluate(&o, &MemoryConfig::default());
        assert_eq!(plain.status, Status::Ok);
        assert!(
            plain.summary.contains("top VM qemu-3-small some 40.00"),
            "{}",
            plain.summary
        );
        let cfg = MemoryConfig {
            warn_cgroup_psi_some_avg10: Some(20.0),
            ..MemoryConfig::default()
        };
        let hot = evaluate(&o, &cfg);
        assert_eq!(hot.status, Status::Warn, "{}", hot.summary);
    }

    #[test]
    fn estimate_without_memavailable() {
        let m = Meminfo {
            total: 1000,
            free: 100,
            available: None,
            buffers: 50,
            cached: 300,
            sreclaimable: 40,
            shmem: 90,
            ..Meminfo::default()
        };
        assert_eq!(m.available_or_estimate(), (400, true));
        let over = Meminfo { cached: 5000, ..m };
        assert_eq!(over.available_or_estimate(), (1000, true));
    }

    #[test]
    fn cgroup_names_are_unescaped() {
        assert_eq!(
            cgroup_display_name("machine-qemu\\x2d1\\x2dvm1.scope"),
            "qemu-1-vm1"
        );
        assert_eq!(cgroup_display_name("libvirt"), "libvirt");
        assert_eq!(cgroup_display_name("a\\xzz.scope"), "a\\xzz");
        assert_eq!(cgroup_display_name("trailing\\x"), "trailing\\x");
    }

    #[test]
    fn rates_survive_counter_reset() {
        let t0 = Instant::now();
        let prev = VmSample {
            at: t0,
            counters: VmCounters {
                pswpin: Some(1000),
                pswpout: Some(10),
                oom_kill: Some(5),
            },
        };
        let now = VmSample {
            at: t0 + Duration::from_secs(2),
            counters: VmCounters {
                pswpin: Some(10),
                pswpout: Some(30),
                oom_kill: Some(6),
            },
        };
        let (si, so, oom, secs) = rates(&prev, &now);
        assert_eq!((si, so, oom, secs), (None, Some(10.0), Some(1), 2.0));
    }

    #[test]
    fn config_rejects_inverted_thresholds() {
        let cfg = MemoryConfig {
            warn_available_percent: 5.0,
            crit_available_percent: 10.0,
            ..MemoryConfig::default()
        };
        let mut p = Problems::default();
        cfg.validate(&mut p);
        assert!(p.to_string().contains("crit-available-percent"), "{p}");
    }
}
