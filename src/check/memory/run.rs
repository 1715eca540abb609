//! The I/O: one pass over the files under the host root; the previous vmstat sample kept for rates.

use std::time::Duration;

use tokio::time::Instant;

use super::cgroups::scan_cgroups;
use super::{
    CgroupPressure, Meminfo, MemoryConfig, Observation, VmCounters, evaluate, parse_meminfo,
    parse_vmstat,
};
use crate::check::{BoxFuture, Check, CheckKind, Context, Failure, Mode, Outcome};
use crate::host::HostRoot;
use crate::parse::{Psi, parse_psi};

const MEMINFO: &str = "/proc/meminfo";
const PSI_MEMORY: &str = "/proc/pressure/memory";
const VMSTAT: &str = "/proc/vmstat";

/// One reading of the counters, with the instant it was taken.
#[derive(Debug, Clone, Copy)]
pub(super) struct VmSample {
    pub(super) at: Instant,
    pub(super) counters: VmCounters,
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

/// What changed between two vmstat samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rates {
    /// Pages swapped in per second.
    pub(super) swap_in_per_sec: Option<f64>,
    /// Pages swapped out per second.
    pub(super) swap_out_per_sec: Option<f64>,
    /// OOM kills between the samples.
    pub(super) oom_kills: Option<u64>,
    /// Seconds between the samples.
    pub(super) secs: f64,
}

/// Rates and OOM kills between two samples; `None` on a counter reset (reboot under a --root, bad data).
pub(super) fn rates(prev: &VmSample, now: &VmSample) -> Rates {
    let secs = now.at.saturating_duration_since(prev.at).as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    let per_sec = |d: Option<u64>| d.filter(|_| secs > 0.0).map(|d| d as f64 / secs);
    Rates {
        swap_in_per_sec: per_sec(delta(prev.counters.pswpin, now.counters.pswpin)),
        swap_out_per_sec: per_sec(delta(prev.counters.pswpout, now.counters.pswpout)),
        oom_kills: delta(prev.counters.oom_kill, now.counters.oom_kill),
        secs,
    }
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
            let r = rates(&prev, &now);
            obs.swap_in_per_sec = r.swap_in_per_sec;
            obs.swap_out_per_sec = r.swap_out_per_sec;
            obs.oom_kills = r.oom_kills;
            obs.window_secs = r.secs;
            if r.oom_kills.is_some_and(|n| n > 0) {
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
