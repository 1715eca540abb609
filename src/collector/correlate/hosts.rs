//! What the engine keeps of each host: identity, timing, the facts correlation needs from its latest report,
//! and one debounced condition per check.
//!
//! A condition (host, check) follows the host's reports with hysteresis:
//! - it **opens** after `open-after-cycles` non-OK reports in a row, or when the check keeps changing (at
//!   least `flap-changes` changes OK <-> not OK within `flap-window-secs`);
//! - it **closes** after `close-after-cycles` OK reports in a row, unless it is **flapping** (it changed that
//!   often, or came back within the flap window of closing): then it also needs `flap-window-secs` without a
//!   non-OK report. One flapping verdict, never a string of open/close events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::CorrelationConfig;
use crate::check::dns::DnsOutcome;
use crate::check::wireguard::PeerState;
use crate::check::{CheckKind, Details, Status};
use crate::report::HostReport;

/// Most changes remembered per condition (enough to judge any `flap-changes`).
const MAX_CHANGES: usize = 64;

/// A debounced (host, check) condition.
#[derive(Debug, Clone, Default)]
pub(super) struct Cond {
    bad_streak: u32,
    good_streak: u32,
    /// The latest report's status was not OK.
    last_bad: Option<bool>,
    /// When the latest non-OK report came.
    last_bad_at: Option<SystemTime>,
    /// First non-OK report of the current streak.
    streak_since: Option<SystemTime>,
    /// Times of the recent changes OK <-> not OK.
    changes: VecDeque<SystemTime>,
    /// When the condition last closed.
    closed_at: Option<SystemTime>,
    /// Open (counts toward verdicts).
    pub(super) active: bool,
    /// Open and flapping: held until quiet for the flap window.
    pub(super) flapping: bool,
    /// When it opened: the first non-OK report of the streak that opened it.
    pub(super) since: Option<SystemTime>,
    /// The latest non-OK status while open.
    pub(super) status: Option<Status>,
    /// The latest non-OK summary while open.
    pub(super) summary: String,
}

fn within(now: SystemTime, t: SystemTime, window: Duration) -> bool {
    now.duration_since(t).unwrap_or_default() <= window
}

impl Cond {
    /// Feeds one report's status; returns whether anything verdicts depend on changed.
    pub(super) fn feed(
        &mut self,
        now: SystemTime,
        status: Status,
        summary: &str,
        cfg: &CorrelationConfig,
    ) -> bool {
        let before = (self.active, self.flapping, self.status);
        let window = Duration::from_secs(cfg.flap_window_secs);
        let bad = status != Status::Ok;
        if self.last_bad.is_some_and(|b| b != bad) {
            self.changes.push_back(now);
            if self.changes.len() > MAX_CHANGES {
                self.changes.pop_front();
            }
        }
        self.last_bad = Some(bad);
        while self
            .changes
            .front()
            .is_some_and(|t| !within(now, *t, window))
        {
            self.changes.pop_front();
        }
        let churning = self.changes.len() >= cfg.flap_changes as usize;
        if bad {
            self.bad_streak = self.bad_streak.saturating_add(1);
            self.good_streak = 0;
            self.last_bad_at = Some(now);
            let first = *self.streak_since.get_or_insert(now);
            if !self.active && (self.bad_streak >= cfg.open_after_cycles || churning) {
                self.active = true;
                let back_soon = self.closed_at.is_some_and(|c| within(now, c, window));
                self.flapping = churning || back_soon;
                self.since = Some(first);
            }
            if self.active {
                self.status = Some(status);
                self.summary.clear();
                self.summary.push_str(summary);
            }
        } else {
            self.good_streak = self.good_streak.saturating_add(1);
            self.bad_streak = 0;
            self.streak_since = None;
            let quiet = self.last_bad_at.is_none_or(|t| !within(now, t, window));
            if self.active
                && self.good_streak >= cfg.close_after_cycles
                && (!self.flapping || quiet)
            {
                self.active = false;
                self.flapping = false;
                self.closed_at = Some(now);
                self.since = None;
                self.status = None;
                self.summary = String::new();
            }
        }
        if self.active && churning {
            self.flapping = true;
        }
        before != (self.active, self.flapping, self.status)
    }
}

/// The latest facts of a host's report that correlation looks into.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Snapshot {
    pub(super) statuses: BTreeMap<CheckKind, Status>,
    pub(super) dns: Vec<DnsSeen>,
    pub(super) wg_keys: Vec<String>,
    pub(super) wg_down: bool,
    pub(super) wg_peers: Vec<PeerSeen>,
    pub(super) md_syncing: Vec<Syncing>,
    /// Units the services check saw up (`active`, `reloading`).
    pub(super) units_up: BTreeSet<String>,
    /// Units the services check judged not OK.
    pub(super) units_down: BTreeSet<String>,
    /// The reach check's targets.
    pub(super) reach: Vec<super::reach::TargetSeen>,
}

