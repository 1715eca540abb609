//! Reachability of the targets hosts probe (the `reach` check), compared across hosts: for each target
//! address (the targets at one IP — a storage node's TLS port, its ICMP — are one machine), who cannot
//! reach it.
//! - one host (or a few, under the AZ threshold): a **host** verdict per (host, address) — "only this
//!   hypervisor";
//! - most hosts of an AZ probing it (`az-min-hosts`, more than half): one **AZ** verdict — "az1 cannot reach
//!   s3: 8/8 hosts, tcp.timed_out";
//! - that in every AZ probing it (at least two): one **target** verdict — the target is down, not the AZs.
//!
//! Each verdict names the targets at that address that fail (one: by name and address; several: the
//! address and their names), so a machine down is one verdict, and a service refused on it is one verdict
//! naming that service. The family of these verdicts is `reach:<ip>`, so a host verdict escalates into its
//! AZ's and an AZ's into the target's, and back, like the other checks. A host whose `reach` condition is
//! only loss or RTT (every target answers) is judged by the per-check rules instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::lifecycle::Finding;
use super::view::AzIndex;
use super::{Active, Engine, Scope};
use crate::check::{CheckKind, Status};

/// One target as a host last probed it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TargetSeen {
    pub(super) name: String,
    pub(super) address: String,
    /// The IP of `address` (its port dropped): the machine.
    pub(super) ip: String,
    pub(super) reachable: bool,
    pub(super) critical: bool,
    pub(super) class: String,
}

impl TargetSeen {
    /// The IP of an `ip`, `ip:port` or `[v6]:port` address (the address itself if it is neither).
    pub(super) fn ip_of(address: &str) -> String {
        if let Ok(a) = address.parse::<std::net::SocketAddr>() {
            return a.ip().to_string();
        }
        address.to_owned()
    }
}

/// A host that cannot reach targets at one address: its condition and the probes that failed.
struct Cut<'a> {
    active: &'a Active,
    seen: Vec<&'a TargetSeen>,
}

/// The most common failure class among `cuts`.
fn class_of(cuts: &[Cut<'_>]) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for s in cuts.iter().flat_map(|c| &c.seen) {
        *n.entry(s.class.as_str()).or_default() += 1;
    }
    n.into_iter()
        .max_by_key(|(_, k)| *k)
        .map(|(c, _)| c.to_owned())
        .unwrap_or_default()
}

