//! The verdict: a state per peer from handshake age, probe and one-way tracking; then per interface. Pure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::ctnetlink::Entry;
use super::evidence::{self, FlowDirection};
use super::{Device, InterfaceInfo, Peer, PeerInfo, PeerState, WireguardConfig, WireguardDetails};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::check::{Details, Outcome, Status, UnknownReason};

/// What one echo gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// Answered after this long.
    Reply(Duration),
    /// No answer within the deadline.
    Lost,
}

/// One interface as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceObs {
    /// The device.
    pub device: Device,
    /// Administratively up.
    pub up: bool,
    /// Echo results by peer key.
    pub probes: HashMap<[u8; 32], (IpAddr, Probe)>,
    /// How long tx has grown without rx, by peer key (agent).
    pub one_way: HashMap<[u8; 32], Duration>,
    /// Conntrack entries of each broken peer's UDP flow, by peer key.
    pub conntrack: HashMap<[u8; 32], Vec<(Entry, FlowDirection)>>,
}

/// What the check looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Wall-clock now, for handshake ages.
    pub now: SystemTime,
    /// Readable interfaces.
    pub interfaces: Vec<InterfaceObs>,
    /// Configured interfaces that do not exist.
    pub missing: Vec<String>,
    /// Problems (unreadable interface, no permission for netlink or ICMP): each lifts the status to at
    /// least UNKNOWN.
    pub problems: Vec<String>,
    /// Notes.
    pub notes: Vec<String>,
    /// Every address of this host (network namespace), read only when conntrack evidence was gathered.
    pub local_addrs: Vec<std::net::IpAddr>,
}

fn addr_text(ip: &IpAddr, cidr: u8) -> String {
    let full = if ip.is_ipv4() { 32 } else { 128 };
    if cidr == full {
        ip.to_string()
    } else {
        format!("{ip}/{cidr}")
    }
}

/// A peer's state with the handshake age it was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerVerdict {
    /// The state.
    pub state: PeerState,
    /// Seconds since the latest handshake; `None` when never.
    pub handshake_age_secs: Option<u64>,
    /// The handshake is in the future (the clock was stepped back): the age is clamped to 0.
    pub clock_skew: bool,
}

/// A peer's verdict and handshake age. Pure.
pub fn peer_state(
    peer: &Peer,
    now: SystemTime,
    probe: Option<Probe>,
    one_way: Option<Duration>,
    cfg: &WireguardConfig,
) -> PeerVerdict {
    let (age, skew) = match peer.last_handshake {
        None => (None, false),
        Some(t) => match now.duration_since(t) {
            Ok(d) => (Some(d.as_secs()), false),
            Err(_) => (Some(0), true),
        },
    };
    let state = match (probe, age) {
        (Some(Probe::Reply(_)), _) => PeerState::Ok,
        (Some(Probe::Lost), None) => PeerState::Never,
        (Some(Probe::Lost), Some(_)) => PeerState::Unreachable,
        (None, None) => PeerState::Never,
        (None, Some(_)) if one_way.is_some_and(|d| d.as_secs() >= cfg.one_way_after_secs) => {
            PeerState::OneWay
        }
        (None, Some(a)) if a > cfg.stale_after_secs => PeerState::Stale,
        (None, Some(_)) => PeerState::Ok,
    };
    PeerVerdict {
        state,
        handshake_age_secs: age,
        clock_skew: skew,
    }
}

fn peer_label(peer: &Peer) -> String {
    let addr = peer
        .allowed_ips
        .first()
        .map(|(ip, c)| addr_text(ip, *c))
        .or_else(|| peer.endpoint.clone())
        .unwrap_or_else(|| "no address".into());
    let key = peer.key_b64();
    format!("{addr} ({}", &key[..8])
}

fn state_text(p: &PeerInfo) -> String {
    let mut s = match p.state {
        PeerState::Stale => format!("stale {}s", p.latest_handshake_age_secs.unwrap_or(0)),
        PeerState::OneWay => format!("one-way {}s", p.one_way_secs.unwrap_or(0)),
        PeerState::Unreachable => match p.latest_handshake_age_secs {
            Some(a) => format!("unreachable, handshake {a}s ago"),
            None => "unreachable".into(),
        },
        other => other.as_str().to_owned(),
    };
    if p.handshake_clock_skew {
        s.push_str(", clock skew");
    }
    s
}

/// What the check says of one peer.
fn peer_info(
    i: &InterfaceObs,
    p: &Peer,
    now: SystemTime,
    local: &[IpAddr],
    cfg: &WireguardConfig,
) -> PeerInfo {
    let probe = i.probes.get(&p.public_key);
    let one_way = i.one_way.get(&p.public_key).copied();
    let v = peer_state(p, now, probe.map(|(_, r)| *r), one_way, cfg);
    let endpoint = p.endpoint.as_deref().and_then(evidence::endpoint_addr);
    let conntrack = match (i.conntrack.get(&p.public_key), endpoint) {
        (Some(entries), Some(ep)) => entries
            .iter()
            .map(|(e, dir)| evidence::assess(e, *dir, ep, v.state != PeerState::Ok, local))
            .collect(),
        _ => Vec::new(),
    };
    PeerInfo {
        public_key: p.key_b64(),
        endpoint: p.endpoint.clone(),
        allowed_ips: p
            .allowed_ips
            .iter()
            .map(|(ip, c)| format!("{ip}/{c}"))
            .collect(),
        latest_handshake_age_secs: v.handshake_age_secs,
        handshake_clock_skew: v.clock_skew,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        persistent_keepalive_secs: p.persistent_keepalive,
        probe_target: probe.map(|(ip, _)| ip.to_string()),
        probe_rtt_ms: probe.and_then(|(_, r)| match r {
            Probe::Reply(d) => Some((d.as_secs_f64() * 10_000.0).round() / 10.0),
            Probe::Lost => None,
        }),
        one_way_secs: one_way.map(|d| d.as_secs()),
        state: v.state,
        conntrack,
    }
}

