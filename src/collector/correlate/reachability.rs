//! Silence, correlated: an AZ whose hosts went stale together is one `unreachable` verdict (its hosts are
//! stale, never "down"); several AZs going stale together point at the collector itself (its network, its
//! ingest), so that is one `collector` verdict instead of one per AZ. A host back, whatever its boot id, is
//! no longer silent, and the verdicts shrink and close with the silence.

use std::time::{Duration, SystemTime};

use super::lifecycle::Finding;
use super::view::AzIndex;
use super::{Engine, Scope};
use crate::check::Status;
use crate::util::rfc3339;

const KEY_COLLECTOR: &str = "collector/-/reachability";

impl Engine {
    pub(super) fn reachability_findings(&self, now: SystemTime, azs: &AzIndex) -> Vec<Finding> {
        let window = Duration::from_secs(self.cfg.stale_window_secs);
        let mut per_az: Vec<(Finding, SystemTime)> = Vec::new();
        for (az, info) in azs.iter() {
            let stale: Vec<(&str, SystemTime)> = self
                .hosts
                .iter()
                .filter(|(_, t)| t.az == *az && t.stale)
                .map(|(id, t)| (id.as_str(), t.stale_since.unwrap_or(now)))
                .collect();
            let known = info.known;
            let enough = |n: usize| {
                n >= self.cfg.az_min_hosts
                    && n as f64 * 100.0 >= self.cfg.stale_threshold_percent * known as f64
            };
            if !enough(stale.len()) {
                continue;
            }
            let Some(latest) = stale.iter().map(|(_, s)| *s).max() else {
                continue;
            };
            let together = stale
                .iter()
                .filter(|(_, s)| latest.duration_since(*s).unwrap_or_default() <= window)
                .count();
            let key = format!("az/{az}/reachability");
            let open =
                self.verdicts.contains_key(&key) || self.verdicts.contains_key(KEY_COLLECTOR);
            if !(enough(together) || open) {
                continue;
            }
            let first = stale.iter().map(|(_, s)| *s).min().unwrap_or(now);
            let finding = Finding {
                key,
                scope: Scope::Az,
                region: info.region.clone(),
                az: Some(az.clone()),
                host: None,
                check: "reachability".into(),
                status: Status::Crit,
                hosts: stale.iter().map(|(h, _)| (*h).to_owned()).collect(),
                summary: format!(
                    "{az} unreachable: {}/{known} hosts silent since {} (stale, not down: no data from them; {} still reporting)",
                    stale.len(),
                    rfc3339(first),
                    info.reporting
                ),
                since: first,
                flapping: false,
                settle: self.settle_for(info.median_interval),
                from_staleness: true,
            };
            per_az.push((finding, latest));
        }
        self.fold_collector(per_az, window)
    }

    /// Two or more AZs gone silent within the stale window of each other: the collector is the likelier
    /// one cut off. One verdict about the collector, folding theirs.
    fn fold_collector(&self, per_az: Vec<(Finding, SystemTime)>, window: Duration) -> Vec<Finding> {
        let open = self.verdicts.contains_key(KEY_COLLECTOR);
        let latest = per_az.iter().map(|(_, l)| *l).max();
        let together: Vec<&(Finding, SystemTime)> = per_az
            .iter()
            .filter(|(_, l)| {
                latest.is_some_and(|m| m.duration_since(*l).unwrap_or_default() <= window)
            })
            .collect();
        if together.len() < 2 && !(open && per_az.len() >= 2) {
            return per_az.into_iter().map(|(f, _)| f).collect();
        }
        let parts: Vec<Finding> = per_az.into_iter().map(|(f, _)| f).collect();
        let azs: Vec<&str> = parts.iter().filter_map(|f| f.az.as_deref()).collect();
        let hosts: Vec<String> = parts.iter().flat_map(|f| f.hosts.clone()).collect();
        let since = parts
            .iter()
            .map(|f| f.since)
            .min()
            .unwrap_or(std::time::UNIX_EPOCH);
        let summary = format!(
            "this collector lost {} AZs at once ({}): {} hosts silent since {} — likely its own network or ingest, not {} outages (hosts stale, not down)",
            azs.len(),
            azs.join(", "),
            hosts.len(),
            rfc3339(since),
            azs.len()
        );
        vec![Finding {
            key: KEY_COLLECTOR.to_owned(),
            scope: Scope::Collector,
            region: String::new(),
            az: None,
            host: None,
            check: "reachability".into(),
            status: Status::Crit,
            hosts,
            summary,
            since,
            flapping: false,
            settle: parts.iter().map(|f| f.settle).max().unwrap_or_default(),
            from_staleness: true,
        }]
    }
}