fn status_of(cuts: &[Cut<'_>]) -> Status {
    if cuts.iter().flat_map(|c| &c.seen).any(|s| s.critical) {
        Status::Crit
    } else {
        Status::Warn
    }
}

/// When the earliest of the cut hosts' conditions began.
fn earliest(cuts: &[Cut<'_>]) -> std::time::SystemTime {
    cuts.iter()
        .map(|c| c.active.since)
        .min()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// What cannot be reached: `s3 (10.0.0.5:443)` for one target, `10.0.0.5 (s3, broker)` for several at one
/// address.
fn what(ip: &str, cuts: &[Cut<'_>]) -> String {
    let mut names: Vec<(&str, &str)> = cuts
        .iter()
        .flat_map(|c| &c.seen)
        .map(|s| (s.name.as_str(), s.address.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [(name, address)] => format!("{name} ({address})"),
        many => format!(
            "{ip} ({})",
            many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
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
        // address -> az -> hosts probing it; address -> az -> hosts cut from (targets at) it.
        let mut probing: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        let mut cut: BTreeMap<&str, BTreeMap<&str, Vec<Cut<'_>>>> = BTreeMap::new();
        // One lookup per host, not a scan of every open condition (thousands during an incident).
        let cut_active: HashMap<&str, &Active> = active
            .iter()
            .filter(|a| a.kind == CheckKind::Reach && cut_hosts.contains(&a.host))
            .map(|a| (a.host.as_str(), a))
            .collect();
        for (id, t) in self.hosts.iter().filter(|(_, t)| !t.stale) {
            let a = cut_active.get(id.as_str()).copied();
            let mut at: BTreeMap<&str, Vec<&TargetSeen>> = BTreeMap::new();
            for s in &t.snap.reach {
                let failing = at.entry(s.ip.as_str()).or_default();
                if !s.reachable {
                    failing.push(s);
                }
            }
            for (ip, failing) in at {
                *probing
                    .entry(ip)
                    .or_default()
                    .entry(t.az.as_str())
                    .or_default() += 1;
                if let (Some(a), false) = (a, failing.is_empty()) {
                    cut.entry(ip)
                        .or_default()
                        .entry(t.az.as_str())
                        .or_default()
                        .push(Cut {
                            active: a,
                            seen: failing,
                        });
                }
            }
        }
        let mut out = Vec::new();
        for (ip, by_az) in cut {
            let family = format!("reach:{ip}");
            let in_azs = probing.get(ip).cloned().unwrap_or_default();
            let wide: BTreeSet<&str> = by_az
                .iter()
                .filter(|(az, cuts)| {
                    let n = cuts.len();
                    let m = in_azs.get(*az).copied().unwrap_or(n);
                    let open = self.verdicts.contains_key(&format!("az/{az}/{family}"))
                        || self.verdicts.contains_key(&format!("target/{ip}/{family}"));
                    let forms = n >= self.cfg.az_min_hosts && n * 2 > m;
                    let holds = open && n >= 2 && n * 4 >= m;
                    forms || holds
                })
                .map(|(az, _)| *az)
                .collect();
            if wide.len() >= 2 && wide.len() == in_azs.len() {
                let all: Vec<Cut<'_>> = by_az.into_values().flatten().collect();
                out.push(self.target_finding(ip, &family, &all, &in_azs, azs));
                continue;
            }
            for (az, cuts) in by_az {
                let m = in_azs.get(az).copied().unwrap_or(cuts.len());
                if wide.contains(az) {
                    out.push(self.reach_az_finding(az, ip, &family, &cuts, m, azs));
                } else {
                    out.extend(
                        cuts.iter().map(|c| {
                            self.reach_host_finding(az, ip, &family, c, cuts.len(), m, azs)
                        }),
                    );
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn reach_host_finding(
        &self,
        az: &str,
        ip: &str,
        family: &str,
        c: &Cut<'_>,
        n: usize,
        m: usize,
        azs: &AzIndex,
    ) -> Finding {
        let host = &c.active.host;
        let one = std::slice::from_ref(c);
        let status = status_of(one);
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
                "{}{host} cannot reach {}: {} (local: {n}/{m} hosts of {az} probing it)",
                if c.active.flapping { "flapping: " } else { "" },
                what(ip, one),
                class_of(one)
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
        ip: &str,
        family: &str,
        cuts: &[Cut<'_>],
        m: usize,
        azs: &AzIndex,
    ) -> Finding {
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
                "{}{az} cannot reach {}: {}/{m} hosts, {}",
                if flapping { "flapping: " } else { "" },
                what(ip, cuts),
                cuts.len(),
                class_of(cuts)
            ),
            since: earliest(cuts),
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
        ip: &str,
        family: &str,
        cuts: &[Cut<'_>],
        in_azs: &BTreeMap<&str, usize>,
        azs: &AzIndex,
    ) -> Finding {
        let m: usize = in_azs.values().sum();
        let names: Vec<&str> = in_azs.keys().copied().collect();
        let flapping = cuts.iter().all(|c| c.active.flapping);
        Finding {
            key: format!("target/{ip}/{family}"),
            scope: Scope::Region,
            region: String::new(),
            az: None,
            host: None,
            check: CheckKind::Reach.as_str().into(),
            status: status_of(cuts),
            hosts: cuts.iter().map(|c| c.active.host.clone()).collect(),
            summary: format!(
                "{}target {} down: unreachable from {}/{m} hosts in every AZ probing it ({}), {}",
                if flapping { "flapping: " } else { "" },
                what(ip, cuts),
                cuts.len(),
                names.join(", "),
                class_of(cuts)
            ),
            since: earliest(cuts),
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