/// The hint for the first suspect flow: what is wrong and the command that drops just that flow.
fn conntrack_hint(raw: &[Peer], peers: &[PeerInfo]) -> Option<String> {
    let mut suspects = raw
        .iter()
        .zip(peers)
        .filter_map(|(r, p)| p.suspect_flow().map(|f| (r, f)));
    let (peer, flow) = suspects.next()?;
    let more = suspects.count();
    Some(format!(
        "stale UDP conntrack toward {}): {} [{}]: {}; drop just that flow: {}{}",
        peer_label(peer),
        flow.original,
        flow.state,
        flow.suspect.as_deref().unwrap_or_default(),
        flow.drop_command.as_deref().unwrap_or_default(),
        if more > 0 {
            format!(" (+{more} more peers with suspect flows)")
        } else {
            String::new()
        }
    ))
}

/// The verdict for one interface. `local` is every address of the host, for conntrack evidence. Pure.
pub fn evaluate_interface(
    i: &InterfaceObs,
    now: SystemTime,
    local: &[IpAddr],
    cfg: &WireguardConfig,
) -> InterfaceInfo {
    let peers: Vec<PeerInfo> = i
        .device
        .peers
        .iter()
        .map(|p| peer_info(i, p, now, local, cfg))
        .collect();
    let name = &i.device.name;
    let total = peers.len();
    let down: Vec<String> = i
        .device
        .peers
        .iter()
        .zip(&peers)
        .filter(|(_, p)| p.state != PeerState::Ok)
        .map(|(raw, p)| format!("{}, {})", peer_label(raw), state_text(p)))
        .collect();
    let (status, summary) = if !i.up {
        (Status::Crit, format!("{name} down"))
    } else if total == 0 {
        (Status::Ok, format!("{name}: no peers"))
    } else if down.is_empty() {
        let rtt = peers
            .iter()
            .filter_map(|p| p.probe_rtt_ms)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let rtt = rtt
            .map(|r| format!(", max rtt {r:.1}ms"))
            .unwrap_or_default();
        (Status::Ok, format!("{name}: {total}/{total} peers ok{rtt}"))
    } else {
        let share = down.len() as f64 * 100.0 / total as f64;
        let status = if share >= cfg.crit_percent {
            Status::Crit
        } else {
            Status::Warn
        };
        let hint = conntrack_hint(&i.device.peers, &peers)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        (
            status,
            format!(
                "{name}: {}/{total} peers down: {}{hint}",
                down.len(),
                listed(&down)
            ),
        )
    };
    InterfaceInfo {
        name: name.clone(),
        source: i.device.source,
        listen_port: i.device.listen_port,
        up: i.up,
        public_key: i.device.public_key.map(|k| B64.encode(k)),
        peers,
        status,
        summary,
    }
}

/// A summary is one line: name the first peers, count the rest (the details list them all).
fn listed(down: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut list = down
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if down.len() > SHOWN {
        list.push_str(&format!(", +{} more", down.len() - SHOWN));
    }
    list
}

/// The verdict of the check. Pure.
pub fn evaluate(obs: &Observation, cfg: &WireguardConfig) -> Outcome {
    let mut interfaces: Vec<InterfaceInfo> = obs
        .interfaces
        .iter()
        .map(|i| evaluate_interface(i, obs.now, &obs.local_addrs, cfg))
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = Status::worst_of(interfaces.iter().map(|i| i.status)).unwrap_or(Status::Ok);
    let mut parts: Vec<String> = obs.missing.iter().map(|m| format!("{m} missing")).collect();
    if !obs.missing.is_empty() {
        status = Status::Crit;
    }
    let mut ordered: Vec<&InterfaceInfo> = interfaces.iter().collect();
    ordered.sort_by_key(|i| std::cmp::Reverse(i.status.severity()));
    parts.extend(ordered.iter().map(|i| i.summary.clone()));
    if parts.is_empty() && obs.problems.is_empty() {
        parts.push("no wireguard interfaces".into());
    }
    for p in &obs.problems {
        status = status.worst(Status::Unknown);
        parts.push(p.clone());
    }
    let details = WireguardDetails {
        interfaces,
        missing: obs.missing.clone(),
        notes: obs.notes.clone(),
    };
    let mut out = Outcome::new(status, parts.join("; "), Details::Wireguard(details));
    if status == Status::Unknown {
        out.reason = Some(
            if obs
                .problems
                .iter()
                .any(|p| p.contains("permission") || p.contains("CAP_"))
            {
                UnknownReason::NoPermission
            } else {
                UnknownReason::Error
            },
        );
    }
    out
}
