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
//! Sources: kernel devices over generic netlink (needs CAP_NET_ADMIN), userspace ones (wireguard-go,
//! boringtun) over `<uapi-dir>/<ifname>.sock`. The UAPI directory is not per network namespace, so only
//! sockets whose interface exists in this namespace are read. Private and preshared keys are never stored,
//! logged or reported.

pub mod netlink;
pub mod uapi;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::{
    BoxFuture, Check, CheckKind, Context, Details, Mode, Outcome, Perf, Status, UnknownReason,
};
use crate::problems::Problems;

/// Where a device's state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The kernel module, over netlink.
    Kernel,
    /// A userspace implementation, over its UAPI socket.
    Userspace,
}

/// A WireGuard device as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Interface name.
    pub name: String,
    /// Kernel or userspace.
    pub source: Source,
    /// UDP listen port.
    pub listen_port: Option<u16>,
    /// Firewall mark, when set.
    pub fwmark: Option<u32>,
    /// The interface's own public key.
    pub public_key: Option<[u8; 32]>,
    /// Peers in the order the source gave them.
    pub peers: Vec<Peer>,
}

/// A peer as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Public key.
    pub public_key: [u8; 32],
    /// Whether a preshared key is set (the key itself is never kept).
    pub has_preshared_key: bool,
    /// Endpoint as printed by `wg` (`1.2.3.4:51820`, `[fe80::1%2]:51820`).
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// Latest handshake, wall-clock; `None` when never.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive interval, when on.
    pub persistent_keepalive: Option<u16>,
}

impl Peer {
    /// A peer with nothing but its key.
    pub fn new(public_key: [u8; 32]) -> Peer {
        Peer {
            public_key,
            has_preshared_key: false,
            endpoint: None,
            allowed_ips: Vec::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive: None,
        }
    }

    /// Public key in base64, as `wg` shows it.
    pub fn key_b64(&self) -> String {
        B64.encode(self.public_key)
    }
}

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

    fn probe_target(&self, peer: &Peer) -> Option<IpAddr> {
        if let Some(t) = self.probe_targets.get(&peer.key_b64()) {
            return t.parse().ok();
        }
        peer.allowed_ips
            .iter()
            .find(|(ip, cidr)| (ip.is_ipv4() && *cidr == 32) || (ip.is_ipv6() && *cidr == 128))
            .map(|(ip, _)| *ip)
    }
}

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

/// What one echo gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// Answered after this long.
    Reply(Duration),
    /// No answer within the deadline.
    Lost,
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
}

fn addr_text(ip: &IpAddr, cidr: u8) -> String {
    let full = if ip.is_ipv4() { 32 } else { 128 };
    if cidr == full {
        ip.to_string()
    } else {
        format!("{ip}/{cidr}")
    }
}

