//! Per-AZ correlation: thousands of per-host results turned into one verdict per root cause.
//!
//! A pure state machine: fed reports (`observe`) and the passage of time (`tick`), with the clock passed
//! in, it returns the events it produced. No I/O, no clock of its own: every rule has a deterministic test.
//!
//! Each cycle of recomputation goes, in order:
//! 1. **Staleness** — a host silent for `stale-after-intervals` of its interval is stale (an event), never
//!    "down"; its conditions are forgotten. When at least `stale-threshold-percent` of an AZ's known hosts
//!    went stale within `stale-window-secs`, one `unreachable` AZ verdict opens.
//! 2. **Debounced conditions** — a (host, check) condition opens after `open-after-cycles` non-OK reports
//!    and closes after `close-after-cycles` OK ones: brief flickers never alert.
//! 3. **WireGuard mesh** — what both ends of each link report is joined: when most of the peers of a host
//!    lose it, that is one verdict about that host, and the peers' own conditions are folded into it.
//! 4. **AZ-wide faults** — when at least `az-threshold-percent` and `az-min-hosts` of an AZ's reporting hosts
//!    have the same check non-OK, one AZ verdict lists them; otherwise one host verdict per (host, check),
//!    marked local.
//! 5. **Region-wide faults** — the same AZ verdict in every AZ of a region is one region verdict.
//! 6. **Mass reboots** — when at least `reboot-threshold-percent` of an AZ's hosts boot within
//!    `reboot-window-secs`, one `rebooted` event, then recovery tracking (back, RAID rebuilding with ETA,
//!    DNS and WireGuard not yet OK) until the AZ has recovered.
//!
//! Verdicts are recomputed from scratch and diffed with the previous set: an event for every verdict opened,
//! changed or closed. Invariant: a verdict's key is stable for as long as its root cause holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::check::dns::DnsOutcome;
use crate::check::wireguard::PeerState;
use crate::check::{CheckKind, Details, Status};
pub use crate::fleet::{Event, EventKind, Recovery, Scope, VerdictView, ZoneView, ZonesView};
use crate::problems::Problems;
use crate::report::HostReport;
use crate::util::{fmt_duration, rfc3339};

/// `[correlation]` of the collector's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CorrelationConfig {
    /// Share of an AZ's reporting hosts with the same check non-OK that makes it AZ-wide.
    pub az_threshold_percent: f64,
    /// And at least this many hosts.
    pub az_min_hosts: usize,
    /// Share of an AZ's known hosts gone stale that makes the AZ unreachable.
    pub stale_threshold_percent: f64,
    /// ... when they went stale within this window of each other.
    pub stale_window_secs: u64,
    /// Share of an AZ's hosts with a new boot id that makes a mass reboot.
    pub reboot_threshold_percent: f64,
    /// ... when they booted within this window.
    pub reboot_window_secs: u64,
    /// Non-OK reports in a row before a condition opens.
    pub open_after_cycles: u32,
    /// OK reports in a row before it closes.
    pub close_after_cycles: u32,
    /// Peers that must lose a WireGuard host before it is judged dead.
    pub mesh_min_peers: usize,
    /// Recovery tracking of a reboot ends after this long even if the AZ never fully recovers.
    pub recovery_max_secs: u64,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            az_threshold_percent: 30.0,
            az_min_hosts: 3,
            stale_threshold_percent: 50.0,
            stale_window_secs: 120,
            reboot_threshold_percent: 50.0,
            reboot_window_secs: 600,
            open_after_cycles: 2,
            close_after_cycles: 2,
            mesh_min_peers: 2,
            recovery_max_secs: 48 * 3600,
        }
    }
}

impl CorrelationConfig {
    /// Collects what is wrong with this section.
    pub fn validate(&self, p: &mut Problems) {
        for (k, v) in [
            ("az-threshold-percent", self.az_threshold_percent),
            ("stale-threshold-percent", self.stale_threshold_percent),
            ("reboot-threshold-percent", self.reboot_threshold_percent),
        ] {
            p.percent(k, v);
            if v == 0.0 {
                p.push(k, "must be above 0");
            }
        }
        if self.az_min_hosts == 0 {
            p.push("az-min-hosts", "must be at least 1");
        }
        if self.mesh_min_peers == 0 {
            p.push("mesh-min-peers", "must be at least 1");
        }
        for (k, v) in [
            ("open-after-cycles", self.open_after_cycles),
            ("close-after-cycles", self.close_after_cycles),
        ] {
            if !(1..=100).contains(&v) {
                p.push(k, "must be between 1 and 100");
            }
        }
        if self.stale_window_secs == 0 || self.reboot_window_secs == 0 {
            p.push("stale-window-secs", "windows must be positive");
        }
    }
}

