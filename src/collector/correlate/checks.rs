//! Per-check findings, with their scope: one AZ verdict when a fault is AZ-wide, one host verdict per host
//! otherwise (marked local), one region verdict when the same AZ-wide fault is in every AZ of a region.
//!
//! Scope has hysteresis, so a fault hovering at the threshold does not swing between scopes: an AZ verdict
//! forms at `az-threshold-percent` and `az-min-hosts`, and holds while at least two hosts and half the
//! threshold remain; a region verdict forms when every reporting AZ of the region (at least two) has the AZ
//! verdict, and holds while at least two of them do.

use std::collections::{BTreeMap, BTreeSet};

use super::lifecycle::Finding;
use super::view::AzIndex;
use super::{Active, Engine, Scope, loopback};
use crate::check::dns::DnsOutcome;
use crate::check::{CheckKind, Status};

impl Engine {
    /// The findings of every check.
    pub(super) fn check_findings(
        &self,
        azs: &AzIndex,
        active: &[Active],
        folded: &BTreeSet<String>,
    ) -> Vec<Finding> {
        let mut by_az_check: BTreeMap<(&str, CheckKind), Vec<&Active>> = BTreeMap::new();
        let reach_cut = self.reach_cut_hosts(active);
        for a in active {
            if a.kind == CheckKind::Wireguard && folded.contains(&a.host) {
                continue;
            }
            // Unreachable targets are judged per target (`reach`); loss and RTT alone stay here.
            if a.kind == CheckKind::Reach && reach_cut.contains(&a.host) {
                continue;
            }
            by_az_check
                .entry((a.az.as_str(), a.kind))
                .or_default()
                .push(a);
        }
        let mut out = Vec::new();
        let mut az_wide: BTreeMap<(String, CheckKind), Finding> = BTreeMap::new();
        for ((az, kind), affected) in by_az_check {
            let Some(info) = azs.get(az) else { continue };
            let n = affected.len();
            let m = info.reporting;
            let key = format!("az/{az}/{kind}");
            let open = self.verdicts.contains_key(&key)
                || self
                    .verdicts
                    .contains_key(&format!("region/{}/{kind}", info.region));
            let forms = n >= self.cfg.az_min_hosts
                && n as f64 * 100.0 >= self.cfg.az_threshold_percent * m as f64;
            let holds =
                open && n >= 2 && n as f64 * 200.0 >= self.cfg.az_threshold_percent * m as f64;
            if forms || holds {
                az_wide.insert(
                    (az.to_owned(), kind),
                    self.az_finding(az, kind, &affected, info.region.clone(), m, azs),
                );
            } else {
                out.extend(
                    affected
                        .iter()
                        .map(|a| self.host_finding(a, n, m, info.region.clone())),
                );
            }
        }
        out.extend(self.fold_regions(azs, az_wide));
        out
    }

    fn az_finding(
        &self,
        az: &str,
        kind: CheckKind,
        affected: &[&Active],
        region: String,
        m: usize,
        azs: &AzIndex,
    ) -> Finding {
        let n = affected.len();
        let status = Status::worst_of(affected.iter().map(|a| a.status)).unwrap_or(Status::Unknown);
        let flapping = affected.iter().all(|a| a.flapping);
        let why = self.az_reason(kind, affected, m);
        Finding {
            key: format!("az/{az}/{kind}"),
            scope: Scope::Az,
            region,
            az: Some(az.to_owned()),
            host: None,
            check: kind.as_str().into(),
            status,
            hosts: affected.iter().map(|a| a.host.clone()).collect(),
            summary: format!(
                "{}{kind} {status} on {n}/{m} hosts of {az} (AZ-wide){why}: {}",
                if flapping { "flapping: " } else { "" },
                affected[0].summary
            ),
            since: affected
                .iter()
                .map(|a| a.since)
                .min()
                .unwrap_or(affected[0].since),
            flapping,
            settle: azs
                .get(az)
                .map(|i| self.settle_for(i.median_interval))
                .unwrap_or_default(),
            from_staleness: false,
        }
    }

    fn host_finding(&self, a: &Active, n: usize, m: usize, region: String) -> Finding {
        let kind = a.kind;
        let status = a.status;
        let host = &a.host;
        let az = &a.az;
        let what = self.local_reason(host, kind);
        Finding {
            key: format!("host/{host}/{kind}"),
            scope: Scope::Host,
            region,
            az: Some(az.clone()),
            host: Some(host.clone()),
            check: kind.as_str().into(),
            status,
            hosts: vec![host.clone()],
            summary: format!(
                "{}{kind} {status} on {host} (local: {n}/{m} hosts of {az}){what}: {}",
                if a.flapping { "flapping: " } else { "" },
                a.summary
            ),
            since: a.since,
            flapping: a.flapping,
            settle: self
                .hosts
                .get(host)
                .map(|t| self.settle_for(t.interval))
                .unwrap_or_default(),
            from_staleness: false,
        }
    }

