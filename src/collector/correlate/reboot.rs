//! Mass reboots: when at least `reboot-threshold-percent` of an AZ's hosts (and `az-min-hosts`) come back
//! with a new boot id within `reboot-window-secs`, one `rebooted` event for the AZ, then recovery tracking
//! (hosts back, RAID rebuilding with the latest ETA, DNS and WireGuard not yet OK, units active before the
//! reboot and not since, by name) until one `recovered` event
//! when the AZ is healthy again — or after `recovery-max-secs`, saying what was still missing.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Engine, Event, EventKind, Recovery, Scope};
use crate::check::CheckKind;
use crate::fleet::MAX_UNITS_NOT_BACK;
use crate::util::fmt_duration;

/// A host seen with a new boot id.
#[derive(Debug, Clone)]
pub(super) struct Booted {
    pub(super) host: String,
    pub(super) at: SystemTime,
}

/// A mass reboot being tracked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebootEpisode {
    /// When the episode was recognised.
    pub started: SystemTime,
    /// Hosts that rebooted in it.
    pub hosts: BTreeSet<String>,
}

impl Engine {
    /// Records a host's new boot id (`booted`: its boot time, or now) and says whether the AZ rebooted.
    pub(super) fn record_reboot(
        &mut self,
        now: SystemTime,
        az: &str,
        host: &str,
        booted: SystemTime,
    ) -> Vec<Event> {
        let list = self.reboots.entry(az.to_owned()).or_default();
        list.retain(|b| b.host != host);
        list.push(Booted {
            host: host.to_owned(),
            at: booted,
        });
        self.check_reboot(now, az)
    }

    fn check_reboot(&mut self, now: SystemTime, az: &str) -> Vec<Event> {
        let window = Duration::from_secs(self.cfg.reboot_window_secs);
        let Some(list) = self.reboots.get_mut(az) else {
            return Vec::new();
        };
        list.retain(|b| now.duration_since(b.at).unwrap_or_default() <= window);
        let recent: BTreeSet<String> = list.iter().map(|b| b.host.clone()).collect();
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
        vec![self.az_event(now, EventKind::Rebooted, az, summary)]
    }

    fn az_event(&self, now: SystemTime, kind: EventKind, az: &str, summary: String) -> Event {
        let region = self
            .hosts
            .values()
            .find(|h| h.az == az)
            .map(|h| h.region.clone())
            .unwrap_or_default();
        Event {
            id: 0,
            at: now,
            kind,
            scope: Scope::Az,
            region: Some(region).filter(|r| !r.is_empty()),
            az: Some(az.to_owned()),
            host: None,
            check: None,
            old_status: None,
            new_status: None,
            summary,
        }
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
            units_not_back: Vec::new(),
        };
        for (host, t) in ep
            .hosts
            .iter()
            .filter_map(|h| Some((h, self.hosts.get(h)?)))
        {
            if t.stale {
                continue;
            }
            // Only once the host reports the services check again: until then it is not known.
            if t.snap.statuses.contains_key(&CheckKind::Services) {
                for u in t.units_before_boot.difference(&t.snap.units_up) {
                    if r.units_not_back.len() < MAX_UNITS_NOT_BACK {
                        r.units_not_back.push(format!("{u} on {host}"));
                    }
                }
            }
            r.back += 1;
            if !t.snap.md_syncing.is_empty() {
                r.raid_rebuilding += 1;
                let eta = t.snap.md_syncing.iter().filter_map(|s| s.eta_secs).max();
                r.raid_eta_secs = r.raid_eta_secs.max(eta);
            }
            r.dns_not_ok += usize::from(t.snap.not_ok(CheckKind::Dns));
            r.wireguard_not_ok += usize::from(t.snap.not_ok(CheckKind::Wireguard));
        }
        Some(r)
    }

    /// Ends the episodes whose AZ recovered (or whose tracking ran out), with one event each.
    pub(super) fn episode_events(&mut self, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let azs: Vec<String> = self.episodes.keys().cloned().collect();
        for az in azs {
            let (Some(r), Some(ep)) = (self.recovery(&az), self.episodes.get(&az)) else {
                continue;
            };
            let age = now.duration_since(ep.started).unwrap_or_default();
            // Recovered once every rebooted host is back and healthy, and no verdict lists one of them (but
            // one held after recovering: its fault is over).
            let open = self
                .verdicts
                .values()
                .filter(|v| v.recovered_at.is_none())
                .any(|v| v.hosts.iter().any(|h| ep.hosts.contains(h)));
            let done = r.back == r.rebooted
                && r.raid_rebuilding == 0
                && r.dns_not_ok == 0
                && r.wireguard_not_ok == 0
                && r.units_not_back.is_empty()
                && !open;
            let expired = age > Duration::from_secs(self.cfg.recovery_max_secs);
            if !(done || expired) {
                continue;
            }
            let summary = if done {
                format!(
                    "{az} recovered: all {} rebooted hosts back, RAID in sync, DNS and WireGuard OK, units back (took {})",
                    r.rebooted,
                    fmt_duration(age)
                )
            } else {
                let units = if r.units_not_back.is_empty() {
                    String::new()
                } else {
                    format!("; not back: {}", r.units_not_back.join(", "))
                };
                format!(
                    "{az} recovery tracking ended after {}: {}/{} back, {} rebuilding RAID, {} DNS and {} WireGuard not OK{units}",
                    fmt_duration(age),
                    r.back,
                    r.rebooted,
                    r.raid_rebuilding,
                    r.dns_not_ok,
                    r.wireguard_not_ok
                )
            };
            self.episodes.remove(&az);
            self.reboots.remove(&az);
            events.push(self.az_event(now, EventKind::Recovered, &az, summary));
        }
        events
    }
}