/// An open verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Stable identity: scope/place/check.
    pub key: String,
    /// Where.
    pub scope: Scope,
    /// Region.
    pub region: String,
    /// AZ (host and AZ scopes).
    pub az: Option<String>,
    /// Host (host scope).
    pub host: Option<String>,
    /// `memory`, `conntrack`, `md-raid`, `dns`, `wireguard`, or `reachability` for an unreachable AZ.
    pub check: String,
    /// Worst status among the hosts.
    pub status: Status,
    /// Hosts it covers.
    pub hosts: Vec<String>,
    /// One line.
    pub summary: String,
    /// When it opened.
    pub since: SystemTime,
}

/// A debounced (host, check) condition.
#[derive(Debug, Clone, Default)]
struct Cond {
    bad_streak: u32,
    good_streak: u32,
    active: bool,
    status: Option<Status>,
    summary: String,
}

/// What the engine keeps of a host's latest report.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    statuses: BTreeMap<CheckKind, Status>,
    dns: Vec<(String, DnsOutcome)>,
    wg_keys: Vec<String>,
    wg_down: bool,
    wg_peers: Vec<(String, PeerState)>,
    md_syncing: Vec<(String, Option<u64>)>,
}

impl Snapshot {
    fn of(r: &HostReport) -> Snapshot {
        let mut s = Snapshot::default();
        for c in &r.checks {
            s.statuses.insert(c.kind, c.outcome.status);
            match &c.outcome.details {
                Details::Dns(d) => {
                    s.dns = d
                        .results
                        .iter()
                        .map(|x| (x.resolver.clone(), x.outcome))
                        .collect()
                }
                Details::Wireguard(w) => {
                    for i in &w.interfaces {
                        s.wg_keys.extend(i.public_key.clone());
                        s.wg_down |= !i.up;
                        s.wg_peers
                            .extend(i.peers.iter().map(|p| (p.public_key.clone(), p.state)));
                    }
                }
                Details::MdRaid(m) => {
                    s.md_syncing = m
                        .arrays
                        .iter()
                        .filter(|a| {
                            matches!(a.sync_action.as_str(), "resync" | "recover" | "reshape")
                                || a.sync_pending.is_some()
                        })
                        .map(|a| (a.name.clone(), a.sync_eta_secs))
                        .collect()
                }
                _ => {}
            }
        }
        s
    }

    fn not_ok(&self, k: CheckKind) -> bool {
        self.statuses.get(&k).is_some_and(|s| *s != Status::Ok)
    }
}

/// Everything the engine knows of one host.
#[derive(Debug, Clone)]
struct HostTrack {
    az: String,
    region: String,
    interval: Duration,
    last_seen: SystemTime,
    boot_id: String,
    stale: bool,
    stale_since: Option<SystemTime>,
    conds: BTreeMap<CheckKind, Cond>,
    snap: Snapshot,
}

/// A host the collector knows, as kept on disk across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// Host id.
    pub id: String,
    /// AZ.
    pub az: String,
    /// Region ("" when none).
    pub region: String,
    /// Latest boot id.
    pub boot_id: String,
    /// Reporting interval.
    pub interval: Duration,
}

/// A host affected by a condition, for aggregation.
#[derive(Debug, Clone)]
struct Affected {
    host: String,
    status: Status,
    summary: String,
}

/// A mass reboot being tracked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebootEpisode {
    /// When the episode was recognised.
    pub started: SystemTime,
    /// Hosts that rebooted in it.
    pub hosts: BTreeSet<String>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    cfg: CorrelationConfig,
    stale_after_intervals: u32,
    hosts: BTreeMap<String, HostTrack>,
    verdicts: BTreeMap<String, Verdict>,
    reboots: BTreeMap<String, Vec<(String, SystemTime)>>,
    episodes: BTreeMap<String, RebootEpisode>,
    /// Verdicts seen but not yet settled, with the time they were first seen.
    pending: BTreeMap<String, SystemTime>,
    dirty: bool,
    /// Least time between two recomputations triggered by reports (ticks always recompute when needed):
    /// during a fleet-wide incident many conditions change at once, and the collector must not spend
    /// itself recomputing on every one of them.
    min_gap: Duration,
    last_recompute: Option<SystemTime>,
    /// Verdicts restored from storage are not closed before this time (their hosts must report first).
    warm_until: Option<SystemTime>,
}

