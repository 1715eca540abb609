//! `wireguard`: a verdict per peer and per interface, for kernel and userspace WireGuard.
//!
//! After a power cut the mesh stayed broken on some hosts (stale UDP conntrack entries blackholed the
//! tunnels) and nothing said "peer X is down". Exporters publish raw handshake timestamps; this check
//! decides. Per peer:
//! - `never`: no handshake since the interface came up (its own state, never a huge age);
//! - `stale`: latest handshake older than `stale-after-secs` (180 s = WireGuard's reject-after time);
//! - `unreachable`: the ICMP echo through the tunnel got no answer;
//! - `one-way`: across cycles, tx grows while rx does not (the blackholed-by-conntrack signature);
//! - `ok`.
//!
//! An idle peer without persistent keepalive does not re-handshake, so an old handshake alone proves
//! nothing: with `probe = true` every peer with a probe address (its /32 or /128 allowed IP, or
//! `probe-targets`) gets one ICMP echo through the tunnel, and the answer decides (ok or unreachable; a
//! peer that never handshook stays `never` when the echo fails). The handshake time is wall-clock: a
//! handshake in the future (clock stepped back) is clamped to age 0 and flagged.
//!
//! Conntrack evidence (`conntrack-evidence`, on by default): for each peer that is not ok, the entries of
//! its UDP flow are read over ctnetlink with a kernel-side filter, and a stale one (UNREPLIED while the
//! peer is down, a reply tuple that no longer matches the endpoint or an address of this host) is named in
//! the summary with the `conntrack -D` command that drops just that flow. Nothing is ever deleted.
//!
//! Sources: kernel devices over generic netlink (needs CAP_NET_ADMIN), userspace ones (wireguard-go,
//! boringtun) over `<uapi-dir>/<ifname>.sock`. The UAPI directory is not per network namespace, so only
//! sockets whose interface exists in this namespace are read. Private and preshared keys are never stored,
//! logged or reported.

mod config;
pub mod ctnetlink;
mod details;
mod device;
mod evaluate;
pub mod evidence;
pub mod netlink;
mod run;
pub mod uapi;
pub mod wire;

pub use self::config::WireguardConfig;
pub use self::details::{InterfaceInfo, PeerInfo, PeerState, WireguardDetails};
pub use self::device::{Device, Peer, Source};
pub use self::evidence::{FlowDirection, FlowInfo};
pub use self::evaluate::{
    InterfaceObs, Observation, PeerVerdict, Probe, evaluate, evaluate_interface, peer_state,
};
pub use self::run::{OneWayTracker, WireguardCheck};

use super::registry::Spec;
use super::{Check, Perf};
use crate::problems::Problems;

/// The `wireguard` check, as the registry knows it.
pub struct Wireguard;

impl Spec for Wireguard {
    type Config = WireguardConfig;
    type Details = WireguardDetails;
    type Pb = crate::pb::WireguardDetails;

    fn enabled(cfg: &WireguardConfig) -> bool {
        cfg.enabled
    }

    fn validate(cfg: &WireguardConfig, p: &mut Problems) {
        cfg.validate(p);
    }

    fn build(cfg: &WireguardConfig) -> Box<dyn Check> {
        Box::new(WireguardCheck::new(cfg.clone()))
    }

    fn perfdata(d: &WireguardDetails) -> Vec<Perf> {
        d.perfdata()
    }

    fn to_pb(d: &WireguardDetails) -> Self::Pb {
        wire::to_pb(d)
    }

    fn from_pb(m: &Self::Pb) -> WireguardDetails {
        wire::from_pb(m)
    }
}

#[cfg(test)]
mod tests;
