//! The lifecycle of verdicts: what the rules find now ([`Finding`]s) reconciled with what is open.
//!
//! ```text
//!                 found, held for the settle time              status or flapping changes
//!   (nothing) ───────────────────────────────────────▶ OPEN ◀──────────────────────────────┐
//!       ▲          (pending while settling)              │  │    verdict-changed           │
//!       │                                                │  └──────────────────────────────┘
//!       │  verdict-closed: no longer found               │  the same root cause found at
//!       └────────────────────────────────────────────────┤  another scope (its hosts overlap):
//!                                                        │  folded into it / split into it,
//!                                                        ▼  one verdict-changed, `since` kept
//!                                              OPEN at the new scope
//! ```
//!
//! - A verdict is the same verdict for as long as its key (`scope/place/family`) is found. Its hosts, status
//!   and summary are recomputed from the hosts' current state every time; its `since` never moves later.
//! - **Escalation**: a finding at a wider scope whose hosts overlap open verdicts of the same family at a
//!   narrower one takes them over (host -> AZ -> region; AZ unreachable -> collector): one `verdict-changed`,
//!   the earliest `since`, no `verdict-closed` that would read as recovery.
//! - **De-escalation**: the reverse; the wider verdict gives way to the narrower findings of its hosts still
//!   failing (each keeps its own `since`), with one `verdict-changed` on the wider verdict.
//! - Everything else found is new: it **settles** (one reporting interval of its AZ, capped) before it opens.
//! - Nothing found and nothing taking over: **closed**, saying whether it recovered or went silent, or
//!   folded into another open verdict of its fault that now lists its hosts. A check's verdict that
//!   recovered sooner than the flap window after it opened (`opened`, carried over escalations) is **held**
//!   open until then (`recovered_at`, one `verdict-changed`): found again meanwhile, it is the same verdict.
//!   At most one verdict per (fault, place) opens per flap window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::{Engine, Event, EventKind, Scope, Verdict};
use crate::check::Status;
use crate::util::fmt_duration;

/// What a rule finds at one recomputation.
#[derive(Debug, Clone)]
pub(super) struct Finding {
    pub(super) key: String,
    pub(super) scope: Scope,
    pub(super) region: String,
    pub(super) az: Option<String>,
    pub(super) host: Option<String>,
    pub(super) check: String,
    pub(super) status: Status,
    pub(super) hosts: Vec<String>,
    pub(super) summary: String,
    /// When its condition began (the earliest of its hosts').
    pub(super) since: SystemTime,
    pub(super) flapping: bool,
    /// How long it must hold before it opens as a new verdict.
    pub(super) settle: Duration,
    /// Found from silence: while the collector's own ingest is degraded, it opens no new verdict.
    pub(super) from_staleness: bool,
}

