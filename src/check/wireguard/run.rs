//! The I/O: devices over netlink and UAPI, ICMP probes through the tunnels, counters across cycles.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ctnetlink::{self, PortSide};
use super::evidence;
use super::{
    Device, InterfaceObs, Observation, PeerState, Probe, WireguardConfig, evaluate, netlink,
    peer_state, uapi,
};
use crate::check::{BoxFuture, Check, CheckKind, Context, Mode, Outcome, UnknownReason};

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
        let listing = ctx.blocking(move |root| root.list_dir(&uapi_dir)).await;
        let mut obs = Observation {
            now: SystemTime::now(),
            interfaces: Vec::new(),
            missing: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            local_addrs: Vec::new(),
        };
        let sockets: Vec<String> = match listing {
            Ok(names) => names
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.strip_suffix(".sock").map(str::to_owned))
                .collect(),
            Err(e) => {
                // Never OK blind: an unreadable UAPI directory (wireguard-go started under umask 077
                // makes it 0700) hides every userspace interface. Unless the host has no tun device at
                // all (then there is none to hide), that is UNKNOWN no-permission, with the path.
                let tun = links.iter().any(|l| l.kind.as_deref() == Some("tun"));
                if tun || !self.cfg.interfaces.is_empty() {
                    obs.problems.push(format!(
                        "{e}: cannot see userspace WireGuard interfaces (their UAPI sockets)"
                    ));
                }
                Vec::new()
            }
        };
        let mut family = FamilyCache::default();
        for name in self.wanted(&links, &sockets) {
            let Some(link) = links.iter().find(|l| l.name == name) else {
                obs.missing.push(name);
                continue;
            };
            let kernel = link.kind.as_deref() == Some("wireguard");
            match self
                .read_device(ctx, &name, kernel, &sockets, &mut family)
                .await
            {
                Ok(device) => obs.interfaces.push(InterfaceObs {
                    device,
                    up: link.up,
                    probes: HashMap::new(),
                    one_way: HashMap::new(),
                    conntrack: HashMap::new(),
                }),
                Err(problem) => obs.problems.push(problem),
            }
        }
        if self.cfg.probe {
            self.probe_interfaces(&mut obs).await;
        }
        if ctx.mode == Mode::Agent {
            let now = Instant::now();
            for i in &mut obs.interfaces {
                i.one_way = self.one_way.observe(&i.device, now);
            }
        }
        if self.cfg.conntrack_evidence {
            self.gather_conntrack(&mut obs).await;
        }
        evaluate(&obs, &self.cfg)
    }

    /// The interfaces to look at: the configured ones, or every WireGuard interface of the namespace
    /// (kernel links of kind `wireguard`, and links with a UAPI socket), sorted.
    fn wanted(&self, links: &[netlink::Link], sockets: &[String]) -> Vec<String> {
        if !self.cfg.interfaces.is_empty() {
            return self.cfg.interfaces.clone();
        }
        let mut v: Vec<String> = links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("wireguard") || sockets.contains(&l.name))
            .map(|l| l.name.clone())
            .collect();
        v.sort();
        v
    }

    /// One device, over netlink (kernel) or its UAPI socket (userspace); `Err` is the problem, in words.
    async fn read_device(
        &self,
        ctx: &Context,
        name: &str,
        kernel: bool,
        sockets: &[String],
        family: &mut FamilyCache,
    ) -> Result<Device, String> {
        if kernel {
            let Some(fam) = family.get().await else {
                return Err(format!("{name}: kernel WireGuard family not available"));
            };
            return netlink::get_device(fam, name).await.map_err(|e| {
                if e.raw_os_error() == Some(1) || e.kind() == std::io::ErrorKind::PermissionDenied {
                    format!("{name}: netlink permission denied (needs CAP_NET_ADMIN)")
                } else {
                    format!("{name}: netlink: {e}")
                }
            });
        }
        if !sockets.iter().any(|s| s == name) {
            return Err(format!(
                "{name}: not a kernel WireGuard interface and no UAPI socket in {}",
                self.cfg.uapi_dir
            ));
        }
        let path = ctx.root.path(format!("{}/{name}.sock", self.cfg.uapi_dir));
        let within = Duration::from_millis((self.cfg.timeout_ms / 3).max(100));
        uapi::get(name, &path, within).await.map_err(|e| match e {
            uapi::GetError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                format!("{}: permission denied", path.display())
            }
            uapi::GetError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
                "{}: connection refused (the userspace daemon is not running?)",
                path.display()
            ),
            e => format!("{}: {e}", path.display()),
        })
    }

    /// One ICMP echo per peer with a probe address, through each interface that is up, all in parallel.
    async fn probe_interfaces(&self, obs: &mut Observation) {
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
}

