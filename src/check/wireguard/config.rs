//! `[[check]] kind = "wireguard"`: interfaces, staleness, probes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::Peer;
use crate::problems::Problems;

/// `[[check]] kind = "wireguard"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WireguardConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one run (must leave room for the probes).
    pub timeout_ms: u64,
    /// Interfaces to check; empty = every WireGuard interface of this network namespace. A listed one
    /// that does not exist is CRIT.
    pub interfaces: Vec<String>,
    /// Directory of the UAPI sockets, under the host root.
    pub uapi_dir: String,
    /// A handshake older than this is stale (WireGuard's reject-after time is 180 s).
    pub stale_after_secs: u64,
    /// Send one ICMP echo through the tunnel to every peer with a probe address.
    pub probe: bool,
    /// Deadline of one echo.
    pub probe_timeout_ms: u64,
    /// Probe addresses by peer public key (base64), for peers without a /32 or /128 allowed IP.
    pub probe_targets: BTreeMap<String, String>,
    /// CRIT when at least this share of an interface's peers is not ok.
    pub crit_percent: f64,
    /// Agent: tx growing without rx for this long makes a peer one-way.
    pub one_way_after_secs: u64,
    /// For each peer that is not ok, read the conntrack entries of its UDP flow (ctnetlink, kernel-side
    /// filtered; needs CAP_NET_ADMIN) and name a stale one with the command that drops it.
    pub conntrack_evidence: bool,
}

impl Default for WireguardConfig {
    fn default() -> Self {
        WireguardConfig {
            enabled: true,
            timeout_ms: 3000,
            interfaces: Vec::new(),
            uapi_dir: "/var/run/wireguard".into(),
            stale_after_secs: 180,
            probe: true,
            probe_timeout_ms: 1000,
            probe_targets: BTreeMap::new(),
            crit_percent: 50.0,
            one_way_after_secs: 30,
            conntrack_evidence: true,
        }
    }
}

fn decode_key(s: &str) -> Option<[u8; 32]> {
    B64.decode(s).ok()?.try_into().ok()
}

impl WireguardConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.timeout("timeout-ms", self.timeout_ms);
        p.timeout("probe-timeout-ms", self.probe_timeout_ms);
        if self.probe && self.timeout_ms < self.probe_timeout_ms + 500 {
            p.push(
                "timeout-ms",
                format!(
                    "must be at least probe-timeout-ms + 500 ({})",
                    self.probe_timeout_ms + 500
                ),
            );
        }
        if self.stale_after_secs == 0 {
            p.push("stale-after-secs", "must be positive");
        }
        p.percent("crit-percent", self.crit_percent);
        if self.crit_percent == 0.0 {
            p.push("crit-percent", "must be above 0");
        }
        if !self.uapi_dir.starts_with('/') {
            p.push("uapi-dir", "must be an absolute path (under the host root)");
        }
        for i in &self.interfaces {
            if i.is_empty() || i.len() > 15 || i.contains(['/', ' ']) {
                p.push("interfaces", format!("{i:?} is not an interface name"));
            }
        }
        for (key, addr) in &self.probe_targets {
            if decode_key(key).is_none() {
                p.push(
                    "probe-targets",
                    format!("{key:?} is not a base64 WireGuard public key"),
                );
            }
            if addr.parse::<IpAddr>().is_err() {
                p.push("probe-targets", format!("{addr:?} is not an IP address"));
            }
        }
    }

    pub(crate) fn probe_target(&self, peer: &Peer) -> Option<IpAddr> {
        if let Some(t) = self.probe_targets.get(&peer.key_b64()) {
            return t.parse().ok();
        }
        peer.allowed_ips
            .iter()
            .find(|(ip, cidr)| (ip.is_ipv4() && *cidr == 32) || (ip.is_ipv6() && *cidr == 128))
            .map(|(ip, _)| *ip)
    }
}