/// One DNS result: which resolver, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DnsSeen {
    pub(super) resolver: String,
    pub(super) outcome: DnsOutcome,
}

/// One WireGuard peer as this host sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PeerSeen {
    pub(super) key: String,
    pub(super) state: PeerState,
    /// The host names a suspect conntrack entry on its UDP flow to this peer.
    pub(super) stale_conntrack: bool,
}

/// An md array resyncing or recovering, with its ETA.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Syncing {
    pub(super) array: String,
    pub(super) eta_secs: Option<u64>,
}

impl Snapshot {
    /// The facts of a report. A check sent without details (compact, [`Details::Unchanged`]) keeps its
    /// facts from `prev`, the host's previous snapshot.
    pub(super) fn of(r: &HostReport, prev: Option<&Snapshot>) -> Snapshot {
        let mut s = Snapshot::default();
        for c in &r.checks {
            s.statuses.insert(c.kind, c.outcome.status);
            match &c.outcome.details {
                Details::Unchanged => {
                    if let Some(p) = prev {
                        match c.kind {
                            CheckKind::Dns => s.dns = p.dns.clone(),
                            CheckKind::Wireguard => {
                                s.wg_keys = p.wg_keys.clone();
                                s.wg_down = p.wg_down;
                                s.wg_peers = p.wg_peers.clone();
                            }
                            CheckKind::MdRaid => s.md_syncing = p.md_syncing.clone(),
                            CheckKind::Services => {
                                s.units_up = p.units_up.clone();
                                s.units_down = p.units_down.clone();
                            }
                            CheckKind::Reach => s.reach = p.reach.clone(),
                            _ => {}
                        }
                    }
                }
                Details::Dns(d) => {
                    s.dns = d
                        .results
                        .iter()
                        .map(|x| DnsSeen {
                            resolver: x.resolver.clone(),
                            outcome: x.outcome,
                        })
                        .collect()
                }
                Details::Wireguard(w) => {
                    for i in &w.interfaces {
                        s.wg_keys.extend(i.public_key.clone());
                        s.wg_down |= !i.up;
                        s.wg_peers.extend(i.peers.iter().map(|p| PeerSeen {
                            key: p.public_key.clone(),
                            state: p.state,
                            stale_conntrack: p.suspect_flow().is_some(),
                        }));
                    }
                }
                Details::Reach(d) => {
                    s.reach = d
                        .targets
                        .iter()
                        .map(|t| super::reach::TargetSeen {
                            name: t.name.clone(),
                            address: t.address.clone(),
                            ip: super::reach::TargetSeen::ip_of(&t.address),
                            reachable: t.reachable || t.sent == 0,
                            critical: t.critical,
                            class: t.failure.clone().unwrap_or_else(|| "no answer".into()),
                        })
                        .collect()
                }
                Details::Services(d) => {
                    for u in &d.units {
                        if u.is_up() {
                            s.units_up.insert(u.name.clone());
                        }
                        if u.status != Status::Ok {
                            s.units_down.insert(u.name.clone());
                        }
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
                        .map(|a| Syncing {
                            array: a.name.clone(),
                            eta_secs: a.sync_eta_secs,
                        })
                        .collect()
                }
                _ => {}
            }
        }
        s
    }

    pub(super) fn not_ok(&self, k: CheckKind) -> bool {
        self.statuses.get(&k).is_some_and(|s| *s != Status::Ok)
    }
}

/// Everything the engine knows of one host.
#[derive(Debug, Clone)]
pub(super) struct HostTrack {
    pub(super) az: String,
    pub(super) region: String,
    /// The announced interval, capped at `max-interval-secs`.
    pub(super) interval: Duration,
    pub(super) last_seen: SystemTime,
    pub(super) boot_id: String,
    pub(super) stale: bool,
    pub(super) stale_since: Option<SystemTime>,
    pub(super) conds: BTreeMap<CheckKind, Cond>,
    pub(super) snap: Snapshot,
    /// The units that were up in the last report of the host's previous boot (set when it reboots).
    pub(super) units_before_boot: BTreeSet<String>,
}

impl HostTrack {
    pub(super) fn new(
        az: String,
        region: String,
        interval: Duration,
        now: SystemTime,
        boot_id: String,
    ) -> HostTrack {
        HostTrack {
            az,
            region,
            interval,
            last_seen: now,
            boot_id,
            stale: false,
            stale_since: None,
            conds: BTreeMap::new(),
            snap: Snapshot::default(),
            units_before_boot: BTreeSet::new(),
        }
    }

    /// Silent for longer than `intervals` of its (capped) interval.
    pub(super) fn silent_too_long(&self, now: SystemTime, intervals: u32) -> bool {
        now.duration_since(self.last_seen).unwrap_or_default()
            > self.interval.saturating_mul(intervals)
    }
}
