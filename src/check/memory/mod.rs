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

mod cgroups;
mod config;
mod details;
mod evaluate;
mod parse;
mod run;
pub mod wire;

pub use self::cgroups::{CgroupPressure, cgroup_display_name};
pub use self::config::MemoryConfig;
pub use self::details::MemoryDetails;
pub use self::evaluate::{Observation, evaluate};
pub use self::parse::{Meminfo, VmCounters, parse_meminfo, parse_vmstat};
pub use self::run::MemoryCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `memory` check, as the registry knows it.
pub struct Memory;

impl Spec for Memory {
    type Config = MemoryConfig;
    type Details = MemoryDetails;
    type Pb = crate::pb::MemoryDetails;

    fn enabled(cfg: &MemoryConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &MemoryConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &MemoryConfig) -> Box<dyn Check> {
        Box::new(MemoryCheck::new(cfg.clone()))
    }

    fn perfdata(d: &MemoryDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &MemoryDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> MemoryDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
