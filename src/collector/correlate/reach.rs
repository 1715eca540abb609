//! Reachability of the targets hosts probe (the `reach` check), compared across hosts: for each target,
//! who cannot reach it.
//! - one host (or a few, under the AZ threshold): a **host** verdict per (host, target) — "only this
//!   hypervisor";
//! - most hosts of an AZ probing it (`az-min-hosts`, more than half): one **AZ** verdict — "az1 cannot reach
//!   s3: 8/8 hosts, tcp.timed_out";
//! - that in every AZ probing it (at least two): one **target** verdict — the target is down, not the AZs.
//!
//! The family of these verdicts is `reach:<target>`, so a host verdict escalates into its AZ's and an AZ's
//! into the target's, and back, like the other checks. A host whose `reach` condition is only loss or RTT
//! (every target answers) is judged by the per-check rules instead.

use std::collections::{BTreeMap, BTreeSet};

use super::lifecycle::Finding;
use super::view::AzIndex;
use super::{Active, Engine, Scope};
use crate::check::{CheckKind, Status};

/// One target as a host last probed it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TargetSeen {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) reachable: bool,
    pub(super) critical: bool,
    pub(super) class: String,
}

/// A host that cannot reach a target: its condition and how the probe failed.
struct Cut<'a> {
    active: &'a Active,
    seen: &'a TargetSeen,
}

/// The most common failure class among `cuts`.
fn class_of(cuts: &[Cut<'_>]) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for c in cuts {
        *n.entry(c.seen.class.as_str()).or_default() += 1;
    }
    n.into_iter()
        .max_by_key(|(_, k)| *k)
        .map(|(c, _)| c.to_owned())
        .unwrap_or_default()
}