/// A peer's verdict and handshake age. Pure.
pub fn peer_state(
    peer: &Peer,
    now: SystemTime,
    probe: Option<Probe>,
    one_way: Option<Duration>,
    cfg: &WireguardConfig,
) -> (PeerState, Option<u64>, bool) {
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
    (state, age, skew)
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

/// The verdict for one interface. Pure.
pub fn evaluate_interface(
    i: &InterfaceObs,
    now: SystemTime,
    cfg: &WireguardConfig,
) -> InterfaceInfo {
    let mut labels = Vec::new();
    let peers: Vec<PeerInfo> = i
        .device
        .peers
        .iter()
        .map(|p| {
            let probe = i.probes.get(&p.public_key);
            let one_way = i.one_way.get(&p.public_key).copied();
            let (state, age, skew) = peer_state(p, now, probe.map(|(_, r)| *r), one_way, cfg);
            labels.push(peer_label(p));
            PeerInfo {
                public_key: p.key_b64(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p
                    .allowed_ips
                    .iter()
                    .map(|(ip, c)| format!("{ip}/{c}"))
                    .collect(),
                latest_handshake_age_secs: age,
                handshake_clock_skew: skew,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive_secs: p.persistent_keepalive,
                probe_target: probe.map(|(ip, _)| ip.to_string()),
                probe_rtt_ms: probe.and_then(|(_, r)| match r {
                    Probe::Reply(d) => Some((d.as_secs_f64() * 10_000.0).round() / 10.0),
                    Probe::Lost => None,
                }),
                one_way_secs: one_way.map(|d| d.as_secs()),
                state,
            }
        })
        .collect();
    let name = &i.device.name;
    let total = peers.len();
    let down: Vec<String> = peers
        .iter()
        .zip(&labels)
        .filter(|(p, _)| p.state != PeerState::Ok)
        .map(|(p, label)| format!("{label}, {})", state_text(p)))
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
        // A summary is one line: name the first peers, count the rest (the details list them all).
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
        (
            status,
            format!("{name}: {}/{total} peers down: {list}", down.len()),
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

/// The verdict of the check. Pure.
pub fn evaluate(obs: &Observation, cfg: &WireguardConfig) -> Outcome {
    let mut interfaces: Vec<InterfaceInfo> = obs
        .interfaces
        .iter()
        .map(|i| evaluate_interface(i, obs.now, cfg))
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

/// Byte counters of one peer at one moment, and since when tx has grown alone.
#[derive(Debug, Clone, Copy)]
struct Counters {
    rx: u64,
    tx: u64,
    at: Instant,
    one_way_since: Option<Instant>,
}

/// Follows rx/tx across cycles to find peers whose traffic only goes out.
#[derive(Debug, Default)]
pub struct OneWayTracker {
    seen: HashMap<(String, [u8; 32]), Counters>,
}

impl OneWayTracker {
    /// Records this cycle's counters and returns, per peer, how long tx has grown without rx.
    pub fn observe(&mut self, dev: &Device, now: Instant) -> HashMap<[u8; 32], Duration> {
        let mut out = HashMap::new();
        for p in &dev.peers {
            let key = (dev.name.clone(), p.public_key);
            let since = match self.seen.get(&key) {
                Some(prev) if p.rx_bytes < prev.rx || p.tx_bytes < prev.tx => None, // counters reset
                Some(prev) if p.rx_bytes > prev.rx => None,
                Some(prev) if p.tx_bytes > prev.tx => prev.one_way_since.or(Some(prev.at)),
                Some(prev) => prev.one_way_since,
                None => None,
            };
            if let Some(s) = since {
                out.insert(p.public_key, now.saturating_duration_since(s));
            }
            self.seen.insert(
                key,
                Counters {
                    rx: p.rx_bytes,
                    tx: p.tx_bytes,
                    at: now,
                    one_way_since: since,
                },
            );
        }
        self.seen.retain(|(name, key), _| {
            name != &dev.name || dev.peers.iter().any(|p| &p.public_key == key)
        });
        out
    }
}

/// Sends one echo to every target, all in parallel, each under `timeout`. Returns results by peer key, or
/// an error when no ICMP socket can be opened (no CAP_NET_RAW and not in `net.ipv4.ping_group_range`).
async fn probe_all(
    iface: &str,
    targets: Vec<([u8; 32], IpAddr)>,
    timeout: Duration,
) -> Result<HashMap<[u8; 32], (IpAddr, Probe)>, String> {
    use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence};
    let mut clients: HashMap<bool, Client> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (key, ip) in targets {
        let v6 = ip.is_ipv6();
        let client = match clients.get(&v6) {
            Some(c) => c.clone(),
            None => {
                let kind = if v6 { ICMP::V6 } else { ICMP::V4 };
                // Bound to the interface, the echo goes through this tunnel whatever the routes say.
                let bound = Client::new(&Config::builder().kind(kind).interface(iface).build());
                let client = match bound {
                    Ok(c) => c,
                    Err(_) => Client::new(&Config::builder().kind(kind).build()).map_err(|e| {
                        format!(
                            "ICMP probes not permitted ({e}): need CAP_NET_RAW or net.ipv4.ping_group_range"
                        )
                    })?,
                };
                clients.insert(v6, client.clone());
                client
            }
        };
        tasks.spawn(async move {
            let mut pinger = client.pinger(ip, PingIdentifier(fastrand::u16(..))).await;
            pinger.timeout(timeout);
            let r = match pinger
                .ping(
                    PingSequence(0),
                    &[0x68, 0x76, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x21],
                )
                .await
            {
                Ok((_, rtt)) => Probe::Reply(rtt),
                Err(_) => Probe::Lost,
            };
            (key, ip, r)
        });
    }
    let mut out = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((key, ip, probe)) = r {
            out.insert(key, (ip, probe));
        }
    }
    Ok(out)
}

/// The `wireguard` check.
#[derive(Debug)]
pub struct WireguardCheck {
    cfg: WireguardConfig,
    one_way: OneWayTracker,
}

impl WireguardCheck {
    /// A check with this configuration.
    pub fn new(cfg: WireguardConfig) -> Self {
        WireguardCheck {
            cfg,
            one_way: OneWayTracker::default(),
        }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let links = match netlink::list_links().await {
            Ok(l) => l,
            Err(e) => {
                return Outcome::unknown(
                    UnknownReason::Error,
                    format!("cannot list network interfaces: {e}"),
                );
            }
        };
        let uapi_dir = self.cfg.uapi_dir.clone();
        let sockets: Vec<String> = ctx
            .blocking(move |root| root.list_dir(&uapi_dir))
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| f.strip_suffix(".sock").map(str::to_owned))
            .collect();
        let is_kernel = |name: &str| {
            links
                .iter()
                .any(|l| l.name == name && l.kind.as_deref() == Some("wireguard"))
        };
        let wanted: Vec<String> = if self.cfg.interfaces.is_empty() {
            let mut v: Vec<String> = links
                .iter()
                .filter(|l| l.kind.as_deref() == Some("wireguard") || sockets.contains(&l.name))
                .map(|l| l.name.clone())
                .collect();
            v.sort();
            v
        } else {
            self.cfg.interfaces.clone()
        };
        let mut obs = Observation {
            now: SystemTime::now(),
            interfaces: Vec::new(),
            missing: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        let mut family: Option<Option<u16>> = None;
        for name in wanted {
            let Some(link) = links.iter().find(|l| l.name == name) else {
                obs.missing.push(name);
                continue;
            };
            let device = if is_kernel(&name) {
                let fam = match family {
                    Some(f) => f,
                    None => {
                        let f = netlink::wireguard_family().await.unwrap_or(None);
                        family = Some(f);
                        f
                    }
                };
                let Some(fam) = fam else {
                    obs.problems
                        .push(format!("{name}: kernel WireGuard family not available"));
                    continue;
                };
                match netlink::get_device(fam, &name).await {
                    Ok(d) => d,
                    Err(e)
                        if e.raw_os_error() == Some(1)
                            || e.kind() == std::io::ErrorKind::PermissionDenied =>
                    {
                        obs.problems.push(format!(
                            "{name}: netlink permission denied (needs CAP_NET_ADMIN)"
                        ));
                        continue;
                    }
                    Err(e) => {
                        obs.problems.push(format!("{name}: netlink: {e}"));
                        continue;
                    }
                }
            } else if sockets.contains(&name) {
                let path = ctx.root.path(format!("{}/{name}.sock", self.cfg.uapi_dir));
                match uapi::get(&name, &path).await {
                    Ok(d) => d,
                    Err(uapi::GetError::Io(e))
                        if e.kind() == std::io::ErrorKind::PermissionDenied =>
                    {
                        obs.problems
                            .push(format!("{}: permission denied", path.display()));
                        continue;
                    }
                    Err(uapi::GetError::Io(e))
                        if e.kind() == std::io::ErrorKind::ConnectionRefused =>
                    {
                        obs.problems.push(format!(
                            "{}: connection refused (the userspace daemon is not running?)",
                            path.display()
                        ));
                        continue;
                    }
                    Err(e) => {
                        obs.problems.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                }
            } else {
                obs.problems.push(format!(
                    "{name}: not a kernel WireGuard interface and no UAPI socket in {}",
                    self.cfg.uapi_dir
                ));
                continue;
            };
            obs.interfaces.push(InterfaceObs {
                device,
                up: link.up,
                probes: HashMap::new(),
                one_way: HashMap::new(),
            });
        }
        if self.cfg.probe {
            let timeout = Duration::from_millis(self.cfg.probe_timeout_ms);
            for i in obs.interfaces.iter_mut().filter(|i| i.up) {
                let targets: Vec<([u8; 32], IpAddr)> = i
                    .device
                    .peers
                    .iter()
                    .filter_map(|p| self.cfg.probe_target(p).map(|ip| (p.public_key, ip)))
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                match probe_all(&i.device.name, targets, timeout).await {
                    Ok(p) => i.probes = p,
                    Err(e) => {
                        if !obs.problems.contains(&e) {
                            obs.problems.push(e);
                        }
                    }
                }
            }
        }
        if ctx.mode == Mode::Agent {
            let now = Instant::now();
            for i in &mut obs.interfaces {
                i.one_way = self.one_way.observe(&i.device, now);
            }
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for WireguardCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Wireguard
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_238_651;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn peer(n: u8, ip: &str, handshake_age: Option<u64>) -> Peer {
        let mut p = Peer::new([n; 32]);
        p.allowed_ips.push((ip.parse().unwrap(), 32));
        p.last_handshake = handshake_age.map(|a| now() - Duration::from_secs(a));
        p
    }

    fn iface(peers: Vec<Peer>) -> InterfaceObs {
        InterfaceObs {
            device: Device {
                name: "wg0".into(),
                source: Source::Kernel,
                listen_port: Some(51820),
                fwmark: None,
                public_key: Some([7u8; 32]),
                peers,
            },
            up: true,
            probes: HashMap::new(),
            one_way: HashMap::new(),
        }
    }

    #[test]
    fn peer_states() {
        let cfg = WireguardConfig::default();
        let st = |p: &Peer, probe, one_way| peer_state(p, now(), probe, one_way, &cfg);
        let fresh = peer(1, "10.0.0.1", Some(30));
        let old = peer(2, "10.0.0.2", Some(412));
        let never = peer(3, "10.0.0.3", None);
        assert_eq!(st(&fresh, None, None).0, PeerState::Ok);
        assert_eq!(st(&old, None, None), (PeerState::Stale, Some(412), false));
        assert_eq!(st(&never, None, None), (PeerState::Never, None, false));
        // The echo decides: an idle peer with an old handshake that answers is fine.
        assert_eq!(
            st(&old, Some(Probe::Reply(Duration::from_millis(3))), None).0,
            PeerState::Ok
        );
        assert_eq!(
            st(&fresh, Some(Probe::Lost), None).0,
            PeerState::Unreachable
        );
        assert_eq!(st(&never, Some(Probe::Lost), None).0, PeerState::Never);
        assert_eq!(
            st(&fresh, None, Some(Duration::from_secs(45))).0,
            PeerState::OneWay
        );
        assert_eq!(
            st(&fresh, None, Some(Duration::from_secs(10))).0,
            PeerState::Ok
        );
        // A handshake in the future: clamped and flagged, not fresh forever nor absurdly stale.
        let mut future = peer(4, "10.0.0.4", None);
        future.last_handshake = Some(now() + Duration::from_secs(3600));
        assert_eq!(st(&future, None, None), (PeerState::Ok, Some(0), true));
    }

    #[test]
    fn interface_verdicts() {
        let cfg = WireguardConfig::default();
        let healthy = evaluate_interface(&iface(vec![peer(1, "10.0.0.1", Some(5))]), now(), &cfg);
        assert_eq!(
            (healthy.status, healthy.summary.as_str()),
            (Status::Ok, "wg0: 1/1 peers ok")
        );

        let mut peers: Vec<Peer> = (10..22)
            .map(|n| peer(n, &format!("10.0.0.{n}"), Some(5)))
            .collect();
        peers[0] = peer(7, "10.0.0.7", Some(412));
        peers[1] = peer(9, "10.0.0.9", None);
        let i = evaluate_interface(&iface(peers), now(), &cfg);
        assert_eq!(i.status, Status::Warn);
        let k7 = &B64.encode([7u8; 32])[..8];
        let k9 = &B64.encode([9u8; 32])[..8];
        assert_eq!(
            i.summary,
            format!("wg0: 2/12 peers down: 10.0.0.7 ({k7}, stale 412s), 10.0.0.9 ({k9}, never)")
        );
        assert_eq!(
            i.peers[1].latest_handshake_age_secs, None,
            "never is null, not 1.7e9 seconds"
        );

        let half = evaluate_interface(
            &iface(vec![
                peer(1, "10.0.0.1", Some(5)),
                peer(2, "10.0.0.2", None),
            ]),
            now(),
            &cfg,
        );
        assert_eq!(half.status, Status::Crit, "{}", half.summary);

        let mut down = iface(vec![peer(1, "10.0.0.1", Some(5))]);
        down.up = false;
        let d = evaluate_interface(&down, now(), &cfg);
        assert_eq!((d.status, d.summary.as_str()), (Status::Crit, "wg0 down"));
    }

    #[test]
    fn check_verdicts() {
        let cfg = WireguardConfig::default();
        let obs = Observation {
            now: now(),
            interfaces: vec![],
            missing: vec![],
            problems: vec![],
            notes: vec![],
        };
        let out = evaluate(&obs, &cfg);
        assert_eq!(
            (out.status, out.summary.as_str()),
            (Status::Ok, "no wireguard interfaces")
        );
        let missing = evaluate(
            &Observation {
                missing: vec!["wg1".into()],
                ..obs.clone()
            },
            &cfg,
        );
        assert_eq!(
            (missing.status, missing.summary.as_str()),
            (Status::Crit, "wg1 missing")
        );
        let perm = evaluate(
            &Observation {
                problems: vec!["wg0: netlink permission denied (needs CAP_NET_ADMIN)".into()],
                ..obs
            },
            &cfg,
        );
        assert_eq!(perm.status, Status::Unknown);
        assert_eq!(perm.reason, Some(UnknownReason::NoPermission));
    }

    #[test]
    fn one_way_needs_tx_without_rx_over_time() {
        let mut t = OneWayTracker::default();
        let t0 = Instant::now();
        let mut dev = iface(vec![peer(1, "10.0.0.1", Some(5))]).device;
        dev.peers[0].tx_bytes = 100;
        dev.peers[0].rx_bytes = 100;
        assert!(t.observe(&dev, t0).is_empty());
        dev.peers[0].tx_bytes = 400;
        let w = t.observe(&dev, t0 + Duration::from_secs(10));
        assert_eq!(w.get(&[1u8; 32]), Some(&Duration::from_secs(10)));
        dev.peers[0].tx_bytes = 700;
        let w = t.observe(&dev, t0 + Duration::from_secs(40));
        assert_eq!(w.get(&[1u8; 32]), Some(&Duration::from_secs(40)));
        dev.peers[0].rx_bytes = 200;
        assert!(
            t.observe(&dev, t0 + Duration::from_secs(50)).is_empty(),
            "rx resumed"
        );
    }

    #[test]
    fn config_validation() {
        let mut p = Problems::default();
        WireguardConfig {
            timeout_ms: 1000,
            probe_targets: [("nope".to_owned(), "x".to_owned())].into(),
            interfaces: vec!["a/b".into()],
            ..WireguardConfig::default()
        }
        .validate(&mut p);
        let t = p.to_string();
        for k in ["timeout-ms", "probe-targets", "interfaces"] {
            assert!(t.contains(k), "{k}: {t}");
        }
    }
}
