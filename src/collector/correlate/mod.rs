//! Per-AZ correlation: thousands of per-host results turned into one verdict per root cause, open while the
//! fault lasts and closed when it ends.
//!
//! A pure state machine: fed reports ([`Engine::observe`]) and the passage of time ([`Engine::tick`]), with
//! the clock passed in, it returns the events it produced. No I/O, no clock of its own: every rule has a
//! deterministic test, and property tests drive it with random fleets.
//!
//! Each recomputation is a short sequence of named phases ([`Engine::recompute`]):
//! 1. **episodes** (`reboot`): mass reboots recovered or timed out;
//! 2. **reachability** (`reachability`): AZs gone silent, or several at once (then it is the collector);
//! 3. **conditions** (`hosts`): the debounced (host, check) conditions open now, with flap damping;
//! 4. **mesh** (`mesh`): WireGuard hosts lost by most of their peers, folding the peers' conditions;
//! 5. **checks** (`checks`): per check, one AZ verdict when AZ-wide, host verdicts when local, one region
//!    verdict when in every AZ of a region;
//! 6. **reconcile** (`lifecycle`): what was found against what is open: settle, open, change, fold
//!    (escalate, de-escalate), close.
//!
//! Invariants: membership is recomputed from the hosts' current state every time, so a verdict lists only
//! hosts whose condition holds now (or that are silent, for reachability); a verdict's `since` never moves
//! later; a host is in at most one open verdict per family; missing data is stale, never "down".

mod checks;
mod config;
mod hosts;
mod lifecycle;
mod mesh;
mod reach;
mod reachability;
mod reboot;
mod view;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use self::hosts::{HostTrack, Snapshot};
use self::reboot::Booted;
use crate::check::{CheckKind, Status};
use crate::report::HostReport;
use crate::util::fmt_duration;

pub use self::config::CorrelationConfig;
pub use self::reboot::RebootEpisode;
pub use crate::fleet::{Event, EventKind, Recovery, Scope, VerdictView, ZoneView, ZonesView};

/// An open verdict (kept on disk across restarts as JSON; fields are only ever added, with defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Stable identity: `scope/place/family` (`az/az1/dns`, `host/hv-3/md-raid`, `collector/-/reachability`).
    pub key: String,
    /// Where.
    pub scope: Scope,
    /// Region.
    pub region: String,
    /// AZ (host and AZ scopes).
    pub az: Option<String>,
    /// Host (host scope).
    pub host: Option<String>,
    /// `memory`, `conntrack`, `md-raid`, `dns`, `wireguard`, `io`, or `reachability`.
    pub check: String,
    /// Worst status among the hosts.
    pub status: Status,
    /// Hosts it covers now.
    pub hosts: Vec<String>,
    /// One line.
    pub summary: String,
    /// When its condition began.
    pub since: SystemTime,
    /// Held open by flap damping.
    #[serde(default)]
    pub flapping: bool,
    /// Its condition recovered at this time, less than the flap window after the verdict opened: it is held
    /// open until the flap window has passed since it opened, so a condition that comes back soon is the
    /// same verdict, not a second one.
    #[serde(default)]
    pub recovered_at: Option<SystemTime>,
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

