//! `reach`: can this hypervisor reach what it depends on — object storage, the broker, the AZ recursor,
//! the gateway, a few peers?
//!
//! Each target is probed every cycle: ICMP echoes (`icmp`: at least 3, loss and RTT; a router's
//! unreachable is seen at once), a TCP connect (`tcp`), or a connect and a verified TLS handshake (`tls`).
//! Every failure is classified (`icmp.host_unreachable`, `tcp.refused`, `tcp.timed_out`,
//! `tls.cert.date_invalid`, ... — W3C Network Error Logging names where one fits). Addresses are IPs: a
//! reachability probe must not depend on DNS. The collector compares the hosts probing the same target:
//! one host cut, an AZ cut, or the target itself down.

mod config;
mod details;
mod evaluate;
pub mod icmp;
mod run;
pub mod tcp;
pub mod wire;

pub use self::config::{Endpoint, MAX_TARGETS, ProbeKind, ReachConfig, TargetConfig};
pub use self::details::{ReachDetails, TargetState};
pub use self::evaluate::evaluate;
pub use self::run::ReachCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `reach` check, as the registry knows it.
pub struct Reach;

impl Spec for Reach {
    type Config = ReachConfig;
    type Details = ReachDetails;
    type Pb = crate::pb::ReachDetails;

    fn enabled(cfg: &ReachConfig) -> bool {
        cfg.enabled && !cfg.targets.is_empty()
    }

    fn validate(cfg: &ReachConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &ReachConfig) -> Box<dyn Check> {
        Box::new(ReachCheck::new(cfg.clone()))
    }

    fn perfdata(d: &ReachDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &ReachDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> ReachDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
