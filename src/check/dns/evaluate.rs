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

/// The results of one resolver, in the order they were listed.
struct ByResolver<'a> {
    resolver: &'a str,
    results: Vec<&'a DnsResult>,
}

fn slow(r: &DnsResult, cfg: &DnsConfig) -> bool {
    r.outcome == DnsOutcome::Ok && r.latency_ms >= cfg.warn_latency_ms as f64
}

/// The verdict. Pure.
pub fn evaluate(obs: &Observation, cfg: &DnsConfig) -> Outcome {
    let details = DnsDetails {
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
        out.details = Details::Dns(details);
        return out;
    }
    let unresolved = unresolved_names(&obs.results);
    let degraded = obs
        .results
        .iter()
        .any(|r| r.outcome != DnsOutcome::Ok || slow(r, cfg));
    let mut status = if !unresolved.is_empty() {
        Status::Crit
    } else if degraded {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut by_resolver = group_by_resolver(&obs.results);
    // Worst resolver first; within one, the worst result speaks for it, unless names differ in outcome.
    let rank = |g: &ByResolver<'_>| {
        g.results
            .iter()
            .map(|r| {
                (
                    r.outcome.severity(),
                    slow(r, cfg) as u8,
                    r.latency_ms as u64,
                )
            })
            .max()
            .unwrap_or_default()
    };
    by_resolver.sort_by_key(|g| std::cmp::Reverse(rank(g)));
    let phrases: Vec<String> = by_resolver.iter().map(|g| phrase(g, cfg)).collect();
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
    Outcome::new(status, summary, Details::Dns(details))
}

/// Resolvers in first-seen order, each with its results.
fn group_by_resolver(results: &[DnsResult]) -> Vec<ByResolver<'_>> {
    let mut groups: Vec<ByResolver<'_>> = Vec::new();
    for r in results {
        match groups.iter_mut().find(|g| g.resolver == r.resolver) {
            Some(g) => g.results.push(r),
            None => groups.push(ByResolver {
                resolver: &r.resolver,
                results: vec![r],
            }),
        }
    }
    groups
}

/// Names no resolver answered correctly, in first-seen order.
fn unresolved_names(results: &[DnsResult]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    names.retain(|n| {
        !results
            .iter()
            .any(|r| r.name == *n && r.outcome == DnsOutcome::Ok)
    });
    names
}

/// One resolver's part of the summary: `127.0.0.1:53 ok 0.4ms`, `10.1.2.3:53 refused (not running?)`.
fn phrase(g: &ByResolver<'_>, cfg: &DnsConfig) -> String {
    let rs = &g.results;
    let resolver = g.resolver;
    let texts: Vec<String> = rs.iter().map(|r| outcome_text(r, cfg)).collect();
    let all_same_class = rs
        .iter()
        .all(|r| r.outcome == rs[0].outcome && slow(r, cfg) == slow(rs[0], cfg));
    if all_same_class && matches!(rs[0].outcome, DnsOutcome::Ok) && !slow(rs[0], cfg) {
        let worst = rs.iter().map(|r| r.latency_ms).fold(0.0, f64::max);
        return format!("{resolver} ok {}ms", fmt_ms(worst));
    }
    if all_same_class
        && !matches!(
            rs[0].outcome,
            DnsOutcome::Nxdomain | DnsOutcome::Servfail | DnsOutcome::WrongAnswer
        )
    {
        return format!("{resolver} {}", texts[0]);
    }
    let mut parts: Vec<String> = rs
        .iter()
        .zip(&texts)
        .filter(|(r, _)| r.outcome != DnsOutcome::Ok || slow(r, cfg))
        .map(|(_, t)| t.clone())
        .collect();
    if parts.is_empty() {
        parts = texts.clone();
    }
    parts.dedup();
    format!("{resolver} {}", parts.join(", "))
}