impl WireguardCheck {
    /// Conntrack evidence for the peers that are not ok: per interface and address family, two dumps
    /// filtered in the kernel on the listen port (flows this host started, flows peers started), matched to
    /// the broken peers' endpoints. Nothing is read while every peer is ok. A failure is a note: evidence
    /// never changes a verdict, and all of it together gets a quarter of the check's deadline, so it can
    /// never make the check itself time out.
    async fn gather_conntrack(&self, obs: &mut Observation) {
        let budget = Duration::from_millis((self.cfg.timeout_ms / 4).max(100));
        let deadline = Instant::now() + budget;
        let mut read_addrs = false;
        for i in &mut obs.interfaces {
            let Some(port) = i.device.listen_port else {
                continue;
            };
            let broken: Vec<([u8; 32], SocketAddr)> = i
                .device
                .peers
                .iter()
                .filter(|p| {
                    let probe = i.probes.get(&p.public_key).map(|(_, r)| *r);
                    let one_way = i.one_way.get(&p.public_key).copied();
                    peer_state(p, obs.now, probe, one_way, &self.cfg).state != PeerState::Ok
                })
                .filter_map(|p| {
                    let ep = p.endpoint.as_deref().and_then(evidence::endpoint_addr)?;
                    Some((p.public_key, ep))
                })
                .collect();
            for v6 in [false, true] {
                if !broken.iter().any(|(_, ep)| ep.is_ipv6() == v6) {
                    continue;
                }
                for side in [PortSide::Source, PortSide::Destination] {
                    let within = deadline.saturating_duration_since(Instant::now());
                    let entries = match ctnetlink::dump(v6, port, side, within).await {
                        Ok(e) => e,
                        Err(e) => {
                            let note = format!("{}: no conntrack evidence: {e}", i.device.name);
                            if !obs.notes.contains(&note) {
                                obs.notes.push(note);
                            }
                            continue;
                        }
                    };
                    if entries.len() >= ctnetlink::MAX_ENTRIES {
                        obs.notes.push(format!(
                            "{}: conntrack evidence cut at {} entries of port {port}",
                            i.device.name,
                            ctnetlink::MAX_ENTRIES
                        ));
                    }
                    for e in entries {
                        for (key, ep) in &broken {
                            if let Some(dir) = evidence::direction_of(&e, port, *ep) {
                                i.conntrack.entry(*key).or_default().push((e, dir));
                            }
                        }
                    }
                }
            }
            read_addrs |= !i.conntrack.is_empty();
        }
        if read_addrs {
            match netlink::list_addresses().await {
                Ok(a) => obs.local_addrs = a,
                Err(e) => {
                    obs.notes.push(format!(
                        "cannot list this host's addresses ({e}): stale-NAT evidence not judged"
                    ));
                    // Without the addresses every reply tuple would look stale: judge none.
                    for i in &mut obs.interfaces {
                        i.conntrack.clear();
                    }
                }
            }
        }
    }
}

/// The generic netlink family id of `wireguard`, looked up once per run and only when a kernel device is
/// read.
#[derive(Default)]
struct FamilyCache(Option<Option<u16>>);

impl FamilyCache {
    async fn get(&mut self) -> Option<u16> {
        if let Some(f) = self.0 {
            return f;
        }
        let f = netlink::wireguard_family().await.unwrap_or(None);
        self.0 = Some(f);
        f
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
