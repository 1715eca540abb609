//! What the engine shows: the AZs with their hosts and verdicts (the zones view), and the per-AZ facts the
//! rules share (known and reporting hosts, the median reporting interval).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Engine, Scope, Verdict, VerdictView, ZoneView, ZonesView};
use crate::check::Status;

/// One AZ as the rules see it.
#[derive(Debug, Clone)]
pub(super) struct AzInfo {
    pub(super) region: String,
    pub(super) known: usize,
    pub(super) reporting: usize,
    /// The median (capped) interval of its hosts: the AZ's pace, whatever one agent announces.
    pub(super) median_interval: Duration,
}

/// Every AZ, by name.
pub(super) type AzIndex = BTreeMap<String, AzInfo>;

fn view(v: &Verdict) -> VerdictView {
    VerdictView {
        scope: v.scope,
        check: v.check.clone(),
        status: v.status,
        hosts: v.hosts.clone(),
        summary: v.summary.clone(),
        since: v.since,
        az: v.az.clone(),
        region: v.region.clone(),
        flapping: v.flapping,
        recovered_at: v.recovered_at,
    }
}

impl Engine {
    pub(super) fn az_index(&self) -> AzIndex {
        let mut intervals: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let mut out = AzIndex::new();
        for t in self.hosts.values() {
            let e = out.entry(t.az.clone()).or_insert_with(|| AzInfo {
                region: t.region.clone(),
                known: 0,
                reporting: 0,
                median_interval: Duration::ZERO,
            });
            e.known += 1;
            if !t.stale {
                e.reporting += 1;
            }
            intervals.entry(t.az.as_str()).or_default().push(t.interval);
        }
        for (az, mut v) in intervals {
            v.sort();
            if let Some(info) = out.get_mut(az) {
                info.median_interval = v[v.len() / 2];
            }
        }
        out
    }

    /// The zones view at the engine's latest state.
    pub fn zones(&self, az_filter: Option<&str>) -> ZonesView {
        let mut zones: BTreeMap<String, ZoneView> = self
            .az_index()
            .into_iter()
            .map(|(az, info)| {
                let z = ZoneView {
                    az: az.clone(),
                    region: info.region,
                    hosts: info.known,
                    reporting: info.reporting,
                    stale: info.known - info.reporting,
                    status: Status::Ok,
                    verdicts: Vec::new(),
                    reboot: self.recovery(&az),
                };
                (az, z)
            })
            .collect();
        let mut region_verdicts = Vec::new();
        let mut collector_verdicts = Vec::new();
        for v in self.verdicts.values() {
            match (v.scope, &v.az) {
                (Scope::Collector, _) => collector_verdicts.push(view(v)),
                (Scope::Region, _) | (_, None) => region_verdicts.push(view(v)),
                (_, Some(az)) => {
                    if let Some(z) = zones.get_mut(az) {
                        // A verdict held after recovering is listed, but the AZ's status is what fails now.
                        if v.recovered_at.is_none() {
                            z.status = z.status.worst(v.status);
                        }
                        z.verdicts.push(view(v));
                    }
                }
            }
        }
        for z in zones.values_mut() {
            z.verdicts.sort_by_key(|v| {
                (
                    std::cmp::Reverse(v.status.severity()),
                    v.scope != Scope::Az,
                    v.check.clone(),
                )
            });
        }
        let filtered = az_filter.is_some();
        ZonesView {
            zones: zones
                .into_values()
                .filter(|z| az_filter.is_none_or(|a| a == z.az))
                .collect(),
            region_verdicts: if filtered {
                Vec::new()
            } else {
                region_verdicts
            },
            collector_verdicts,
            ingest_degraded: self.ingest_degraded.clone(),
        }
    }
}