/// A (host, check) condition open now.
#[derive(Debug, Clone)]
pub(super) struct Active {
    pub(super) host: String,
    pub(super) az: String,
    pub(super) kind: CheckKind,
    pub(super) status: Status,
    pub(super) summary: String,
    pub(super) since: SystemTime,
    pub(super) flapping: bool,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    cfg: CorrelationConfig,
    stale_after_intervals: u32,
    hosts: BTreeMap<String, HostTrack>,
    verdicts: BTreeMap<String, Verdict>,
    /// Findings not yet settled, with the time they were first found.
    pending: BTreeMap<String, SystemTime>,
    reboots: BTreeMap<String, Vec<Booted>>,
    episodes: BTreeMap<String, RebootEpisode>,
    /// Wider verdicts whose fault narrowed, since when (they de-escalate once that has lasted the settle
    /// time of what they narrow to).
    narrowing: BTreeMap<String, SystemTime>,
    /// Why the collector's own ingest is degraded right now (shedding, lagging), if it is.
    ingest_degraded: Option<String>,
    dirty: bool,
    /// Least time between two recomputations triggered by reports (ticks always recompute when needed):
    /// during a fleet-wide incident many conditions change at once, and the collector must not spend
    /// itself recomputing on every one of them.
    min_gap: Duration,
    last_recompute: Option<SystemTime>,
    /// Verdicts restored from storage are not closed before this time (their hosts must report first).
    warm_until: Option<SystemTime>,
    /// The keys of the verdicts restored from storage (only these are held while warming up).
    restored: BTreeSet<String>,
    /// When each open verdict opened (under this process): one that recovers sooner than the flap window
    /// after opening is held open until then.
    opened: BTreeMap<String, SystemTime>,
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
            pending: BTreeMap::new(),
            reboots: BTreeMap::new(),
            episodes: BTreeMap::new(),
            narrowing: BTreeMap::new(),
            ingest_degraded: None,
            dirty: false,
            min_gap: Duration::ZERO,
            last_recompute: None,
            warm_until: None,
            restored: BTreeSet::new(),
            opened: BTreeMap::new(),
        }
    }

    /// Recompute at most once per `gap` on reports (the timer catches up).
    pub fn with_min_gap(mut self, gap: Duration) -> Engine {
        self.min_gap = gap;
        self
    }

    /// An announced interval as the collector uses it: at least 1 s, at most `max-interval-secs`.
    fn capped(&self, interval: Duration) -> Duration {
        interval.clamp(
            Duration::from_secs(1),
            Duration::from_secs(self.cfg.max_interval_secs),
        )
    }

    /// How long a new verdict paced by `interval` settles: one interval (plus the agents' jitter), so that
    /// every host of the AZ has reported meanwhile; at most `settle-max-secs`.
    fn settle_for(&self, interval: Duration) -> Duration {
        interval
            .mul_f64(1.1)
            .min(Duration::from_secs(self.cfg.settle_max_secs))
    }

    /// Restores hosts known from storage (so their absence after a restart is seen, and a new boot id is
    /// a reboot) and the verdicts that were open, which stay open until their hosts had time to report.
    pub fn restore(&mut self, now: SystemTime, hosts: Vec<KnownHost>, verdicts: Vec<Verdict>) {
        for h in hosts {
            let interval = self.capped(h.interval);
            self.hosts.insert(
                h.id,
                HostTrack::new(h.az, h.region, interval, now, h.boot_id),
            );
        }
        let longest = self
            .hosts
            .values()
            .map(|h| h.interval)
            .max()
            .unwrap_or(Duration::from_secs(10));
        self.warm_until = Some(
            now + longest.saturating_mul(self.stale_after_intervals + self.cfg.open_after_cycles),
        );
        for v in verdicts {
            self.restored.insert(v.key.clone());
            self.verdicts.insert(v.key.clone(), v);
        }
        if self.restored.is_empty() {
            self.warm_until = None;
        }
    }

    /// The open verdicts.
    pub fn verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.values()
    }

    /// Whether a host is stale (`None`: unknown host). The collector's host API, zones, metrics and the
    /// page all read staleness here, so they agree.
    pub fn is_stale(&self, host: &str) -> Option<bool> {
        self.hosts.get(host).map(|t| t.stale)
    }

    /// Tells the engine whether the collector's own ingest is degraded (shedding load, lagging), and why.
    /// Meanwhile no verdict is opened from staleness: silence then says more about the collector.
    pub fn set_ingest_degraded(&mut self, why: Option<String>) {
        if self.ingest_degraded != why {
            self.ingest_degraded = why;
            self.dirty = true;
        }
    }

    /// Why ingest is degraded, if it is.
    pub fn ingest_degraded(&self) -> Option<&str> {
        self.ingest_degraded.as_deref()
    }

    /// Feeds one report. Returns the events it caused (host back, reboot, verdicts).
    pub fn observe(&mut self, now: SystemTime, r: &HostReport) -> Vec<Event> {
        let mut events = Vec::new();
        let snap = Snapshot::of(r, self.hosts.get(&r.host_id).map(|t| &t.snap));
        let region = r.region.clone().unwrap_or_default();
        let interval = self.capped(r.interval);
        let new_host = !self.hosts.contains_key(&r.host_id);
        let cfg = &self.cfg;
        let t = self.hosts.entry(r.host_id.clone()).or_insert_with(|| {
            HostTrack::new(
                r.az.clone(),
                region.clone(),
                interval,
                now,
                r.boot_id.clone(),
            )
        });
        if t.stale {
            t.stale = false;
            t.stale_since = None;
            self.dirty = true;
            events.push(host_event(
                now,
                EventKind::HostBack,
                r,
                Some("stale"),
                Some(r.status().as_str()),
                format!("{} reports again", r.host_id),
            ));
        }
        let rebooted =
            !new_host && !t.boot_id.is_empty() && !r.boot_id.is_empty() && t.boot_id != r.boot_id;
        let moved = t.az != r.az || t.region != region;
        t.az = r.az.clone();
        t.region = region;
        t.interval = interval;
        t.last_seen = now;
        t.boot_id = r.boot_id.clone();
        let mut changed = moved;
        for c in &r.checks {
            let cond = t.conds.entry(c.kind).or_default();
            changed |= cond.feed(now, c.outcome.status, &c.outcome.summary, cfg);
        }
        let before = t.conds.len();
        t.conds.retain(|k, _| snap.statuses.contains_key(k));
        changed |= t.conds.len() != before;
        let mesh_relevant = snap.wg_peers != t.snap.wg_peers || snap.wg_keys != t.snap.wg_keys;
        // Which targets a host cannot reach decides the reach verdicts, whatever its status did.
        let reach_relevant = snap.reach != t.snap.reach;
        if rebooted {
            // A boot that never showed a unit up (rebooted again before systemd answered) leaves the
            // earlier boot's units as the ones to come back.
            let up = std::mem::take(&mut t.snap.units_up);
            if !up.is_empty() {
                t.units_before_boot = up;
            }
        }
        t.snap = snap;
        self.dirty |=
            changed || new_host || reach_relevant || (mesh_relevant && !self.verdicts.is_empty());
        if rebooted {
            let booted = r
                .boot_time
                .and_then(|b| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(b)))
                .filter(|b| *b <= now)
                .unwrap_or(now);
            events.extend(self.record_reboot(now, &r.az, &r.host_id, booted));
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

    /// Advances time: staleness, recovery, settling verdicts.
    pub fn tick(&mut self, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let intervals = self.stale_after_intervals;
        for (id, t) in &mut self.hosts {
            if t.stale || !t.silent_too_long(now, intervals) {
                continue;
            }
            t.stale = true;
            t.stale_since = t
                .last_seen
                .checked_add(t.interval.saturating_mul(intervals));
            t.conds.clear();
            self.dirty = true;
            let silent = now.duration_since(t.last_seen).unwrap_or_default();
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
        if self.warm_until.is_some_and(|w| now >= w) {
            self.warm_until = None;
            self.restored.clear();
            self.dirty = true;
        }
        if self.dirty
            || !self.episodes.is_empty()
            || !self.pending.is_empty()
            || !self.narrowing.is_empty()
            || self.verdicts.values().any(|v| v.recovered_at.is_some())
        {
            events.extend(self.recompute(now));
        }
        events
    }

    /// Recomputes every verdict from the hosts' current state and returns the differences as events.
    pub fn recompute(&mut self, now: SystemTime) -> Vec<Event> {
        self.dirty = false;
        self.last_recompute = Some(now);
        let mut events = self.episode_events(now);
        let azs = self.az_index();
        let mut found = self.reachability_findings(now, &azs);
        let active = self.active_conditions();
        let mesh = self.mesh_findings(now, &active);
        found.extend(mesh.findings);
        found.extend(self.reach_findings(&azs, &active));
        found.extend(self.check_findings(&azs, &active, &mesh.folded));
        events.extend(self.reconcile(now, found));
        events
    }

    /// Every open (host, check) condition of a reporting host.
    fn active_conditions(&self) -> Vec<Active> {
        let mut out = Vec::new();
        for (id, t) in self.hosts.iter().filter(|(_, t)| !t.stale) {
            for (kind, c) in t.conds.iter().filter(|(_, c)| c.active) {
                out.push(Active {
                    host: id.clone(),
                    az: t.az.clone(),
                    kind: *kind,
                    status: c.status.unwrap_or(Status::Unknown),
                    summary: c.summary.clone(),
                    since: c.since.unwrap_or(t.last_seen),
                    flapping: c.flapping,
                });
            }
        }
        out
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

fn host_event(
    now: SystemTime,
    kind: EventKind,
    r: &HostReport,
    old: Option<&str>,
    new: Option<&str>,
    summary: String,
) -> Event {
    Event {
        id: 0,
        at: now,
        kind,
        scope: Scope::Host,
        region: r.region.clone().filter(|r| !r.is_empty()),
        az: Some(r.az.clone()),
        host: Some(r.host_id.clone()),
        check: None,
        old_status: old.map(str::to_owned),
        new_status: new.map(str::to_owned),
        summary,
    }
}
