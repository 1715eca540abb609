//! The WireGuard mesh: what both ends of each link report, joined by public key. When most of the peers of
//! a host lose it (at least `mesh-min-peers`), that is one verdict about that host, and the peers' own
//! WireGuard conditions that it explains are folded into it: one root cause, one verdict. When the hosts of
//! the link name a suspect conntrack entry on it (toward the lost host, or from it), the verdict says
//! `stale UDP conntrack on <hosts>`: the folded host verdicts carry the exact flows and commands.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::lifecycle::Finding;
use super::{Active, Engine, Scope};
use crate::check::wireguard::PeerState;
use crate::check::{CheckKind, Status};

/// The mesh's findings, and the (host, check) conditions they explain.
pub(super) struct Mesh {
    pub(super) findings: Vec<Finding>,
    pub(super) folded: BTreeSet<String>,
}

/// `peer AbCdEfGh`: a key's first characters (never a byte slice that could split a character).
fn short_key(key: &str) -> String {
    key.chars().take(8).collect()
}

impl Engine {
    pub(super) fn mesh_findings(&self, now: SystemTime, active: &[Active]) -> Mesh {
        let wg_active: BTreeSet<&str> = active
            .iter()
            .filter(|a| a.kind == CheckKind::Wireguard)
            .map(|a| a.host.as_str())
            .collect();
        let mut key_host: HashMap<&str, &str> = HashMap::new();
        for (id, t) in &self.hosts {
            for k in &t.snap.wg_keys {
                key_host.insert(k.as_str(), id.as_str());
            }
        }
        let mut having: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut losing: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (id, t) in self.hosts.iter().filter(|(_, t)| !t.stale) {
            for p in &t.snap.wg_peers {
                having
                    .entry(p.key.as_str())
                    .or_default()
                    .insert(id.as_str());
                if wg_active.contains(id.as_str()) && p.state != PeerState::Ok {
                    losing
                        .entry(p.key.as_str())
                        .or_default()
                        .insert(id.as_str());
                }
            }
        }
        let mut explained: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut dead: BTreeSet<&str> = BTreeSet::new();
        let mut findings = Vec::new();
        let mut keys: Vec<&&str> = losing.keys().collect();
        keys.sort();
        for key in keys {
            let lost_by = &losing[*key];
            let total = having.get(*key).map_or(0, BTreeSet::len);
            if lost_by.len() < self.cfg.mesh_min_peers || lost_by.len() * 2 <= total {
                continue;
            }
            let target = key_host.get(*key).copied();
            findings.push(self.mesh_finding(now, key, target, lost_by, total, active));
            for h in lost_by {
                explained.insert((h, key));
            }
            dead.extend(target);
        }
        // A reporter whose every lost peer is explained, and the dead host's own view, are folded.
        let mut folded = BTreeSet::new();
        for host in &wg_active {
            let Some(t) = self.hosts.get(*host) else {
                continue;
            };
            let lost: Vec<&str> = t
                .snap
                .wg_peers
                .iter()
                .filter(|p| p.state != PeerState::Ok)
                .map(|p| p.key.as_str())
                .collect();
            let all_explained = !t.snap.wg_down
                && !lost.is_empty()
                && lost.iter().all(|k| explained.contains(&(*host, *k)));
            if dead.contains(host) || all_explained {
                folded.insert((*host).to_owned());
            }
        }
        Mesh { findings, folded }
    }

    /// The hosts of a lost link naming a suspect conntrack entry on it: the reporters toward the lost key,
    /// and the lost host itself (when it still reports) toward any of them.
    fn stale_conntrack_on<'a>(
        &'a self,
        key: &str,
        target: Option<&'a str>,
        lost_by: &BTreeSet<&'a str>,
    ) -> Vec<&'a str> {
        let mut on: Vec<&str> = lost_by
            .iter()
            .copied()
            .filter(|h| {
                self.hosts.get(*h).is_some_and(|t| {
                    t.snap
                        .wg_peers
                        .iter()
                        .any(|p| p.key == key && p.stale_conntrack)
                })
            })
            .collect();
        if let Some(th) = target
            && let Some(t) = self.hosts.get(th).filter(|t| !t.stale)
        {
            let reporters: BTreeSet<&str> = lost_by
                .iter()
                .filter_map(|h| self.hosts.get(*h))
                .flat_map(|r| r.snap.wg_keys.iter().map(String::as_str))
                .collect();
            if t.snap
                .wg_peers
                .iter()
                .any(|p| p.stale_conntrack && reporters.contains(p.key.as_str()))
            {
                on.push(th);
            }
        }
        on
    }

    fn mesh_finding(
        &self,
        now: SystemTime,
        key: &str,
        target: Option<&str>,
        lost_by: &BTreeSet<&str>,
        total: usize,
        active: &[Active],
    ) -> Finding {
        let label = target.map_or_else(|| format!("peer {}", short_key(key)), str::to_owned);
        let target_stale = target.is_some_and(|h| self.hosts.get(h).is_some_and(|t| t.stale));
        let status = if target_stale || lost_by.len() == total {
            Status::Crit
        } else {
            Status::Warn
        };
        let (az, region) = target
            .and_then(|h| self.hosts.get(h))
            .map(|t| (Some(t.az.clone()), t.region.clone()))
            .unwrap_or((None, String::new()));
        // Since when: the earliest of the losing peers' WireGuard conditions.
        let since = active
            .iter()
            .filter(|a| a.kind == CheckKind::Wireguard && lost_by.contains(a.host.as_str()))
            .map(|a| a.since)
            .min();
        let settle = lost_by
            .iter()
            .filter_map(|h| self.hosts.get(*h))
            .map(|t| self.settle_for(t.interval))
            .max()
            .unwrap_or_default();
        let stale_on = self.stale_conntrack_on(key, target, lost_by);
        Finding {
            key: format!("host/{label}/wireguard-mesh"),
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
                lost_by
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                if target_stale {
                    format!("; {label} itself is stale")
                } else {
                    String::new()
                },
            ) + &if stale_on.is_empty() {
                String::new()
            } else {
                format!(
                    "; stale UDP conntrack on {} (their wireguard details name the flows and the \
                     command that drops each)",
                    stale_on.join(", ")
                )
            },
            since: since.unwrap_or(now),
            flapping: false,
            settle,
            from_staleness: false,
        }
    }
}
