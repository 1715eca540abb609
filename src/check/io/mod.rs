//! `io`: I/O pressure of the host, saturated disks, and the VMs stalling on I/O.
//!
//! In the power cut hvprobe is built for, the AZ had "I/O and memory pressure" for 90 minutes while RAID
//! rebuilt. This check says it in one line: PSI io (`/proc/pressure/io`: `some` = some tasks stalled on I/O,
//! `full` = every runnable task stalled), the busiest whole disks from `/proc/diskstats` (utilisation and
//! average wait over the window: across cycles in the agent, over `window-ms` in one-shot), and the VMs
//! under `machine.slice` ranked by their `io.pressure`.
//!
//! Whole disks only: what `/sys/block` lists (md and dm included), or, without sysfs under the root, judged
//! by name (`sda1`, `nvme0n1p1` are partitions); loop, RAM and optical devices never count. No PSI (kernel
//! before 4.20, `psi=0`) is not a failure: the check judges the disks. A malformed `/proc/diskstats` makes it
//! UNKNOWN naming the file and line; a malformed PSI file is named and lifts it to at least UNKNOWN.

mod config;
mod details;
mod evaluate;
mod parse;
mod run;
pub mod wire;

pub use self::config::IoConfig;
pub use self::details::{CgroupIoPressure, DiskIo, IoDetails};
pub use self::evaluate::{MIN_IOS_FOR_AWAIT, Observation, disk_rates, evaluate};
pub use self::parse::{DiskCounters, DiskStat, parse_diskstats, partition_by_name, pseudo_device};
pub use self::run::IoCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `io` check, as the registry knows it.
pub struct Io;

impl Spec for Io {
    type Config = IoConfig;
    type Details = IoDetails;
    type Pb = crate::pb::IoDetails;

    fn enabled(cfg: &IoConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &IoConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &IoConfig) -> Box<dyn Check> {
        Box::new(IoCheck::new(cfg.clone()))
    }

    fn perfdata(d: &IoDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &IoDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> IoDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
