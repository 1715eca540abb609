//! `dns`: every resolver the host depends on, probed on its own and in parallel, failures classified.
//!
//! After a reboot the local unbound of one hypervisor was not running and deployments failed there for a
//! long time. This check says in one line which resolver is broken and how:
//! `127.0.0.1:53 refused (not running?); 10.1.2.3:53 ok 3ms`.
//!
//! Each (resolver, name) pair gets exactly one query over a connected UDP socket (and TCP only if the
//! answer is truncated), under one deadline: no fallback from one resolver to the next, no cache, no
//! retries, so a dead resolver cannot hide behind a healthy one. A connected UDP socket reports the ICMP
//! port-unreachable of a resolver that is not running as ECONNREFUSED, which is what makes `refused`
//! distinguishable from `timeout`.
//!
//! Resolvers: the `nameserver` lines of `<root>/etc/resolv.conf` and the configured `resolvers`. Names: the
//! configured `names`. With none configured the check queries `localhost.` and accepts any NOERROR or
//! NXDOMAIN answer: it proves the resolver runs and answers without depending on any upstream, so it works
//! on an isolated host (unbound, dnsmasq and systemd-resolved answer `localhost.` locally, RFC 6761; some
//! forwarders say NXDOMAIN, which still proves they are alive). Configure `names` to test real resolution.

mod config;
mod details;
mod evaluate;
mod query;
mod resolv_conf;
mod run;
pub mod wire;

pub use self::config::{DEFAULT_NAME, DnsConfig, parse_name, parse_record_type, parse_resolver};
pub use self::details::{DnsDetails, DnsOutcome, DnsResult};
pub use self::evaluate::{Observation, evaluate};
pub use self::query::{Want, classify};
pub use self::resolv_conf::{ResolvConf, parse_resolv_conf};
pub use self::run::DnsCheck;

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `dns` check, as the registry knows it.
pub struct Dns;

impl Spec for Dns {
    type Config = DnsConfig;
    type Details = DnsDetails;
    type Pb = crate::pb::DnsDetails;

    fn enabled(cfg: &DnsConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &DnsConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &DnsConfig) -> Box<dyn Check> {
        Box::new(DnsCheck::new(cfg.clone()))
    }

    fn perfdata(d: &DnsDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &DnsDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> DnsDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