/// Whether a resolver (`127.0.0.1:53`, `[::1]:53`, `[fe80::1%eth0]:53`) is on this host.
fn loopback(resolver: &str) -> bool {
    if let Ok(a) = resolver.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    resolver
        .trim_start_matches('[')
        .split([']', '%'])
        .next()
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

impl Engine {
    /// An empty engine.
    pub fn new(cfg: CorrelationConfig, stale_after_intervals: u32) -> Engine {
        Engine {
            cfg,
            stale_after_intervals,
            hosts: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            reboots: BTreeMap::new(),
            episodes: BTreeMap::new(),
            pending: BTreeMap::new(),
            dirty: false,
            min_gap: Duration::ZERO,
            last_recompute: None,
            warm_until: None,
        }
    }

    /// Recompute at most once per `gap` on reports (the timer catches up).
    pub fn with_min_gap(mut self, gap: Duration) -> Engine {
        self.min_gap = gap;
        self
    }

    /// Restores hosts known from storage (so their absence after a restart is seen, and a new boot id is
    /// a reboot) and the verdicts that were open, which stay open until their hosts had time to report.
    pub fn restore(&mut self, now: SystemTime, hosts: Vec<KnownHost>, verdicts: Vec<Verdict>) {
        for h in hosts {
            self.hosts.insert(
                h.id,
                HostTrack {
                    az: h.az,
                    region: h.region,
                    interval: h.interval,
                    last_seen: now,
                    boot_id: h.boot_id,
                    stale: false,
                    stale_since: None,
                    conds: BTreeMap::new(),
                    snap: Snapshot::default(),
                },
            );
        }
        let longest = self
            .hosts
            .values()
            .map(|h| h.interval)
            .max()
            .unwrap_or(Duration::from_secs(10));
        self.warm_until =
            Some(now + longest * (self.stale_after_intervals + self.cfg.open_after_cycles));
        for v in verdicts {
            self.verdicts.insert(v.key.clone(), v);
        }
    }

    /// The open verdicts.
    pub fn verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.values()
    }

    /// Feeds one report. Returns the events it caused (host back, reboot, verdicts).
    pub fn observe(&mut self, now: SystemTime, r: &HostReport) -> Vec<Event> {
        let mut events = Vec::new();
        let snap = Snapshot::of(r);
        let region = r.region.clone().unwrap_or_default();
        let new_host = !self.hosts.contains_key(&r.host_id);
        let t = self
            .hosts
            .entry(r.host_id.clone())
            .or_insert_with(|| HostTrack {
                az: r.az.clone(),
                region: region.clone(),
                interval: r.interval,
                last_seen: now,
                boot_id: r.boot_id.clone(),
                stale: false,
                stale_since: None,
                conds: BTreeMap::new(),
                snap: Snapshot::default(),
            });
        if t.stale {
            t.stale = false;
            t.stale_since = None;
            self.dirty = true;
            events.push(Event {
                id: 0,
                at: now,
                kind: EventKind::HostBack,
                scope: Scope::Host,
                region: Some(region.clone()).filter(|r| !r.is_empty()),
                az: Some(r.az.clone()),
                host: Some(r.host_id.clone()),
                check: None,
                old_status: Some("stale".into()),
                new_status: Some(r.status().as_str().into()),
                summary: format!("{} reports again", r.host_id),
            });
        }
        let rebooted =
            !new_host && !t.boot_id.is_empty() && !r.boot_id.is_empty() && t.boot_id != r.boot_id;
        if t.az != r.az {
            self.dirty = true;
        }
        t.az = r.az.clone();
        t.region = region;
        t.interval = r.interval;
        t.last_seen = now;
        t.boot_id = r.boot_id.clone();
        let mut changed = false;
        for check in &r.checks {
            let (kind, status, summary) =
                (&check.kind, &check.outcome.status, &check.outcome.summary);
            let c = t.conds.entry(*kind).or_default();
            let was = (c.active, c.status);
            if *status == Status::Ok {
                c.good_streak += 1;
                c.bad_streak = 0;
                if c.good_streak >= self.cfg.close_after_cycles {
                    c.active = false;
                }
            } else {
                c.bad_streak += 1;
                c.good_streak = 0;
                if c.bad_streak >= self.cfg.open_after_cycles {
                    c.active = true;
                }
            }
            if c.active {
                c.status = Some(*status).filter(|s| *s != Status::Ok).or(c.status);
                if *status != Status::Ok {
                    c.summary.clone_from(summary);
                }
            } else if !c.summary.is_empty() {
                // Only an active condition needs its words; an idle host keeps none.
                c.summary = String::new();
            }
            changed |= was != (c.active, c.status);
        }
        t.conds.retain(|k, _| snap.statuses.contains_key(k));
        // Snapshots matter to verdicts only when a condition is active; keep them current anyway (cheap).
        let mesh_relevant = snap.wg_peers != t.snap.wg_peers || snap.wg_keys != t.snap.wg_keys;
        t.snap = snap;
        self.dirty |= changed || new_host || (mesh_relevant && !self.verdicts.is_empty());
        if rebooted {
            let at = r
                .boot_time
                .map(|b| SystemTime::UNIX_EPOCH + Duration::from_secs(b))
                .filter(|b| *b <= now)
                .unwrap_or(now);
            let az = r.az.clone();
            let list = self.reboots.entry(az.clone()).or_default();
            list.retain(|(h, _)| h != &r.host_id);
            list.push((r.host_id.clone(), at));
            events.extend(self.check_reboot(now, &az));
            self.dirty = true;
        }
        let due = self
            .last_recompute
            .is_none_or(|l| now.duration_since(l).unwrap_or_default() >= self.min_gap);
        if self.dirty && due {
            events.extend(self.recompute(now));
        }
        events
    }

    /// Advances time: staleness, recovery end, verdicts.
    pub fn tick(&mut self, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let intervals = self.stale_after_intervals;
        for (id, t) in &mut self.hosts {
            let silent = now.duration_since(t.last_seen).unwrap_or_default();
            if !t.stale && silent > t.interval * intervals {
                t.stale = true;
                t.stale_since = Some(t.last_seen + t.interval * intervals);
                t.conds.clear();
                self.dirty = true;
                events.push(Event {
                    id: 0,
                    at: now,
                    kind: EventKind::HostStale,
                    scope: Scope::Host,
                    region: Some(t.region.clone()).filter(|r| !r.is_empty()),
                    az: Some(t.az.clone()),
                    host: Some(id.clone()),
                    check: None,
                    old_status: None,
                    new_status: Some("stale".into()),
                    summary: format!(
                        "{id} silent for {} (no data, not down)",
                        fmt_duration(silent)
                    ),
                });
            }
        }
        if self.warm_until.is_some_and(|w| now >= w) {
            self.warm_until = None;
            self.dirty = true;
        }
        if self.dirty || !self.episodes.is_empty() || !self.pending.is_empty() {
            events.extend(self.recompute(now));
        }
        events
    }

    /// How long a new verdict must hold before it opens: one reporting interval of its hosts (plus the
    /// agents' jitter), so that every host of the AZ has reported in the meantime. Reports arrive spread
    /// over the interval; without this, the first hosts of an AZ-wide fault would each open a host verdict
    /// before the AZ verdict could fold them.
    fn settle_time(&self, v: &Verdict) -> Duration {
        let longest = v
            .hosts
            .iter()
            .filter_map(|h| self.hosts.get(h))
            .map(|t| t.interval)
            .max()
            .unwrap_or(Duration::from_secs(10));
        longest.mul_f64(1.1)
    }

    fn check_reboot(&mut self, now: SystemTime, az: &str) -> Vec<Event> {
        let window = Duration::from_secs(self.cfg.reboot_window_secs);
        let Some(list) = self.reboots.get_mut(az) else {
            return Vec::new();
        };
        list.retain(|(_, t)| now.duration_since(*t).unwrap_or_default() <= window);
        let recent: BTreeSet<String> = list.iter().map(|(h, _)| h.clone()).collect();
        if let Some(ep) = self.episodes.get_mut(az) {
            ep.hosts.extend(recent);
            return Vec::new();
        }
        let known = self.hosts.values().filter(|h| h.az == az).count();
        if recent.len() < self.cfg.az_min_hosts
            || (recent.len() as f64) * 100.0 < self.cfg.reboot_threshold_percent * known as f64
        {
            return Vec::new();
        }
        let region = self
            .hosts
            .values()
            .find(|h| h.az == az)
            .map(|h| h.region.clone())
            .unwrap_or_default();
        let summary = format!(
            "{az} rebooted: {}/{known} hosts booted within {}",
            recent.len(),
            fmt_duration(window)
        );
        self.episodes.insert(
            az.to_owned(),
            RebootEpisode {
                started: now,
                hosts: recent,
            },
        );
        vec![Event {
            id: 0,
            at: now,
            kind: EventKind::Rebooted,
            scope: Scope::Az,
            region: Some(region).filter(|r| !r.is_empty()),
            az: Some(az.to_owned()),
            host: None,
            check: None,
            old_status: None,
            new_status: None,
            summary,
        }]
    }

    /// Recovery of the AZ's reboot episode, if one is tracked.
    pub fn recovery(&self, az: &str) -> Option<Recovery> {
        let ep = self.episodes.get(az)?;
        let mut r = Recovery {
            since: ep.started,
            rebooted: ep.hosts.len(),
            back: 0,
            raid_rebuilding: 0,
            raid_eta_secs: None,
            dns_not_ok: 0,
            wireguard_not_ok: 0,
        };
        for h in &ep.hosts {
            let Some(t) = self.hosts.get(h) else { continue };
            if t.stale {
                continue;
            }
            r.back += 1;
            if !t.snap.md_syncing.is_empty() {
                r.raid_rebuilding += 1;
                let eta = t.snap.md_syncing.iter().filter_map(|(_, e)| *e).max();
                r.raid_eta_secs = r.raid_eta_secs.max(eta);
            }
            r.dns_not_ok += usize::from(t.snap.not_ok(CheckKind::Dns));
            r.wireguard_not_ok += usize::from(t.snap.not_ok(CheckKind::Wireguard));
        }
        Some(r)
    }

    fn episode_events(&mut self, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let azs: Vec<String> = self.episodes.keys().cloned().collect();
        for az in azs {
            let Some(r) = self.recovery(&az) else {
                continue;
            };
            let Some(ep) = self.episodes.get(&az) else {
                continue;
            };
            let age = now.duration_since(ep.started).unwrap_or_default();
            let done = r.back == r.rebooted
                && r.raid_rebuilding == 0
                && r.dns_not_ok == 0
                && r.wireguard_not_ok == 0;
            let expired = age > Duration::from_secs(self.cfg.recovery_max_secs);
            if done || expired {
                let region = self
                    .hosts
                    .values()
                    .find(|h| h.az == az)
                    .map(|h| h.region.clone())
                    .unwrap_or_default();
                let summary = if done {
                    format!(
                        "{az} recovered: all {} rebooted hosts back, RAID in sync, DNS and WireGuard OK (took {})",
                        r.rebooted,
                        fmt_duration(age)
                    )
                } else {
                    format!(
                        "{az} recovery tracking ended after {}: {}/{} back, {} rebuilding RAID, {} DNS and {} WireGuard not OK",
                        fmt_duration(age),
                        r.back,
                        r.rebooted,
                        r.raid_rebuilding,
                        r.dns_not_ok,
                        r.wireguard_not_ok
                    )
                };
                self.episodes.remove(&az);
                events.push(Event {
                    id: 0,
                    at: now,
                    kind: EventKind::Recovered,
                    scope: Scope::Az,
                    region: Some(region).filter(|r| !r.is_empty()),
                    az: Some(az),
                    host: None,
                    check: None,
                    old_status: None,
                    new_status: None,
                    summary,
                });
            }
        }
        events
    }

    /// Recomputes every verdict and returns the differences as events.
    pub fn recompute(&mut self, now: SystemTime) -> Vec<Event> {
        self.dirty = false;
        self.last_recompute = Some(now);
        let mut events = self.episode_events(now);
        let mut next: BTreeMap<String, Verdict> = BTreeMap::new();
        let cfg = self.cfg.clone();

        // 1. AZs, their known and reporting hosts; unreachable AZs.
        let mut azs: BTreeMap<String, (String, Vec<&String>, Vec<&String>)> = BTreeMap::new();
        for (id, t) in &self.hosts {
            let e = azs
                .entry(t.az.clone())
                .or_insert_with(|| (t.region.clone(), Vec::new(), Vec::new()));
            e.1.push(id);
            if !t.stale {
                e.2.push(id);
            }
        }
        for (az, (region, known, reporting)) in &azs {
            let stale: Vec<&String> = known
                .iter()
                .copied()
                .filter(|h| self.hosts[*h].stale)
                .collect();
            let key = format!("az/{az}/reachability");
            let ratio_met = stale.len() >= cfg.az_min_hosts
                && stale.len() as f64 * 100.0 >= cfg.stale_threshold_percent * known.len() as f64;
            let latest = stale
                .iter()
                .filter_map(|h| self.hosts[*h].stale_since)
                .max();
            let correlated = latest.is_some_and(|l| {
                let window = Duration::from_secs(cfg.stale_window_secs);
                let close = stale
                    .iter()
                    .filter(|h| {
                        self.hosts[**h]
                            .stale_since
                            .is_some_and(|s| l.duration_since(s).unwrap_or_default() <= window)
                    })
                    .count();
                close as f64 * 100.0 >= cfg.stale_threshold_percent * known.len() as f64
            });
            if ratio_met && (correlated || self.verdicts.contains_key(&key)) {
                let since_first = stale
                    .iter()
                    .filter_map(|h| self.hosts[*h].stale_since)
                    .min()
                    .unwrap_or(now);
                next.insert(
                    key.clone(),
                    Verdict {
                        key,
                        scope: Scope::Az,
                        region: region.clone(),
                        az: Some(az.clone()),
                        host: None,
                        check: "reachability".into(),
                        status: Status::Crit,
                        hosts: stale.iter().map(|h| (*h).clone()).collect(),
                        summary: format!(
                            "{az} unreachable: {}/{} hosts silent since {} (stale, not down: no data from them; {} still reporting)",
                            stale.len(),
                            known.len(),
                            rfc3339(since_first),
                            reporting.len()
                        ),
                        since: now,
                    },
                );
            }
        }

        // 2. Active conditions of reporting hosts.
        let mut active: BTreeMap<(String, CheckKind), (Status, String)> = BTreeMap::new();
        for (id, t) in &self.hosts {
            if t.stale {
                continue;
            }
            for (k, c) in &t.conds {
                if c.active {
                    active.insert(
                        (id.clone(), *k),
                        (c.status.unwrap_or(Status::Unknown), c.summary.clone()),
                    );
                }
            }
        }

        // 3. WireGuard mesh: a host most of its peers lost is one verdict about that host.
        let mut key_host: HashMap<&str, &String> = HashMap::new();
        for (id, t) in &self.hosts {
            for k in &t.snap.wg_keys {
                key_host.insert(k.as_str(), id);
            }
        }
        let mut having: HashMap<&str, BTreeSet<&String>> = HashMap::new();
        let mut losing: HashMap<&str, BTreeSet<&String>> = HashMap::new();
        for (id, t) in &self.hosts {
            if t.stale {
                continue;
            }
            let wg_active = active.contains_key(&(id.clone(), CheckKind::Wireguard));
            for (k, state) in &t.snap.wg_peers {
                having.entry(k.as_str()).or_default().insert(id);
                if wg_active && *state != PeerState::Ok {
                    losing.entry(k.as_str()).or_default().insert(id);
                }
            }
        }
        let mut explained: BTreeSet<(String, String)> = BTreeSet::new();
        let mut dead_hosts: BTreeSet<String> = BTreeSet::new();
        for (key, lost_by) in &losing {
            let total = having.get(key).map_or(0, BTreeSet::len);
            if lost_by.len() < cfg.mesh_min_peers || lost_by.len() * 2 <= total {
                continue;
            }
            let target = key_host.get(key).map(|h| (*h).clone());
            let label = target
                .clone()
                .unwrap_or_else(|| format!("peer {}", &key[..key.len().min(8)]));
            let target_stale = target
                .as_ref()
                .is_some_and(|h| self.hosts.get(h).is_some_and(|t| t.stale));
            let status = if target_stale || lost_by.len() == total {
                Status::Crit
            } else {
                Status::Warn
            };
            let (az, region) = target
                .as_ref()
                .and_then(|h| self.hosts.get(h))
                .map(|t| (Some(t.az.clone()), t.region.clone()))
                .unwrap_or((None, String::new()));
            let vkey = format!("host/{label}/wireguard-mesh");
            next.insert(
                vkey.clone(),
                Verdict {
                    key: vkey,
                    scope: Scope::Host,
                    region,
                    az,
                    host: Some(label.clone()),
                    check: "wireguard".into(),
                    status,
                    hosts: vec![label.clone()],
                    summary: format!(
                        "{label} unreachable over WireGuard: lost by {}/{total} of its peers ({}){}",
                        lost_by.len(),
                        lost_by.iter().take(5).map(|h| h.as_str()).collect::<Vec<_>>().join(", "),
                        if target_stale { format!("; {label} itself is stale") } else { String::new() }
                    ),
                    since: now,
                },
            );
            for h in lost_by {
                explained.insert(((*h).clone(), (*key).to_owned()));
            }
            if let Some(t) = target {
                dead_hosts.insert(t);
            }
        }
        // A reporter whose every lost peer is explained, and the dead host's own view, are folded.
        active.retain(|(host, kind), _| {
            if *kind != CheckKind::Wireguard {
                return true;
            }
            if dead_hosts.contains(host) {
                return false;
            }
            let t = &self.hosts[host];
            let lost: Vec<&String> = t
                .snap
                .wg_peers
                .iter()
                .filter(|(_, s)| *s != PeerState::Ok)
                .map(|(k, _)| k)
                .collect();
            t.snap.wg_down
                || lost.is_empty()
                || !lost
                    .iter()
                    .all(|k| explained.contains(&(host.clone(), (*k).clone())))
        });

        // 4. AZ-wide or host-local, per check.
        let mut by_az_check: BTreeMap<(String, CheckKind), Vec<Affected>> = BTreeMap::new();
        for ((host, kind), (status, summary)) in &active {
            let az = self.hosts[host].az.clone();
            by_az_check.entry((az, *kind)).or_default().push(Affected {
                host: host.clone(),
                status: *status,
                summary: summary.clone(),
            });
        }
        let mut az_verdicts: BTreeMap<(String, CheckKind), String> = BTreeMap::new();
        for ((az, kind), affected) in &by_az_check {
            let (region, _, reporting) = &azs[az];
            let n = affected.len();
            let m = reporting.len();
            let status =
                Status::worst_of(affected.iter().map(|a| a.status)).unwrap_or(Status::Unknown);
            if n >= cfg.az_min_hosts && n as f64 * 100.0 >= cfg.az_threshold_percent * m as f64 {
                let key = format!("az/{az}/{kind}");
                let why = self.az_reason(*kind, affected);
                next.insert(
                    key.clone(),
                    Verdict {
                        key: key.clone(),
                        scope: Scope::Az,
                        region: region.clone(),
                        az: Some(az.clone()),
                        host: None,
                        check: kind.as_str().into(),
                        status,
                        hosts: affected.iter().map(|a| a.host.clone()).collect(),
                        summary: format!(
                            "{kind} {status} on {n}/{m} hosts of {az} (AZ-wide){why}: {}",
                            affected[0].summary
                        ),
                        since: now,
                    },
                );
                az_verdicts.insert((az.clone(), *kind), key);
            } else {
                for Affected {
                    host,
                    status,
                    summary,
                } in affected
                {
                    let key = format!("host/{host}/{kind}");
                    let what = self.local_reason(host, *kind);
                    next.insert(
                        key.clone(),
                        Verdict {
                            key,
                            scope: Scope::Host,
                            region: region.clone(),
                            az: Some(az.clone()),
                            host: Some(host.clone()),
                            check: kind.as_str().into(),
                            status: *status,
                            hosts: vec![host.clone()],
                            summary: format!("{kind} {status} on {host} (local: {n}/{m} hosts of {az}){what}: {summary}"),
                            since: now,
                        },
                    );
                }
            }
        }

        // 5. The same AZ-wide fault in every AZ of a region.
        let mut regions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (az, (region, _, reporting)) in &azs {
            if !reporting.is_empty() {
                regions
                    .entry(region.clone())
                    .or_default()
                    .insert(az.clone());
            }
        }
        for (region, region_azs) in &regions {
            if region_azs.len() < 2 {
                continue;
            }
            for kind in CheckKind::ALL {
                let keys: Vec<&String> = region_azs
                    .iter()
                    .filter_map(|az| az_verdicts.get(&(az.clone(), *kind)))
                    .collect();
                if keys.len() != region_azs.len() {
                    continue;
                }
                let folded: Vec<Verdict> = keys.iter().filter_map(|k| next.remove(*k)).collect();
                let hosts: Vec<String> = folded.iter().flat_map(|v| v.hosts.clone()).collect();
                let status =
                    Status::worst_of(folded.iter().map(|v| v.status)).unwrap_or(Status::Unknown);
                let name = if region.is_empty() {
                    "the fleet".to_owned()
                } else {
                    format!("region {region}")
                };
                let key = format!("region/{region}/{kind}");
                next.insert(
                    key.clone(),
                    Verdict {
                        key,
                        scope: Scope::Region,
                        region: region.clone(),
                        az: None,
                        host: None,
                        check: kind.as_str().into(),
                        status,
                        summary: format!(
                            "{kind} {status} in every AZ of {name} ({}): {} hosts — a common cause, not {} separate faults",
                            region_azs.iter().cloned().collect::<Vec<_>>().join(", "),
                            hosts.len(),
                            region_azs.len()
                        ),
                        hosts,
                        since: now,
                    },
                );
            }
        }

        // 6. New verdicts settle for one interval before they open; then diff against the open set.
        self.pending.retain(|k, _| next.contains_key(k));
        let mut settled: BTreeMap<String, Verdict> = BTreeMap::new();
        for (key, mut v) in next {
            if let Some(old) = self.verdicts.get(&key) {
                v.since = old.since;
                if old.status != v.status {
                    events.push(verdict_event(
                        now,
                        EventKind::VerdictChanged,
                        &v,
                        Some(old.status),
                    ));
                }
                settled.insert(key, v);
                continue;
            }
            let first = *self.pending.entry(key.clone()).or_insert(now);
            if now.duration_since(first).unwrap_or_default() >= self.settle_time(&v) {
                self.pending.remove(&key);
                v.since = first;
                events.push(verdict_event(now, EventKind::VerdictOpened, &v, None));
                settled.insert(key, v);
            }
        }
        let mut next = settled;
        let warming = self.warm_until.is_some_and(|w| now < w);
        for (key, old) in &self.verdicts {
            if !next.contains_key(key) {
                if warming {
                    next.insert(key.clone(), old.clone());
                    continue;
                }
                let mut closed = old.clone();
                // Silence is not recovery: say so when every host of the verdict went stale.
                let all_stale = !old.hosts.is_empty()
                    && old
                        .hosts
                        .iter()
                        .all(|h| self.hosts.get(h).is_some_and(|t| t.stale));
                closed.summary =
                    if all_stale && old.check != "reachability" && !old.key.ends_with("-mesh") {
                        format!("no data (hosts stale), not recovered: {}", old.summary)
                    } else {
                        format!("closed: {}", old.summary)
                    };
                events.push(verdict_event(
                    now,
                    EventKind::VerdictClosed,
                    &closed,
                    Some(old.status),
                ));
            }
        }
        self.verdicts = next;
        events
    }

    /// Why an AZ-wide fault of this check is AZ-wide, in words.
    fn az_reason(&self, kind: CheckKind, affected: &[Affected]) -> String {
        if kind != CheckKind::Dns {
            return String::new();
        }
        let mut upstream = 0;
        let mut local = 0;
        for a in affected {
            let snap = &self.hosts[&a.host].snap;
            if snap
                .dns
                .iter()
                .any(|(_, o)| matches!(o, DnsOutcome::Servfail | DnsOutcome::Timeout))
            {
                upstream += 1;
            }
            if snap
                .dns
                .iter()
                .any(|(r, o)| *o == DnsOutcome::Refused && loopback(r))
            {
                local += 1;
            }
        }
        if upstream * 2 > affected.len() {
            " — the AZ recursor or upstream is failing (SERVFAIL/timeout on most hosts)".into()
        } else if local * 2 > affected.len() {
            " — local resolvers down on most hosts".into()
        } else {
            String::new()
        }
    }

    /// What a host-local fault of this check means, in words.
    fn local_reason(&self, host: &str, kind: CheckKind) -> String {
        let Some(t) = self.hosts.get(host) else {
            return String::new();
        };
        match kind {
            CheckKind::Dns
                if t.snap
                    .dns
                    .iter()
                    .any(|(r, o)| *o == DnsOutcome::Refused && loopback(r)) =>
            {
                " — the local resolver is down on this host".into()
            }
            CheckKind::Dns
                if t.snap
                    .dns
                    .iter()
                    .any(|(_, o)| matches!(o, DnsOutcome::Servfail | DnsOutcome::Timeout)) =>
            {
                " — this host's resolvers are failing".into()
            }
            _ => String::new(),
        }
    }

    /// The zones view at `now`.
    pub fn zones(&self, az_filter: Option<&str>) -> ZonesView {
        let mut zones: BTreeMap<String, ZoneView> = BTreeMap::new();
        for t in self.hosts.values() {
            let z = zones.entry(t.az.clone()).or_insert_with(|| ZoneView {
                az: t.az.clone(),
                region: t.region.clone(),
                hosts: 0,
                reporting: 0,
                stale: 0,
                status: Status::Ok,
                verdicts: Vec::new(),
                reboot: None,
            });
            z.hosts += 1;
            if t.stale {
                z.stale += 1;
            } else {
                z.reporting += 1;
            }
        }
        let mut region_verdicts = Vec::new();
        for v in self.verdicts.values() {
            let view = VerdictView {
                scope: v.scope,
                check: v.check.clone(),
                status: v.status,
                hosts: v.hosts.clone(),
                summary: v.summary.clone(),
                since: v.since,
                az: v.az.clone(),
                region: v.region.clone(),
            };
            match (&v.scope, &v.az) {
                (Scope::Region, _) | (_, None) => region_verdicts.push(view),
                (_, Some(az)) => {
                    if let Some(z) = zones.get_mut(az) {
                        z.status = z.status.worst(v.status);
                        z.verdicts.push(view);
                    }
                }
            }
        }
        for z in zones.values_mut() {
            z.reboot = self.recovery(&z.az);
            z.verdicts.sort_by_key(|v| {
                (
                    std::cmp::Reverse(v.status.severity()),
                    v.scope != Scope::Az,
                    v.check.clone(),
                )
            });
        }
        ZonesView {
            zones: zones
                .into_values()
                .filter(|z| az_filter.is_none_or(|a| a == z.az))
                .collect(),
            region_verdicts: if az_filter.is_some() {
                Vec::new()
            } else {
                region_verdicts
            },
        }
    }

    /// Known hosts and their boot ids, for storage.
    pub fn registry(&self) -> Vec<KnownHost> {
        self.hosts
            .iter()
            .map(|(id, t)| KnownHost {
                id: id.clone(),
                az: t.az.clone(),
                region: t.region.clone(),
                boot_id: t.boot_id.clone(),
                interval: t.interval,
            })
            .collect()
    }
}

fn verdict_event(now: SystemTime, kind: EventKind, v: &Verdict, old: Option<Status>) -> Event {
    Event {
        id: 0,
        at: now,
        kind,
        scope: v.scope,
        region: Some(v.region.clone()).filter(|r| !r.is_empty()),
        az: v.az.clone(),
        host: v.host.clone(),
        check: Some(v.check.clone()),
        old_status: old.map(|s| s.as_str().to_owned()),
        new_status: match kind {
            EventKind::VerdictClosed => Some("ok".into()),
            _ => Some(v.status.as_str().to_owned()),
        },
        summary: v.summary.clone(),
    }
}

#[cfg(test)]
mod tests;