    /// The same AZ-wide fault in every reporting AZ of a region (at least two) is one region finding.
    fn fold_regions(
        &self,
        azs: &AzIndex,
        mut az_wide: BTreeMap<(String, CheckKind), Finding>,
    ) -> Vec<Finding> {
        let mut regions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (az, info) in azs.iter() {
            if info.reporting > 0 {
                regions.entry(info.region.as_str()).or_default().push(az);
            }
        }
        let mut out = Vec::new();
        for (region, region_azs) in regions {
            if region_azs.len() < 2 {
                continue;
            }
            for kind in CheckKind::ALL {
                let with: Vec<&str> = region_azs
                    .iter()
                    .copied()
                    .filter(|az| az_wide.contains_key(&(az.to_string(), *kind)))
                    .collect();
                let key = format!("region/{region}/{kind}");
                let forms = with.len() == region_azs.len();
                let holds = self.verdicts.contains_key(&key) && with.len() >= 2;
                if !(forms || holds) {
                    continue;
                }
                let parts: Vec<Finding> = with
                    .iter()
                    .filter_map(|az| az_wide.remove(&(az.to_string(), *kind)))
                    .collect();
                out.push(region_finding(region, *kind, &with, parts));
            }
        }
        out.extend(az_wide.into_values());
        out
    }

    /// Why an AZ-wide fault of this check (on `affected` of `m` reporting hosts) is AZ-wide, in words.
    fn az_reason(&self, kind: CheckKind, affected: &[&Active], m: usize) -> String {
        match kind {
            CheckKind::Services => return self.units_down_reason(affected, m),
            CheckKind::Dns => {}
            _ => return String::new(),
        }
        let mut upstream = 0;
        let mut local = 0;
        for a in affected {
            let Some(t) = self.hosts.get(&a.host) else {
                continue;
            };
            if t.snap
                .dns
                .iter()
                .any(|d| matches!(d.outcome, DnsOutcome::Servfail | DnsOutcome::Timeout))
            {
                upstream += 1;
            }
            if t.snap
                .dns
                .iter()
                .any(|d| d.outcome == DnsOutcome::Refused && loopback(&d.resolver))
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

    /// The units down across an AZ's affected hosts (of `m` reporting), most common first:
    /// ` — unbound.service down on 8/8 hosts`, or several (` — unbound.service down on 5/8 hosts,
    /// libvirtd.service on 3/8`).
    fn units_down_reason(&self, affected: &[&Active], m: usize) -> String {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for a in affected {
            if let Some(t) = self.hosts.get(&a.host) {
                for u in &t.snap.units_down {
                    *count.entry(u.as_str()).or_default() += 1;
                }
            }
        }
        let mut units: Vec<(&str, usize)> = count.into_iter().collect();
        units.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = units
            .iter()
            .take(3)
            .enumerate()
            .map(|(i, (u, c))| {
                if i == 0 {
                    format!("{u} down on {c}/{m} hosts")
                } else {
                    format!("{u} on {c}/{m}")
                }
            })
            .collect();
        match parts.len() {
            0 => String::new(),
            _ if units.len() > 3 => format!(
                " — {}, and {} more units",
                parts.join(", "),
                units.len() - 3
            ),
            _ => format!(" — {}", parts.join(", ")),
        }
    }

    /// What a host-local fault of this check means, in words.
    fn local_reason(&self, host: &str, kind: CheckKind) -> String {
        let Some(t) = self.hosts.get(host) else {
            return String::new();
        };
        if kind != CheckKind::Dns {
            return String::new();
        }
        if t.snap
            .dns
            .iter()
            .any(|d| d.outcome == DnsOutcome::Refused && loopback(&d.resolver))
        {
            " — the local resolver is down on this host".into()
        } else if t
            .snap
            .dns
            .iter()
            .any(|d| matches!(d.outcome, DnsOutcome::Servfail | DnsOutcome::Timeout))
        {
            " — this host's resolvers are failing".into()
        } else {
            String::new()
        }
    }
}

fn region_finding(region: &str, kind: CheckKind, azs: &[&str], parts: Vec<Finding>) -> Finding {
    let hosts: Vec<String> = parts.iter().flat_map(|f| f.hosts.clone()).collect();
    let status = Status::worst_of(parts.iter().map(|f| f.status)).unwrap_or(Status::Unknown);
    let name = if region.is_empty() {
        "the fleet".to_owned()
    } else {
        format!("region {region}")
    };
    let flapping = parts.iter().all(|f| f.flapping);
    Finding {
        key: format!("region/{region}/{kind}"),
        scope: Scope::Region,
        region: region.to_owned(),
        az: None,
        host: None,
        check: kind.as_str().into(),
        status,
        summary: format!(
            "{}{kind} {status} in every AZ of {name} ({}): {} hosts — a common cause, not {} separate faults",
            if flapping { "flapping: " } else { "" },
            azs.join(", "),
            hosts.len(),
            azs.len()
        ),
        hosts,
        since: parts
            .iter()
            .map(|f| f.since)
            .min()
            .unwrap_or(std::time::UNIX_EPOCH),
        flapping,
        settle: parts.iter().map(|f| f.settle).max().unwrap_or_default(),
        from_staleness: false,
    }
}
