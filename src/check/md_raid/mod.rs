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

mod config;
mod details;
mod evaluate;
pub mod mdstat;
mod merge;
mod run;
pub mod sysfs;
pub mod wire;

pub use self::config::{MdRaidConfig, Severity};
pub use self::details::{ArrayInfo, MdRaidDetails, MemberInfo, normalize_uuid};
pub use self::evaluate::{Observation, evaluate, evaluate_array};
pub use self::merge::{from_mdstat, from_sysfs, merge};
pub use self::run::{MdRaidCheck, StallTracker};

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `md-raid` check, as the registry knows it.
pub struct MdRaid;

impl Spec for MdRaid {
    type Config = MdRaidConfig;
    type Details = MdRaidDetails;
    type Pb = crate::pb::MdRaidDetails;

    fn enabled(cfg: &MdRaidConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &MdRaidConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &MdRaidConfig) -> Box<dyn Check> {
        Box::new(MdRaidCheck::new(cfg.clone()))
    }

    fn perfdata(d: &MdRaidDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &MdRaidDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> MdRaidDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
