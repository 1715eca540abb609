//! `conntrack`: connection tracking table saturation.
//!
//! A full conntrack table drops new flows silently (the WireGuard mesh and DNS go first). The check reads
//! only `nf_conntrack_count` / `nf_conntrack_max` and the per-CPU counters in `/proc/net/stat/nf_conntrack`:
//! its cost does not grow with the table, and it never lists the table itself.
//!
//! The stat file is parsed **by header name**: kernels renamed columns (`searched` -> `clashres`,
//! `delete_list` -> `chainlength`) and old kernels lack `search_restart`. Values are hex, one row per
//! possible CPU; counters are summed over CPUs except `entries`, which is global and repeated per row.
//! Rates (`drop`, `early_drop`, `insert_failed`) come from two readings: a short window in one-shot mode,
//! consecutive cycles in the agent.
//!
//! Absent files mean "not applicable": no count/max = the module is not loaded (OK, "not in use"); no stat
//! file (some distributions) = judged on count/max alone, with the counters reported as unavailable.

mod config;
mod details;
mod evaluate;
mod parse;
mod run;
pub mod wire;

pub use self::config::ConntrackConfig;
pub use self::details::ConntrackDetails;
pub use self::evaluate::{Deltas, Observation, evaluate};
pub use self::parse::{ConntrackStat, parse_number, parse_stat};
pub use self::run::ConntrackCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `conntrack` check, as the registry knows it.
pub struct Conntrack;

impl Spec for Conntrack {
    type Config = ConntrackConfig;
    type Details = ConntrackDetails;
    type Pb = crate::pb::ConntrackDetails;

    fn enabled(cfg: &ConntrackConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &ConntrackConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &ConntrackConfig) -> Box<dyn Check> {
        Box::new(ConntrackCheck::new(cfg.clone()))
    }

    fn perfdata(d: &ConntrackDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &ConntrackDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> ConntrackDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