/// `host/hv-1/dns` -> `dns`: what a verdict is about, whatever its scope.
pub(super) fn family(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

fn rank(s: Scope) -> u8 {
    match s {
        Scope::Host => 0,
        Scope::Az => 1,
        Scope::Region => 2,
        Scope::Collector => 3,
    }
}

impl Finding {
    fn into_verdict(self, since: SystemTime) -> Verdict {
        Verdict {
            key: self.key,
            scope: self.scope,
            region: self.region,
            az: self.az,
            host: self.host,
            check: self.check,
            status: self.status,
            hosts: self.hosts,
            summary: self.summary,
            since,
            flapping: self.flapping,
            recovered_at: None,
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|h| b.contains(h))
}

pub(super) fn verdict_event(
    now: SystemTime,
    kind: EventKind,
    v: &Verdict,
    old: Option<Status>,
    summary: String,
) -> Event {
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
        summary,
    }
}

/// The transformations found in one reconciliation: which open verdicts were taken over by which findings.
#[derive(Default)]
struct Lineage {
    /// Finding key -> the open verdicts it took over.
    preds: BTreeMap<String, Vec<Verdict>>,
}

impl Engine {
    /// Reconciles what the rules found with the open verdicts; returns the events.
    pub(super) fn reconcile(&mut self, now: SystemTime, found: Vec<Finding>) -> Vec<Event> {
        let found_keys: BTreeSet<String> = found.iter().map(|f| f.key.clone()).collect();
        let orphans: Vec<Verdict> = self
            .verdicts
            .values()
            .filter(|v| !found_keys.contains(&v.key))
            .cloned()
            .collect();
        let mut events = Vec::new();
        let mut next: BTreeMap<String, Verdict> = BTreeMap::new();
        let mut lineage = Lineage::default();
        let mut narrowing: BTreeMap<String, SystemTime> = BTreeMap::new();
        let mut held: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
        for f in found {
            if let Some(old) = self.verdicts.get(&f.key) {
                let old = old.clone();
                // A narrower verdict of the same fault whose hosts joined this one is folded into it, not
                // closed as if it had recovered.
                let joined: Vec<Verdict> = orphans
                    .iter()
                    .filter(|o| {
                        family(&o.key) == family(&f.key)
                            && rank(o.scope) < rank(f.scope)
                            && overlaps(&o.hosts, &f.hosts)
                    })
                    .cloned()
                    .collect();
                let v = f.into_verdict(old.since);
                if joined.is_empty() {
                    events.extend(changed(now, &old, &v));
                } else {
                    lineage.preds.insert(v.key.clone(), joined);
                }
                next.insert(v.key.clone(), v);
                continue;
            }
            let preds: Vec<Verdict> = orphans
                .iter()
                .filter(|o| {
                    family(&o.key) == family(&f.key)
                        && o.scope != f.scope
                        && overlaps(&o.hosts, &f.hosts)
                })
                .cloned()
                .collect();
            // A wider verdict gives way to narrower ones only once the narrowing has lasted their settle
            // time: a fault clearing host by host is not a string of de-escalations.
            if let Some(wide) = preds.iter().find(|p| rank(p.scope) > rank(f.scope)) {
                let t0 = self.narrowing.get(&wide.key).copied().unwrap_or(now);
                narrowing.insert(wide.key.clone(), t0);
                if now.duration_since(t0).unwrap_or_default() < f.settle {
                    held.entry(wide.key.clone()).or_default().push(f);
                    continue;
                }
            }
            if !preds.is_empty() {
                // Escalation keeps the earliest `since` of what it folds; de-escalation, each host's own.
                let since = preds
                    .iter()
                    .filter(|p| rank(p.scope) < rank(f.scope))
                    .map(|p| p.since)
                    .fold(f.since, SystemTime::min);
                self.pending.remove(&f.key);
                let v = f.into_verdict(since);
                // The fault has had a verdict since its predecessors opened: the flap window runs from then.
                let opened = preds
                    .iter()
                    .filter_map(|p| self.opened.get(&p.key).copied())
                    .fold(now, SystemTime::min);
                self.opened.insert(v.key.clone(), opened);
                lineage.preds.insert(v.key.clone(), preds);
                next.insert(v.key.clone(), v);
                continue;
            }
            if f.from_staleness && self.ingest_degraded.is_some() {
                // The monitor doubts itself first: while its own ingest sheds or lags, silence proves nothing.
                continue;
            }
            let first = *self.pending.entry(f.key.clone()).or_insert(now);
            if now.duration_since(first).unwrap_or_default() >= f.settle {
                self.pending.remove(&f.key);
                let since = first.min(f.since);
                let v = f.into_verdict(since);
                self.opened.insert(v.key.clone(), now);
                events.push(verdict_event(
                    now,
                    EventKind::VerdictOpened,
                    &v,
                    None,
                    v.summary.clone(),
                ));
                next.insert(v.key.clone(), v);
            }
        }
        self.pending.retain(|k, _| found_keys.contains(k));
        for (key, parts) in held {
            if let Some(old) = self.verdicts.get(&key) {
                next.insert(key, clearing(old, &parts));
            }
        }
        let decided: BTreeSet<&String> = lineage.preds.values().flatten().map(|p| &p.key).collect();
        narrowing.retain(|k, _| !decided.contains(k) || next.contains_key(k));
        self.narrowing = narrowing;
        events.extend(self.transformations(now, &lineage, &next));
        events.extend(self.closures(now, &orphans, &lineage, &mut next));
        self.opened.retain(|k, _| next.contains_key(k));
        self.verdicts = next;
        events
    }

    /// One `verdict-changed` per escalation (on the wider verdict, naming what it folded) and per
    /// de-escalation (on the wider verdict that gave way, naming what it split into).
    fn transformations(
        &self,
        now: SystemTime,
        lineage: &Lineage,
        next: &BTreeMap<String, Verdict>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut split: BTreeMap<String, (Verdict, Vec<&Verdict>)> = BTreeMap::new();
        for (key, preds) in &lineage.preds {
            let Some(v) = next.get(key) else { continue };
            let wider: Vec<&Verdict> = preds
                .iter()
                .filter(|p| rank(p.scope) < rank(v.scope))
                .collect();
            if !wider.is_empty() {
                let old = Status::worst_of(wider.iter().map(|p| p.status));
                let folded: Vec<String> = wider.iter().map(|p| describe(p)).collect();
                let summary = if self.verdicts.contains_key(key) {
                    format!("now also folding {}: {}", folded.join(", "), v.summary)
                } else {
                    format!(
                        "escalated to {} scope, folding {}: {}",
                        v.scope.as_str(),
                        folded.join(", "),
                        v.summary
                    )
                };
                events.push(verdict_event(
                    now,
                    EventKind::VerdictChanged,
                    v,
                    old,
                    summary,
                ));
            }
            for p in preds.iter().filter(|p| rank(p.scope) > rank(v.scope)) {
                split
                    .entry(p.key.clone())
                    .or_insert_with(|| (p.clone(), Vec::new()))
                    .1
                    .push(v);
            }
        }
        for (_, (old, into)) in split {
            let mut gone = old.clone();
            gone.status = Status::worst_of(into.iter().map(|v| v.status)).unwrap_or(old.status);
            let names: Vec<String> = into.iter().map(|v| describe(v)).collect();
            events.push(verdict_event(
                now,
                EventKind::VerdictChanged,
                &gone,
                Some(old.status),
                format!(
                    "de-escalated: no longer {}-wide, still failing: {} (was: {})",
                    old.scope.as_str(),
                    names.join(", "),
                    old.summary
                ),
            ));
        }
        events
    }

    /// Open verdicts no longer found and not taken over: closed (or kept while a restarted collector warms
    /// up, or held while younger than the flap window), saying whether they recovered or went silent.
    fn closures(
        &self,
        now: SystemTime,
        orphans: &[Verdict],
        lineage: &Lineage,
        next: &mut BTreeMap<String, Verdict>,
    ) -> Vec<Event> {
        let taken: BTreeSet<String> = lineage
            .preds
            .values()
            .flatten()
            .map(|p| p.key.clone())
            .chain(next.keys().cloned())
            .collect();
        let warming = self.warm_until.is_some_and(|w| now < w);
        let mut events = Vec::new();
        for old in orphans.iter().filter(|o| !taken.contains(&o.key)) {
            if warming && self.restored.contains(&old.key) {
                next.insert(old.key.clone(), old.clone());
                continue;
            }
            // Silence is not recovery: say so when every host of the verdict went stale.
            let all_stale = !old.hosts.is_empty()
                && old
                    .hosts
                    .iter()
                    .all(|h| self.hosts.get(h).is_some_and(|t| t.stale));
            let silent_family = matches!(family(&old.key), "reachability" | "wireguard-mesh");
            // Its hosts are in another open verdict of the same fault (one that was clearing, say): folded
            // into it, neither held nor called recovered.
            if let Some(into) = next.values().find(|v| {
                v.key != old.key
                    && v.recovered_at.is_none()
                    && family(&v.key) == family(&old.key)
                    && overlaps(&v.hosts, &old.hosts)
            }) {
                events.push(verdict_event(
                    now,
                    EventKind::VerdictClosed,
                    old,
                    Some(old.status),
                    format!("folded into the {} (was: {})", describe(into), old.summary),
                ));
                continue;
            }
            // A check's verdict recovered sooner than the flap window after opening: held open until then,
            // so a condition that comes back is this verdict again (flapping), never a second one. Silence
            // and its end are facts of their own (hosts report again): those close at once.
            let window = Duration::from_secs(self.cfg.flap_window_secs);
            let hold_until = self
                .opened
                .get(&old.key)
                .map(|t| *t + window)
                .filter(|u| now < *u && !all_stale && family(&old.key) != "reachability");
            if let Some(until) = hold_until {
                let mut v = old.clone();
                if v.recovered_at.is_none() {
                    v.recovered_at = Some(now);
                    events.push(verdict_event(
                        now,
                        EventKind::VerdictChanged,
                        &v,
                        Some(old.status),
                        format!(
                            "recovered; held open {} more in case it comes back (flap window): {}",
                            fmt_duration(until.duration_since(now).unwrap_or_default()),
                            old.summary
                        ),
                    ));
                }
                next.insert(v.key.clone(), v);
                continue;
            }
            let summary = if all_stale && !silent_family {
                format!("no data (hosts stale), not recovered: {}", old.summary)
            } else if family(&old.key) == "reachability" {
                format!("closed, the hosts report again (was: {})", old.summary)
            } else {
                format!("closed, recovered (was: {})", old.summary)
            };
            events.push(verdict_event(
                now,
                EventKind::VerdictClosed,
                old,
                Some(old.status),
                summary,
            ));
        }
        events
    }
}

/// A wider verdict held open while its fault narrows: only the hosts still failing, the worst of them.
fn clearing(old: &Verdict, parts: &[Finding]) -> Verdict {
    let mut v = old.clone();
    v.hosts = parts.iter().flat_map(|f| f.hosts.clone()).collect();
    v.hosts.sort();
    v.hosts.dedup();
    v.status = Status::worst_of(parts.iter().map(|f| f.status)).unwrap_or(old.status);
    let first = parts.first().map(|f| f.summary.as_str()).unwrap_or("");
    v.summary = format!(
        "{} {} clearing, still failing on {}: {first}",
        v.check,
        v.status,
        v.hosts.join(", ")
    );
    v
}

/// `host verdict on hv-3`, `AZ verdict of az1`.
fn describe(v: &Verdict) -> String {
    match v.scope {
        Scope::Host => format!("host verdict on {}", v.host.as_deref().unwrap_or("?")),
        Scope::Az => format!("AZ verdict of {}", v.az.as_deref().unwrap_or("?")),
        Scope::Region => format!(
            "region verdict of {}",
            if v.region.is_empty() {
                "the fleet"
            } else {
                &v.region
            }
        ),
        Scope::Collector => "collector verdict".to_owned(),
    }
}

/// The events of a verdict that stays open: its status changed, or it started or stopped flapping.
fn changed(now: SystemTime, old: &Verdict, v: &Verdict) -> Option<Event> {
    if old.recovered_at.is_some() {
        return Some(verdict_event(
            now,
            EventKind::VerdictChanged,
            v,
            Some(old.status),
            format!(
                "back within the flap window, the same verdict: {}",
                v.summary
            ),
        ));
    }
    if old.status != v.status {
        return Some(verdict_event(
            now,
            EventKind::VerdictChanged,
            v,
            Some(old.status),
            v.summary.clone(),
        ));
    }
    if old.flapping != v.flapping {
        let what = if v.flapping {
            "now flapping (held open until quiet)"
        } else {
            "no longer flapping"
        };
        return Some(verdict_event(
            now,
            EventKind::VerdictChanged,
            v,
            Some(old.status),
            format!("{what}: {}", v.summary),
        ));
    }
    None
}
