//! What the check reports: one result per (resolver, name), classified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::Perf;

/// How one query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsOutcome {
    /// A correct answer.
    Ok,
    /// Connection refused / ICMP port unreachable: the resolver process is not running.
    Refused,
    /// No answer within the deadline.
    Timeout,
    /// SERVFAIL: the resolver runs but cannot get an answer (upstream failing).
    Servfail,
    /// NXDOMAIN for a name that must exist.
    Nxdomain,
    /// REFUSED answer: the resolver will not answer us.
    RefusedRcode,
    /// An answer without the expected data (or no records of the type).
    WrongAnswer,
    /// Anything else; `error` says what.
    Error,
}

impl DnsOutcome {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsOutcome::Ok => "ok",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::Servfail => "servfail",
            DnsOutcome::Nxdomain => "nxdomain",
            DnsOutcome::RefusedRcode => "refused-rcode",
            DnsOutcome::WrongAnswer => "wrong-answer",
            DnsOutcome::Error => "error",
        }
    }

    /// How bad, for ordering: a dead resolver first.
    pub(crate) fn severity(self) -> u8 {
        match self {
            DnsOutcome::Ok => 0,
            DnsOutcome::WrongAnswer => 1,
            DnsOutcome::Nxdomain => 2,
            DnsOutcome::Error => 3,
            DnsOutcome::RefusedRcode => 4,
            DnsOutcome::Servfail => 5,
            DnsOutcome::Timeout => 6,
            DnsOutcome::Refused => 7,
        }
    }
}

/// One (resolver, name) result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsResult {
    /// `address:port`.
    pub resolver: String,
    /// The name queried (fully qualified).
    pub name: String,
    /// The record type queried.
    pub record_type: String,
    /// The class of the result.
    pub outcome: DnsOutcome,
    /// Time from sending to the answer or the failure, in milliseconds.
    pub latency_ms: f64,
    /// Record data of the requested type in the answer.
    pub answers: Vec<String>,
    /// The response code, when an answer came.
    pub rcode: Option<String>,
    /// What went wrong, for `error` and `wrong-answer`.
    pub error: Option<String>,
}

/// Details of the `dns` check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsDetails {
    /// Nameservers as read from resolv.conf.
    pub resolvers: Vec<String>,
    /// Every (resolver, name) result.
    pub results: Vec<DnsResult>,
    /// `search` domains of resolv.conf (not applied: names are queried as written).
    pub search: Vec<String>,
    /// `options` of resolv.conf.
    pub options: Vec<String>,
    /// Problems with resolv.conf or the resolver list.
    pub notes: Vec<String>,
}

impl DnsDetails {
    /// Nagios performance data: the worst latency per resolver.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
        for r in &self.results {
            let e = worst.entry(&r.resolver).or_insert(0.0);
            *e = e.max(r.latency_ms);
        }
        let mut v = vec![
            Perf::new(
                "failed_queries",
                self.results
                    .iter()
                    .filter(|r| r.outcome != DnsOutcome::Ok)
                    .count() as f64,
                "",
            )
            .bounds(Some(0.0), Some(self.results.len() as f64)),
        ];
        for (resolver, ms) in worst {
            v.push(
                Perf::new(format!("latency {resolver}"), ms / 1000.0, "s").bounds(Some(0.0), None),
            );
        }
        v
    }
}
