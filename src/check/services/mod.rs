//! `services`: the systemd units a hypervisor needs (unbound, wg-quick@wg0, libvirtd), read over D-Bus.
//!
//! After the power cut hvprobe is built for, the hypervisors came back but the local unbound resolver did
//! not; the DNS check showed the symptom, not the unit. This check names the unit: failed, not found,
//! enabled but never started this boot, hanging in `activating`, or restarting in a loop — with its state,
//! since when, its result and its restarts.
//!
//! It polls (no signal subscription): one `ListUnitsByNames` per cycle plus a few property reads per unit
//! (see `run`), through a hand-written proxy on zbus (`bus`). It reads the live system's bus, never files
//! under `--root`. No bus, no systemd on it, or no answer within the deadline is UNKNOWN naming the bus,
//! never OK. With no `units` configured the check is off.

mod bus;
mod config;
mod details;
mod evaluate;
mod run;
pub mod wire;

pub use self::bus::{ListedUnit, Systemd};
pub use self::config::{MAX_UNITS, ServicesConfig, full_name};
pub use self::details::{ServicesDetails, UnitState};
pub use self::evaluate::{Observation, evaluate};
pub use self::run::ServicesCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `services` check, as the registry knows it.
pub struct Services;

impl Spec for Services {
    type Config = ServicesConfig;
    type Details = ServicesDetails;
    type Pb = crate::pb::ServicesDetails;

    fn enabled(cfg: &ServicesConfig) -> bool {
        cfg.enabled && !cfg.units.is_empty()
    }

    fn validate(cfg: &ServicesConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &ServicesConfig) -> Box<dyn Check> {
        Box::new(ServicesCheck::new(cfg.clone()))
    }

    fn perfdata(d: &ServicesDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &ServicesDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> ServicesDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
