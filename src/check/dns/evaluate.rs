//! The verdict: redundancy lost (WARN) or a name no resolver answers (CRIT). Pure.

use super::{DnsConfig, DnsDetails, DnsOutcome, DnsResult, ResolvConf};
use crate::check::{Details, Outcome, Status, UnknownReason};

/// What the check looked at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// resolv.conf as parsed (empty when not used).
    pub resolv_conf: ResolvConf,
    /// Every result.
    pub results: Vec<DnsResult>,
    /// Problems with the resolver list (missing resolv.conf, unusable entries).
    pub notes: Vec<String>,
}

fn outcome_text(r: &DnsResult, cfg: &DnsConfig) -> String {
    let ms = r.latency_ms;
    match r.outcome {
        DnsOutcome::Ok if ms >= cfg.warn_latency_ms as f64 => {
            format!("slow {ms:.0}ms >= {}ms", cfg.warn_latency_ms)
        }
        DnsOutcome::Ok => format!("ok {}ms", fmt_ms(ms)),
        DnsOutcome::Refused => "refused (not running?)".into(),
        DnsOutcome::Timeout => format!("timeout after {}ms", cfg.timeout_ms),
        DnsOutcome::Servfail => format!("SERVFAIL for {} (upstream failing?)", short(&r.name)),
        DnsOutcome::Nxdomain => format!("NXDOMAIN for {}", short(&r.name)),
        DnsOutcome::RefusedRcode => "REFUSED (not allowed to query?)".into(),
        DnsOutcome::WrongAnswer => format!(
            "wrong answer for {}: {}",
            short(&r.name),
            r.error.as_deref().unwrap_or("unexpected data")
        ),
        DnsOutcome::Error => format!("error: {}", r.error.as_deref().unwrap_or("unknown")),
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn short(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The verdict. Pure.
pub fn evaluate(obs: &Observation, cfg: &DnsConfig) -> Outcome {
    let details = |obs: &Observation| DnsDetails {
        resolvers: obs.resolv_conf.nameservers.clone(),
        results: obs.results.clone(),
        search: obs.resolv_conf.search.clone(),
        options: obs.resolv_conf.options.clone(),
        notes: obs.notes.clone(),
    };
    if obs.results.is_empty() {
        let mut out = Outcome::unknown(
            UnknownReason::Config,
            format!("no resolver to test: {}", obs.notes.join("; ")),
        );
        out.details = Details::Dns(details(obs));
        return out;
    }
    let slow =
        |r: &DnsResult| r.outcome == DnsOutcome::Ok && r.latency_ms >= cfg.warn_latency_ms as f64;
    // Resolvers in first-seen order, each with its results.
    let mut by_resolver: Vec<(&str, Vec<&DnsResult>)> = Vec::new();
    for r in &obs.results {
        match by_resolver.iter_mut().find(|(k, _)| *k == r.resolver) {
            Some((_, v)) => v.push(r),
            None => by_resolver.push((&r.resolver, vec![r])),
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for r in &obs.results {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let unresolved: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            !obs.results
                .iter()
                .any(|r| r.name == *n && r.outcome == DnsOutcome::Ok)
        })
        .collect();
    let degraded = obs
        .results
        .iter()
        .any(|r| r.outcome != DnsOutcome::Ok || slow(r));
    let mut status = if !unresolved.is_empty() {
        Status::Crit
    } else if degraded {
        Status::Warn
    } else {
        Status::Ok
    };
    // Worst resolver first; within one, the worst result speaks for it, unless names differ in outcome.
    let rank = |rs: &[&DnsResult]| {
        rs.iter()
            .map(|r| (r.outcome.severity(), slow(r) as u8, r.latency_ms as u64))
            .max()
            .unwrap_or_default()
    };
    by_resolver.sort_by_key(|(_, rs)| std::cmp::Reverse(rank(rs)));
    let phrases: Vec<String> = by_resolver
        .iter()
        .map(|(resolver, rs)| {
            let texts: Vec<String> = rs.iter().map(|r| outcome_text(r, cfg)).collect();
            let all_same_class = rs
                .iter()
                .all(|r| r.outcome == rs[0].outcome && slow(r) == slow(rs[0]));
            if all_same_class && matches!(rs[0].outcome, DnsOutcome::Ok) && !slow(rs[0]) {
                let worst = rs.iter().map(|r| r.latency_ms).fold(0.0, f64::max);
                format!("{resolver} ok {}ms", fmt_ms(worst))
            } else if all_same_class
                && !matches!(
                    rs[0].outcome,
                    DnsOutcome::Nxdomain | DnsOutcome::Servfail | DnsOutcome::WrongAnswer
                )
            {
                format!("{resolver} {}", texts[0])
            } else {
                let mut parts: Vec<String> = Vec::new();
                for (r, t) in rs.iter().zip(&texts) {
                    if r.outcome != DnsOutcome::Ok || slow(r) {
                        parts.push(t.clone());
                    }
                }
                if parts.is_empty() {
                    parts = texts.clone();
                }
                parts.dedup();
                format!("{resolver} {}", parts.join(", "))
            }
        })
        .collect();
    let mut summary = phrases.join("; ");
    if !unresolved.is_empty() {
        let list: Vec<&str> = unresolved.iter().map(|n| short(n)).collect();
        summary = format!(
            "no resolver answers {} correctly: {summary}",
            list.join(", ")
        );
    }
    for n in &obs.notes {
        summary.push_str(&format!("; {n}"));
    }
    if status == Status::Ok && !obs.resolv_conf.problems.is_empty() {
        status = Status::Warn;
    }
    Outcome::new(status, summary, Details::Dns(details(obs)))
}
