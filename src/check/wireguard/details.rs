//! What the check reports: a state per peer, a verdict per interface. Private keys never appear.

use serde::{Deserialize, Serialize};

use super::Source;
use super::evidence::FlowInfo;
use crate::check::{Perf, Status};

/// A peer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// Handshake recent, or the echo was answered.
    Ok,
    /// No handshake since the interface came up.
    Never,
    /// Latest handshake older than `stale-after-secs`, no probe to say otherwise.
    Stale,
    /// The echo through the tunnel got no answer.
    Unreachable,
    /// tx grows while rx does not.
    OneWay,
}

impl PeerState {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Ok => "ok",
            PeerState::Never => "never",
            PeerState::Stale => "stale",
            PeerState::Unreachable => "unreachable",
            PeerState::OneWay => "one-way",
        }
    }
}

/// A peer in the details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerInfo {
    /// Public key, base64 (it is public).
    pub public_key: String,
    /// Endpoint.
    pub endpoint: Option<String>,
    /// Allowed IPs, `addr/prefix`.
    pub allowed_ips: Vec<String>,
    /// Seconds since the latest handshake; null when never.
    pub latest_handshake_age_secs: Option<u64>,
    /// The handshake is in the future (clock stepped back); the age is clamped to 0.
    pub handshake_clock_skew: bool,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive; null when off.
    pub persistent_keepalive_secs: Option<u16>,
    /// Address the echo was sent to; null when not probed.
    pub probe_target: Option<String>,
    /// Round trip of the echo; null when not probed or lost.
    pub probe_rtt_ms: Option<f64>,
    /// Seconds tx has grown without rx (agent).
    pub one_way_secs: Option<u64>,
    /// The verdict.
    pub state: PeerState,
    /// Conntrack entries of the peer's UDP flow (peers that are not ok, with `conntrack-evidence`).
    pub conntrack: Vec<FlowInfo>,
}

impl PeerInfo {
    /// The first suspect conntrack entry of this peer, if any.
    pub fn suspect_flow(&self) -> Option<&FlowInfo> {
        self.conntrack.iter().find(|f| f.suspect.is_some())
    }
}

/// An interface in the details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceInfo {
    /// Interface name.
    pub name: String,
    /// `kernel` or `userspace`.
    pub source: Source,
    /// UDP listen port.
    pub listen_port: Option<u16>,
    /// Administratively up.
    pub up: bool,
    /// The interface's own public key, base64 (lets the collector join both ends of a link).
    pub public_key: Option<String>,
    /// Peers.
    pub peers: Vec<PeerInfo>,
    /// Verdict for the interface.
    pub status: Status,
    /// One line.
    pub summary: String,
}

/// Details of the `wireguard` check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireguardDetails {
    /// Every interface checked.
    pub interfaces: Vec<InterfaceInfo>,
    /// Configured interfaces that do not exist.
    pub missing: Vec<String>,
    /// Facts that change nothing.
    pub notes: Vec<String>,
}

impl WireguardDetails {
    /// Nagios performance data.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut v = Vec::new();
        for i in &self.interfaces {
            let bad = i.peers.iter().filter(|p| p.state != PeerState::Ok).count();
            v.push(
                Perf::new(format!("{}_peers", i.name), i.peers.len() as f64, "")
                    .bounds(Some(0.0), None),
            );
            v.push(
                Perf::new(format!("{}_peers_down", i.name), bad as f64, "")
                    .bounds(Some(0.0), Some(i.peers.len() as f64)),
            );
        }
        v
    }
}