fn status_of(cuts: &[Cut<'_>]) -> Status {
    if cuts.iter().any(|c| c.seen.critical) {
        Status::Crit
    } else {
        Status::Warn
    }
}

impl Engine {
    /// Hosts whose `reach` condition is explained by unreachable targets (judged here, not per check).
    pub(super) fn reach_cut_hosts(&self, active: &[Active]) -> BTreeSet<String> {
        active
            .iter()
            .filter(|a| a.kind == CheckKind::Reach)
            .filter(|a| {
                self.hosts
                    .get(&a.host)
                    .is_some_and(|t| t.snap.reach.iter().any(|s| !s.reachable))
            })
            .map(|a| a.host.clone())
            .collect()
    }

    /// The findings of unreachable targets.
    pub(super) fn reach_findings(&self, azs: &AzIndex, active: &[Active]) -> Vec<Finding> {
        let cut_hosts = self.reach_cut_hosts(active);
        // target -> az -> hosts probing it; target -> az -> hosts cut from it.
        let mut probing: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        let mut cut: BTreeMap<&str, BTreeMap<&str, Vec<Cut<'_>>>> = BTreeMap::new();
        for (id, t) in self.hosts.iter().filter(|(_, t)| !t.stale) {
            let a = active
                .iter()
                .find(|a| a.kind == CheckKind::Reach && &a.host == id && cut_hosts.contains(id));
            for s in &t.snap.reach {
                *probing
                    .entry(s.name.as_str())
                    .or_default()
                    .entry(t.az.as_str())
                    .or_default() += 1;
                if let (Some(a), false) = (a, s.reachable) {
                    cut.entry(s.name.as_str())
                        .or_default()
                        .entry(t.az.as_str())
                        .or_default()
                        .push(Cut { active: a, seen: s });
                }
            }
        }
        let mut out = Vec::new();
        for (target, by_az) in cut {
            let family = format!("reach:{target}");
            let in_azs = probing.get(target).cloned().unwrap_or_default();
            let wide: BTreeSet<&str> = by_az
                .iter()
                .filter(|(az, cuts)| {
                    let n = cuts.len();
                    let m = in_azs.get(*az).copied().unwrap_or(n);
                    let open = self.verdicts.contains_key(&format!("az/{az}/{family}"))
                        || self
                            .verdicts
                            .contains_key(&format!("target/{target}/{family}"));
                    let forms = n >= self.cfg.az_min_hosts && n * 2 > m;
                    let holds = open && n >= 2 && n * 4 >= m;
                    forms || holds
                })
                .map(|(az, _)| *az)
                .collect();
            if wide.len() >= 2 && wide.len() == in_azs.len() {
                let all: Vec<Cut<'_>> = by_az.into_values().flatten().collect();
                out.push(self.target_finding(target, &family, &all, &in_azs, azs));
                continue;
            }
            for (az, cuts) in by_az {
                let m = in_azs.get(az).copied().unwrap_or(cuts.len());
                if wide.contains(az) {
                    out.push(self.reach_az_finding(az, target, &family, &cuts, m, azs));
                } else {
                    out.extend(
                        cuts.iter()
                            .map(|c| self.reach_host_finding(az, &family, c, cuts.len(), m, azs)),
                    );
                }
            }
        }
        out
    }

    fn reach_host_finding(
        &self,
        az: &str,
        family: &str,
        c: &Cut<'_>,
        n: usize,
        m: usize,
        azs: &AzIndex,
    ) -> Finding {
        let host = &c.active.host;
        let s = c.seen;
        let status = if s.critical {
            Status::Crit
        } else {
            Status::Warn
        };
        Finding {
            key: format!("host/{host}/{family}"),
            scope: Scope::Host,
            region: azs.get(az).map(|i| i.region.clone()).unwrap_or_default(),
            az: Some(az.to_owned()),
            host: Some(host.clone()),
            check: CheckKind::Reach.as_str().into(),
            status,
            hosts: vec![host.clone()],
            summary: format!(
                "{}{host} cannot reach {} ({}): {} (local: {n}/{m} hosts of {az} probing it)",
                if c.active.flapping { "flapping: " } else { "" },
                s.name,
                s.address,
                s.class
            ),
            since: c.active.since,
            flapping: c.active.flapping,
            settle: self
                .hosts
                .get(host)
                .map(|t| self.settle_for(t.interval))
                .unwrap_or_default(),
            from_staleness: false,
        }
    }

    fn reach_az_finding(
        &self,
        az: &str,
        target: &str,
        family: &str,
        cuts: &[Cut<'_>],
        m: usize,
        azs: &AzIndex,
    ) -> Finding {
        let address = cuts
            .first()
            .map(|c| c.seen.address.clone())
            .unwrap_or_default();
        let flapping = cuts.iter().all(|c| c.active.flapping);
        Finding {
            key: format!("az/{az}/{family}"),
            scope: Scope::Az,
            region: azs.get(az).map(|i| i.region.clone()).unwrap_or_default(),
            az: Some(az.to_owned()),
            host: None,
            check: CheckKind::Reach.as_str().into(),
            status: status_of(cuts),
            hosts: cuts.iter().map(|c| c.active.host.clone()).collect(),
            summary: format!(
                "{}{az} cannot reach {target} ({address}): {}/{m} hosts, {}",
                if flapping { "flapping: " } else { "" },
                cuts.len(),
                class_of(cuts)
            ),
            since: cuts
                .iter()
                .map(|c| c.active.since)
                .min()
                .unwrap_or(std::time::UNIX_EPOCH),
            flapping,
            settle: azs
                .get(az)
                .map(|i| self.settle_for(i.median_interval))
                .unwrap_or_default(),
            from_staleness: false,
        }
    }

    fn target_finding(
        &self,
        target: &str,
        family: &str,
        cuts: &[Cut<'_>],
        in_azs: &BTreeMap<&str, usize>,
        azs: &AzIndex,
    ) -> Finding {
        let address = cuts
            .first()
            .map(|c| c.seen.address.clone())
            .unwrap_or_default();
        let m: usize = in_azs.values().sum();
        let names: Vec<&str> = in_azs.keys().copied().collect();
        let flapping = cuts.iter().all(|c| c.active.flapping);
        Finding {
            key: format!("target/{target}/{family}"),
            scope: Scope::Region,
            region: String::new(),
            az: None,
            host: None,
            check: CheckKind::Reach.as_str().into(),
            status: status_of(cuts),
            hosts: cuts.iter().map(|c| c.active.host.clone()).collect(),
            summary: format!(
                "{}target {target} ({address}) down: unreachable from {}/{m} hosts in every AZ probing it ({}), {}",
                if flapping { "flapping: " } else { "" },
                cuts.len(),
                names.join(", "),
                class_of(cuts)
            ),
            since: cuts
                .iter()
                .map(|c| c.active.since)
                .min()
                .unwrap_or(std::time::UNIX_EPOCH),
            flapping,
            settle: in_azs
                .keys()
                .filter_map(|az| azs.get(*az))
                .map(|i| self.settle_for(i.median_interval))
                .max()
                .unwrap_or_default(),
            from_staleness: false,
        }
    }
}
