//! The I/O: `/proc/diskstats` (whole disks only), `/proc/pressure/io` and the VMs' `io.pressure` under the
//! host root; the previous diskstats sample kept for rates across cycles.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    CgroupIoPressure, DiskIo, DiskStat, IoConfig, Observation, disk_rates, evaluate,
    parse_diskstats, partition_by_name, pseudo_device,
};
use crate::check::{
    BoxFuture, Check, CheckKind, Context, Failure, Mode, Outcome, UnknownReason, vm_cgroups,
};
use crate::host::HostRoot;
use crate::parse::{Psi, parse_psi};

const PSI_IO: &str = "/proc/pressure/io";
const DISKSTATS: &str = "/proc/diskstats";
const SYS_BLOCK: &str = "/sys/block";

/// One reading of the whole disks' counters.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) disks: Vec<DiskStat>,
}

/// Everything read in one pass.
struct Reading {
    sample: Option<Sample>,
    psi: Option<Psi>,
    cgroups: Vec<CgroupIoPressure>,
    notes: Vec<String>,
    problems: Vec<String>,
}

/// Whole disks: what `/sys/block` lists when sysfs is there (the kernel's own answer), else judged by name;
/// loop, RAM and optical devices never count.
fn whole_disks(root: &HostRoot, stats: Vec<DiskStat>) -> Vec<DiskStat> {
    let listed = root.list_dir(SYS_BLOCK).ok().flatten();
    stats
        .into_iter()
        .filter(|d| !pseudo_device(&d.name))
        .filter(|d| match &listed {
            Some(names) => names.contains(&d.name),
            None => !partition_by_name(&d.name),
        })
        .collect()
}

/// `/proc/diskstats`: `Ok(None)` when absent; malformed is a failure (it is the primary source).
fn read_disks(root: &HostRoot) -> Result<Option<Sample>, Failure> {
    let at = Instant::now();
    match root.read_optional(DISKSTATS) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_diskstats(&text)
            .map(|stats| {
                Some(Sample {
                    at,
                    disks: whole_disks(root, stats),
                })
            })
            .map_err(|e| Failure::malformed(&root.path(DISKSTATS), &e)),
        Err(e) => Err(Failure::read(&e)),
    }
}

fn read_psi(root: &HostRoot, notes: &mut Vec<String>, problems: &mut Vec<String>) -> Option<Psi> {
    match root.read_optional(PSI_IO) {
        Ok(Some(text)) => match parse_psi(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!("{}: malformed: {e}", root.path(PSI_IO).display()));
                None
            }
        },
        Ok(None) => {
            notes.push(format!(
                "PSI unsupported: {} absent (kernel < 4.20 or psi=0)",
                root.path(PSI_IO).display()
            ));
            None
        }
        // EOPNOTSUPP on read is how a kernel built with PSI but booted with psi=0 answers.
        Err(e) => {
            notes.push(format!("PSI unsupported: {e}"));
            None
        }
    }
}

fn read_all(root: &HostRoot, cfg: &IoConfig) -> Result<Reading, Failure> {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let sample = read_disks(root)?;
    let psi = read_psi(root, &mut notes, &mut problems);
    if sample.is_none() && psi.is_none() && problems.is_empty() {
        return Err(Failure::new(
            UnknownReason::Unsupported,
            format!(
                "neither {} nor {} exists",
                root.path(DISKSTATS).display(),
                root.path(PSI_IO).display()
            ),
        ));
    }
    let cgroups = match vm_cgroups::rank(root, &cfg.cgroup_parent, "io.pressure", cfg.top_cgroups) {
        Ok(r) => r
            .into_iter()
            .map(|r| CgroupIoPressure {
                cgroup: r.cgroup,
                name: r.name,
                psi_some_avg10: r.psi_some_avg10,
                psi_full_avg10: r.psi_full_avg10,
            })
            .collect(),
        Err(note) => {
            notes.push(note);
            Vec::new()
        }
    };
    Ok(Reading {
        sample,
        psi,
        cgroups,
        notes,
        problems,
    })
}

/// Every whole disk of `now`, with rates against `prev` where the same device was there; busiest first.
pub(super) fn disks_between(prev: Option<&Sample>, now: &Sample) -> (Vec<DiskIo>, f64) {
    let secs = prev.map_or(0.0, |p| now.at.saturating_duration_since(p.at).as_secs_f64());
    let mut disks: Vec<DiskIo> = now
        .disks
        .iter()
        .map(|d| {
            let before = prev.and_then(|p| {
                p.disks
                    .iter()
                    .find(|b| b.name == d.name && b.major == d.major && b.minor == d.minor)
            });
            match before {
                Some(b) => disk_rates(&d.name, &b.counters, &d.counters, secs),
                None => disk_rates(&d.name, &d.counters, &d.counters, 0.0),
            }
        })
        .collect();
    disks.sort_by(|a, b| {
        b.util_percent
            .unwrap_or(-1.0)
            .total_cmp(&a.util_percent.unwrap_or(-1.0))
            .then(b.await_ms.unwrap_or(-1.0).total_cmp(&a.await_ms.unwrap_or(-1.0)))
            .then(a.name.cmp(&b.name))
    });
    (disks, secs)
}

/// The `io` check with its previous diskstats sample.
#[derive(Debug)]
pub struct IoCheck {
    cfg: IoConfig,
    prev: Option<Sample>,
}

impl IoCheck {
    /// A check with this configuration.
    pub fn new(cfg: IoConfig) -> Self {
        IoCheck { cfg, prev: None }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let cfg = self.cfg.clone();
        let first = match ctx.mode {
            Mode::OneShot => {
                let first = ctx.blocking(read_disks).await.ok().flatten();
                if first.is_some() {
                    tokio::time::sleep(Duration::from_millis(cfg.window_ms)).await;
                }
                first
            }
            Mode::Agent => self.prev.take(),
        };
        let reading = match ctx.blocking(move |root| read_all(root, &cfg)).await {
            Ok(r) => r,
            Err(failure) => return failure.into(),
        };
        let mut obs = Observation {
            psi: reading.psi,
            cgroups: reading.cgroups,
            notes: reading.notes,
            problems: reading.problems,
            ..Observation::default()
        };
        if let Some(now) = &reading.sample {
            let (disks, secs) = disks_between(first.as_ref(), now);
            obs.disks = disks;
            obs.window_secs = secs;
            if first.is_none() && ctx.mode == Mode::Agent {
                obs.notes
                    .push("first sample: disk rates start with the next cycle".into());
            }
        }
        if ctx.mode == Mode::Agent {
            self.prev = reading.sample;
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for IoCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Io
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}
